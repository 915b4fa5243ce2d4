//! RFC 9457 problem details: the only way errors leave the server.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use charter_app::{AppError, FieldError};
use serde::Serialize;

/// A problem response. `request_id` is filled in by the middleware, which
/// knows it; handlers never see internals to put in here.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: if kind == "about:blank" { kind.to_string() } else { format!("https://charter.dev/problems/{kind}") },
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    pub fn not_found() -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "There is nothing here.")
    }

    pub fn method_not_allowed() -> Problem {
        Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "This method is not allowed on this path.")
    }

    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on our side. It has been logged; the request id identifies it.",
        )
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }
}

impl From<AppError> for Problem {
    fn from(e: AppError) -> Problem {
        match e {
            AppError::BadRequest(d) => Problem::bad_request(d),
            AppError::InvalidToken => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-token", "This link or token is invalid, used or expired.")
            }
            AppError::Unauthorized => Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "Sign in to do this."),
            AppError::Forbidden { kind, detail } => Problem::new(StatusCode::FORBIDDEN, kind.unwrap_or("forbidden"), detail),
            AppError::NotFound => Problem::not_found(),
            AppError::Conflict(d) => Problem::new(StatusCode::CONFLICT, "conflict", d),
            AppError::Unique { field } => {
                let mut p = Problem::new(StatusCode::CONFLICT, "unique", format!("Another record already has this `{field}`."));
                p.errors = vec![FieldError::new(&field, "unique", format!("`{field}` must be unique; this value is taken."))];
                p
            }
            AppError::PreconditionFailed { current_version } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "stale",
                format!("The record changed since you read it (it is now at version {current_version}). Reload it and try again."),
            ),
            AppError::PreconditionRequired => {
                Problem::new(StatusCode::PRECONDITION_REQUIRED, "if-match-required", "Send If-Match with the version you read.")
            }
            AppError::Validation(errors) => {
                let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Some fields are not valid.");
                p.errors = errors;
                p
            }
            AppError::TooManyRequests { retry_after_secs } => {
                let mut p = Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many attempts. Wait and try again.");
                p.retry_after = Some(retry_after_secs);
                p
            }
            AppError::Unavailable(m) => {
                tracing::error!(error = %m, "service unavailable");
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "The service is unavailable. Try again shortly.")
            }
            AppError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Problem::internal()
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(s) = retry {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        // The middleware adds `request_id` to the body.
        res.extensions_mut().insert(ProblemMarker);
        res
    }
}

/// Marks responses whose body is a problem document.
#[derive(Clone, Copy)]
pub struct ProblemMarker;
