//! `spawn_app(spec)`: a fresh charter app on a random port, with its own
//! SQLite database in a temporary folder and a clock the test controls.
//! Every test builds what it needs; nothing is shared between tests.

use charter_app::{App, AppConfig, TestClock};
use charter_store::{sqlite::SqliteDb, Database, MigrateOptions};
use std::sync::{Arc, Mutex};

/// Text that means a database or driver message reached a response body.
/// Every response of every test is checked; a `TestApp` that served one
/// fails its test when dropped.
pub const LEAKS: &[&str] = &[
    "rusqlite",
    "SqliteFailure",
    "SQLITE_",
    "constraint failed",
    "no such table",
    "no such column",
    "syntax error",
    "_charter_",
    "tokio_postgres",
    "db error:",
    "panicked at",
];

/// Whether `text` holds SQL or driver text (see `LEAKS`).
pub fn leaked(text: &str) -> Option<&'static str> {
    LEAKS
        .iter()
        .copied()
        .find(|l| text.contains(l))
        .or_else(|| (text.contains("SELECT ") && text.contains(" FROM ")).then_some("SELECT ... FROM"))
}

type Leaks = Arc<Mutex<Vec<String>>>;

fn leak_guard(leaks: Leaks) -> impl FnOnce(axum::Router) -> axum::Router {
    move |router| {
        router.layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            let leaks = leaks.clone();
            async move {
                let (parts, body) = next.run(req).await.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
                if let Some(what) = leaked(&String::from_utf8_lossy(&bytes)) {
                    leaks.lock().unwrap_or_else(|e| e.into_inner()).push(format!("`{what}` in: {}", String::from_utf8_lossy(&bytes)));
                }
                axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
            }
        }))
    }
}

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub app: Arc<App>,
    pub clock: Arc<TestClock>,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    leaks: Leaks,
    /// The app's database URL when it runs on PostgreSQL.
    postgres_url: Option<String>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let leaks = self.leaks.lock().unwrap_or_else(|e| e.into_inner());
        if !std::thread::panicking() && !leaks.is_empty() {
            panic!("responses held SQL or driver text: {leaks:#?}");
        }
    }
}

/// Compiles `spec` (panicking on errors), migrates a new database and
/// serves the app until the `TestApp` is dropped.
pub async fn spawn_app(spec: &str) -> TestApp {
    spawn_app_with(spec, |_| {}).await
}

/// The database a test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `spawn_app` or `spawn_app_postgres`, by backend.
pub async fn spawn(backend: Backend, spec: &str) -> TestApp {
    match backend {
        Backend::Sqlite => spawn_app(spec).await,
        Backend::Postgres => spawn_app_postgres(spec).await,
    }
}

/// Runs each named `async fn(Backend)` of the calling module as two tests,
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::Backend::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::Backend::Postgres).await
            })*
        }
    };
}

/// Like `spawn_app`, letting the test adjust the configuration.
pub async fn spawn_app_with(spec: &str, configure: impl FnOnce(&mut AppConfig)) -> TestApp {
    let compiled = charter_model::compile(spec);
    let model = Arc::new(compiled.model.unwrap_or_else(|| panic!("the test spec does not compile: {:?}", compiled.diagnostics)));
    let dir = tempfile::tempdir().expect("temp dir");
    let db = SqliteDb::open(&dir.path().join("app.db"), false).expect("open database");
    let report = db.migrate(&model, MigrateOptions::default()).expect("migrate");
    assert!(report.applied, "the schema is created");
    serve(model, Database::Sqlite(db), dir, None, configure).await
}

/// Like `spawn_app`, on a new database of the PostgreSQL server at
/// `CHARTER_TEST_POSTGRES_URL` (set by `./scripts/test`). Panics when it is
/// unset: a PostgreSQL test never silently passes.
pub async fn spawn_app_postgres(spec: &str) -> TestApp {
    spawn_app_postgres_with(spec, |_| {}).await
}

/// Like `spawn_app_postgres`, letting the test adjust the configuration.
pub async fn spawn_app_postgres_with(spec: &str, configure: impl FnOnce(&mut AppConfig)) -> TestApp {
    let compiled = charter_model::compile(spec);
    let model = Arc::new(compiled.model.unwrap_or_else(|| panic!("the test spec does not compile: {:?}", compiled.diagnostics)));
    let admin = std::env::var("CHARTER_TEST_POSTGRES_URL").ok().filter(|u| !u.trim().is_empty()).unwrap_or_else(|| {
        panic!("CHARTER_TEST_POSTGRES_URL is not set: PostgreSQL tests need a server; run ./scripts/test, which starts one")
    });
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "charter_kit_{}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos()),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("connect to the test PostgreSQL");
    tokio::spawn(connection);
    client.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.expect("create the test database");
    let base = admin.split('?').next().unwrap_or(&admin);
    let cut = base.rfind('/').filter(|i| *i > base.find("://").map_or(0, |s| s + 2)).unwrap_or(base.len());
    let url = format!("{}/{name}", &base[..cut]);
    let config = charter_store::StoreConfig { url: charter_store::DatabaseUrl::Postgres(url.clone()), synchronous_full: false };
    let db = Database::open(&config).await.expect("open the test database");
    let report = db.migrate(&model, MigrateOptions::default()).await.expect("migrate");
    assert!(report.applied, "the schema is created");
    serve(model, db, tempfile::tempdir().expect("temp dir"), Some(url), configure).await
}

