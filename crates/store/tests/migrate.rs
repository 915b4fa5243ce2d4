//! Migrations on a real SQLite file.

use charter_store::{sqlite::SqliteDb, MigrateOptions};
use rusqlite::params;

fn model(src: &str) -> charter_model::AppModel {
    let c = charter_model::compile(src);
    c.model.unwrap_or_else(|| panic!("{:?}", c.diagnostics))
}

const V1: &str = "# A\n\n## Entities\n\n### Task\n| field | type | rules |\n|---|---|---|\n| title | text | required, 1..200 |\n| done | bool | default false |\n| level | enum(low, high) | |\n\nPermissions:\n- read: signed in\n";

fn opts() -> MigrateOptions {
    MigrateOptions { spec_hash: "h".into(), ..Default::default() }
}

fn seed(db: &SqliteDb, n: usize) {
    let conn = db.connect().unwrap();
    for i in 0..n {
        conn.execute(
            "INSERT INTO tasks (id, created_at, updated_at, version, title, done, level) VALUES (?1, ?2, ?2, 1, ?3, ?4, ?5)",
            params![format!("t{i:05}"), "2025-01-01T00:00:00.000Z", format!("Task {i}"), (i % 2) as i64, if i % 3 == 0 { Some("high") } else { None }],
        )
        .unwrap();
    }
}

#[test]
fn creates_then_evolves_keeping_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteDb::open(&dir.path().join("app.db"), false).unwrap();
    let r = db.migrate(&model(V1), opts()).unwrap();
    assert!(r.applied, "{r:?}");
    assert!(db.schema_differences(&model(V1)).unwrap().is_empty());
    seed(&db, 1000);

    // Second migrate: nothing to do.
    let r = db.migrate(&model(V1), opts()).unwrap();
    assert!(r.plan.is_empty() && !r.applied);

    // Rename a field, make `done` required (default fills), add a column.
    let v2 = V1
        .replace("| title | text | required, 1..200 |", "| name | text | required, 1..200, renamed from title |")
        .replace("| done | bool | default false |", "| done | bool | required, default false |\n| note | text | max 50 |");
    let r = db.migrate(&model(&v2), opts()).unwrap();
    assert!(r.applied, "{r:#?}");
    assert!(db.schema_differences(&model(&v2)).unwrap().is_empty());
    let conn = db.connect().unwrap();
    let (count, named): (i64, String) = conn.query_row("SELECT count(*), max(name) FROM tasks", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((count, named.as_str()), (1000, "Task 999"));
    let done: i64 = conn.query_row("SELECT sum(done) FROM tasks", [], |r| r.get(0)).unwrap();
    assert_eq!(done, 500);
    assert_eq!(db.history().unwrap().len(), 2);
}

#[test]
fn destructive_steps_need_permission_and_take_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteDb::open(&dir.path().join("app.db"), false).unwrap();
    db.migrate(&model(V1), opts()).unwrap();
    seed(&db, 10);
    let v2 = V1.replace("| level | enum(low, high) | |\n", "");
    let r = db.migrate(&model(&v2), opts()).unwrap();
    assert!(!r.applied);
    assert_eq!(r.blocked_at, Some(0));
    assert!(r.has_destructive());
    // Nothing changed.
    assert!(db.schema_differences(&model(V1)).unwrap().is_empty());

    let r = db.migrate(&model(&v2), MigrateOptions { allow_destructive: true, backup_dir: Some(dir.path().join("backups")), ..opts() }).unwrap();
    assert!(r.applied, "{r:#?}");
    let backup = r.backup.expect("a backup was taken");
    let old = rusqlite::Connection::open(&backup).unwrap();
    let n: i64 = old.query_row("SELECT count(level) FROM tasks", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 4, "the backup still has the dropped column's values");
}

#[test]
fn refused_steps_leave_the_database_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteDb::open(&dir.path().join("app.db"), false).unwrap();
    db.migrate(&model(V1), opts()).unwrap();
    seed(&db, 10);
    // `level` becomes required without a default: 6 rows have none.
    let v2 = V1.replace("| level | enum(low, high) | |", "| level | enum(low, high) | required |").replace("| done | bool | default false |", "| done | bool | default false |\n| extra | int | |");
    let r = db.migrate(&model(&v2), MigrateOptions { allow_destructive: true, ..opts() }).unwrap();
    assert!(!r.applied);
    let blocked = r.blocked_at.unwrap();
    assert!(matches!(&r.outcomes[blocked].verdict, charter_schema::Verdict::Refused(m) if m.contains("6 rows have no value")), "{:#?}", r.outcomes);
    assert!(db.schema_differences(&model(V1)).unwrap().is_empty(), "the added column was rolled back too");
}
