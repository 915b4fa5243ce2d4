//! Use cases shared by the API and the UI. Everything a request can do goes
//! through here: validation, defaults, permission-checked record access
//! (the store applies the rules in SQL), auth, sessions and mail. Knows
//! nothing about HTTP.

mod clock;
mod config;
mod error;

pub use clock::{Clock, SystemClock, TestClock};
pub use config::{AppConfig, Profile, Secret};
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
}

impl App {
    /// Builds the app on a database whose schema is already migrated.
    pub fn new(model: Arc<AppModel>, config: AppConfig, db: Database, clock: Arc<dyn Clock>) -> Result<App, AppError> {
        let records = db.records(model.clone()).map_err(|e| AppError::Internal(e.to_string()))?;
        Ok(App { model, config, db, records, clock })
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ready(&self) -> bool {
        self.db.ping().await.is_ok()
    }
}
