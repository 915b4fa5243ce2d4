//! The generated web UI: server-rendered pages for auth and for every
//! entity, progressively enhanced by htmx (vendored, served from `/_/`).
//!
//! Handlers here parse forms, call the same use cases as the API
//! (`charter_app`), and render templates; permissions are never decided
//! here. What the UI adds is presentation: which links to show a role (the
//! server still refuses what the rules refuse), field errors in words, and
//! the browser's own protections (CSRF tokens in forms, a strict CSP).
//!
//! Templates are minijinja with HTML auto-escaping; every default can be
//! replaced by a file of the same name in `templates/` beside the spec.

mod account;
mod assets;
mod auth_pages;
mod form;
mod records;
mod view;

use crate::auth::cookie_name;
use crate::caller::{client_info, credentials_named};
use crate::SharedApp;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use charter_app::auth::{ClientInfo, Session};
use charter_app::permissions::{verdict, Who};
use charter_app::{AppError, Profile};
use charter_model::{Action, CompareOp, Entity, Expr, Value, USER};
use serde_json::{json, Value as J};
use std::sync::Arc;

/// The default templates, by name; `templates/<name>` beside the spec replaces one.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("macros.html", include_str!("../../templates/macros.html")),
    ("home.html", include_str!("../../templates/home.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("signup.html", include_str!("../../templates/signup.html")),
    ("verify.html", include_str!("../../templates/verify.html")),
    ("forgot.html", include_str!("../../templates/forgot.html")),
    ("reset.html", include_str!("../../templates/reset.html")),
    ("account.html", include_str!("../../templates/account.html")),
    ("list.html", include_str!("../../templates/list.html")),
    ("detail.html", include_str!("../../templates/detail.html")),
    ("form.html", include_str!("../../templates/form.html")),
    ("delete.html", include_str!("../../templates/delete.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("outbox.html", include_str!("../../templates/outbox.html")),
];

/// The compiled templates of one app.
pub struct Ui {
    env: minijinja::Environment<'static>,
}

impl Ui {
    /// Compiles the default templates and the app's overrides. An override
    /// with an unknown name or a syntax error is refused with its name.
    pub fn new(overrides: &[(String, String)]) -> Result<Ui, String> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, _) in overrides {
            if !TEMPLATES.iter().any(|(n, _)| n == name) {
                let known: Vec<&str> = TEMPLATES.iter().map(|(n, _)| *n).collect();
                return Err(format!("templates/{name}: not a UI template; the UI uses {}", known.join(", ")));
            }
        }
        for (name, source) in TEMPLATES {
            let source = overrides.iter().find(|(n, _)| n == name).map_or(*source, |(_, s)| s.as_str());
            env.add_template_owned(name.to_string(), source.to_string()).map_err(|e| format!("templates/{name}: {e}"))?;
        }
        // Render every template once with an empty context so a broken
        // override fails at start-up, not on a user's request.
        for (name, _) in TEMPLATES {
            if *name == "macros.html" {
                continue;
            }
            let t = env.get_template(name).map_err(|e| format!("templates/{name}: {e}"))?;
            t.render(json!({"page": {"title": ""}})).map_err(|e| format!("templates/{name}: {e}"))?;
        }
        Ok(Ui { env })
    }

    fn render(&self, name: &str, ctx: &J) -> Result<String, String> {
        let t = self.env.get_template(name).map_err(|e| e.to_string())?;
        t.render(ctx).map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        })
    }
}

/// Marks responses that are UI pages, so the middleware leaves their
/// status, body and headers as they are.
#[derive(Clone, Copy)]
pub struct UiPage;

/// The UI's routes. They need an `Extension<Arc<Ui>>` layered around them
/// (see `crate::router`), shared with the not-found fallback.
pub fn routes(app: &SharedApp) -> Router<SharedApp> {
    Router::new().merge(assets::routes()).merge(auth_pages::routes()).merge(account::routes()).merge(records::routes(app))
}

