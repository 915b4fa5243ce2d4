//! The only code in charter that runs SQL. One interface, two backends:
//! SQLite (embedded, the default) and PostgreSQL.
//!
//! Identifiers in SQL come only from the checked model (snake_case words)
//! and are quoted anyway; values are always bind parameters. The few
//! literals in DDL (CHECK constraints) are enum members, role names and
//! integer bounds from the model, whose character sets are checked again
//! where they are written.

pub mod auth;
pub mod backup;
mod convert;
mod error;
mod migrate;
pub mod postgres;
pub mod records;
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
    Postgres(postgres::PgDb),
}

impl Database {
    pub async fn open(config: &StoreConfig) -> Result<Database, StoreError> {
        match &config.url {
            DatabaseUrl::Sqlite(path) => Ok(Database::Sqlite(sqlite::SqliteDb::open(path, config.synchronous_full)?)),
            DatabaseUrl::Postgres(url) => Ok(Database::Postgres(postgres::PgDb::open(url).await?)),
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
                tokio::task::spawn_blocking(move || db.migrate(&model, opts))
                    .await
                    .map_err(|e| StoreError::Internal(format!("migration task: {e}")))?
            }
            Database::Postgres(db) => db.migrate(model, opts).await,
        }
    }

    /// Differences between the live database and the schema `model` wants
    /// (empty when they match).
    pub async fn schema_differences(&self, model: &AppModel) -> Result<Vec<String>, StoreError> {
        match self {
            Database::Sqlite(db) => {
                let db = db.clone();
                let model = model.clone();
                tokio::task::spawn_blocking(move || db.schema_differences(&model)).await.map_err(|e| StoreError::Internal(e.to_string()))?
            }
            Database::Postgres(db) => db.schema_differences(model).await,
        }
    }

    /// A trivial query: does the database answer?
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Database::Sqlite(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || {
                    db.connect().and_then(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(StoreError::from))
                })
                .await
                .map_err(|e| StoreError::Internal(e.to_string()))?
            }
            Database::Postgres(db) => {
                db.client().await?.simple_query("SELECT 1").await?;
                Ok(())
            }
        }
    }

    pub async fn history(&self) -> Result<Vec<MigrationRecord>, StoreError> {
        match self {
            Database::Sqlite(db) => {
                let db = db.clone();
                tokio::task::spawn_blocking(move || db.history()).await.map_err(|e| StoreError::Internal(e.to_string()))?
            }
            Database::Postgres(db) => db.history().await,
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

pub use records::{Caller, Filter, FilterOp, ListQuery, Page, Record, SortKey, WriteError};
pub use sqlite::idempotency::{Claim as IdempotencyClaim, LEASE_MS as IDEMPOTENCY_LEASE_MS};

/// Record access for one app model: every read and write checked by the
/// model's permission rules, in SQL.
pub enum Records {
    Sqlite(sqlite::records::SqliteRecords),
    Postgres(postgres::records::PgRecords),
}

impl Database {
    /// Record access for `model` (whose schema must already be migrated).
    pub fn records(&self, model: std::sync::Arc<AppModel>) -> Result<Records, StoreError> {
        match self {
            Database::Sqlite(db) => Ok(Records::Sqlite(sqlite::records::SqliteRecords::new(db.clone(), model)?)),
            Database::Postgres(db) => Ok(Records::Postgres(postgres::records::PgRecords::new(db.clone(), model))),
        }
    }
}

impl Records {
    /// Bounds every list (and its `count`): a query still running after
    /// `timeout` is cancelled and the list fails with `StoreError::Timeout`.
    /// `None` (the default) leaves lists unbounded.
    pub fn with_statement_timeout(self, timeout: Option<std::time::Duration>) -> Records {
        match self {
            Records::Sqlite(r) => Records::Sqlite(r.with_statement_timeout(timeout)),
            Records::Postgres(r) => Records::Postgres(r.with_statement_timeout(timeout)),
        }
    }

    /// Auth storage (sessions, credentials, tokens, audit, outbox) on the
    /// same database and writer.
    pub fn auth(&self) -> Result<auth::AuthStore, StoreError> {
        match self {
            Records::Sqlite(r) => Ok(auth::AuthStore::Sqlite(r.auth()?)),
            Records::Postgres(r) => Ok(auth::AuthStore::Postgres(r.auth())),
        }
    }

    /// Claims an idempotency key for a request (`hash` identifies the request).
    pub async fn idempotency_claim(
        &self,
        scope: &str,
        key: &str,
        hash: &str,
        now_ms: i64,
    ) -> Result<sqlite::idempotency::Claim, StoreError> {
        match self {
            Records::Sqlite(r) => r.idempotency_claim(scope, key, hash, now_ms).await,
            Records::Postgres(r) => r.idempotency_claim(scope, key, hash, now_ms).await,
        }
    }

    pub async fn idempotency_finish(&self, scope: &str, key: &str, response: &str) -> Result<(), StoreError> {
        match self {
            Records::Sqlite(r) => r.idempotency_finish(scope, key, response).await,
            Records::Postgres(r) => r.idempotency_finish(scope, key, response).await,
        }
    }

    pub async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        match self {
            Records::Sqlite(r) => r.idempotency_abandon(scope, key).await,
            Records::Postgres(r) => r.idempotency_abandon(scope, key).await,
        }
    }

    /// One row, if it exists and the caller may read it.
    pub async fn get(&self, entity: charter_model::EntityId, caller: &Caller, id: &str) -> Result<Option<Record>, StoreError> {
        match self {
            Records::Sqlite(r) => r.get(entity, caller, id),
            Records::Postgres(r) => r.get(entity, caller, id).await,
        }
    }

    /// A page of the rows the caller may read, filtered and sorted by the database.
    pub async fn list(&self, entity: charter_model::EntityId, caller: &Caller, query: &ListQuery) -> Result<Page, StoreError> {
        match self {
            Records::Sqlite(r) => r.list(entity, caller, query),
            Records::Postgres(r) => r.list(entity, caller, query).await,
        }
    }

    /// Inserts a row if the create rule holds for it; `values` are the
    /// declared fields (built-ins are set by the store).
    pub async fn create(
        &self,
        entity: charter_model::EntityId,
        caller: &Caller,
        values: Vec<(charter_model::FieldId, charter_schema::DbValue)>,
    ) -> Result<Record, WriteError> {
        self.create_with_rule(entity, caller, values, None).await
    }

    /// Like `create`, with `rule` (when given) in place of the entity's
    /// create rule.
    pub async fn create_with_rule(
        &self,
        entity: charter_model::EntityId,
        caller: &Caller,
        values: Vec<(charter_model::FieldId, charter_schema::DbValue)>,
        rule: Option<charter_model::Expr>,
    ) -> Result<Record, WriteError> {
        match self {
            Records::Sqlite(r) => r.create(entity, caller, values, rule).await,
            Records::Postgres(r) => r.create(entity, caller, values, rule).await,
        }
    }

    /// Changes `values` if the update rule holds before and after, and the
    /// version still matches `if_version` when given.
    pub async fn update(
        &self,
        entity: charter_model::EntityId,
        caller: &Caller,
        id: &str,
        values: Vec<(charter_model::FieldId, charter_schema::DbValue)>,
        if_version: Option<i64>,
    ) -> Result<Record, WriteError> {
        self.update_with_rule(entity, caller, id, values, if_version, None).await
    }

    /// Like `update`, with `rule` (when given) in place of the entity's
    /// update rule, before and after the change: `User.role` is governed by
    /// its own `update role` line.
    pub async fn update_with_rule(
        &self,
        entity: charter_model::EntityId,
        caller: &Caller,
        id: &str,
        values: Vec<(charter_model::FieldId, charter_schema::DbValue)>,
        if_version: Option<i64>,
        rule: Option<charter_model::Expr>,
    ) -> Result<Record, WriteError> {
        match self {
            Records::Sqlite(r) => r.update(entity, caller, id, values, if_version, rule).await,
            Records::Postgres(r) => r.update(entity, caller, id, values, if_version, rule).await,
        }
    }

    pub async fn delete(
        &self,
        entity: charter_model::EntityId,
        caller: &Caller,
        id: &str,
        if_version: Option<i64>,
    ) -> Result<(), WriteError> {
        match self {
            Records::Sqlite(r) => r.delete(entity, caller, id, if_version).await,
            Records::Postgres(r) => r.delete(entity, caller, id, if_version).await,
        }
    }
}

/// The SQL predicate and parameters of `action`'s rule on `entity` for
/// `caller`, as the store runs it. For tests and `charter audit`.
pub fn rule_sql(
    model: &AppModel,
    entity: charter_model::EntityId,
    action: charter_model::Action,
    caller: &Caller,
    postgres: bool,
) -> (String, Vec<charter_schema::DbValue>) {
    let mut sql = records::Sql::new(if postgres { records::Dialect::Postgres } else { records::Dialect::Sqlite });
    let p =
        records::predicate(&mut sql, model, entity, model.entity(entity).permissions.get(action), &records::RowSource::Alias("t"), caller);
    (p, sql.params)
}
