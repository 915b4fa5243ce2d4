//! Auth's system tables on SQLite. Reads run on the calling thread with a
//! connection kept per thread; writes go through the records' writer
//! thread, so they are group-committed with record writes and never race
//! them for the write lock.

use super::records::{row_to_record_at, to_sql, Completion, Job};
use super::{ident, SqliteDb};
use crate::auth::*;
use crate::records::{predicate, Dialect, RowSource, Sql};
use crate::{Caller, Record, StoreError};
use charter_model::{Action, AppModel, Builtin, USER};
use charter_schema::{ColumnType, DbValue};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};

/// The version of the system tables this code reads and writes.
const SYSTEM_VERSION: i64 = 3;

thread_local! {
    static READERS: RefCell<HashMap<PathBuf, Connection>> = RefCell::new(HashMap::new());
}

/// Creates (or upgrades) the system tables. Runs when the database opens,
/// before any spec migration: SQLite accepts a reference to `users` before
/// that table exists, and only inserts need it.
pub(super) fn ensure_tables(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS _charter_system (component TEXT PRIMARY KEY, version INTEGER NOT NULL) STRICT")?;
    let version: i64 =
        conn.query_row("SELECT version FROM _charter_system WHERE component = 'auth'", [], |r| r.get(0)).optional()?.unwrap_or(0);
    if version > SYSTEM_VERSION {
        return Err(StoreError::Config(format!(
            "the database's auth tables are at version {version}, newer than this charter understands ({SYSTEM_VERSION}); upgrade charter"
        )));
    }
    if version < 1 {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
            CREATE TABLE IF NOT EXISTS _charter_credentials (
                user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
                password_hash TEXT NOT NULL,
                updated_at INTEGER NOT NULL
            ) STRICT;
            CREATE TABLE IF NOT EXISTS _charter_sessions (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                token_hash BLOB NOT NULL UNIQUE,
                created_at INTEGER NOT NULL,
                last_seen_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                user_agent TEXT,
                ip TEXT
            ) STRICT;
            CREATE INDEX IF NOT EXISTS _charter_sessions_user ON _charter_sessions(user_id);
            CREATE TABLE IF NOT EXISTS _charter_tokens (
                hash BLOB PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                kind TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                used_at INTEGER
            ) STRICT;
            CREATE INDEX IF NOT EXISTS _charter_tokens_user ON _charter_tokens(user_id, kind);
            -- No reference to users: the log outlives the accounts it mentions.
            CREATE TABLE IF NOT EXISTS _charter_audit (
                id INTEGER PRIMARY KEY,
                at INTEGER NOT NULL,
                event TEXT NOT NULL,
                user_id TEXT,
                email TEXT,
                ip TEXT,
                detail TEXT
            ) STRICT;
            CREATE INDEX IF NOT EXISTS _charter_audit_at ON _charter_audit(at);
            CREATE TABLE IF NOT EXISTS _charter_outbox (
                id INTEGER PRIMARY KEY,
                to_addr TEXT NOT NULL,
                subject TEXT NOT NULL,
                text TEXT NOT NULL,
                html TEXT NOT NULL,
                sent_at INTEGER NOT NULL
            ) STRICT;
            INSERT INTO _charter_system (component, version) VALUES ('auth', 1)
                ON CONFLICT (component) DO UPDATE SET version = excluded.version;
            COMMIT;",
        )?;
    }
    if version < 2 {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
            -- Rate-limit hits: one row per counted request, keyed by a hash
            -- of bucket and key (no address or IP in clear).
            CREATE TABLE IF NOT EXISTS _charter_rate_hits (key TEXT NOT NULL, at INTEGER NOT NULL) STRICT;
            CREATE INDEX IF NOT EXISTS _charter_rate_hits_key ON _charter_rate_hits(key, at);
            UPDATE _charter_system SET version = 2 WHERE component = 'auth';
            COMMIT;",
        )?;
    }
    if version < 3 {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
            CREATE TABLE IF NOT EXISTS _charter_mail_queue (
                id INTEGER PRIMARY KEY,
                to_addr TEXT NOT NULL,
                subject TEXT NOT NULL,
                text TEXT NOT NULL,
                html TEXT NOT NULL,
                queued_at INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_at INTEGER NOT NULL,
                claimed_until INTEGER NOT NULL DEFAULT 0
            ) STRICT;
            CREATE INDEX IF NOT EXISTS _charter_mail_queue_next ON _charter_mail_queue(next_at);
            UPDATE _charter_system SET version = 3 WHERE component = 'auth';
            COMMIT;",
        )?;
    }
    Ok(())
}