/// The answer for any path nothing else serves: HTML for people, problem
/// JSON under `/api`.
pub async fn not_found(State(app): State<SharedApp>, Extension(ui): Extension<Arc<Ui>>, req: Request) -> Response {
    if req.uri().path().starts_with("/api/") || req.uri().path() == "/api" {
        return crate::Problem::not_found().into_response();
    }
    let (mut parts, _) = req.into_parts();
    let viewer = match Viewer::from_request_parts(&mut parts, &app).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    error_page(&app, &ui, &viewer, StatusCode::NOT_FOUND)
}

/// Who is looking at a page: the cookie session, if any. The UI reads the
/// cookie only; bearer tokens are for API clients.
pub struct Viewer {
    pub session: Option<Session>,
    /// A session cookie was sent but names no live session (expired or revoked).
    pub expired: bool,
    /// The pre-session CSRF cookie, for forms used before logging in.
    pub nonce: Option<String>,
    /// Path and query of this request.
    pub here: String,
    pub method: Method,
    /// The request came from htmx (`HX-Request`).
    pub htmx: bool,
    pub cross_site: bool,
    pub client: ClientInfo,
    /// The session cookie as sent (a login replaces the session it names).
    pub presented: charter_app::Credentials,
}

const NONCE_SECURE: &str = "__Host-csrf";
const NONCE_DEV: &str = "csrf";

fn nonce_cookie_name(app: &SharedApp) -> &'static str {
    if cookie_name(app) == crate::caller::COOKIE_SECURE {
        NONCE_SECURE
    } else {
        NONCE_DEV
    }
}

impl FromRequestParts<SharedApp> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, Self::Rejection> {
        let mut creds = credentials_named(parts, cookie_name(app));
        creds.bearer = None;
        let had_cookie = creds.cookie.is_some();
        let presented = creds.clone();
        let (session, expired) = match app.session(&creds).await {
            Ok(s) => (s, false),
            Err(AppError::Unauthorized) => (None, had_cookie),
            Err(e) => return Err(plain_error(&e)),
        };
        if let Some(s) = &session {
            if let Some(slot) = parts.extensions.get::<crate::middleware::UserSlot>() {
                slot.set(&s.user_id);
            }
        }
        let nonce = crate::caller::cookie(&parts.headers, &[nonce_cookie_name(app)])
            .filter(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()));
        let here = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
        let cross_site =
            parts.headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
        Ok(Viewer {
            session,
            expired,
            nonce,
            here,
            method: parts.method.clone(),
            htmx: parts.headers.contains_key("hx-request"),
            cross_site,
            client: client_info(parts, app),
            presented,
        })
    }
}

impl Viewer {
    pub fn who(&self) -> Who {
        match &self.session {
            Some(s) => charter_app::records::who(&s.caller),
            None => Who::Anonymous,
        }
    }

    pub fn caller(&self) -> charter_store::Caller {
        self.session.as_ref().map_or_else(charter_store::Caller::anonymous, |s| s.caller.clone())
    }

    /// The CSRF token forms on this page carry: tied to the session when
    /// signed in, else to the pre-session cookie (made here if missing).
    fn csrf(&self, app: &SharedApp, fresh_nonce: &mut Option<String>) -> String {
        match (&self.session, &self.nonce) {
            (Some(s), _) => app.csrf_token(&s.id),
            (None, Some(n)) => app.csrf_token(&format!("pre:{n}")),
            (None, None) => {
                let n = fresh_nonce.get_or_insert_with(new_nonce).clone();
                app.csrf_token(&format!("pre:{n}"))
            }
        }
    }

    /// Whether a submitted form's CSRF token is good for this viewer; a
    /// refusal is logged as a security event. (A stale tab or an expired
    /// pre-session cookie is the usual cause: the pages show the form again.)
    pub fn csrf_ok(&self, app: &SharedApp, form: &form::FormData) -> bool {
        let presented = form.get("_csrf").unwrap_or("");
        let ok = !self.cross_site
            && !presented.is_empty()
            && match (&self.session, &self.nonce) {
                (Some(s), _) => app.csrf_ok(&s.id, presented),
                (None, Some(n)) => app.csrf_ok(&format!("pre:{n}"), presented),
                (None, None) => false,
            };
        if !ok {
            tracing::warn!(target: "charter::security", event = "csrf_refused", path = %self.here, "UI form CSRF check failed");
        }
        ok
    }
}

