//! Auth's system tables on PostgreSQL: the same tables, rules and answers
//! as `sqlite/auth.rs`. Each write is one transaction; the tables are made
//! on first use (after the spec's migration made `users`, which they
//! reference), under an advisory lock so two processes starting together
//! do not race.

use super::{ident, PgDb};
use crate::auth::*;
use crate::records::{column_type, predicate, select_columns, Dialect, RowSource, Sql};
use crate::{Caller, Record, StoreError};
use charter_model::{Action, AppModel, Builtin, FieldType, USER};
use charter_schema::{ColumnType, DbValue};
use std::sync::Arc;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{error::SqlState, GenericClient, Row};

/// Any fixed number: the advisory lock that serialises table creation.
const DDL_LOCK: i64 = 0x6368_6172_7465_7231;

pub struct PgAuth {
    db: PgDb,
    model: Arc<AppModel>,
    ready: tokio::sync::OnceCell<()>,
    users: String,
    /// The per-request lookup, built once and prepared once per connection.
    session_sql: String,
}

type P<'a> = &'a (dyn ToSql + Sync);

fn text_param(v: &DbValue) -> Option<String> {
    match v {
        DbValue::Null => None,
        DbValue::Integer(n) => Some(n.to_string()),
        DbValue::Boolean(b) => Some(b.to_string()),
        DbValue::Text(s) | DbValue::Decimal(s) | DbValue::Date(s) | DbValue::DateTime(s) | DbValue::Json(s) => Some(s.clone()),
    }
}

/// Runs a statement built with `Sql` (text parameters, cast in the SQL).
async fn query_sql<C: GenericClient>(c: &C, sql: &Sql) -> Result<Vec<Row>, tokio_postgres::Error> {
    let stmt = c.prepare_typed(&sql.text, &vec![Type::TEXT; sql.params.len()]).await?;
    let params: Vec<Option<String>> = sql.params.iter().map(text_param).collect();
    let refs: Vec<P> = params.iter().map(|p| p as P).collect();
    c.query(&stmt, &refs).await
}

fn now_text(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z")).ok()
        })
        .unwrap_or_else(crate::migrate::now_text)
}

/// The owner's row: every column as text in the store's formats (as the
/// records do), then `true` for the email flag.
fn own_record_sql(model: &AppModel) -> String {
    let cols: Vec<String> = select_columns(model, USER)
        .iter()
        .map(|(name, ty, _)| {
            let c = format!("t.{}", ident(name));
            match ty {
                ColumnType::Text => c,
                ColumnType::Date => format!("to_char({c}, 'YYYY-MM-DD')"),
                ColumnType::DateTime => format!("to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"),
                _ => format!("{c}::text"),
            }
        })
        .collect();
    format!("SELECT {}, true FROM {} t WHERE t.\"id\" = $1", cols.join(", "), ident(&model.user().plural))
}

fn row_to_record(model: &AppModel, r: &Row) -> Record {
    use serde_json::Value as J;
    let mut out = Record::new();
    for (i, f) in model.user().fields.iter().enumerate() {
        let v = match r.try_get::<_, Option<String>>(i).ok().flatten() {
            None => J::Null,
            Some(s) => match &f.ty {
                FieldType::Int => s.parse::<i64>().map_or(J::Null, J::from),
                FieldType::Bool => J::Bool(s == "true"),
                FieldType::Json => serde_json::from_str(&s).unwrap_or(J::String(s)),
                _ => J::String(s),
            },
        };
        out.insert(f.name.clone(), v);
    }
    out
}

async fn own_record<C: GenericClient>(c: &C, model: &AppModel, user_id: &str) -> Result<Option<Record>, StoreError> {
    let row = c.query_opt(&own_record_sql(model), &[&user_id]).await?;
    Ok(row.map(|r| row_to_record(model, &r)))
}

async fn insert_audit<C: GenericClient>(c: &C, a: &AuditEntry) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO _charter_audit (at, event, user_id, email, ip, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&a.at, &a.event, &a.user_id, &a.email, &a.ip, &a.detail],
    )
    .await?;
    Ok(())
}