/// Counts or checks `keys` (see `AuthStore::rate`), in the caller's
/// transaction: the writer thread runs one at a time, so check and record
/// cannot interleave with another request's.
fn rate_on(
    conn: &Connection,
    keys: &[String],
    now: i64,
    window_ms: i64,
    max: u32,
    mode: RateMode,
) -> Result<Option<RateLimited>, StoreError> {
    let since = now - window_ms;
    if mode != RateMode::Record {
        let mut worst: Option<RateLimited> = None;
        for (i, key) in keys.iter().enumerate() {
            let nth: Option<i64> = conn
                .prepare_cached("SELECT at FROM _charter_rate_hits WHERE key = ?1 AND at > ?2 ORDER BY at DESC LIMIT 1 OFFSET ?3")?
                .query_row(params![key, since, i64::from(max.max(1)) - 1], |r| r.get(0))
                .optional()?;
            if let Some(at) = nth {
                let wait = (at + window_ms - now).max(1);
                if worst.as_ref().is_none_or(|w| wait > w.retry_after_ms) {
                    worst = Some(RateLimited { key: i, retry_after_ms: wait });
                }
            }
        }
        if worst.is_some() || mode == RateMode::Check {
            return Ok(worst);
        }
    }
    for key in keys {
        conn.prepare_cached("DELETE FROM _charter_rate_hits WHERE key = ?1 AND at <= ?2")?.execute(params![key, since])?;
        conn.prepare_cached("INSERT INTO _charter_rate_hits (key, at) VALUES (?1, ?2)")?.execute(params![key, now])?;
    }
    Ok(None)
}

pub struct SqliteAuth {
    db: SqliteDb,
    model: Arc<AppModel>,
    writer: mpsc::Sender<Job>,
    /// The per-request lookup, built once.
    session_sql: String,
    /// The owner's own row (`/api/auth/me`, login), built once.
    own_sql: String,
}

fn insert_audit(conn: &Connection, a: &AuditEntry) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO _charter_audit (at, event, user_id, email, ip, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
        .execute(params![a.at, a.event, a.user_id, a.email, a.ip, a.detail])?;
    Ok(())
}

fn insert_mail(conn: &Connection, m: &OutboxMail) -> Result<(), StoreError> {
    let sql = if m.queued {
        "INSERT INTO _charter_mail_queue (to_addr, subject, text, html, queued_at, next_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)"
    } else {
        "INSERT INTO _charter_outbox (to_addr, subject, text, html, sent_at) VALUES (?1, ?2, ?3, ?4, ?5)"
    };
    conn.prepare_cached(sql)?.execute(params![m.to, m.subject, m.text, m.html, m.sent_at])?;
    Ok(())
}

fn insert_session(conn: &Connection, user_id: &str, s: &NewSession) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO _charter_sessions (id, user_id, token_hash, created_at, last_seen_at, expires_at, user_agent, ip)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![s.id, user_id, s.token_hash, s.created_at, s.expires_at, s.user_agent, s.ip])?;
    Ok(())
}

fn insert_token(conn: &Connection, user_id: &str, t: &NewToken) -> Result<(), StoreError> {
    // A newer link voids the older ones of its kind.
    conn.prepare_cached("UPDATE _charter_tokens SET used_at = ?1 WHERE user_id = ?2 AND kind = ?3 AND used_at IS NULL")?
        .execute(params![t.created_at, user_id, t.kind.as_str()])?;
    conn.prepare_cached("INSERT INTO _charter_tokens (hash, user_id, kind, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![t.hash, user_id, t.kind.as_str(), t.created_at, t.expires_at])?;
    Ok(())
}

/// Marks a valid token used; the user it belongs to, if it was valid.
fn spend_token(conn: &Connection, hash: &[u8], kind: TokenKind, now: i64) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(
            "UPDATE _charter_tokens SET used_at = ?1 WHERE hash = ?2 AND kind = ?3 AND used_at IS NULL AND expires_at > ?1 RETURNING user_id",
        )?
        .query_row(params![now, hash, kind.as_str()], |r| r.get(0))
        .optional()?)
}

