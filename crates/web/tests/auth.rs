//! Auth over real HTTP (http-api.md, Auth): a fresh server and database per
//! test, mail read from the captured outbox, time moved with the test clock.
//!
//! Every response body read here goes through `body`, which fails the test
//! if it holds SQL or driver text.

use charter_app::Profile;
use charter_testkit::{spawn_app, spawn_app_with, TestApp};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

const TASKBOARD: &str = include_str!("../../../examples/taskboard/app.md");
const PW: &str = "correct-horse-battery-9";
const PW2: &str = "another-long-passphrase-7";

fn spec(settings: &[(&str, &str)]) -> String {
    let mut s = TASKBOARD.to_string();
    for (from, to) in settings {
        assert!(s.contains(from), "the example has `{from}`");
        s = s.replace(from, to);
    }
    s
}

/// Words that would mean a database or driver message leaked into a body.
const LEAKS: &[&str] = &[
    "SELECT ",
    "INSERT ",
    "UPDATE _",
    "DELETE FROM",
    "sqlite",
    "SQLITE",
    "rusqlite",
    "constraint failed",
    "_charter_",
    "no such table",
    "syntax error",
    "panicked",
];

/// Runs a test on SQLite and on PostgreSQL (the server `./scripts/test`
/// starts; without it the PostgreSQL half fails rather than passing silently).
macro_rules! both {
    ($name:ident, $spec:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                super::$name(charter_testkit::spawn_app(&$spec).await).await
            }

            #[tokio::test]
            async fn postgres() {
                super::$name(charter_testkit::spawn_app_postgres(&$spec).await).await
            }
        }
    };
}

both!(signup_verify_login_sessions_and_logout_everywhere, TASKBOARD);
both!(unknown_email_and_wrong_password_get_the_same_answer, TASKBOARD);
both!(signup_with_a_taken_email_looks_fresh_and_touches_nothing, TASKBOARD);
both!(tokens_expire_and_a_newer_link_voids_the_older, TASKBOARD);
both!(sessions_expire_on_idle_and_on_lifetime_and_slide_last_seen, TASKBOARD);
both!(revoking_one_session_bites_on_the_next_request_and_others_are_404, TASKBOARD);
both!(forgot_and_reset_revoke_everything_and_tokens_are_single_use, TASKBOARD);
both!(reset_links_expire_after_an_hour_and_reset_verifies_the_address, TASKBOARD);
both!(password_change_needs_the_current_password_and_ends_other_sessions, TASKBOARD);
both!(
    failed_logins_are_limited_with_retry_after_and_the_lock_lifts,
    &spec(&[("- signup: open", "- signup: open\n- login attempts: 3 per 10 minutes")])
);
both!(admins_end_a_users_sessions_and_read_the_audit_log, STAFF);
both!(expired_sessions_are_purged, &spec(&[("email verification: required", "email verification: off")]));
both!(
    optional_verification_lets_unverified_users_in_and_still_mails,
    &spec(&[("email verification: required", "email verification: optional")])
);

async fn body(r: Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.expect("body");
    for leak in LEAKS {
        assert!(!text.contains(leak), "a response body holds `{leak}`: {text}");
    }
    let v = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, v)
}

fn without_request_id(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("request_id");
    }
    v
}

async fn get(app: &TestApp, path: &str, token: &str) -> (StatusCode, Value) {
    body(app.client.get(app.at(path)).bearer_auth(token).send().await.unwrap()).await
}

async fn post_auth(app: &TestApp, path: &str, token: &str, v: Value) -> (StatusCode, Value) {
    body(app.client.post(app.at(path)).bearer_auth(token).json(&v).send().await.unwrap()).await
}

async fn post(app: &TestApp, path: &str, v: Value) -> (StatusCode, Value) {
    body(app.post(path, v).await).await
}

