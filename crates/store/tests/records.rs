//! Records with permissions enforced in SQL, on a real SQLite file.

use charter_model::{AppModel, EntityId};
use charter_schema::DbValue;
use charter_store::sqlite::SqliteDb;
use charter_store::*;
use std::sync::Arc;

const TASKBOARD: &str = include_str!("../../../examples/taskboard/app.md");

struct App {
    model: Arc<AppModel>,
    records: Records,
    db: SqliteDb,
    _dir: tempfile::TempDir,
}

impl App {
    async fn new(spec: &str) -> App {
        let dir = tempfile::tempdir().unwrap();
        let model = Arc::new(charter_model::compile(spec).model.expect("spec compiles"));
        let db = SqliteDb::open(&dir.path().join("app.db"), false).unwrap();
        db.migrate(&model, MigrateOptions::default()).unwrap();
        let records = Database::Sqlite(db.clone()).records(model.clone()).unwrap();
        App { model, records, db, _dir: dir }
    }

    fn entity(&self, name: &str) -> EntityId {
        self.model.entity_by_name(name).unwrap().id
    }

    fn field(&self, entity: &str, field: &str) -> charter_model::FieldId {
        self.model.entity_by_name(entity).unwrap().field_by_name(field).unwrap().0
    }

    fn user(&self, id: &str, role: &str) -> Caller {
        let conn = self.db.connect().unwrap();
        conn.execute(
            "INSERT INTO users (id, email, name, role, verified, created_at, updated_at, version) VALUES (?1, ?2, ?3, ?4, 1, '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z', 1)",
            rusqlite::params![id, format!("{id}@example.com"), id, role],
        )
        .unwrap();
        Caller::user(id, self.model.role_by_name(role).unwrap())
    }

