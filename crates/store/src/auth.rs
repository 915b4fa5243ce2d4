//! Auth's system tables: credentials, sessions, one-time tokens, the audit
//! log and the dev outbox. They live outside the spec's migration plans
//! (created when a SQLite database opens, and on first use on PostgreSQL,
//! whose `users` table must exist for the references) and reference
//! `users(id)` with `ON DELETE CASCADE`, so deleting a user ends their
//! sessions and tokens in the same statement.
//!
//! Everything here takes hashes, never secrets: the app hashes tokens
//! before they reach the store, so no plaintext token is ever written.
//! Times are milliseconds since the Unix epoch from the app's clock, so
//! tests can expire sessions and tokens without sleeping.

use crate::{Record, StoreError};
use charter_model::FieldId;
use charter_schema::DbValue;

/// What a token is good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Verify,
    Reset,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Verify => "verify",
            TokenKind::Reset => "reset",
        }
    }
}

/// A user as auth sees it: who, with which role, and the password hash.
#[derive(Debug, Clone)]
pub struct Account {
    pub user_id: String,
    /// The stored (normalised) address: mail goes here, never to what was typed.
    pub email: String,
    pub role: String,
    pub verified: bool,
    /// argon2 PHC string; `None` for users made without a password.
    pub password_hash: Option<String>,
}

/// The live facts about the session a token names, from one indexed lookup.
#[derive(Debug, Clone)]
pub struct SessionLookup {
    pub id: String,
    pub user_id: String,
    pub role: String,
    pub verified: bool,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// A session as its owner sees it in the list.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub token_hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub hash: Vec<u8>,
    pub kind: TokenKind,
    pub created_at: i64,
    pub expires_at: i64,
}

/// One auth event. `email` is the normalised address typed, kept so
/// failures against unknown accounts can be investigated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: i64,
    pub event: String,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
}

/// A mail as the dev outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub sent_at: i64,
    /// For SMTP: written to the send queue (`_charter_mail_queue`) in the
    /// same transaction as its token, and sent by `claim_mail`'s caller;
    /// otherwise kept in the dev outbox.
    pub queued: bool,
}

/// A queued mail claimed for sending.
#[derive(Debug, Clone)]
pub struct QueuedMail {
    pub id: i64,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Failed sends so far.
    pub attempts: i64,
}

/// A user to insert: the values of the `users` row (every field the app
/// sets; `id`, timestamps and `version` are set by the store) and what
/// goes with it, written in one transaction.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub values: Vec<(FieldId, DbValue)>,
    pub password_hash: Option<String>,
    pub now: i64,
    pub token: Option<NewToken>,
    pub session: Option<NewSession>,
    pub mail: Option<OutboxMail>,
    pub audit: AuditEntry,
}

#[derive(Debug, Clone)]
pub enum CreatedUser {
    /// The row as its owner reads it.
    Created { id: String, record: Record },
    /// The address is taken; nothing was written.
    EmailTaken,
}

/// Outcome of spending a one-time token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spent {
    /// The token was valid; it is now used. Holds the user id.
    Ok(String),
    /// Unknown, used, expired or of another kind.
    Invalid,
}

/// How `AuthStore::rate` treats its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateMode {
    /// Refuse if a key is over its limit; count nothing.
    Check,
    /// Count one hit on every key; refuse nothing.
    Record,
    /// Refuse if a key is over its limit, else count one hit on every key.
    Hit,
}

/// A refusal: `keys[key]` already has its limit of hits in the window, and
/// will have room again in `retry_after_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    pub key: usize,
    pub retry_after_ms: i64,
}

/// Auth storage for one database.
pub enum AuthStore {
    Sqlite(crate::sqlite::auth::SqliteAuth),
    Postgres(crate::postgres::auth::PgAuth),
}

/// Calls the same method on either backend; SQLite's reads are synchronous
/// (per-thread connections), PostgreSQL's go through the pool.
macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AuthStore::Sqlite($s) => $e,
            AuthStore::Postgres($s) => $e,
        }
    };
    ($self:ident, sync $s:ident => $e:expr) => {
        match $self {
            AuthStore::Sqlite($s) => $e,
            AuthStore::Postgres($s) => $e.await,
        }
    };
}

