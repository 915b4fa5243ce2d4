//! The records suite on SQLite and PostgreSQL: the same scenarios, the same
//! answers. PostgreSQL needs `CHARTER_TEST_POSTGRES_URL` (set by
//! `./scripts/test`); without it these tests panic rather than skip.

mod common;

use charter_model::{AppModel, EntityId, FieldId};
use charter_schema::DbValue;
use charter_store::*;
use common::{Backend, TestDb};
use std::collections::HashSet;
use std::sync::Arc;

const TASKBOARD: &str = include_str!("../../../examples/taskboard/app.md");

const TYPES: &str = r#"# Types

## Entities

### Thing
| field | type            | rules            |
|-------|-----------------|------------------|
| label | text            | required, unique |
| n     | int             |                  |
| price | decimal         |                  |
| on    | bool            |                  |
| day   | date            |                  |
| at    | datetime        |                  |
| doc   | json            |                  |
| kind  | enum(a, b, c)   |                  |
| site  | url             |                  |

Permissions:
- read, create, update, delete: signed in
"#;

/// label, n, price, on, day, kind
type Seed = (&'static str, Option<i64>, &'static str, bool, &'static str, &'static str);

struct Fixture {
    db: TestDb,
    model: Arc<AppModel>,
    records: Records,
}

impl Fixture {
    fn new(backend: Backend, spec: &str) -> Fixture {
        let model = Arc::new(charter_model::compile(spec).model.expect("spec compiles"));
        let db = TestDb::fresh(backend);
        db.migrate(&model, MigrateOptions::default()).expect("migrate");
        let records = db.database().records(model.clone()).expect("records");
        Fixture { db, model, records }
    }

    fn entity(&self, name: &str) -> EntityId {
        self.model.entity_by_name(name).unwrap().id
    }

    fn field(&self, entity: &str, field: &str) -> FieldId {
        self.model.entity_by_name(entity).unwrap().field_by_name(field).unwrap().0
    }

    fn user(&self, id: &str, role: &str) -> Caller {
        let t = DbValue::DateTime("2025-01-01T00:00:00.000Z".into());
        self.db.insert(
            "users",
            &[
                ("id", DbValue::Text(id.into())),
                ("email", DbValue::Text(format!("{id}@example.com"))),
                ("name", DbValue::Text(id.into())),
                ("role", DbValue::Text(role.into())),
                ("verified", DbValue::Boolean(true)),
                ("created_at", t.clone()),
                ("updated_at", t),
                ("version", DbValue::Integer(1)),
            ],
        );
        Caller::user(id, self.model.role_by_name(role).unwrap())
    }

    fn run<F: std::future::Future>(&self, f: F) -> F::Output {
        self.db.block_on(f)
    }

    fn project(&self, caller: &Caller, name: &str) -> String {
        let (p, name_f, owner) = (self.entity("Project"), self.field("Project", "name"), self.field("Project", "owner"));
        let values = vec![(name_f, DbValue::Text(name.into())), (owner, DbValue::Text(caller.user.clone().unwrap()))];
        let r = self.run(self.records.create(p, caller, values)).unwrap_or_else(|e| panic!("{e:?}"));
        r["id"].as_str().unwrap().to_string()
    }

    fn task(&self, caller: &Caller, project: &str, title: &str) -> Result<Record, WriteError> {
        let values = vec![
            (self.field("Task", "title"), DbValue::Text(title.into())),
            (self.field("Task", "project"), DbValue::Text(project.into())),
        ];
        self.run(self.records.create(self.entity("Task"), caller, values))
    }

    fn count(&self, entity: EntityId, caller: &Caller, filters: Vec<Filter>) -> u64 {
        let q = ListQuery { filters, sort: vec![], limit: 500, after: None, count: true };
        self.run(self.records.list(entity, caller, &q)).unwrap().count.unwrap()
    }
}

