//! Store-level benchmarks on the taskboard workload: 100 users, 1,000
//! projects, 100,000 tasks. Measures a permission-checked insert, a get by
//! id and the permission-filtered list the HTTP benchmark uses
//! (`done = false`, newest first, 20 rows), on SQLite and on PostgreSQL.
//!
//! `cargo bench -p charter-store --bench records`
//!
//! The PostgreSQL group runs on a new database (dropped afterwards) of the
//! server at `CHARTER_BENCH_POSTGRES_URL`, or else `CHARTER_TEST_POSTGRES_URL`
//! (set by `scripts/test`); the role needs `CREATEDB`. Without either, the
//! group is not run and says so. `-- sqlite` or `-- postgres` runs one
//! backend only (the other is not seeded either).

use charter_model::{AppModel, EntityId, FieldId};
use charter_schema::DbValue;
use charter_store::sqlite::SqliteDb;
use charter_store::*;
use criterion::{criterion_group, criterion_main, Criterion};
use std::sync::Arc;

const TASKBOARD: &str = include_str!("../../../examples/taskboard/app.md");
const USERS: usize = 100;
const PROJECTS_PER_USER: usize = 10;
const TASKS_PER_PROJECT: usize = 100;
const CREATED: &str = "2025-01-01T00:00:00.000Z";

struct Fixture {
    records: Arc<Records>,
    /// The same database without a statement timeout, to show what the
    /// timeout costs a list.
    unbounded: Records,
    callers: Vec<Caller>,
    projects: Vec<Vec<String>>,
    tasks: Vec<Vec<String>>,
    task: EntityId,
    title: FieldId,
    project: FieldId,
    done: FieldId,
    created_at: FieldId,
}

fn field(model: &AppModel, e: &str, f: &str) -> FieldId {
    model.entity_by_name(e).unwrap().field_by_name(f).unwrap().0
}

fn user_id(u: usize) -> String {
    format!("user{u:03}")
}

fn model() -> Arc<AppModel> {
    Arc::new(charter_model::compile(TASKBOARD).model.unwrap())
}

/// Projects and tasks made through the records API (rules checked, as in
/// the app), 1,000 creates in flight at a time.
fn seed(rt: &tokio::runtime::Runtime, model: &Arc<AppModel>, records: Records, unbounded: Records) -> Fixture {
    // As `charter serve` runs lists: under its default statement timeout.
    let records = Arc::new(records.with_statement_timeout(Some(std::time::Duration::from_secs(5))));
    let member = model.role_by_name("member").unwrap();
    let callers: Vec<Caller> = (0..USERS).map(|u| Caller::user(user_id(u), member)).collect();
    let (pname, powner) = (field(model, "Project", "name"), field(model, "Project", "owner"));
    let task = model.entity_by_name("Task").unwrap().id;
    let (title, project, done) = (field(model, "Task", "title"), field(model, "Task", "project"), field(model, "Task", "done"));
    let project_entity = model.entity_by_name("Project").unwrap().id;
    let mut projects = vec![Vec::new(); USERS];
    let mut tasks = vec![Vec::new(); USERS];
    rt.block_on(async {
        // Interleaved across users, as when people use the app at once.
        for p in 0..PROJECTS_PER_USER {
            let mut set = tokio::task::JoinSet::new();
            for (u, c) in callers.iter().enumerate() {
                let (records, c) = (records.clone(), c.clone());
                let values = vec![(pname, DbValue::Text(format!("Project {u:03}-{p}"))), (powner, DbValue::Text(user_id(u)))];
                set.spawn(async move { (u, records.create(project_entity, &c, values).await.unwrap()) });
            }
            for (u, r) in set.join_all().await {
                projects[u].push(r["id"].as_str().unwrap().to_string());
            }
        }
        for t in 0..TASKS_PER_PROJECT {
            let mut set = tokio::task::JoinSet::new();
            for (u, c) in callers.iter().enumerate() {
                for (p, pid) in projects[u].iter().enumerate() {
                    let values = vec![
                        (title, DbValue::Text(format!("Task {u:03}-{p}-{t}"))),
                        (project, DbValue::Text(pid.clone())),
                        (done, DbValue::Boolean((u + p + t) % 5 < 2)),
                    ];
                    let (records, c) = (records.clone(), c.clone());
                    set.spawn(async move { (u, records.create(task, &c, values).await.unwrap()) });
                }
            }
            for (u, r) in set.join_all().await {
                tasks[u].push(r["id"].as_str().unwrap().to_string());
            }
        }
    });
    let created_at = field(model, "Task", "created_at");
    Fixture { records, unbounded, callers, projects, tasks, task, title, project, done, created_at }
}

