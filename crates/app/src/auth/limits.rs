//! Rate limits: an exact sliding window per key (`login attempts: N per M
//! minutes`), in memory, on the app's clock.
//!
//! A refused request is not recorded, so hammering a throttled account
//! does not extend its lock: the lock lifts by itself at most M minutes
//! after the Nth counted attempt (back-off, never a permanent lockout),
//! and the owner can still use `forgot`, whose limits are separate.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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

/// Hits between sweeps of keys whose window has passed.
const SWEEP_EVERY: u64 = 4096;

pub struct Limiter {
    max: usize,
    window_ms: i64,
    hits: Mutex<HashMap<(Bucket, String), VecDeque<i64>>>,
    recorded: AtomicU64,
}

/// Refused: retry after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub bucket: Bucket,
    pub retry_after_secs: u64,
}

impl Limiter {
    pub fn new(max: u32, window_secs: u64) -> Limiter {
        Limiter {
            max: max.max(1) as usize,
            window_ms: (window_secs as i64).saturating_mul(1000),
            hits: Mutex::new(HashMap::new()),
            recorded: AtomicU64::new(0),
        }
    }

    /// Refuses if any key already has `max` hits in the window.
    pub fn check(&self, keys: &[(Bucket, &str)], now: i64) -> Result<(), Limited> {
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        self.check_locked(&mut hits, keys, now)
    }

    fn check_locked(&self, hits: &mut HashMap<(Bucket, String), VecDeque<i64>>, keys: &[(Bucket, &str)], now: i64) -> Result<(), Limited> {
        let mut worst: Option<Limited> = None;
        for (bucket, key) in keys {
            let Some(q) = hits.get_mut(&(*bucket, (*key).to_string())) else { continue };
            while q.front().is_some_and(|t| *t <= now - self.window_ms) {
                q.pop_front();
            }
            if q.len() >= self.max {
                let oldest = *q.front().expect("non-empty");
                let wait_ms = (oldest + self.window_ms - now).max(1);
                let secs = ((wait_ms + 999) / 1000) as u64;
                if worst.is_none_or(|w| secs > w.retry_after_secs) {
                    worst = Some(Limited { bucket: *bucket, retry_after_secs: secs });
                }
            }
        }
        worst.map_or(Ok(()), Err)
    }

    /// Counts one hit on every key.
    pub fn record(&self, keys: &[(Bucket, &str)], now: i64) {
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        self.record_locked(&mut hits, keys, now);
    }

    fn record_locked(&self, hits: &mut HashMap<(Bucket, String), VecDeque<i64>>, keys: &[(Bucket, &str)], now: i64) {
        for (bucket, key) in keys {
            let q = hits.entry((*bucket, (*key).to_string())).or_default();
            q.push_back(now);
            while q.len() > self.max {
                q.pop_front();
            }
        }
        if self.recorded.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            let horizon = now - self.window_ms;
            hits.retain(|_, q| q.back().is_some_and(|t| *t > horizon));
        }
    }

    /// Refuses, or counts the request on every key: for limits that count
    /// every request (signup, forgot, resend).
    pub fn hit(&self, keys: &[(Bucket, &str)], now: i64) -> Result<(), Limited> {
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        self.check_locked(&mut hits, keys, now)?;
        self.record_locked(&mut hits, keys, now);
        Ok(())
    }

    /// Forgets a key (a successful login or a reset clears its account's failures).
    pub fn clear(&self, bucket: Bucket, key: &str) {
        self.hits.lock().unwrap_or_else(|e| e.into_inner()).remove(&(bucket, key.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_request_past_the_limit_is_refused_until_the_window_passes() {
        let l = Limiter::new(3, 60);
        let k = [(Bucket::SignupIp, "1.2.3.4")];
        for i in 0..3 {
            assert!(l.hit(&k, 1000 + i).is_ok());
        }
        let refused = l.hit(&k, 2000).unwrap_err();
        assert_eq!(refused.retry_after_secs, 59);
        // Refusals are not counted: the lock does not grow.
        assert!(l.hit(&k, 61_000).is_ok());
        assert!(l.hit(&[(Bucket::SignupIp, "5.6.7.8")], 2000).is_ok(), "other keys are independent");
    }

    #[test]
    fn memory_is_bounded_per_key() {
        let l = Limiter::new(2, 60);
        for i in 0..100 {
            l.record(&[(Bucket::LoginIp, "x")], i);
        }
        assert_eq!(l.hits.lock().unwrap()[&(Bucket::LoginIp, "x".to_string())].len(), 2);
    }
}