#[test]
fn visibility_and_write_rules_are_the_same_on_both_backends() {
    for backend in Backend::ALL {
        let f = Fixture::new(backend, TASKBOARD);
        let (ann, bob, root) = (f.user("ann", "member"), f.user("bob", "member"), f.user("root", "admin"));
        let p = f.project(&ann, "Ann's");
        let t = f.task(&ann, &p, "write").unwrap();
        let tid = t["id"].as_str().unwrap();
        let task = f.entity("Task");
        assert!(f.run(f.records.get(task, &ann, tid)).unwrap().is_some(), "{backend:?}");
        assert!(f.run(f.records.get(task, &bob, tid)).unwrap().is_none(), "{backend:?}");
        assert!(f.run(f.records.get(task, &Caller::anonymous(), tid)).unwrap().is_none(), "{backend:?}");
        assert!(f.run(f.records.get(task, &root, tid)).unwrap().is_some(), "{backend:?}");
        assert_eq!(f.count(task, &bob, vec![]), 0, "{backend:?}");
        assert_eq!(f.count(task, &root, vec![]), 1, "{backend:?}");
        assert!(matches!(f.task(&bob, &p, "sneak"), Err(WriteError::ReferenceNotFound { field }) if field == "project"), "{backend:?}");
        let title = f.field("Task", "title");
        let set = |v: &str| vec![(title, DbValue::Text(v.into()))];
        assert!(matches!(f.run(f.records.update(task, &bob, tid, set("x"), None)), Err(WriteError::NotFound)), "{backend:?}");
        assert!(matches!(f.run(f.records.delete(task, &bob, tid, None)), Err(WriteError::NotFound)), "{backend:?}");
        assert!(matches!(f.run(f.records.update(task, &root, tid, set("x"), None)), Err(WriteError::Forbidden)), "{backend:?}");
        // Moving the task to Bob's project fails and changes nothing.
        let pb = f.project(&bob, "Bob's");
        let project = f.field("Task", "project");
        assert!(matches!(
            f.run(f.records.update(task, &ann, tid, vec![(project, DbValue::Text(pb))], None)),
            Err(WriteError::ReferenceNotFound { .. })
        ));
        let r = f.run(f.records.update(task, &ann, tid, set("v2"), Some(1))).unwrap();
        assert_eq!((r["version"].as_i64(), r["title"].as_str()), (Some(2), Some("v2")), "{backend:?}");
        assert!(matches!(f.run(f.records.update(task, &ann, tid, set("v3"), Some(1))), Err(WriteError::Stale { current_version: 2 })));
        assert!(matches!(f.run(f.records.delete(task, &ann, tid, Some(1))), Err(WriteError::Stale { .. })));
        f.run(f.records.delete(task, &ann, tid, Some(2))).unwrap();
        assert!(f.run(f.records.get(task, &ann, tid)).unwrap().is_none());
        // Another user's email is absent; one's own is there.
        let user = charter_model::USER;
        let me = f.run(f.records.get(user, &ann, "ann")).unwrap().unwrap();
        assert_eq!(me["email"], "ann@example.com", "{backend:?}");
    }
}

#[test]
fn records_read_back_identically_on_both_backends() {
    let mut seen = Vec::new();
    for backend in Backend::ALL {
        let f = Fixture::new(backend, TYPES);
        let u = f.user("u", "member");
        let thing = f.entity("Thing");
        let v = |n: &str| f.field("Thing", n);
        let values = vec![
            (v("label"), DbValue::Text("Ünïcode 'quoted' \"x\"".into())),
            (v("n"), DbValue::Integer(i64::MIN)),
            (v("price"), DbValue::Decimal("12345678901234567890.50".into())),
            (v("on"), DbValue::Boolean(true)),
            (v("day"), DbValue::Date("2024-02-29".into())),
            (v("at"), DbValue::DateTime("2025-03-01T08:00:00.500Z".into())),
            (v("doc"), DbValue::Json("{\"a\":[1,2,{\"b\":null}]}".into())),
            (v("kind"), DbValue::Text("b".into())),
        ];
        let mut r = f.run(f.records.create(thing, &u, values)).unwrap();
        for k in ["id", "created_at", "updated_at"] {
            assert!(r.remove(k).is_some());
        }
        seen.push(serde_json::Value::Object(r));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0]["price"], "12345678901234567890.50");
    assert_eq!(seen[0]["n"], i64::MIN);
    assert_eq!(seen[0]["site"], serde_json::Value::Null);
}