async fn signup_verify_login_sessions_and_logout_everywhere(app: TestApp) {
    let (s, b) = post(&app, "/api/auth/signup", json!({"email": "Alice@Example.com", "password": PW, "name": "Alice"})).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["user"]["email"], "alice@example.com", "addresses are stored normalised");
    assert_eq!(b["user"]["verified"], false);
    assert_eq!(b["user"]["role"], "member", "the default role");
    assert!(b.get("token").is_none(), "with verification required, signup does not sign in");
    assert!(b["user"].get("password").is_none() && !b.to_string().contains("argon2"));

    // Login is refused until the address is verified, but only after the right password.
    let (s, b) = post(&app, "/api/auth/login", json!({"email": "alice@example.com", "password": PW})).await;
    assert_eq!((s, b["type"].as_str().unwrap()), (StatusCode::FORBIDDEN, "https://charter.dev/problems/email-not-verified"));

    let mail = app.mail_to("alice@example.com", "Confirm").await;
    assert!(mail.text.contains(&format!("{}/verify?token=", app.url)), "the link opens the verify page: {}", mail.text);
    assert!(mail.html.contains("token="));
    let token = mail.token();
    let (s, b) = post(&app, "/api/auth/verify", json!({"token": token})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["user"]["verified"], true);
    // Single use.
    let (s, b) = post(&app, "/api/auth/verify", json!({"token": token})).await;
    assert_eq!((s, b["type"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "https://charter.dev/problems/invalid-token"));

    let (s, b) = body(
        app.client
            .post(app.at("/api/auth/login"))
            .header("user-agent", "phone/1.0")
            .json(&json!({"email": "ALICE@example.com", "password": PW}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let t1 = b["token"].as_str().unwrap().to_string();
    assert!(t1.len() >= 22 && b["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(b["user"]["email"], "alice@example.com");
    let t2 = app.login("alice@example.com", PW).await;

    let (s, b) = get(&app, "/api/auth/me", &t1).await;
    assert_eq!((s, &b["user"]["name"]), (StatusCode::OK, &json!("Alice")));
    let (s, b) = get(&app, "/api/auth/sessions", &t2).await;
    assert_eq!(s, 200);
    let items = b["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items.iter().filter(|i| i["current"] == true).count(), 1);
    assert!(items.iter().any(|i| i["user_agent"] == "phone/1.0" && i["ip"] == "127.0.0.1" && i["current"] == false));
    for i in items {
        for k in ["id", "created_at", "last_seen_at", "user_agent", "ip", "current"] {
            assert!(i.get(k).is_some(), "{k} in {i}");
        }
    }

    let r = app.client.post(app.at("/api/auth/logout-all")).bearer_auth(&t2).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["clear-site-data"], "\"cookies\", \"storage\"");
    assert_eq!(get(&app, "/api/auth/me", &t1).await.0, 401, "logout-all ends the other session");
    assert_eq!(get(&app, "/api/auth/me", &t2).await.0, 401, "and this one");
}

async fn unknown_email_and_wrong_password_get_the_same_answer(app: TestApp) {
    app.signup_and_login("bob@example.com", PW).await;
    let (s1, b1) = post(&app, "/api/auth/login", json!({"email": "bob@example.com", "password": "wrong-password-123"})).await;
    let (s2, b2) = post(&app, "/api/auth/login", json!({"email": "nobody@example.com", "password": "wrong-password-123"})).await;
    assert_eq!(s1, 401);
    assert_eq!((s1, without_request_id(b1)), (s2, without_request_id(b2)));
}

async fn signup_with_a_taken_email_looks_fresh_and_touches_nothing(app: TestApp) {
    let (s1, first) = post(&app, "/api/auth/signup", json!({"email": "carol@example.com", "password": PW})).await;
    assert_eq!(s1, 201);
    let mails = app.outbox().await.len();
    let (s2, second) = post(&app, "/api/auth/signup", json!({"email": "Carol@example.com", "password": PW2, "name": "Mallory"})).await;
    assert_eq!(s2, 201, "same status as a fresh signup");
    let keys = |v: &Value| v["user"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&first), keys(&second), "same shape");
    assert_eq!(second["user"]["verified"], false);
    assert_ne!(first["user"]["id"], second["user"]["id"]);
    assert_eq!(app.outbox().await.len(), mails, "no mail to the owner's address");
    // The account was not touched: the owner's password still works, the squatter's does not.
    let token = app.mail_to("carol@example.com", "Confirm").await.token();
    assert_eq!(post(&app, "/api/auth/verify", json!({"token": token})).await.0, 200);
    app.login("carol@example.com", PW).await;
    assert_eq!(post(&app, "/api/auth/login", json!({"email": "carol@example.com", "password": PW2})).await.0, 401);
}

async fn tokens_expire_and_a_newer_link_voids_the_older(app: TestApp) {
    post(&app, "/api/auth/signup", json!({"email": "dan@example.com", "password": PW})).await;
    let old = app.mail_to("dan@example.com", "Confirm").await.token();
    let (s, resent) = post(&app, "/api/auth/verify/resend", json!({"email": "dan@example.com"})).await;
    let (s2, unknown) = post(&app, "/api/auth/verify/resend", json!({"email": "nobody@example.com"})).await;
    assert_eq!((s, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(without_request_id(resent), without_request_id(unknown), "one body whether or not the address exists");
    // Wait for the second mail (sent in the background).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let new = loop {
        let t = app.mail_to("dan@example.com", "Confirm").await.token();
        if t != old {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "no second verification mail");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let (s, b) = post(&app, "/api/auth/verify", json!({"token": old})).await;
    assert_eq!(
        (s, b["type"].as_str().unwrap()),
        (StatusCode::BAD_REQUEST, "https://charter.dev/problems/invalid-token"),
        "the older link is void"
    );
    app.clock.advance(24 * 3600 + 1);
    let (s, expired) = post(&app, "/api/auth/verify", json!({"token": new})).await;
    assert_eq!(s, 400, "expired after 24 hours");
    let (_, forged) = post(&app, "/api/auth/verify", json!({"token": "forged"})).await;
    assert_eq!(without_request_id(expired), without_request_id(forged), "bad, used and expired look the same");
}

async fn sessions_expire_on_idle_and_on_lifetime_and_slide_last_seen(app: TestApp) {
    let token = app.signup_and_login("erin@example.com", PW).await;
    let first_seen = get(&app, "/api/auth/sessions", &token).await.1["items"][0]["last_seen_at"].clone();
    // Seen again within a minute: no write.
    app.clock.advance(30);
    assert_eq!(get(&app, "/api/auth/sessions", &token).await.1["items"][0]["last_seen_at"], first_seen);
    // After a minute, last_seen_at moves.
    app.clock.advance(60);
    let (_, b) = get(&app, "/api/auth/sessions", &token).await;
    assert_ne!(b["items"][0]["last_seen_at"], first_seen, "last_seen_at slides");
    // Used every 6 days, the session outlives the 7-day idle timeout...
    for _ in 0..4 {
        app.clock.advance(6 * 24 * 3600);
        assert_eq!(get(&app, "/api/auth/me", &token).await.0, 200);
    }
    // ...but not its 30-day lifetime.
    app.clock.advance(6 * 24 * 3600);
    assert_eq!(get(&app, "/api/auth/me", &token).await.0, 401);

    let idle = app.login("erin@example.com", PW).await;
    app.clock.advance(7 * 24 * 3600);
    assert_eq!(get(&app, "/api/auth/me", &idle).await.0, 401, "idle for 7 days");
}

async fn revoking_one_session_bites_on_the_next_request_and_others_are_404(app: TestApp) {
    let a1 = app.signup_and_login("fay@example.com", PW).await;
    let a2 = app.login("fay@example.com", PW).await;
    let b1 = app.signup_and_login("gus@example.com", PW).await;
    let sessions = get(&app, "/api/auth/sessions", &a1).await.1;
    let other = sessions["items"].as_array().unwrap().iter().find(|i| i["current"] == false).unwrap()["id"].as_str().unwrap().to_string();
    // Gus cannot end Fay's session, and cannot tell it exists.
    let r = app.client.delete(app.at(&format!("/api/auth/sessions/{other}"))).bearer_auth(&b1).send().await.unwrap();
    assert_eq!(body(r).await.0, 404);
    assert_eq!(get(&app, "/api/auth/me", &a2).await.0, 200);
    let r = app.client.delete(app.at(&format!("/api/auth/sessions/{other}"))).bearer_auth(&a1).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get(&app, "/api/auth/me", &a2).await.0, 401);
    assert_eq!(get(&app, "/api/auth/me", &a1).await.0, 200);
    let r = app.client.post(app.at("/api/auth/logout")).bearer_auth(&a1).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get(&app, "/api/auth/me", &a1).await.0, 401, "logout bites at once");
    assert_eq!(get(&app, "/api/auth/me", &b1).await.0, 200, "other users are untouched");
    // Logging in with a live token replaces that session.
    let r = app
        .client
        .post(app.at("/api/auth/login"))
        .bearer_auth(&b1)
        .json(&json!({"email": "gus@example.com", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get(&app, "/api/auth/me", &b1).await.0, 401, "the token presented with a login is revoked");
}

#[tokio::test]
async fn cookie_sessions_need_csrf_on_unsafe_requests_and_bearer_does_not() {
    let app = spawn_app(TASKBOARD).await;
    app.signup_and_login("hal@example.com", PW).await;
    let r = app.post("/api/auth/login", json!({"email": "hal@example.com", "password": PW, "session": "cookie"})).await;
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("session="), "dev cookie name: {cookie}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP in dev");
    let (_, b) = body(r).await;
    assert!(b.get("token").is_none(), "a cookie login never puts the token in the body");
    let csrf = b["csrf_token"].as_str().unwrap().to_string();
    let pair = cookie.split(';').next().unwrap().to_string();

    let r = app.client.get(app.at("/api/auth/me")).header("cookie", &pair).send().await.unwrap();
    let (s, me) = body(r).await;
    assert_eq!(s, 200);
    assert_eq!(me["csrf_token"], csrf.as_str());
    let logout = |headers: Vec<(&'static str, String)>| {
        let mut req = app.client.post(app.at("/api/auth/logout")).header("cookie", &pair);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let (s, b) = body(logout(vec![]).await.unwrap()).await;
    assert_eq!((s, b["type"].as_str().unwrap()), (StatusCode::FORBIDDEN, "https://charter.dev/problems/csrf"));
    assert_eq!(body(logout(vec![("x-csrf-token", "forged".into())]).await.unwrap()).await.0, 403);
    assert_eq!(body(logout(vec![("x-csrf-token", csrf.clone()), ("sec-fetch-site", "cross-site".into())]).await.unwrap()).await.0, 403);
    let r = logout(vec![("x-csrf-token", csrf.clone()), ("sec-fetch-site", "same-origin".into())]).await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let r = app.client.get(app.at("/api/auth/me")).header("cookie", &pair).send().await.unwrap();
    assert_eq!(r.status(), 401, "the cookie's session is gone");

    // After a rotation, tokens made with the previous secret still pass.
    let rotated = spawn_app_with(TASKBOARD, |c| {
        c.previous_secret = Some(c.secret.clone());
        c.secret = charter_app::Secret::new(b"a-brand-new-secret-of-32-bytes-at-least".to_vec());
    })
    .await;
    let old_secret = charter_app::AppConfig::dev("http://x").secret;
    assert!(rotated.app.csrf_ok("s1", &charter_app::auth::secrets::csrf_token(old_secret.expose(), "s1")));
    assert!(!rotated.app.csrf_ok("s1", &charter_app::auth::secrets::csrf_token(b"some-other-secret", "s1")));

    // Bearer requests need no CSRF token.
    let token = app.login("hal@example.com", PW).await;
    let r = app.client.post(app.at("/api/auth/logout")).bearer_auth(&token).header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn outside_dev_the_cookie_is_host_prefixed_and_secure() {
    let app = spawn_app_with(&spec(&[("email verification: required", "email verification: off")]), |c| c.profile = Profile::Prod).await;
    let r = app.post("/api/auth/signup", json!({"email": "ivy@example.com", "password": PW, "session": "cookie"})).await;
    assert_eq!(r.status(), 201);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("__Host-session=") && cookie.contains("; Secure") && cookie.contains("Path=/") && !cookie.contains("Domain"),
        "{cookie}"
    );
    let value = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_string();
    let r = app.client.get(app.at("/api/auth/me")).header("cookie", format!("__Host-session={value}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A plain `session` cookie (which a sibling site could plant) is not read in prod.
    let r = app.client.get(app.at("/api/auth/me")).header("cookie", format!("session={value}")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.client.get(app.at("/_dev/mail")).send().await.unwrap().status(), 404, "no /_dev in prod");
    assert_eq!(app.client.get(app.at("/metrics")).send().await.unwrap().status(), 404, "no /metrics in prod without a token");
}

async fn forgot_and_reset_revoke_everything_and_tokens_are_single_use(app: TestApp) {
    let t1 = app.signup_and_login("jan@example.com", PW).await;
    let t2 = app.login("jan@example.com", PW).await;
    let (s, known) = post(&app, "/api/auth/password/forgot", json!({"email": "JAN@example.com"})).await;
    let (s2, unknown) = post(&app, "/api/auth/password/forgot", json!({"email": "nobody@example.com"})).await;
    assert_eq!((s, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(without_request_id(known), without_request_id(unknown));
    let mail = app.mail_to("jan@example.com", "Reset").await;
    assert!(mail.text.contains(&format!("{}/reset?token=", app.url)));
    assert!(app.outbox().await.iter().all(|m| m.to != "nobody@example.com"));
    let token = mail.token();
    // A bad token is refused before the password is looked at.
    let (s, b) = post(&app, "/api/auth/password/reset", json!({"token": "forged", "password": "short"})).await;
    assert_eq!((s, b["type"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "https://charter.dev/problems/invalid-token"));
    let (s, b) = post(&app, "/api/auth/password/reset", json!({"token": token, "password": "1234567890"})).await;
    assert_eq!((s, b["errors"][0]["code"].as_str().unwrap()), (StatusCode::UNPROCESSABLE_ENTITY, "too_common"));
    let (s, _) = post(&app, "/api/auth/password/reset", json!({"token": token, "password": PW2})).await;
    assert_eq!(s, 204);
    assert_eq!(get(&app, "/api/auth/me", &t1).await.0, 401, "reset ends every session");
    assert_eq!(get(&app, "/api/auth/me", &t2).await.0, 401);
    assert_eq!(post(&app, "/api/auth/login", json!({"email": "jan@example.com", "password": PW})).await.0, 401);
    app.login("jan@example.com", PW2).await;
    assert_eq!(
        post(&app, "/api/auth/password/reset", json!({"token": token, "password": "yet-another-passphrase-3"})).await.0,
        400,
        "single use"
    );
}

async fn reset_links_expire_after_an_hour_and_reset_verifies_the_address(app: TestApp) {
    // An unverified account (a squatter's, say): the mailbox owner resets it.
    post(&app, "/api/auth/signup", json!({"email": "kim@example.com", "password": PW})).await;
    post(&app, "/api/auth/password/forgot", json!({"email": "kim@example.com"})).await;
    let stale = app.mail_to("kim@example.com", "Reset").await.token();
    app.clock.advance(3601);
    assert_eq!(post(&app, "/api/auth/password/reset", json!({"token": stale, "password": PW2})).await.0, 400, "expired after 1 h");
    post(&app, "/api/auth/password/forgot", json!({"email": "kim@example.com"})).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let fresh = loop {
        let t = app.mail_to("kim@example.com", "Reset").await.token();
        if t != stale {
            break t;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(post(&app, "/api/auth/password/reset", json!({"token": fresh, "password": PW2})).await.0, 204);
    let token = app.login("kim@example.com", PW2).await;
    assert_eq!(get(&app, "/api/auth/me", &token).await.1["user"]["verified"], true, "reset marks the address verified");
}

async fn password_change_needs_the_current_password_and_ends_other_sessions(app: TestApp) {
    let keep = app.signup_and_login("lea@example.com", PW).await;
    let other = app.login("lea@example.com", PW).await;
    let (s, b) =
        post_auth(&app, "/api/auth/password/change", &keep, json!({"current_password": "not-my-password-1", "new_password": PW2})).await;
    assert_eq!(s, 422);
    assert_eq!(b["errors"][0]["field"], "current_password");
    let (s, b) = post_auth(&app, "/api/auth/password/change", &keep, json!({"current_password": PW, "new_password": "short"})).await;
    assert_eq!((s, b["errors"][0]["field"].as_str().unwrap()), (StatusCode::UNPROCESSABLE_ENTITY, "new_password"));
    let (s, _) = post_auth(&app, "/api/auth/password/change", &keep, json!({"current_password": PW, "new_password": PW2})).await;
    assert_eq!(s, 204);
    assert_eq!(get(&app, "/api/auth/me", &keep).await.0, 200, "this session stays");
    assert_eq!(get(&app, "/api/auth/me", &other).await.0, 401, "the others end");
    app.login("lea@example.com", PW2).await;
}

async fn failed_logins_are_limited_with_retry_after_and_the_lock_lifts(app: TestApp) {
    app.signup_and_login("max@example.com", PW).await;
    for _ in 0..3 {
        assert_eq!(post(&app, "/api/auth/login", json!({"email": "max@example.com", "password": "wrong-password-1"})).await.0, 401);
    }
    let r = app.post("/api/auth/login", json!({"email": "max@example.com", "password": PW})).await;
    assert_eq!(r.status(), 429, "even the right password waits");
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=600).contains(&retry));
    assert_eq!(body(r).await.1["status"], 429);
    // The owner can still ask for a reset while login is throttled.
    assert_eq!(post(&app, "/api/auth/password/forgot", json!({"email": "max@example.com"})).await.0, 202);
    // Back-off, not a permanent lock.
    app.clock.advance(601);
    app.login("max@example.com", PW).await;
    let (_, m) = body(app.client.get(app.at("/metrics")).send().await.unwrap()).await;
    let m = m.as_str().unwrap().to_string();
    assert!(m.contains("charter_login_failures_total 3"), "{m}");
    assert!(m.contains("charter_rate_limited_total{bucket=\"login_"), "{m}");
    assert!(m.contains("http_requests_total{method=\"POST\",route=\"/api/auth/login\",status=\"401\"} 3"), "{m}");
    assert!(m.contains("charter_active_sessions"));
}

#[tokio::test]
async fn signup_forgot_and_resend_count_every_request() {
    let app = spawn_app(&spec(&[("- signup: open", "- signup: open\n- login attempts: 2 per 5 minutes")])).await;
    for (i, want) in [(0, 201), (1, 201), (2, 429)] {
        let r = app.post("/api/auth/signup", json!({"email": format!("u{i}@example.com"), "password": PW})).await;
        assert_eq!(r.status(), want);
        if want == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
    }
    for want in [202, 202, 429] {
        assert_eq!(post(&app, "/api/auth/password/forgot", json!({"email": "u0@example.com"})).await.0, want);
    }
    for want in [202, 202, 429] {
        assert_eq!(post(&app, "/api/auth/verify/resend", json!({"email": "x@example.com"})).await.0, want);
    }
}

#[tokio::test]
async fn a_huge_limit_effectively_lifts_it_and_signup_signs_in_when_verification_is_off() {
    // The benchmark's settings.
    let app =
        spawn_app(&spec(&[("email verification: required", "email verification: off\n- login attempts: 1000000 per 15 minutes")])).await;
    let (s, b) = post(&app, "/api/auth/signup", json!({"email": "user000@example.com", "password": PW, "name": "User 000"})).await;
    assert_eq!(s, 201);
    assert!(b["user"]["id"].is_string());
    let token = b["token"].as_str().unwrap();
    assert!(token.chars().all(|c| c.is_ascii_alphanumeric() || "_.@+/=:?&,-".contains(c)));
    assert_eq!(get(&app, "/api/auth/me", token).await.0, 200);
    assert!(app.outbox().await.is_empty(), "no verification mail when it is off");
    for _ in 0..20 {
        assert_eq!(post(&app, "/api/auth/login", json!({"email": "user000@example.com", "password": "wrong-password-1"})).await.0, 401);
    }
    let (s, b) = post(&app, "/api/auth/login", json!({"email": "user000@example.com", "password": PW})).await;
    assert_eq!(s, 200);
    assert!(b["token"].is_string() && b["user"]["id"].is_string());
}

#[tokio::test]
async fn the_password_policy_and_signup_settings_hold() {
    let app = spawn_app(TASKBOARD).await;
    for (pw, code) in
        [("short", "too_short"), ("password123", "too_common"), ("Taskboard2024", "too_common"), ("nina-nina-99", "too_common")]
    {
        let (s, b) = post(&app, "/api/auth/signup", json!({"email": "nina@example.com", "password": pw})).await;
        assert_eq!((s, b["errors"][0]["code"].as_str().unwrap()), (StatusCode::UNPROCESSABLE_ENTITY, code), "{pw}");
    }
    let (s, b) = post(&app, "/api/auth/signup", json!({"email": "bad\r\nBcc: x@example.com", "password": PW})).await;
    assert_eq!(
        (s, b["errors"][0]["field"].as_str().unwrap()),
        (StatusCode::UNPROCESSABLE_ENTITY, "email"),
        "CR/LF never reaches a mail header"
    );
    let (s, _) = post(&app, "/api/auth/signup", json!({"email": "nina@example.com", "password": PW, "role": "admin"})).await;
    assert_eq!(s, 400, "no role (or other field) can be chosen at signup");
    let big = "x".repeat(5000);
    assert_eq!(
        post(&app, "/api/auth/signup", json!({"email": "nina@example.com", "password": big})).await.0,
        413,
        "auth bodies are capped at 4 KiB"
    );

    let closed = spawn_app(&spec(&[("signup: open", "signup: closed")])).await;
    let (s, b) = post(&closed, "/api/auth/signup", json!({"email": "nina@example.com", "password": PW})).await;
    assert_eq!((s, b["type"].as_str().unwrap()), (StatusCode::FORBIDDEN, "https://charter.dev/problems/signup-closed"));
}

const STAFF: &str = r#"# Staffed

## Settings
- email verification: off

## Roles
- member (default): people
- admin: staff

## Entities

### User
Permissions:
- read: signed in
- update: id = me or admin
- update role: admin

### Note
| field | type | rules    |
|-------|------|----------|
| text  | text | required |

Permissions:
- read: signed in
"#;

async fn admins_end_a_users_sessions_and_read_the_audit_log(app: TestApp) {
    app.app.create_user("boss@example.com", Some("admin"), Some(PW.to_string()), None).await.unwrap();
    let boss = app.login("boss@example.com", PW).await;
    let (_, b) = post(&app, "/api/auth/signup", json!({"email": "olga@example.com", "password": PW})).await;
    let olga_id = b["user"]["id"].as_str().unwrap().to_string();
    let olga = b["token"].as_str().unwrap().to_string();
    let (_, b) = post(&app, "/api/auth/signup", json!({"email": "pete@example.com", "password": PW})).await;
    let pete = b["token"].as_str().unwrap().to_string();
    let pete_id = b["user"]["id"].as_str().unwrap().to_string();

    let r = app.client.delete(app.at(&format!("/api/users/{olga_id}/sessions"))).bearer_auth(&pete).send().await.unwrap();
    assert_eq!(body(r).await.0, 403, "a member may not");
    assert_eq!(get(&app, "/api/auth/me", &olga).await.0, 200);
    let r = app.client.delete(app.at("/api/users/nonexistent/sessions")).bearer_auth(&boss).send().await.unwrap();
    assert_eq!(body(r).await.0, 404);
    let r = app.client.delete(app.at(&format!("/api/users/{olga_id}/sessions"))).bearer_auth(&boss).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get(&app, "/api/auth/me", &olga).await.0, 401, "ended at once");

    // A role change ends the user's sessions.
    let pete2 = app.login("pete@example.com", PW).await;
    let r =
        app.client.patch(app.at(&format!("/api/users/{pete_id}"))).bearer_auth(&boss).json(&json!({"role": "admin"})).send().await.unwrap();
    let (s, b) = body(r).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(get(&app, "/api/auth/me", &pete2).await.0, 401, "a new role needs a new sign-in");
    let pete = app.login("pete@example.com", PW).await;
    let r = app
        .client
        .patch(app.at(&format!("/api/users/{pete_id}")))
        .bearer_auth(&pete)
        .json(&json!({"role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(body(r).await.0, 200, "admins may change roles, their own too");
    let pete = app.login("pete@example.com", PW).await;

    post(&app, "/api/auth/login", json!({"email": "olga@example.com", "password": "wrong-password-1"})).await;
    assert_eq!(get(&app, "/api/auth/audit", &pete).await.0, 403);
    let (s, b) = get(&app, "/api/auth/audit", &boss).await;
    assert_eq!(s, 200);
    let events: Vec<&str> = b["items"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    for e in ["signup", "login", "login_failed", "sessions_revoked", "user_created_by_cli"] {
        assert!(events.contains(&e), "{e} in {events:?}");
    }
    assert!(!b.to_string().contains(PW), "the audit log holds no password");
}

#[tokio::test]
async fn the_dev_outbox_and_metrics_are_served_in_dev() {
    let app = spawn_app(TASKBOARD).await;
    post(&app, "/api/auth/signup", json!({"email": "quin@example.com", "password": PW})).await;
    let (s, b) = body(app.client.get(app.at("/_dev/mail")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    let m = &b["items"][0];
    assert_eq!(m["to"], "quin@example.com");
    for k in ["subject", "text", "html", "sent_at"] {
        assert!(m[k].is_string(), "{k}");
    }
    let r = app.client.get(app.at("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("charter_db_up 1"));

    let guarded = spawn_app_with(TASKBOARD, |c| {
        c.profile = Profile::Prod;
        c.metrics_token = Some(charter_app::Secret::new(b"scrape-me".to_vec()));
    })
    .await;
    assert_eq!(guarded.client.get(guarded.at("/metrics")).send().await.unwrap().status(), 401);
    assert_eq!(guarded.client.get(guarded.at("/metrics")).bearer_auth("scrape-me").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn sessions_live_in_the_database_so_a_second_app_on_it_accepts_them() {
    let app = spawn_app(&spec(&[("email verification: required", "email verification: off")])).await;
    let (_, b) = post(&app, "/api/auth/signup", json!({"email": "rae@example.com", "password": PW})).await;
    let token = b["token"].as_str().unwrap().to_string();
    // Another App over the same database file, as after a restart.
    let again = app.reopen().await;
    assert_eq!(
        again.authenticate(&charter_app::Credentials { bearer: Some(token.clone()), cookie: None }).await.unwrap().user.as_deref(),
        b["user"]["id"].as_str()
    );
    assert!(again.authenticate(&charter_app::Credentials { bearer: Some("nope".into()), cookie: None }).await.is_err());
}

#[tokio::test]
async fn login_limits_are_shared_by_every_app_on_the_database() {
    let app = spawn_app(&spec(&[("- signup: open", "- signup: open\n- login attempts: 3 per 10 minutes")])).await;
    app.signup_and_login("ida@example.com", PW).await;
    // Another process on the same database, tried from another address.
    let again = app.reopen().await;
    let elsewhere = charter_app::auth::ClientInfo { ip: Some("203.0.113.9".into()), user_agent: None };
    let none = charter_app::Credentials { bearer: None, cookie: None };
    for _ in 0..2 {
        let r = again.login("ida@example.com", "wrong-password-1".into(), &none, &elsewhere).await;
        assert!(matches!(r, Err(charter_app::AppError::Unauthorized)), "{:?}", r.err());
    }
    let (s, _) = post(&app, "/api/auth/login", json!({"email": "ida@example.com", "password": "wrong-password-2"})).await;
    assert_eq!(s, 401, "the third failure, counted on the account wherever it was tried");
    let r = app.post("/api/auth/login", json!({"email": "ida@example.com", "password": PW})).await;
    assert_eq!(r.status(), 429, "the account is throttled on every app");
    assert!(r.headers().get("retry-after").is_some());
    let r = again.login("ida@example.com", PW.into(), &none, &elsewhere).await;
    assert!(matches!(r, Err(charter_app::AppError::TooManyRequests { .. })), "{:?}", r.err());
}

#[tokio::test]
async fn an_unknown_email_costs_a_password_check_too() {
    let app = spawn_app(&spec(&[("- signup: open", "- signup: open\n- login attempts: 1000 per 15 minutes")])).await;
    app.signup_and_login("tim@example.com", PW).await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..9 {
        for (email, times) in [("tim@example.com", &mut known), ("nobody@example.com", &mut unknown)] {
            let started = std::time::Instant::now();
            let (s, _) = post(&app, "/api/auth/login", json!({"email": email, "password": format!("wrong-password-{i}")})).await;
            times.push(started.elapsed().as_secs_f64());
            assert_eq!(s, 401);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (k, u) = (median(&mut known), median(&mut unknown));
    // Without the dummy hash an unknown address answers about a hundred
    // times faster; with it the two are alike (loose bounds: shared CI cores).
    assert!(u > k / 3.0 && u < k * 3.0, "known {k:.4}s, unknown {u:.4}s");
}

async fn expired_sessions_are_purged(app: TestApp) {
    let (_, b) = post(&app, "/api/auth/signup", json!({"email": "uma@example.com", "password": PW})).await;
    let token = b["token"].as_str().unwrap().to_string();
    assert_eq!(app.app.auth.count_live_sessions(app.app.clock.now_ms()).await.unwrap(), 1);
    app.clock.advance(31 * 24 * 3600);
    assert!(app.app.purge_expired().await.unwrap() >= 1);
    assert_eq!(app.app.auth.count_live_sessions(0).await.unwrap(), 0, "the row is gone, not just expired");
    assert_eq!(get(&app, "/api/auth/me", &token).await.0, 401);
}

async fn optional_verification_lets_unverified_users_in_and_still_mails(app: TestApp) {
    let (s, b) = post(&app, "/api/auth/signup", json!({"email": "val@example.com", "password": PW})).await;
    assert_eq!(s, 201);
    assert!(b.get("token").is_none(), "signup signs in only when verification is off");
    let token = app.login("val@example.com", PW).await;
    assert_eq!(get(&app, "/api/auth/me", &token).await.1["user"]["verified"], false);
    let link = app.mail_to("val@example.com", "Confirm").await.token();
    assert_eq!(post(&app, "/api/auth/verify", json!({"token": link})).await.0, 200);
    assert_eq!(get(&app, "/api/auth/me", &token).await.1["user"]["verified"], true);
}

/// A tiny SMTP server that accepts everything and hands each message over.
async fn fake_smtp() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (port, smtp_capture(listener))
}

/// A minimal SMTP server on `listener`: every message's data, as received.
fn smtp_capture(listener: tokio::net::TcpListener) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = sock.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 fake ESMTP\r\n").await.unwrap();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(d) = data.as_mut() {
                        if line == "." {
                            let _ = tx.send(data.take().unwrap());
                            write.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            d.push_str(&line);
                            d.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 fake\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go on\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.unwrap();
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    rx
}

#[tokio::test]
async fn with_smtp_mail_is_sent_and_nothing_lands_in_the_outbox() {
    let (port, mut inbox) = fake_smtp().await;
    let app = spawn_app_with(TASKBOARD, |c| {
        c.smtp_url = Some(charter_app::Secret::new(format!("smtp://127.0.0.1:{port}").into_bytes()));
        c.mail_from = Some("hello@example.com".into());
    })
    .await;
    assert_eq!(post(&app, "/api/auth/signup", json!({"email": "wes@example.com", "password": PW})).await.0, 201);
    let message = tokio::time::timeout(std::time::Duration::from_secs(10), inbox.recv()).await.expect("a mail within 10 s").unwrap();
    assert!(message.contains("To: wes@example.com"), "{message}");
    assert!(message.contains("From: hello@example.com"), "{message}");
    assert!(message.contains("Subject: Confirm your address for Taskboard"), "{message}");
    assert!(message.contains("multipart/alternative"), "{message}");
    assert!(app.outbox().await.is_empty(), "the outbox is for dev without SMTP");
}

#[tokio::test]
async fn mail_waits_in_the_database_through_an_smtp_outage_and_a_restart() {
    // A port nothing listens on yet: the SMTP server is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = spawn_app_with(TASKBOARD, |c| {
        c.smtp_url = Some(charter_app::Secret::new(format!("smtp://127.0.0.1:{port}").into_bytes()));
        c.mail_from = Some("hello@example.com".into());
    })
    .await;
    assert_eq!(post(&app, "/api/auth/signup", json!({"email": "zoe@example.com", "password": PW})).await.0, 201);
    // The first attempt fails (nothing listens); the mail stays queued, in
    // the database with its token, not in the dev outbox.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.app.auth.queued_mail().await.unwrap(), 1);
    let metrics = app.app.metrics_text().await;
    assert!(metrics.contains("charter_mail_queued 1"), "{metrics}");
    assert!(app.outbox().await.is_empty());

    // Another process on the database takes over (this one stops), and the
    // SMTP server comes up on the same port.
    let again = app.reopen().await;
    let clock = app.clock.clone();
    drop(app);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let mut inbox = smtp_capture(listener);
    let sender = tokio::spawn({
        let again = again.clone();
        async move { again.send_queued_mail().await }
    });
    // Past the retry delay and any claim the stopped process held.
    clock.advance(200);
    let message = tokio::time::timeout(std::time::Duration::from_secs(15), inbox.recv()).await.expect("sent after the outage").unwrap();
    assert!(message.contains("To: zoe@example.com"), "{message}");
    assert!(message.contains("/verify?token="), "the link survived the restart: {message}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while again.auth.queued_mail().await.unwrap() != 0 {
        assert!(std::time::Instant::now() < deadline, "a sent mail leaves the queue");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    clock.advance(3600);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(inbox.try_recv().is_err(), "sent once");
    sender.abort();
}

#[tokio::test]
async fn the_client_ip_comes_from_a_trusted_proxy_only_and_limits_follow_it() {
    let settings = [("- signup: open", "- signup: open\n- login attempts: 2 per 10 minutes")];
    let direct = spawn_app(&spec(&settings)).await;
    let token = direct.signup_and_login("xia@example.com", PW).await;
    let r = direct
        .client
        .get(direct.at("/api/auth/sessions"))
        .bearer_auth(&token)
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(body(r).await.1["items"][0]["ip"], "127.0.0.1", "a header from an untrusted peer is ignored");

    let proxied = spawn_app_with(&spec(&settings), |c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let login = |ip: &'static str, email: &'static str, pw: &'static str| {
        proxied
            .client
            .post(proxied.at("/api/auth/login"))
            .header("x-forwarded-for", ip)
            .json(&json!({"email": email, "password": pw}))
            .send()
    };
    proxied.signup_and_login("yan@example.com", PW).await;
    let r = login("198.51.100.1", "yan@example.com", PW).await.unwrap();
    let token = body(r).await.1["token"].as_str().unwrap().to_string();
    let (_, sessions) = get(&proxied, "/api/auth/sessions", &token).await;
    assert!(sessions["items"].as_array().unwrap().iter().any(|s| s["ip"] == "198.51.100.1" && s["current"] == true), "{sessions}");
    // Failed logins count per IP across accounts...
    assert_eq!(login("198.51.100.2", "a@example.com", "wrong-password-1").await.unwrap().status(), 401);
    assert_eq!(login("198.51.100.2", "b@example.com", "wrong-password-1").await.unwrap().status(), 401);
    assert_eq!(login("198.51.100.2", "yan@example.com", PW).await.unwrap().status(), 429, "this address is throttled");
    // ...and another client behind the same proxy is not throttled.
    assert_eq!(login("198.51.100.3", "yan@example.com", PW).await.unwrap().status(), 200);
}