    async fn project(&self, caller: &Caller, name: &str) -> String {
        let p = self.entity("Project");
        let r = self
            .records
            .create(
                p,
                caller,
                vec![
                    (self.field("Project", "name"), DbValue::Text(name.into())),
                    (self.field("Project", "owner"), DbValue::Text(caller.user.clone().unwrap())),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        r["id"].as_str().unwrap().to_string()
    }

    async fn task(&self, caller: &Caller, project: &str, title: &str) -> Result<Record, WriteError> {
        self.records
            .create(
                self.entity("Task"),
                caller,
                vec![
                    (self.field("Task", "title"), DbValue::Text(title.into())),
                    (self.field("Task", "project"), DbValue::Text(project.into())),
                ],
            )
            .await
    }
}

fn query(limit: u32) -> ListQuery {
    ListQuery { filters: vec![], sort: vec![], limit, after: None, count: true }
}

#[tokio::test]
async fn rows_are_visible_only_as_the_rules_say() {
    let app = App::new(TASKBOARD).await;
    let (ann, bob, admin) = (app.user("ann", "member"), app.user("bob", "member"), app.user("root", "admin"));
    let p = app.project(&ann, "Ann's").await;
    let t = app.task(&ann, &p, "write").await.unwrap();
    let tid = t["id"].as_str().unwrap();
    let task = app.entity("Task");

    assert!(app.records.get(task, &ann, tid).await.unwrap().is_some());
    assert!(app.records.get(task, &bob, tid).await.unwrap().is_none(), "invisible to others");
    assert!(app.records.get(task, &Caller::anonymous(), tid).await.unwrap().is_none());
    assert!(app.records.get(task, &admin, tid).await.unwrap().is_some(), "admins read everything");
    assert_eq!(app.records.list(task, &bob, &query(20)).await.unwrap().count, Some(0));
    assert_eq!(app.records.list(task, &admin, &query(20)).await.unwrap().count, Some(1));

    // Bob cannot add a task to Ann's project: her project is invisible to him.
    assert!(matches!(app.task(&bob, &p, "sneak").await, Err(WriteError::ReferenceNotFound { field }) if field == "project"));
    // Nor update or delete her task: 404, as if it did not exist.
    let title = app.field("Task", "title");
    assert!(matches!(app.records.update(task, &bob, tid, vec![(title, DbValue::Text("x".into()))], None).await, Err(WriteError::NotFound)));
    assert!(matches!(app.records.delete(task, &bob, tid, None).await, Err(WriteError::NotFound)));
    // The admin can read it but not change it: 403.
    assert!(matches!(
        app.records.update(task, &admin, tid, vec![(title, DbValue::Text("x".into()))], None).await,
        Err(WriteError::Forbidden)
    ));
}

#[tokio::test]
async fn updates_hold_before_and_after_and_respect_versions() {
    let app = App::new(TASKBOARD).await;
    let (ann, bob) = (app.user("ann", "member"), app.user("bob", "member"));
    let pa = app.project(&ann, "A").await;
    let pb = app.project(&bob, "B").await;
    let t = app.task(&ann, &pa, "mine").await.unwrap();
    let tid = t["id"].as_str().unwrap();
    let task = app.entity("Task");
    let project = app.field("Task", "project");
    // Moving Ann's task into Bob's project: Bob's project is invisible to Ann.
    assert!(matches!(
        app.records.update(task, &ann, tid, vec![(project, DbValue::Text(pb.clone()))], None).await,
        Err(WriteError::ReferenceNotFound { .. })
    ));

    let title = app.field("Task", "title");
    let r = app.records.update(task, &ann, tid, vec![(title, DbValue::Text("v2".into()))], Some(1)).await.unwrap();
    assert_eq!(r["version"], 2);
    assert_eq!(r["title"], "v2");
    assert!(matches!(
        app.records.update(task, &ann, tid, vec![(title, DbValue::Text("v3".into()))], Some(1)).await,
        Err(WriteError::Stale { current_version: 2 })
    ));
    assert!(matches!(app.records.delete(task, &ann, tid, Some(1)).await, Err(WriteError::Stale { .. })));
    app.records.delete(task, &ann, tid, Some(2)).await.unwrap();
    assert!(app.records.get(task, &ann, tid).await.unwrap().is_none());
}

#[tokio::test]
async fn concurrent_increments_with_if_match_lose_nothing() {
    let spec = "# C\n\n## Entities\n\n### Counter\n| field | type | rules |\n|---|---|---|\n| n | int | required |\n\nPermissions:\n- read, create, update: signed in\n";
    let app = Arc::new(App::new(spec).await);
    let me = app.user("u", "member");
    let counter = app.entity("Counter");
    let n = app.field("Counter", "n");
    let c = app.records.create(counter, &me, vec![(n, DbValue::Integer(0))]).await.unwrap();
    let id = c["id"].as_str().unwrap().to_string();
    let mut handles = Vec::new();
    for _ in 0..8 {
        let (app, me, id) = (app.clone(), me.clone(), id.clone());
        handles.push(tokio::spawn(async move {
            for _ in 0..10 {
                loop {
                    let cur = app.records.get(counter, &me, &id).await.unwrap().unwrap();
                    let (v, version) = (cur["n"].as_i64().unwrap(), cur["version"].as_i64().unwrap());
                    match app.records.update(counter, &me, &id, vec![(n, DbValue::Integer(v + 1))], Some(version)).await {
                        Ok(_) => break,
                        Err(WriteError::Stale { .. }) => continue,
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let cur = app.records.get(counter, &me, &id).await.unwrap().unwrap();
    assert_eq!(cur["n"], 80);
}

#[tokio::test]
async fn unique_restrict_and_cascade_are_enforced_by_the_database() {
    let spec = "# U\n\n## Entities\n\n### Team\n| field | type | rules |\n|---|---|---|\n| code | text | required, unique |\n\nPermissions:\n- read, create, delete: signed in\n\n### Member\n| field | type | rules |\n|---|---|---|\n| team | Team | required |\n\nPermissions:\n- read, create, delete: signed in\n\n### Note\n| field | type | rules |\n|---|---|---|\n| team | Team | on delete cascade |\n\nPermissions:\n- read, create: signed in\n";
    let app = App::new(spec).await;
    let u = app.user("u", "member");
    let (team, member, note) = (app.entity("Team"), app.entity("Member"), app.entity("Note"));
    let code = app.field("Team", "code");
    let t1 = app.records.create(team, &u, vec![(code, DbValue::Text("x".into()))]).await.unwrap();
    assert!(
        matches!(app.records.create(team, &u, vec![(code, DbValue::Text("x".into()))]).await, Err(WriteError::Unique { field }) if field == "code")
    );
    let tid = t1["id"].as_str().unwrap().to_string();
    let m = app.records.create(member, &u, vec![(app.field("Member", "team"), DbValue::Text(tid.clone()))]).await.unwrap();
    app.records.create(note, &u, vec![(app.field("Note", "team"), DbValue::Text(tid.clone()))]).await.unwrap();
    assert!(matches!(app.records.delete(team, &u, &tid, None).await, Err(WriteError::Restricted)));
    app.records.delete(member, &u, m["id"].as_str().unwrap(), None).await.unwrap();
    app.records.delete(team, &u, &tid, None).await.unwrap();
    assert_eq!(app.records.list(note, &u, &query(10)).await.unwrap().count, Some(0), "notes cascade");
}

#[tokio::test]
async fn keyset_pages_see_every_row_exactly_once_while_rows_are_inserted() {
    let app = App::new(TASKBOARD).await;
    let ann = app.user("ann", "member");
    let p = app.project(&ann, "P").await;
    for i in 0..45 {
        app.task(&ann, &p, &format!("t{i}")).await.unwrap();
    }
    let task = app.entity("Task");
    let created = app.field("Task", "created_at");
    let mut q =
        ListQuery { filters: vec![], sort: vec![SortKey { field: created, descending: true }], limit: 10, after: None, count: false };
    let mut seen = std::collections::HashSet::new();
    let mut pages = 0;
    loop {
        let page = app.records.list(task, &ann, &q).await.unwrap();
        for item in &page.items {
            assert!(seen.insert(item["id"].as_str().unwrap().to_string()), "a row twice");
        }
        pages += 1;
        // New rows arrive meanwhile; they sort before the cursor (newest first).
        app.task(&ann, &p, &format!("late{pages}")).await.unwrap();
        match page.next {
            Some(next) => q.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 45);
    assert_eq!(pages, 5);
}

#[tokio::test]
async fn filters_apply_in_the_database() {
    let app = App::new(TASKBOARD).await;
    let ann = app.user("ann", "member");
    let p = app.project(&ann, "P").await;
    let task = app.entity("Task");
    for (i, title) in ["Alpha", "beta", "Gamma 100%", "d'elta; DROP TABLE tasks;--"].iter().enumerate() {
        let mut v =
            vec![(app.field("Task", "title"), DbValue::Text(title.to_string())), (app.field("Task", "project"), DbValue::Text(p.clone()))];
        v.push((app.field("Task", "done"), DbValue::Boolean(i % 2 == 0)));
        app.records.create(task, &ann, v).await.unwrap();
    }
    let f = |field: &str, op, v: DbValue| Filter { field: app.field("Task", field), op, values: vec![v] };
    let records = &app.records;
    let ann = &ann;
    let count = |filters: Vec<Filter>| {
        let q = ListQuery { filters, sort: vec![], limit: 50, after: None, count: true };
        async move { records.list(task, ann, &q).await.unwrap().count.unwrap() }
    };
    assert_eq!(count(vec![f("done", FilterOp::Eq, DbValue::Boolean(true))]).await, 2);
    assert_eq!(count(vec![f("title", FilterOp::Contains, DbValue::Text("ALP".into()))]).await, 1);
    assert_eq!(count(vec![f("title", FilterOp::Contains, DbValue::Text("%".into()))]).await, 1, "% is data");
    assert_eq!(count(vec![f("title", FilterOp::Contains, DbValue::Text("_".into()))]).await, 0, "_ is data");
    assert_eq!(count(vec![f("title", FilterOp::Eq, DbValue::Text("d'elta; DROP TABLE tasks;--".into()))]).await, 1);
    assert_eq!(
        count(vec![f("priority", FilterOp::Eq, DbValue::Null), f("done", FilterOp::Ne, DbValue::Boolean(true))]).await,
        2,
        "defaults are applied above the store"
    );
}

#[test]
fn permission_sql_is_stable() {
    let model = charter_model::compile(TASKBOARD).model.unwrap();
    let task = model.entity_by_name("Task").unwrap().id;
    let member = Caller::user("u1", model.role_by_name("member").unwrap());
    let admin = Caller::user("a1", model.role_by_name("admin").unwrap());
    let mut out = String::new();
    for (who, caller) in [("member", &member), ("admin", &admin), ("anonymous", &Caller::anonymous())] {
        for action in charter_model::Action::ALL {
            for pg in [false, true] {
                let (sql, params) = rule_sql(&model, task, action, caller, pg);
                out.push_str(&format!("{who} {} {}: {sql}  -- {params:?}\n", action.as_str(), if pg { "postgres" } else { "sqlite" }));
            }
        }
    }
    insta::assert_snapshot!(out);
}
