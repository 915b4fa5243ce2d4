//! What `charter dev` serves while the spec cannot run (it does not
//! compile, or needs a migration that is not safe): a page showing why,
//! which reloads itself until the spec is fixed. API paths get a 503
//! problem. Dev only: the text is the spec's diagnostics, shown to the
//! developer at their own machine.

use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;

/// Serves the problem `text` until `shutdown` resolves.
pub async fn serve_problem(
    listener: tokio::net::TcpListener,
    title: &str,
    text: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let page = page(title, text);
    let detail = format!("{title}: see the terminal running `charter dev`.");
    let router = Router::new().fallback(move |uri: Uri| {
        let (page, detail) = (page.clone(), detail.clone());
        async move {
            let mut res = if uri.path().starts_with("/api/") || uri.path() == "/readyz" {
                crate::Problem::new(StatusCode::SERVICE_UNAVAILABLE, "spec-not-running", detail).into_response()
            } else {
                let mut res = (StatusCode::SERVICE_UNAVAILABLE, page).into_response();
                res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
                res
            };
            let h = res.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"),
            );
            res
        }
    });
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

fn page(title: &str, text: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"2\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} - charter dev</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;margin:2rem;color:#1a1a1a}}\
         pre{{background:#f4f4f4;padding:1rem;overflow:auto;font-size:14px}}</style></head>\
         <body><main><h1>{title}</h1><pre>{text}</pre>\
         <p>This page reloads by itself when the spec is saved again.</p></main></body></html>\n",
        title = escape(title),
        text = escape(text)
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_escapes_what_it_shows() {
        let page = super::page("The spec <b>", "app.md:3:1: error: `<script>` & co");
        assert!(page.contains("`&lt;script&gt;` &amp; co") && page.contains("The spec &lt;b&gt;"));
        assert!(!page.contains("<script>"));
    }
}
