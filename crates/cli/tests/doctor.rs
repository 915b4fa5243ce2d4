//! `charter doctor`: every item of the scorecard moves with the setting it
//! checks, against a real database, real backups and a real server.

mod common;

use common::{app_dir, run, serve, serve_with, text};
use std::path::Path;

const PROD_ENV: &str = "CHARTER_SECRET=9d0f1c7a2b6e4f8a0c3d5e7f9a1b3c5d7e9f0a2b4c6d8e0f\n\
CHARTER_TRUSTED_PROXIES=127.0.0.1/32\n\
CHARTER_PUBLIC_URL=https://tasks.example.com\n\
CHARTER_SMTP_URL=smtps://mailer:pw@mail.example.com\n\
CHARTER_METRICS_TOKEN=metrics-token-0123456789\n";

/// The scorecard as JSON, and the exit code.
fn doctor(dir: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["doctor", "--format", "json"];
    args.extend_from_slice(extra);
    let out = run(dir, &args, None);
    let card = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("not JSON: {}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.code().unwrap(), card)
}

fn status<'a>(card: &'a serde_json::Value, name: &str) -> &'a str {
    card["items"].as_array().unwrap().iter().find(|i| i["name"] == name).unwrap_or_else(|| panic!("no item {name}: {card}"))["status"]
        .as_str()
        .unwrap()
}

fn detail(card: &serde_json::Value, name: &str) -> String {
    card["items"].as_array().unwrap().iter().find(|i| i["name"] == name).map(|i| i["detail"].to_string()).unwrap_or_default()
}

#[test]
fn a_new_app_fails_each_missing_setting_with_its_fix() {
    let dir = app_dir();
    let (code, card) = doctor(dir.path(), &[]);
    assert_eq!(code, 1);
    for name in ["secret", "tls", "public url", "mail", "database"] {
        assert_eq!(status(&card, name), "fail", "{name}: {card}");
    }
    assert_eq!(status(&card, "spec"), "pass");
    for item in card["items"].as_array().unwrap().iter().filter(|i| i["status"] == "fail") {
        assert!(item["fix"].as_str().is_some_and(|f| !f.is_empty()), "a failure without a fix: {item}");
    }
    // Human output: one line per item, and the tally.
    let out = run(dir.path(), &["doctor"], None);
    let human = text(&out.stdout);
    assert!(human.contains("FAIL  secret") && human.contains("fix: set it to at least 32 random bytes"), "{human}");
    assert!(human.contains("failed"), "{human}");
    assert!(!human.contains("9d0f1c7a"), "never prints a secret");
}

#[test]
fn a_production_configuration_passes_until_something_breaks() {
    let dir = app_dir();
    let d = dir.path();
    std::fs::write(d.join(".env"), PROD_ENV).unwrap();
    let out = run(d, &["migrate"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (code, card) = doctor(d, &[]);
    assert_eq!(status(&card, "backups"), "fail", "no backup yet: {card}");
    assert_eq!(code, 1);

    let out = run(d, &["backup"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (code, card) = doctor(d, &[]);
    assert_eq!(card["failed"], 0, "{card:#}");
    assert_eq!(code, 0, "{card:#}");
    let human = text(&run(d, &["doctor"], None).stdout);
    assert!(!human.contains("9d0f1c7a") && !human.contains("metrics-token") && !human.contains("mailer:pw"), "no secret printed: {human}");

    // A damaged newest backup.
    let backup = std::fs::read_dir(d.join("data/backups")).unwrap().next().unwrap().unwrap().path();
    let conn = rusqlite::Connection::open(&backup).unwrap();
    conn.execute("DELETE FROM _charter_migrations", []).unwrap();
    drop(conn);
    let (code, card) = doctor(d, &[]);
    assert_eq!((code, status(&card, "backups")), (1, "fail"), "{card:#}");
    assert!(detail(&card, "backups").contains("does not verify"), "{card:#}");

    // Settings that slipped.
    std::fs::write(
        d.join(".env"),
        PROD_ENV
            .replace("https://tasks", "http://tasks")
            .replace("smtps://", "smtp://")
            .replace("CHARTER_SECRET=9d0f1c7a2b6e4f8a0c3d5e7f9a1b3c5d7e9f0a2b4c6d8e0f", "CHARTER_SECRET=too-short"),
    )
    .unwrap();
    let (_, card) = doctor(d, &[]);
    for name in ["secret", "public url", "mail"] {
        assert_eq!(status(&card, name), "fail", "{name}: {card:#}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("data/app.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, card) = doctor(d, &[]);
        assert_eq!(status(&card, "database file"), "fail", "{card:#}");
    }
    // A .env in git is a leaked secret.
    let git = |args: &[&str]| std::process::Command::new("git").current_dir(d).args(args).output().expect("git runs");
    assert!(git(&["init", "-q"]).status.success());
    assert!(git(&["add", ".env"]).status.success());
    let (_, card) = doctor(d, &[]);
    assert_eq!(status(&card, "secrets"), "fail", "{card:#}");
}

#[test]
fn a_running_instance_is_checked_from_outside() {
    let dir = app_dir();
    let d = dir.path();
    std::fs::write(d.join(".env"), PROD_ENV).unwrap();
    let prod = serve_with(d, &[]);
    let url = format!("http://127.0.0.1:{}", prod.port);
    let (_, card) = doctor(d, &["--url", &url]);
    for name in ["health", "headers", "exposure", "metrics access"] {
        assert_eq!(status(&card, name), "pass", "{name}: {card:#}");
    }
    assert_eq!(status(&card, "https"), "fail", "plain HTTP: {card:#}");
    drop(prod);

    let dev = serve(d);
    let (code, card) = doctor(d, &["--url", &format!("http://127.0.0.1:{}", dev.port)]);
    assert_eq!(code, 1);
    assert_eq!(status(&card, "exposure"), "fail", "{card:#}");
    assert!(detail(&card, "exposure").contains("/_dev/mail"), "{card:#}");
    drop(dev);

    let (_, card) = doctor(d, &["--url", &url]);
    assert_eq!(status(&card, "health"), "fail", "nothing answers now: {card:#}");
}
