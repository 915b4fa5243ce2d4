//! Password hashing and policy. argon2id with OWASP's parameters, on the
//! blocking pool behind a semaphore sized to the cores: a flood of logins
//! queues (briefly) instead of starving every other request of CPU, and
//! past a bound the excess is 503 rather than an ever-growing queue.

use crate::{AppError, FieldError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// OWASP Password Storage Cheat Sheet: argon2id, 19 MiB, 2 passes, 1 lane.
const M_COST_KIB: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// The shortest password any app accepts, whatever its setting.
pub const MIN_FLOOR: u32 = 8;
/// Longer passwords are refused before hashing (the body is capped at 4 KiB anyway).
pub const MAX_CHARS: usize = 1000;

/// How long a request waits for a hashing slot before it is 503.
const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// Waiting requests per core beyond which new ones are 503 at once.
const QUEUE_PER_CORE: usize = 64;

static COMMON: &str = include_str!("common-passwords.txt");

fn common() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| COMMON.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect())
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(M_COST_KIB, T_COST, P_COST, None).expect("valid argon2 parameters"))
}

fn new_salt() -> SaltString {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    SaltString::encode_b64(&bytes).expect("16 bytes make a valid salt")
}

fn hash_now(password: &[u8]) -> Result<String, AppError> {
    let salt = new_salt();
    argon2().hash_password(password, &salt).map(|h| h.to_string()).map_err(|e| AppError::Internal(format!("argon2: {e}")))
}

/// A hash of nothing anyone knows, with the current parameters: unknown
/// emails are verified against it so they cost what a real account costs.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut pw = [0u8; 32];
        getrandom::fill(&mut pw).expect("the OS random source works");
        hash_now(&pw).expect("argon2 hashes")
    })
}

/// Whether `phc` was made with other parameters than today's.
fn outdated(phc: &PasswordHash) -> bool {
    let p = &phc.params;
    phc.algorithm.as_str() != "argon2id"
        || p.get_decimal("m") != Some(M_COST_KIB)
        || p.get_decimal("t") != Some(T_COST)
        || p.get_decimal("p") != Some(P_COST)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    /// The password was right but the stored hash uses old parameters.
    pub rehash: bool,
}

pub struct Hasher {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new()
    }
}

impl Hasher {
    pub fn new() -> Hasher {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hasher::with_limits(cores, cores * QUEUE_PER_CORE)
    }

    fn with_limits(slots: usize, max_waiting: usize) -> Hasher {
        Hasher { slots: Arc::new(Semaphore::new(slots)), waiting: AtomicUsize::new(0), max_waiting }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, AppError> {
        let busy = || AppError::Unavailable("password hashing is saturated".into());
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(busy());
        }
        let permit = tokio::time::timeout(QUEUE_WAIT, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let permit = permit.map_err(|_| busy())?.map_err(|_| busy())?;
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        })
        .await
        .map_err(|e| AppError::Internal(format!("hashing task: {e}")))
    }

    pub async fn hash(&self, password: String) -> Result<String, AppError> {
        self.run(move || hash_now(password.as_bytes())).await?
    }

    /// Checks `password` against `phc`, or against the dummy hash when
    /// there is no account, so both paths take the same time.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<Verified, AppError> {
        self.run(move || {
            let real = phc.is_some();
            let stored = phc.unwrap_or_else(|| dummy_hash().to_string());
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Verified { ok: false, rehash: false };
            };
            // The hash carries its own parameters: old hashes still verify.
            let ok = argon2().verify_password(password.as_bytes(), &parsed).is_ok() && real;
            Verified { ok, rehash: ok && outdated(&parsed) }
        })
        .await
    }

    /// Computes the dummy hash now, so the first unknown-email login is
    /// not slower than the rest.
    pub async fn warm_up(&self) {
        let _ = self.run(|| dummy_hash().len()).await;
    }
}

/// The policy: length (never below 8), at most `MAX_CHARS`, not on the
/// common list, not built from the app's own words. No composition rules.
pub fn check_policy(field: &str, password: &str, min_len: u32, context: &[&str]) -> Result<(), AppError> {
    let min = min_len.max(MIN_FLOOR) as usize;
    let n = password.chars().count();
    let err = |code: &str, message: String| Err(AppError::Validation(vec![FieldError::new(field, code, message)]));
    if n < min {
        return err("too_short", format!("Use at least {min} characters."));
    }
    if n > MAX_CHARS {
        return err("too_long", format!("Use at most {MAX_CHARS} characters."));
    }
    let lower = password.to_lowercase();
    if common().contains(lower.as_str()) {
        return err("too_common", "This password is too common; choose a less guessable one (a few random words work well).".into());
    }
    for word in context.iter().map(|w| w.to_lowercase()).filter(|w| w.chars().count() >= 3) {
        if lower.contains(&word) && lower.replace(&word, "").chars().all(|c| !c.is_alphabetic()) {
            return err("too_common", "This password is built from the app's name, your address or a role; choose another.".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_list_is_big_enough_and_long_enough() {
        assert!(common().len() >= 3000);
        assert!(common().iter().all(|p| p.chars().count() >= 8));
        assert!(common().contains("password1"));
    }

    #[test]
    fn policy() {
        assert!(check_policy("password", "short", 10, &[]).is_err());
        assert!(check_policy("password", "1234567", 4, &[]).is_err(), "never below 8");
        assert!(check_policy("password", "PassWord1", 8, &[]).is_err(), "case-insensitive list");
        assert!(check_policy("password", "taskboard2024!", 8, &["Taskboard"]).is_err());
        assert!(check_policy("password", "correct-horse-battery-9", 10, &["taskboard", "alice"]).is_ok());
        assert!(check_policy("password", &"é".repeat(64), 10, &[]).is_ok(), "any characters, 64 of them");
        assert!(check_policy("password", &"x".repeat(MAX_CHARS + 1), 10, &[]).is_err());
    }

    #[tokio::test]
    async fn past_the_queue_bound_hashing_is_unavailable() {
        let h = Arc::new(Hasher::with_limits(1, 1));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let running = {
            let h = h.clone();
            tokio::spawn(async move { h.run(move || hold.recv().is_ok()).await })
        };
        // Wait until the only slot is taken, then fill the one queue place.
        while h.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let queued = {
            let h = h.clone();
            tokio::spawn(async move { h.run(|| true).await })
        };
        while h.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(h.run(|| true).await, Err(AppError::Unavailable(_))), "the excess is 503");
        release.send(()).unwrap();
        assert!(running.await.unwrap().unwrap());
        assert!(queued.await.unwrap().unwrap(), "the queued one still runs");
    }

    #[test]
    fn old_parameters_still_verify_and_ask_for_a_rehash() {
        let old = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8, 1, 1, None).unwrap());
        let salt = new_salt();
        let phc = old.hash_password(b"hunter2hunter2", &salt).unwrap().to_string();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let h = Hasher::new();
        let v = rt.block_on(h.verify("hunter2hunter2".into(), Some(phc.clone()))).unwrap();
        assert_eq!(v, Verified { ok: true, rehash: true });
        let v = rt.block_on(h.verify("wrong".into(), Some(phc))).unwrap();
        assert!(!v.ok);
        let fresh = rt.block_on(h.hash("hunter2hunter2".into())).unwrap();
        assert!(fresh.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(rt.block_on(h.verify("hunter2hunter2".into(), Some(fresh))).unwrap(), Verified { ok: true, rehash: false });
        assert!(!rt.block_on(h.verify("anything".into(), None)).unwrap().ok, "no account never verifies");
    }
}
