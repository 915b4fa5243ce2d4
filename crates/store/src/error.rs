use std::fmt;

/// Errors of the store. `Internal` carries driver text for the log only;
/// callers must not show it to end users of an app.
#[derive(Debug)]
pub enum StoreError {
    /// Bad configuration (URL, paths).
    Config(String),
    /// The database cannot be opened or reached.
    Unavailable(String),
    /// The database does not match its migration history.
    Drift(String),
    /// A migration that ran into a problem the checks did not foresee; the
    /// transaction was rolled back.
    MigrationFailed(String),
    /// A read ran past the statement timeout and was cancelled.
    Timeout(String),
    /// A backup or restore that cannot go ahead (a backup that does not
    /// verify, a database in use); nothing was changed.
    Refused(String),
    Internal(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Config(m) => write!(f, "configuration: {m}"),
            StoreError::Unavailable(m) => write!(f, "database unavailable: {m}"),
            StoreError::Drift(m) => write!(f, "the database does not match its migration history: {m}"),
            StoreError::MigrationFailed(m) => write!(f, "migration failed and was rolled back: {m}"),
            StoreError::Timeout(m) => write!(f, "statement timeout: {m}"),
            StoreError::Refused(m) => write!(f, "{m}"),
            StoreError::Internal(m) => write!(f, "internal database error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        // Only the statement-timeout progress handler interrupts queries.
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) {
            return StoreError::Timeout(e.to_string());
        }
        StoreError::Internal(e.to_string())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let text = crate::postgres::pg_error_text(&e);
        if e.is_closed() {
            StoreError::Unavailable(text)
        } else if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) {
            // statement_timeout (or an operator's pg_cancel_backend).
            StoreError::Timeout(text)
        } else {
            StoreError::Internal(text)
        }
    }
}
