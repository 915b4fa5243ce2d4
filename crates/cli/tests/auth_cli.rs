//! The auth commands and `serve` as a user runs them: the real binary, a
//! real server, mail read with `charter mail`, and its log checked for
//! secrets.

mod common;

use common::{app_dir, command, http, run, serve, text};
use std::time::{Duration, Instant};

const PW: &str = "correct-horse-battery-9";

#[test]
fn prod_without_a_secret_refuses_to_start_and_says_why() {
    let dir = app_dir();
    let out = command(dir.path()).args(["serve", "--port", "0"]).env("CHARTER_ENV", "prod").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("refusing to start in prod") && err.contains("CHARTER_SECRET is not set"), "{err}");
}

#[test]
fn user_create_sessions_revoke_and_mail() {
    let dir = app_dir();
    let out = run(
        dir.path(),
        &["user", "create", "--email", "Boss@Example.com", "--role", "admin", "--password-stdin"],
        Some(&format!("{PW}\n")),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("created user boss@example.com"), "{}", text(&out.stdout));
    assert!(!text(&out.stdout).contains(PW));
    let again = run(dir.path(), &["user", "create", "--email", "boss@example.com"], None);
    assert_eq!(again.status.code(), Some(1), "the address is taken");
    let bad_role = run(dir.path(), &["user", "create", "--email", "x@example.com", "--role", "owner"], None);
    assert_eq!(bad_role.status.code(), Some(1));
    assert!(text(&bad_role.stderr).contains("not a role"), "{}", text(&bad_role.stderr));
    let weak = run(dir.path(), &["user", "create", "--email", "y@example.com", "--password-stdin"], Some("password1234\n"));
    assert_eq!(weak.status.code(), Some(1), "the password policy holds here too");

    let out = run(dir.path(), &["sessions", "revoke", "--all"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("ended 0 sessions"));
    let out = run(dir.path(), &["sessions", "revoke", "--user", "nobody@example.com"], None);
    assert_eq!(out.status.code(), Some(1));
    let out = run(dir.path(), &["sessions", "revoke"], None);
    assert_eq!(out.status.code(), Some(2), "--user or --all is required");
    let out = run(dir.path(), &["mail"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("empty"));
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|_| panic!("not JSON: {s}"))
}

fn token_in(mail: &str) -> String {
    let start = mail.find("token=").expect("a token link") + "token=".len();
    mail[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

#[test]
fn the_readme_walkthrough_works_and_the_log_holds_no_secret() {
    let dir = app_dir();
    let server = serve(dir.path());
    let p = server.port;
    let (s, _, _) =
        http(p, "POST", "/api/auth/signup", Some(&format!(r#"{{"email": "me@example.com", "password": "{PW}"}}"#)), &[]).unwrap();
    assert_eq!(s, 201);
    let mail = text(&run(dir.path(), &["mail"], None).stdout);
    assert!(mail.contains("To: me@example.com") && mail.contains("/verify?token="), "{mail}");
    let verify = token_in(&mail);
    assert_eq!(http(p, "POST", "/api/auth/verify", Some(&format!(r#"{{"token": "{verify}"}}"#)), &[]).unwrap().0, 200);
    let (s, _, b) =
        http(p, "POST", "/api/auth/login", Some(&format!(r#"{{"email": "me@example.com", "password": "{PW}"}}"#)), &[]).unwrap();
    assert_eq!(s, 200, "{b}");
    let token = json(&b)["token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");
    let (s, _, b) = http(p, "GET", "/api/auth/sessions", None, &[("Authorization", &bearer)]).unwrap();
    assert_eq!(s, 200);
    assert_eq!(json(&b)["items"].as_array().unwrap().len(), 1);
    let (s, head, b) = http(
        p,
        "POST",
        "/api/auth/login",
        Some(&format!(r#"{{"email": "me@example.com", "password": "{PW}", "session": "cookie"}}"#)),
        &[],
    )
    .unwrap();
    assert_eq!(s, 200);
    let cookie = head.lines().find_map(|l| l.strip_prefix("set-cookie: ")).unwrap().split(';').next().unwrap().to_string();
    let csrf = json(&b)["csrf_token"].as_str().unwrap().to_string();
    assert_eq!(http(p, "POST", "/api/auth/logout-all", None, &[("Authorization", &bearer)]).unwrap().0, 204);
    assert_eq!(http(p, "GET", "/api/auth/me", None, &[("Authorization", &bearer)]).unwrap().0, 401);
    assert_eq!(http(p, "GET", "/api/auth/me", None, &[("Cookie", &cookie)]).unwrap().0, 401, "everywhere means the cookie too");
    assert_eq!(http(p, "POST", "/api/auth/password/forgot", Some(r#"{"email": "me@example.com"}"#), &[]).unwrap().0, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    let reset = loop {
        let mail = text(&run(dir.path(), &["mail", "--limit", "1"], None).stdout);
        if mail.contains("/reset?token=") {
            break token_in(&mail);
        }
        assert!(Instant::now() < deadline, "no reset mail");
        std::thread::sleep(Duration::from_millis(20));
    };
    let new_pw = "a-brand-new-passphrase-4";
    let body = format!(r#"{{"token": "{reset}", "password": "{new_pw}"}}"#);
    assert_eq!(http(p, "POST", "/api/auth/password/reset", Some(&body), &[]).unwrap().0, 204);
    assert_eq!(
        http(p, "POST", "/api/auth/login", Some(&format!(r#"{{"email": "me@example.com", "password": "{new_pw}"}}"#)), &[]).unwrap().0,
        200
    );
    let (s, _, b) = http(p, "GET", "/_dev/mail", None, &[]).unwrap();
    assert_eq!(s, 200);
    assert_eq!(json(&b)["items"].as_array().unwrap().len(), 2);

    let log_path = server.log.clone();
    drop(server);
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(log.contains("/api/auth/login"), "the log has the request lines: {log}");
    for secret in [PW, new_pw, token.as_str(), verify.as_str(), reset.as_str(), csrf.as_str(), cookie.split_once('=').unwrap().1] {
        assert!(!log.contains(secret), "the log holds a secret ({secret}): {log}");
    }
}
