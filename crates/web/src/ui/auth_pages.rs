//! Sign up, verify, log in, forgot and reset password, log out: pages
//! over the same auth use cases as `/api/auth/*`.

use super::form::{self, FormData};
use super::{fail, redirect, render, safe_next, Page, Ui, Viewer};
use crate::SharedApp;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use charter_app::auth::SignupInput;
use charter_app::{AppError, FieldError};
use charter_model::{EmailVerification, Signup};
use serde_json::{json, Value as J};
use std::sync::Arc;

type UiExt = Extension<Arc<Ui>>;

pub fn routes() -> Router<SharedApp> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/signup", get(signup_page).post(signup))
        .route("/verify", get(verify_page).post(verify))
        .route("/verify/resend", post(resend))
        .route("/forgot", get(forgot_page).post(forgot))
        .route("/reset", get(reset_page).post(reset))
        .route("/logout", post(logout))
        .route("/logout-all", post(logout_all))
        .route("/_dev/outbox", get(dev_outbox))
}

fn field_errors(errors: &[FieldError]) -> J {
    let mut m = serde_json::Map::new();
    for e in errors {
        m.entry(e.field.clone()).or_insert_with(|| J::String(form::plain(&e.message)));
    }
    J::Object(m)
}

fn signup_open(app: &SharedApp) -> bool {
    app.model.settings.signup == Signup::Open
}

async fn login_page(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer) -> Response {
    let next = safe_next(super::query_param(&viewer.here, "next").as_deref());
    if viewer.session.is_some() {
        return redirect(&next);
    }
    login_form(&app, &ui, &viewer, json!({"next": next}), StatusCode::OK)
}

fn login_form(app: &SharedApp, ui: &Ui, viewer: &Viewer, data: J, status: StatusCode) -> Response {
    let mut data = data;
    data["signup"] = J::Bool(signup_open(app));
    data["dev_mail"] = J::Bool(super::is_dev(app));
    render(app, ui, viewer, Page::new("login.html", "Log in", data).status(status))
}

async fn login(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer, form: FormData) -> Response {
    let email = form.get("email").unwrap_or("").to_string();
    let next = safe_next(form.get("next"));
    let again = |alert: &str, extra: J, status: StatusCode| {
        let mut data = json!({"next": next, "email": email, "alert": alert});
        if let (Some(d), J::Object(x)) = (data.as_object_mut(), extra) {
            d.extend(x);
        }
        login_form(&app, &ui, &viewer, data, status)
    };
    if !viewer.csrf_ok(&app, &form) {
        return again("This form had expired. Enter your password again.", json!({}), StatusCode::FORBIDDEN);
    }
    match app.login(&email, form.get("password").unwrap_or("").to_string(), &viewer.presented, &viewer.client).await {
        Ok(r) => {
            let mut res = redirect(&next);
            res.headers_mut().append(header::SET_COOKIE, crate::auth::session_cookie(&app, &r.session));
            res
        }
        Err(AppError::Unauthorized) => again("The email or the password is wrong.", json!({}), StatusCode::UNAUTHORIZED),
        Err(AppError::Forbidden { kind: Some("email-not-verified"), .. }) => again(
            "Your email address is not verified yet. Follow the link in the mail we sent, or have it sent again.",
            json!({"resend": true}),
            StatusCode::FORBIDDEN,
        ),
        Err(AppError::TooManyRequests { retry_after_secs }) => {
            let minutes = retry_after_secs.div_ceil(60).max(1);
            let text = format!("Too many attempts. Wait {minutes} minute{} and try again.", if minutes == 1 { "" } else { "s" });
            again(&text, json!({}), StatusCode::TOO_MANY_REQUESTS)
        }
        Err(e) => fail(&app, &ui, &viewer, e),
    }
}

async fn signup_page(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer) -> Response {
    if viewer.session.is_some() {
        return redirect("/");
    }
    signup_form(&app, &ui, &viewer, json!({}), StatusCode::OK)
}

fn signup_form(app: &SharedApp, ui: &Ui, viewer: &Viewer, data: J, status: StatusCode) -> Response {
    let mut data = data;
    data["open"] = J::Bool(signup_open(app));
    data["min_length"] = J::from(app.model.settings.password_min_length);
    render(app, ui, viewer, Page::new("signup.html", "Sign up", data).status(status))
}

