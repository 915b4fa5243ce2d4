//! Migrations on real databases: each scenario runs on SQLite and on
//! PostgreSQL (`./scripts/test` starts one).

mod common;

use charter_schema::{DbValue, Verdict};
use charter_store::{MigrateOptions, Progress};
use common::{Backend, TestDb};
use std::sync::{Arc, Mutex};

/// One test per backend for each scenario, so either can fail on its own.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $scenario() { super::$scenario(super::Backend::Sqlite) })*
        }
        mod postgres {
            $(#[test] fn $scenario() { super::$scenario(super::Backend::Postgres) })*
        }
    };
}

on_both_backends!(
    creates_then_evolves_keeping_every_row,
    destructive_steps_need_permission_and_take_a_backup,
    refused_steps_leave_the_database_as_it_was,
    dry_runs_check_everything_and_change_nothing,
    history_records_each_applied_migration,
    drift_is_detected_before_planning,
    progress_is_reported_for_steps_that_touch_rows,
    type_changes_convert_values_alike,
    values_that_do_not_convert_are_refused_alike,
    tables_that_reference_each_other,
    renamed_tables_and_columns_keep_their_constraints,
);

fn model(src: &str) -> charter_model::AppModel {
    let c = charter_model::compile(src);
    c.model.unwrap_or_else(|| panic!("{:?}", c.diagnostics))
}

const V1: &str = "# A\n\n## Entities\n\n### Task\n| field | type | rules |\n|---|---|---|\n| title | text | required, 1..200 |\n| done | bool | default false |\n| level | enum(low, high) | |\n\nPermissions:\n- read: signed in\n";

fn opts() -> MigrateOptions {
    MigrateOptions { spec_hash: "h".into(), ..Default::default() }
}

fn text(s: &str) -> DbValue {
    DbValue::Text(s.into())
}

fn seed(db: &TestDb, n: usize) {
    for i in 0..n {
        db.insert(
            "tasks",
            &[
                ("id", text(&format!("t{i:05}"))),
                ("created_at", DbValue::DateTime("2025-01-01T00:00:00.000Z".into())),
                ("updated_at", DbValue::DateTime("2025-01-01T00:00:00.000Z".into())),
                ("version", DbValue::Integer(1)),
                ("title", text(&format!("Task {i}"))),
                ("done", DbValue::Boolean(i % 2 == 1)),
                ("level", if i % 3 == 0 { text("high") } else { DbValue::Null }),
            ],
        );
    }
}

fn one(db: &TestDb, sql: &str) -> Option<String> {
    let rows = db.query(sql);
    assert_eq!(rows.len(), 1, "{sql}");
    rows[0].values().next().cloned().flatten()
}

fn creates_then_evolves_keeping_every_row(backend: Backend) {
    let db = TestDb::fresh(backend);
    let r = db.migrate(&model(V1), opts()).unwrap();
    assert!(r.applied, "{r:?}");
    assert!(db.schema_differences(&model(V1)).is_empty());
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
    assert!(db.schema_differences(&model(&v2)).is_empty(), "{:?}", db.schema_differences(&model(&v2)));
    assert_eq!(one(&db, "SELECT count(*) FROM tasks").as_deref(), Some("1000"));
    assert_eq!(one(&db, "SELECT max(name) FROM tasks").as_deref(), Some("Task 999"));
    assert_eq!(one(&db, "SELECT count(*) FROM tasks WHERE done").as_deref(), Some("500"));
    let rows = db.rows("tasks");
    assert_eq!(rows[1]["done"].as_deref(), Some("true"));
    assert_eq!(rows[1]["note"], None);
    assert_eq!(rows[0]["level"].as_deref(), Some("high"));
    assert_eq!(db.history().len(), 2);

    // The renamed column keeps its rule: too long a name is refused by the database.
    let long = "x".repeat(201);
    let err = db.execute(&format!("UPDATE tasks SET name = '{long}' WHERE id = 't00001'")).unwrap_err();
    assert!(err.to_lowercase().contains("check"), "{err}");
}

