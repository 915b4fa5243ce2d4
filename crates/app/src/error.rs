//! One error type for every use case. The web layer maps it to problem+json
//! in one place; `Internal` text goes to the log only.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), code: code.into(), message: message.into() }
    }
}

#[derive(Debug)]
pub enum AppError {
    /// 400: the request is malformed (details safe to show).
    BadRequest(String),
    /// 400 with a problem type: `invalid-token`.
    InvalidToken,
    /// 401
    Unauthorized,
    /// 403, optionally with a problem type such as `email-not-verified`.
    Forbidden { kind: Option<&'static str>, detail: String },
    /// 404: missing or invisible.
    NotFound,
    /// 409 with a message.
    Conflict(String),
    /// 409: a `unique` field already has this value.
    Unique { field: String },
    /// 412: `If-Match` is stale.
    PreconditionFailed { current_version: i64 },
    /// 428: `If-Match` required.
    PreconditionRequired,
    /// 422 with every field error.
    Validation(Vec<FieldError>),
    /// 429
    TooManyRequests { retry_after_secs: u64 },
    /// 503
    Unavailable(String),
    /// 500: the text is for the log only.
    Internal(String),
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for AppError {}

impl From<charter_store::StoreError> for AppError {
    fn from(e: charter_store::StoreError) -> Self {
        match e {
            charter_store::StoreError::Unavailable(m) => AppError::Unavailable(m),
            // A list that ran past the statement timeout: the database is
            // fine, but this answer cannot be had now (503, no internals).
            e @ charter_store::StoreError::Timeout(_) => AppError::Unavailable(e.to_string()),
            other => AppError::Internal(other.to_string()),
        }
    }
}