async fn signup(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer, form: FormData) -> Response {
    let email = form.get("email").unwrap_or("").to_string();
    let name = form.get("name").map(str::to_string).filter(|n| !n.trim().is_empty());
    let again = |alert: Option<&str>, errors: J, status: StatusCode| {
        let data = json!({"email": email, "name": name, "alert": alert, "errors": errors});
        signup_form(&app, &ui, &viewer, data, status)
    };
    if !viewer.csrf_ok(&app, &form) {
        return again(Some("This form had expired. Enter your password again."), json!({}), StatusCode::FORBIDDEN);
    }
    let input = SignupInput { email: email.clone(), password: form.get("password").unwrap_or("").to_string(), name: name.clone() };
    match app.signup(input, &viewer.client).await {
        Ok(result) => match result.session {
            Some(s) => {
                let mut res = redirect("/?n=welcome");
                res.headers_mut().append(header::SET_COOKIE, crate::auth::session_cookie(&app, &s));
                res
            }
            None if app.model.settings.email_verification == EmailVerification::Required => redirect("/login?n=check-inbox"),
            None => redirect("/login"),
        },
        Err(AppError::Validation(errors)) => {
            again(Some("Some fields need your attention; see below."), field_errors(&errors), StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(AppError::Forbidden { detail, .. }) => again(Some(&detail), json!({}), StatusCode::FORBIDDEN),
        Err(AppError::TooManyRequests { .. }) => {
            again(Some("Too many sign-ups from here. Wait a few minutes and try again."), json!({}), StatusCode::TOO_MANY_REQUESTS)
        }
        Err(e) => fail(&app, &ui, &viewer, e),
    }
}

/// Pages reached from mail links carry the token in the address: they are
/// sent with `no-referrer`, and only their button (a POST) spends it.
fn token_page(app: &SharedApp, ui: &Ui, viewer: &Viewer, template: &'static str, title: &str, data: J, status: StatusCode) -> Response {
    let mut page = Page::new(template, title, data).status(status);
    page.no_referrer = true;
    page.plain = true;
    let mut res = render(app, ui, viewer, page);
    res.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}

async fn verify_page(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer) -> Response {
    let token = super::query_param(&viewer.here, "token").unwrap_or_default();
    token_page(&app, &ui, &viewer, "verify.html", "Verify your email address", json!({"token": token}), StatusCode::OK)
}

async fn verify(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer, form: FormData) -> Response {
    let token = form.get("token").unwrap_or("").to_string();
    if !viewer.csrf_ok(&app, &form) {
        let data = json!({"token": token, "alert": "This page had expired. Press the button again."});
        return token_page(&app, &ui, &viewer, "verify.html", "Verify your email address", data, StatusCode::FORBIDDEN);
    }
    match app.verify_email(&token, &viewer.client).await {
        Ok(_) if viewer.session.is_some() => redirect("/?n=verified-in"),
        Ok(_) => redirect("/login?n=verified"),
        Err(AppError::InvalidToken) => {
            let data = json!({"invalid": true});
            token_page(&app, &ui, &viewer, "verify.html", "This link does not work", data, StatusCode::BAD_REQUEST)
        }
        Err(e) => fail(&app, &ui, &viewer, e),
    }
}

async fn resend(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer, form: FormData) -> Response {
    if !viewer.csrf_ok(&app, &form) {
        return login_form(&app, &ui, &viewer, json!({"alert": "This form had expired. Try again."}), StatusCode::FORBIDDEN);
    }
    match app.resend_verification(form.get("email").unwrap_or(""), &viewer.client).await {
        Ok(()) | Err(AppError::Validation(_)) => redirect("/login?n=check-inbox"),
        Err(AppError::TooManyRequests { .. }) => login_form(
            &app,
            &ui,
            &viewer,
            json!({"alert": "A mail was sent a moment ago. Wait a few minutes before asking again."}),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(e) => fail(&app, &ui, &viewer, e),
    }
}

async fn forgot_page(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer) -> Response {
    render(&app, &ui, &viewer, Page::new("forgot.html", "Forgot your password?", json!({})))
}

async fn forgot(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer, form: FormData) -> Response {
    let email = form.get("email").unwrap_or("").to_string();
    if !viewer.csrf_ok(&app, &form) {
        let data = json!({"email": email, "alert": "This form had expired. Submit it again."});
        return render(&app, &ui, &viewer, Page::new("forgot.html", "Forgot your password?", data).status(StatusCode::FORBIDDEN));
    }
    match app.forgot_password(&email, &viewer.client).await {
        // One answer whether or not the address has an account.
        Ok(()) | Err(AppError::Validation(_)) => {
            let data = json!({"sent": true});
            render(&app, &ui, &viewer, Page::new("forgot.html", "Check your inbox", data))
        }
        Err(AppError::TooManyRequests { .. }) => {
            let data = json!({"email": email, "alert": "Too many requests. Wait a few minutes and try again."});
            render(&app, &ui, &viewer, Page::new("forgot.html", "Forgot your password?", data).status(StatusCode::TOO_MANY_REQUESTS))
        }
        Err(e) => fail(&app, &ui, &viewer, e),
    }
}

async fn reset_page(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer) -> Response {
    let token = super::query_param(&viewer.here, "token").unwrap_or_default();
    match app.reset_link_works(&token).await {
        Ok(true) => {}
        Ok(false) => {
            return token_page(
                &app,
                &ui,
                &viewer,
                "reset.html",
                "This link does not work",
                json!({"invalid": true}),
                StatusCode::BAD_REQUEST,
            )
        }
        Err(e) => return fail(&app, &ui, &viewer, e),
    }
    let data = json!({"token": token, "min_length": app.model.settings.password_min_length});
    token_page(&app, &ui, &viewer, "reset.html", "Choose a new password", data, StatusCode::OK)
}

async fn reset(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer, form: FormData) -> Response {
    let token = form.get("token").unwrap_or("").to_string();
    let min = app.model.settings.password_min_length;
    let again = |data: J, status: StatusCode| token_page(&app, &ui, &viewer, "reset.html", "Choose a new password", data, status);
    if !viewer.csrf_ok(&app, &form) {
        return again(
            json!({"token": token, "min_length": min, "alert": "This page had expired. Enter the new password again."}),
            StatusCode::FORBIDDEN,
        );
    }
    match app.reset_password(&token, form.get("password").unwrap_or("").to_string(), &viewer.client).await {
        Ok(()) => redirect("/login?n=reset"),
        Err(AppError::InvalidToken) => again(json!({"invalid": true}), StatusCode::BAD_REQUEST),
        Err(AppError::Validation(errors)) => {
            again(json!({"token": token, "min_length": min, "errors": field_errors(&errors)}), StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(AppError::TooManyRequests { .. }) => again(
            json!({"token": token, "min_length": min, "alert": "Too many attempts. Wait a few minutes."}),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(e) => fail(&app, &ui, &viewer, e),
    }
}

/// Ends the session; the cookie is cleared whatever happened to it.
async fn end(app: SharedApp, viewer: Viewer, form: FormData, all: bool) -> Response {
    let Some(session) = &viewer.session else { return super::to_login(&app, &viewer) };
    if !viewer.csrf_ok(&app, &form) {
        // A stale logout button: send the person where a fresh one is.
        return redirect("/account");
    }
    let result = if all { app.logout_all(session, &viewer.client).await } else { app.logout(session, &viewer.client).await };
    if let Err(e) = result {
        tracing::warn!(error = %e, "logout failed");
    }
    let mut res = redirect(if all { "/login?n=signed-out-all" } else { "/login?n=signed-out" });
    res.headers_mut().append(header::SET_COOKIE, crate::auth::clear_cookie(&app));
    res
}

async fn logout(State(app): State<SharedApp>, viewer: Viewer, form: FormData) -> Response {
    end(app, viewer, form, false).await
}

async fn logout_all(State(app): State<SharedApp>, viewer: Viewer, form: FormData) -> Response {
    end(app, viewer, form, true).await
}

/// Dev only: the outbox as a page, so a developer trying the app can
/// follow the verification and reset links without an SMTP server.
pub async fn dev_outbox(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer) -> Response {
    if !super::is_dev(&app) {
        return super::error_page(&app, &ui, &viewer, StatusCode::NOT_FOUND);
    }
    let mails = match app.outbox(50).await {
        Ok(m) => m,
        Err(e) => return fail(&app, &ui, &viewer, e),
    };
    let base = app.config.public_url.trim_end_matches('/').to_string();
    let items: Vec<J> = mails
        .iter()
        .map(|m| {
            // Links to this app become local paths, so they open here
            // whatever address the browser used.
            let links: Vec<String> = m
                .text
                .split_whitespace()
                .filter(|w| w.starts_with(&base))
                .map(|w| w[base.len()..].to_string())
                .filter(|p| p.starts_with('/'))
                .collect();
            json!({
                "to": m.to,
                "subject": m.subject,
                "sent_at": super::view::datetime_text(&charter_app::auth::rfc3339(m.sent_at)),
                "text": m.text,
                "links": links,
            })
        })
        .collect();
    render(&app, &ui, &viewer, Page::new("outbox.html", "Outbox (development)", json!({"mails": items})))
}