fn now_text(now_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z")).ok()
        })
        .unwrap_or_else(crate::migrate::now_text)
}

/// Sets `verified` on the user's row, as a record update (version and
/// `updated_at` move) when it changes.
fn mark_verified(conn: &Connection, model: &AppModel, user_id: &str, now: i64) -> Result<(), StoreError> {
    let table = ident(&model.user().plural);
    conn.prepare_cached(&format!(
        "UPDATE {table} SET \"verified\" = 1, \"version\" = \"version\" + 1, \"updated_at\" = ?1 WHERE \"id\" = ?2 AND \"verified\" = 0"
    ))?
    .execute(params![now_text(now), user_id])?;
    Ok(())
}

impl SqliteAuth {
    /// Also (re)creates the trigger that ends a user's sessions when their
    /// role changes, whoever changes it: a rebuild of `users` by a
    /// migration drops it, and apps are built after migrating.
    pub(crate) fn new(db: SqliteDb, model: Arc<AppModel>, writer: mpsc::Sender<Job>) -> Result<SqliteAuth, StoreError> {
        let users = ident(&model.user().plural);
        db.connect()?.execute_batch(&format!(
            "CREATE TRIGGER IF NOT EXISTS _charter_role_change AFTER UPDATE OF \"role\" ON {users}
             WHEN OLD.\"role\" IS NOT NEW.\"role\"
             BEGIN DELETE FROM _charter_sessions WHERE user_id = NEW.\"id\"; END"
        ))?;
        let session_sql = format!(
            "SELECT s.id, s.user_id, u.\"role\", u.\"verified\", s.created_at, s.last_seen_at, s.expires_at
             FROM _charter_sessions s JOIN {} u ON u.\"id\" = s.user_id WHERE s.token_hash = ?1",
            ident(&model.user().plural)
        );
        let own_sql = own_record_sql(&model);
        Ok(SqliteAuth { db, model, writer, session_sql, own_sql })
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        READERS.with(|cell| {
            let mut readers = cell.borrow_mut();
            // Looked up by reference: this runs on every request.
            if !readers.contains_key(self.db.path()) {
                readers.insert(self.db.path().to_path_buf(), self.db.connect()?);
            }
            f(readers.get_mut(self.db.path()).expect("just inserted"))
        })
    }

