//! Static files of the UI, compiled into the binary: htmx (vendored from
//! npm `htmx.org`, see `assets/htmx-LICENSE.txt`), the stylesheet and a
//! small script. Addresses carry a content hash, so they are cached for a
//! year and change when the file does.

use crate::SharedApp;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value as J};
use std::sync::OnceLock;

const HTMX: &str = include_str!("../../assets/htmx-2.0.11.min.js");
const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/app.js");

struct Asset {
    name: &'static str,
    body: &'static str,
    mime: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset { name: "htmx", body: HTMX, mime: "text/javascript; charset=utf-8" },
    Asset { name: "css", body: CSS, mime: "text/css; charset=utf-8" },
    Asset { name: "js", body: JS, mime: "text/javascript; charset=utf-8" },
];

/// FNV-1a, enough to tell versions of a file apart.
fn hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

fn file_name(a: &Asset) -> String {
    let ext = if a.mime.starts_with("text/css") { "css" } else { "js" };
    format!("{}.{}.{ext}", a.name, hash(a.body))
}

/// The address of every asset, for templates: `assets.css` and so on.
pub fn urls() -> J {
    static URLS: OnceLock<J> = OnceLock::new();
    URLS.get_or_init(|| {
        let mut m = serde_json::Map::new();
        for a in ASSETS {
            m.insert(a.name.to_string(), J::String(format!("/_/{}", file_name(a))));
        }
        json!(m)
    })
    .clone()
}

pub fn routes() -> Router<SharedApp> {
    Router::new().route("/_/{file}", get(serve))
}

async fn serve(Path(file): Path<String>) -> Response {
    let Some(a) = ASSETS.iter().find(|a| file_name(a) == file) else {
        let mut res = (StatusCode::NOT_FOUND, "Not found").into_response();
        res.extensions_mut().insert(super::UiPage);
        return res;
    };
    let mut res = a.body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'"));
    res.extensions_mut().insert(super::UiPage);
    res
}
