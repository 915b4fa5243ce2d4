//! `/healthz`, `/readyz`, `/metrics`, and in dev `/_dev/mail`.

use crate::problem::Problem;
use crate::SharedApp;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub fn routes() -> Router<SharedApp> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/_dev/mail", get(dev_mail))
}

async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn readyz(State(app): State<SharedApp>) -> Response {
    if app.ready().await {
        Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "The database does not answer.").into_response()
    }
}

/// Prometheus text. In prod it needs `Authorization: Bearer
/// $CHARTER_METRICS_TOKEN` and does not exist without that setting.
async fn metrics(State(app): State<SharedApp>, headers: axum::http::HeaderMap) -> Response {
    let required = app.config.metrics_token.as_ref();
    if required.is_none() && app.config.profile == charter_app::Profile::Prod {
        return Problem::not_found().into_response();
    }
    if let Some(token) = required {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(presented.as_bytes(), token.expose()) {
            return Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Send Authorization: Bearer with the metrics token.")
                .into_response();
        }
    }
    let body = app.metrics_text().await;
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

/// Equal-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The dev outbox, newest first; absent outside dev.
async fn dev_mail(State(app): State<SharedApp>) -> Response {
    if app.config.profile != charter_app::Profile::Dev {
        return Problem::not_found().into_response();
    }
    match app.outbox(200).await {
        Ok(mails) => {
            let items: Vec<serde_json::Value> = mails
                .into_iter()
                .map(|m| serde_json::json!({"to": m.to, "subject": m.subject, "text": m.text, "html": m.html, "sent_at": charter_app::auth::rfc3339(m.sent_at)}))
                .collect();
            Json(serde_json::json!({"items": items})).into_response()
        }
        Err(e) => Problem::from(e).into_response(),
    }
}