async fn serve(
    model: Arc<charter_model::AppModel>,
    db: Database,
    dir: tempfile::TempDir,
    postgres_url: Option<String>,
    configure: impl FnOnce(&mut AppConfig),
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mut config = AppConfig::dev(url.clone());
    configure(&mut config);
    let clock = Arc::new(TestClock::new());
    let app = Arc::new(App::new(model, config, db, clock.clone()).expect("app"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = app.clone();
    let leaks = Leaks::default();
    let guard = leak_guard(leaks.clone());
    tokio::spawn(async move {
        let _ = charter_web::serve_wrapped(
            served,
            listener,
            async {
                let _ = rx.await;
            },
            guard,
        )
        .await;
    });
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    TestApp { url, app, clock, client, _dir: dir, _shutdown: tx, leaks, postgres_url }
}

impl TestApp {
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Whether the app's database is PostgreSQL (else SQLite).
    pub fn is_postgres(&self) -> bool {
        self.postgres_url.is_some()
    }

    /// Runs `sql` (one or more statements) on the app's database on a
    /// connection of its own, outside the app: bulk data and faults
    /// (triggers) that no request could make. The dialect is the backend's.
    pub async fn execute_sql(&self, sql: &str) {
        match &self.postgres_url {
            Some(url) => {
                let (client, connection) =
                    tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to the app's database");
                tokio::spawn(connection);
                client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            }
            None => {
                let db = SqliteDb::open(&self._dir.path().join("app.db"), false).expect("open database");
                db.connect().expect("connect").execute_batch(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        }
    }

    /// PostgreSQL only: takes `ACCESS EXCLUSIVE` on `table` in an open
    /// transaction of another connection, so every statement of the app
    /// that reads the table waits until the lock is released.
    pub async fn lock_table(&self, table: &str) -> TableLock {
        let url = self.postgres_url.as_ref().expect("lock_table needs an app on PostgreSQL");
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to the app's database");
        tokio::spawn(connection);
        client.batch_execute(&format!("BEGIN; LOCK TABLE \"{table}\" IN ACCESS EXCLUSIVE MODE")).await.expect("lock the table");
        TableLock { client }
    }
}

/// A table lock held by `TestApp::lock_table`; `release` ends it (so does
/// dropping it, when the connection closes).
pub struct TableLock {
    client: tokio_postgres::Client,
}

impl TableLock {
    pub async fn release(self) {
        self.client.batch_execute("ROLLBACK").await.expect("release the lock");
    }
}

/// A mail the app sent (read from its outbox).
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl Mail {
    /// The token in the mail's link (`...?token=<token>`).
    pub fn token(&self) -> String {
        let start = self.text.find("token=").map(|i| i + "token=".len()).unwrap_or_else(|| panic!("no token= in the mail: {}", self.text));
        self.text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
    }
}

impl TestApp {
    /// Every mail sent so far, newest first.
    pub async fn outbox(&self) -> Vec<Mail> {
        self.app
            .outbox(1000)
            .await
            .expect("outbox")
            .into_iter()
            .map(|m| Mail { to: m.to, subject: m.subject, text: m.text, html: m.html })
            .collect()
    }

    /// The newest mail to `to` whose subject contains `subject`, waiting
    /// (polling, up to 5 s) for mail sent in the background.
    pub async fn mail_to(&self, to: &str, subject: &str) -> Mail {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(m) = self.outbox().await.into_iter().find(|m| m.to == to && m.subject.contains(subject)) {
                return m;
            }
            assert!(std::time::Instant::now() < deadline, "no mail to {to} about {subject:?} arrived");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Another `App` over this test's database file, as after a restart.
    pub async fn reopen(&self) -> Arc<App> {
        let db = SqliteDb::open(&self._dir.path().join("app.db"), false).expect("open database");
        Arc::new(App::new(self.app.model.clone(), self.app.config.clone(), Database::Sqlite(db), self.clock.clone()).expect("app"))
    }

    /// POSTs `body` as JSON to `path`.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client.post(self.at(path)).json(&body).send().await.expect("request")
    }

    /// Signs up, follows the verification mail if the app sends one, and
    /// logs in: the bearer token of the new session.
    pub async fn signup_and_login(&self, email: &str, password: &str) -> String {
        let r = self.post("/api/auth/signup", serde_json::json!({"email": email, "password": password})).await;
        assert_eq!(r.status(), 201, "signup: {}", r.text().await.unwrap_or_default());
        if self.app.model.settings.email_verification != charter_model::EmailVerification::Off {
            let token = self.mail_to(email, "Confirm").await.token();
            let r = self.post("/api/auth/verify", serde_json::json!({"token": token})).await;
            assert_eq!(r.status(), 200, "verify: {}", r.text().await.unwrap_or_default());
        }
        self.login(email, password).await
    }

    /// A verified user with `role`, made directly through the app (no
    /// signup or mail), and signed in: its id and bearer token.
    pub async fn user_with_role(&self, email: &str, role: &str) -> (String, String) {
        const PASSWORD: &str = "testkit-password-9f3k2";
        let record = self.app.create_user(email, Some(role), Some(PASSWORD.to_string()), None).await.expect("create user");
        let id = record["id"].as_str().expect("id").to_string();
        (id, self.login(email, PASSWORD).await)
    }

    /// Logs in with a bearer session; its token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self.post("/api/auth/login", serde_json::json!({"email": email, "password": password})).await;
        assert_eq!(r.status(), 200, "login: {}", r.text().await.unwrap_or_default());
        let body: serde_json::Value = r.json().await.expect("json");
        body["token"].as_str().expect("token").to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn driver_text_is_recognised() {
        assert_eq!(super::leaked(r#"{"detail":"UNIQUE constraint failed: users.email"}"#), Some("constraint failed"));
        assert_eq!(super::leaked("SELECT id FROM users"), Some("SELECT ... FROM"));
        assert_eq!(super::leaked(r#"{"detail":"Sign in to do this."}"#), None);
    }
}
