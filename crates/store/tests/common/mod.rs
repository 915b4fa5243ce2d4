//! Fresh databases of either backend for the store's integration tests, so
//! one scenario runs on SQLite and PostgreSQL alike.
//!
//! ```ignore
//! mod common;
//! use common::{Backend, TestDb};
//!
//! #[test]
//! fn keeps_rows() {
//!     for backend in Backend::ALL {
//!         let db = TestDb::fresh(backend);          // its own database
//!         db.migrate(&model, opts).unwrap();        // through charter_store::Database
//!         db.insert("tasks", &[("id", DbValue::Text("t1".into())), ...]);
//!         assert_eq!(db.rows("tasks")[0]["done"].as_deref(), Some("true"));
//!     }
//! }
//! ```
//!
//! - `TestDb::fresh(backend)`: an empty database, dropped with the value.
//!   PostgreSQL needs `CHARTER_TEST_POSTGRES_URL` (an admin URL; each test
//!   creates and drops its own `charter_test_*` database). `./scripts/test`
//!   starts a throwaway server and sets it; without it the test panics:
//!   a PostgreSQL test never silently passes.
//! - `migrate`, `schema_differences`, `history`: the store's own API
//!   (`backup_dir` defaults to a temporary directory).
//! - `insert(table, values)`: one row, values as `DbValue` bound as
//!   parameters and converted to the column's type by the database.
//! - `execute(sql)`: one raw statement (write it in SQL both dialects
//!   accept); the driver's error as text.
//! - `rows(table)` (by id), `dump()` (every app table, by id), `query(sql)`:
//!   values as text, the same on both backends: booleans `true`/`false`,
//!   datetimes `YYYY-MM-DDTHH:MM:SS.mmmZ`, decimals as written, JSON
//!   compact with sorted keys. `render(value)` is how a stored `DbValue`
//!   shows there. `rows` and `dump` know each column's logical type from
//!   the recorded schema; `query` on SQLite does not, so there booleans
//!   read back as `0`/`1`.
//! - `TestDb::restore(backend, backup)`: a fresh database loaded from a
//!   pre-migration backup, to check what the backup holds.
//!
//! The API is synchronous (each `TestDb` owns a small Tokio runtime):
//! write plain `#[test]` functions, not `#[tokio::test]`.

// Each test crate uses part of this module.
#![allow(dead_code)]

use charter_model::AppModel;
use charter_schema::{ColumnType, DbValue, Schema};
use charter_store::{Database, DatabaseUrl, MigrateOptions, MigrationRecord, MigrationReport, StoreConfig, StoreError};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub const POSTGRES_URL_VAR: &str = "CHARTER_TEST_POSTGRES_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// One row: column -> value as text (`None` for NULL).
pub type Row = BTreeMap<String, Option<String>>;
/// Every app table (`_charter_*` excluded): table -> id -> row.
pub type Dump = BTreeMap<String, BTreeMap<String, Row>>;

pub struct TestDb {
    pub backend: Backend,
    /// `None` only while dropping.
    db: Option<Database>,
    raw: Raw,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
}

enum Raw {
    Sqlite(PathBuf),
    Postgres { client: tokio_postgres::Client, admin_url: String, name: String },
}

/// The URL of the admin database of the test server.
pub fn postgres_admin_url() -> String {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!("{POSTGRES_URL_VAR} is not set: the PostgreSQL tests need a server; run ./scripts/test, which starts PostgreSQL"),
    }
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn unique_database_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("charter_test_{}_{nanos:x}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn pg_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.to_string(),
        None => e.to_string(),
    }
}

async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL ({POSTGRES_URL_VAR}): {}", pg_text(&e)));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

impl TestDb {
    /// An empty database of `backend`, all its own.
    pub fn fresh(backend: Backend) -> TestDb {
        Self::create(backend, |_| {})
    }

    /// A fresh database loaded from a pre-migration backup `path`.
    pub fn restore(backend: Backend, path: &Path) -> TestDb {
        match backend {
            Backend::Sqlite => Self::create(backend, |target| {
                std::fs::copy(path, target.sqlite_path()).unwrap_or_else(|e| panic!("cannot copy backup {}: {e}", path.display()));
            }),
            Backend::Postgres => Self::create(backend, |target| {
                let Raw::Postgres { admin_url, name, .. } = &target.raw else { unreachable!() };
                // psql comes with the server that ./scripts/test starts (its bin directory is on PATH).
                let out = std::process::Command::new("psql")
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
                    .arg(path)
                    .arg(with_database(admin_url, name))
                    .output()
                    .unwrap_or_else(|e| panic!("cannot run psql to restore {}: {e}", path.display()));
                assert!(out.status.success(), "restoring {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
            }),
        }
    }

    fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("app.db")
    }