fn sqlite_fixture(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Fixture {
    let model = model();
    let db = SqliteDb::open(&dir.join("app.db"), false).unwrap();
    db.migrate(&model, MigrateOptions::default()).unwrap();
    {
        let conn = db.connect().unwrap();
        for u in 0..USERS {
            conn.execute(
                "INSERT INTO users (id, email, name, role, verified, created_at, updated_at, version) VALUES (?1, ?2, ?1, 'member', 1, ?3, ?3, 1)",
                rusqlite::params![user_id(u), format!("{}@example.com", user_id(u)), CREATED],
            )
            .unwrap();
        }
    }
    let db = Database::Sqlite(db);
    seed(rt, &model, db.records(model.clone()).unwrap(), db.records(model.clone()).unwrap())
}

/// The server URL for the PostgreSQL group, if one is configured.
fn postgres_url() -> Option<String> {
    ["CHARTER_BENCH_POSTGRES_URL", "CHARTER_TEST_POSTGRES_URL"].iter().find_map(|v| std::env::var(v).ok().filter(|u| !u.trim().is_empty()))
}

/// A new database on the server at `admin`, dropped when this is dropped.
struct PgScratch {
    admin: String,
    name: String,
    url: String,
}

impl PgScratch {
    fn create(rt: &tokio::runtime::Runtime, admin: &str) -> PgScratch {
        let name = format!("charter_bench_{}", std::process::id());
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls).await.expect("connect to the benchmark PostgreSQL");
            tokio::spawn(conn);
            client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.unwrap();
            client.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.expect("create the benchmark database (needs CREATEDB)");
        });
        let base = admin.split('?').next().unwrap_or(admin);
        let cut = base.rfind('/').filter(|i| *i > base.find("://").map_or(0, |s| s + 2)).unwrap_or(base.len());
        PgScratch { admin: admin.to_string(), url: format!("{}/{name}", &base[..cut]), name }
    }

    fn drop_database(&self) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            if let Ok((client, conn)) = tokio_postgres::connect(&self.admin, tokio_postgres::NoTls).await {
                tokio::spawn(conn);
                let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).await;
            }
        });
    }
}

fn postgres_fixture(rt: &tokio::runtime::Runtime, scratch: &PgScratch) -> Fixture {
    let model = model();
    let db = rt.block_on(async {
        let db = Database::open(&StoreConfig { url: DatabaseUrl::Postgres(scratch.url.clone()), synchronous_full: false }).await.unwrap();
        db.migrate(&model, MigrateOptions::default()).await.unwrap();
        let (client, conn) = tokio_postgres::connect(&scratch.url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        for u in 0..USERS {
            let (id, email) = (user_id(u), format!("{}@example.com", user_id(u)));
            client
                .execute(
                    "INSERT INTO users (id, email, name, role, verified, created_at, updated_at, version) \
                     VALUES ($1, $2, $1, 'member', true, $3::text::timestamptz, $3::text::timestamptz, 1)",
                    &[&id, &email, &CREATED],
                )
                .await
                .unwrap();
        }
        db
    });
    seed(rt, &model, db.records(model.clone()).unwrap(), db.records(model.clone()).unwrap())
}

fn run_group(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, f: &Fixture) {
    let mut group = c.benchmark_group(name);
    let mut i = 0usize;
    group.bench_function("get_by_id", |b| {
        b.iter(|| {
            i += 1;
            let u = i % USERS;
            let id = &f.tasks[u][i % f.tasks[u].len()];
            rt.block_on(f.records.get(f.task, &f.callers[u], id)).unwrap().expect("visible")
        })
    });
    let q = ListQuery {
        filters: vec![Filter { field: f.done, op: FilterOp::Eq, values: vec![DbValue::Boolean(false)] }],
        sort: vec![SortKey { field: f.created_at, descending: true }],
        limit: 20,
        after: None,
        count: false,
    };
    group.bench_function("permission_filtered_list", |b| {
        b.iter(|| {
            i += 1;
            let u = i % USERS;
            let page = rt.block_on(f.records.list(f.task, &f.callers[u], &q)).unwrap();
            assert_eq!(page.items.len(), 20);
            page
        })
    });
    group.bench_function("permission_filtered_list_without_statement_timeout", |b| {
        b.iter(|| {
            i += 1;
            let u = i % USERS;
            let page = rt.block_on(f.unbounded.list(f.task, &f.callers[u], &q)).unwrap();
            assert_eq!(page.items.len(), 20);
            page
        })
    });
    group.bench_function("insert", |b| {
        b.iter(|| {
            i += 1;
            let u = i % USERS;
            let values = vec![
                (f.title, DbValue::Text(format!("New task {i}"))),
                (f.project, DbValue::Text(f.projects[u][i % PROJECTS_PER_USER].clone())),
            ];
            rt.block_on(f.records.create(f.task, &f.callers[u], values)).unwrap()
        })
    });
    group.finish();
}

/// Whether the command line's filter (`cargo bench ... -- FILTER`) can
/// select benchmarks of `group`; no filter selects every group.
fn wanted(group: &str) -> bool {
    // Criterion's options that take a value, so the value is not read as a filter.
    const WITH_VALUE: &[&str] = &[
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--measurement-time",
        "--warm-up-time",
        "--sample-size",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--output-format",
        "--color",
        "--plotting-backend",
        "--profile-time",
        "--format",
    ];
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            filters.push(a);
        }
    }
    filters.is_empty() || filters.iter().any(|f| group.contains(f.as_str()) || f.contains(group))
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if wanted("sqlite_100k_tasks") {
        let dir = tempfile::tempdir().unwrap();
        let f = sqlite_fixture(&rt, dir.path());
        run_group(c, &rt, "sqlite_100k_tasks", &f);
    }
    if wanted("postgres_100k_tasks") {
        match postgres_url() {
            Some(admin) => {
                let scratch = PgScratch::create(&rt, &admin);
                let f = postgres_fixture(&rt, &scratch);
                run_group(c, &rt, "postgres_100k_tasks", &f);
                drop(f);
                scratch.drop_database();
            }
            None => eprintln!(
                "postgres_100k_tasks: not run: set CHARTER_BENCH_POSTGRES_URL (or CHARTER_TEST_POSTGRES_URL) to a PostgreSQL \
                 server URL whose role may CREATE DATABASE, e.g. postgres://postgres@127.0.0.1:5432/postgres"
            ),
        }
    }
}

criterion_group! {
    name = store;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(5));
    targets = benches
}
criterion_main!(store);