fn destructive_steps_need_permission_and_take_a_backup(backend: Backend) {
    let db = TestDb::fresh(backend);
    db.migrate(&model(V1), opts()).unwrap();
    seed(&db, 10);
    let v2 = V1.replace("| level | enum(low, high) | |\n", "");
    let r = db.migrate(&model(&v2), opts()).unwrap();
    assert!(!r.applied);
    assert_eq!(r.blocked_at, Some(0));
    assert!(r.has_destructive());
    assert!(r.backup.is_none(), "no backup without permission to destroy");
    // Nothing changed.
    assert!(db.schema_differences(&model(V1)).is_empty());

    let r = db.migrate(&model(&v2), MigrateOptions { allow_destructive: true, ..opts() }).unwrap();
    assert!(r.applied, "{r:#?}");
    assert!(db.schema_differences(&model(&v2)).is_empty());
    let backup = r.backup.expect("a backup was taken");
    assert!(backup.starts_with(db.dir().join("backups")), "{}", backup.display());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the backup is readable by its owner only");
    }
    let old = TestDb::restore(backend, &backup);
    assert_eq!(one(&old, "SELECT count(level) FROM tasks").as_deref(), Some("4"), "the backup still has the dropped column's values");
    assert!(old.schema_differences(&model(V1)).is_empty(), "the backup is the database before the migration");
    assert_eq!(old.history().len(), 1);
}

fn refused_steps_leave_the_database_as_it_was(backend: Backend) {
    let db = TestDb::fresh(backend);
    db.migrate(&model(V1), opts()).unwrap();
    seed(&db, 10);
    let before = db.dump();
    // `level` becomes required without a default: 6 rows have none.
    let v2 = V1
        .replace("| level | enum(low, high) | |", "| level | enum(low, high) | required |")
        .replace("| done | bool | default false |", "| done | bool | default false |\n| extra | int | |");
    let r = db.migrate(&model(&v2), MigrateOptions { allow_destructive: true, ..opts() }).unwrap();
    assert!(!r.applied);
    let blocked = r.blocked_at.unwrap();
    assert!(matches!(&r.outcomes[blocked].verdict, Verdict::Refused(m) if m.contains("6 rows have no value")), "{:#?}", r.outcomes);
    assert!(db.schema_differences(&model(V1)).is_empty(), "the added column was rolled back too");
    assert_eq!(db.dump(), before);
    assert_eq!(db.history().len(), 1);
}

fn dry_runs_check_everything_and_change_nothing(backend: Backend) {
    let db = TestDb::fresh(backend);
    db.migrate(&model(V1), opts()).unwrap();
    seed(&db, 20);
    let before = db.dump();
    // A removed enum member (destructive: its rows lose the value) and a
    // type change that every value survives.
    let v2 = V1
        .replace("| level | enum(low, high) | |", "| level | enum(low, mid) | |")
        .replace("| title | text | required, 1..200 |", "| title | text | required, 1..20 |");
    let dry = db.migrate(&model(&v2), MigrateOptions { dry_run: true, allow_destructive: true, ..opts() }).unwrap();
    assert!(!dry.applied && dry.blocked_at.is_none() && dry.backup.is_none(), "{dry:#?}");
    assert!(dry.has_destructive());
    assert_eq!(db.dump(), before);
    assert!(db.schema_differences(&model(V1)).is_empty());
    assert_eq!(db.history().len(), 1);

    let r = db.migrate(&model(&v2), MigrateOptions { allow_destructive: true, ..opts() }).unwrap();
    assert!(r.applied, "{r:#?}");
    assert!(r.backup.is_some());
    assert_eq!(one(&db, "SELECT count(level) FROM tasks").as_deref(), Some("0"), "removed members became empty");
    assert!(db.schema_differences(&model(&v2)).is_empty());
    assert_eq!(
        db.execute("UPDATE tasks SET level = 'high' WHERE id = 't00000'").map_err(|e| e.to_lowercase().contains("check")),
        Err(true)
    );
}

fn history_records_each_applied_migration(backend: Backend) {
    let db = TestDb::fresh(backend);
    db.migrate(&model(V1), MigrateOptions { spec_hash: "one".into(), ..Default::default() }).unwrap();
    let v2 = V1.replace("| level | enum(low, high) | |", "| level | enum(low, high) | |\n| due | date | |");
    db.migrate(&model(&v2), MigrateOptions { spec_hash: "two".into(), ..Default::default() }).unwrap();
    let h = db.history();
    assert_eq!(h.iter().map(|r| r.spec_hash.as_str()).collect::<Vec<_>>(), ["one", "two"]);
    assert!(h[0].steps[0].starts_with("create table `users`"), "{:?}", h[0].steps);
    assert_eq!(h[1].steps, ["add column `tasks.due` date"]);
    assert!(h[0].id < h[1].id && h[0].applied_at <= h[1].applied_at && h[1].applied_at.ends_with('Z'));
}