impl AuthStore {
    pub async fn account_by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        dispatch!(self, sync s => s.account_by_email(email))
    }

    pub async fn account_by_id(&self, user_id: &str) -> Result<Option<Account>, StoreError> {
        dispatch!(self, sync s => s.account_by_id(user_id))
    }

    /// The user's own record (all fields, email included), whatever the
    /// spec's read rules: what `/api/auth/me` and login show the owner.
    pub async fn own_record(&self, user_id: &str) -> Result<Option<Record>, StoreError> {
        dispatch!(self, sync s => s.own_record(user_id))
    }

    /// Inserts a user with its credential, and optionally a token, a
    /// session, a mail, all in one transaction; an address already taken
    /// writes nothing.
    pub async fn create_user(&self, user: NewUser) -> Result<CreatedUser, StoreError> {
        dispatch!(self, s => s.create_user(user).await)
    }

    /// Issues a token of `token.kind` for the user, voiding older unused
    /// ones of that kind (a newer link replaces the older), and queues `mail`.
    pub async fn issue_token(&self, user_id: &str, token: NewToken, mail: Option<OutboxMail>, audit: AuditEntry) -> Result<(), StoreError> {
        dispatch!(self, s => s.issue_token(user_id, token, mail, audit).await)
    }

    /// Whether a token is valid now (unused, unexpired, of `kind`), without spending it.
    pub async fn token_user(&self, hash: &[u8], kind: TokenKind, now: i64) -> Result<Option<String>, StoreError> {
        dispatch!(self, sync s => s.token_user(hash, kind, now))
    }

    /// Spends a verification token and marks the address verified.
    pub async fn verify_email(&self, hash: Vec<u8>, now: i64, audit: AuditEntry) -> Result<Spent, StoreError> {
        dispatch!(self, s => s.verify_email(hash, now, audit).await)
    }

    /// Spends a reset token: writes the password, marks the email
    /// verified, deletes every session and voids other reset tokens of the
    /// user, in one transaction.
    pub async fn reset_password(&self, hash: Vec<u8>, password_hash: String, now: i64, audit: AuditEntry) -> Result<Spent, StoreError> {
        dispatch!(self, s => s.reset_password(hash, password_hash, now, audit).await)
    }

    /// Creates a session for `user_id` if its password hash is still
    /// `verified_hash` (a reset or change that landed meanwhile wins), and
    /// deletes the session named by `replaces` (the token presented with
    /// the login). `false`: the credential changed, no session was made.
    pub async fn create_session(
        &self,
        user_id: &str,
        verified_hash: Option<String>,
        session: NewSession,
        replaces: Option<Vec<u8>>,
        audit: AuditEntry,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.create_session(user_id, verified_hash, session, replaces, audit).await)
    }

    /// The session a token hash names, with its user's role: one indexed query.
    pub async fn session_by_token_hash(&self, hash: &[u8]) -> Result<Option<SessionLookup>, StoreError> {
        dispatch!(self, sync s => s.session_by_token_hash(hash))
    }

    pub async fn touch_session(&self, id: &str, now: i64) -> Result<(), StoreError> {
        dispatch!(self, s => s.touch_session(id, now).await)
    }

    /// Deletes one session of `user_id`; `false` when it has no such session.
    pub async fn delete_session(&self, user_id: &str, session_id: &str, audit: AuditEntry) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete_session(user_id, session_id, audit).await)
    }

    /// Deletes the user's sessions, except `keep`; returns how many.
    pub async fn delete_user_sessions(&self, user_id: &str, keep: Option<String>, audit: AuditEntry) -> Result<u64, StoreError> {
        dispatch!(self, s => s.delete_user_sessions(user_id, keep, audit).await)
    }

    /// Deletes every session of every user; returns how many.
    pub async fn delete_all_sessions(&self, audit: AuditEntry) -> Result<u64, StoreError> {
        dispatch!(self, s => s.delete_all_sessions(audit).await)
    }

    pub async fn list_sessions(&self, user_id: &str, now: i64) -> Result<Vec<SessionInfo>, StoreError> {
        dispatch!(self, sync s => s.list_sessions(user_id, now))
    }

    /// Replaces the password hash if it is still `expected`, deleting the
    /// user's other sessions (all but `keep`). `false`: it changed meanwhile.
    pub async fn change_password(
        &self,
        user_id: &str,
        expected: String,
        password_hash: String,
        keep: Option<String>,
        now: i64,
        audit: AuditEntry,
    ) -> Result<bool, StoreError> {
        dispatch!(self, s => s.change_password(user_id, expected, password_hash, keep, now, audit).await)
    }

    /// Replaces an outdated hash of the same password (parameters changed).
    pub async fn rehash(&self, user_id: &str, expected: String, password_hash: String, now: i64) -> Result<(), StoreError> {
        dispatch!(self, s => s.rehash(user_id, expected, password_hash, now).await)
    }

    pub async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        dispatch!(self, s => s.audit(entry).await)
    }

    /// Newest first; `before` is the id of the last entry of the previous page.
    pub async fn audit_log(&self, limit: u32, before: Option<i64>) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        dispatch!(self, sync s => s.audit_log(limit, before))
    }

    pub async fn queue_mail(&self, mail: OutboxMail) -> Result<(), StoreError> {
        dispatch!(self, s => s.queue_mail(mail).await)
    }

    /// The dev outbox, newest first.
    pub async fn outbox(&self, limit: u32) -> Result<Vec<OutboxMail>, StoreError> {
        dispatch!(self, sync s => s.outbox(limit))
    }

    pub async fn count_live_sessions(&self, now: i64) -> Result<u64, StoreError> {
        dispatch!(self, sync s => s.count_live_sessions(now))
    }

    /// The next queued mail due by `now` that no live claim holds, claimed
    /// until `now + lease_ms` (a sender that dies loses its claim then, and
    /// another process sends the mail).
    pub async fn claim_mail(&self, now: i64, lease_ms: i64) -> Result<Option<QueuedMail>, StoreError> {
        dispatch!(self, s => s.claim_mail(now, lease_ms).await)
    }

    /// A claimed mail was sent: it leaves the queue (its body holds a token).
    pub async fn mail_sent(&self, id: i64) -> Result<(), StoreError> {
        dispatch!(self, s => s.mail_sent(id).await)
    }

    /// A claimed mail failed: tried again at `next_at`, or, with `None`,
    /// given up and deleted.
    pub async fn mail_failed(&self, id: i64, next_at: Option<i64>) -> Result<(), StoreError> {
        dispatch!(self, s => s.mail_failed(id, next_at).await)
    }

    /// Mail waiting to be sent (for `/metrics`).
    pub async fn queued_mail(&self) -> Result<u64, StoreError> {
        dispatch!(self, s => s.queued_mail().await)
    }

    /// Rate limits shared by every process on the database: an exact
    /// sliding window of `window_ms` allowing `max` hits per key (keys are
    /// opaque: the app hashes what they name). Refused requests are not
    /// counted, so hammering a throttled key does not extend its wait.
    pub async fn rate(
        &self,
        keys: &[String],
        now: i64,
        window_ms: i64,
        max: u32,
        mode: RateMode,
    ) -> Result<Option<RateLimited>, StoreError> {
        dispatch!(self, s => s.rate(keys, now, window_ms, max, mode).await)
    }

    /// Forgets a key's hits (a successful login clears its account's failures).
    pub async fn rate_clear(&self, key: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.rate_clear(key).await)
    }

    /// Deletes expired sessions and tokens, audit entries and outbox mail
    /// older than `keep_until`, and rate-limit hits at or before `rate_before`.
    pub async fn purge(&self, now: i64, idle_ms: i64, keep_until: i64, rate_before: i64) -> Result<u64, StoreError> {
        dispatch!(self, s => s.purge(now, idle_ms, keep_until, rate_before).await)
    }

    /// Whether `caller` passes the User `update` rule (or the `update role`
    /// rule) on the row `user_id`, and may see it: who may end that
    /// user's sessions. `None` when the row is missing or invisible.
    pub async fn may_manage_user(&self, caller: &crate::Caller, user_id: &str) -> Result<Option<bool>, StoreError> {
        dispatch!(self, sync s => s.may_manage_user(caller, user_id))
    }

    /// The id of the user with this (normalised) email.
    pub async fn user_id_by_email(&self, email: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, sync s => s.user_id_by_email(email))
    }
}
