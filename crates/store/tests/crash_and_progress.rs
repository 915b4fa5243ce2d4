//! Long migrations: a migration killed halfway (the process, with SIGKILL,
//! in the middle of copying a table) leaves the database at the old version,
//! and a long table rebuild reports its progress as it goes.
//!
//! The process that gets killed is this test binary itself, run again on
//! the single test `child_process_entry` with `CHILD_ENV` set; without that
//! variable the entry does nothing.

use charter_model::AppModel;
use charter_store::{sqlite::SqliteDb, DatabaseUrl, MigrateOptions, Progress, StoreConfig};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Set to a database URL in the child process: migrate it to `NEW` and
/// report progress on stdout, pausing inside the transaction.
const CHILD_ENV: &str = "CHARTER_TEST_CRASH_CHILD";
/// Rows after which the child's migration stops to wait for its death.
const PAUSE_AFTER: u64 = 20_000;
const ROWS: usize = 50_000;
/// Lines the child prints: `charter-progress TABLE DONE TOTAL`.
const MARKER: &str = "charter-progress";

const OLD: &str = "# Items\n\n## Entities\n\n### Item\n| field | type | rules |\n|---|---|---|\n| title | text | required, 1..100 |\n| n | int | |\n| note | text | |\n\nPermissions:\n- read: signed in\n";

/// `n` becomes text: SQLite cannot alter a column's type, so the table is
/// rebuilt (copied row by row into a new table inside the transaction).
fn new_spec() -> String {
    OLD.replace("| n | int | |", "| n | text | |")
}

fn model(src: &str) -> AppModel {
    let c = charter_model::compile(src);
    c.model.unwrap_or_else(|| panic!("{:?}", c.diagnostics))
}

fn opts() -> MigrateOptions {
    MigrateOptions { spec_hash: "test".into(), ..Default::default() }
}

fn seed(db: &SqliteDb, n: usize) {
    let mut conn = db.connect().unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut stmt = tx
            .prepare("INSERT INTO items (id, created_at, updated_at, version, title, n, note) VALUES (?1, ?2, ?2, 1, ?3, ?4, ?5)")
            .unwrap();
        for i in 0..n {
            let note = (i % 7 == 0).then(|| format!("note {i} ✓"));
            stmt.execute(rusqlite::params![format!("i{i:06}"), "2025-01-01T00:00:00.000Z", format!("Item {i}"), i as i64 * 3 - 7, note])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Every row of `items`, by id, values as text.
fn dump(db: &SqliteDb) -> BTreeMap<String, Vec<Option<String>>> {
    let conn = db.connect().unwrap();
    let mut stmt =
        conn.prepare("SELECT id, created_at, updated_at, CAST(version AS TEXT), title, CAST(n AS TEXT), note FROM items").unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, (1..7).map(|i| r.get::<_, Option<String>>(i)).collect::<Result<Vec<_>, _>>()?)))
        .unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// The child: migrates the database named by `CHILD_ENV` with the pause
/// hook, printing each progress report. It is killed while paused; if it
/// ever gets past the pause, it says so and the parent fails.
#[test]
fn child_process_entry() {
    let Ok(url) = std::env::var(CHILD_ENV) else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let config = StoreConfig { url: DatabaseUrl::parse(&url).unwrap(), synchronous_full: false };
        let db = charter_store::Database::open(&config).await.unwrap();
        let progress: charter_store::ProgressFn = Arc::new(|p: Progress| {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{MARKER} {} {} {}", p.table, p.done, p.total);
            let _ = out.flush();
        });
        let r = db
            .migrate(&model(&new_spec()), MigrateOptions { progress: Some(progress), pause_after_rows: Some(PAUSE_AFTER), ..opts() })
            .await;
        println!("{MARKER} finished {r:?}");
    });
}