fn new_nonce() -> String {
    crate::random_hex(16)
}

/// A random idempotency key for a create form.
pub fn new_key() -> String {
    new_nonce()
}

/// Notices shown after a redirect, by code (`?n=`): only these texts can
/// appear, so a link cannot put words on the page.
fn notice(code: &str) -> Option<&'static str> {
    Some(match code {
        "created" => "Created.",
        "saved" => "Saved.",
        "deleted" => "Deleted.",
        "check-inbox" => "Check your inbox: we sent you a link to verify your email address.",
        "verified" => "Your email address is verified. You can log in now.",
        "verified-in" => "Your email address is verified.",
        "reset" => "Your password is changed. Log in with the new one.",
        "signed-out" => "You are logged out.",
        "signed-out-all" => "You are logged out on every device.",
        "expired" => "Your session has ended. Log in again to continue.",
        "login" => "Log in to see this page.",
        "password-changed" => "Your password is changed. Other devices were logged out.",
        "revoked" => "That session is logged out.",
        "welcome" => "Welcome! Your account is ready.",
        _ => return None,
    })
}

/// Words for a label from a snake_case name: `due_date` -> `Due date`.
pub fn humanize(name: &str) -> String {
    let spaced = name.replace('_', " ");
    let mut c = spaced.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

/// `LineItem` -> `Line item`.
pub fn entity_label(e: &Entity) -> String {
    humanize(&charter_model::snake_case(&e.name))
}

/// `line_items` -> `Line items`.
pub fn entity_plural_label(e: &Entity) -> String {
    humanize(&e.plural)
}

/// Where an entity's pages live. Plurals always end in `s`, so they never
/// meet the UI's own pages; `metrics` is the one operations path they can.
pub fn base_path(e: &Entity) -> String {
    if e.plural == "metrics" {
        format!("/records/{}", e.plural)
    } else {
        format!("/{}", e.plural)
    }
}

/// Whether this role can ever do `action` on the entity (the row may still decide).
pub fn may(e: &Entity, action: Action, who: Who) -> bool {
    if e.id == USER && action == Action::Create {
        return false;
    }
    !verdict(e.permissions.get(action), who).never()
}

/// Whether the entity belongs in the navigation for this viewer: they may
/// read some of it, and (for `User`) more than their own row, which the
/// account page shows.
fn in_nav(e: &Entity, who: Who) -> bool {
    if who == Who::Anonymous && !matches!(verdict(e.permissions.read.as_ref(), who), charter_app::permissions::Verdict::Allowed) {
        // Signed-out people see only what is readable by everyone.
        return false;
    }
    if e.id == USER {
        let own_only = matches!(&e.permissions.read, Some(Expr::Compare { path, op: CompareOp::Eq, value: Value::Me }) if path.steps.len() == 1 && path.steps[0].name == "id");
        if own_only {
            return false;
        }
    }
    may(e, Action::Read, who)
}

/// The context every page shares.
fn base_context(app: &SharedApp, viewer: &Viewer, title: &str, csrf: &str, notice_code: Option<&str>) -> J {
    let who = viewer.who();
    let nav: Vec<J> = app
        .model
        .entities
        .iter()
        .filter(|e| in_nav(e, who))
        .map(|e| {
            let href = base_path(e);
            let active =
                viewer.here == href || viewer.here.starts_with(&format!("{href}/")) || viewer.here.starts_with(&format!("{href}?"));
            json!({"label": entity_plural_label(e), "href": href, "active": active})
        })
        .collect();
    let user = viewer.session.as_ref().map(|s| {
        let role = s.caller.role.map(|r| app.model.role(r).name.clone());
        json!({"id": s.user_id, "role": role})
    });
    json!({
        "app": {"name": app.model.name, "description": app.model.description},
        "page": {"title": title, "here": viewer.here, "notice": notice_code.and_then(notice)},
        "nav": nav,
        "user": user,
        "signup": app.model.settings.signup == charter_model::Signup::Open,
        "csrf": csrf,
        "assets": assets::urls(),
    })
}

/// Merges `extra` into the base context.
fn context(base: J, extra: J) -> J {
    let mut base = base;
    if let (Some(b), J::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
    base
}

/// A rendered page with the UI's headers.
pub struct Page {
    pub status: StatusCode,
    pub template: &'static str,
    pub title: String,
    pub data: J,
    /// Sent with `Referrer-Policy: no-referrer` (pages reached from mail links).
    pub no_referrer: bool,
    /// htmx should not record this response's URL (a form shown again with errors).
    pub keep_url: bool,
    /// Served without scripts: pages whose address holds a mail token, so
    /// no script (htmx keeps the current path in `sessionStorage`) ever
    /// sees it. Their forms work as plain HTML.
    pub plain: bool,
}

impl Page {
    pub fn new(template: &'static str, title: impl Into<String>, data: J) -> Page {
        Page { status: StatusCode::OK, template, title: title.into(), data, no_referrer: false, keep_url: false, plain: false }
    }

    pub fn status(mut self, status: StatusCode) -> Page {
        self.status = status;
        if status.is_client_error() {
            self.keep_url = true;
        }
        self
    }
}

/// Renders a page for this viewer.
pub fn render(app: &SharedApp, ui: &Ui, viewer: &Viewer, page: Page) -> Response {
    // A notice says what just succeeded: never above an error.
    let notice_code = query_param(&viewer.here, "n").filter(|_| page.status.is_success());
    let mut fresh = None;
    let csrf = viewer.csrf(app, &mut fresh);
    let mut ctx = context(base_context(app, viewer, &page.title, &csrf, notice_code.as_deref()), page.data);
    ctx["page"]["plain"] = J::Bool(page.plain);
    let html = match ui.render(page.template, &ctx) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(template = page.template, error = %e, "a UI template failed to render");
            return plain_error(&AppError::Internal(e));
        }
    };
    let mut res = (page.status, html).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    page_headers(h, page.no_referrer);
    if viewer.htmx {
        let push = if page.keep_url { "false".to_string() } else { viewer.here.clone() };
        if let Ok(v) = HeaderValue::from_str(&push) {
            h.insert("hx-push-url", v);
        }
    }
    if let Some(n) = fresh {
        h.append(header::SET_COOKIE, nonce_cookie(app, &n));
    }
    if viewer.expired {
        h.append(header::SET_COOKIE, crate::auth::clear_cookie(app));
    }
    res.extensions_mut().insert(UiPage);
    res
}

