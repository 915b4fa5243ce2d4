//! The only code in charter that runs SQL. One interface, two backends:
//! SQLite (embedded, the default) and PostgreSQL.
//!
//! Identifiers in SQL come only from the checked model (snake_case words)
//! and are quoted anyway; values are always bind parameters. The few
//! literals in DDL (CHECK constraints) are enum members, role names and
//! integer bounds from the model, whose character sets are checked again
//! where they are written.

mod convert;
mod error;
mod migrate;
pub mod sqlite;
mod url;

pub use error::StoreError;
pub use migrate::{MigrateOptions, MigrationRecord, MigrationReport, Progress, ProgressFn, StepOutcome};
pub use url::DatabaseUrl;

use charter_model::AppModel;

/// How to reach the database, and the knobs that matter for durability.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: DatabaseUrl,
    /// SQLite `synchronous=FULL` instead of `NORMAL`.
    pub synchronous_full: bool,
}

/// An open database.
pub enum Database {
    Sqlite(sqlite::SqliteDb),
}

impl Database {
    pub async fn open(config: &StoreConfig) -> Result<Database, StoreError> {
        match &config.url {
            DatabaseUrl::Sqlite(path) => Ok(Database::Sqlite(sqlite::SqliteDb::open(path, config.synchronous_full)?)),
            DatabaseUrl::Postgres(_) => Err(StoreError::Config("PostgreSQL support is not built yet; use sqlite://".into())),
        }
    }

    /// Plans the migration from the recorded schema to `model`'s, checks it
    /// against the data, and applies it unless `opts.dry_run`. Refused or
    /// (without `allow_destructive`) destructive steps stop it; then nothing
    /// changes.
    pub async fn migrate(&self, model: &AppModel, opts: MigrateOptions) -> Result<MigrationReport, StoreError> {
        match self {
            Database::Sqlite(db) => {
                let db = db.clone();
                let model = model.clone();
                tokio::task::spawn_blocking(move || db.migrate(&model, opts)).await.map_err(|e| StoreError::Internal(format!("migration task: {e}")))?
            }
        }
    }

    pub async fn history(&self) -> Result<Vec<MigrationRecord>, StoreError> {
        match self {
            Database::Sqlite(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || db.history()).await.map_err(|e| StoreError::Internal(e.to_string()))?
            }
        }
    }
}

/// The hash recorded with each migration: SHA-256 would be the obvious
/// choice, but the spec's identity only needs to be stable, not secret, so
/// a dependency-free FNV-1a over the bytes suffices.
pub fn spec_hash(source: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in source.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}
