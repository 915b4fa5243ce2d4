//! `/healthz`, `/readyz`.

use crate::problem::Problem;
use crate::SharedApp;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

pub fn routes() -> Router<SharedApp> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
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