#[test]
fn filters_and_multi_key_sorts_run_in_the_database_alike() {
    for backend in Backend::ALL {
        let f = Fixture::new(backend, TYPES);
        let u = f.user("u", "member");
        let thing = f.entity("Thing");
        let v = |n: &str| f.field("Thing", n);
        let rows: [Seed; 6] = [
            ("alpha", Some(3), "2.5", true, "2025-01-01", "a"),
            ("Beta", Some(1), "10", false, "2025-02-01", "b"),
            ("gamma 100%", None, "0.5", true, "2024-12-31", "b"),
            ("d'elta; DROP TABLE things;--", Some(3), "2.50", false, "2025-01-01", "c"),
            ("under_score", Some(-7), "-1", true, "2025-06-30", "a"),
            ("x\\y", Some(0), "3", false, "2025-01-02", "c"),
        ];
        for (label, n, price, on, day, kind) in rows {
            let mut vals = vec![
                (v("label"), DbValue::Text(label.into())),
                (v("price"), DbValue::Decimal(price.into())),
                (v("on"), DbValue::Boolean(on)),
                (v("day"), DbValue::Date(day.into())),
                (v("kind"), DbValue::Text(kind.into())),
            ];
            if let Some(n) = n {
                vals.push((v("n"), DbValue::Integer(n)));
            }
            f.run(f.records.create(thing, &u, vals)).unwrap();
        }
        let flt = |field: &str, op, vals: Vec<DbValue>| Filter { field: v(field), op, values: vals };
        let c = |filters: Vec<Filter>| f.count(thing, &u, filters);
        let t = |s: &str| DbValue::Text(s.into());
        assert_eq!(c(vec![flt("n", FilterOp::Eq, vec![DbValue::Integer(3)])]), 2, "{backend:?}");
        assert_eq!(c(vec![flt("n", FilterOp::Ne, vec![DbValue::Integer(3)])]), 4, "{backend:?}: != keeps NULLs");
        assert_eq!(c(vec![flt("n", FilterOp::Gt, vec![DbValue::Integer(0)])]), 3, "{backend:?}");
        assert_eq!(c(vec![flt("n", FilterOp::Gte, vec![DbValue::Integer(0)])]), 4, "{backend:?}");
        assert_eq!(c(vec![flt("n", FilterOp::Lt, vec![DbValue::Integer(1)])]), 2, "{backend:?}");
        assert_eq!(c(vec![flt("n", FilterOp::Lte, vec![DbValue::Integer(1)])]), 3, "{backend:?}");
        assert_eq!(c(vec![flt("price", FilterOp::Eq, vec![DbValue::Decimal("2.5".into())])]), 2, "{backend:?}: 2.5 = 2.50");
        assert_eq!(c(vec![flt("price", FilterOp::Gt, vec![DbValue::Decimal("2.75".into())])]), 2, "{backend:?}: 10 > 2.75 numerically");
        assert_eq!(c(vec![flt("day", FilterOp::Gte, vec![DbValue::Date("2025-01-02".into())])]), 3, "{backend:?}");
        assert_eq!(c(vec![flt("kind", FilterOp::In, vec![t("a"), t("c")])]), 4, "{backend:?}");
        assert_eq!(c(vec![flt("on", FilterOp::Eq, vec![DbValue::Boolean(false)])]), 3, "{backend:?}");
        assert_eq!(c(vec![flt("label", FilterOp::Contains, vec![t("BETA")])]), 1, "{backend:?}");
        assert_eq!(c(vec![flt("label", FilterOp::Contains, vec![t("%")])]), 1, "{backend:?}: % is data");
        assert_eq!(c(vec![flt("label", FilterOp::Contains, vec![t("_")])]), 1, "{backend:?}: _ is data");
        assert_eq!(c(vec![flt("label", FilterOp::Contains, vec![t("\\")])]), 1, "{backend:?}: backslash is data");
        assert_eq!(c(vec![flt("label", FilterOp::Eq, vec![t("d'elta; DROP TABLE things;--")])]), 1, "{backend:?}");
        assert_eq!(c(vec![flt("label", FilterOp::Eq, vec![t("' OR '1'='1")])]), 0, "{backend:?}");
        assert_eq!(c(vec![flt("n", FilterOp::Eq, vec![DbValue::Null])]), 1, "{backend:?}");
        // Sort: n ascending (NULL first), then label descending.
        let q = ListQuery {
            filters: vec![],
            sort: vec![SortKey { field: v("n"), descending: false }, SortKey { field: v("label"), descending: true }],
            limit: 10,
            after: None,
            count: false,
        };
        let page = f.run(f.records.list(thing, &u, &q)).unwrap();
        let labels: Vec<&str> = page.items.iter().map(|r| r["label"].as_str().unwrap()).collect();
        assert_eq!(labels, ["gamma 100%", "under_score", "x\\y", "Beta", "d'elta; DROP TABLE things;--", "alpha"], "{backend:?}");
        assert_eq!(c(vec![]), 6, "{backend:?}: nothing was dropped");
    }
}

