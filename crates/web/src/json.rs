//! A JSON body extractor whose every failure is a problem+json answer.

use crate::problem::Problem;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// Like `axum::Json`, but a missing, oversized or malformed body is a
/// problem response that says what is wrong (never a driver or stack text).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "The body is larger than 1 MiB.")
            } else {
                Problem::bad_request("The body could not be read.")
            }
        })?;
        if bytes.is_empty() {
            return Err(Problem::bad_request("Expected a JSON body."));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| Problem::bad_request(format!("The body is not valid JSON for this request: {e}.")))
    }
}