fn drift_is_detected_before_planning(backend: Backend) {
    let db = TestDb::fresh(backend);
    db.migrate(&model(V1), opts()).unwrap();
    db.execute("CREATE INDEX stray ON tasks (title)").unwrap();
    let diffs = db.schema_differences(&model(V1));
    assert_eq!(diffs, ["the database has index stray on tasks (title), which no migration made"]);
    let v2 = V1.replace("| level | enum(low, high) | |", "| level | enum(low, high) | |\n| due | date | |");
    match db.migrate(&model(&v2), opts()) {
        Err(charter_store::StoreError::Drift(m)) => assert!(m.contains("index stray"), "{m}"),
        other => panic!("expected drift, got {other:?}"),
    }
    db.execute("DROP INDEX stray").unwrap();
    assert!(db.migrate(&model(&v2), opts()).unwrap().applied);
}

fn progress_is_reported_for_steps_that_touch_rows(backend: Backend) {
    let db = TestDb::fresh(backend);
    db.migrate(&model(V1), opts()).unwrap();
    seed(&db, 30);
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink = seen.clone();
    let v2 = V1.replace("| done | bool | default false |", "| done | bool | required, default false |");
    let r = db.migrate(&model(&v2), MigrateOptions { progress: Some(Arc::new(move |p| sink.lock().unwrap().push(p))), ..opts() }).unwrap();
    assert!(r.applied, "{r:#?}");
    let seen = seen.lock().unwrap();
    let last = seen.last().expect("progress was reported");
    assert_eq!((last.table.as_str(), last.done, last.total), ("tasks", 30, 30), "{seen:?}");
}

fn item_spec(fields: &[(&str, &str)]) -> String {
    let mut s = "# A\n\n## Entities\n\n### Item\n| field | type | rules |\n|---|---|---|\n".to_string();
    for (name, ty) in fields {
        s.push_str(&format!("| {name} | {ty} | |\n"));
    }
    s + "\nPermissions:\n- read: signed in\n"
}

fn item(db: &TestDb, id: &str, values: Vec<(&str, DbValue)>) {
    let stamp = DbValue::DateTime("2025-01-01T00:00:00.000Z".into());
    let mut row = vec![("id", text(id)), ("created_at", stamp.clone()), ("updated_at", stamp), ("version", DbValue::Integer(1))];
    row.extend(values);
    db.insert("items", &row);
}

/// Every conversion gives the same value on both backends (the dump
/// renders values the same way for both).
fn type_changes_convert_values_alike(backend: Backend) {
    // (field, type before, type after, value stored, value after)
    let cases: &[(&str, &str, &str, DbValue, &str)] = &[
        ("n", "text", "int", text(" 7"), "7"),
        ("neg", "text", "int", text("-3"), "-3"),
        ("flag", "text", "bool", text("TRUE"), "true"),
        ("off", "text", "bool", text("0"), "false"),
        ("day", "text", "date", text("2024-02-29"), "2024-02-29"),
        ("at", "text", "datetime", text("2025-01-02T03:04:05+02:00"), "2025-01-02T01:04:05.000Z"),
        ("doc", "text", "json", text("{\"b\": 1, \"a\": [1, 2]}"), "{\"a\":[1,2],\"b\":1}"),
        ("amount", "decimal", "int", DbValue::Decimal("12.00".into()), "12"),
        ("yes", "bool", "json", DbValue::Boolean(true), "1"),
        ("stamp", "datetime", "date", DbValue::DateTime("2025-01-02T23:30:00.000Z".into()), "2025-01-02"),
        ("born", "date", "datetime", DbValue::Date("1990-06-15".into()), "1990-06-15T00:00:00.000Z"),
        ("seen", "datetime", "text", DbValue::DateTime("2025-01-02T23:30:00.000Z".into()), "2025-01-02T23:30:00.000Z"),
        ("ok", "bool", "text", DbValue::Boolean(true), "true"),
        ("price", "decimal", "text", DbValue::Decimal("1.50".into()), "1.50"),
        ("count", "bool", "int", DbValue::Boolean(true), "1"),
        ("big", "int", "decimal", DbValue::Integer(9_007_199_254_740_993), "9007199254740993"),
    ];
    let before = item_spec(&cases.iter().map(|(f, t, ..)| (*f, *t)).collect::<Vec<_>>());
    let after = item_spec(&cases.iter().map(|(f, _, t, ..)| (*f, *t)).collect::<Vec<_>>());
    let db = TestDb::fresh(backend);
    assert!(db.migrate(&model(&before), opts()).unwrap().applied);
    item(&db, "i1", cases.iter().map(|(f, _, _, v, _)| (*f, v.clone())).collect());
    item(&db, "i2", vec![]);
    let r = db.migrate(&model(&after), MigrateOptions { allow_destructive: true, ..opts() }).unwrap();
    assert!(r.applied, "{r:#?}");
    assert!(db.schema_differences(&model(&after)).is_empty(), "{:?}", db.schema_differences(&model(&after)));
    let rows = db.rows("items");
    for (field, from, to, _, want) in cases {
        assert_eq!(rows[0][*field].as_deref(), Some(*want), "{field}: {from} -> {to}");
        assert_eq!(rows[1][*field], None, "{field}: NULL stays NULL");
    }
}

