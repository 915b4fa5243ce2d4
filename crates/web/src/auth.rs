//! `/api/auth/*` and `DELETE /api/users/{id}/sessions`: parse, call the
//! use case, render. Cookies, CSRF and the client address are HTTP facts
//! and are handled here; every decision is in `charter_app::auth`.

use crate::caller::{client_info, SignedIn};
use crate::json::JsonBody;
use crate::problem::Problem;
use crate::{Auth, SharedApp};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use charter_app::auth::{rfc3339, ClientInfo, SessionMode, SignedIn as NewSession, SignupInput};
use charter_app::{AppError, Profile};
use serde::Deserialize;
use serde_json::json;

/// Auth bodies are small; anything bigger is refused before it is parsed
/// or a password in it is hashed.
const AUTH_BODY_LIMIT: usize = 4 * 1024;

pub fn routes() -> Router<SharedApp> {
    Router::new()
        .route("/auth/signup", post(signup))
        .route("/auth/verify", post(verify))
        .route("/auth/verify/resend", post(resend))
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/auth/logout-all", post(logout_all))
        .route("/auth/me", get(me))
        .route("/auth/sessions", get(sessions))
        .route("/auth/sessions/{id}", delete(revoke_session))
        .route("/auth/password/forgot", post(forgot))
        .route("/auth/password/reset", post(reset))
        .route("/auth/password/change", post(change))
        .route("/auth/audit", get(audit))
        .route("/users/{id}/sessions", delete(revoke_user_sessions))
        .layer(DefaultBodyLimit::max(AUTH_BODY_LIMIT))
}

/// Where the request came from, as an extractor.
pub struct Client(pub ClientInfo);

impl FromRequestParts<SharedApp> for Client {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, Self::Rejection> {
        Ok(Client(client_info(parts, app)))
    }
}

/// The session cookie's name: `__Host-session` (Secure) outside dev.
pub fn cookie_name(app: &SharedApp) -> &'static str {
    if secure_cookie(app) {
        crate::caller::COOKIE_SECURE
    } else {
        crate::caller::COOKIE_DEV
    }
}

fn secure_cookie(app: &SharedApp) -> bool {
    app.config.profile != Profile::Dev || app.config.secure_cookies
}

fn set_cookie(app: &SharedApp, token: &str, max_age_secs: i64) -> HeaderValue {
    let name = cookie_name(app);
    let secure = if secure_cookie(app) { "; Secure" } else { "" };
    let value = format!("{name}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}");
    HeaderValue::from_str(&value).expect("tokens are URL-safe base64")
}

/// `Set-Cookie` for a new session, living as long as the session.
pub(crate) fn session_cookie(app: &SharedApp, s: &NewSession) -> HeaderValue {
    let max_age = ((s.expires_at - app.clock.now_ms()) / 1000).max(0);
    set_cookie(app, &s.token, max_age)
}

/// `Set-Cookie` that removes the session cookie.
pub(crate) fn clear_cookie(app: &SharedApp) -> HeaderValue {
    set_cookie(app, "", 0)
}

/// The answer for a new session: the token in the body for bearer
/// clients; for cookie clients only in `Set-Cookie`, with the CSRF token.
fn session_response(app: &SharedApp, status: StatusCode, user: serde_json::Value, s: &NewSession, mode: SessionMode) -> Response {
    let expires_at = rfc3339(s.expires_at);
    match mode {
        SessionMode::Bearer => (status, Json(json!({"token": s.token, "expires_at": expires_at, "user": user}))).into_response(),
        SessionMode::Cookie => {
            let mut res = (status, Json(json!({"expires_at": expires_at, "user": user, "csrf_token": s.csrf_token}))).into_response();
            res.headers_mut().append(header::SET_COOKIE, session_cookie(app, s));
            res
        }
    }
}

