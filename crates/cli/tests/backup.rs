//! `charter backup`, `verify-backup` and `restore` as an operator runs them:
//! the real binary on a real SQLite file and a real PostgreSQL database,
//! backing up under a running server that keeps taking writes.

mod common;

use common::{app_dir, http, run, serve, text};
use std::path::{Path, PathBuf};
use std::process::Output;

const PW: &str = "correct-horse-battery-9";

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn add_user(dir: &Path, email: &str) {
    ok(&run(dir, &["user", "create", "--email", email, "--password-stdin"], Some(&format!("{PW}\n"))));
}

/// The path `charter backup` printed first on its line.
fn backup_path(dir: &Path, stdout: &str) -> PathBuf {
    let printed = stdout.split(": ").next().expect("a path");
    dir.join(printed)
}

/// Signs up `n` people through the running server (under the sign-up rate
/// limit of 10 per address), each answered 201 or 202.
fn sign_up(port: u16, prefix: &str, n: usize) {
    for i in 0..n {
        let body = format!(r#"{{"email": "{prefix}{i}@example.com", "password": "{PW}"}}"#);
        let status = http(port, "POST", "/api/auth/signup", Some(&body), &[]).map(|r| r.0);
        assert!(matches!(status, Some(201 | 202)), "sign-up {i} during the backup: {status:?}");
    }
}

/// The rows in the users table, read with the backend's own client.
fn count_users(dir: &Path, postgres: Option<&str>) -> i64 {
    let sql = "SELECT count(*) FROM users";
    match postgres {
        None => rusqlite::Connection::open(dir.join("data/app.db")).unwrap().query_row(sql, [], |r| r.get(0)).unwrap(),
        Some(url) => psql(url, sql).trim().parse().unwrap(),
    }
}

fn count_users_where(dir: &Path, postgres: Option<&str>, email: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM users WHERE email = '{email}'");
    match postgres {
        None => rusqlite::Connection::open(dir.join("data/app.db")).unwrap().query_row(&sql, [], |r| r.get(0)).unwrap(),
        Some(url) => psql(url, &sql).trim().parse().unwrap(),
    }
}

fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "{sql}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// The whole cycle on one backend (`postgres`: the URL of an empty database,
/// written to the app's `.env`).
fn cycle(postgres: Option<&str>) {
    let dir = app_dir();
    let d = dir.path();
    if let Some(url) = postgres {
        std::fs::write(d.join(".env"), format!("CHARTER_DATABASE_URL={url}\n")).unwrap();
    }
    add_user(d, "first@example.com");
    add_user(d, "second@example.com");

    // Online: the server keeps answering writes while the backup runs.
    let server = serve(d);
    let port = server.port;
    let writer = std::thread::spawn(move || sign_up(port, "during", 8));
    let out = run(d, &["backup"], None);
    writer.join().unwrap();
    let stdout = ok(&out);
    let backup = backup_path(d, &stdout);
    assert!(backup.starts_with(d.join("data/backups")), "{stdout}");
    assert!(stdout.contains("rows, taken"), "{stdout}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600, "owner-only");
    }
    let in_backup = {
        let v = ok(&run(d, &["verify-backup", backup.to_str().unwrap()], None));
        assert!(v.contains(": ok ("), "{v}");
        v
    };

    // A restore is refused while the server runs on this data.
    let refused = run(d, &["restore", backup.to_str().unwrap()], None);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stdout));
    assert!(text(&refused.stderr).contains("server is running"), "{}", text(&refused.stderr));
    drop(server);

    // Later changes, then the restore takes the database back to the backup.
    add_user(d, "after@example.com");
    let before_restore = count_users(d, postgres);
    let out = ok(&run(d, &["restore", backup.to_str().unwrap()], None));
    assert!(out.contains("restored") && out.contains("kept"), "{out}");
    let restored = count_users(d, postgres);
    // The sign-ups ran during the backup: some may be in it.
    assert!((2..before_restore).contains(&restored), "{restored} of {before_restore} users; {in_backup}");
    assert_eq!(count_users_where(d, postgres, "after@example.com"), 0, "the user added after the backup is gone");
    assert_eq!(count_users_where(d, postgres, "second@example.com"), 1, "the users made before the backup are there");
    // The database as it was is kept.
    match postgres {
        None => {
            let kept = std::fs::read_dir(d.join("data/backups"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("pre-restore-"))
                .expect("the previous database is kept");
            let conn = rusqlite::Connection::open(&kept).unwrap();
            let n: i64 = conn.query_row("SELECT count(*) FROM users WHERE email = 'after@example.com'", [], |r| r.get(0)).unwrap();
            assert_eq!(n, 1, "the kept database has the later user");
        }
        Some(url) => {
            let kept = out.lines().find_map(|l| l.strip_prefix("the database as it was is kept: ")).expect("named").trim().to_string();
            let kept_url = format!("{}/{kept}", url.rsplit_once('/').unwrap().0);
            assert_eq!(psql(&kept_url, "SELECT count(*) FROM users WHERE email = 'after@example.com'").trim(), "1");
            psql(&format!("{}/postgres", url.rsplit_once('/').unwrap().0), &format!("DROP DATABASE \"{kept}\""));
        }
    }
    // The restored app serves, and its users can log in.
    let server = serve(d);
    let login =
        http(server.port, "POST", "/api/auth/login", Some(&format!(r#"{{"email": "first@example.com", "password": "{PW}"}}"#)), &[])
            .map(|r| r.0);
    assert_eq!(login, Some(200));
    drop(server);

    // A backup whose rows were changed does not verify, and is not restored.
    let tampered = d.join("tampered");
    std::fs::copy(&backup, &tampered).unwrap();
    match postgres {
        None => {
            let conn = rusqlite::Connection::open(&tampered).unwrap();
            conn.execute("UPDATE users SET email = 'mallory@example.com' WHERE email = 'second@example.com'", []).unwrap();
        }
        Some(_) => {
            let sql = std::fs::read_to_string(&tampered).unwrap();
            assert!(sql.contains("second@example.com"));
            std::fs::write(&tampered, sql.replace("second@example.com", "mallory@example.com")).unwrap();
        }
    }
    let out = run(d, &["verify-backup", tampered.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("table users: its rows differ"), "{}", text(&out.stderr));
    let out = run(d, &["restore", tampered.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("does not verify, so nothing was restored"), "{}", text(&out.stderr));
    assert_eq!(count_users(d, postgres), restored, "a refused restore changes nothing");

    // A truncated backup does not verify either.
    let bytes = std::fs::read(&backup).unwrap();
    std::fs::write(&tampered, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(d, &["verify-backup", tampered.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));

    // Never overwritten.
    let out = run(d, &["backup", "--to", backup.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("never overwrites"), "{}", text(&out.stderr));
}

#[test]
fn backup_verify_and_restore_on_sqlite() {
    cycle(None);
}

#[test]
fn backup_verify_and_restore_on_postgres() {
    let admin = std::env::var("CHARTER_TEST_POSTGRES_URL").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| {
        panic!("CHARTER_TEST_POSTGRES_URL is not set: the PostgreSQL backup test needs a server; run ./scripts/test, which starts one")
    });
    let name = format!("charter_backup_{}", std::process::id());
    psql(&admin, &format!("DROP DATABASE IF EXISTS \"{name}\""));
    psql(&admin, &format!("CREATE DATABASE \"{name}\""));
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    cycle(Some(&url));
    psql(&admin, &format!("DROP DATABASE \"{name}\" WITH (FORCE)"));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = app_dir();
    let d = dir.path();
    let out = run(d, &["backup"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no database"), "{}", text(&out.stderr));
    std::fs::write(d.join("notes.txt"), "hello").unwrap();
    let out = run(d, &["verify-backup", "notes.txt"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not a charter backup"), "{}", text(&out.stderr));
    let out = run(d, &["verify-backup", "missing.db"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot open backup"), "{}", text(&out.stderr));
    let out = run(d, &["restore", "missing.db", "--live"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not supported yet"), "{}", text(&out.stderr));
}
