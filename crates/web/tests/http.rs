//! HTTP conventions every response follows, through a real server.

use charter_testkit::spawn_app;

const SPEC: &str = include_str!("../../../examples/taskboard/app.md");

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app(SPEC).await;
    let r = app.client.get(app.at("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.client.get(app.at("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn hsts_is_sent_when_users_reach_the_app_over_https() {
    let plain = spawn_app(SPEC).await;
    let r = plain.client.get(plain.at("/healthz")).send().await.unwrap();
    assert!(r.headers().get("strict-transport-security").is_none(), "not over plain HTTP");
    let https = charter_testkit::spawn_app_with(SPEC, |c| {
        c.public_url = "https://tasks.example.com".into();
        c.secure_cookies = true;
    })
    .await;
    for path in ["/healthz", "/api/nothing-here", "/login"] {
        let r = https.client.get(https.at(path)).send().await.unwrap();
        assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000; includeSubDomains", "{path}");
    }
}

#[tokio::test]
async fn errors_are_problem_json_with_the_request_id() {
    let app = spawn_app(SPEC).await;
    let r = app.client.get(app.at("/api/nothing-here")).header("x-request-id", "abc-123.X_y").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.headers()["x-request-id"], "abc-123.X_y");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["request_id"], "abc-123.X_y");
    assert!(body["type"].as_str().unwrap().ends_with("not-found"));

    // A malformed request id is replaced, not echoed.
    let r = app.client.get(app.at("/healthz")).header("x-request-id", "bad id with spaces").send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(id, "bad id with spaces");
    assert!(!id.is_empty());
}

#[tokio::test]
async fn non_json_bodies_are_415_and_trace_is_405() {
    let app = spawn_app(SPEC).await;
    let r = app.client.post(app.at("/api/tasks")).header("content-type", "text/plain").body("x").send().await.unwrap();
    assert_eq!(r.status(), 415);
    let r = app.client.request(reqwest::Method::TRACE, app.at("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}
