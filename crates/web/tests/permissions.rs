//! Permissions over HTTP with real sessions: the taskboard's rules hold for
//! members, admins and anonymous callers, on every route.

use charter_testkit::{on_both_backends, spawn, Backend, TestApp};

on_both_backends!(
    taskboard_rules_hold_for_every_kind_of_caller,
    users_see_and_change_only_themselves_and_never_their_role_email_or_verified,
    update_role_and_read_email_lines_widen_user_access,
    email_filters_and_sorts_only_for_callers_who_may_read_every_email,
);
use serde_json::{json, Value};

const TASKBOARD: &str = include_str!("../../../examples/taskboard/app.md");

struct Call<'a> {
    app: &'a TestApp,
    token: Option<&'a str>,
}

impl Call<'_> {
    async fn go(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.app.client.request(method, self.app.at(path));
        if let Some(t) = self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.go(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.go(reqwest::Method::POST, path, Some(body)).await
    }
    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.go(reqwest::Method::PATCH, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> (u16, Value) {
        self.go(reqwest::Method::DELETE, path, None).await
    }
}

async fn taskboard_rules_hold_for_every_kind_of_caller(backend: Backend) {
    let app = spawn(backend, TASKBOARD).await;
    let (ann_id, ann_t) = app.user_with_role("ann@example.com", "member").await;
    let (_bob_id, bob_t) = app.user_with_role("bob@example.com", "member").await;
    let (_root_id, root_t) = app.user_with_role("root@example.com", "admin").await;
    let ann = Call { app: &app, token: Some(&ann_t) };
    let bob = Call { app: &app, token: Some(&bob_t) };
    let root = Call { app: &app, token: Some(&root_t) };
    let anon = Call { app: &app, token: None };

    let (s, project) = ann.post("/api/projects", json!({"name": "Ann's"})).await;
    assert_eq!(s, 201, "{project}");
    assert_eq!(project["owner"], ann_id.as_str(), "default me");
    let pid = project["id"].as_str().unwrap();
    let (s, task) = ann.post("/api/tasks", json!({"title": "write", "project": pid})).await;
    assert_eq!(s, 201, "{task}");
    let tpath = format!("/api/tasks/{}", task["id"].as_str().unwrap());

    // Reads: owner and admin see it; others get 404 and an empty list.
    assert_eq!(ann.get(&tpath).await.0, 200);
    assert_eq!(root.get(&tpath).await.0, 200);
    assert_eq!(bob.get(&tpath).await.0, 404);
    assert_eq!(anon.get(&tpath).await.0, 404);
    assert_eq!(bob.get("/api/tasks?count=true").await.1["count"], 0);
    assert_eq!(anon.get("/api/projects?count=true").await.1["count"], 0);
    assert_eq!(root.get("/api/tasks?count=true").await.1["count"], 1);

    // Writes: others' rows are 404; the admin may read but not write: 403.
    assert_eq!(bob.patch(&tpath, json!({"done": true})).await.0, 404);
    assert_eq!(bob.delete(&tpath).await.0, 404);
    assert_eq!(root.patch(&tpath, json!({"done": true})).await.0, 403);
    assert_eq!(root.delete(&tpath).await.0, 403);
    assert_eq!(anon.post("/api/projects", json!({"name": "x"})).await.0, 401, "create: signed in");
    // A task in someone else's project: the project is invisible, so not_found.
    let (s, p) = bob.post("/api/tasks", json!({"title": "sneak", "project": pid})).await;
    assert_eq!((s, p["errors"][0]["code"].clone()), (422, json!("not_found")));
    // The admin can see the project, so the create rule decides: 403.
    assert_eq!(root.post("/api/tasks", json!({"title": "sneak", "project": pid})).await.0, 403);
    // Moving a task into another's project is refused and changes nothing.
    let (_, bob_project) = bob.post("/api/projects", json!({"name": "Bob's"})).await;
    let (s, _) = ann.patch(&tpath, json!({"project": bob_project["id"]})).await;
    assert_eq!(s, 422);
    assert_eq!(ann.get(&tpath).await.1["project"], pid);
    // `owner` is read only.
    assert_eq!(ann.patch(&format!("/api/projects/{pid}"), json!({"owner": ann_id})).await.0, 422);
    assert_eq!(ann.patch(&tpath, json!({"done": true})).await.0, 200);
    assert_eq!(ann.delete(&tpath).await.0, 204);
}

async fn users_see_and_change_only_themselves_and_never_their_role_email_or_verified(backend: Backend) {
    let app = spawn(backend, TASKBOARD).await;
    let (ann_id, ann_t) = app.user_with_role("ann@example.com", "member").await;
    let (bob_id, bob_t) = app.user_with_role("bob@example.com", "member").await;
    let ann = Call { app: &app, token: Some(&ann_t) };
    let bob = Call { app: &app, token: Some(&bob_t) };
    let (s, me) = ann.get("/api/users/me").await;
    assert_eq!((s, me["id"].as_str()), (200, Some(ann_id.as_str())));
    assert_eq!(me["email"], "ann@example.com", "own email is visible");
    let list = ann.get("/api/users").await.1;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "only yourself");
    assert_eq!(ann.get(&format!("/api/users/{bob_id}")).await.0, 404);
    assert_eq!(ann.patch(&format!("/api/users/{bob_id}"), json!({"name": "x"})).await.0, 404);
    let (s, v) = ann.patch("/api/users/me", json!({"name": "Ann"})).await;
    assert_eq!((s, v["name"].clone()), (200, json!("Ann")));
    for body in [json!({"role": "admin"}), json!({"email": "evil@example.com"}), json!({"verified": false}), json!({"id": "x"})] {
        let (s, p) = ann.patch("/api/users/me", body.clone()).await;
        assert_eq!(s, 422, "{body}: {p}");
        assert_eq!(p["errors"][0]["code"], "read_only", "{body}");
    }
    let me = ann.get("/api/users/me").await.1;
    assert_eq!((me["role"].clone(), me["email"].clone(), me["verified"].clone()), (json!("member"), json!("ann@example.com"), json!(true)));
    assert_eq!(bob.get("/api/users/me").await.1["id"], bob_id.as_str());
    assert_eq!(Call { app: &app, token: None }.patch("/api/users/me", json!({"name": "x"})).await.0, 401);
}

