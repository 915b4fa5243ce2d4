//! The HTTP layer: routes, middleware, and the one mapping from `AppError`
//! to RFC 9457 problem+json. No business rules live here: handlers parse,
//! call a use case in `charter-app`, and render.

pub mod api;
mod auth;
mod caller;
pub mod dev;
mod json;
mod middleware;
mod ops;
mod problem;
pub mod tls;
pub mod ui;

pub use caller::{client_info, credentials, Auth, SignedIn};
pub use json::JsonBody;
pub use middleware::{LogUser, RequestId};
pub use problem::Problem;

use axum::Router;
use charter_app::App;
use std::sync::Arc;
use std::time::Duration;

/// Requests taking longer than this are cut off with a 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bodies over 1 MiB are 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

pub type SharedApp = Arc<App>;

/// `bytes` from the OS random source, as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("OS random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Every route of the app, with its middleware.
pub fn router(app: SharedApp) -> Router {
    let api = Router::new()
        .merge(auth::routes())
        .merge(api::records::routes(&app))
        .merge(api::openapi::routes(&app))
        .fallback(|| async { Problem::not_found() });
    let ui = ui::Ui::new(&app.config.ui_templates).unwrap_or_else(|e| {
        // `charter serve` checks the overrides before it gets here.
        tracing::error!(error = %e, "a UI template override is broken; using the default templates");
        ui::Ui::new(&[]).expect("the default templates compile")
    });
    let router = Router::new()
        .merge(ops::routes())
        .nest("/api", api)
        .merge(ui::routes(&app))
        .fallback(ui::not_found)
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed() })
        .layer(axum::Extension(Arc::new(ui)))
        .with_state(app.clone());
    middleware::wrap(router, app)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    app: SharedApp,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_wrapped(app, listener, shutdown, |r| r).await
}

/// Like `serve`, with `outer` around the whole router: the test kit uses it
/// to inspect every response of every test.
pub async fn serve_wrapped(
    app: SharedApp,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    outer: impl FnOnce(Router) -> Router,
) -> std::io::Result<()> {
    let router = outer(router(app.clone()));
    let tasks = background(app);
    let served =
        axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).with_graceful_shutdown(shutdown).await;
    // The app ends with its server (`charter dev` starts a new one on reload).
    for task in tasks {
        task.abort();
    }
    served
}

/// Work that runs beside the server: warming the dummy password hash (so
/// the first unknown-email login costs what the rest do), sending queued
/// mail, and purging expired sessions and tokens every hour.
pub(crate) fn background(app: SharedApp) -> [tokio::task::JoinHandle<()>; 3] {
    let warm = app.clone();
    let warming = tokio::spawn(async move { warm.hasher_warm_up().await });
    let mailer = app.clone();
    let mailing = tokio::spawn(async move { mailer.send_queued_mail().await });
    let purging = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            if let Err(e) = app.purge_expired().await {
                tracing::warn!(error = %e, "purging expired sessions failed");
            }
        }
    });
    [warming, mailing, purging]
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
