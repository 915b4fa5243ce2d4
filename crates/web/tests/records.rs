//! The records API over HTTP (http-api.md, Records), with specs whose rules
//! let anonymous callers in, so nothing here depends on sessions.

use charter_testkit::{on_both_backends, spawn, Backend, TestApp};

on_both_backends!(
    create_applies_defaults_and_answers_201_with_location_and_etag,
    every_field_error_is_reported_at_once,
    unknown_fields_are_400_and_server_fields_are_422,
    updates_respect_read_only_versions_and_if_match,
    require_if_match_setting_gives_428,
    unique_and_restrict_are_409_and_invisible_references_are_not_found,
    lists_filter_sort_and_count_in_the_database,
    bad_list_queries_are_400_naming_the_problem,
    cursors_walk_every_row_once_while_rows_come_and_go_and_cannot_be_edited,
    idempotency_keys_create_once_and_replay_the_first_response,
    concurrent_if_match_increments_lose_no_update,
    users_me_needs_a_session_and_user_rows_are_private_by_default,
    openapi_document_lists_every_entity_route,
    compressed_problem_responses_decode,
    nul_characters_are_refused_not_500,
    parallel_patches_with_one_if_match_give_one_200,
    idempotent_refusals_are_replayed_and_transient_failures_are_not,
    lists_past_the_statement_timeout_are_503,
);
use reqwest::StatusCode;
use serde_json::{json, Value};

const SHOP: &str = r#"# Shop

## Settings
- page size: 5

## Entities

### Item
| field   | type            | rules                   |
|---------|-----------------|-------------------------|
| name    | text            | required, 2..20, unique |
| code    | text            | pattern "[A-Z]{3}"      |
| qty     | int             | 0..1000, default 1      |
| price   | decimal         | min 0, max 99.99        |
| kind    | enum(tool, toy) | default tool            |
| due     | date            | 2020-01-01..            |
| at      | datetime        |                         |
| contact | email           |                         |
| site    | url             |                         |
| data    | json            |                         |
| locked  | text            | read only               |
| active  | bool            | default true            |

Permissions:
- read, create, update, delete: anyone

### Shelf
| field  | type | rules         |
|--------|------|---------------|
| label  | text | required      |
| hidden | bool | default false |

Permissions:
- read: hidden = false
- create: anyone
- update, delete: hidden = false

### Part
| field | type  | rules    |
|-------|-------|----------|
| item  | Item  | required |
| shelf | Shelf |          |

Permissions:
- read, create, update, delete: anyone
"#;

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = app.client.request(method, app.at(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, headers, value)
}

async fn post(app: &TestApp, path: &str, body: Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    send(app, reqwest::Method::POST, path, Some(body), &[]).await
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let (s, _, v) = send(app, reqwest::Method::GET, path, None, &[]).await;
    (s, v)
}

fn codes(problem: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = problem["errors"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|e| (e["field"].as_str().unwrap().to_string(), e["code"].as_str().unwrap().to_string()))
        .collect();
    out.sort();
    out
}

