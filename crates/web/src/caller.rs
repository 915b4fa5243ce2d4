//! The `Auth` extractor: the caller of this request, from the bearer token
//! or the session cookie. Cookie and bearer share one session lookup.
//!
//! Cookie-authenticated unsafe requests must also pass CSRF protection:
//! an `X-CSRF-Token` header equal to the session's HMAC token, and no
//! `Sec-Fetch-Site: cross-site`. A bearer token cannot be sent by another
//! site, so bearer requests need neither.

use crate::middleware::UserSlot;
use crate::problem::Problem;
use crate::SharedApp;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{header, request::Parts, Method, StatusCode};
use charter_app::auth::{ClientInfo, Session};
use charter_app::Credentials;
use charter_store::Caller;
use std::net::{IpAddr, SocketAddr};

/// Cookie names: `__Host-session` outside dev (Secure), `session` in dev.
pub const COOKIE_SECURE: &str = "__Host-session";
pub const COOKIE_DEV: &str = "session";

pub struct Auth(pub Caller);

/// A signed-in request's session (401 without one), CSRF-checked.
pub struct SignedIn(pub Session);

fn bearer(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The first non-empty cookie with one of `names`.
pub(crate) fn cookie(headers: &axum::http::HeaderMap, names: &[&str]) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (name, value) = c.trim().split_once('=')?;
        (names.contains(&name) && !value.is_empty()).then(|| value.to_string())
    })
}

/// The credentials of a request, reading either cookie name.
pub fn credentials(parts: &Parts) -> Credentials {
    Credentials { bearer: bearer(parts), cookie: cookie(&parts.headers, &[COOKIE_SECURE, COOKIE_DEV]) }
}

/// The credentials of a request, reading only the cookie this profile
/// sets: in prod a plain `session` cookie (which a sibling subdomain could
/// plant) is ignored.
pub fn credentials_named(parts: &Parts, cookie_name: &str) -> Credentials {
    Credentials { bearer: bearer(parts), cookie: cookie(&parts.headers, &[cookie_name]) }
}

/// The client's address: the peer, or, when the peer is a trusted proxy,
/// the right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: &[&str], trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let hops: Vec<IpAddr> = forwarded_for.iter().flat_map(|v| v.split(',')).filter_map(|h| h.trim().parse().ok()).collect();
    Some(hops.iter().rev().find(|ip| !is_trusted(ip)).or(hops.first()).copied().unwrap_or(peer))
}

pub fn client_info(parts: &Parts, app: &SharedApp) -> ClientInfo {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let xff: Vec<&str> = parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    let ip = client_ip(peer, &xff, &app.config.trusted_proxies).map(|ip| ip.to_string());
    let user_agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string);
    ClientInfo { ip, user_agent }
}

fn csrf(parts: &Parts, app: &SharedApp, session: &Session) -> Result<(), Problem> {
    if !session.via_cookie || matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let refuse = |detail: &str| {
        tracing::warn!(target: "charter::security", event = "csrf_refused", "CSRF check failed");
        Problem::new(StatusCode::FORBIDDEN, "csrf", detail)
    };
    if parts.headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("cross-site")) {
        return Err(refuse("Cross-site requests cannot use the session cookie."));
    }
    let presented = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    if presented.is_empty() || !app.csrf_ok(&session.id, presented) {
        return Err(refuse("Send the X-CSRF-Token header with the csrf_token from login or /api/auth/me."));
    }
    Ok(())
}

async fn session_of(parts: &mut Parts, app: &SharedApp) -> Result<Option<Session>, Problem> {
    let creds = credentials_named(parts, crate::auth::cookie_name(app));
    let session = app.session(&creds).await.map_err(Problem::from)?;
    if let Some(s) = &session {
        csrf(parts, app, s)?;
        if let Some(slot) = parts.extensions.get::<UserSlot>() {
            slot.set(&s.user_id);
        }
    }
    Ok(session)
}

impl FromRequestParts<SharedApp> for Auth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, Self::Rejection> {
        Ok(Auth(session_of(parts, app).await?.map_or_else(Caller::anonymous, |s| s.caller)))
    }
}

impl FromRequestParts<SharedApp> for SignedIn {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, Self::Rejection> {
        match session_of(parts, app).await? {
            Some(s) => Ok(SignedIn(s)),
            None => Err(Problem::from(charter_app::AppError::Unauthorized)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["127.0.0.1/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(ip("203.0.113.9"), &["1.2.3.4"], &trusted), ip("203.0.113.9"));
        assert_eq!(client_ip(ip("127.0.0.1"), &["1.2.3.4"], &trusted), ip("1.2.3.4"));
        // A client-supplied left-most entry is not believed over the proxy's own.
        assert_eq!(client_ip(ip("127.0.0.1"), &["6.6.6.6, 1.2.3.4, 10.1.2.3"], &trusted), ip("1.2.3.4"));
        assert_eq!(client_ip(ip("127.0.0.1"), &[], &trusted), ip("127.0.0.1"));
    }
}
