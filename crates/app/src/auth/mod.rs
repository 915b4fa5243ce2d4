//! Auth use cases: signup, email verification, login, sessions, password
//! reset and change, and the audit log. The HTTP layer only parses and
//! renders; every rule about who may do what lives here.
//!
//! Secrets never travel further than they must: tokens are hashed before
//! they reach the store, passwords only reach argon2, and nothing here logs
//! either.

pub mod limits;
pub mod password;
pub mod secrets;

use crate::mail::{MailKind, MailVars};
use crate::{App, AppError, Credentials, FieldError};
use charter_model::{Builtin, DefaultValue, EmailVerification, Signup};
use charter_schema::DbValue;
use charter_store::auth::{AuditEntry, CreatedUser, NewSession, NewToken, NewUser, OutboxMail, SessionInfo, Spent, TokenKind};
use charter_store::{Caller, Record};
use limits::Bucket;
use std::sync::Arc;

/// Verification links live a day: long enough to find the mail, short
/// enough that an old inbox is no key.
pub const VERIFY_TTL_MS: i64 = 24 * 3600 * 1000;
/// Reset links live an hour (http-api.md).
pub const RESET_TTL_MS: i64 = 3600 * 1000;
/// `last_seen_at` is written at most this often per session, so reads do
/// not turn into writes.
pub const TOUCH_EVERY_MS: i64 = 60 * 1000;
/// How long the audit log and the dev outbox are kept.
pub const AUDIT_RETENTION_MS: i64 = 90 * 24 * 3600 * 1000;

/// Where a request came from, as the web layer resolved it.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// How a signed-in client keeps its session (the web layer's choice of
/// where the token goes; the session is the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionMode {
    /// The token in the body, sent back as `Authorization: Bearer`.
    #[default]
    Bearer,
    /// The token only in the session cookie.
    Cookie,
}

/// A new session. `token` goes to the client once (body or cookie) and is
/// never stored.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub token: String,
    pub session_id: String,
    pub expires_at: i64,
    pub csrf_token: String,
}

#[derive(Debug, Clone)]
pub struct SignupResult {
    pub user: Record,
    /// Set when verification is off: signup signs in as login does.
    pub session: Option<SignedIn>,
}

#[derive(Debug, Clone)]
pub struct LoginResult {
    pub user: Record,
    pub session: SignedIn,
}

/// The session behind a request.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub caller: Caller,
    /// Authenticated by the cookie (CSRF rules apply), not a bearer token.
    pub via_cookie: bool,
}

/// One row of the session list.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub info: SessionInfo,
    pub current: bool,
}

pub struct SignupInput {
    pub email: String,
    pub password: String,
    pub name: Option<String>,
}

fn field_error(field: &str, code: &str, message: &str) -> AppError {
    AppError::Validation(vec![FieldError::new(field, code, message)])
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, as records show times.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z")).ok()
        })
        .unwrap_or_default()
}

fn db_to_json(v: &DbValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        DbValue::Null => J::Null,
        DbValue::Integer(n) => J::from(*n),
        DbValue::Boolean(b) => J::Bool(*b),
        DbValue::Text(s) | DbValue::Decimal(s) | DbValue::Date(s) | DbValue::DateTime(s) => J::String(s.clone()),
        DbValue::Json(s) => serde_json::from_str(s).unwrap_or(J::Null),
    }
}

impl App {
    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn audit_entry(&self, event: &str, user_id: Option<&str>, email: Option<&str>, client: &ClientInfo) -> AuditEntry {
        AuditEntry {
            at: self.now(),
            event: event.to_string(),
            user_id: user_id.map(str::to_string),
            email: email.map(str::to_string),
            ip: client.ip.clone(),
            detail: None,
        }
    }

