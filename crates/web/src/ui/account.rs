//! The account page: your details, your sessions (revoke one, or log out
//! everywhere), and changing your password.

use super::form::{self, FormData};
use super::{fail, redirect, render, to_login, Page, Ui, Viewer};
use crate::SharedApp;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use charter_app::auth::rfc3339;
use charter_app::{AppError, FieldError};
use charter_model::Builtin;
use serde_json::{json, Map, Value as J};
use std::sync::Arc;

type UiExt = Extension<Arc<Ui>>;

pub fn routes() -> Router<SharedApp> {
    Router::new()
        .route("/account", get(page).post(save_profile))
        .route("/account/password", post(change_password))
        .route("/account/sessions/{id}/revoke", post(revoke))
}

#[derive(Default)]
struct State_ {
    values: Option<Map<String, J>>,
    errors: Vec<FieldError>,
    profile_alert: Option<String>,
    password_errors: J,
    password_alert: Option<String>,
}

async fn show(app: &SharedApp, ui: &Ui, viewer: &Viewer, st: State_, status: StatusCode) -> Response {
    let Some(session) = &viewer.session else { return to_login(app, viewer) };
    let me = match app.me(session).await {
        Ok(r) => r,
        Err(e) => return fail(app, ui, viewer, e),
    };
    let sessions = match app.list_sessions(session).await {
        Ok(s) => s,
        Err(e) => return fail(app, ui, viewer, e),
    };
    let user = app.model.user();
    let fields = form::editable_fields(user, false, false);
    let values = st.values.unwrap_or_else(|| me.clone().into_iter().collect());
    let inputs: Vec<J> = fields
        .iter()
        .filter(|f| !matches!(f.ty, charter_model::FieldType::Ref(_)))
        .map(|f| {
            let error = st.errors.iter().find(|x| x.field == f.name).map(|x| form::friendly(f, x));
            form::input(&app.model, f, values.get(&f.name), error, None)
        })
        .collect();
    let role = me.get("role").and_then(J::as_str).map(super::humanize);
    let rows: Vec<J> = sessions
        .iter()
        .map(|s| {
            json!({
                "id": s.info.id,
                "current": s.current,
                "created_at": super::view::datetime_text(&rfc3339(s.info.created_at)),
                "last_seen_at": super::view::datetime_text(&rfc3339(s.info.last_seen_at)),
                "device": s.info.user_agent.as_deref().map(device).unwrap_or_else(|| "Unknown device".into()),
                "ip": s.info.ip,
            })
        })
        .collect();
    let data = json!({
        "me": {
            "email": me.get("email"),
            "name": me.get("name"),
            "role": role,
            "verified": me.get("verified"),
            "version": me.get("version"),
        },
        "inputs": inputs,
        "profile_alert": st.profile_alert,
        "password_errors": st.password_errors,
        "password_alert": st.password_alert,
        "sessions": rows,
        "min_length": app.model.settings.password_min_length,
    });
    render(app, ui, viewer, Page::new("account.html", "Your account", data).status(status))
}

/// A short name for a browser from its user agent.
fn device(ua: &str) -> String {
    let browser =
        ["Firefox", "Edg", "Chrome", "Safari"].iter().find(|b| ua.contains(*b)).map_or("Browser", |b| if *b == "Edg" { "Edge" } else { b });
    let os = ["Android", "iPhone", "iPad", "Windows", "Mac OS", "Linux"].iter().find(|o| ua.contains(*o)).map_or("", |o| *o);
    if ua.starts_with("curl/") || !ua.contains("Mozilla") {
        let short: String = ua.chars().take(40).collect();
        return short;
    }
    if os.is_empty() {
        browser.to_string()
    } else {
        format!("{browser} on {}", if os == "Mac OS" { "macOS" } else { os })
    }
}

async fn page(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer) -> Response {
    show(&app, &ui, &viewer, State_::default(), StatusCode::OK).await
}

async fn save_profile(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer, form: FormData) -> Response {
    let Some(session) = &viewer.session else { return to_login(&app, &viewer) };
    let user = app.model.user();
    let fields: Vec<_> = form::editable_fields(user, false, false)
        .into_iter()
        .filter(|f| f.builtin == Some(Builtin::Name) || f.builtin.is_none())
        .filter(|f| !matches!(f.ty, charter_model::FieldType::Ref(_)))
        .collect();
    let again = |errors: Vec<FieldError>, alert: Option<String>, status: StatusCode| {
        let st = State_ { values: Some(form::submitted(&fields, &form)), errors, profile_alert: alert, ..Default::default() };
        show(&app, &ui, &viewer, st, status)
    };
    if !viewer.csrf_ok(&app, &form) {
        return again(vec![], Some("This form had expired, so nothing was saved. Submit it again.".into()), StatusCode::FORBIDDEN).await;
    }
    let body = form::to_body(&fields, &form, false);
    match app.update_me(&session.caller, &body, form.if_match()).await {
        Ok(_) => redirect("/account?n=saved"),
        Err(AppError::Validation(errors)) => {
            again(errors, Some("Some fields need your attention.".into()), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(AppError::PreconditionFailed { .. }) => {
            let alert =
                "Your details changed in another tab or device since this page was opened. Reload the page to see them, then edit again.";
            again(vec![], Some(alert.into()), StatusCode::PRECONDITION_FAILED).await
        }
        Err(e) => fail(&app, &ui, &viewer, e),
    }
}

async fn change_password(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer, form: FormData) -> Response {
    let Some(session) = &viewer.session else { return to_login(&app, &viewer) };
    let again = |errors: J, alert: Option<String>, status: StatusCode| {
        let st = State_ { password_errors: errors, password_alert: alert, ..Default::default() };
        show(&app, &ui, &viewer, st, status)
    };
    if !viewer.csrf_ok(&app, &form) {
        return again(json!({}), Some("This form had expired. Enter the passwords again.".into()), StatusCode::FORBIDDEN).await;
    }
    let current = form.get("current_password").unwrap_or("").to_string();
    let new = form.get("new_password").unwrap_or("").to_string();
    match app.change_password(session, current, new, &viewer.client).await {
        Ok(()) => redirect("/account?n=password-changed"),
        Err(AppError::Validation(errors)) => {
            let mut m = Map::new();
            for e in errors {
                let field = if e.field == "password" { "new_password".to_string() } else { e.field.clone() };
                m.entry(field).or_insert(J::String(form::plain(&e.message)));
            }
            again(J::Object(m), None, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(AppError::Unauthorized) | Err(AppError::Forbidden { .. }) => {
            again(json!({"current_password": "This is not your current password."}), None, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(AppError::TooManyRequests { .. }) => {
            again(json!({}), Some("Too many attempts. Wait a few minutes and try again.".into()), StatusCode::TOO_MANY_REQUESTS).await
        }
        Err(e) => fail(&app, &ui, &viewer, e),
    }
}

async fn revoke(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer, Path(id): Path<String>, form: FormData) -> Response {
    let Some(session) = &viewer.session else { return to_login(&app, &viewer) };
    if !viewer.csrf_ok(&app, &form) {
        return redirect("/account");
    }
    match app.revoke_session(session, &id, &viewer.client).await {
        Ok(()) if id == session.id => {
            let mut res = redirect("/login?n=signed-out");
            res.headers_mut().append(axum::http::header::SET_COOKIE, crate::auth::clear_cookie(&app));
            res
        }
        Ok(()) => redirect("/account?n=revoked"),
        Err(e) => fail(&app, &ui, &viewer, e),
    }
}