    /// Makes the empty database, lets `load` fill it, then opens the store on it.
    fn create(backend: Backend, load: impl FnOnce(&TestDb)) -> TestDb {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a Tokio runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (raw, url) = match backend {
            Backend::Sqlite => {
                let path = dir.path().join("app.db");
                (Raw::Sqlite(path.clone()), DatabaseUrl::Sqlite(path))
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let name = unique_database_name();
                let client = rt.block_on(async {
                    let admin = pg_connect(&admin_url).await;
                    admin
                        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                        .await
                        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {}", pg_text(&e)));
                    pg_connect(&with_database(&admin_url, &name)).await
                });
                let url = with_database(&admin_url, &name);
                (Raw::Postgres { client, admin_url, name }, DatabaseUrl::Postgres(url))
            }
        };
        let mut db = TestDb { backend, db: None, raw, dir, rt };
        load(&db);
        let config = StoreConfig { url, synchronous_full: false };
        db.db =
            Some(db.rt.block_on(Database::open(&config)).unwrap_or_else(|e| panic!("opening the {} test database: {e}", backend.name())));
        db
    }

    pub fn database(&self) -> &Database {
        self.db.as_ref().expect("open")
    }

    /// A directory that lives as long as the database (backups go here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// `Database::migrate`, with `backup_dir` in `dir()` unless set.
    pub fn migrate(&self, model: &AppModel, mut opts: MigrateOptions) -> Result<MigrationReport, StoreError> {
        if opts.backup_dir.is_none() {
            opts.backup_dir = Some(self.dir.path().join("backups"));
        }
        self.block_on(self.database().migrate(model, opts))
    }

    pub fn schema_differences(&self, model: &AppModel) -> Vec<String> {
        self.block_on(self.database().schema_differences(model)).expect("schema differences")
    }

    pub fn history(&self) -> Vec<MigrationRecord> {
        self.block_on(self.database().history()).expect("history")
    }

    /// Inserts one row; panics with the statement if the database refuses it.
    pub fn insert<C: AsRef<str>>(&self, table: &str, values: &[(C, DbValue)]) {
        if let Err(e) = self.try_insert(table, values) {
            let cols: Vec<&str> = values.iter().map(|(c, _)| c.as_ref()).collect();
            panic!("insert into {table} ({}): {e}", cols.join(", "));
        }
    }