async fn insert_mail<C: GenericClient>(c: &C, m: &OutboxMail) -> Result<(), StoreError> {
    let sql = if m.queued {
        "INSERT INTO _charter_mail_queue (to_addr, subject, text, html, queued_at, next_at) VALUES ($1, $2, $3, $4, $5, $5)"
    } else {
        "INSERT INTO _charter_outbox (to_addr, subject, text, html, sent_at) VALUES ($1, $2, $3, $4, $5)"
    };
    c.execute(sql, &[&m.to, &m.subject, &m.text, &m.html, &m.sent_at]).await?;
    Ok(())
}

async fn insert_session<C: GenericClient>(c: &C, user_id: &str, s: &NewSession) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO _charter_sessions (id, user_id, token_hash, created_at, last_seen_at, expires_at, user_agent, ip)
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7)",
        &[&s.id, &user_id, &s.token_hash, &s.created_at, &s.expires_at, &s.user_agent, &s.ip],
    )
    .await?;
    Ok(())
}

async fn insert_token<C: GenericClient>(c: &C, user_id: &str, t: &NewToken) -> Result<(), StoreError> {
    // A newer link voids the older ones of its kind.
    c.execute(
        "UPDATE _charter_tokens SET used_at = $1 WHERE user_id = $2 AND kind = $3 AND used_at IS NULL",
        &[&t.created_at, &user_id, &t.kind.as_str()],
    )
    .await?;
    c.execute(
        "INSERT INTO _charter_tokens (hash, user_id, kind, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        &[&t.hash, &user_id, &t.kind.as_str(), &t.created_at, &t.expires_at],
    )
    .await?;
    Ok(())
}

