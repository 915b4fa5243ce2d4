//! Rate limits: an exact sliding window per key (`login attempts: N per M
//! minutes`), on the app's clock, counted in the database so that every
//! process serving the app shares them (several app servers on one
//! PostgreSQL database cannot be used to multiply an attacker's tries).
//! Keys are stored as a hash of bucket and key: no address or IP in clear.
//!
//! A refused request is not recorded, so hammering a throttled account
//! does not extend its lock: the lock lifts by itself at most M minutes
//! after the Nth counted attempt (back-off, never a permanent lockout),
//! and the owner can still use `forgot`, whose limits are separate.

use crate::{App, AppError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use charter_store::auth::RateMode;
use sha2::{Digest, Sha256};

/// What is counted, and by which key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    LoginIp,
    LoginAccount,
    SignupIp,
    SignupEmail,
    ForgotIp,
    ForgotEmail,
    ResendIp,
    ResendEmail,
    ResetIp,
    VerifyIp,
}

impl Bucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::LoginIp => "login_ip",
            Bucket::LoginAccount => "login_account",
            Bucket::SignupIp => "signup_ip",
            Bucket::SignupEmail => "signup_email",
            Bucket::ForgotIp => "forgot_ip",
            Bucket::ForgotEmail => "forgot_email",
            Bucket::ResendIp => "resend_ip",
            Bucket::ResendEmail => "resend_email",
            Bucket::ResetIp => "reset_ip",
            Bucket::VerifyIp => "verify_ip",
        }
    }
}

/// The limit every bucket has: `login attempts` from the spec's settings.
pub struct Limiter {
    max: u32,
    window_ms: i64,
}

impl Limiter {
    pub fn new(max: u32, window_secs: u64) -> Limiter {
        Limiter { max: max.max(1), window_ms: (window_secs as i64).saturating_mul(1000) }
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }
}

/// The stored form of a key.
fn stored_key(bucket: Bucket, key: &str) -> String {
    format!("{}:{}", bucket.as_str(), URL_SAFE_NO_PAD.encode(Sha256::digest(key.as_bytes())))
}

impl App {
    async fn rate(&self, keys: &[(Bucket, &str)], now: i64, mode: RateMode) -> Result<(), AppError> {
        let stored: Vec<String> = keys.iter().map(|(b, k)| stored_key(*b, k)).collect();
        match self.auth.rate(&stored, now, self.limiter.window_ms, self.limiter.max, mode).await? {
            None => Ok(()),
            Some(refused) => {
                self.metrics.rate_limited(keys[refused.key].0.as_str());
                Err(AppError::TooManyRequests { retry_after_secs: ((refused.retry_after_ms + 999) / 1000) as u64 })
            }
        }
    }

    /// 429 if any key already has its limit of hits in the window.
    pub(crate) async fn rate_check(&self, keys: &[(Bucket, &str)], now: i64) -> Result<(), AppError> {
        self.rate(keys, now, RateMode::Check).await
    }

    /// Counts one hit on every key (a failed login, say).
    pub(crate) async fn rate_record(&self, keys: &[(Bucket, &str)], now: i64) -> Result<(), AppError> {
        self.rate(keys, now, RateMode::Record).await
    }

    /// 429, or counts the request on every key: for limits that count every
    /// request (signup, forgot, resend).
    pub(crate) async fn rate_hit(&self, keys: &[(Bucket, &str)], now: i64) -> Result<(), AppError> {
        self.rate(keys, now, RateMode::Hit).await
    }

    /// Forgets a key (a successful login or a reset clears its account's failures).
    pub(crate) async fn rate_clear(&self, bucket: Bucket, key: &str) -> Result<(), AppError> {
        Ok(self.auth.rate_clear(&stored_key(bucket, key)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_keys_name_the_bucket_but_not_the_address() {
        let k = stored_key(Bucket::LoginAccount, "ada@example.com");
        assert!(k.starts_with("login_account:") && !k.contains("ada"), "{k}");
        assert_ne!(k, stored_key(Bucket::ForgotEmail, "ada@example.com"), "buckets are separate");
    }
}
