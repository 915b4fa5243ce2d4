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
        let db = Self::connect(url).await?;
        let mut client = db.client().await?;
        migrate::ensure_history(&mut client).await?;
        drop(client);
        Ok(db)
    }

    /// The pool alone: the database is left as it is (a restore loads a
    /// dump into an empty one).
    pub(crate) async fn connect(url: &str) -> Result<PgDb, StoreError> {
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
        // Connect now, so a bad URL or password is reported here.
        drop(db.client().await?);
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

/// One connection outside the pool (for statements about whole databases),
/// with the URL's TLS settings; `what` names it in the error.
async fn direct_client(
    config: &tokio_postgres::Config,
    settings: &tls::TlsSettings,
    what: &str,
) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = config
        .connect(tls::PgTls::new(settings)?)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to {what}: {}", pg_error_text(&e))))?;
    tokio::spawn(connection);
    Ok(client)
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
        let admin = direct_client(&config, &settings, "PostgreSQL").await?;
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

    /// Makes this database the one `url` names: that database is renamed
    /// to `<name>_<suffix>` and kept; returns its new name (empty when there
    /// was none). Refused while anyone is connected to it. On failure the
    /// scratch database is dropped and the named one is left as it was.
    pub async fn swap_into(self, url: &str, suffix: &str) -> Result<String, StoreError> {
        let (config, settings) = tls::parse_url(url)?;
        let Some(target) = config.get_dbname().map(str::to_string) else {
            return Err(StoreError::Config("the PostgreSQL URL names no database to restore into".into()));
        };
        // From another database: one cannot rename the database one is on,
        // and this scratch database's own session is on the target.
        let mut maintenance = config.clone();
        maintenance.dbname("postgres");
        let admin = direct_client(&maintenance, &settings, "the `postgres` database to swap databases").await?;
        let own: i32 = self.admin.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
        drop(self.admin);
        admin.execute("SELECT pg_terminate_backend($1)", &[&own]).await?;
        let scratch = self.name;
        let result = swap(&admin, &target, &scratch, suffix).await;
        if result.is_err() {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&scratch))).await;
        }
        result
    }

    /// Drops the database, ending any session still on it.
    pub async fn drop_now(self) -> Result<(), StoreError> {
        self.admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&self.name)))
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot drop the scratch database {}: {}", self.name, pg_error_text(&e))))
    }
}

async fn swap(admin: &tokio_postgres::Client, target: &str, scratch: &str, suffix: &str) -> Result<String, StoreError> {
    let others: i64 =
        admin.query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", &[&target]).await?.get(0);
    if others > 0 {
        return Err(StoreError::Refused(format!(
            "{others} session(s) are connected to database {target}: a server is running on it; stop it, then restore"
        )));
    }
    let mut previous = format!("{target}_{suffix}");
    while previous.len() > 63 {
        previous.remove(0);
    }
    let exists: bool = admin.query_one("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", &[&target]).await?.get(0);
    if exists {
        admin.batch_execute(&format!("ALTER DATABASE {} RENAME TO {}", ident(target), ident(&previous))).await.map_err(|e| {
            StoreError::Unavailable(format!("cannot rename database {target} (the role must own it): {}", pg_error_text(&e)))
        })?;
    }
    let renamed = async {
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", &[&scratch]).await?;
        admin.batch_execute(&format!("ALTER DATABASE {} RENAME TO {}", ident(scratch), ident(target))).await
    }
    .await;
    if let Err(e) = renamed {
        if exists {
            let _ = admin.batch_execute(&format!("ALTER DATABASE {} RENAME TO {}", ident(&previous), ident(target))).await;
        }
        return Err(StoreError::Unavailable(format!("cannot rename the restored database: {}", pg_error_text(&e))));
    }
    Ok(if exists { previous } else { String::new() })
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
