//! The middleware every request passes through, outermost first: request
//! id, content-type check, security headers, problem bodies with the request
//! id, one log line; then panic catching, a timeout, the body limit and
//! compression.

use crate::problem::{Problem, ProblemMarker};
use crate::{SharedApp, BODY_LIMIT, REQUEST_TIMEOUT};
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of the current request, in request and response extensions.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Set by handlers that know the signed-in user, for the log line.
#[derive(Clone, Debug)]
pub struct LogUser(pub String);

/// Filled by the auth extractors with the session's user id, so the log
/// line names the user of every signed-in request.
#[derive(Clone, Debug, Default)]
pub struct UserSlot(std::sync::Arc<std::sync::OnceLock<String>>);

impl UserSlot {
    pub fn set(&self, user_id: &str) {
        let _ = self.0.set(user_id.to_string());
    }
}

/// Wraps the router in the middleware, innermost first.
pub fn wrap(router: Router, app: SharedApp) -> Router {
    router
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(CatchPanicLayer::custom(on_panic))
        .layer(axum::middleware::from_fn_with_state(app, around))
        // Outermost: `around` rewrites problem bodies (adding the request
        // id) and must see them uncompressed, or a gzip-accepting client
        // gets plain JSON labelled gzip.
        .layer(CompressionLayer::new())
}

fn on_panic(_: Box<dyn std::any::Any + Send>) -> Response {
    // The panic message may hold internals: it went to stderr through the
    // panic hook; the body says only that something failed.
    tracing::error!("a handler panicked");
    Problem::internal().into_response()
}

fn valid_request_id(v: &str) -> bool {
    (1..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn new_request_id() -> String {
    crate::random_hex(12)
}

fn has_body(req: &Request) -> bool {
    let len = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    len.is_some_and(|n| n > 0) || req.headers().contains_key(header::TRANSFER_ENCODING)
}

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

async fn around(State(app): State<SharedApp>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| valid_request_id(v))
        .map_or_else(new_request_id, str::to_string);
    req.extensions_mut().insert(RequestId(id.clone()));
    let slot = UserSlot::default();
    req.extensions_mut().insert(slot.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let is_api = path.starts_with("/api/");

    let mut res = if method == Method::TRACE {
        Problem::method_not_allowed().into_response()
    } else if is_api && matches!(method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) && has_body(&req) && !is_json(&req) {
        Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Send the body as application/json.").into_response()
    } else {
        next.run(req).await
    };

    // Errors produced by layers below (body limit, timeout) become problems;
    // UI pages (HTML, their own headers) are left as they are.
    let ui_page = res.extensions().get::<crate::ui::UiPage>().is_some();
    if !ui_page && res.extensions().get::<ProblemMarker>().is_none() && (res.status().is_client_error() || res.status().is_server_error()) {
        res = match res.status() {
            StatusCode::PAYLOAD_TOO_LARGE => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "The body is larger than 1 MiB.").into_response()
            }
            StatusCode::REQUEST_TIMEOUT => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", "The request took too long.").into_response()
            }
            StatusCode::METHOD_NOT_ALLOWED => Problem::method_not_allowed().into_response(),
            StatusCode::NOT_FOUND => Problem::not_found().into_response(),
            s if s.is_server_error() => Problem::internal().into_response(),
            _ => res,
        };
    }
    if res.extensions().get::<ProblemMarker>().is_some() {
        res = with_request_id(res, &id).await;
    }
    let error = res.status().is_client_error() || res.status().is_server_error();
    let headers = res.headers_mut();
    headers.insert(X_REQUEST_ID.clone(), HeaderValue::from_str(&id).expect("validated id"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Users reach the app over HTTPS (its public URL says so; prod refuses to
    // start without TLS in front): browsers must never fall back to HTTP.
    if app.config.secure_cookies {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    if is_api || (error && !ui_page) || path == "/healthz" || path == "/readyz" {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::VARY, HeaderValue::from_static("Cookie, Authorization"));
    }
    let user = res.extensions().get::<LogUser>().map(|u| u.0.clone()).or_else(|| slot.0.get().cloned());
    let status = res.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    app.metrics.observe_request(method.as_str(), route.as_deref().unwrap_or("<unmatched>"), status, latency_ms / 1000.0);
    let route = route.unwrap_or_else(|| if status == 404 { "<unmatched>".into() } else { path.clone() });
    // Sign-ins, refusals and throttling are what an investigation looks for.
    let security = matches!(status, 401 | 403 | 429) || route.starts_with("/api/auth/");
    tracing::info!(
        target: "charter::http",
        request_id = %id,
        method = %method,
        route = %route,
        status,
        latency_ms = format!("{latency_ms:.2}"),
        user = user.as_deref().unwrap_or("-"),
        security,
        "request"
    );
    res
}

/// Adds `request_id` to a problem body (small, so buffering is fine).
async fn with_request_id(res: Response, id: &str) -> Response {
    let (mut parts, body) = res.into_parts();
    let bytes = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(obj) = value.as_object_mut() {
        obj.insert("request_id".into(), serde_json::Value::String(id.to_string()));
    }
    let body = serde_json::to_vec(&value).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