fn nonce_cookie(app: &SharedApp, nonce: &str) -> HeaderValue {
    let secure = if nonce_cookie_name(app) == NONCE_SECURE { "; Secure" } else { "" };
    let v = format!("{}={nonce}; Path=/; HttpOnly; SameSite=Lax{secure}", nonce_cookie_name(app));
    HeaderValue::from_str(&v).expect("hex nonce")
}

/// The CSP of every page: scripts and styles from this origin only (no
/// inline script, no eval), nothing framed, forms post only here.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'; object-src 'none'";

fn page_headers(h: &mut HeaderMap, no_referrer: bool) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::VARY, HeaderValue::from_static("Cookie, HX-Request"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static(if no_referrer { "no-referrer" } else { "strict-origin-when-cross-origin" }),
    );
}

/// A 303 to `to` (a path on this site).
pub fn redirect(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    res.headers_mut().insert(header::LOCATION, HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/")));
    res.extensions_mut().insert(UiPage);
    res
}

/// Sends a signed-out viewer to log in, coming back here afterwards.
pub fn to_login(app: &SharedApp, viewer: &Viewer) -> Response {
    // After a form post, come back to the page the form was on.
    let back = if viewer.method == Method::GET { viewer.here.clone() } else { form_page_of(&viewer.here) };
    let code = if viewer.expired { "expired" } else { "login" };
    let mut res = redirect(&format!("/login?next={}&n={code}", urlencode(&back)));
    if viewer.expired {
        res.headers_mut().append(header::SET_COOKIE, crate::auth::clear_cookie(app));
    }
    res
}

/// The page a form posting to `path` lives on: `/tasks` (create) is on
/// `/tasks/new`; `/tasks/1/edit` is its own page.
fn form_page_of(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("/");
    if path.matches('/').count() == 1 && path.len() > 1 {
        format!("{path}/new")
    } else if path.starts_with("/account") {
        "/account".into()
    } else {
        path.to_string()
    }
}

/// Only a local path may be a `next`: `/x`, never `//host` or `/\host`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") && !n.contains(['\r', '\n']) => n.to_string(),
        _ => "/".into(),
    }
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn query_param(here: &str, name: &str) -> Option<String> {
    let q = here.split_once('?')?.1;
    form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// An error page for a status, in words.
pub fn error_page(app: &SharedApp, ui: &Ui, viewer: &Viewer, status: StatusCode) -> Response {
    let (title, text) = match status {
        StatusCode::NOT_FOUND => {
            ("Not found", "This page does not exist, or you do not have access to it. Check the address, or go back to the start.")
        }
        StatusCode::FORBIDDEN => ("Not allowed", "Your account is not allowed to do this."),
        StatusCode::TOO_MANY_REQUESTS => ("Too many attempts", "Too many attempts in a short time. Wait a few minutes and try again."),
        StatusCode::SERVICE_UNAVAILABLE => ("Unavailable", "The service is unavailable right now. Try again in a moment."),
        StatusCode::BAD_REQUEST => ("Bad request", "This address is not one the app understands. Go back and try again."),
        _ => ("Something went wrong", "Something went wrong on our side. It has been logged; try again in a moment."),
    };
    render(app, ui, viewer, Page::new("error.html", title, json!({"status": status.as_u16(), "message": text})).status(status))
}

/// What an app error means for a page: a redirect to log in, or an error page.
pub fn fail(app: &SharedApp, ui: &Ui, viewer: &Viewer, e: AppError) -> Response {
    match e {
        AppError::Unauthorized => to_login(app, viewer),
        AppError::NotFound => error_page(app, ui, viewer, StatusCode::NOT_FOUND),
        AppError::Forbidden { .. } => error_page(app, ui, viewer, StatusCode::FORBIDDEN),
        AppError::TooManyRequests { .. } => error_page(app, ui, viewer, StatusCode::TOO_MANY_REQUESTS),
        AppError::BadRequest(_) | AppError::InvalidToken => error_page(app, ui, viewer, StatusCode::BAD_REQUEST),
        AppError::Unavailable(m) => {
            tracing::error!(error = %m, "service unavailable");
            error_page(app, ui, viewer, StatusCode::SERVICE_UNAVAILABLE)
        }
        AppError::Internal(m) => {
            tracing::error!(error = %m, "internal error");
            error_page(app, ui, viewer, StatusCode::INTERNAL_SERVER_ERROR)
        }
        other => {
            tracing::error!(error = %other, "unexpected error on a page");
            error_page(app, ui, viewer, StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// An error before a viewer exists (the session lookup failed): plain text.
fn plain_error(e: &AppError) -> Response {
    let status = match e {
        AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    tracing::error!(error = %e, "a page failed before rendering");
    let mut res = (status, "Something went wrong. Try again in a moment.").into_response();
    res.extensions_mut().insert(UiPage);
    res
}

/// Whether the app runs in the dev profile (the login page links the dev outbox).
pub fn is_dev(app: &SharedApp) -> bool {
    app.config.profile == Profile::Dev
}
