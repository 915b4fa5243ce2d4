//! Long migrations: a migration killed halfway (the process, with SIGKILL,
//! inside its transaction, on SQLite in the middle of copying the table)
//! leaves the database at the old version, and a long table rewrite reports
//! its progress. On SQLite and on PostgreSQL.
//!
//! The process that gets killed is this test binary itself, run again on
//! the single test `child_process_entry` with `CHILD_ENV` set; without that
//! variable the entry does nothing.

mod common;

use charter_model::AppModel;
use charter_store::{Database, DatabaseUrl, MigrateOptions, Progress, StoreConfig};
use common::{Backend, TestDb};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Set to a database URL in the child process: migrate it to `new_spec()` and
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

/// `n` rows in one statement (one round trip, whatever the backend).
fn seed(db: &TestDb, n: usize) {
    let columns = "id, created_at, updated_at, version, title, n, note";
    let sql = match db.backend {
        Backend::Sqlite => format!(
            "WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < {last})
             INSERT INTO items ({columns})
             SELECT printf('i%06d', i), '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z', 1, 'Item ' || i, i * 3 - 7,
                    CASE WHEN i % 7 = 0 THEN 'note ' || i || ' ✓' END
             FROM g",
            last = n - 1
        ),
        Backend::Postgres => format!(
            "INSERT INTO items ({columns})
             SELECT 'i' || lpad(i::text, 6, '0'), '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z', 1, 'Item ' || i, i * 3 - 7,
                    CASE WHEN i % 7 = 0 THEN 'note ' || i || ' ✓' END
             FROM generate_series(0, {last}) i",
            last = n - 1
        ),
    };
    assert_eq!(db.execute(&sql), Ok(n as u64));
}

/// The URL the child opens: the test's own database.
fn url_of(db: &TestDb) -> String {
    match db.database() {
        Database::Sqlite(s) => format!("sqlite://{}", s.path().display()),
        Database::Postgres(_) => {
            let name = db.query("SELECT current_database() AS name")[0]["name"].clone().unwrap();
            let admin = common::postgres_admin_url();
            let (base, query) = admin.split_once('?').map_or((admin.as_str(), None), |(b, q)| (b, Some(q)));
            let host_end = base.find("://").map_or(0, |i| i + 3);
            let path = base[host_end..].find('/').map_or(base.len(), |i| host_end + i);
            format!("{}/{name}{}", &base[..path], query.map_or(String::new(), |q| format!("?{q}")))
        }
    }
}

/// Every table, bookkeeping included.
fn tables(db: &TestDb) -> Vec<String> {
    let sql = match db.backend {
        Backend::Sqlite => "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name",
        Backend::Postgres => "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1",
    };
    db.query(sql).into_iter().map(|r| r["name"].clone().unwrap()).collect()
}

/// Whether some session holds a write transaction open on the database:
/// the child, paused inside its migration.
fn transaction_open(db: &TestDb) -> bool {
    match db.database() {
        Database::Sqlite(s) => {
            let conn = rusqlite::Connection::open(s.path()).unwrap();
            conn.busy_timeout(Duration::ZERO).unwrap();
            match conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK") {
                Ok(()) => false,
                Err(e) => {
                    assert_eq!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy), "{e}");
                    true
                }
            }
        }
        Database::Postgres(_) => {
            let sql =
                "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'";
            db.query(sql)[0]["n"].as_deref() != Some("0")
        }
    }
}

/// Polls `f` until it holds, for at most `secs` seconds.
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// Runs the child on `db` and kills it (SIGKILL) once it reports having
/// rewritten `PAUSE_AFTER` rows, while its migration transaction is open
/// (on SQLite, with part of the table copied).
fn run_child_and_kill_it_mid_migration(db: &TestDb) {
    let url = url_of(db);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_process_entry", "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, &url)
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
    if db.backend == Backend::Sqlite {
        // PostgreSQL rewrites the table in one statement and reports once it is done.
        assert!(done < total, "the child must be killed mid-copy, not after it ({done} of {total})");
    }
    eventually(30, "the child holds its migration transaction open", || transaction_open(db));
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

/// One test per backend for each scenario.
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

on_both_backends!(migration_killed_halfway_leaves_the_old_version, long_rewrite_reports_progress);

fn migration_killed_halfway_leaves_the_old_version(backend: Backend) {
    let db = TestDb::fresh(backend);
    let old = model(OLD);
    assert!(db.migrate(&old, opts()).unwrap().applied);
    seed(&db, ROWS);
    let before = db.dump();
    assert_eq!(before["items"].len(), ROWS);
    let tables_before = tables(&db);

    run_child_and_kill_it_mid_migration(&db);

    // The dead session's transaction is gone (PostgreSQL notices the closed
    // connection and rolls back; SQLite ignores the uncommitted WAL frames).
    eventually(30, "the killed migration's transaction is over", || !transaction_open(&db));
    assert_eq!(db.schema_differences(&old), Vec::<String>::new(), "the database is at the old version");
    assert_eq!(tables(&db), tables_before, "no half-built table remains");
    if backend == Backend::Sqlite {
        assert_eq!(db.query("PRAGMA integrity_check"), [[("integrity_check".to_string(), Some("ok".to_string()))].into()]);
        assert_eq!(db.query("SELECT * FROM pragma_foreign_key_check"), []);
    }
    assert_eq!(db.dump(), before, "every row as it was");
    assert_eq!(db.history().len(), 1, "no migration was recorded");

    // And the migration simply runs again.
    let new = model(&new_spec());
    let r = db.migrate(&new, opts()).unwrap();
    assert!(r.applied, "{r:#?}");
    assert_eq!(db.schema_differences(&new), Vec::<String>::new());
    assert_eq!(db.dump(), before, "the same rows, `n` now text with the same digits");
}

fn long_rewrite_reports_progress(backend: Backend) {
    let db = TestDb::fresh(backend);
    assert!(db.migrate(&model(OLD), opts()).unwrap().applied);
    seed(&db, ROWS);
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink = seen.clone();
    let progress: charter_store::ProgressFn = Arc::new(move |p| sink.lock().unwrap().push(p));
    let r = db.migrate(&model(&new_spec()), MigrateOptions { progress: Some(progress), ..opts() }).unwrap();
    assert!(r.applied, "{r:#?}");
    let seen = seen.lock().unwrap();
    let total = ROWS as u64;
    assert!(seen.len() >= 2, "a long rewrite reports along the way, not only at the end: {seen:?}");
    assert!(seen.iter().all(|p| p.table == "items" && p.total == total), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].done < w[1].done), "done only rises: {seen:?}");
    assert_eq!(seen.last().unwrap().done, total, "the last report is the whole table");
    if backend == Backend::Sqlite {
        // The rebuild copies in chunks and reports each.
        assert!(seen.iter().any(|p| p.done > 0 && p.done < total), "some report comes mid-way: {seen:?}");
    }
}
