//! SQLite: WAL mode, foreign keys on, a busy timeout, and
//! `synchronous=NORMAL` (or FULL), set on every connection.

pub mod auth;
mod ddl;
pub mod idempotency;
mod migrate;
pub mod records;

use crate::migrate::MigrationRecord;
use crate::StoreError;
use rusqlite::Connection;
use std::path::{Path, PathBuf};

pub use ddl::ident;

/// How long a connection waits for a lock before giving up: long enough
/// that writers queue instead of failing under load.
const BUSY_TIMEOUT_MS: u32 = 10_000;

#[derive(Debug, Clone)]
pub struct SqliteDb {
    path: PathBuf,
    synchronous_full: bool,
}

impl SqliteDb {
    pub fn open(path: &Path, synchronous_full: bool) -> Result<SqliteDb, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", parent.display())))?;
        }
        let db = SqliteDb { path: path.to_path_buf(), synchronous_full };
        let conn = db.connect()?;
        migrate::ensure_history(&conn)?;
        auth::ensure_tables(&conn)?;
        idempotency::ensure_table(&conn)?;
        restrict_permissions(path);
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new connection with every pragma set. Each connection gets them:
    /// pragmas are per connection, not per database.
    pub fn connect(&self) -> Result<Connection, StoreError> {
        let conn =
            Connection::open(&self.path).map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", self.path.display())))?;
        configure(&conn, self.synchronous_full)?;
        Ok(conn)
    }

    pub fn history(&self) -> Result<Vec<MigrationRecord>, StoreError> {
        migrate::history(&self.connect()?)
    }
}

pub fn configure(conn: &Connection, synchronous_full: bool) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS.into()))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!("cannot switch the database to WAL mode (it is in {mode} mode)")));
    }
    conn.execute_batch(if synchronous_full { "PRAGMA synchronous=FULL;" } else { "PRAGMA synchronous=NORMAL;" })?;
    conn.execute_batch("PRAGMA foreign_keys=ON; PRAGMA legacy_alter_table=OFF;")?;
    Ok(())
}

/// The database holds password hashes and personal data: owner-only.
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::set_permissions(PathBuf::from(p), std::fs::Permissions::from_mode(0o600));
        }
    }
}
