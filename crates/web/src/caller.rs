//! The `Auth` extractor: the caller of this request, from the bearer token
//! or the session cookie. Cookie and bearer share one session lookup.

use crate::problem::Problem;
use crate::SharedApp;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use charter_app::Credentials;
use charter_store::Caller;

/// Cookie names: `__Host-session` outside dev (Secure), `session` in dev.
pub const COOKIE_SECURE: &str = "__Host-session";
pub const COOKIE_DEV: &str = "session";

pub struct Auth(pub Caller);

pub fn credentials(parts: &Parts) -> Credentials {
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let cookie = parts.headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (name, value) = c.trim().split_once('=')?;
        (name == COOKIE_SECURE || name == COOKIE_DEV).then(|| value.to_string())
    });
    Credentials { bearer, cookie }
}

impl FromRequestParts<SharedApp> for Auth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, Self::Rejection> {
        let caller = app.authenticate(&credentials(parts)).await.map_err(Problem::from)?;
        Ok(Auth(caller))
    }
}
