//! Store-level benchmarks on the taskboard workload: 100 users, 1,000
//! projects, 100,000 tasks. Measures a permission-checked insert, a get by
//! id and the permission-filtered list the HTTP benchmark uses
//! (`done = false`, newest first, 20 rows).
//!
//! `cargo bench -p charter-store --bench records`

use charter_model::{AppModel, FieldId};
use charter_schema::DbValue;
use charter_store::sqlite::SqliteDb;
use charter_store::*;
use criterion::{criterion_group, criterion_main, Criterion};
use std::sync::Arc;

const TASKBOARD: &str = include_str!("../../../examples/taskboard/app.md");
const USERS: usize = 100;
const PROJECTS_PER_USER: usize = 10;
const TASKS_PER_PROJECT: usize = 100;

struct Fixture {
    records: Records,
    callers: Vec<Caller>,
    projects: Vec<Vec<String>>,
    tasks: Vec<Vec<String>>,
    task: charter_model::EntityId,
    title: FieldId,
    project: FieldId,
    done: FieldId,
    created_at: FieldId,
    _dir: tempfile::TempDir,
}

fn field(model: &AppModel, e: &str, f: &str) -> FieldId {
    model.entity_by_name(e).unwrap().field_by_name(f).unwrap().0
}

fn fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let model = Arc::new(charter_model::compile(TASKBOARD).model.unwrap());
    let db = SqliteDb::open(&dir.path().join("app.db"), false).unwrap();
    db.migrate(&model, MigrateOptions::default()).unwrap();
    let member = model.role_by_name("member").unwrap();
    {
        let conn = db.connect().unwrap();
        for u in 0..USERS {
            conn.execute(
                "INSERT INTO users (id, email, name, role, verified, created_at, updated_at, version) VALUES (?1, ?2, ?1, 'member', 1, '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z', 1)",
                rusqlite::params![format!("user{u:03}"), format!("user{u:03}@example.com")],
            )
            .unwrap();
        }
    }
    let records = Database::Sqlite(db).records(model.clone()).unwrap();
    let callers: Vec<Caller> = (0..USERS).map(|u| Caller::user(format!("user{u:03}"), member)).collect();
    let (pname, powner) = (field(&model, "Project", "name"), field(&model, "Project", "owner"));
    let task = model.entity_by_name("Task").unwrap().id;
    let (title, project, done) = (field(&model, "Task", "title"), field(&model, "Task", "project"), field(&model, "Task", "done"));
    let project_entity = model.entity_by_name("Project").unwrap().id;
    let mut projects = vec![Vec::new(); USERS];
    let mut tasks = vec![Vec::new(); USERS];
    rt.block_on(async {
        // Interleaved across users, as when people use the app at once.
        for p in 0..PROJECTS_PER_USER {
            for (u, c) in callers.iter().enumerate() {
                let r = records
                    .create(
                        project_entity,
                        c,
                        vec![(pname, DbValue::Text(format!("Project {u:03}-{p}"))), (powner, DbValue::Text(c.user.clone().unwrap()))],
                    )
                    .await
                    .unwrap();
                projects[u].push(r["id"].as_str().unwrap().to_string());
            }
        }
        for t in 0..TASKS_PER_PROJECT {
            let mut pending = Vec::new();
            for (u, c) in callers.iter().enumerate() {
                for (p, pid) in projects[u].iter().enumerate() {
                    let values = vec![
                        (title, DbValue::Text(format!("Task {u:03}-{p}-{t}"))),
                        (project, DbValue::Text(pid.clone())),
                        (done, DbValue::Boolean((u + p + t) % 5 < 2)),
                    ];
                    pending.push((u, records.create(task, c, values)));
                }
            }
            // Many creates in flight at once exercise the group commit.
            for (u, fut) in pending {
                let r = fut.await.unwrap();
                tasks[u].push(r["id"].as_str().unwrap().to_string());
            }
        }
    });
    let created_at = field(&model, "Task", "created_at");
    Fixture { records, callers, projects, tasks, task, title, project, done, created_at, _dir: dir }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let f = fixture(&rt);
    let mut group = c.benchmark_group("sqlite_100k_tasks");
    let mut i = 0usize;
    group.bench_function("get_by_id", |b| {
        b.iter(|| {
            i += 1;
            let u = i % USERS;
            let id = &f.tasks[u][i % f.tasks[u].len()];
            rt.block_on(f.records.get(f.task, &f.callers[u], id)).unwrap().expect("visible")
        })
    });
    group.bench_function("permission_filtered_list", |b| {
        let q = ListQuery {
            filters: vec![Filter { field: f.done, op: FilterOp::Eq, values: vec![DbValue::Boolean(false)] }],
            sort: vec![SortKey { field: f.created_at, descending: true }],
            limit: 20,
            after: None,
            count: false,
        };
        b.iter(|| {
            i += 1;
            let u = i % USERS;
            let page = rt.block_on(f.records.list(f.task, &f.callers[u], &q)).unwrap();
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

criterion_group! {
    name = store;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(5));
    targets = benches
}
criterion_main!(store);
