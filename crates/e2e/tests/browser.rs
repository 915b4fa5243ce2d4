//! The generated web UI of the taskboard example, driven in headless
//! Chromium and headless Firefox over WebDriver. Each browser's tests are
//! separate tests, so nextest can run or rerun them one by one.

mod support;

use support::{Browser, Session};

const TASKBOARD: &str = include_str!("../../../examples/taskboard/app.md");

const A_EMAIL: &str = "ada@example.com";
const A_PASSWORD: &str = "violet-harbour-lantern-42";
const B_EMAIL: &str = "bob@example.com";
const B_PASSWORD: &str = "copper-meadow-kettle-17";

/// The harness itself: the driver starts, the browser opens the login
/// page, and screenshots are written at both widths.
async fn smoke(browser: Browser) {
    let app = charter_testkit::spawn_app(TASKBOARD).await;
    let s = Session::start(browser, &app.url, "").await;
    s.goto("/login").await;
    assert_eq!(s.path().await, "/login");
    s.find("form [name=email]").await;
    s.find("form [name=password]").await;
    s.screenshot("login").await;
    for width in [support::DESKTOP.0, support::PHONE.0] {
        let shot = support::screenshot_root().join(browser.name()).join(format!("login-{width}.png"));
        let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
        assert!(png.starts_with(b"\x89PNG"), "{} is a PNG", shot.display());
    }
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_chromium() {
    smoke(Browser::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_firefox() {
    smoke(Browser::Firefox).await;
}

/// The last path segment: the id in `/projects/<id>`.
fn id_in(path: &str) -> String {
    path.split('?').next().unwrap_or("").rsplit('/').next().unwrap_or("").to_string()
}

/// `/projects/<id>` or `/tasks/<id>`: a detail page, not `new` or a list.
fn is_detail(base: &str) -> impl Fn(&str) -> bool + '_ {
    move |p: &str| {
        let p = p.split('?').next().unwrap_or("");
        p.strip_prefix(base).and_then(|rest| rest.strip_prefix('/')).is_some_and(|id| !id.is_empty() && id != "new" && !id.contains('/'))
    }
}

/// The value of query parameter `key` in `path_and_query`, decoded.
fn query_param(path_and_query: &str, key: &str) -> Option<String> {
    let query = path_and_query.split_once('?')?.1;
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Logs in through the login form (already open) and waits to leave it.
async fn log_in(s: &Session, email: &str, password: &str) {
    s.fill("form:has([name=password])", "email", email).await;
    s.fill("form:has([name=password])", "password", password).await;
    s.submit("form:has([name=password])").await;
    s.wait_path("the login to lead away from /login", |p| !p.starts_with("/login")).await;
}

/// A person's whole journey through the taskboard UI: sign up, verify from
/// the mail, log in, make a project and tasks (meeting a validation error
/// on the way), edit, see that another user sees none of it, log out.
/// Every page is photographed at desktop and phone width; every signed-in
/// page must offer `#logout`.
async fn journey(browser: Browser) {
    let app = charter_testkit::spawn_app(TASKBOARD).await;
    let mut a = Session::start(browser, &app.url, "").await;
    let name = browser.name();

    // Sign up through the form.
    a.goto("/signup").await;
    a.screenshot("signup").await;
    a.fill("form", "email", A_EMAIL).await;
    a.fill("form", "password", A_PASSWORD).await;
    if a.has("form [name=name]").await {
        a.fill("form", "name", "Ada").await;
    }
    a.submit("form:has([name=password])").await;
    a.wait_path("signing up to lead away from /signup", |p| !p.starts_with("/signup")).await;
    let notice = a.find("[role=status]").await.text().await.expect("notice text");
    assert!(notice.to_lowercase().contains("inbox"), "{name}: after signing up, a notice tells to check the inbox: {notice:?}");
    a.screenshot("signup-check-inbox").await;

    // Logging in before verifying fails with a message.
    if !a.path().await.starts_with("/login") {
        a.goto("/login").await;
    }
    a.fill("form:has([name=password])", "email", A_EMAIL).await;
    a.fill("form:has([name=password])", "password", A_PASSWORD).await;
    a.submit("form:has([name=password])").await;
    let alert = a.find("[role=alert]").await.text().await.expect("alert text");
    assert!(alert.to_lowercase().contains("verif"), "{name}: an unverified login says why it failed: {alert:?}");
    assert!(a.path().await.starts_with("/login"), "{name}: an unverified login stays on the login page");
    assert!(!a.has("#logout").await, "{name}: an unverified login signs nobody in");
    a.screenshot("login-unverified").await;

    // The verification mail's link opens a page whose button spends the token.
    let token = app.mail_to(A_EMAIL, "Confirm").await.token();
    a.goto(&format!("/verify?token={token}")).await;
    a.find("#verify").await;
    a.screenshot("verify").await;
    a.click("#verify").await;
    a.wait_path("verifying to lead away from /verify", |p| !p.starts_with("/verify")).await;
    a.screenshot("verified").await;

    // Log in.
    if !a.path().await.starts_with("/login") {
        a.goto("/login").await;
    }
    a.screenshot("login").await;
    log_in(&a, A_EMAIL, A_PASSWORD).await;
    assert!(a.has("a[href=\"/projects\"]").await, "{name}: the home page links to /projects");
    assert!(a.has("a[href=\"/tasks\"]").await, "{name}: the home page links to /tasks");
    a.signed_in_page("home").await;

    // No projects yet: the empty state links to creating one.
    a.goto("/projects").await;
    a.find(".empty").await;
    assert!(!a.has("table.records tr[data-id]").await, "{name}: a new user's project list has no rows");
    a.signed_in_page("projects-empty").await;
    a.click(".empty a[href=\"/projects/new\"]").await;
    a.wait_path("the empty state's link to open /projects/new", |p| p == "/projects/new").await;
    a.find("form.record-form").await;
    a.signed_in_page("project-new").await;

    // Create "Apollo": the app shows its detail page.
    a.fill("form.record-form", "name", "Apollo").await;
    a.submit("form.record-form").await;
    let project_path = a.wait_path("creating a project to open its page", is_detail("/projects")).await;
    let project = id_in(&project_path);
    let project_path = format!("/projects/{project}");
    assert!(a.body_text().await.contains("Apollo"), "{name}: the new project's page shows its name");
    a.signed_in_page("project-detail").await;

    // A task with an empty title: the error is shown by the field and the
    // rest of the input is kept.
    a.goto("/tasks/new").await;
    a.find("form.record-form").await;
    a.signed_in_page("task-new").await;
    let notes = "Check the heat shield twice.";
    a.fill("form.record-form", "title", "").await;
    a.fill("form.record-form", "project", "Apollo").await;
    a.fill("form.record-form", "priority", "high").await;
    a.fill("form.record-form", "notes", notes).await;
    assert_eq!(a.value("form.record-form", "project").await, project, "{name}: the project select offers Apollo by name");
    a.submit("form.record-form").await;
    let error = a.find("#error-title").await;
    assert!(
        error.attr("class").await.expect("class").unwrap_or_default().contains("field-error"),
        "{name}: #error-title is a .field-error"
    );
    let beside = a
        .client
        .execute(
            "const e = document.getElementById('error-title'); const f = document.querySelector('form.record-form [name=title]'); \
             return !!(e && f && e.parentElement.contains(f));",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(beside, serde_json::Value::Bool(true), "{name}: #error-title sits next to the title field");
    assert_eq!(a.value("form.record-form", "project").await, project, "{name}: the chosen project is kept after an error");
    assert_eq!(a.value("form.record-form", "priority").await, "high", "{name}: the chosen priority is kept after an error");
    assert_eq!(a.value("form.record-form", "notes").await, notes, "{name}: the notes are kept after an error");
    a.signed_in_page("task-new-error").await;

    // Fixed, it is created.
    a.fill("form.record-form", "title", "Design the heat shield").await;
    a.submit("form.record-form").await;
    let task_path = a.wait_path("creating a task to open its page", is_detail("/tasks")).await;
    let task = id_in(&task_path);
    let task_path = format!("/tasks/{task}");
    let text = a.body_text().await;
    for shown in ["Design the heat shield", "Apollo", notes] {
        assert!(text.contains(shown), "{name}: the new task's page shows {shown:?}:\n{text}");
    }
    assert!(text.to_lowercase().contains("high"), "{name}: the new task's page shows its priority:\n{text}");
    a.signed_in_page("task-detail").await;

    // A second task.
    a.goto("/tasks/new").await;
    a.fill("form.record-form", "title", "Pick a crew").await;
    a.fill("form.record-form", "project", "Apollo").await;
    a.submit("form.record-form").await;
    let second_path = a.wait_path("creating the second task to open its page", |p| is_detail("/tasks")(p) && id_in(p) != task).await;
    let second = id_in(&second_path);

    // Edit the first task's priority; its page shows the change.
    a.goto(&format!("/tasks/{task}/edit")).await;
    a.find("form.record-form").await;
    assert_eq!(a.value("form.record-form", "priority").await, "high", "{name}: the edit form starts from the stored priority");
    a.signed_in_page("task-edit").await;
    a.fill("form.record-form", "priority", "low").await;
    a.submit("form.record-form").await;
    a.wait_path("saving the edit to open the task's page", |p| p.split('?').next() == Some(task_path.as_str())).await;
    let text = a.body_text().await.to_lowercase();
    assert!(text.contains("low") && !text.contains("high"), "{name}: the task's page shows the new priority:\n{text}");
    a.signed_in_page("task-detail-edited").await;

    // The lists.
    a.goto("/tasks").await;
    a.find("table.records").await;
    for id in [&task, &second] {
        assert!(a.has(&format!("table.records tr[data-id=\"{id}\"]")).await, "{name}: /tasks lists task {id}");
    }
    a.signed_in_page("tasks").await;
    a.goto("/projects").await;
    let row = a.find(&format!("table.records tr[data-id=\"{project}\"]")).await;
    assert!(row.text().await.expect("row text").contains("Apollo"), "{name}: /projects lists Apollo");
    a.signed_in_page("projects").await;

    // Delete the second task after confirming.
    a.goto(&format!("/tasks/{second}/delete")).await;
    a.find("#confirm-delete").await;
    a.signed_in_page("task-delete").await;
    a.click("#confirm-delete").await;
    a.wait_path("deleting to lead away from the confirmation", |p| !p.contains("/delete")).await;
    a.goto("/tasks").await;
    a.find(&format!("table.records tr[data-id=\"{task}\"]")).await;
    assert!(!a.has(&format!("table.records tr[data-id=\"{second}\"]")).await, "{name}: the deleted task is gone from /tasks");

    // The account page.
    a.goto("/account").await;
    for css in ["#logout-all", "[name=current_password]", "[name=new_password]"] {
        assert!(a.has(css).await, "{name}: /account has {css}");
    }
    a.signed_in_page("account").await;

    // Another user, in a browser of their own, sees none of it.
    app.signup_and_login(B_EMAIL, B_PASSWORD).await;
    let mut b = Session::start(browser, &app.url, "other").await;
    b.goto("/forgot").await;
    b.find("form [name=email]").await;
    b.screenshot("forgot").await;
    b.fill("form:has([name=email])", "email", B_EMAIL).await;
    b.submit("form:has([name=email])").await;
    b.wait_until("the forgot form to be sent", || async { !b.has("form [name=email]").await }).await;
    b.wait_loaded().await;
    b.screenshot("forgot-sent").await;
    let reset = app.mail_to(B_EMAIL, "Reset").await.token();
    b.goto(&format!("/reset?token={reset}")).await;
    b.find("form [name=password]").await;
    b.screenshot("reset").await;
    // Nothing on a page reached from a mail link keeps its token.
    let stored = b.client.execute("return JSON.stringify(sessionStorage) + JSON.stringify(localStorage)", vec![]).await.expect("storage");
    assert!(!stored.to_string().contains(&reset), "{name}: the reset token is in browser storage: {stored}");
    b.goto("/login").await;
    log_in(&b, B_EMAIL, B_PASSWORD).await;
    b.goto("/projects").await;
    b.find(".empty").await;
    assert!(!b.body_text().await.contains("Apollo"), "{name}: another user's project list does not show Apollo");
    assert!(!b.has(&format!("tr[data-id=\"{project}\"]")).await, "{name}: another user's project list has no row for Apollo");
    b.signed_in_page("projects").await;
    b.goto(&project_path).await;
    assert_eq!(b.status_of(&project_path).await, 404, "{name}: another user's project is not found");
    assert!(!b.body_text().await.contains("Apollo"), "{name}: the not-found page does not show Apollo");
    b.signed_in_page("project-not-found").await;
    assert_eq!(b.status_of(&task_path).await, 404, "{name}: another user's task is not found");
    b.goto("/tasks/new").await;
    b.find("form.record-form select[name=project]").await;
    assert!(
        !b.has(&format!("form.record-form select[name=project] option[value=\"{project}\"]")).await,
        "{name}: another user cannot choose Apollo as a task's project"
    );
    b.signed_in_page("task-new").await;
    b.close().await;

    // Logging out lands on the login page; signed-in pages then send there.
    a.goto("/projects").await;
    a.click("#logout").await;
    a.wait_path("logging out to land on /login", |p| p.split('?').next() == Some("/login")).await;
    assert!(!a.has("#logout").await, "{name}: after logging out no logout control is shown");
    a.screenshot("logged-out").await;
    a.goto("/projects").await;
    let at = a.wait_path("a signed-out visit to /projects to go to /login", |p| p.starts_with("/login")).await;
    assert_eq!(query_param(&at, "next").as_deref(), Some("/projects"), "{name}: /projects sends to /login?next=%2Fprojects, not {at}");
    assert!(at.starts_with("/login?next=%2Fprojects"), "{name}: /projects sends to /login?next=%2Fprojects, not {at}");
    assert_eq!(a.value("form", "next").await, "/projects", "{name}: the login form carries next=/projects");
    a.screenshot("login-next").await;

    assert!(a.signed_in_pages.len() >= 10, "{name}: the journey checked #logout on every signed-in page: {:?}", a.signed_in_pages);
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journey_chromium() {
    journey(Browser::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journey_firefox() {
    journey(Browser::Firefox).await;
}

/// The account flows a person reaches from the UI alone: a password reset
/// from the mail, a password change (a wrong current password first),
/// ending another device's session, and logging out everywhere.
async fn account(browser: Browser) {
    const NEW_PASSWORD: &str = "amber-orchard-compass-63";
    const NEWER_PASSWORD: &str = "silver-canyon-ribbon-58";
    let app = charter_testkit::spawn_app(TASKBOARD).await;
    let name = browser.name();
    app.signup_and_login(A_EMAIL, A_PASSWORD).await;
    let mut a = Session::start(browser, &app.url, "").await;

    // Forgot, then the reset page from the mail sets a new password.
    a.goto("/forgot").await;
    a.fill("form:has([name=email])", "email", A_EMAIL).await;
    a.submit("form:has([name=email])").await;
    a.wait_until("the forgot form to be sent", || async { !a.has("form [name=email]").await }).await;
    let token = app.mail_to(A_EMAIL, "Reset").await.token();
    a.goto(&format!("/reset?token={token}")).await;
    a.fill("form:has([name=password])", "password", NEW_PASSWORD).await;
    a.submit("form:has([name=password])").await;
    a.wait_path("the reset to lead away from /reset", |p| !p.starts_with("/reset")).await;
    a.screenshot("reset-done").await;
    // The link is spent.
    a.goto(&format!("/reset?token={token}")).await;
    let used = a.body_text().await;
    assert!(used.contains("does not work"), "{name}: a used reset link says it does not work: {used}");
    a.screenshot("reset-used").await;
    a.goto("/login").await;
    log_in(&a, A_EMAIL, NEW_PASSWORD).await;
    a.signed_in_page("home-after-reset").await;

    // Another device signs in: the account page lists both sessions.
    let other_device = app.login(A_EMAIL, NEW_PASSWORD).await;
    a.goto("/account").await;
    let rows = a.find_all("table.sessions tr[data-session]").await;
    assert_eq!(rows.len(), 2, "{name}: /account lists this browser and the other device");
    a.signed_in_page("account-two-sessions").await;

    // A wrong current password is refused next to its field.
    a.fill("form[action=\"/account/password\"]", "current_password", "not-my-password-at-all").await;
    a.fill("form[action=\"/account/password\"]", "new_password", NEWER_PASSWORD).await;
    a.submit("form[action=\"/account/password\"]").await;
    let error = a.find("#error-current_password").await.text().await.expect("error text");
    assert!(error.to_lowercase().contains("current password"), "{name}: the wrong current password is explained: {error:?}");
    a.signed_in_page("account-password-error").await;

    // End the other device's session from the list.
    a.goto("/account").await;
    let other = a
        .client
        .execute(
            "const row = [...document.querySelectorAll('table.sessions tr[data-session]')].find(r => !r.querySelector('.badge')); \
             return row ? row.dataset.session : null;",
            vec![],
        )
        .await
        .expect("script");
    let other = other.as_str().expect("the other device's row").to_string();
    a.click(&format!("tr[data-session=\"{other}\"] button[type=submit]")).await;
    a.wait_until("the other session to leave the list", || async { !a.has(&format!("tr[data-session=\"{other}\"]")).await }).await;
    let r = app.client.get(app.at("/api/auth/me")).bearer_auth(&other_device).send().await.unwrap();
    assert_eq!(r.status(), 401, "{name}: the revoked device is signed out on its next request");
    a.signed_in_page("account-one-session").await;

    // Change the password with the right current one.
    a.fill("form[action=\"/account/password\"]", "current_password", NEW_PASSWORD).await;
    a.fill("form[action=\"/account/password\"]", "new_password", NEWER_PASSWORD).await;
    a.submit("form[action=\"/account/password\"]").await;
    a.wait_until("a notice to confirm the new password", || async {
        a.has("[role=status]").await && a.find("[role=status]").await.text().await.unwrap_or_default().to_lowercase().contains("password")
    })
    .await;
    a.signed_in_page("account-password-changed").await;
    assert_eq!(app.post("/api/auth/login", serde_json::json!({"email": A_EMAIL, "password": NEWER_PASSWORD})).await.status(), 200);

    // Log out everywhere: this browser too.
    a.goto("/account").await;
    a.click("#logout-all").await;
    a.wait_path("logging out everywhere to land on /login", |p| p.starts_with("/login")).await;
    a.goto("/account").await;
    a.wait_path("a signed-out visit to /account to go to /login", |p| p.starts_with("/login")).await;
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_chromium() {
    account(Browser::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_firefox() {
    account(Browser::Firefox).await;
}

/// What security.md asks of the browser side, checked in a real browser:
/// the session cookie is out of reach of scripts, the UI keeps nothing
/// else in the browser and loads nothing from elsewhere, markup typed
/// into a record shows as text, and the page's CSP stops inline scripts.
async fn security(browser: Browser) {
    let app = charter_testkit::spawn_app(TASKBOARD).await;
    app.signup_and_login(A_EMAIL, A_PASSWORD).await;
    let mut s = Session::start(browser, &app.url, "security").await;
    let name = browser.name();
    s.goto("/login").await;
    log_in(&s, A_EMAIL, A_PASSWORD).await;

    // The session cookie is HttpOnly and SameSite=Lax: scripts cannot read it.
    let cookie = s.client.get_named_cookie("session").await.unwrap_or_else(|e| panic!("{name}: no session cookie after logging in: {e}"));
    assert_eq!(cookie.http_only(), Some(true), "{name}: the session cookie is HttpOnly");
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Lax)", "{name}: the session cookie is SameSite=Lax");
    let visible = s.client.execute("return document.cookie", vec![]).await.expect("document.cookie");
    let visible = visible.as_str().unwrap_or_default().to_string();
    assert!(!visible.split(';').any(|c| c.trim().starts_with("session=")), "{name}: document.cookie shows the session cookie: {visible:?}");

    // Markup in a record's name is shown as text, never run or rendered.
    let markup = "<img src=x onerror=alert(1)>";
    s.goto("/projects/new").await;
    s.fill("form.record-form", "name", markup).await;
    s.submit("form.record-form").await;
    let detail = s.wait_path("creating the project to open its page", is_detail("/projects")).await;
    let heading = s.find("main h1").await.text().await.expect("heading");
    assert_eq!(heading.trim(), markup, "{name}: the name shows literally");
    assert!(!s.has("main img").await, "{name}: the name did not become an <img>");
    assert!(s.client.get_alert_text().await.is_err(), "{name}: no alert opened");
    s.signed_in_page("markup-detail").await;
    s.goto("/projects").await;
    let row = s.find(&format!("table.records tr[data-id=\"{}\"]", id_in(&detail))).await;
    assert!(row.text().await.expect("row text").contains(markup), "{name}: the list shows the name literally");
    assert!(!s.has("main img").await, "{name}: the list shows no <img>");
    s.signed_in_page("markup-list").await;

    // The CSP stops inline scripts and inline event handlers, and says so.
    let csp = s
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             fetch(location.href, {credentials: 'same-origin'}).then(r => done(r.headers.get('content-security-policy') || ''), e => done(String(e)));",
            vec![],
        )
        .await
        .expect("read the CSP header");
    let csp = csp.as_str().unwrap_or_default().to_string();
    for directive in ["object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"] {
        assert!(csp.contains(directive), "{name}: the page's CSP has {directive}: {csp:?}");
    }
    for allowance in ["'unsafe-inline'", "'unsafe-eval'"] {
        assert!(!csp.contains(allowance), "{name}: the page's CSP does not allow {allowance}: {csp:?}");
    }
    let ran = s
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1]; const seen = []; \
             document.addEventListener('securitypolicyviolation', e => seen.push(e.violatedDirective)); \
             const sc = document.createElement('script'); sc.textContent = 'window.__inlineRan = true'; document.body.appendChild(sc); \
             const d = document.createElement('div'); d.setAttribute('onclick', 'window.__handlerRan = true'); document.body.appendChild(d); d.click(); \
             setTimeout(() => done({inline: window.__inlineRan === true, handler: window.__handlerRan === true, violations: seen}), 300);",
            vec![],
        )
        .await
        .expect("inject inline script");
    assert_eq!(ran["inline"], false, "{name}: an inline <script> added to the page did not run: {ran}");
    assert_eq!(ran["handler"], false, "{name}: an inline onclick handler did not run: {ran}");
    assert!(ran["violations"].as_array().is_some_and(|v| !v.is_empty()), "{name}: the browser reported CSP violations: {ran}");

    // Nothing from other origins; nothing in browser storage but the cookie.
    let foreign = s
        .client
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name).filter(u => !u.startsWith(location.origin + '/'))",
            vec![],
        )
        .await
        .expect("resource list");
    assert_eq!(foreign, serde_json::json!([]), "{name}: the page loads nothing from other origins");
    let stored = s.client.execute("return [JSON.stringify(localStorage), JSON.stringify(sessionStorage)]", vec![]).await.expect("storage");
    assert_eq!(stored, serde_json::json!(["{}", "{}"]), "{name}: the UI keeps nothing in browser storage");
    for c in s.client.get_all_cookies().await.expect("cookies") {
        assert!(["session", "csrf"].contains(&c.name()), "{name}: only the session and CSRF cookies are set, not {c}");
        assert_eq!(c.http_only(), Some(true), "{name}: the {} cookie is HttpOnly", c.name());
    }

    // Logging out removes the session cookie from the browser.
    s.click("#logout").await;
    s.wait_path("logging out to land on /login", |p| p.split('?').next() == Some("/login")).await;
    assert!(s.client.get_named_cookie("session").await.is_err(), "{name}: the session cookie is gone after logging out");
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_chromium() {
    security(Browser::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_firefox() {
    security(Browser::Firefox).await;
}