#[test]
fn cursors_visit_every_row_once_while_rows_are_inserted_and_deleted() {
    for backend in Backend::ALL {
        for descending in [false, true] {
            let f = Fixture::new(backend, TYPES);
            let u = f.user("u", "member");
            let thing = f.entity("Thing");
            let (label, n) = (f.field("Thing", "label"), f.field("Thing", "n"));
            let mut ids = Vec::new();
            for i in 0..37 {
                let mut vals = vec![(label, DbValue::Text(format!("r{i:02}")))];
                if i % 5 != 0 {
                    vals.push((n, DbValue::Integer(i % 4)));
                }
                ids.push(f.run(f.records.create(thing, &u, vals)).unwrap()["id"].as_str().unwrap().to_string());
            }
            let mut q = ListQuery {
                filters: vec![],
                sort: vec![SortKey { field: n, descending }, SortKey { field: label, descending: !descending }],
                limit: 5,
                after: None,
                count: false,
            };
            let mut seen = HashSet::new();
            let mut deleted = HashSet::new();
            let mut pages = 0;
            loop {
                let page = f.run(f.records.list(thing, &u, &q)).unwrap();
                for item in &page.items {
                    assert!(seen.insert(item["id"].as_str().unwrap().to_string()), "{backend:?}: a row twice");
                }
                pages += 1;
                // A row is added and a row not yet seen is deleted.
                f.run(f.records.create(thing, &u, vec![(label, DbValue::Text(format!("new{pages}"))), (n, DbValue::Integer(1))])).unwrap();
                if let Some(victim) = ids.iter().find(|id| !seen.contains(*id) && !deleted.contains(*id)).cloned() {
                    f.run(f.records.delete(thing, &u, &victim, None)).unwrap();
                    deleted.insert(victim);
                }
                match page.next {
                    Some(next) => q.after = Some(next),
                    None => break,
                }
                assert!(pages < 40);
            }
            for id in &ids {
                assert_eq!(seen.contains(id), !deleted.contains(id), "{backend:?} desc={descending}: row {id}");
            }
        }
    }
}

