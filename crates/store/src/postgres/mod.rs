//! PostgreSQL: a connection pool (deadpool) over tokio-postgres. Every
//! connection runs in UTC, so datetimes read and written as text mean the
//! same instant whatever the server's time zone is.

pub mod auth;
mod ddl;
mod migrate;
pub mod records;
pub mod tls;

use crate::migrate::MigrationRecord;
use crate::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::sync::Arc;
use std::time::Duration;

pub use ddl::ident;

/// Enough for a small app's concurrent requests; PostgreSQL's default
/// `max_connections` (100) leaves room for several app processes.
const POOL_SIZE: usize = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct PgDb {
    pool: Pool,
    config: Arc<tokio_postgres::Config>,
    tls: Arc<tls::TlsSettings>,
}

impl std::fmt::Debug for PgDb {
    // The config holds the password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDb").field("dbname", &self.config.get_dbname()).finish_non_exhaustive()
    }
}

impl PgDb {
    /// Connects to `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`, with
    /// libpq's `sslmode` and `sslrootcert`; see [`tls`]) and makes sure the
    /// migration history table exists.
    pub async fn open(url: &str) -> Result<PgDb, StoreError> {
        let (mut config, tls_settings) = tls::parse_url(url)?;
        let connector = tls::PgTls::new(&tls_settings)?;
        let options = match config.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} -c TimeZone=UTC"),
            _ => "-c TimeZone=UTC".to_string(),
        };
        config.options(options);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // Verified: a round trip per checkout, so that a connection the
        // server has ended (restart, failover, a killed session) is replaced
        // instead of failing the next query.
        let manager = Manager::from_config(config.clone(), connector, ManagerConfig { recycling_method: RecyclingMethod::Verified });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| StoreError::Config(format!("cannot create the PostgreSQL pool: {e}")))?;
        let db = PgDb { pool, config: Arc::new(config), tls: Arc::new(tls_settings) };
        let mut client = db.client().await?;
        migrate::ensure_history(&mut client).await?;
        Ok(db)
    }

    /// A pooled connection, for record access.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            let detail = match &e {
                deadpool_postgres::PoolError::Backend(b) => pg_error_text(b),
                other => other.to_string(),
            };
            let hint = if detail.contains("invalid peer certificate") {
                match self.tls.mode {
                    tls::SslMode::VerifyFull => {
                        " (sslmode=verify-full: the certificate must be signed by a CA in sslrootcert and name the host in the URL)"
                    }
                    _ => " (the certificate must be signed by a CA in sslrootcert, by default the system's CAs)",
                }
            } else {
                ""
            };
            StoreError::Unavailable(format!("cannot connect to PostgreSQL{}: {detail}{hint}", self.where_text()))
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub async fn history(&self) -> Result<Vec<MigrationRecord>, StoreError> {
        let client = self.client().await?;
        migrate::history(&**client).await
    }

    /// ` at HOST:PORT/DB` for messages: never the user or password.
    fn where_text(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => return String::new(),
        };
        let port = self.config.get_ports().first().map(|p| format!(":{p}")).unwrap_or_default();
        format!(" at {host}{port}/{}", self.config.get_dbname().unwrap_or(""))
    }
}

/// A throwaway database on the server of `url`, for `charter audit
/// --probe`: a new database with a unique name, dropped by [`Self::drop_now`].
pub struct ScratchDatabase {
    admin: tokio_postgres::Client,
    name: String,
    /// `url` with its database replaced by the scratch one (TLS settings kept).
    pub url: String,
}

impl ScratchDatabase {
    pub async fn create(url: &str) -> Result<ScratchDatabase, StoreError> {
        let (config, settings) = tls::parse_url(url)?;
        let (admin, connection) = config
            .connect(tls::PgTls::new(&settings)?)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {}", pg_error_text(&e))))?;
        tokio::spawn(connection);
        let name = format!("charter_scratch_{}", crate::sqlite::records::new_id());
        admin.batch_execute(&format!("CREATE DATABASE {}", ident(&name))).await.map_err(|e| {
            StoreError::Unavailable(format!("cannot create a scratch database (the role needs CREATEDB): {}", pg_error_text(&e)))
        })?;
        let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
        let authority = base.find("://").map_or(0, |i| i + 3);
        let cut = base[authority..].find('/').map_or(base.len(), |i| authority + i);
        let url = match query {
            Some(q) => format!("{}/{name}?{q}", &base[..cut]),
            None => format!("{}/{name}", &base[..cut]),
        };
        Ok(ScratchDatabase { admin, name, url })
    }

    /// Drops the database, ending any session still on it.
    pub async fn drop_now(self) -> Result<(), StoreError> {
        self.admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&self.name)))
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot drop the scratch database {}: {}", self.name, pg_error_text(&e))))
    }
}

/// tokio-postgres's `Display` says only "db error"; the server's message
/// (and its detail) is in the source.
pub(crate) fn pg_error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.to_string();
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