async fn create_applies_defaults_and_answers_201_with_location_and_etag(backend: Backend) {
    let app = spawn(backend, SHOP).await;
    let (s, h, item) = post(
        &app,
        "/api/items",
        json!({"name": "Hammer", "at": "2025-03-01T10:00:00.5+02:00", "price": "9.50", "data": {"a": [1, 2]}, "locked": "x"}),
    )
    .await;
    assert_eq!(s, 201, "{item}");
    let id = item["id"].as_str().unwrap();
    assert_eq!(h["location"], format!("/api/items/{id}").as_str());
    assert_eq!(h["etag"], "\"1\"");
    assert_eq!(item["qty"], 1);
    assert_eq!(item["kind"], "tool");
    assert_eq!(item["active"], true);
    assert_eq!(item["at"], "2025-03-01T08:00:00.500Z", "datetimes are stored in UTC with milliseconds");
    assert_eq!(item["price"], "9.50");
    assert_eq!(item["data"], json!({"a": [1, 2]}));
    assert_eq!(item["locked"], "x", "read only fields are set on create");
    assert_eq!(item["version"], 1);
    assert_eq!(item["code"], Value::Null);
    let (s, got) = get(&app, &format!("/api/items/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(got, item);
}

async fn every_field_error_is_reported_at_once(backend: Backend) {
    let app = spawn(backend, SHOP).await;
    let (s, h, p) = post(
        &app,
        "/api/items",
        json!({
            "name": "x", "code": "abc", "qty": "1", "price": "-1", "kind": "food", "due": "2019-12-31",
            "at": "yesterday", "contact": "nobody", "site": "javascript:alert(1)", "active": "yes"
        }),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(
        codes(&p),
        [
            ("active", "invalid_type"),
            ("at", "invalid_format"),
            ("code", "pattern"),
            ("contact", "invalid_format"),
            ("due", "out_of_range"),
            ("kind", "not_in_enum"),
            ("name", "too_short"),
            ("price", "out_of_range"),
            ("qty", "invalid_type"),
            ("site", "invalid_format"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect::<Vec<_>>()
    );
    let (s, _, p) = post(&app, "/api/items", json!({"qty": 5})).await;
    assert_eq!(s, 422);
    assert_eq!(codes(&p), [("name".to_string(), "required".to_string())]);
    let (s, _, p) = post(&app, "/api/items", json!({"name": "Big", "qty": 9223372036854775808u64})).await;
    assert_eq!((s, codes(&p)), (StatusCode::UNPROCESSABLE_ENTITY, vec![("qty".to_string(), "out_of_range".to_string())]));
    let (s, _, p) = post(&app, "/api/items", json!({"name": "Big", "qty": 1.5})).await;
    assert_eq!((s, codes(&p)), (StatusCode::UNPROCESSABLE_ENTITY, vec![("qty".to_string(), "invalid_type".to_string())]));
    let (s, _, p) = post(&app, "/api/items", json!({"name": "Long name that is too long"})).await;
    assert_eq!(codes(&p), [("name".to_string(), "too_long".to_string())], "{s}");
    let (s, _, p) = post(&app, "/api/items", json!({"name": "Ok", "price": 1.5})).await;
    assert_eq!(
        (s, codes(&p)),
        (StatusCode::UNPROCESSABLE_ENTITY, vec![("price".to_string(), "invalid_type".to_string())]),
        "decimals are strings"
    );
    // Nothing was written by any of these.
    let (_, list) = get(&app, "/api/items?count=true").await;
    assert_eq!(list["count"], 0);
}

async fn unknown_fields_are_400_and_server_fields_are_422(backend: Backend) {
    let app = spawn(backend, SHOP).await;
    let (s, _, p) = post(&app, "/api/items", json!({"name": "Saw", "colour": "red", "size": 1})).await;
    assert_eq!(s, 400);
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("`colour`") && detail.contains("`size`"), "{detail}");
    let (s, _, p) =
        post(&app, "/api/items", json!({"name": "Saw", "id": "mine", "version": 7, "created_at": "2020-01-01T00:00:00Z"})).await;
    assert_eq!(s, 422);
    assert_eq!(
        codes(&p),
        [("created_at", "read_only"), ("id", "read_only"), ("version", "read_only")].map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
    );
    let (s, _, _) = post(&app, "/api/items", json!(["not", "an", "object"])).await;
    assert_eq!(s, 400);
    let r = app.client.post(app.at("/api/items")).header("content-type", "application/json").body("{\"name\": ").send().await.unwrap();
    assert_eq!(r.status(), 400, "malformed JSON");
}

async fn updates_respect_read_only_versions_and_if_match(backend: Backend) {
    let app = spawn(backend, SHOP).await;
    let (_, _, item) = post(&app, "/api/items", json!({"name": "Drill", "locked": "v1"})).await;
    let path = format!("/api/items/{}", item["id"].as_str().unwrap());
    let (s, _, p) = send(&app, reqwest::Method::PATCH, &path, Some(json!({"locked": "v2", "qty": 3})), &[]).await;
    assert_eq!(s, 422);
    assert_eq!(codes(&p), [("locked".to_string(), "read_only".to_string())]);
    let (s, h, v) = send(&app, reqwest::Method::PATCH, &path, Some(json!({"qty": 3})), &[("if-match", "\"1\"")]).await;
    assert_eq!((s, v["qty"].clone(), v["version"].clone()), (StatusCode::OK, json!(3), json!(2)));
    assert_eq!(h["etag"], "\"2\"");
    assert!(v["updated_at"].as_str().unwrap() >= item["updated_at"].as_str().unwrap());
    let (s, _, p) = send(&app, reqwest::Method::PATCH, &path, Some(json!({"qty": 4})), &[("if-match", "\"1\"")]).await;
    assert_eq!(s, 412, "{p}");
    let (s, _, _) = send(&app, reqwest::Method::PATCH, &path, Some(json!({"qty": 4})), &[("if-match", "\"garbage\"")]).await;
    assert_eq!(s, 412);
    let (s, _, _) = send(&app, reqwest::Method::DELETE, &path, None, &[("if-match", "\"1\"")]).await;
    assert_eq!(s, 412);
    let (_, v) = get(&app, &path).await;
    assert_eq!(v["qty"], 3, "stale writes changed nothing");
    let (s, _, v) = send(&app, reqwest::Method::PATCH, &path, Some(json!({"qty": null, "name": null})), &[]).await;
    assert_eq!(s, 422);
    assert_eq!(codes(&v), [("name".to_string(), "required".to_string())], "optional fields may be cleared");
    let (s, _, _) = send(&app, reqwest::Method::DELETE, &path, None, &[("if-match", "\"2\"")]).await;
    assert_eq!(s, 204);
    assert_eq!(get(&app, &path).await.0, 404);
    assert_eq!(send(&app, reqwest::Method::DELETE, &path, None, &[]).await.0, 404);
}

async fn require_if_match_setting_gives_428(backend: Backend) {
    let spec = SHOP.replace("- page size: 5", "- page size: 5\n- require if-match: yes");
    let app = spawn(backend, &spec).await;
    let (_, _, item) = post(&app, "/api/items", json!({"name": "Pliers"})).await;
    let path = format!("/api/items/{}", item["id"].as_str().unwrap());
    assert_eq!(send(&app, reqwest::Method::PATCH, &path, Some(json!({"qty": 2})), &[]).await.0, 428);
    assert_eq!(send(&app, reqwest::Method::DELETE, &path, None, &[]).await.0, 428);
    assert_eq!(send(&app, reqwest::Method::PATCH, &path, Some(json!({"qty": 2})), &[("if-match", "\"1\"")]).await.0, 200);
}

async fn unique_and_restrict_are_409_and_invisible_references_are_not_found(backend: Backend) {
    let app = spawn(backend, SHOP).await;
    let (_, _, item) = post(&app, "/api/items", json!({"name": "Vice"})).await;
    let (s, _, p) = post(&app, "/api/items", json!({"name": "Vice"})).await;
    assert_eq!(s, 409);
    assert_eq!(codes(&p), [("name".to_string(), "unique".to_string())]);
    let item_id = item["id"].as_str().unwrap();
    let (_, _, hidden) = post(&app, "/api/shelfs", json!({"label": "top", "hidden": true})).await;
    let hidden_id = hidden["id"].as_str().unwrap();
    assert_eq!(get(&app, &format!("/api/shelfs/{hidden_id}")).await.0, 404, "invisible rows are 404");
    let (_, invisible) = {
        let (s, _, p) = post(&app, "/api/parts", json!({"item": item_id, "shelf": hidden_id})).await;
        (s, p)
    };
    let (_, missing) = {
        let (s, _, p) = post(&app, "/api/parts", json!({"item": item_id, "shelf": "doesnotexist0000"})).await;
        (s, p)
    };
    assert_eq!(codes(&invisible), [("shelf".to_string(), "not_found".to_string())]);
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(strip(invisible), strip(missing), "an invisible target looks exactly like a missing one");
    let (s, _, _) = post(&app, "/api/parts", json!({"item": item_id})).await;
    assert_eq!(s, 201);
    let (s, _, p) = send(&app, reqwest::Method::DELETE, &format!("/api/items/{item_id}"), None, &[]).await;
    assert_eq!(s, 409, "{p}");
    // A visible row whose update rule fails after the change: 403, unchanged.
    let (_, _, shelf) = post(&app, "/api/shelfs", json!({"label": "low"})).await;
    let shelf_path = format!("/api/shelfs/{}", shelf["id"].as_str().unwrap());
    let (s, _, _) = send(&app, reqwest::Method::PATCH, &shelf_path, Some(json!({"hidden": true})), &[]).await;
    assert_eq!(s, 403);
    assert_eq!(get(&app, &shelf_path).await.1["hidden"], false);
}

async fn lists_filter_sort_and_count_in_the_database(backend: Backend) {
    let app = spawn(backend, SHOP).await;
    for (name, qty, kind, price) in [
        ("Anvil", 5, "tool", "10.5"),
        ("Ball", 2, "toy", "2"),
        ("Crane", 9, "toy", "99"),
        ("Dice", 2, "toy", "0.5"),
        ("E'; DROP TABLE x;--", 7, "tool", "1"),
    ] {
        let (s, _, v) = post(&app, "/api/items", json!({"name": name, "qty": qty, "kind": kind, "price": price})).await;
        assert_eq!(s, 201, "{v}");
    }
    let names = |v: &Value| v["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let (s, v) = get(&app, "/api/items?kind=toy&sort=qty,name").await;
    assert_eq!(s, 200);
    assert_eq!(names(&v), ["Ball", "Dice", "Crane"]);
    assert_eq!(v["next"], Value::Null);
    assert!(v.get("count").is_none(), "no count unless asked");
    let (_, v) = get(&app, "/api/items?qty__gte=5&sort=-qty").await;
    assert_eq!(names(&v), ["Crane", "E'; DROP TABLE x;--", "Anvil"]);
    let (_, v) = get(&app, "/api/items?price__gt=2&sort=price").await;
    assert_eq!(names(&v), ["Anvil", "Crane"], "decimals compare as numbers");
    let (_, v) = get(&app, "/api/items?name__in=Ball,Dice,Nope&sort=name").await;
    assert_eq!(names(&v), ["Ball", "Dice"]);
    let (_, v) = get(&app, "/api/items?name__contains=drop%20table&count=true").await;
    assert_eq!(v["count"], 1, "SQL in a value is data");
    let (_, v) = get(&app, "/api/items?name=E%27%3B%20DROP%20TABLE%20x%3B--").await;
    assert_eq!(names(&v), ["E'; DROP TABLE x;--"]);
    let (_, v) = get(&app, "/api/items?name__contains=%25&count=true").await;
    assert_eq!(v["count"], 0, "% is not a wildcard");
    let (_, v) = get(&app, "/api/items?kind__ne=toy&qty__lt=6&sort=name").await;
    assert_eq!(names(&v), ["Anvil"]);
    let (_, v) = get(&app, "/api/items?count=true&limit=2").await;
    assert_eq!((v["items"].as_array().unwrap().len(), v["count"].clone()), (2, json!(5)));
    let (_, v) = get(&app, "/api/items").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 5, "page size from the settings");
    let created: Vec<&str> = v["items"].as_array().unwrap().iter().map(|i| i["created_at"].as_str().unwrap()).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first by default: {created:?}");
}

async fn bad_list_queries_are_400_naming_the_problem(backend: Backend) {
    let app = spawn(backend, SHOP).await;
    for (query, needle) in [
        ("colour=red", "`colour`"),
        ("qty__between=1", "`__between`"),
        ("name=a&name=b", "`name`"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("sort=nope", "`nope`"),
        ("sort=qty,qty", "`qty`"),
        ("qty=abc", "`qty`"),
        ("active__gt=true", "`active`"),
        ("qty__contains=1", "__contains"),
        ("item.name=x", "item.name"),
        ("count=yes", "count"),
        ("after=garbage", "after"),
        ("data=1", "`data`"),
    ] {
        let (s, v) = get(&app, &format!("/api/items?{query}")).await;
        assert_eq!(s, 400, "{query}: {v}");
        assert!(v["detail"].as_str().unwrap().contains(needle), "{query}: {v}");
    }
    let many = (0..101).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    assert_eq!(get(&app, &format!("/api/items?qty__in={many}")).await.0, 400, "__in is capped");
}

async fn cursors_walk_every_row_once_while_rows_come_and_go_and_cannot_be_edited(backend: Backend) {
    let app = spawn(backend, SHOP).await;
    let mut ids = Vec::new();
    for i in 0..23 {
        let (_, _, v) = post(&app, "/api/items", json!({"name": format!("n{i:02}"), "qty": i % 4})).await;
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let mut seen = std::collections::HashSet::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    let mut deleted = std::collections::HashSet::new();
    loop {
        let q = match &next {
            Some(c) => format!("/api/items?sort=qty,-name&limit=4&after={c}"),
            None => "/api/items?sort=qty,-name&limit=4".to_string(),
        };
        let (s, v) = get(&app, &q).await;
        assert_eq!(s, 200, "{v}");
        for item in v["items"].as_array().unwrap() {
            assert!(seen.insert(item["id"].as_str().unwrap().to_string()), "a row came twice");
        }
        pages += 1;
        // Meanwhile: a new row, and one not yet seen is deleted.
        post(&app, "/api/items", json!({"name": format!("late{pages}"), "qty": 99})).await;
        if let Some(victim) = ids.iter().rev().find(|id| !seen.contains(*id) && !deleted.contains(*id)).cloned() {
            assert_eq!(send(&app, reqwest::Method::DELETE, &format!("/api/items/{victim}"), None, &[]).await.0, 204);
            deleted.insert(victim);
        }
        match v["next"].as_str() {
            Some(c) => next = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 50);
    }
    // Every original row not deleted was seen exactly once; rows added
    // with qty 99 sort after the cursor and show up too.
    for id in &ids {
        assert_eq!(seen.contains(id), !deleted.contains(id), "row {id}");
    }
    let (_, first) = get(&app, "/api/items?sort=qty,-name&limit=4").await;
    let cursor = first["next"].as_str().unwrap().to_string();
    assert_eq!(get(&app, &format!("/api/items?sort=name&limit=4&after={cursor}")).await.0, 400, "a cursor is bound to its sort");
    assert_eq!(get(&app, &format!("/api/shelfs?sort=qty,-name&after={cursor}")).await.0, 400, "and to its entity");
    let mut edited = cursor.into_bytes();
    edited[3] = if edited[3] == b'A' { b'B' } else { b'A' };
    let edited = String::from_utf8(edited).unwrap();
    assert_eq!(get(&app, &format!("/api/items?sort=qty,-name&limit=4&after={edited}")).await.0, 400, "an edited cursor is 400");
}

async fn idempotency_keys_create_once_and_replay_the_first_response(backend: Backend) {
    let app = spawn(backend, SHOP).await;
    let key = [("idempotency-key", "order-77")];
    let (s1, h1, v1) = send(&app, reqwest::Method::POST, "/api/items", Some(json!({"name": "Clamp"})), &key).await;
    let (s2, h2, v2) = send(&app, reqwest::Method::POST, "/api/items", Some(json!({"name": "Clamp"})), &key).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(v1, v2);
    assert_eq!(h1["location"], h2["location"]);
    assert_eq!(h1["etag"], h2["etag"]);
    let (s, _, p) = send(&app, reqwest::Method::POST, "/api/items", Some(json!({"name": "Other"})), &key).await;
    assert_eq!(s, 422, "{p}");
    let (_, list) = get(&app, "/api/items?count=true").await;
    assert_eq!(list["count"], 1, "created once");
    // A refused attempt is the key's answer too: its retry is refused alike.
    let key2 = [("idempotency-key", "order-78")];
    assert_eq!(send(&app, reqwest::Method::POST, "/api/items", Some(json!({"name": "Clamp"})), &key2).await.0, 409);
    assert_eq!(send(&app, reqwest::Method::POST, "/api/items", Some(json!({"name": "Clamp"})), &key2).await.0, 409);
    // Concurrent duplicates: exactly one row.
    let mut handles = Vec::new();
    for _ in 0..6 {
        let (client, url) = (app.client.clone(), app.at("/api/items"));
        handles.push(tokio::spawn(async move {
            client.post(url).header("idempotency-key", "burst").json(&json!({"name": "Burst"})).send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await.unwrap());
    }
    assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");
    let (_, list) = get(&app, "/api/items?name=Burst&count=true").await;
    assert_eq!(list["count"], 1);
}

async fn concurrent_if_match_increments_lose_no_update(backend: Backend) {
    let app = spawn(backend, SHOP).await;
    let (_, _, item) = post(&app, "/api/items", json!({"name": "Counter", "qty": 0})).await;
    let path = app.at(&format!("/api/items/{}", item["id"].as_str().unwrap()));
    let mut handles = Vec::new();
    for _ in 0..8 {
        let (client, path) = (app.client.clone(), path.clone());
        handles.push(tokio::spawn(async move {
            for _ in 0..5 {
                loop {
                    let cur: Value = client.get(&path).send().await.unwrap().json().await.unwrap();
                    let tag = format!("\"{}\"", cur["version"]);
                    let r = client
                        .patch(&path)
                        .header("if-match", tag)
                        .json(&json!({"qty": cur["qty"].as_i64().unwrap() + 1}))
                        .send()
                        .await
                        .unwrap();
                    match r.status().as_u16() {
                        200 => break,
                        412 => continue,
                        other => panic!("unexpected {other}"),
                    }
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let v: Value = app.client.get(&path).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["qty"], 40);
    assert_eq!(v["version"], 41);
}

async fn users_me_needs_a_session_and_user_rows_are_private_by_default(backend: Backend) {
    let app = spawn(backend, SHOP).await;
    assert_eq!(get(&app, "/api/users/me").await.0, 401);
    let (s, v) = get(&app, "/api/users?count=true").await;
    assert_eq!((s, v["count"].clone()), (StatusCode::OK, json!(0)));
    let (s, _, p) = post(&app, "/api/users", json!({"email": "a@example.com"})).await;
    assert_eq!(s, 401, "create on User is denied by default, so an anonymous caller should sign in: {p}");
}

async fn openapi_document_lists_every_entity_route(backend: Backend) {
    let app = spawn(backend, SHOP).await;
    let (s, doc) = get(&app, "/api/openapi.json").await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for p in ["/api/items", "/api/items/{id}", "/api/shelfs", "/api/parts/{id}", "/api/users", "/api/users/me"] {
        assert!(doc["paths"].get(p).is_some(), "{p}");
    }
    let name = &doc["components"]["schemas"]["ItemCreate"]["properties"]["name"];
    assert_eq!((name["minLength"].clone(), name["maxLength"].clone()), (json!(2), json!(20)));
    assert_eq!(doc["components"]["schemas"]["Item"]["properties"]["kind"]["enum"], json!(["tool", "toy", null]));
}

async fn compressed_problem_responses_decode(backend: Backend) {
    let app = spawn(backend, SHOP).await;
    let client = reqwest::Client::builder().gzip(true).build().unwrap();
    let r = client.get(app.at("/api/items/nope")).header("x-request-id", "gz-1").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("a gzip-accepting client reads the problem");
    assert_eq!(body["request_id"], "gz-1");
    assert_eq!(body["status"], 404);
}

async fn nul_characters_are_refused_not_500(backend: Backend) {
    let app = spawn(backend, SHOP).await;
    let (s, _, p) = post(&app, "/api/items", json!({"name": "a\u{0}b"})).await;
    assert_eq!((s, codes(&p)), (StatusCode::UNPROCESSABLE_ENTITY, vec![("name".to_string(), "invalid_format".to_string())]));
    let (s, _, p) = post(&app, "/api/items", json!({"name": "Ok", "data": {"k\u{0}": ["\u{0}"]}})).await;
    assert_eq!((s, codes(&p)), (StatusCode::UNPROCESSABLE_ENTITY, vec![("data".to_string(), "invalid_format".to_string())]));
    assert_eq!(get(&app, "/api/items?name=a%00b").await.0, 400);
    assert_eq!(get(&app, "/api/items/a%00b").await.0, 404);
    assert_eq!(send(&app, reqwest::Method::DELETE, "/api/items/a%00b", None, &[]).await.0, 404);
}

async fn parallel_patches_with_one_if_match_give_one_200(backend: Backend) {
    let app = spawn(backend, SHOP).await;
    let (_, _, item) = post(&app, "/api/items", json!({"name": "Race", "qty": 0})).await;
    let path = app.at(&format!("/api/items/{}", item["id"].as_str().unwrap()));
    let mut handles = Vec::new();
    for i in 0..8 {
        let (client, path) = (app.client.clone(), path.clone());
        handles.push(tokio::spawn(async move {
            client.patch(&path).header("if-match", "\"1\"").json(&json!({"qty": i})).send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 412, 412, 412, 412, 412, 412, 412]);
    assert_eq!(get(&app, &format!("/api/items/{}", item["id"].as_str().unwrap())).await.1["version"], 2);
}

const ORDERS: &str = r#"# Orders

## Entities

### Order
| field  | type | rules                   |
|--------|------|-------------------------|
| code   | text | required, 2..20, unique |
| locked | bool | default false           |

Permissions:
- read, update, delete: anyone
- create: locked = false
"#;

/// A problem body without its `request_id` (each request has its own).
fn without_request_id(mut problem: Value) -> Value {
    let id = problem.as_object_mut().and_then(|o| o.remove("request_id"));
    assert!(id.is_some(), "a problem carries its request id: {problem}");
    problem
}

async fn idempotent_refusals_are_replayed_and_transient_failures_are_not(backend: Backend) {
    let app = spawn(backend, ORDERS).await;
    let post_with = |key: &'static str, body: Value| {
        let app = &app;
        async move { send(app, reqwest::Method::POST, "/api/orders", Some(body), &[("idempotency-key", key)]).await }
    };
    let count = |code: &'static str| {
        let app = &app;
        async move { get(app, &format!("/api/orders?code={code}&count=true")).await.1["count"].clone() }
    };
    // A validation error and a refused create: the retry gets the same answer.
    for (key, body, status) in [("k-422", json!({"code": "x"}), 422), ("k-403", json!({"code": "locked", "locked": true}), 403)] {
        let (s1, h1, p1) = post_with(key, body.clone()).await;
        let (s2, h2, p2) = post_with(key, body).await;
        assert_eq!((s1.as_u16(), s2.as_u16()), (status, status), "{p1} {p2}");
        assert_eq!(without_request_id(p1), without_request_id(p2));
        assert_eq!(h1["content-type"], h2["content-type"]);
        assert!(h2.get("location").is_none() && h2.get("etag").is_none());
    }
    assert_eq!(count("locked").await, 0);
    // A unique clash is remembered, not run again: once the clashing row is
    // gone a new request would succeed, but the retry replays the 409.
    let (s, _, taken) = post(&app, "/api/orders", json!({"code": "taken"})).await;
    assert_eq!(s, 201);
    let (s1, _, p1) = post_with("k-409", json!({"code": "taken"})).await;
    assert_eq!(s1, 409, "{p1}");
    let (s, _, _) = send(&app, reqwest::Method::DELETE, &format!("/api/orders/{}", taken["id"].as_str().unwrap()), None, &[]).await;
    assert_eq!(s, 204);
    let (s2, _, p2) = post_with("k-409", json!({"code": "taken"})).await;
    assert_eq!(s2, 409, "the first answer, not a second attempt: {p2}");
    assert_eq!(without_request_id(p1), without_request_id(p2));
    assert_eq!(count("taken").await, 0, "nothing was created");
    let (s, _, p) = post_with("k-409", json!({"code": "other"})).await;
    assert_eq!((s.as_u16(), p["errors"][0]["code"].clone()), (422, json!("reused")), "the key with another body: {p}");
    // A server error is not remembered: the key is released and the retry
    // runs again. The database refuses every insert until the fault is gone.
    app.execute_sql(if app.is_postgres() {
        "CREATE FUNCTION fail_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$;
         CREATE TRIGGER fail_insert BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION fail_insert();"
    } else {
        "CREATE TRIGGER fail_insert BEFORE INSERT ON orders BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
    })
    .await;
    let (s, _, p) = post_with("k-500", json!({"code": "later"})).await;
    assert_eq!(s, 500, "{p}");
    app.execute_sql(if app.is_postgres() { "DROP TRIGGER fail_insert ON orders" } else { "DROP TRIGGER fail_insert" }).await;
    let (s1, h1, v1) = post_with("k-500", json!({"code": "later"})).await;
    let (s2, h2, v2) = post_with("k-500", json!({"code": "later"})).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::CREATED), "{v1}");
    assert_eq!((v1, h1["location"].clone(), h1["etag"].clone()), (v2, h2["location"].clone(), h2["etag"].clone()));
    assert_eq!(count("later").await, 1, "created once");
}

const NOTES: &str = r#"# Notes

## Entities

### Note
| field | type | rules    |
|-------|------|----------|
| title | text | required |

Permissions:
- read, create, update, delete: anyone
"#;

/// A list running past the statement timeout is cancelled and answered 503
/// with a problem that says nothing of the database; the next request works.
async fn lists_past_the_statement_timeout_are_503(backend: Backend) {
    let app = match backend {
        // SQLite: 200,000 rows that a `count` with a `__contains` filter must
        // all read, far more work than the 1 ms allowed.
        Backend::Sqlite => charter_testkit::spawn_app_with(NOTES, |c| c.statement_timeout = std::time::Duration::from_millis(1)).await,
        // PostgreSQL: the table is locked by another transaction, so the list
        // waits, and the timeout (which counts lock waits) ends it.
        Backend::Postgres => {
            charter_testkit::spawn_app_postgres_with(NOTES, |c| c.statement_timeout = std::time::Duration::from_millis(200)).await
        }
    };
    let (s, _, note) = post(&app, "/api/notes", json!({"title": "first"})).await;
    assert_eq!(s, 201);
    let id = note["id"].as_str().unwrap().to_string();
    let lock = if app.is_postgres() {
        Some(app.lock_table("notes").await)
    } else {
        app.execute_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
             INSERT INTO notes (id, created_at, updated_at, version, title)
             SELECT 'bulk' || i, '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z', 1, 'note ' || i FROM n;",
        )
        .await;
        None
    };
    let (s, headers, p) = send(&app, reqwest::Method::GET, "/api/notes?title__contains=zzz&count=true", None, &[]).await;
    assert_eq!(s, 503, "{p}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!((p["status"].clone(), p["type"].clone()), (json!(503), json!("https://charter.dev/problems/unavailable")));
    let text = p.to_string().to_lowercase();
    for internal in ["statement", "timeout", "interrupt", "cancel", "sql"] {
        assert!(!text.contains(internal), "no internals in the body: {p}");
    }
    if let Some(lock) = lock {
        lock.release().await;
        let (s, v) = get(&app, "/api/notes?count=true").await;
        assert_eq!((s.as_u16(), v["count"].clone()), (200, json!(1)), "after the lock, lists work again: {v}");
    }
    // Reads without a deadline are untouched (on SQLite this is the same
    // reader connection: the interrupted list left no deadline behind).
    assert_eq!(get(&app, &format!("/api/notes/{id}")).await.0, 200);
}