#[test]
fn eight_writers_with_if_match_lose_no_update() {
    let spec = "# C\n\n## Entities\n\n### Counter\n| field | type | rules |\n|---|---|---|\n| n | int | required |\n\nPermissions:\n- read, create, update: signed in\n";
    for backend in Backend::ALL {
        let f = Fixture::new(backend, spec);
        let me = f.user("u", "member");
        let (counter, n) = (f.entity("Counter"), f.field("Counter", "n"));
        let id = f.run(f.records.create(counter, &me, vec![(n, DbValue::Integer(0))])).unwrap()["id"].as_str().unwrap().to_string();
        let records = &f.records;
        let stale = std::sync::atomic::AtomicUsize::new(0);
        f.run(async {
            let writer = || async {
                for _ in 0..10 {
                    loop {
                        let cur = records.get(counter, &me, &id).await.unwrap().unwrap();
                        let (v, version) = (cur["n"].as_i64().unwrap(), cur["version"].as_i64().unwrap());
                        match records.update(counter, &me, &id, vec![(n, DbValue::Integer(v + 1))], Some(version)).await {
                            Ok(_) => break,
                            Err(WriteError::Stale { .. }) => {
                                stale.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                tokio::task::yield_now().await;
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                }
            };
            let (a, b, c, d) = tokio::join!(writer(), writer(), writer(), writer());
            let (e, g, h, i) = tokio::join!(writer(), writer(), writer(), writer());
            let _ = (a, b, c, d, e, g, h, i);
        });
        let cur = f.run(records.get(counter, &me, &id)).unwrap().unwrap();
        assert_eq!(cur["n"], 80, "{backend:?}");
        assert_eq!(cur["version"], 81, "{backend:?}");
    }
}

#[test]
fn unique_restrict_and_cascade_are_enforced_by_the_database() {
    let spec = "# U\n\n## Entities\n\n### Team\n| field | type | rules |\n|---|---|---|\n| code | text | required, unique |\n\nPermissions:\n- read, create, update, delete: signed in\n\n### Member\n| field | type | rules |\n|---|---|---|\n| team | Team | required |\n\nPermissions:\n- read, create, delete: signed in\n\n### Note\n| field | type | rules |\n|---|---|---|\n| team | Team | on delete cascade |\n\nPermissions:\n- read, create: signed in\n";
    for backend in Backend::ALL {
        let f = Fixture::new(backend, spec);
        let u = f.user("u", "member");
        let (team, member, note) = (f.entity("Team"), f.entity("Member"), f.entity("Note"));
        let code = f.field("Team", "code");
        let t1 = f.run(f.records.create(team, &u, vec![(code, DbValue::Text("x".into()))])).unwrap();
        let dup = f.run(f.records.create(team, &u, vec![(code, DbValue::Text("x".into()))]));
        assert!(matches!(dup, Err(WriteError::Unique { ref field }) if field == "code"), "{backend:?}: {dup:?}");
        let t2 = f.run(f.records.create(team, &u, vec![(code, DbValue::Text("y".into()))])).unwrap();
        let clash = f.run(f.records.update(team, &u, t2["id"].as_str().unwrap(), vec![(code, DbValue::Text("x".into()))], None));
        assert!(matches!(clash, Err(WriteError::Unique { .. })), "{backend:?}: {clash:?}");
        let tid = t1["id"].as_str().unwrap().to_string();
        let m = f.run(f.records.create(member, &u, vec![(f.field("Member", "team"), DbValue::Text(tid.clone()))])).unwrap();
        f.run(f.records.create(note, &u, vec![(f.field("Note", "team"), DbValue::Text(tid.clone()))])).unwrap();
        assert!(matches!(f.run(f.records.delete(team, &u, &tid, None)), Err(WriteError::Restricted)), "{backend:?}");
        f.run(f.records.delete(member, &u, m["id"].as_str().unwrap(), None)).unwrap();
        f.run(f.records.delete(team, &u, &tid, None)).unwrap();
        assert_eq!(f.count(note, &u, vec![]), 0, "{backend:?}: notes cascade");
    }
}

#[test]
fn idempotency_claims_behave_alike() {
    for backend in Backend::ALL {
        let f = Fixture::new(backend, TYPES);
        let r = &f.records;
        let now = 1_700_000_000_000;
        assert_eq!(f.run(r.idempotency_claim("user:u", "k1", "h1", now)).unwrap(), IdempotencyClaim::New, "{backend:?}");
        assert_eq!(f.run(r.idempotency_claim("user:u", "k1", "h1", now)).unwrap(), IdempotencyClaim::InFlight, "{backend:?}");
        assert_eq!(f.run(r.idempotency_claim("user:u", "k1", "h2", now)).unwrap(), IdempotencyClaim::Mismatch, "{backend:?}");
        assert_eq!(f.run(r.idempotency_claim("user:v", "k1", "h2", now)).unwrap(), IdempotencyClaim::New, "{backend:?}: keys are per user");
        f.run(r.idempotency_finish("user:u", "k1", "{\"id\":\"x\"}")).unwrap();
        assert_eq!(f.run(r.idempotency_claim("user:u", "k1", "h1", now + 1000)).unwrap(), IdempotencyClaim::Done("{\"id\":\"x\"}".into()));
        let day = 24 * 60 * 60 * 1000;
        assert_eq!(
            f.run(r.idempotency_claim("user:u", "k1", "h1", now + day + 1)).unwrap(),
            IdempotencyClaim::New,
            "{backend:?}: kept 24 h"
        );
        // A claim whose process died holds its key for the lease only.
        assert_eq!(f.run(r.idempotency_claim("user:w", "k2", "h1", now)).unwrap(), IdempotencyClaim::New);
        let lease = IDEMPOTENCY_LEASE_MS;
        assert_eq!(
            f.run(r.idempotency_claim("user:w", "k2", "h1", now + lease)).unwrap(),
            IdempotencyClaim::InFlight,
            "{backend:?}: within the lease"
        );
        assert_eq!(
            f.run(r.idempotency_claim("user:w", "k2", "h2", now + lease + 1)).unwrap(),
            IdempotencyClaim::Mismatch,
            "{backend:?}: another request never takes a claim over"
        );
        assert_eq!(
            f.run(r.idempotency_claim("user:w", "k2", "h1", now + lease + 1)).unwrap(),
            IdempotencyClaim::New,
            "{backend:?}: past the lease the same request takes the claim over"
        );
        assert_eq!(
            f.run(r.idempotency_claim("user:w", "k2", "h1", now + lease + 2)).unwrap(),
            IdempotencyClaim::InFlight,
            "{backend:?}: and holds it anew"
        );
        f.run(r.idempotency_abandon("user:u", "k1")).unwrap();
        assert_eq!(
            f.run(r.idempotency_claim("user:u", "k1", "h9", now + day + 2)).unwrap(),
            IdempotencyClaim::New,
            "{backend:?}: abandoned"
        );
    }
}

#[test]
fn rate_limits_count_alike_and_are_shared_by_every_handle_on_the_database() {
    use charter_store::auth::{RateLimited, RateMode};
    for backend in Backend::ALL {
        let f = Fixture::new(backend, TYPES);
        let auth = f.records.auth().unwrap();
        // A second handle on the same database: another app process.
        let other = f.db.database().records(f.model.clone()).unwrap().auth().unwrap();
        let (window, max) = (60_000, 3);
        let k = vec!["signup_ip:a".to_string()];
        let t0 = 1_700_000_000_000;
        for i in 0..3 {
            let store = if i % 2 == 0 { &auth } else { &other };
            assert_eq!(f.run(store.rate(&k, t0 + i, window, max, RateMode::Hit)).unwrap(), None, "{backend:?} hit {i}");
        }
        let refused = f.run(other.rate(&k, t0 + 1_000, window, max, RateMode::Hit)).unwrap();
        assert_eq!(refused, Some(RateLimited { key: 0, retry_after_ms: 59_000 }), "{backend:?}: counted across handles");
        // Refusals are not counted: room again once the first hit leaves the window.
        assert_eq!(f.run(auth.rate(&k, t0 + window, window, max, RateMode::Hit)).unwrap(), None, "{backend:?}");
        assert!(f.run(auth.rate(&k, t0 + window, window, max, RateMode::Check)).unwrap().is_some(), "{backend:?}: full again");

        // Several keys: the one that waits longest is named; check counts nothing.
        let keys = vec!["login_ip:b".to_string(), "login_account:c".to_string()];
        for i in 0..3 {
            f.run(auth.rate(&keys[1..], t0 + 10 * i, window, max, RateMode::Record)).unwrap();
        }
        assert_eq!(f.run(auth.rate(&keys, t0 + 100, window, max, RateMode::Check)).unwrap().map(|r| r.key), Some(1), "{backend:?}");
        assert_eq!(f.run(auth.rate(&keys[..1], t0 + 100, window, max, RateMode::Check)).unwrap(), None, "{backend:?}");
        // Clearing a key frees it; other keys keep their counts.
        f.run(other.rate_clear("login_account:c")).unwrap();
        assert_eq!(f.run(auth.rate(&keys, t0 + 100, window, max, RateMode::Check)).unwrap(), None, "{backend:?}");
        assert!(f.run(auth.rate(&k, t0 + window, window, max, RateMode::Check)).unwrap().is_some(), "{backend:?}");
        // Purging forgets hits before the horizon.
        f.run(auth.purge(t0 + 10 * window, 1, 0, t0 + 10 * window)).unwrap();
        assert_eq!(f.run(auth.rate(&k, t0 + window, window, max, RateMode::Check)).unwrap(), None, "{backend:?}: purged");
    }
}

#[test]
fn concurrent_hits_never_exceed_the_limit() {
    use charter_store::auth::RateMode;
    for backend in Backend::ALL {
        let f = Fixture::new(backend, TYPES);
        let auths: Vec<_> = (0..4).map(|_| Arc::new(f.db.database().records(f.model.clone()).unwrap().auth().unwrap())).collect();
        let k = vec!["login_account:race".to_string()];
        let allowed = f.run(async {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..40 {
                let (auth, k) = (auths[i % auths.len()].clone(), k.clone());
                set.spawn(async move { auth.rate(&k, 1_000 + i as i64, 60_000, 5, RateMode::Hit).await.unwrap().is_none() });
            }
            set.join_all().await.into_iter().filter(|ok| *ok).count()
        });
        assert_eq!(allowed, 5, "{backend:?}: exactly the limit got through");
    }
}

#[test]
fn queued_mail_is_claimed_once_retried_and_taken_over_after_a_lease() {
    use charter_store::auth::{AuditEntry, NewToken, OutboxMail, TokenKind};
    for backend in Backend::ALL {
        let f = Fixture::new(backend, TYPES);
        f.user("u1", "member");
        let auth = f.records.auth().unwrap();
        let other = f.db.database().records(f.model.clone()).unwrap().auth().unwrap();
        let t0 = 1_700_000_000_000;
        let mail =
            |to: &str| OutboxMail { to: to.into(), subject: "s".into(), text: "t".into(), html: "h".into(), sent_at: t0, queued: true };
        let audit = AuditEntry { at: t0, event: "test".into(), user_id: None, email: None, ip: None, detail: None };
        let token = |b: u8| NewToken { hash: vec![b; 32], kind: TokenKind::Verify, created_at: t0, expires_at: t0 + 1_000_000 };
        f.run(auth.issue_token("u1", token(1), Some(mail("a@example.com")), audit.clone())).unwrap();
        assert_eq!(f.run(auth.queued_mail()).unwrap(), 1, "{backend:?}");
        assert!(f.run(auth.outbox(10)).unwrap().is_empty(), "{backend:?}: queued mail is not the dev outbox");

        let lease = 60_000;
        let claimed = f.run(auth.claim_mail(t0, lease)).unwrap().expect("due");
        assert_eq!((claimed.to.as_str(), claimed.attempts), ("a@example.com", 0));
        assert!(f.run(other.claim_mail(t0 + 1, lease)).unwrap().is_none(), "{backend:?}: one sender at a time");
        // The sender died: after its lease another takes the mail.
        let again = f.run(other.claim_mail(t0 + lease, lease)).unwrap().expect("lease over");
        assert_eq!(again.id, claimed.id);
        // A failure schedules a retry; nothing is due before it.
        f.run(other.mail_failed(again.id, Some(t0 + lease + 2_000))).unwrap();
        assert!(f.run(auth.claim_mail(t0 + lease + 1_999, lease)).unwrap().is_none(), "{backend:?}");
        let retry = f.run(auth.claim_mail(t0 + lease + 2_000, lease)).unwrap().expect("retry due");
        assert_eq!(retry.attempts, 1, "{backend:?}");
        f.run(auth.mail_sent(retry.id)).unwrap();
        assert_eq!(f.run(auth.queued_mail()).unwrap(), 0, "{backend:?}: sent mail leaves the queue");

        // Given up: deleted.
        f.run(auth.issue_token("u1", token(2), Some(mail("b@example.com")), audit.clone())).unwrap();
        let m = f.run(auth.claim_mail(t0, lease)).unwrap().unwrap();
        f.run(auth.mail_failed(m.id, None)).unwrap();
        assert_eq!(f.run(auth.queued_mail()).unwrap(), 0, "{backend:?}");
    }
}
