//! The web UI over HTTP, as a browser without JavaScript uses it: forms,
//! cookies and redirects. (The same journeys in real Chromium and Firefox
//! are in `crates/e2e`.)

use charter_testkit::{spawn_app, spawn_app_with, TestApp};
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, REFERRER_POLICY, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeMap;

const TASKBOARD: &str = include_str!("../../../examples/taskboard/app.md");
const PASSWORD: &str = "correct horse battery staple";

/// A cookie-keeping client that does not follow redirects.
struct Visitor<'a> {
    t: &'a TestApp,
    cookies: BTreeMap<String, String>,
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    /// The CSRF token of the first form on the page.
    fn csrf(&self) -> String {
        hidden(&self.body, "_csrf").expect("the page has a form with a CSRF token")
    }
}

fn hidden(body: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker)? + marker.len();
    Some(body[start..].split('"').next()?.to_string())
}

impl<'a> Visitor<'a> {
    fn new(t: &'a TestApp) -> Visitor<'a> {
        Visitor { t, cookies: BTreeMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn take(&mut self, res: reqwest::Response) -> Answer {
        for v in res.headers().get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || v.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        let status = res.status();
        let location = res.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_string());
        let headers = res.headers().clone();
        let body = res.text().await.unwrap();
        Answer { status, location, headers, body }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let res = self.t.client.get(self.t.at(path)).header("cookie", self.cookie_header()).send().await.unwrap();
        self.take(res).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let res = self
            .t
            .client
            .post(self.t.at(path))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.take(res).await
    }

    /// Submits the form of the page at `page` to `action`, with its CSRF
    /// token (and idempotency key, if it has one) and `fields`.
    async fn submit(&mut self, page: &str, action: &str, fields: &[(&str, &str)]) -> Answer {
        let form = self.get(page).await;
        assert_eq!(form.status, StatusCode::OK, "{page}: {}", form.body);
        let csrf = form.csrf();
        let mut all: Vec<(&str, &str)> = vec![("_csrf", &csrf)];
        let key = hidden(&form.body, "_key");
        if let Some(k) = &key {
            all.push(("_key", k));
        }
        let version = hidden(&form.body, "_version");
        if let Some(v) = &version {
            all.push(("_version", v));
        }
        all.extend_from_slice(fields);
        self.post(action, &all).await
    }

    async fn log_in(&mut self, email: &str) {
        self.log_in_with(email, PASSWORD).await;
    }

    async fn log_in_with(&mut self, email: &str, password: &str) {
        let a = self.submit("/login", "/login", &[("email", email), ("password", password), ("next", "/")]).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        assert_eq!(a.location.as_deref(), Some("/"));
    }
}

/// A verified member of the taskboard made through the API.
async fn member(t: &TestApp, email: &str) -> String {
    t.signup_and_login(email, PASSWORD).await
}

async fn api_create(t: &TestApp, token: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let res = t.client.post(t.at(path)).bearer_auth(token).json(&body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_whole_journey_works_without_javascript() {
    let t = spawn_app(TASKBOARD).await;
    let mut v = Visitor::new(&t);

    // Sign up: verification is required, so the person is told to check mail.
    let a = v.submit("/signup", "/signup", &[("email", "ann@example.com"), ("name", "Ann"), ("password", PASSWORD)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location.as_deref(), Some("/login?n=check-inbox"));
    assert!(v.get("/login?n=check-inbox").await.body.contains("Check your inbox"));

    // Logging in before verifying says why it fails.
    let a = v.submit("/login", "/login", &[("email", "ann@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("not verified"), "{}", a.body);

    // The mail's link opens a page; only its button spends the token.
    let token = t.mail_to("ann@example.com", "Confirm").await.token();
    let page = v.get(&format!("/verify?token={token}")).await;
    assert_eq!(page.headers[REFERRER_POLICY], "no-referrer");
    let page = v.get(&format!("/verify?token={token}")).await;
    assert!(page.body.contains("id=\"verify\""), "GET did not spend the token");
    let a = v.post("/verify", &[("_csrf", &page.csrf()), ("token", &token)]).await;
    assert_eq!(a.location.as_deref(), Some("/login?n=verified"));

    // Log in, landing where the login was asked for.
    let a = v.get("/projects").await;
    assert_eq!(a.location.as_deref(), Some("/login?next=%2Fprojects&n=login"));
    let a =
        v.submit("/login?next=%2Fprojects", "/login", &[("email", "ann@example.com"), ("password", PASSWORD), ("next", "/projects")]).await;
    assert_eq!(a.location.as_deref(), Some("/projects"));
    let cookie = a.headers.get_all(SET_COOKIE).iter().map(|c| c.to_str().unwrap().to_string()).find(|c| c.starts_with("session="));
    let cookie = cookie.expect("the login sets the session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!a.body.contains(cookie.split(';').next().unwrap().trim_start_matches("session=")), "the token is never in a body");

    // An empty list says what to do next.
    let list = v.get("/projects").await;
    assert!(list.body.contains("There are no projects yet"), "{}", list.body);
    assert!(list.body.contains("id=\"logout\""), "signed-in pages have a logout control");

    // Create a project; the form's idempotency key makes a double submit one project.
    let form = v.get("/projects/new").await;
    let (csrf, key) = (form.csrf(), hidden(&form.body, "_key").unwrap());
    let fields = [("_csrf", csrf.as_str()), ("_key", key.as_str()), ("name", "Apollo"), ("_present_archived", "1")];
    let first = v.post("/projects", &fields).await;
    let again = v.post("/projects", &fields).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert_eq!(first.location, again.location, "the second submit replays the first");
    let project_url = first.location.unwrap().split('?').next().unwrap().to_string();
    let project_id = project_url.rsplit('/').next().unwrap().to_string();
    let listed = v.get("/projects").await;
    assert_eq!(listed.body.matches("data-id=").count(), 1, "one project, not two");

    // A task with an empty title: the error is next to the field, the input is kept.
    let a = v
        .submit(
            &format!("/tasks/new?project={project_id}"),
            "/tasks",
            &[("title", ""), ("project", &project_id), ("priority", "high"), ("notes", "keep me"), ("_present_done", "1")],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("id=\"error-title\""), "{}", a.body);
    assert!(a.body.contains("Enter a title."), "{}", a.body);
    assert!(a.body.contains("keep me"), "typed notes are kept");
    assert!(a.body.contains("<option value=\"high\" selected>"), "the chosen priority is kept");
    let new_key = hidden(&a.body, "_key").unwrap();
    assert_ne!(new_key, key, "a form shown again has a fresh idempotency key");

    let a = v
        .submit("/tasks/new", "/tasks", &[("title", "Launch"), ("project", &project_id), ("priority", "high"), ("_present_done", "1")])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let task_url = a.location.unwrap().split('?').next().unwrap().to_string();
    let detail = v.get(&task_url).await;
    assert!(detail.body.contains("Launch") && detail.body.contains("High") && detail.body.contains("Apollo"), "{}", detail.body);

    // Edit it.
    let a = v
        .submit(
            &format!("{task_url}/edit"),
            &format!("{task_url}/edit"),
            &[("title", "Launch!"), ("project", &project_id), ("priority", "low"), ("_present_done", "1"), ("done", "true")],
        )
        .await;
    assert_eq!(a.location.as_deref(), Some(format!("{task_url}?n=saved").as_str()));
    let detail = v.get(&task_url).await;
    assert!(detail.body.contains("Launch!") && detail.body.contains("Low"), "{}", detail.body);

    // The project page lists its task.
    assert!(v.get(&project_url).await.body.contains("Launch!"));

    // Delete with confirmation.
    let a = v.submit(&format!("{task_url}/delete"), &format!("{task_url}/delete"), &[]).await;
    assert_eq!(a.location.as_deref(), Some("/tasks?n=deleted"));
    assert_eq!(v.get(&task_url).await.status, StatusCode::NOT_FOUND);

    // Log out: back to the login page, and the session is gone.
    let a = v.submit("/projects", "/logout", &[]).await;
    assert_eq!(a.location.as_deref(), Some("/login?n=signed-out"));
    assert_eq!(v.get("/projects").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn another_persons_rows_are_absent_and_their_pages_not_found() {
    let t = spawn_app(TASKBOARD).await;
    let ann = member(&t, "ann@example.com").await;
    let p = api_create(&t, &ann, "/api/projects", json!({"name": "Ann's secret"})).await;
    member(&t, "bob@example.com").await;
    let mut bob = Visitor::new(&t);
    bob.log_in("bob@example.com").await;
    let list = bob.get("/projects").await;
    assert!(!list.body.contains("Ann&#x27;s secret") && !list.body.contains("Ann's secret"));
    let id = p["id"].as_str().unwrap();
    for page in [format!("/projects/{id}"), format!("/projects/{id}/edit"), format!("/projects/{id}/delete")] {
        let a = bob.get(&page).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{page}");
        assert!(a.body.contains("does not exist, or you do not have access"), "{page}: {}", a.body);
        assert!(a.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    }
    // Changing it by a forged form is refused the same way.
    let csrf = bob.get("/projects").await.csrf();
    let a = bob.post(&format!("/projects/{id}/edit"), &[("_csrf", &csrf), ("name", "mine now")]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = bob.post(&format!("/projects/{id}/delete"), &[("_csrf", &csrf)]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // A task cannot point at Ann's project either.
    let a = bob.submit("/tasks/new", "/tasks", &[("title", "sneaky"), ("project", id)]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("Choose a project from the list."), "{}", a.body);
    let res = t.client.get(t.at(&format!("/api/projects/{id}"))).bearer_auth(&ann).send().await.unwrap();
    let still: serde_json::Value = res.json().await.unwrap();
    assert_eq!(still["name"], "Ann's secret");
}

#[tokio::test]
async fn forms_without_a_valid_csrf_token_change_nothing() {
    let t = spawn_app(TASKBOARD).await;
    let ann = member(&t, "ann@example.com").await;
    let mut v = Visitor::new(&t);
    v.log_in("ann@example.com").await;
    for csrf in ["", "forged-token"] {
        let a = v.post("/projects", &[("_csrf", csrf), ("name", "via CSRF")]).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "token {csrf:?}");
        assert!(a.body.contains("This form had expired"), "{}", a.body);
        assert!(a.body.contains("via CSRF"), "the input is kept");
    }
    // A good token from another site's request is refused too.
    let csrf = v.get("/projects/new").await.csrf();
    let res = t
        .client
        .post(t.at("/projects"))
        .header("cookie", v.cookie_header())
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("_csrf={csrf}&name=cross"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Logging out needs the token as well.
    let a = v.post("/logout", &[("_csrf", "nope")]).await;
    assert_eq!(a.location.as_deref(), Some("/account"));
    assert_eq!(v.get("/projects").await.status, StatusCode::OK, "still signed in");
    let res = t.client.get(t.at("/api/projects")).bearer_auth(&ann).send().await.unwrap();
    let list: serde_json::Value = res.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "nothing was created");
    // Logging in needs the pre-session token (login CSRF).
    let mut fresh = Visitor::new(&t);
    let a = fresh.post("/login", &[("email", "ann@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(!fresh.cookies.contains_key("session"));
}

#[tokio::test]
async fn user_data_is_escaped_everywhere_it_shows() {
    let t = spawn_app(TASKBOARD).await;
    let ann = member(&t, "ann@example.com").await;
    let evil = "<img src=x onerror=alert(1)><script>alert(2)</script>\"'";
    let p = api_create(&t, &ann, "/api/projects", json!({"name": evil})).await;
    let id = p["id"].as_str().unwrap();
    api_create(&t, &ann, "/api/tasks", json!({"title": evil, "project": id, "notes": evil})).await;
    let mut v = Visitor::new(&t);
    v.log_in("ann@example.com").await;
    for page in [
        "/projects",
        &format!("/projects/{id}"),
        &format!("/projects/{id}/edit"),
        &format!("/projects/{id}/delete"),
        "/tasks",
        "/tasks/new",
    ] {
        let a = v.get(page).await;
        assert_eq!(a.status, StatusCode::OK, "{page}");
        assert!(!a.body.contains("<img src=x") && !a.body.contains("<script>alert"), "{page} holds raw markup: {}", a.body);
        assert!(a.body.contains("&lt;img src=x onerror=alert(1)&gt;"), "{page} shows the name as text");
        let csp = a.headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        assert!(csp.contains("object-src 'none'") && csp.contains("base-uri 'none'") && csp.contains("frame-ancestors 'none'"));
    }
}

#[tokio::test]
async fn an_ended_session_sends_the_person_to_log_in_and_back() {
    let t = spawn_app(TASKBOARD).await;
    member(&t, "ann@example.com").await;
    let mut v = Visitor::new(&t);
    v.log_in("ann@example.com").await;
    // End every session of Ann's from the server side.
    let id = t.app.user_id_by_email("ann@example.com").await.unwrap().unwrap();
    t.app.end_user_sessions(&id, "test").await.unwrap();
    let a = v.get("/tasks?priority=high").await;
    assert_eq!(a.location.as_deref(), Some("/login?next=%2Ftasks%3Fpriority%3Dhigh&n=expired"));
    assert!(!v.cookies.contains_key("session"), "the dead cookie is cleared");
    let page = v.get("/login?next=%2Ftasks%3Fpriority%3Dhigh&n=expired").await;
    assert!(page.body.contains("Your session has ended"), "{}", page.body);
    let a = v
        .post("/login", &[("_csrf", &page.csrf()), ("email", "ann@example.com"), ("password", PASSWORD), ("next", "/tasks?priority=high")])
        .await;
    assert_eq!(a.location.as_deref(), Some("/tasks?priority=high"));
    // A `next` elsewhere is not followed.
    for bad in ["//evil.example/", "https://evil.example/", "/\\evil.example"] {
        let mut other = Visitor::new(&t);
        let form = other.get("/login").await;
        let a = other.post("/login", &[("_csrf", &form.csrf()), ("email", "ann@example.com"), ("password", PASSWORD), ("next", bad)]).await;
        assert_eq!(a.location.as_deref(), Some("/"), "{bad}");
    }
}

#[tokio::test]
async fn a_stale_edit_is_explained_and_keeps_the_input() {
    let t = spawn_app(TASKBOARD).await;
    let ann = member(&t, "ann@example.com").await;
    let p = api_create(&t, &ann, "/api/projects", json!({"name": "Apollo"})).await;
    let id = p["id"].as_str().unwrap();
    let mut v = Visitor::new(&t);
    v.log_in("ann@example.com").await;
    let form = v.get(&format!("/projects/{id}/edit")).await;
    // Someone else saves first.
    let res =
        t.client.patch(t.at(&format!("/api/projects/{id}"))).bearer_auth(&ann).json(&json!({"name": "Artemis"})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let a = v
        .post(
            &format!("/projects/{id}/edit"),
            &[
                ("_csrf", &form.csrf()),
                ("_version", &hidden(&form.body, "_version").unwrap()),
                ("name", "Apollo 11"),
                ("_present_archived", "1"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::PRECONDITION_FAILED);
    assert!(a.body.contains("Someone else changed this project"), "{}", a.body);
    assert!(a.body.contains("Reload the latest version"));
    assert!(a.body.contains("value=\"Apollo 11\""), "the typed name is kept");
    let res = t.client.get(t.at(&format!("/api/projects/{id}"))).bearer_auth(&ann).send().await.unwrap();
    let now: serde_json::Value = res.json().await.unwrap();
    assert_eq!(now["name"], "Artemis", "the other change was not overwritten");
}

#[tokio::test]
async fn lists_filter_search_sort_and_page() {
    let t = spawn_app(TASKBOARD).await;
    let ann = member(&t, "ann@example.com").await;
    let p = api_create(&t, &ann, "/api/projects", json!({"name": "Apollo"})).await;
    let pid = p["id"].as_str().unwrap();
    for (i, prio) in ["low", "high", "high", "normal"].iter().enumerate() {
        api_create(&t, &ann, "/api/tasks", json!({"title": format!("task {i}"), "project": pid, "priority": prio})).await;
    }
    let mut v = Visitor::new(&t);
    v.log_in("ann@example.com").await;
    let rows = |body: &str| body.matches("<tr data-id=").count();
    assert_eq!(rows(&v.get("/tasks").await.body), 4);
    assert_eq!(rows(&v.get("/tasks?priority=high").await.body), 2);
    assert_eq!(rows(&v.get("/tasks?q=task+3").await.body), 1);
    let none = v.get("/tasks?priority=low&q=task+1").await;
    assert!(none.body.contains("No tasks match these filters"), "{}", none.body);
    // Sorted by title ascending: task 0 first; the header offers the other direction.
    let sorted = v.get("/tasks?sort=title").await;
    let first = sorted.body.find("task 0").unwrap();
    assert!(first < sorted.body.find("task 3").unwrap());
    assert!(sorted.body.contains("aria-sort=\"ascending\""));
    // Pages of two: following "Next page" shows every task once.
    let mut seen = Vec::new();
    let mut page = "/tasks?sort=title&limit=2".to_string();
    loop {
        let a = v.get(&page).await;
        for i in 0..4 {
            if a.body.contains(&format!(">task {i}<")) {
                seen.push(i);
            }
        }
        let Some(start) = a.body.find("rel=\"next\"") else { break };
        let before = &a.body[..start];
        let href = before.rsplit("href=\"").next().unwrap().split('"').next().unwrap();
        page = href.replace("&#x2f;", "/").replace("&amp;", "&");
    }
    assert_eq!(seen, vec![0, 1, 2, 3]);
    // A bad filter is a message on the page, not an error page.
    let a = v.get("/tasks?colour=red").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("cannot be shown with these filters"), "{}", a.body);
}

#[tokio::test]
async fn navigation_shows_only_what_the_role_may_read() {
    let spec = "# Shop\n\n## Roles\n- member (default)\n- admin\n\n## Entities\n\n### Note\n| field | type | rules |\n|---|---|---|\n| text | text | required |\n\nPermissions:\n- read, create: signed in\n\n### Ledger\n| field | type | rules |\n|---|---|---|\n| entry | text | required |\n\nPermissions:\n- read, create: admin\n";
    let t = spawn_app(spec).await;
    t.app.create_user("admin@example.com", Some("admin"), Some(PASSWORD.to_string()), None).await.unwrap();
    member(&t, "mem@example.com").await;
    let mut m = Visitor::new(&t);
    m.log_in("mem@example.com").await;
    let home = m.get("/").await.body;
    assert!(home.contains("href=\"&#x2f;notes\"") && !home.contains("&#x2f;ledgers"), "{home}");
    assert_eq!(m.get("/ledgers/new").await.status, StatusCode::FORBIDDEN);
    let mut a = Visitor::new(&t);
    a.log_in("admin@example.com").await;
    assert!(a.get("/").await.body.contains("href=\"&#x2f;ledgers\""));
}

#[tokio::test]
async fn account_page_lists_sessions_revokes_and_changes_the_password() {
    let t = spawn_app(TASKBOARD).await;
    member(&t, "ann@example.com").await;
    let mut laptop = Visitor::new(&t);
    laptop.log_in("ann@example.com").await;
    let mut phone = Visitor::new(&t);
    phone.log_in("ann@example.com").await;
    let page = laptop.get("/account").await;
    assert!(page.body.contains("ann@example.com"));
    assert!(page.body.contains("id=\"logout-all\""));
    assert!(page.body.contains("this device"));
    // Two sessions (plus the API one from sign-up); revoke the phone's.
    let phone_page = phone.get("/account").await;
    let marker = "<tr data-session=\"";
    let current = phone_page.body.split(marker).skip(1).find(|row| row.contains("this device")).unwrap();
    let phone_session = current.split('"').next().unwrap().to_string();
    let a = laptop.post(&format!("/account/sessions/{phone_session}/revoke"), &[("_csrf", &page.csrf())]).await;
    assert_eq!(a.location.as_deref(), Some("/account?n=revoked"));
    assert_eq!(phone.get("/account").await.status, StatusCode::SEE_OTHER, "the phone is logged out");
    // Wrong current password: said next to the field.
    let csrf = laptop.get("/account").await.body;
    let tokens: Vec<String> = csrf.split("name=\"_csrf\" value=\"").skip(1).map(|s| s.split('"').next().unwrap().to_string()).collect();
    let a = laptop
        .post(
            "/account/password",
            &[("_csrf", &tokens[0]), ("current_password", "nope nope nope"), ("new_password", "a whole new passphrase")],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("id=\"error-current_password\""), "{}", a.body);
    let a = laptop
        .post("/account/password", &[("_csrf", &tokens[0]), ("current_password", PASSWORD), ("new_password", "a whole new passphrase")])
        .await;
    assert_eq!(a.location.as_deref(), Some("/account?n=password-changed"), "{}", a.body);
    // Log out everywhere.
    let page = laptop.get("/account").await;
    assert_eq!(page.status, StatusCode::OK);
    let a = laptop.post("/logout-all", &[("_csrf", &page.csrf())]).await;
    assert_eq!(a.location.as_deref(), Some("/login?n=signed-out-all"));
    assert_eq!(laptop.get("/account").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn forgot_and_reset_password_through_pages() {
    let t = spawn_app(TASKBOARD).await;
    member(&t, "ann@example.com").await;
    let mut v = Visitor::new(&t);
    let a = v.submit("/forgot", "/forgot", &[("email", "ann@example.com")]).await;
    assert!(a.body.contains("If an account has this address"));
    let unknown = v.submit("/forgot", "/forgot", &[("email", "nobody@example.com")]).await;
    assert_eq!(unknown.status, a.status);
    let token = t.mail_to("ann@example.com", "password").await.token();
    let page = v.get(&format!("/reset?token={token}")).await;
    assert_eq!(page.headers[REFERRER_POLICY], "no-referrer");
    let a = v.post("/reset", &[("_csrf", &page.csrf()), ("token", &token), ("password", "short")]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("id=\"error-password\""), "{}", a.body);
    let a = v.post("/reset", &[("_csrf", &page.csrf()), ("token", &token), ("password", "my brand new passphrase")]).await;
    assert_eq!(a.location.as_deref(), Some("/login?n=reset"));
    let again = v.post("/reset", &[("_csrf", &page.csrf()), ("token", &token), ("password", "another new passphrase")]).await;
    assert!(again.body.contains("This link does not work"), "a used link is refused");
    let opened = v.get(&format!("/reset?token={token}")).await;
    assert_eq!(opened.status, StatusCode::BAD_REQUEST);
    assert!(
        opened.body.contains("This link does not work") && !opened.body.contains("name=\"password\""),
        "opening a used link says so at once"
    );
}

#[tokio::test]
async fn templates_can_be_overridden_and_broken_overrides_are_named() {
    let custom = "{% extends \"base.html\" %}{% block content %}<h1>Welcome to {{ app.name }}</h1>{% endblock %}";
    let t = spawn_app_with(TASKBOARD, |c| c.ui_templates = vec![("home.html".into(), custom.into())]).await;
    member(&t, "ann@example.com").await;
    let mut v = Visitor::new(&t);
    v.log_in("ann@example.com").await;
    assert!(v.get("/").await.body.contains("<h1>Welcome to Taskboard</h1>"));
    let e = charter_web::ui::Ui::new(&[("list.html".into(), "{% if %}".into())]).err().unwrap();
    assert!(e.starts_with("templates/list.html"), "{e}");
    let e = charter_web::ui::Ui::new(&[("lists.html".into(), "x".into())]).err().unwrap();
    assert!(e.contains("not a UI template"), "{e}");
}

#[tokio::test]
async fn assets_are_served_from_the_app_with_long_caching() {
    let t = spawn_app(TASKBOARD).await;
    let mut v = Visitor::new(&t);
    let page = v.get("/login").await;
    for (needle, mime) in [("/_/htmx.", "text/javascript"), ("/_/css.", "text/css"), ("/_/js.", "text/javascript")] {
        let at = page.body.replace("&#x2f;", "/");
        let start = at.find(needle).unwrap_or_else(|| panic!("{needle} not linked"));
        let path = at[start..].split('"').next().unwrap().to_string();
        let a = v.get(&path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert!(a.headers["content-type"].to_str().unwrap().starts_with(mime));
        assert!(a.headers["cache-control"].to_str().unwrap().contains("immutable"));
    }
    assert_eq!(v.get("/_/htmx.000000000000.js").await.status, StatusCode::NOT_FOUND);
    // Unknown pages are HTML for people, problem JSON under /api.
    let a = v.get("/no/such/page").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let a = v.get("/api/no/such").await;
    assert_eq!(a.headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn the_dev_outbox_page_links_the_mails_and_exists_only_in_dev() {
    let t = spawn_app(TASKBOARD).await;
    let mut v = Visitor::new(&t);
    v.submit("/signup", "/signup", &[("email", "ann@example.com"), ("password", PASSWORD)]).await;
    let token = t.mail_to("ann@example.com", "Confirm").await.token();
    let page = v.get("/_dev/outbox").await;
    assert!(page.body.contains(&format!("&#x2f;verify?token={token}")), "{}", page.body);
    let prod = spawn_app_with(TASKBOARD, |c| c.profile = charter_app::Profile::Prod).await;
    assert_eq!(Visitor::new(&prod).get("/_dev/outbox").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn logging_in_again_replaces_the_session_the_browser_had() {
    let t = spawn_app(TASKBOARD).await;
    member(&t, "ann@example.com").await;
    let mut v = Visitor::new(&t);
    v.log_in("ann@example.com").await;
    let before = v.cookies["session"].clone();
    // Signed in, the login page sends you on; a login form posted anyway
    // (another tab) starts a new session.
    assert_eq!(v.get("/login").await.location.as_deref(), Some("/"));
    let csrf = v.get("/account").await.csrf();
    let a = v.post("/login", &[("_csrf", &csrf), ("email", "ann@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_ne!(v.cookies["session"], before);
    let res = t.client.get(t.at("/api/auth/me")).header("cookie", format!("session={before}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "the old session ended (no session fixation)");
}

#[tokio::test]
async fn pages_holding_a_mail_token_run_no_script_and_notices_never_sit_above_errors() {
    let t = spawn_app(TASKBOARD).await;
    let mut v = Visitor::new(&t);
    for page in ["/verify?token=abc", "/reset?token=abc"] {
        let a = v.get(page).await;
        assert!(!a.body.contains("<script"), "{page} loads a script: {}", a.body);
        assert!(!a.body.contains("hx-boost"), "{page}");
    }
    assert!(v.get("/login").await.body.contains("<script"), "other pages are enhanced");
    // A nameless user's projects name their owner by email, to the owner.
    let ann = member(&t, "ann@example.com").await;
    let p = api_create(&t, &ann, "/api/projects", json!({"name": "Apollo"})).await;
    v.log_in("ann@example.com").await;
    let id = p["id"].as_str().unwrap();
    let detail = v.get(&format!("/projects/{id}?n=created")).await;
    assert!(detail.body.contains("role=\"status\""));
    assert!(detail.body.contains("ann@example.com"), "{}", detail.body);
    let missing = v.get("/projects/nosuchproject?n=created").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(!missing.body.contains("role=\"status\""), "no 'Created.' above 'Not found'");
}
