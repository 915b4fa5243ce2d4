//! Random tokens, their hashes, CSRF tokens and email addresses.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

/// A new secret token: 256 bits from the OS CSPRNG, URL-safe base64.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random source works");
    URL_SAFE_NO_PAD.encode(b)
}

/// A new public id (sessions): 128 random bits as hex.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source works");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What the store keeps instead of a token. Tokens carry 256 random bits,
/// so a fast unsalted hash is enough: there is nothing to brute-force.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn csrf_mac(secret: &[u8], session_id: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"charter-csrf\0");
    mac.update(session_id.as_bytes());
    mac
}

/// The CSRF token of a session: an HMAC of its id, so the server keeps no
/// extra state and the token dies with the session.
pub fn csrf_token(secret: &[u8], session_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(csrf_mac(secret, session_id).finalize().into_bytes())
}

/// Constant-time check of a presented CSRF token.
pub fn csrf_ok(secret: &[u8], session_id: &str, presented: &str) -> bool {
    match URL_SAFE_NO_PAD.decode(presented.trim()) {
        Ok(bytes) => csrf_mac(secret, session_id).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// The one form of an address used for lookup and uniqueness: NFC, then
/// lowercase, without surrounding spaces. `None` when it is not an address
/// (or holds a control character such as CR/LF, which would reach mail headers).
pub fn normalize_email(raw: &str) -> Option<String> {
    let s: String = raw.trim().nfc().collect::<String>().to_lowercase();
    if s.is_empty() || s.chars().count() > 254 || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let (local, domain) = s.rsplit_once('@')?;
    let ok = !local.is_empty()
        && local.chars().count() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..");
    ok.then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalise_one_way() {
        assert_eq!(normalize_email(" Alice@Example.COM ").as_deref(), Some("alice@example.com"));
        // "é" composed and decomposed are the same address.
        assert_eq!(normalize_email("jos\u{e9}@example.com"), normalize_email("jose\u{301}@example.com"));
        assert_eq!(normalize_email("a@b.co\r\nBcc: x@y.z"), None);
        assert_eq!(normalize_email("nope"), None);
        assert_eq!(normalize_email("a@localhost"), None);
    }

    #[test]
    fn tokens_and_csrf() {
        let t = new_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, new_token());
        assert_eq!(token_hash(&t).len(), 32);
        let c = csrf_token(b"k", "s1");
        assert!(csrf_ok(b"k", "s1", &c));
        assert!(!csrf_ok(b"k", "s2", &c));
        assert!(!csrf_ok(b"other", "s1", &c));
        assert!(!csrf_ok(b"k", "s1", "garbage!"));
    }
}