/// Runs the child on `url` and kills it (SIGKILL) once it reports having
/// copied `PAUSE_AFTER` rows, i.e. while its migration transaction is open
/// with part of the table copied.
fn run_child_and_kill_it_mid_migration(url: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_process_entry", "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the test binary runs again as the child");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    let reached = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                // libtest may print `test child_process_entry ... ` before it on the same line.
                let report = line.find(MARKER).map_or("", |at| &line[at..]);
                let fields: Vec<&str> = report.split_whitespace().collect();
                if let [MARKER, _table, done, total] = fields[..] {
                    let (done, total): (u64, u64) = (done.parse().unwrap(), total.parse().unwrap());
                    if done >= PAUSE_AFTER {
                        break Some((done, total));
                    }
                }
                seen.push(line);
            }
            Err(_) => break None,
        }
    };
    let Some((done, total)) = reached else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child never reported {PAUSE_AFTER} copied rows\nstdout: {seen:#?}\nstderr: {}", stderr.join().unwrap());
    };
    assert!(done < total, "the child must be killed mid-copy, not after it ({done} of {total})");
    child.kill().unwrap(); // SIGKILL: no destructor, no rollback by the process
    let status = child.wait().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "the child died of the kill, not of its own accord: {status:?}");
    }
    let _ = status;
    let leftover: Vec<String> = rx.try_iter().filter(|l| l.contains("finished")).collect();
    assert!(leftover.is_empty(), "the migration finished before the kill: {leftover:?}");
}

#[test]
fn sqlite_migration_killed_halfway_leaves_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let db = SqliteDb::open(&path, false).unwrap();
    let old = model(OLD);
    assert!(db.migrate(&old, opts()).unwrap().applied);
    seed(&db, ROWS);
    let before = dump(&db);
    assert_eq!(before.len(), ROWS);

    run_child_and_kill_it_mid_migration(&format!("sqlite://{}", path.display()));

    // Reopened as after a crash: the old schema, every row, a sound file.
    let db = SqliteDb::open(&path, false).unwrap();
    assert_eq!(db.schema_differences(&old).unwrap(), Vec::<String>::new(), "the database is at the old version");
    let conn = db.connect().unwrap();
    let leftovers: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE name LIKE '\\_charter\\_new%' ESCAPE '\\'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(leftovers.is_empty(), "no half-built table remains: {leftovers:?}");
    let integrity: Vec<String> =
        conn.prepare("PRAGMA integrity_check").unwrap().query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(integrity, ["ok"]);
    let fk_problems: i64 = conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
    assert_eq!(fk_problems, 0);
    assert_eq!(dump(&db), before, "every row as it was");
    assert_eq!(db.history().unwrap().len(), 1, "no migration was recorded");

    // And the migration can simply be run again.
    let new = model(&new_spec());
    let r = db.migrate(&new, opts()).unwrap();
    assert!(r.applied, "{r:#?}");
    assert_eq!(db.schema_differences(&new).unwrap(), Vec::<String>::new());
    assert_eq!(dump(&db), before, "the same rows, `n` now as text");
    let ty: String = conn.query_row("SELECT typeof(n) FROM items WHERE id = 'i000001'", [], |r| r.get(0)).unwrap();
    assert_eq!(ty, "text");
}

#[test]
fn sqlite_long_rebuild_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteDb::open(&dir.path().join("app.db"), false).unwrap();
    assert!(db.migrate(&model(OLD), opts()).unwrap().applied);
    seed(&db, ROWS);
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink = seen.clone();
    let progress: charter_store::ProgressFn = Arc::new(move |p| sink.lock().unwrap().push(p));
    let r = db.migrate(&model(&new_spec()), MigrateOptions { progress: Some(progress), ..opts() }).unwrap();
    assert!(r.applied, "{r:#?}");
    assert_progress(&seen.lock().unwrap(), "items", ROWS as u64);
}

/// Reports for one table, `done` rising strictly to `total`, in more than
/// one step.
fn assert_progress(seen: &[Progress], table: &str, total: u64) {
    assert!(seen.len() >= 2, "a long rebuild reports along the way, not only at the end: {seen:?}");
    assert!(seen.iter().all(|p| p.table == table && p.total == total), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].done < w[1].done), "done only rises: {seen:?}");
    assert!(seen.iter().any(|p| p.done > 0 && p.done < total), "some report comes mid-way: {seen:?}");
    assert_eq!(seen.last().unwrap().done, total, "the last report is the whole table");
}