const STAFF: &str = r#"# Staff

## Roles
- member (default)
- admin

## Entities

### User
| field | type | rules |
|-------|------|-------|
| desk  | int  |       |

Permissions:
- read: signed in
- update: id = me or admin
- create, delete: admin
- update role: admin
- read email: admin
"#;

async fn update_role_and_read_email_lines_widen_user_access(backend: Backend) {
    let app = spawn(backend, STAFF).await;
    let (ann_id, ann_t) = app.user_with_role("ann@example.com", "member").await;
    let (bob_id, bob_t) = app.user_with_role("bob@example.com", "member").await;
    let (_, root_t) = app.user_with_role("root@example.com", "admin").await;
    let ann = Call { app: &app, token: Some(&ann_t) };
    let root = Call { app: &app, token: Some(&root_t) };
    let (_, other) = ann.get(&format!("/api/users/{bob_id}")).await;
    assert!(other.get("email").is_none(), "another user's email is absent, not null: {other}");
    assert_eq!(root.get(&format!("/api/users/{bob_id}")).await.1["email"], "bob@example.com");
    let (s, _) = ann.patch(&format!("/api/users/{ann_id}"), json!({"role": "admin"})).await;
    assert_eq!(s, 403, "a member may not change roles, even their own");
    let (s, v) = root.patch(&format!("/api/users/{bob_id}"), json!({"role": "admin", "desk": 4})).await;
    assert_eq!((s, v["role"].clone(), v["desk"].clone()), (200, json!("admin"), json!(4)));
    // A role change ends the user's sessions.
    assert_eq!(Call { app: &app, token: Some(&bob_t) }.get("/api/users/me").await.0, 401);
    // Users made through the API: the address in its one normal form, the
    // default role unless `update role` allows another; `verified` is never given.
    let (s, v) = root.post("/api/users", json!({"email": " New@Example.COM ", "name": "New"})).await;
    assert_eq!(
        (s, v["email"].clone(), v["role"].clone(), v["verified"].clone()),
        (201, json!("new@example.com"), json!("member"), json!(false))
    );
    let (s, v) = root.post("/api/users", json!({"email": "boss@example.com", "role": "admin"})).await;
    assert_eq!((s, v["role"].clone()), (201, json!("admin")));
    assert_eq!(root.post("/api/users", json!({"email": "x@example.com", "verified": true})).await.0, 422);
    assert_eq!(root.post("/api/users", json!({"email": "new@example.com"})).await.0, 409, "emails are unique");
    assert_eq!(ann.post("/api/users", json!({"email": "y@example.com"})).await.0, 403);
    // Deleting a user ends their sessions.
    let (_, carl_t) = app.user_with_role("carl@example.com", "member").await;
    let carl = Call { app: &app, token: Some(&carl_t) };
    let carl_id = carl.get("/api/users/me").await.1["id"].as_str().unwrap().to_string();
    assert_eq!(root.delete(&format!("/api/users/{carl_id}")).await.0, 204);
    assert_eq!(carl.get("/api/users/me").await.0, 401);
}