    fn ip_key<'a>(&self, client: &'a ClientInfo) -> &'a str {
        client.ip.as_deref().unwrap_or("-")
    }

    fn link(&self, page: &str, token: &str) -> String {
        format!("{}/{page}?token={token}", self.config.public_url.trim_end_matches('/'))
    }

    fn mail_vars(&self, email: &str, name: Option<String>, link: String, expires_in: &str) -> MailVars {
        MailVars { app_name: self.model.name.clone(), email: email.to_string(), name, link, expires_in: expires_in.to_string() }
    }

    /// Wakes the mail sender after a commit that queued mail (SMTP).
    fn deliver(&self) {
        self.mailer.wake();
    }

    fn new_session(&self, client: &ClientInfo) -> (SignedIn, NewSession) {
        let token = secrets::new_token();
        let id = secrets::new_id();
        let now = self.now();
        let expires_at = now + (self.model.settings.session_lifetime_secs as i64) * 1000;
        let user_agent = client.user_agent.as_ref().map(|ua| ua.chars().filter(|c| !c.is_control()).take(512).collect());
        let new = NewSession {
            id: id.clone(),
            token_hash: secrets::token_hash(&token),
            created_at: now,
            expires_at,
            user_agent,
            ip: client.ip.clone(),
        };
        (SignedIn { csrf_token: self.csrf_token(&id), token, session_id: id, expires_at }, new)
    }

    fn password_context<'a>(&'a self, email: &'a str) -> Vec<&'a str> {
        let mut words = vec![self.model.name.as_str(), email.split('@').next().unwrap_or("")];
        words.extend(self.model.roles.iter().map(|r| r.name.as_str()));
        words
    }

    /// The CSRF token for a session (returned by login and `/api/auth/me`).
    pub fn csrf_token(&self, session_id: &str) -> String {
        secrets::csrf_token(self.config.secret.expose(), session_id)
    }

    /// Checks a CSRF token against the secret, or the previous one during a rotation.
    pub fn csrf_ok(&self, session_id: &str, presented: &str) -> bool {
        secrets::csrf_ok(self.config.secret.expose(), session_id, presented)
            || self.config.previous_secret.as_ref().is_some_and(|old| secrets::csrf_ok(old.expose(), session_id, presented))
    }

    /// The values of a new user's row: the built-in fields, then the
    /// declared ones from their defaults. A required declared field
    /// without a default cannot be filled by signup: 422 naming it.
    fn new_user_values(
        &self,
        email: &str,
        name: Option<&str>,
        role: &str,
        verified: bool,
    ) -> Result<Vec<(charter_model::FieldId, DbValue)>, AppError> {
        let now = self.now();
        let mut values = Vec::new();
        let mut missing = Vec::new();
        for (i, f) in self.model.user().fields.iter().enumerate() {
            let id = charter_model::FieldId(i);
            let v = match f.builtin {
                Some(Builtin::Email) => DbValue::Text(email.to_string()),
                Some(Builtin::Name) => name.map_or(DbValue::Null, |n| DbValue::Text(n.to_string())),
                Some(Builtin::Role) => DbValue::Text(role.to_string()),
                Some(Builtin::Verified) => DbValue::Boolean(verified),
                Some(_) => continue,
                None => match &f.default {
                    None if f.required => {
                        missing.push(FieldError::new(&f.name, "required", "This field is required, and signup cannot set it."));
                        continue;
                    }
                    None => continue,
                    Some(d) => match d {
                        DefaultValue::Me => DbValue::Null,
                        DefaultValue::Now => DbValue::DateTime(rfc3339(now)),
                        DefaultValue::Today => DbValue::Date(rfc3339(now)[..10].to_string()),
                        DefaultValue::Bool(b) => DbValue::Boolean(*b),
                        DefaultValue::Int(n) => DbValue::Integer(*n),
                        DefaultValue::Decimal(s) => DbValue::Decimal(s.clone()),
                        DefaultValue::Text(s) | DefaultValue::Enum(s) => DbValue::Text(s.clone()),
                        DefaultValue::Date(s) => DbValue::Date(s.clone()),
                        DefaultValue::DateTime(s) => DbValue::DateTime(s.clone()),
                        DefaultValue::Json(s) => DbValue::Json(s.clone()),
                    },
                },
            };
            values.push((id, v));
        }
        if missing.is_empty() {
            Ok(values)
        } else {
            Err(AppError::Validation(missing))
        }
    }

    /// A record shaped exactly like a new user's, for a signup whose
    /// address is taken: the answer must not tell the two apart.
    fn lookalike_user(&self, values: &[(charter_model::FieldId, DbValue)]) -> Record {
        let now = rfc3339(self.now());
        let mut rec = Record::new();
        for (i, f) in self.model.user().fields.iter().enumerate() {
            let v = match f.builtin {
                Some(Builtin::Id) => serde_json::Value::String(charter_store::sqlite::records::new_id()),
                Some(Builtin::CreatedAt | Builtin::UpdatedAt) => serde_json::Value::String(now.clone()),
                Some(Builtin::Version) => serde_json::Value::from(1),
                _ => values.iter().find(|(id, _)| id.0 == i).map_or(serde_json::Value::Null, |(_, v)| db_to_json(v)),
            };
            rec.insert(f.name.clone(), v);
        }
        rec
    }

    pub async fn signup(&self, input: SignupInput, client: &ClientInfo) -> Result<SignupResult, AppError> {
        let settings = &self.model.settings;
        if settings.signup != Signup::Open {
            return Err(AppError::Forbidden {
                kind: Some("signup-closed"),
                detail: "This app does not take sign-ups; an administrator creates accounts.".into(),
            });
        }
        let email = secrets::normalize_email(&input.email);
        let email_key = email.clone().unwrap_or_else(|| input.email.trim().to_lowercase());
        let now = self.now();
        self.rate_hit(&[(Bucket::SignupIp, self.ip_key(client)), (Bucket::SignupEmail, &email_key)], now).await?;
        let mut errors = Vec::new();
        if email.is_none() {
            errors.push(FieldError::new("email", "invalid", "This is not an email address."));
        }
        let name = input.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        if let Some(n) = &name {
            if n.chars().count() > 200 {
                errors.push(FieldError::new("name", "too_long", "Use at most 200 characters."));
            } else if n.chars().any(char::is_control) {
                errors.push(FieldError::new("name", "invalid", "A name cannot hold control characters or line breaks."));
            }
        }
        if let Err(AppError::Validation(mut e)) =
            password::check_policy("password", &input.password, settings.password_min_length, &self.password_context(&email_key))
        {
            errors.append(&mut e);
        }
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        let email = email.expect("checked above");
        let role = self.model.role(self.model.default_role).name.clone();
        let values = self.new_user_values(&email, name.as_deref(), &role, false)?;
        let hash = self.hasher.hash(input.password).await?;
        let verify = settings.email_verification != EmailVerification::Off;
        let (token, mail) = if verify {
            let token = secrets::new_token();
            let vars = self.mail_vars(&email, name.clone(), self.link("verify", &token), "24 hours");
            let mail = self.mailer.render(MailKind::Verify, &vars, now)?;
            (
                Some(NewToken {
                    hash: secrets::token_hash(&token),
                    kind: TokenKind::Verify,
                    created_at: now,
                    expires_at: now + VERIFY_TTL_MS,
                }),
                Some(mail),
            )
        } else {
            (None, None)
        };
        let session = (!verify).then(|| self.new_session(client));
        let new = NewUser {
            email: email.clone(),
            values: values.clone(),
            password_hash: Some(hash),
            now,
            token,
            session: session.as_ref().map(|(_, s)| s.clone()),
            mail: mail.clone(),
            audit: self.audit_entry("signup", None, Some(&email), client),
        };
        match self.auth.create_user(new).await? {
            CreatedUser::Created { record, .. } => {
                if mail.is_some() {
                    self.deliver();
                }
                Ok(SignupResult { user: record, session: session.map(|(s, _)| s) })
            }
            CreatedUser::EmailTaken => {
                // Same status, same shape, nothing touched. The session
                // handed out names nothing, so it is refused on first use.
                let _ = self.auth.audit(self.audit_entry("signup_existing_email", None, Some(&email), client)).await;
                Ok(SignupResult { user: self.lookalike_user(&values), session: session.map(|(s, _)| s) })
            }
        }
    }

    pub async fn verify_email(&self, token: &str, client: &ClientInfo) -> Result<Record, AppError> {
        self.rate_hit(&[(Bucket::VerifyIp, self.ip_key(client))], self.now()).await?;
        let audit = self.audit_entry("email_verified", None, None, client);
        match self.auth.verify_email(secrets::token_hash(token), self.now(), audit).await? {
            Spent::Invalid => Err(AppError::InvalidToken),
            Spent::Ok(user_id) => self.auth.own_record(&user_id).await?.ok_or(AppError::InvalidToken),
        }
    }

    /// Always succeeds (202) for any address; the work happens in the
    /// background so the answer's timing says nothing either.
    pub async fn resend_verification(self: &Arc<Self>, email: &str, client: &ClientInfo) -> Result<(), AppError> {
        let key = secrets::normalize_email(email).unwrap_or_else(|| email.trim().to_lowercase());
        self.rate_hit(&[(Bucket::ResendIp, self.ip_key(client)), (Bucket::ResendEmail, &key)], self.now()).await?;
        if self.model.settings.email_verification == EmailVerification::Off {
            return Ok(());
        }
        let app = self.clone();
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(e) = app.send_token_mail(&key, MailKind::Verify, &client).await {
                tracing::error!(error = %e, "verification mail not sent");
            }
        });
        Ok(())
    }

    /// Issues a token and mails it to the address stored on the account
    /// (never the one typed), if there is such an account.
    async fn send_token_mail(&self, email: &str, kind: MailKind, client: &ClientInfo) -> Result<(), AppError> {
        let Some(account) = self.auth.account_by_email(email).await? else { return Ok(()) };
        if kind == MailKind::Verify && account.verified {
            return Ok(());
        }
        let now = self.now();
        let token = secrets::new_token();
        let (tkind, ttl, page, expires_in, event) = match kind {
            MailKind::Verify => (TokenKind::Verify, VERIFY_TTL_MS, "verify", "24 hours", "verification_sent"),
            MailKind::Reset => (TokenKind::Reset, RESET_TTL_MS, "reset", "1 hour", "reset_requested"),
        };
        let name = self.auth.own_record(&account.user_id).await?.and_then(|r| r.get("name").and_then(|v| v.as_str()).map(str::to_string));
        let mail = self.mailer.render(kind, &self.mail_vars(&account.email, name, self.link(page, &token), expires_in), now)?;
        let new = NewToken { hash: secrets::token_hash(&token), kind: tkind, created_at: now, expires_at: now + ttl };
        let audit = self.audit_entry(event, Some(&account.user_id), Some(&account.email), client);
        self.auth.issue_token(&account.user_id, new, Some(mail), audit).await?;
        self.deliver();
        Ok(())
    }

    pub async fn login(
        &self,
        email: &str,
        password: String,
        presented: &Credentials,
        client: &ClientInfo,
    ) -> Result<LoginResult, AppError> {
        let key = secrets::normalize_email(email).unwrap_or_else(|| email.trim().to_lowercase());
        let now = self.now();
        let keys = [(Bucket::LoginIp, self.ip_key(client)), (Bucket::LoginAccount, key.as_str())];
        self.rate_check(&keys, now).await?;
        let account = self.auth.account_by_email(&key).await?;
        let stored = account.as_ref().and_then(|a| a.password_hash.clone());
        let verified = self.hasher.verify(password.clone(), stored.clone()).await?;
        let Some(account) = account.filter(|_| verified.ok) else {
            self.rate_record(&keys, now).await?;
            self.metrics.login_failed();
            let _ = self.auth.audit(self.audit_entry("login_failed", None, Some(&key), client)).await;
            return Err(AppError::Unauthorized);
        };
        self.rate_clear(Bucket::LoginAccount, &key).await?;
        if self.model.settings.email_verification == EmailVerification::Required && !account.verified {
            return Err(AppError::Forbidden {
                kind: Some("email-not-verified"),
                detail: "Confirm your email address first: follow the link in the mail we sent.".into(),
            });
        }
        let mut current_hash = stored;
        if verified.rehash {
            let fresh = self.hasher.hash(password).await?;
            if let Some(old) = current_hash.clone() {
                if self.auth.rehash(&account.user_id, old, fresh.clone(), now).await.is_ok() {
                    current_hash = Some(fresh);
                }
            }
        }
        let (signed, new) = self.new_session(client);
        let replaces = presented.bearer.as_ref().or(presented.cookie.as_ref()).map(|t| secrets::token_hash(t));
        let audit = self.audit_entry("login", Some(&account.user_id), Some(&key), client);
        // The session is made only if the password is still the one just
        // verified: a reset that landed meanwhile wins.
        if !self.auth.create_session(&account.user_id, current_hash, new, replaces, audit).await? {
            return Err(AppError::Unauthorized);
        }
        let user = self.auth.own_record(&account.user_id).await?.ok_or(AppError::Unauthorized)?;
        Ok(LoginResult { user, session: signed })
    }

    /// The live session behind these credentials: `None` without any;
    /// 401 when they name no live session (unknown, revoked, expired).
    pub async fn session(&self, credentials: &Credentials) -> Result<Option<Session>, AppError> {
        let (token, via_cookie) = match (&credentials.bearer, &credentials.cookie) {
            (Some(t), _) => (t, false),
            (None, Some(t)) => (t, true),
            (None, None) => return Ok(None),
        };
        let found = self.auth.session_by_token_hash(&secrets::token_hash(token)).await?;
        let Some(s) = found else { return Err(AppError::Unauthorized) };
        let now = self.now();
        let idle_ms = (self.model.settings.session_idle_timeout_secs as i64) * 1000;
        if now >= s.expires_at || now - s.last_seen_at >= idle_ms {
            return Err(AppError::Unauthorized);
        }
        if self.model.settings.email_verification == EmailVerification::Required && !s.verified {
            return Err(AppError::Forbidden { kind: Some("email-not-verified"), detail: "Confirm your email address first.".into() });
        }
        let Some(role) = self.model.role_by_name(&s.role) else { return Err(AppError::Unauthorized) };
        if now - s.last_seen_at >= TOUCH_EVERY_MS {
            self.auth.touch_session(&s.id, now).await?;
        }
        Ok(Some(Session { caller: Caller::user(s.user_id.clone(), role), id: s.id, user_id: s.user_id, via_cookie }))
    }

    pub async fn me(&self, session: &Session) -> Result<Record, AppError> {
        self.auth.own_record(&session.user_id).await?.ok_or(AppError::Unauthorized)
    }

    pub async fn logout(&self, session: &Session, client: &ClientInfo) -> Result<(), AppError> {
        let audit = self.audit_entry("logout", Some(&session.user_id), None, client);
        self.auth.delete_session(&session.user_id, &session.id, audit).await?;
        Ok(())
    }

    pub async fn logout_all(&self, session: &Session, client: &ClientInfo) -> Result<(), AppError> {
        let audit = self.audit_entry("logout_all", Some(&session.user_id), None, client);
        self.auth.delete_user_sessions(&session.user_id, None, audit).await?;
        Ok(())
    }

    pub async fn list_sessions(&self, session: &Session) -> Result<Vec<SessionView>, AppError> {
        let idle_ms = (self.model.settings.session_idle_timeout_secs as i64) * 1000;
        let now = self.now();
        Ok(self
            .auth
            .list_sessions(&session.user_id, now)
            .await?
            .into_iter()
            .filter(|s| now - s.last_seen_at < idle_ms)
            .map(|info| SessionView { current: info.id == session.id, info })
            .collect())
    }

    /// Ends one of the caller's own sessions; another user's id is 404.
    pub async fn revoke_session(&self, session: &Session, id: &str, client: &ClientInfo) -> Result<(), AppError> {
        let audit = AuditEntry {
            detail: Some(format!("session {id}")),
            ..self.audit_entry("session_revoked", Some(&session.user_id), None, client)
        };
        if self.auth.delete_session(&session.user_id, id, audit).await? {
            Ok(())
        } else {
            Err(AppError::NotFound)
        }
    }

    /// `DELETE /api/users/{id}/sessions`: allowed when the caller passes
    /// the spec's rule for updating that user (or its `update role` rule).
    pub async fn revoke_user_sessions(&self, caller: &Caller, user_id: &str, client: &ClientInfo) -> Result<(), AppError> {
        let Some(actor) = caller.user.as_deref() else { return Err(AppError::Unauthorized) };
        match self.auth.may_manage_user(caller, user_id).await? {
            None => Err(AppError::NotFound),
            Some(false) => Err(AppError::Forbidden { kind: None, detail: "You may not end this user's sessions.".into() }),
            Some(true) => {
                let audit =
                    AuditEntry { detail: Some(format!("by {actor}")), ..self.audit_entry("sessions_revoked", Some(user_id), None, client) };
                self.auth.delete_user_sessions(user_id, None, audit).await?;
                Ok(())
            }
        }
    }

    /// Ends every session of a user, now: for a role change, a deletion,
    /// or the CLI. Returns how many ended.
    pub async fn end_user_sessions(&self, user_id: &str, reason: &str) -> Result<u64, AppError> {
        let audit = AuditEntry {
            detail: Some(reason.to_string()),
            ..self.audit_entry("sessions_revoked", Some(user_id), None, &ClientInfo::default())
        };
        Ok(self.auth.delete_user_sessions(user_id, None, audit).await?)
    }

    /// Ends every session of every user (`charter sessions revoke --all`).
    pub async fn end_all_sessions(&self) -> Result<u64, AppError> {
        Ok(self.auth.delete_all_sessions(self.audit_entry("all_sessions_revoked", None, None, &ClientInfo::default())).await?)
    }

    /// Always 202 with one body; the mail goes to the stored address.
    pub async fn forgot_password(self: &Arc<Self>, email: &str, client: &ClientInfo) -> Result<(), AppError> {
        let key = secrets::normalize_email(email).unwrap_or_else(|| email.trim().to_lowercase());
        self.rate_hit(&[(Bucket::ForgotIp, self.ip_key(client)), (Bucket::ForgotEmail, &key)], self.now()).await?;
        let app = self.clone();
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(e) = app.send_token_mail(&key, MailKind::Reset, &client).await {
                tracing::error!(error = %e, "reset mail not sent");
            }
        });
        Ok(())
    }

    /// Whether a reset link still works (unused, unexpired, the newest),
    /// without spending it: the reset page says so before asking for a
    /// password.
    pub async fn reset_link_works(&self, token: &str) -> Result<bool, AppError> {
        Ok(self.auth.token_user(&secrets::token_hash(token), TokenKind::Reset, self.now()).await?.is_some())
    }

    /// The token is checked before the password, so a forged token learns
    /// nothing about the policy.
    pub async fn reset_password(&self, token: &str, password: String, client: &ClientInfo) -> Result<(), AppError> {
        let now = self.now();
        self.rate_hit(&[(Bucket::ResetIp, self.ip_key(client))], now).await?;
        let hash = secrets::token_hash(token);
        let Some(user_id) = self.auth.token_user(&hash, TokenKind::Reset, now).await? else { return Err(AppError::InvalidToken) };
        let account = self.auth.account_by_id(&user_id).await?.ok_or(AppError::InvalidToken)?;
        password::check_policy("password", &password, self.model.settings.password_min_length, &self.password_context(&account.email))?;
        let phc = self.hasher.hash(password).await?;
        let audit = self.audit_entry("password_reset", Some(&user_id), Some(&account.email), client);
        match self.auth.reset_password(hash, phc, self.now(), audit).await? {
            Spent::Invalid => Err(AppError::InvalidToken),
            Spent::Ok(_) => {
                self.rate_clear(Bucket::LoginAccount, &account.email).await?;
                Ok(())
            }
        }
    }

    pub async fn change_password(&self, session: &Session, current: String, new: String, client: &ClientInfo) -> Result<(), AppError> {
        let account = self.auth.account_by_id(&session.user_id).await?.ok_or(AppError::Unauthorized)?;
        let now = self.now();
        let keys = [(Bucket::LoginIp, self.ip_key(client)), (Bucket::LoginAccount, account.email.as_str())];
        self.rate_check(&keys, now).await?;
        let verified = self.hasher.verify(current, account.password_hash.clone()).await?;
        if !verified.ok {
            self.rate_record(&keys, now).await?;
            self.metrics.login_failed();
            let _ = self.auth.audit(self.audit_entry("password_change_failed", Some(&account.user_id), Some(&account.email), client)).await;
            return Err(field_error("current_password", "wrong", "This is not your current password."));
        }
        password::check_policy("new_password", &new, self.model.settings.password_min_length, &self.password_context(&account.email))?;
        let phc = self.hasher.hash(new).await?;
        let audit = self.audit_entry("password_changed", Some(&account.user_id), Some(&account.email), client);
        let expected = account.password_hash.unwrap_or_default();
        if self.auth.change_password(&account.user_id, expected, phc, Some(session.id.clone()), now, audit).await? {
            Ok(())
        } else {
            Err(AppError::Conflict("The password changed meanwhile; sign in again.".into()))
        }
    }

    /// `charter user create`: a verified user with `role` (the default
    /// role when `None`) and, optionally, a password.
    pub async fn create_user(
        &self,
        email: &str,
        role: Option<&str>,
        password: Option<String>,
        name: Option<&str>,
    ) -> Result<Record, AppError> {
        let email = secrets::normalize_email(email).ok_or_else(|| field_error("email", "invalid", "This is not an email address."))?;
        let role = match role {
            None => self.model.role(self.model.default_role).name.clone(),
            Some(r) => {
                if self.model.role_by_name(r).is_none() {
                    let known: Vec<&str> = self.model.roles.iter().map(|r| r.name.as_str()).collect();
                    return Err(field_error(
                        "role",
                        "unknown",
                        &format!("`{r}` is not a role of this app; the roles are {}.", known.join(", ")),
                    ));
                }
                r.to_string()
            }
        };
        let hash = match password {
            Some(p) => {
                password::check_policy("password", &p, self.model.settings.password_min_length, &self.password_context(&email))?;
                Some(self.hasher.hash(p).await?)
            }
            None => None,
        };
        let values = self.new_user_values(&email, name, &role, true)?;
        let new = NewUser {
            email: email.clone(),
            values,
            password_hash: hash,
            now: self.now(),
            token: None,
            session: None,
            mail: None,
            audit: self.audit_entry("user_created_by_cli", None, Some(&email), &ClientInfo::default()),
        };
        match self.auth.create_user(new).await? {
            CreatedUser::Created { record, .. } => Ok(record),
            CreatedUser::EmailTaken => Err(AppError::Conflict(format!("a user with the email {email} already exists"))),
        }
    }

    /// The id of the user with this address, for the CLI.
    pub async fn user_id_by_email(&self, email: &str) -> Result<Option<String>, AppError> {
        let Some(email) = secrets::normalize_email(email) else { return Ok(None) };
        Ok(self.auth.user_id_by_email(&email).await?)
    }

    /// The audit log, newest first: for callers with the role `admin`.
    pub async fn audit_log(&self, caller: &Caller, limit: u32, before: Option<i64>) -> Result<Vec<(i64, AuditEntry)>, AppError> {
        if caller.user.is_none() {
            return Err(AppError::Unauthorized);
        }
        let admin = caller.role.is_some_and(|r| self.model.role(r).name == "admin");
        if !admin {
            return Err(AppError::Forbidden { kind: None, detail: "Only admins may read the audit log.".into() });
        }
        Ok(self.auth.audit_log(limit.clamp(1, 500), before).await?)
    }

    /// The dev outbox, newest first.
    pub async fn outbox(&self, limit: u32) -> Result<Vec<OutboxMail>, AppError> {
        Ok(self.auth.outbox(limit).await?)
    }

    /// Deletes expired sessions and tokens, and old audit entries and outbox mail.
    pub async fn purge_expired(&self) -> Result<u64, AppError> {
        let now = self.now();
        let idle_ms = (self.model.settings.session_idle_timeout_secs as i64) * 1000;
        Ok(self.auth.purge(now, idle_ms, now - AUDIT_RETENTION_MS, now - self.limiter.window_ms()).await?)
    }

    /// Sends the queued mail, for as long as the app runs (with SMTP; the
    /// dev outbox needs no sender). Each mail is claimed for a lease, so
    /// several processes share the queue and a mail whose sender died is
    /// sent by another; a failed send is retried after 2 s, 10 s, 1 min,
    /// 5 min and 30 min, then given up (logged without its body).
    pub async fn send_queued_mail(&self) {
        if self.mailer.uses_outbox() {
            return;
        }
        loop {
            let now = self.now();
            match self.auth.claim_mail(now, crate::mail::LEASE_MS).await {
                Ok(Some(mail)) => {
                    let (id, attempts) = (mail.id, mail.attempts);
                    let outcome = match self.mailer.send(mail).await {
                        Ok(()) => self.auth.mail_sent(id).await,
                        Err(e) => {
                            let next = crate::mail::RETRIES.get(attempts as usize).map(|secs| self.now() + (*secs as i64) * 1000);
                            self.metrics.mail_failed();
                            tracing::warn!(target: "charter::mail", attempt = attempts + 1, error = %e, "SMTP send failed");
                            if next.is_none() {
                                tracing::error!(target: "charter::mail", "mail given up after every retry");
                            }
                            self.auth.mail_failed(id, next).await
                        }
                    };
                    if let Err(e) = outcome {
                        tracing::warn!(target: "charter::mail", error = %e, "the mail queue could not be updated");
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(target: "charter::mail", error = %e, "the mail queue cannot be read"),
            }
            self.mailer.wait(crate::mail::POLL).await;
        }
    }

    /// Computes the dummy password hash ahead of the first login.
    pub async fn hasher_warm_up(&self) {
        self.hasher.warm_up().await;
    }

    /// Prometheus text for `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let up = self.ready().await;
        let sessions = self.auth.count_live_sessions(self.now()).await.ok();
        let queued = self.auth.queued_mail().await.ok();
        self.metrics.render(sessions, queued, up, &[("writer", 1)])
    }
}