/// The data checks run in Rust on the values as text, so both backends
/// refuse the same rows, with the same examples.
fn values_that_do_not_convert_are_refused_alike(backend: Backend) {
    let db = TestDb::fresh(backend);
    let before = item_spec(&[("n", "text"), ("size", "text")]);
    db.migrate(&model(&before), opts()).unwrap();
    for (i, (n, size)) in [("1", "5"), ("abc", "50"), ("1.5", "x"), ("abc", "7"), ("12", "5000")].iter().enumerate() {
        item(&db, &format!("i{i}"), vec![("n", text(n)), ("size", text(size))]);
    }
    let dump = db.dump();
    let after = item_spec(&[("n", "int"), ("size", "text")]).replace("| size | text | |", "| size | int | 1..100 |");
    let r = db.migrate(&model(&after), MigrateOptions { allow_destructive: true, ..opts() }).unwrap();
    assert!(!r.applied);
    assert!(r.outcomes.iter().all(|o| matches!(o.verdict, Verdict::Refused(_))), "{:#?}", r.outcomes);
    let results = |i: usize| -> Vec<(u64, Vec<String>)> {
        r.outcomes[i].results.clone().unwrap().into_iter().map(|c| (c.rows, c.examples)).collect()
    };
    let quoted = |v: &[&str]| -> Vec<String> { v.iter().map(|s| format!("{s:?}")).collect() };
    assert_eq!(results(0), [(3, quoted(&["abc", "1.5"]))]);
    // The range is checked on the values that convert: 5000 is out of it.
    assert_eq!(results(1), [(1, quoted(&["x"])), (1, quoted(&["5000"]))]);
    assert_eq!(db.dump(), dump);
}

/// Optional references both ways: PostgreSQL needs both tables before
/// either foreign key, and drops them in either order.
fn tables_that_reference_each_other(backend: Backend) {
    let v1 = "# A\n\n## Entities\n\n### Alpha\n| field | type | rules |\n|---|---|---|\n| beta | Beta | on delete set null |\n\nPermissions:\n- read: signed in\n\n### Beta\n| field | type | rules |\n|---|---|---|\n| alpha | Alpha | on delete cascade |\n\nPermissions:\n- read: signed in\n";
    let db = TestDb::fresh(backend);
    let r = db.migrate(&model(v1), opts()).unwrap();
    assert!(r.applied, "{r:#?}");
    assert!(db.schema_differences(&model(v1)).is_empty(), "{:?}", db.schema_differences(&model(v1)));
    let stamp = || DbValue::DateTime("2025-01-01T00:00:00.000Z".into());
    let base = |id: &str| vec![("id", text(id)), ("created_at", stamp()), ("updated_at", stamp()), ("version", DbValue::Integer(1))];
    db.insert("alphas", &base("a1"));
    db.insert("betas", &[base("b1"), vec![("alpha", text("a1"))]].concat());
    db.execute("UPDATE alphas SET beta = 'b1'").unwrap();
    assert!(db.execute("UPDATE alphas SET beta = 'nope'").is_err(), "the foreign key holds");
    assert_eq!(db.execute("DELETE FROM alphas"), Ok(1));
    assert_eq!(db.rows("betas").len(), 0, "on delete cascade");

    let v2 =
        "# A\n\n## Entities\n\n### Gamma\n| field | type | rules |\n|---|---|---|\n| label | text | |\n\nPermissions:\n- read: signed in\n";
    let r = db.migrate(&model(v2), MigrateOptions { allow_destructive: true, ..opts() }).unwrap();
    assert!(r.applied, "{r:#?}");
    assert!(db.schema_differences(&model(v2)).is_empty(), "{:?}", db.schema_differences(&model(v2)));
}