const DESKS: &str = r#"# Desks

## Roles
- member (default)
- admin

## Entities

### User
| field | type | rules |
|-------|------|-------|
| desk  | int  |       |

Permissions:
- read: signed in
- update: id = me or admin
- create, delete: admin
- read email: admin or desk = 1
"#;

async fn email_filters_and_sorts_only_for_callers_who_may_read_every_email(backend: Backend) {
    let app = spawn(backend, DESKS).await;
    let (_, ann_t) = app.user_with_role("ann@example.com", "member").await;
    let (bob_id, _) = app.user_with_role("bob@example.com", "member").await;
    let (_, root_t) = app.user_with_role("root@example.com", "admin").await;
    let ann = Call { app: &app, token: Some(&ann_t) };
    let root = Call { app: &app, token: Some(&root_t) };
    assert_eq!(root.patch(&format!("/api/users/{bob_id}"), json!({"desk": 1})).await.0, 200);
    // Ann may read some addresses (desk 1, her own) but not all: a filter
    // or sort on email would let her probe the others, so it is refused.
    assert_eq!(ann.get(&format!("/api/users/{bob_id}")).await.1["email"], "bob@example.com", "desk 1: readable");
    for query in ["email=root@example.com", "email__contains=root", "email__in=a@example.com", "sort=email", "sort=-desk,email"] {
        let (s, p) = ann.get(&format!("/api/users?{query}")).await;
        assert_eq!(s, 400, "{query}: {p}");
        assert!(p["detail"].as_str().unwrap().contains("`email`"), "the problem names the field: {p}");
    }
    let anonymous = Call { app: &app, token: None };
    assert_eq!(anonymous.get("/api/users?email=root@example.com").await.0, 400);
    // The admin reads every address, so may filter and sort on them; a
    // filter finds an address however it is typed.
    let (s, v) = root.get("/api/users?email=%20BOB@Example.com").await;
    assert_eq!(s, 200, "{v}");
    let emails = |v: &Value| v["items"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(emails(&v), ["bob@example.com"]);
    let (_, v) = root.get("/api/users?email__in=root@example.com,ann@example.com&sort=email").await;
    assert_eq!(emails(&v), ["ann@example.com", "root@example.com"]);
    assert_eq!(root.get("/api/users?email__contains=EXAMPLE&count=true").await.1["count"], 3);
    assert_eq!(emails(&root.get("/api/users?email__gt=ann@example.com&sort=email").await.1), ["bob@example.com", "root@example.com"]);
    // Sorted pages follow the addresses, one row per page.
    let mut seen = Vec::new();
    let mut path = "/api/users?sort=-email&limit=1".to_string();
    loop {
        let (s, v) = root.get(&path).await;
        assert_eq!(s, 200, "{v}");
        seen.extend(emails(&v));
        match v["next"].as_str() {
            Some(next) => path = format!("/api/users?sort=-email&limit=1&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["root@example.com", "bob@example.com", "ann@example.com"]);
}
