//! Use cases shared by the API and the UI. Everything a request can do goes
//! through here: validation, defaults, permission-checked record access
//! (the store applies the rules in SQL), auth, sessions and mail. Knows
//! nothing about HTTP.

pub mod auth;
mod clock;
mod config;
mod error;
pub mod mail;
pub mod metrics;
pub mod openapi;
pub mod permissions;
pub mod records;

pub use clock::{Clock, SystemClock, TestClock};
pub use config::{AppConfig, Profile, Secret, DEFAULT_STATEMENT_TIMEOUT};
pub use error::{AppError, FieldError};

use charter_model::AppModel;
use charter_store::{Database, Records};
use std::sync::Arc;

/// One running app: its model, database and services.
pub struct App {
    pub model: Arc<AppModel>,
    pub config: AppConfig,
    pub db: Database,
    pub records: Records,
    pub clock: Arc<dyn Clock>,
    /// Sessions, credentials, one-time tokens, the audit log and the outbox.
    pub auth: charter_store::auth::AuthStore,
    pub mailer: mail::Mailer,
    pub metrics: metrics::Metrics,
    pub(crate) hasher: auth::password::Hasher,
    pub(crate) limiter: auth::limits::Limiter,
    /// Compiled field rules (patterns) for validating record bodies.
    pub(crate) rules: records::Rules,
}

impl App {
    /// Builds the app on a database whose schema is already migrated.
    pub fn new(model: Arc<AppModel>, config: AppConfig, db: Database, clock: Arc<dyn Clock>) -> Result<App, AppError> {
        let records = db
            .records(model.clone())
            .map_err(|e| AppError::Internal(e.to_string()))?
            .with_statement_timeout(Some(config.statement_timeout));
        let rules = records::Rules::new(&model);
        let auth = records.auth()?;
        let mailer = mail::Mailer::new(&config)?;
        let attempts = model.settings.login_attempts;
        let limiter = auth::limits::Limiter::new(attempts.count, attempts.window_secs);
        Ok(App {
            model,
            config,
            db,
            records,
            clock,
            rules,
            auth,
            mailer,
            metrics: metrics::Metrics::new(),
            hasher: auth::password::Hasher::new(),
            limiter,
        })
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ready(&self) -> bool {
        self.db.ping().await.is_ok()
    }
}

/// What a request presented to prove who it is.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `Authorization: Bearer <token>`.
    pub bearer: Option<String>,
    /// The session cookie's token.
    pub cookie: Option<String>,
}

impl App {
    /// Who is asking. No credentials: an anonymous caller. Credentials that
    /// do not name a live session: 401 (never silently anonymous).
    pub async fn authenticate(&self, credentials: &Credentials) -> Result<charter_store::Caller, AppError> {
        Ok(self.session(credentials).await?.map_or_else(charter_store::Caller::anonymous, |s| s.caller))
    }
}
