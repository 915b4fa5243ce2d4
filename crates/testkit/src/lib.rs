//! `spawn_app(spec)`: a fresh charter app on a random port, with its own
//! SQLite database in a temporary folder and a clock the test controls.
//! Every test builds what it needs; nothing is shared between tests.

use charter_app::{App, AppConfig, TestClock};
use charter_store::{sqlite::SqliteDb, Database, MigrateOptions};
use std::sync::Arc;

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub app: Arc<App>,
    pub clock: Arc<TestClock>,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// Compiles `spec` (panicking on errors), migrates a new database and
/// serves the app until the `TestApp` is dropped.
pub async fn spawn_app(spec: &str) -> TestApp {
    spawn_app_with(spec, |_| {}).await
}

/// Like `spawn_app`, letting the test adjust the configuration.
pub async fn spawn_app_with(spec: &str, configure: impl FnOnce(&mut AppConfig)) -> TestApp {
    let compiled = charter_model::compile(spec);
    let model = Arc::new(compiled.model.unwrap_or_else(|| panic!("the test spec does not compile: {:?}", compiled.diagnostics)));
    let dir = tempfile::tempdir().expect("temp dir");
    let db = SqliteDb::open(&dir.path().join("app.db"), false).expect("open database");
    let report = db.migrate(&model, MigrateOptions::default()).expect("migrate");
    assert!(report.applied, "the schema is created");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mut config = AppConfig::dev(url.clone());
    configure(&mut config);
    let clock = Arc::new(TestClock::new());
    let app = Arc::new(App::new(model, config, Database::Sqlite(db), clock.clone()).expect("app"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = app.clone();
    tokio::spawn(async move {
        let _ = charter_web::serve(served, listener, async {
            let _ = rx.await;
        })
        .await;
    });
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    TestApp { url, app, clock, client, _dir: dir, _shutdown: tx }
}

impl TestApp {
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}