async fn spend_token<C: GenericClient>(c: &C, hash: &[u8], kind: TokenKind, now: i64) -> Result<Option<String>, StoreError> {
    let row = c
        .query_opt(
            "UPDATE _charter_tokens SET used_at = $1 WHERE hash = $2 AND kind = $3 AND used_at IS NULL AND expires_at > $1 RETURNING user_id",
            &[&now, &hash, &kind.as_str()],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

impl PgAuth {
    pub(crate) fn new(db: PgDb, model: Arc<AppModel>) -> PgAuth {
        let users = ident(&model.user().plural);
        let session_sql = format!(
            "SELECT s.id, s.user_id, u.\"role\"::text, u.\"verified\", s.created_at, s.last_seen_at, s.expires_at
             FROM _charter_sessions s JOIN {users} u ON u.\"id\" = s.user_id WHERE s.token_hash = $1"
        );
        PgAuth { db, model, ready: tokio::sync::OnceCell::new(), users, session_sql }
    }

    /// A pooled connection, once the tables exist.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.ready.get_or_try_init(|| self.ensure_tables()).await?;
        self.db.client().await
    }

    async fn ensure_tables(&self) -> Result<(), StoreError> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK]).await?;
        let users = &self.users;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS _charter_system (component TEXT PRIMARY KEY, version BIGINT NOT NULL);
            CREATE TABLE IF NOT EXISTS _charter_credentials (
                user_id TEXT PRIMARY KEY REFERENCES {users}(\"id\") ON DELETE CASCADE,
                password_hash TEXT NOT NULL,
                updated_at BIGINT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS _charter_sessions (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES {users}(\"id\") ON DELETE CASCADE,
                token_hash BYTEA NOT NULL UNIQUE,
                created_at BIGINT NOT NULL,
                last_seen_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                user_agent TEXT,
                ip TEXT
            );
            CREATE INDEX IF NOT EXISTS _charter_sessions_user ON _charter_sessions(user_id);
            CREATE TABLE IF NOT EXISTS _charter_tokens (
                hash BYTEA PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES {users}(\"id\") ON DELETE CASCADE,
                kind TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                used_at BIGINT
            );
            CREATE INDEX IF NOT EXISTS _charter_tokens_user ON _charter_tokens(user_id, kind);
            CREATE TABLE IF NOT EXISTS _charter_audit (
                id BIGSERIAL PRIMARY KEY,
                at BIGINT NOT NULL,
                event TEXT NOT NULL,
                user_id TEXT,
                email TEXT,
                ip TEXT,
                detail TEXT
            );
            CREATE INDEX IF NOT EXISTS _charter_audit_at ON _charter_audit(at);
            CREATE TABLE IF NOT EXISTS _charter_outbox (
                id BIGSERIAL PRIMARY KEY,
                to_addr TEXT NOT NULL,
                subject TEXT NOT NULL,
                text TEXT NOT NULL,
                html TEXT NOT NULL,
                sent_at BIGINT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS _charter_rate_hits (key TEXT NOT NULL, at BIGINT NOT NULL);
            CREATE INDEX IF NOT EXISTS _charter_rate_hits_key ON _charter_rate_hits(key, at);
            CREATE TABLE IF NOT EXISTS _charter_mail_queue (
                id BIGSERIAL PRIMARY KEY,
                to_addr TEXT NOT NULL,
                subject TEXT NOT NULL,
                text TEXT NOT NULL,
                html TEXT NOT NULL,
                queued_at BIGINT NOT NULL,
                attempts BIGINT NOT NULL DEFAULT 0,
                next_at BIGINT NOT NULL,
                claimed_until BIGINT NOT NULL DEFAULT 0
            );
            CREATE INDEX IF NOT EXISTS _charter_mail_queue_next ON _charter_mail_queue(next_at);
            INSERT INTO _charter_system (component, version) VALUES ('auth', 3)
                ON CONFLICT (component) DO UPDATE SET version = excluded.version;
            CREATE OR REPLACE FUNCTION _charter_role_change() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN DELETE FROM _charter_sessions WHERE user_id = NEW.\"id\"; RETURN NULL; END $$;
            CREATE OR REPLACE TRIGGER _charter_role_change AFTER UPDATE OF \"role\" ON {users}
                FOR EACH ROW WHEN (OLD.\"role\" IS DISTINCT FROM NEW.\"role\") EXECUTE FUNCTION _charter_role_change();"
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn account_where(&self, column: &str, value: &str) -> Result<Option<Account>, StoreError> {
        let sql = format!(
            "SELECT u.\"id\", u.\"email\", u.\"role\", u.\"verified\", c.password_hash
             FROM {} u LEFT JOIN _charter_credentials c ON c.user_id = u.\"id\" WHERE u.{column} = $1",
            self.users
        );
        let row = self.client().await?.query_opt(&sql, &[&value]).await?;
        Ok(row.map(|r| Account { user_id: r.get(0), email: r.get(1), role: r.get(2), verified: r.get(3), password_hash: r.get(4) }))
    }

    pub async fn account_by_email(&self, email: &str) -> Result<Option<Account>, StoreError> {
        self.account_where("\"email\"", email).await
    }

    pub async fn account_by_id(&self, user_id: &str) -> Result<Option<Account>, StoreError> {
        self.account_where("\"id\"", user_id).await
    }

    pub async fn user_id_by_email(&self, email: &str) -> Result<Option<String>, StoreError> {
        Ok(self.account_by_email(email).await?.map(|a| a.user_id))
    }

    pub async fn own_record(&self, user_id: &str) -> Result<Option<Record>, StoreError> {
        let client = self.client().await?;
        own_record(&**client, &self.model, user_id).await
    }

    pub async fn create_user(&self, user: NewUser) -> Result<CreatedUser, StoreError> {
        let model = &self.model;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let taken = tx.query_opt(&format!("SELECT 1 FROM {} WHERE \"email\" = $1", self.users), &[&user.email]).await?.is_some();
        if taken {
            return Ok(CreatedUser::EmailTaken);
        }
        let id = crate::sqlite::records::new_id();
        let now = now_text(user.now);
        let mut sql = Sql::new(Dialect::Postgres);
        let mut cols = vec!["\"id\"".to_string(), "\"created_at\"".into(), "\"updated_at\"".into(), "\"version\"".into()];
        let mut vals = vec![
            sql.param(DbValue::Text(id.clone()), ColumnType::Text),
            sql.param(DbValue::DateTime(now.clone()), ColumnType::DateTime),
            sql.param(DbValue::DateTime(now), ColumnType::DateTime),
            sql.param(DbValue::Integer(1), ColumnType::Integer),
        ];
        for (fid, v) in &user.values {
            let f = model.user().field(*fid);
            cols.push(ident(&f.name));
            vals.push(sql.param(v.clone(), column_type(&f.ty)));
        }
        sql.push(&format!("INSERT INTO {} ({}) VALUES ({})", self.users, cols.join(", "), vals.join(", ")));
        match query_sql(&*tx, &sql).await {
            // Two signups for one address at once: the second looks fresh too.
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Ok(CreatedUser::EmailTaken),
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        if let Some(hash) = &user.password_hash {
            tx.execute(
                "INSERT INTO _charter_credentials (user_id, password_hash, updated_at) VALUES ($1, $2, $3)",
                &[&id, hash, &user.now],
            )
            .await?;
        }
        if let Some(t) = &user.token {
            insert_token(&*tx, &id, t).await?;
        }
        if let Some(s) = &user.session {
            insert_session(&*tx, &id, s).await?;
        }
        if let Some(m) = &user.mail {
            insert_mail(&*tx, m).await?;
        }
        insert_audit(&*tx, &AuditEntry { user_id: Some(id.clone()), ..user.audit.clone() }).await?;
        let record = own_record(&*tx, model, &id).await?.ok_or_else(|| StoreError::Internal("the new user row is missing".into()))?;
        tx.commit().await?;
        Ok(CreatedUser::Created { id, record })
    }

    pub async fn issue_token(&self, user_id: &str, token: NewToken, mail: Option<OutboxMail>, audit: AuditEntry) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        insert_token(&*tx, user_id, &token).await?;
        if let Some(m) = &mail {
            insert_mail(&*tx, m).await?;
        }
        insert_audit(&*tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn token_user(&self, hash: &[u8], kind: TokenKind, now: i64) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT user_id FROM _charter_tokens WHERE hash = $1 AND kind = $2 AND used_at IS NULL AND expires_at > $3",
                &[&hash, &kind.as_str(), &now],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn mark_verified<C: GenericClient>(&self, c: &C, user_id: &str, now: i64) -> Result<(), StoreError> {
        c.execute(
            &format!(
                "UPDATE {} SET \"verified\" = true, \"version\" = \"version\" + 1, \"updated_at\" = $1::text::timestamptz
                 WHERE \"id\" = $2 AND NOT \"verified\"",
                self.users
            ),
            &[&now_text(now), &user_id],
        )
        .await?;
        Ok(())
    }

    pub async fn verify_email(&self, hash: Vec<u8>, now: i64, audit: AuditEntry) -> Result<Spent, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(user_id) = spend_token(&*tx, &hash, TokenKind::Verify, now).await? else { return Ok(Spent::Invalid) };
        self.mark_verified(&*tx, &user_id, now).await?;
        insert_audit(&*tx, &AuditEntry { user_id: Some(user_id.clone()), ..audit }).await?;
        tx.commit().await?;
        Ok(Spent::Ok(user_id))
    }

    pub async fn reset_password(&self, hash: Vec<u8>, password_hash: String, now: i64, audit: AuditEntry) -> Result<Spent, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(user_id) = spend_token(&*tx, &hash, TokenKind::Reset, now).await? else { return Ok(Spent::Invalid) };
        tx.execute(
            "INSERT INTO _charter_credentials (user_id, password_hash, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash, updated_at = excluded.updated_at",
            &[&user_id, &password_hash, &now],
        )
        .await?;
        self.mark_verified(&*tx, &user_id, now).await?;
        tx.execute("DELETE FROM _charter_sessions WHERE user_id = $1", &[&user_id]).await?;
        tx.execute("UPDATE _charter_tokens SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL", &[&now, &user_id]).await?;
        insert_audit(&*tx, &AuditEntry { user_id: Some(user_id.clone()), ..audit }).await?;
        tx.commit().await?;
        Ok(Spent::Ok(user_id))
    }

    pub async fn create_session(
        &self,
        user_id: &str,
        verified_hash: Option<String>,
        session: NewSession,
        replaces: Option<Vec<u8>>,
        audit: AuditEntry,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Locked, so a reset or change cannot land between the check and the insert.
        let current: Option<String> = tx
            .query_opt("SELECT password_hash FROM _charter_credentials WHERE user_id = $1 FOR UPDATE", &[&user_id])
            .await?
            .map(|r| r.get(0));
        if current != verified_hash {
            return Ok(false);
        }
        if let Some(old) = &replaces {
            tx.execute("DELETE FROM _charter_sessions WHERE token_hash = $1", &[old]).await?;
        }
        insert_session(&*tx, user_id, &session).await?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn session_by_token_hash(&self, hash: &[u8]) -> Result<Option<SessionLookup>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&self.session_sql).await?;
        let row = client.query_opt(&stmt, &[&hash]).await?;
        Ok(row.map(|r| SessionLookup {
            id: r.get(0),
            user_id: r.get(1),
            role: r.get(2),
            verified: r.get(3),
            created_at: r.get(4),
            last_seen_at: r.get(5),
            expires_at: r.get(6),
        }))
    }

    /// See `AuthStore::rate`. Every process on the database shares the
    /// counts: each key is locked for the transaction (in key order, so two
    /// calls cannot deadlock), then checked and counted.
    pub async fn rate(
        &self,
        keys: &[String],
        now: i64,
        window_ms: i64,
        max: u32,
        mode: RateMode,
    ) -> Result<Option<RateLimited>, StoreError> {
        let mut client = self.client().await?;
        if mode == RateMode::Check {
            // Only reads: no lock, no transaction.
            return rate_check(&**client, keys, now, window_ms, max).await;
        }
        let tx = client.transaction().await?;
        let mut order: Vec<&String> = keys.iter().collect();
        order.sort();
        order.dedup();
        for key in order {
            tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", &[key]).await?;
        }
        let since = now - window_ms;
        if mode == RateMode::Hit {
            if let Some(refused) = rate_check(&*tx, keys, now, window_ms, max).await? {
                tx.commit().await?;
                return Ok(Some(refused));
            }
        }
        for key in keys {
            tx.execute("DELETE FROM _charter_rate_hits WHERE key = $1 AND at <= $2", &[key, &since]).await?;
            tx.execute("INSERT INTO _charter_rate_hits (key, at) VALUES ($1, $2)", &[key, &now]).await?;
        }
        tx.commit().await?;
        Ok(None)
    }

    /// `SKIP LOCKED`: processes sending at once take different mails.
    pub async fn claim_mail(&self, now: i64, lease_ms: i64) -> Result<Option<QueuedMail>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "UPDATE _charter_mail_queue SET claimed_until = $2 WHERE id = (
                    SELECT id FROM _charter_mail_queue WHERE next_at <= $1 AND claimed_until <= $1
                    ORDER BY next_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING id, to_addr, subject, text, html, attempts",
                &[&now, &(now + lease_ms)],
            )
            .await?;
        Ok(row.map(|r| QueuedMail { id: r.get(0), to: r.get(1), subject: r.get(2), text: r.get(3), html: r.get(4), attempts: r.get(5) }))
    }

    pub async fn mail_sent(&self, id: i64) -> Result<(), StoreError> {
        self.client().await?.execute("DELETE FROM _charter_mail_queue WHERE id = $1", &[&id]).await?;
        Ok(())
    }

    pub async fn mail_failed(&self, id: i64, next_at: Option<i64>) -> Result<(), StoreError> {
        let client = self.client().await?;
        match next_at {
            Some(at) => {
                client
                    .execute(
                        "UPDATE _charter_mail_queue SET attempts = attempts + 1, next_at = $2, claimed_until = 0 WHERE id = $1",
                        &[&id, &at],
                    )
                    .await?
            }
            None => client.execute("DELETE FROM _charter_mail_queue WHERE id = $1", &[&id]).await?,
        };
        Ok(())
    }

    pub async fn queued_mail(&self) -> Result<u64, StoreError> {
        let n: i64 = self.client().await?.query_one("SELECT count(*) FROM _charter_mail_queue", &[]).await?.get(0);
        Ok(n as u64)
    }

    pub async fn rate_clear(&self, key: &str) -> Result<(), StoreError> {
        self.client().await?.execute("DELETE FROM _charter_rate_hits WHERE key = $1", &[&key]).await?;
        Ok(())
    }

    pub async fn touch_session(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute("UPDATE _charter_sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1", &[&now, &id])
            .await?;
        Ok(())
    }

    pub async fn delete_session(&self, user_id: &str, session_id: &str, audit: AuditEntry) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx.execute("DELETE FROM _charter_sessions WHERE id = $1 AND user_id = $2", &[&session_id, &user_id]).await?;
        if n > 0 {
            insert_audit(&*tx, &audit).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    pub async fn delete_user_sessions(&self, user_id: &str, keep: Option<String>, audit: AuditEntry) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n =
            tx.execute("DELETE FROM _charter_sessions WHERE user_id = $1 AND ($2::text IS NULL OR id <> $2)", &[&user_id, &keep]).await?;
        insert_audit(&*tx, &AuditEntry { detail: Some(format!("{n} sessions")), ..audit }).await?;
        tx.commit().await?;
        Ok(n)
    }

    pub async fn delete_all_sessions(&self, audit: AuditEntry) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx.execute("DELETE FROM _charter_sessions", &[]).await?;
        insert_audit(&*tx, &AuditEntry { detail: Some(format!("{n} sessions")), ..audit }).await?;
        tx.commit().await?;
        Ok(n)
    }

    pub async fn list_sessions(&self, user_id: &str, now: i64) -> Result<Vec<SessionInfo>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, created_at, last_seen_at, expires_at, user_agent, ip FROM _charter_sessions
                 WHERE user_id = $1 AND expires_at > $2 ORDER BY last_seen_at DESC, id",
                &[&user_id, &now],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SessionInfo {
                id: r.get(0),
                created_at: r.get(1),
                last_seen_at: r.get(2),
                expires_at: r.get(3),
                user_agent: r.get(4),
                ip: r.get(5),
            })
            .collect())
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
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE _charter_credentials SET password_hash = $1, updated_at = $2 WHERE user_id = $3 AND password_hash = $4",
                &[&password_hash, &now, &user_id, &expected],
            )
            .await?;
        if n == 0 {
            return Ok(false);
        }
        tx.execute("DELETE FROM _charter_sessions WHERE user_id = $1 AND ($2::text IS NULL OR id <> $2)", &[&user_id, &keep]).await?;
        tx.execute("UPDATE _charter_tokens SET used_at = $1 WHERE user_id = $2 AND kind = 'reset' AND used_at IS NULL", &[&now, &user_id])
            .await?;
        insert_audit(&*tx, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn rehash(&self, user_id: &str, expected: String, password_hash: String, now: i64) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE _charter_credentials SET password_hash = $1, updated_at = $2 WHERE user_id = $3 AND password_hash = $4",
                &[&password_hash, &now, &user_id, &expected],
            )
            .await?;
        Ok(())
    }

    pub async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let client = self.client().await?;
        insert_audit(&**client, &entry).await
    }

    pub async fn audit_log(&self, limit: u32, before: Option<i64>) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, at, event, user_id, email, ip, detail FROM _charter_audit WHERE $1::bigint IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
                &[&before, &i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (r.get(0), AuditEntry { at: r.get(1), event: r.get(2), user_id: r.get(3), email: r.get(4), ip: r.get(5), detail: r.get(6) })
            })
            .collect())
    }

    pub async fn queue_mail(&self, mail: OutboxMail) -> Result<(), StoreError> {
        let client = self.client().await?;
        insert_mail(&**client, &mail).await
    }

    pub async fn outbox(&self, limit: u32) -> Result<Vec<OutboxMail>, StoreError> {
        let rows = self
            .client()
            .await?
            .query("SELECT to_addr, subject, text, html, sent_at FROM _charter_outbox ORDER BY id DESC LIMIT $1", &[&i64::from(limit)])
            .await?;
        Ok(rows
            .iter()
            .map(|r| OutboxMail { to: r.get(0), subject: r.get(1), text: r.get(2), html: r.get(3), sent_at: r.get(4), queued: false })
            .collect())
    }

    pub async fn count_live_sessions(&self, now: i64) -> Result<u64, StoreError> {
        let n: i64 = self.client().await?.query_one("SELECT count(*) FROM _charter_sessions WHERE expires_at > $1", &[&now]).await?.get(0);
        Ok(n as u64)
    }

    pub async fn purge(&self, now: i64, idle_ms: i64, keep_until: i64, rate_before: i64) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM _charter_rate_hits WHERE at <= $1", &[&rate_before]).await?;
        let mut n =
            tx.execute("DELETE FROM _charter_sessions WHERE expires_at <= $1 OR last_seen_at <= $1 - $2", &[&now, &idle_ms]).await?;
        n += tx.execute("DELETE FROM _charter_tokens WHERE expires_at <= $1", &[&now]).await?;
        n += tx.execute("DELETE FROM _charter_audit WHERE at < $1", &[&keep_until]).await?;
        n += tx.execute("DELETE FROM _charter_outbox WHERE sent_at < $1", &[&keep_until]).await?;
        tx.commit().await?;
        Ok(n)
    }

    pub async fn may_manage_user(&self, caller: &Caller, user_id: &str) -> Result<Option<bool>, StoreError> {
        let model = &self.model;
        let user = model.user();
        let (role_field, _) = user.field_by_name("role").expect("User has role");
        debug_assert!(user.fields.iter().any(|f| f.builtin == Some(Builtin::Role)));
        let mut sql = Sql::new(Dialect::Postgres);
        let row = RowSource::Alias("t");
        let read = predicate(&mut sql, model, USER, user.permissions.get(Action::Read), &row, caller);
        let update = predicate(&mut sql, model, USER, user.permissions.get(Action::Update), &row, caller);
        let role = predicate(&mut sql, model, USER, user.permissions.field_rule(Action::Update, role_field), &row, caller);
        let p = sql.param(DbValue::Text(user_id.to_string()), ColumnType::Text);
        sql.push(&format!("SELECT {read}, {update}, {role} FROM {} t WHERE t.\"id\" = {p}", self.users));
        let client = self.client().await?;
        let rows = query_sql(&**client, &sql).await?;
        Ok(match rows.first().map(|r| (r.get::<_, Option<bool>>(0), r.get::<_, Option<bool>>(1), r.get::<_, Option<bool>>(2))) {
            None | Some((None | Some(false), _, _)) => None,
            Some((_, update, role)) => Some(update == Some(true) || role == Some(true)),
        })
    }
}

/// The key among `keys` that waits longest, if any is at its limit.
async fn rate_check<C: GenericClient>(
    c: &C,
    keys: &[String],
    now: i64,
    window_ms: i64,
    max: u32,
) -> Result<Option<RateLimited>, StoreError> {
    let mut worst: Option<RateLimited> = None;
    for (i, key) in keys.iter().enumerate() {
        let nth = c
            .query_opt(
                "SELECT at FROM _charter_rate_hits WHERE key = $1 AND at > $2 ORDER BY at DESC LIMIT 1 OFFSET $3",
                &[key, &(now - window_ms), &(i64::from(max.max(1)) - 1)],
            )
            .await?;
        if let Some(at) = nth.map(|r| r.get::<_, i64>(0)) {
            let wait = (at + window_ms - now).max(1);
            if worst.as_ref().is_none_or(|w| wait > w.retry_after_ms) {
                worst = Some(RateLimited { key: i, retry_after_ms: wait });
            }
        }
    }
    Ok(worst)
}
