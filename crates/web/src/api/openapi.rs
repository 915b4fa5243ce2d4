//! `GET /api/openapi.json`: the document `charter-app` generates from the model.

use crate::SharedApp;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

pub fn routes(app: &SharedApp) -> Router<SharedApp> {
    // The model never changes while serving: render once.
    let doc: Arc<[u8]> = serde_json::to_vec(&charter_app::openapi::document(&app.model)).expect("serialises").into();
    Router::new().route(
        "/openapi.json",
        get(move |_: State<SharedApp>| {
            let doc = doc.clone();
            async move {
                Response::builder()
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(doc.to_vec()))
                    .expect("valid")
                    .into_response()
            }
        }),
    )
}