    pub fn try_insert<C: AsRef<str>>(&self, table: &str, values: &[(C, DbValue)]) -> Result<(), String> {
        let cols: Vec<String> = values.iter().map(|(c, _)| quote(c.as_ref())).collect();
        match &self.raw {
            Raw::Sqlite(_) => {
                let conn = self.sqlite()?;
                let marks: Vec<&str> = values.iter().map(|_| "?").collect();
                let sql = format!("INSERT INTO {} ({}) VALUES ({})", quote(table), cols.join(", "), marks.join(", "));
                conn.execute(&sql, rusqlite::params_from_iter(values.iter().map(|(_, v)| sqlite_value(v))))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Raw::Postgres { client, .. } => self.block_on(async {
                let types = pg_column_types(client, table).await?;
                let mut marks = Vec::new();
                for (i, (c, _)) in values.iter().enumerate() {
                    let ty = types.get(c.as_ref()).ok_or_else(|| format!("{table} has no column {}", c.as_ref()))?;
                    marks.push(format!("CAST(${}::text AS {ty})", i + 1));
                }
                let sql = format!("INSERT INTO {} ({}) VALUES ({})", quote(table), cols.join(", "), marks.join(", "));
                let params: Vec<Option<String>> = values.iter().map(|(_, v)| value_text(v)).collect();
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
                client.execute(&sql, &refs).await.map(|_| ()).map_err(|e| pg_text(&e))
            }),
        }
    }

    /// Runs one raw statement; the number of rows it changed.
    pub fn execute(&self, sql: &str) -> Result<u64, String> {
        match &self.raw {
            Raw::Sqlite(_) => self.sqlite()?.execute(sql, []).map(|n| n as u64).map_err(|e| e.to_string()),
            Raw::Postgres { client, .. } => self.block_on(client.execute(sql, &[])).map_err(|e| pg_text(&e)),
        }
    }

    /// The rows of a raw query, values as text (see the module docs).
    pub fn query(&self, sql: &str) -> Vec<Row> {
        match &self.raw {
            Raw::Sqlite(_) => sqlite_rows(&self.sqlite().expect("open"), sql, &BTreeMap::new()),
            Raw::Postgres { client, .. } => self.block_on(pg_rows(client, sql)).unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// The rows of `table`, by id.
    pub fn rows(&self, table: &str) -> Vec<Row> {
        let sql = format!("SELECT * FROM {} ORDER BY \"id\"", quote(table));
        match &self.raw {
            Raw::Sqlite(_) => {
                let conn = self.sqlite().expect("open");
                let schema = sqlite_recorded_schema(&conn);
                let types: BTreeMap<String, ColumnType> =
                    schema.table(table).map(|t| t.columns.iter().map(|c| (c.name.clone(), c.ty)).collect()).unwrap_or_default();
                sqlite_rows(&conn, &sql, &types)
            }
            Raw::Postgres { client, .. } => {
                let mut rows = self.block_on(pg_rows(client, &sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
                // By id in byte order, as SQLite sorts, whatever the collation.
                rows.sort_by(|a, b| a.get("id").cmp(&b.get("id")));
                rows
            }
        }
    }

    /// Every app table's rows.
    pub fn dump(&self) -> Dump {
        let tables: Vec<String> = match &self.raw {
            Raw::Sqlite(_) => {
                let conn = self.sqlite().expect("open");
                let mut stmt = conn
                    .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_charter\\_%' ESCAPE '\\'")
                    .unwrap();
                let names = stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
                names
            }
            Raw::Postgres { client, .. } => self
                .block_on(client.query(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name NOT LIKE '\\_charter\\_%'",
                    &[],
                ))
                .expect("list tables")
                .iter()
                .map(|r| r.get(0))
                .collect(),
        };
        tables
            .into_iter()
            .map(|t| {
                let rows = self.rows(&t).into_iter().map(|r| (r.get("id").cloned().flatten().expect("every row has an id"), r)).collect();
                (t, rows)
            })
            .collect()
    }

    /// How `rows`, `dump` and `query` show a value stored from `v`.
    pub fn render(v: &DbValue) -> Option<String> {
        match v {
            DbValue::Null => None,
            DbValue::DateTime(s) => Some(normalize_datetime(s)),
            DbValue::Json(s) => Some(normalize_json(s)),
            other => value_text(other),
        }
    }

    /// The test's own PostgreSQL connection (not the store's), if PostgreSQL.
    pub fn postgres_client(&self) -> Option<&tokio_postgres::Client> {
        match &self.raw {
            Raw::Postgres { client, .. } => Some(client),
            Raw::Sqlite(_) => None,
        }
    }

    fn sqlite(&self) -> Result<rusqlite::Connection, String> {
        match &self.raw {
            Raw::Sqlite(path) => rusqlite::Connection::open(path).map_err(|e| e.to_string()),
            Raw::Postgres { .. } => Err("not a SQLite database".into()),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Close the store's connections before dropping its database.
        drop(self.db.take());
        if let Raw::Postgres { admin_url, name, .. } = &self.raw {
            let result = self.rt.block_on(async {
                let (admin, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await
            });
            if let Err(e) = result {
                // Not a panic: this may run while a failed test unwinds.
                eprintln!("warning: could not drop test database {name}: {}", pg_text(&e));
            }
        }
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn value_text(v: &DbValue) -> Option<String> {
    match v {
        DbValue::Null => None,
        DbValue::Integer(n) => Some(n.to_string()),
        DbValue::Boolean(b) => Some(b.to_string()),
        DbValue::Text(s) | DbValue::Decimal(s) | DbValue::Date(s) | DbValue::DateTime(s) | DbValue::Json(s) => Some(s.clone()),
    }
}

fn sqlite_value(v: &DbValue) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match v {
        DbValue::Null => Value::Null,
        DbValue::Integer(n) => Value::Integer(*n),
        DbValue::Boolean(b) => Value::Integer(i64::from(*b)),
        DbValue::Text(s) | DbValue::Decimal(s) | DbValue::Date(s) | DbValue::DateTime(s) | DbValue::Json(s) => Value::Text(s.clone()),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the store's form; text that is not an
/// RFC 3339 instant is left as it is.
pub fn normalize_datetime(s: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    match time::OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => t
            .to_offset(time::UtcOffset::UTC)
            .format(&time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"))
            .expect("formats"),
        Err(_) => s.to_string(),
    }
}

/// Compact JSON with object keys sorted: PostgreSQL's jsonb reorders keys
/// and spacing, SQLite keeps the text as written.
pub fn normalize_json(s: &str) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&m[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(v) => {
            let mut out = String::new();
            write(&v, &mut out);
            out
        }
        Err(_) => s.to_string(),
    }
}

fn sqlite_recorded_schema(conn: &rusqlite::Connection) -> Schema {
    use rusqlite::OptionalExtension;
    let json: Option<String> =
        conn.query_row("SELECT schema FROM _charter_migrations ORDER BY id DESC LIMIT 1", [], |r| r.get(0)).optional().ok().flatten();
    json.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default()
}

fn sqlite_rows(conn: &rusqlite::Connection, sql: &str, types: &BTreeMap<String, ColumnType>) -> Vec<Row> {
    use rusqlite::types::ValueRef;
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let cols: Vec<String> = stmt.column_names().map(String::from).collect();
    let mut rows = stmt.query([]).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    while let Some(r) = rows.next().unwrap_or_else(|e| panic!("{sql}: {e}")) {
        let mut row = Row::new();
        for (i, c) in cols.iter().enumerate() {
            let v = match r.get_ref(i).expect("column") {
                ValueRef::Null => None,
                ValueRef::Integer(n) => Some(match types.get(c) {
                    Some(ColumnType::Boolean) => (n != 0).to_string(),
                    _ => n.to_string(),
                }),
                ValueRef::Real(f) => Some(f.to_string()),
                ValueRef::Text(s) => {
                    let s = String::from_utf8_lossy(s).into_owned();
                    Some(match types.get(c) {
                        Some(ColumnType::DateTime) => normalize_datetime(&s),
                        Some(ColumnType::Json) => normalize_json(&s),
                        _ => s,
                    })
                }
                ValueRef::Blob(b) => Some(format!("blob {b:?}")),
            };
            row.insert(c.clone(), v);
        }
        out.push(row);
    }
    out
}

/// Column -> type as the catalog spells it (`format_type`).
async fn pg_column_types(client: &tokio_postgres::Client, table: &str) -> Result<BTreeMap<String, String>, String> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
             WHERE a.attrelid = to_regclass(quote_ident($1)) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&table],
        )
        .await
        .map_err(|e| pg_text(&e))?;
    if rows.is_empty() {
        return Err(format!("no table {table}"));
    }
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Runs `sql` with every column turned into text the neutral way.
async fn pg_rows(client: &tokio_postgres::Client, sql: &str) -> Result<Vec<Row>, String> {
    use tokio_postgres::types::Type;
    let stmt = client.prepare(sql).await.map_err(|e| pg_text(&e))?;
    let names: Vec<String> = stmt.columns().iter().map(|c| c.name().to_string()).collect();
    let exprs: Vec<String> = stmt
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let col = format!("q.c{i}");
            match *c.type_() {
                Type::TIMESTAMPTZ => format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"),
                Type::TIMESTAMP => format!("to_char({col}, 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"),
                _ => format!("{col}::text"),
            }
        })
        .collect();
    let aliases: Vec<String> = (0..names.len()).map(|i| format!("c{i}")).collect();
    let wrapped = format!("SELECT {} FROM ({sql}) AS q({})", exprs.join(", "), aliases.join(", "));
    let rows = client.query(&wrapped, &[]).await.map_err(|e| pg_text(&e))?;
    Ok(rows
        .iter()
        .map(|r| {
            names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let v: Option<String> = r.get(i);
                    let v = v.map(|s| match *stmt.columns()[i].type_() {
                        Type::JSON | Type::JSONB => normalize_json(&s),
                        _ => s,
                    });
                    (n.clone(), v)
                })
                .collect()
        })
        .collect())
}