/// After a table and a column are renamed, their rules and references are
/// still enforced and can still be changed.
fn renamed_tables_and_columns_keep_their_constraints(backend: Backend) {
    let v1 = "# A\n\n## Entities\n\n### Owner\n| field | type | rules |\n|---|---|---|\n| name | text | |\n\nPermissions:\n- read: signed in\n\n### Task\n| field | type | rules |\n|---|---|---|\n| title | text | 1..10 |\n| owner | Owner | on delete cascade |\n| level | enum(low, high) | |\n\nPermissions:\n- read: signed in\n";
    let db = TestDb::fresh(backend);
    db.migrate(&model(v1), opts()).unwrap();
    let v2 = v1
        .replace("### Task\n", "### Job (renamed from Task)\n")
        .replace("| title | text | 1..10 |", "| label | text | 1..10, renamed from title |")
        .replace("| owner | Owner | on delete cascade |", "| boss | Owner | on delete cascade, renamed from owner |");
    let r = db.migrate(&model(&v2), opts()).unwrap();
    assert!(r.applied, "{r:#?}");
    assert!(db.schema_differences(&model(&v2)).is_empty(), "{:?}", db.schema_differences(&model(&v2)));
    let stamp = || DbValue::DateTime("2025-01-01T00:00:00.000Z".into());
    let base = |id: &str| vec![("id", text(id)), ("created_at", stamp()), ("updated_at", stamp()), ("version", DbValue::Integer(1))];
    db.insert("owners", &base("o1"));
    assert!(db.try_insert("jobs", &[base("j1"), vec![("label", text("far too long a label"))]].concat()).is_err(), "the length rule holds");
    assert!(db.try_insert("jobs", &[base("j1"), vec![("boss", text("nobody"))]].concat()).is_err(), "the reference holds");
    db.insert("jobs", &[base("j1"), vec![("label", text("short")), ("boss", text("o1")), ("level", text("high"))]].concat());

    // Change each renamed constraint: loosen the rule, change on delete, add a member.
    let v3 = v2
        .replace("| label | text | 1..10, renamed from title |", "| label | text | 1..40 |")
        .replace("| boss | Owner | on delete cascade, renamed from owner |", "| boss | Owner | on delete restrict |")
        .replace("enum(low, high)", "enum(low, high, top)");
    let r = db.migrate(&model(&v3), opts()).unwrap();
    assert!(r.applied, "{r:#?}");
    assert!(db.schema_differences(&model(&v3)).is_empty(), "{:?}", db.schema_differences(&model(&v3)));
    assert_eq!(db.execute("UPDATE jobs SET label = 'longer than ten characters', level = 'top'"), Ok(1));
    assert!(db.execute("DELETE FROM owners").is_err(), "on delete restrict");
}

/// The PostgreSQL counterpart of `crash_and_progress.rs`: the migration's
/// session dies while it holds its transaction open (the `pause_after_rows`
/// hook), and the database is left as it was.
#[test]
fn postgres_migration_killed_halfway_leaves_the_old_version() {
    let db = TestDb::fresh(Backend::Postgres);
    let old = item_spec(&[("n", "int")]);
    db.migrate(&model(&old), opts()).unwrap();
    let client = db.postgres_client().unwrap();
    db.block_on(client.batch_execute(
        "INSERT INTO items (id, created_at, updated_at, version, n)
         SELECT 'i' || lpad(g::text, 6, '0'), now(), now(), 1, g FROM generate_series(1, 5000) g",
    ))
    .unwrap();
    let before = db.dump();
    let new = item_spec(&[("n", "text")]);
    let reported = Arc::new(Mutex::new(None));
    let sink = reported.clone();
    let paused = MigrateOptions {
        allow_destructive: true,
        pause_after_rows: Some(1000),
        progress: Some(Arc::new(move |p: Progress| *sink.lock().unwrap() = Some(p))),
        ..opts()
    };
    let new_model = model(&new);
    let killed = db.block_on(async {
        let kill = async {
            while !reported.lock().unwrap().as_ref().is_some_and(|p| p.done == p.total && p.total > 0) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            client
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'",
                    &[],
                )
                .await
                .unwrap()
                .len()
        };
        tokio::select! {
            r = db.database().migrate(&new_model, paused) => panic!("the migration should have paused: {r:?}"),
            n = kill => n,
        }
    });
    assert_eq!(killed, 1, "the migration's session was idle in its transaction");
    assert!(db.schema_differences(&model(&old)).is_empty(), "{:?}", db.schema_differences(&model(&old)));
    assert_eq!(db.dump(), before);
    assert_eq!(db.history().len(), 1);
    // The next run starts over and completes.
    assert!(db.migrate(&model(&new), MigrateOptions { allow_destructive: true, ..opts() }).unwrap().applied);
    assert_eq!(db.rows("items")[0]["n"].as_deref(), Some("1"));
}