    /// Runs `f` in the writer's transaction (its own savepoint: an error
    /// undoes everything `f` did); the result comes back after COMMIT.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &AppModel) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let model = self.model.clone();
        let job: Job = Box::new(move |conn| {
            let result = f(conn, &model);
            let keep = result.is_ok();
            let done: Completion = Box::new(move |commit| {
                let _ = tx.send(commit.and(result));
            });
            (keep, done)
        });
        self.writer.send(job).map_err(|_| StoreError::Unavailable("the writer thread stopped".into()))?;
        rx.await.map_err(|_| StoreError::Unavailable("the writer thread stopped".into()))?
    }

    fn users(&self) -> String {
        ident(&self.model.user().plural)
    }

    fn account_where(&self, cond: &str, value: &str) -> Result<Option<Account>, StoreError> {
        let sql = format!(
            "SELECT u.\"id\", u.\"email\", u.\"role\", u.\"verified\", c.password_hash
             FROM {} u LEFT JOIN _charter_credentials c ON c.user_id = u.\"id\" WHERE {cond} = ?1",
            self.users()
        );
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&sql)?
                .query_row([value], |r| {
                    Ok(Account { user_id: r.get(0)?, email: r.get(1)?, role: r.get(2)?, verified: r.get(3)?, password_hash: r.get(4)? })
                })
                .optional()?)
        })
    }

    pub fn account_by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        self.account_where("u.\"email\"", email)
    }

    pub fn account_by_id(&self, user_id: &str) -> Result<Option<Account>, StoreError> {
        self.account_where("u.\"id\"", user_id)
    }

    pub fn user_id_by_email(&self, email: &str) -> Result<Option<String>, StoreError> {
        Ok(self.account_by_email(email)?.map(|a| a.user_id))
    }

    pub fn own_record(&self, user_id: &str) -> Result<Option<Record>, StoreError> {
        self.read(|conn| own_record(conn, &self.model, &self.own_sql, user_id))
    }

    pub async fn create_user(&self, user: NewUser) -> Result<CreatedUser, StoreError> {
        let id = super::records::new_id();
        self.write(move |conn, model| {
            let table = ident(&model.user().plural);
            let taken = conn
                .prepare_cached(&format!("SELECT 1 FROM {table} WHERE \"email\" = ?1"))?
                .query_row([&user.email], |_| Ok(()))
                .optional()?
                .is_some();
            if taken {
                return Ok(CreatedUser::EmailTaken);
            }
            let now = now_text(user.now);
            let mut cols = vec!["\"id\"".to_string(), "\"created_at\"".into(), "\"updated_at\"".into(), "\"version\"".into()];
            let mut values = vec![SqlValue::Text(id.clone()), SqlValue::Text(now.clone()), SqlValue::Text(now), SqlValue::Integer(1)];
            for (fid, v) in &user.values {
                cols.push(ident(&model.user().field(*fid).name));
                values.push(to_sql(v));
            }
            let placeholders = vec!["?"; cols.len()].join(", ");
            conn.prepare_cached(&format!("INSERT INTO {table} ({}) VALUES ({placeholders})", cols.join(", ")))?
                .execute(params_from_iter(values))?;
            if let Some(hash) = &user.password_hash {
                conn.prepare_cached("INSERT INTO _charter_credentials (user_id, password_hash, updated_at) VALUES (?1, ?2, ?3)")?
                    .execute(params![id, hash, user.now])?;
            }
            if let Some(t) = &user.token {
                insert_token(conn, &id, t)?;
            }
            if let Some(s) = &user.session {
                insert_session(conn, &id, s)?;
            }
            if let Some(m) = &user.mail {
                insert_mail(conn, m)?;
            }
            insert_audit(conn, &AuditEntry { user_id: Some(id.clone()), ..user.audit.clone() })?;
            let record = own_record(conn, model, &own_record_sql(model), &id)?
                .ok_or_else(|| StoreError::Internal("the new user row is missing".into()))?;
            Ok(CreatedUser::Created { id, record })
        })
        .await
    }

    pub async fn issue_token(&self, user_id: &str, token: NewToken, mail: Option<OutboxMail>, audit: AuditEntry) -> Result<(), StoreError> {
        let user_id = user_id.to_string();
        self.write(move |conn, _| {
            insert_token(conn, &user_id, &token)?;
            if let Some(m) = &mail {
                insert_mail(conn, m)?;
            }
            insert_audit(conn, &audit)
        })
        .await
    }

    pub fn token_user(&self, hash: &[u8], kind: TokenKind, now: i64) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT user_id FROM _charter_tokens WHERE hash = ?1 AND kind = ?2 AND used_at IS NULL AND expires_at > ?3",
                )?
                .query_row(params![hash, kind.as_str(), now], |r| r.get(0))
                .optional()?)
        })
    }

    pub async fn verify_email(&self, hash: Vec<u8>, now: i64, audit: AuditEntry) -> Result<Spent, StoreError> {
        self.write(move |conn, model| {
            let Some(user_id) = spend_token(conn, &hash, TokenKind::Verify, now)? else { return Ok(Spent::Invalid) };
            mark_verified(conn, model, &user_id, now)?;
            insert_audit(conn, &AuditEntry { user_id: Some(user_id.clone()), ..audit })?;
            Ok(Spent::Ok(user_id))
        })
        .await
    }

    pub async fn reset_password(&self, hash: Vec<u8>, password_hash: String, now: i64, audit: AuditEntry) -> Result<Spent, StoreError> {
        self.write(move |conn, model| {
            let Some(user_id) = spend_token(conn, &hash, TokenKind::Reset, now)? else { return Ok(Spent::Invalid) };
            conn.prepare_cached(
                "INSERT INTO _charter_credentials (user_id, password_hash, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash, updated_at = excluded.updated_at",
            )?
            .execute(params![user_id, password_hash, now])?;
            mark_verified(conn, model, &user_id, now)?;
            conn.prepare_cached("DELETE FROM _charter_sessions WHERE user_id = ?1")?.execute([&user_id])?;
            conn.prepare_cached("UPDATE _charter_tokens SET used_at = ?1 WHERE user_id = ?2 AND used_at IS NULL")?
                .execute(params![now, user_id])?;
            insert_audit(conn, &AuditEntry { user_id: Some(user_id.clone()), ..audit })?;
            Ok(Spent::Ok(user_id))
        })
        .await
    }

    pub async fn create_session(
        &self,
        user_id: &str,
        verified_hash: Option<String>,
        session: NewSession,
        replaces: Option<Vec<u8>>,
        audit: AuditEntry,
    ) -> Result<bool, StoreError> {
        let user_id = user_id.to_string();
        self.write(move |conn, _| {
            let current: Option<String> = conn
                .prepare_cached("SELECT password_hash FROM _charter_credentials WHERE user_id = ?1")?
                .query_row([&user_id], |r| r.get(0))
                .optional()?;
            if current != verified_hash {
                return Ok(false);
            }
            if let Some(old) = &replaces {
                conn.prepare_cached("DELETE FROM _charter_sessions WHERE token_hash = ?1")?.execute([old])?;
            }
            insert_session(conn, &user_id, &session)?;
            insert_audit(conn, &audit)?;
            Ok(true)
        })
        .await
    }

    pub fn session_by_token_hash(&self, hash: &[u8]) -> Result<Option<SessionLookup>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(&self.session_sql)?
                .query_row([hash], |r| {
                    Ok(SessionLookup {
                        id: r.get(0)?,
                        user_id: r.get(1)?,
                        role: r.get(2)?,
                        verified: r.get(3)?,
                        created_at: r.get(4)?,
                        last_seen_at: r.get(5)?,
                        expires_at: r.get(6)?,
                    })
                })
                .optional()?)
        })
    }

    pub async fn touch_session(&self, id: &str, now: i64) -> Result<(), StoreError> {
        let id = id.to_string();
        self.write(move |conn, _| {
            conn.prepare_cached("UPDATE _charter_sessions SET last_seen_at = ?1 WHERE id = ?2 AND last_seen_at < ?1")?
                .execute(params![now, id])?;
            Ok(())
        })
        .await
    }

    pub async fn delete_session(&self, user_id: &str, session_id: &str, audit: AuditEntry) -> Result<bool, StoreError> {
        let (user_id, session_id) = (user_id.to_string(), session_id.to_string());
        self.write(move |conn, _| {
            let n =
                conn.prepare_cached("DELETE FROM _charter_sessions WHERE id = ?1 AND user_id = ?2")?.execute([&session_id, &user_id])?;
            if n > 0 {
                insert_audit(conn, &audit)?;
            }
            Ok(n > 0)
        })
        .await
    }

    pub async fn delete_user_sessions(&self, user_id: &str, keep: Option<String>, audit: AuditEntry) -> Result<u64, StoreError> {
        let user_id = user_id.to_string();
        self.write(move |conn, _| {
            let n = conn
                .prepare_cached("DELETE FROM _charter_sessions WHERE user_id = ?1 AND (?2 IS NULL OR id <> ?2)")?
                .execute(params![user_id, keep])?;
            insert_audit(conn, &AuditEntry { detail: Some(format!("{n} sessions")), ..audit })?;
            Ok(n as u64)
        })
        .await
    }

    pub async fn delete_all_sessions(&self, audit: AuditEntry) -> Result<u64, StoreError> {
        self.write(move |conn, _| {
            let n = conn.prepare_cached("DELETE FROM _charter_sessions")?.execute([])?;
            insert_audit(conn, &AuditEntry { detail: Some(format!("{n} sessions")), ..audit })?;
            Ok(n as u64)
        })
        .await
    }

    pub fn list_sessions(&self, user_id: &str, now: i64) -> Result<Vec<SessionInfo>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, created_at, last_seen_at, expires_at, user_agent, ip FROM _charter_sessions
                 WHERE user_id = ?1 AND expires_at > ?2 ORDER BY last_seen_at DESC, id",
            )?;
            let rows = stmt.query_map(params![user_id, now], |r| {
                Ok(SessionInfo {
                    id: r.get(0)?,
                    created_at: r.get(1)?,
                    last_seen_at: r.get(2)?,
                    expires_at: r.get(3)?,
                    user_agent: r.get(4)?,
                    ip: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    pub async fn change_password(
        &self,
        user_id: &str,
        expected: String,
        password_hash: String,
        keep: Option<String>,
        now: i64,
        audit: AuditEntry,
    ) -> Result<bool, StoreError> {
        let user_id = user_id.to_string();
        self.write(move |conn, _| {
            let n = conn
                .prepare_cached(
                    "UPDATE _charter_credentials SET password_hash = ?1, updated_at = ?2 WHERE user_id = ?3 AND password_hash = ?4",
                )?
                .execute(params![password_hash, now, user_id, expected])?;
            if n == 0 {
                return Ok(false);
            }
            conn.prepare_cached("DELETE FROM _charter_sessions WHERE user_id = ?1 AND (?2 IS NULL OR id <> ?2)")?
                .execute(params![user_id, keep])?;
            conn.prepare_cached("UPDATE _charter_tokens SET used_at = ?1 WHERE user_id = ?2 AND kind = 'reset' AND used_at IS NULL")?
                .execute(params![now, user_id])?;
            insert_audit(conn, &audit)?;
            Ok(true)
        })
        .await
    }

    pub async fn rehash(&self, user_id: &str, expected: String, password_hash: String, now: i64) -> Result<(), StoreError> {
        let user_id = user_id.to_string();
        self.write(move |conn, _| {
            conn.prepare_cached(
                "UPDATE _charter_credentials SET password_hash = ?1, updated_at = ?2 WHERE user_id = ?3 AND password_hash = ?4",
            )?
            .execute(params![password_hash, now, user_id, expected])?;
            Ok(())
        })
        .await
    }

    pub async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.write(move |conn, _| insert_audit(conn, &entry)).await
    }

    pub fn audit_log(&self, limit: u32, before: Option<i64>) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, event, user_id, email, ip, detail FROM _charter_audit WHERE ?1 IS NULL OR id < ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![before, limit], |r| {
                Ok((
                    r.get(0)?,
                    AuditEntry { at: r.get(1)?, event: r.get(2)?, user_id: r.get(3)?, email: r.get(4)?, ip: r.get(5)?, detail: r.get(6)? },
                ))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    pub async fn queue_mail(&self, mail: OutboxMail) -> Result<(), StoreError> {
        self.write(move |conn, _| insert_mail(conn, &mail)).await
    }

    pub fn outbox(&self, limit: u32) -> Result<Vec<OutboxMail>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT to_addr, subject, text, html, sent_at FROM _charter_outbox ORDER BY id DESC LIMIT ?1")?;
            let rows = stmt.query_map([limit], |r| {
                Ok(OutboxMail { to: r.get(0)?, subject: r.get(1)?, text: r.get(2)?, html: r.get(3)?, sent_at: r.get(4)?, queued: false })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    pub fn count_live_sessions(&self, now: i64) -> Result<u64, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT count(*) FROM _charter_sessions WHERE expires_at > ?1")?
                .query_row([now], |r| r.get::<_, i64>(0))? as u64)
        })
    }

    pub async fn rate(
        &self,
        keys: &[String],
        now: i64,
        window_ms: i64,
        max: u32,
        mode: RateMode,
    ) -> Result<Option<RateLimited>, StoreError> {
        if mode == RateMode::Check {
            // A read: it needs no place in the writer's queue.
            return self.read(|conn| rate_on(conn, keys, now, window_ms, max, mode));
        }
        let keys = keys.to_vec();
        self.write(move |conn, _| rate_on(conn, &keys, now, window_ms, max, mode)).await
    }

    pub async fn claim_mail(&self, now: i64, lease_ms: i64) -> Result<Option<QueuedMail>, StoreError> {
        self.write(move |conn, _| {
            let mail = conn
                .prepare_cached(
                    "SELECT id, to_addr, subject, text, html, attempts FROM _charter_mail_queue
                     WHERE next_at <= ?1 AND claimed_until <= ?1 ORDER BY next_at, id LIMIT 1",
                )?
                .query_row([now], |r| {
                    Ok(QueuedMail {
                        id: r.get(0)?,
                        to: r.get(1)?,
                        subject: r.get(2)?,
                        text: r.get(3)?,
                        html: r.get(4)?,
                        attempts: r.get(5)?,
                    })
                })
                .optional()?;
            if let Some(m) = &mail {
                conn.prepare_cached("UPDATE _charter_mail_queue SET claimed_until = ?2 WHERE id = ?1")?
                    .execute(params![m.id, now + lease_ms])?;
            }
            Ok(mail)
        })
        .await
    }

    pub async fn mail_sent(&self, id: i64) -> Result<(), StoreError> {
        self.write(move |conn, _| {
            conn.prepare_cached("DELETE FROM _charter_mail_queue WHERE id = ?1")?.execute([id])?;
            Ok(())
        })
        .await
    }

    pub async fn mail_failed(&self, id: i64, next_at: Option<i64>) -> Result<(), StoreError> {
        self.write(move |conn, _| {
            match next_at {
                Some(at) => conn
                    .prepare_cached(
                        "UPDATE _charter_mail_queue SET attempts = attempts + 1, next_at = ?2, claimed_until = 0 WHERE id = ?1",
                    )?
                    .execute(params![id, at])?,
                None => conn.prepare_cached("DELETE FROM _charter_mail_queue WHERE id = ?1")?.execute([id])?,
            };
            Ok(())
        })
        .await
    }

    pub async fn queued_mail(&self) -> Result<u64, StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT count(*) FROM _charter_mail_queue", [], |r| r.get::<_, i64>(0))? as u64))
    }

    pub async fn rate_clear(&self, key: &str) -> Result<(), StoreError> {
        // Most logins have no failures to forget: no write then.
        let any: bool = self.read(|conn| {
            Ok(conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM _charter_rate_hits WHERE key = ?1)")?.query_row([key], |r| r.get(0))?)
        })?;
        if !any {
            return Ok(());
        }
        let key = key.to_string();
        self.write(move |conn, _| {
            conn.prepare_cached("DELETE FROM _charter_rate_hits WHERE key = ?1")?.execute([key])?;
            Ok(())
        })
        .await
    }

    pub async fn purge(&self, now: i64, idle_ms: i64, keep_until: i64, rate_before: i64) -> Result<u64, StoreError> {
        self.write(move |conn, _| {
            conn.prepare_cached("DELETE FROM _charter_rate_hits WHERE at <= ?1")?.execute([rate_before])?;
            let mut n = conn
                .prepare_cached("DELETE FROM _charter_sessions WHERE expires_at <= ?1 OR last_seen_at <= ?1 - ?2")?
                .execute(params![now, idle_ms])?;
            n += conn.prepare_cached("DELETE FROM _charter_tokens WHERE expires_at <= ?1")?.execute([now])?;
            n += conn.prepare_cached("DELETE FROM _charter_audit WHERE at < ?1")?.execute([keep_until])?;
            n += conn.prepare_cached("DELETE FROM _charter_outbox WHERE sent_at < ?1")?.execute([keep_until])?;
            Ok(n as u64)
        })
        .await
    }

    pub fn may_manage_user(&self, caller: &Caller, user_id: &str) -> Result<Option<bool>, StoreError> {
        let model = &self.model;
        let user = model.user();
        let (role_field, _) = user.field_by_name("role").expect("User has role");
        let mut sql = Sql::new(Dialect::Sqlite);
        let row = RowSource::Alias("t");
        let read = predicate(&mut sql, model, USER, user.permissions.get(Action::Read), &row, caller);
        let update = predicate(&mut sql, model, USER, user.permissions.get(Action::Update), &row, caller);
        let role = predicate(&mut sql, model, USER, user.permissions.field_rule(Action::Update, role_field), &row, caller);
        let p = sql.param(DbValue::Text(user_id.to_string()), ColumnType::Text);
        sql.push(&format!("SELECT {read}, {update}, {role} FROM {} t WHERE t.\"id\" = {p}", self.users()));
        self.read(|conn| {
            let row: Option<(Option<bool>, Option<bool>, Option<bool>)> = conn
                .prepare_cached(&sql.text)?
                .query_row(params_from_iter(sql.params.iter().map(to_sql)), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            Ok(match row {
                None | Some((None | Some(false), _, _)) => None,
                Some((_, update, role)) => Some(update == Some(true) || role == Some(true)),
            })
        })
    }
}

/// The owner's row, all fields; the trailing 1: the owner always sees their own email.
fn own_record_sql(model: &AppModel) -> String {
    let user = model.user();
    debug_assert!(user.fields.iter().any(|f| f.builtin == Some(Builtin::Email)));
    let cols: Vec<String> = user.fields.iter().map(|f| format!("t.{}", ident(&f.name))).collect();
    format!("SELECT {}, 1 FROM {} t WHERE t.\"id\" = ?1", cols.join(", "), ident(&user.plural))
}

fn own_record(conn: &Connection, model: &AppModel, sql: &str, user_id: &str) -> Result<Option<Record>, StoreError> {
    Ok(conn.prepare_cached(sql)?.query_row([user_id], |r| Ok(row_to_record_at(model, USER, r, 0))).optional()?)
}
