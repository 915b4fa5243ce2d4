//! Idempotency keys on SQLite: the first response to a `POST` with an
//! `Idempotency-Key` is kept (per user, 24 hours) so a retry gets it again
//! instead of creating twice. A system table beside the app's tables,
//! created when the database opens and never part of a migration plan.
//!
//! The store keeps the response as opaque text; what it holds is the app's
//! business. Writes go through the records writer thread, so claiming a key
//! is serialised with every other write and two racing retries cannot both
//! claim it.

use super::records::SqliteRecords;
use crate::records::WriteError;
use crate::StoreError;
use rusqlite::{Connection, OptionalExtension};

pub(crate) const TABLE: &str = "_charter_idempotency";

/// How long a key is remembered.
pub const KEEP_MS: i64 = 24 * 60 * 60 * 1000;

/// How long a claim without an answer holds its key. A request that claimed
/// a key either stores its answer or releases the claim; only a process
/// that died in between leaves one behind. No create takes minutes, so
/// after this a retry with the same request takes the claim over instead
/// of being told "in flight" until the key expires.
pub const LEASE_MS: i64 = 5 * 60 * 1000;

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new (or expired): this request is the first; finish or
    /// abandon it.
    New,
    /// A request with this key finished: its stored response.
    Done(String),
    /// The key was used with a different request.
    Mismatch,
    /// A request with this key is still running (claimed less than
    /// [`LEASE_MS`] ago).
    InFlight,
}

pub fn ensure_table(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{TABLE}\" (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            response TEXT,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (scope, key)
        ) STRICT;
        CREATE INDEX IF NOT EXISTS \"{TABLE}_created_at\" ON \"{TABLE}\" (created_at);"
    ))?;
    Ok(())
}

fn claim_on(conn: &Connection, scope: &str, key: &str, hash: &str, now_ms: i64) -> Result<Claim, StoreError> {
    conn.prepare_cached(&format!("DELETE FROM \"{TABLE}\" WHERE created_at < ?1"))?.execute([now_ms - KEEP_MS])?;
    let existing: Option<(String, Option<String>, i64)> = conn
        .prepare_cached(&format!("SELECT request_hash, response, created_at FROM \"{TABLE}\" WHERE scope = ?1 AND key = ?2"))?
        .query_row(rusqlite::params![scope, key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    Ok(match existing {
        Some((h, _, _)) if h != hash => Claim::Mismatch,
        Some((_, None, claimed_at)) if claimed_at < now_ms - LEASE_MS => {
            conn.prepare_cached(&format!("UPDATE \"{TABLE}\" SET created_at = ?3 WHERE scope = ?1 AND key = ?2"))?
                .execute(rusqlite::params![scope, key, now_ms])?;
            Claim::New
        }
        Some((_, None, _)) => Claim::InFlight,
        Some((_, Some(response), _)) => Claim::Done(response),
        None => {
            conn.prepare_cached(&format!("INSERT INTO \"{TABLE}\" (scope, key, request_hash, created_at) VALUES (?1, ?2, ?3, ?4)"))?
                .execute(rusqlite::params![scope, key, hash, now_ms])?;
            Claim::New
        }
    })
}

impl SqliteRecords {
    pub async fn idempotency_claim(&self, scope: &str, key: &str, hash: &str, now_ms: i64) -> Result<Claim, StoreError> {
        let (scope, key, hash) = (scope.to_string(), key.to_string(), hash.to_string());
        self.write(move |conn, _| claim_on(conn, &scope, &key, &hash, now_ms).map_err(WriteError::Store)).await.map_err(into_store)
    }

    /// Stores the response of the request that claimed the key.
    pub async fn idempotency_finish(&self, scope: &str, key: &str, response: &str) -> Result<(), StoreError> {
        let (scope, key, response) = (scope.to_string(), key.to_string(), response.to_string());
        self.write(move |conn, _| {
            conn.prepare_cached(&format!("UPDATE \"{TABLE}\" SET response = ?3 WHERE scope = ?1 AND key = ?2"))
                .and_then(|mut s| s.execute(rusqlite::params![scope, key, response]))
                .map_err(|e| WriteError::Store(e.into()))?;
            Ok(())
        })
        .await
        .map_err(into_store)
    }

    /// Forgets a claim whose request failed in a way a retry may fix.
    pub async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        let (scope, key) = (scope.to_string(), key.to_string());
        self.write(move |conn, _| {
            conn.prepare_cached(&format!("DELETE FROM \"{TABLE}\" WHERE scope = ?1 AND key = ?2 AND response IS NULL"))
                .and_then(|mut s| s.execute(rusqlite::params![scope, key]))
                .map_err(|e| WriteError::Store(e.into()))?;
            Ok(())
        })
        .await
        .map_err(into_store)
    }
}

fn into_store(e: WriteError) -> StoreError {
    match e {
        WriteError::Store(s) => s,
        other => StoreError::Internal(format!("idempotency: {other:?}")),
    }
}