fn mode_of(session: Option<&str>) -> Result<SessionMode, Problem> {
    match session {
        None | Some("bearer") => Ok(SessionMode::Bearer),
        Some("cookie") => Ok(SessionMode::Cookie),
        Some(other) => Err(Problem::bad_request(format!("`session` must be \"cookie\" or \"bearer\", not {other:?}."))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignupBody {
    email: String,
    password: String,
    name: Option<String>,
    session: Option<String>,
}

async fn signup(State(app): State<SharedApp>, Client(client): Client, JsonBody(body): JsonBody<SignupBody>) -> Result<Response, Problem> {
    let mode = mode_of(body.session.as_deref())?;
    let input = SignupInput { email: body.email, password: body.password, name: body.name };
    let result = app.signup(input, &client).await?;
    let user = serde_json::Value::Object(result.user);
    Ok(match result.session {
        Some(s) => session_response(&app, StatusCode::CREATED, user, &s, mode),
        None => (StatusCode::CREATED, Json(json!({"user": user}))).into_response(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    token: String,
}

async fn verify(State(app): State<SharedApp>, Client(client): Client, JsonBody(body): JsonBody<TokenBody>) -> Result<Response, Problem> {
    let user = app.verify_email(&body.token, &client).await?;
    Ok(Json(json!({"user": user})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailBody {
    email: String,
}

/// The one answer of `forgot` and `resend`, whether or not the address is known.
fn accepted() -> Response {
    (StatusCode::ACCEPTED, Json(json!({"detail": "If an account has this address, a mail is on its way."}))).into_response()
}

async fn resend(State(app): State<SharedApp>, Client(client): Client, JsonBody(body): JsonBody<EmailBody>) -> Result<Response, Problem> {
    app.resend_verification(&body.email, &client).await?;
    Ok(accepted())
}

async fn forgot(State(app): State<SharedApp>, Client(client): Client, JsonBody(body): JsonBody<EmailBody>) -> Result<Response, Problem> {
    app.forgot_password(&body.email, &client).await?;
    Ok(accepted())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: String,
    session: Option<String>,
}

async fn login(
    State(app): State<SharedApp>,
    Client(client): Client,
    parts: Presented,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, Problem> {
    let mode = mode_of(body.session.as_deref())?;
    match app.login(&body.email, body.password, &parts.0, &client).await {
        Ok(r) => Ok(session_response(&app, StatusCode::OK, serde_json::Value::Object(r.user), &r.session, mode)),
        // One answer for an unknown email and a wrong password.
        Err(AppError::Unauthorized) => {
            Err(Problem::new(StatusCode::UNAUTHORIZED, "invalid-credentials", "The email or the password is wrong."))
        }
        Err(e) => Err(e.into()),
    }
}

/// The credentials sent with a login (a session they name is replaced).
pub struct Presented(charter_app::Credentials);

impl FromRequestParts<SharedApp> for Presented {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, Self::Rejection> {
        Ok(Presented(crate::caller::credentials_named(parts, cookie_name(app))))
    }
}

/// 204 that also clears the cookie and asks the browser to forget the site's data.
fn signed_out(app: &SharedApp) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert("clear-site-data", HeaderValue::from_static("\"cookies\", \"storage\""));
    res.headers_mut().append(header::SET_COOKIE, clear_cookie(app));
    res
}

async fn logout(State(app): State<SharedApp>, Client(client): Client, SignedIn(session): SignedIn) -> Result<Response, Problem> {
    app.logout(&session, &client).await?;
    Ok(signed_out(&app))
}

async fn logout_all(State(app): State<SharedApp>, Client(client): Client, SignedIn(session): SignedIn) -> Result<Response, Problem> {
    app.logout_all(&session, &client).await?;
    Ok(signed_out(&app))
}

async fn me(State(app): State<SharedApp>, SignedIn(session): SignedIn) -> Result<Response, Problem> {
    let user = app.me(&session).await?;
    Ok(Json(json!({"user": user, "csrf_token": app.csrf_token(&session.id)})).into_response())
}

async fn sessions(State(app): State<SharedApp>, SignedIn(session): SignedIn) -> Result<Response, Problem> {
    let items: Vec<serde_json::Value> = app
        .list_sessions(&session)
        .await?
        .into_iter()
        .map(|s| {
            json!({
                "id": s.info.id,
                "created_at": rfc3339(s.info.created_at),
                "last_seen_at": rfc3339(s.info.last_seen_at),
                "user_agent": s.info.user_agent,
                "ip": s.info.ip,
                "current": s.current,
            })
        })
        .collect();
    Ok(Json(json!({"items": items})).into_response())
}

async fn revoke_session(
    State(app): State<SharedApp>,
    Client(client): Client,
    SignedIn(session): SignedIn,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    app.revoke_session(&session, &id, &client).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn revoke_user_sessions(
    State(app): State<SharedApp>,
    Client(client): Client,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    app.revoke_user_sessions(&caller, &id, &client).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    token: String,
    password: String,
}

async fn reset(State(app): State<SharedApp>, Client(client): Client, JsonBody(body): JsonBody<ResetBody>) -> Result<Response, Problem> {
    app.reset_password(&body.token, body.password, &client).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    current_password: String,
    new_password: String,
}

async fn change(
    State(app): State<SharedApp>,
    Client(client): Client,
    SignedIn(session): SignedIn,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<Response, Problem> {
    app.change_password(&session, body.current_password, body.new_password, &client).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<u32>,
    before: Option<i64>,
}

async fn audit(
    State(app): State<SharedApp>,
    SignedIn(session): SignedIn,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = q.map_err(|_| Problem::bad_request("Use `limit` (1..500) and `before` (an entry id)."))?;
    let rows = app.audit_log(&session.caller, q.limit.unwrap_or(100), q.before).await?;
    let next = rows.last().map(|(id, _)| *id);
    let items: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(id, e)| json!({"id": id, "at": rfc3339(e.at), "event": e.event, "user_id": e.user_id, "email": e.email, "ip": e.ip, "detail": e.detail}))
        .collect();
    Ok(Json(json!({"items": items, "next": next})).into_response())
}
