//! Query strings, cursors and bodies from anywhere: parsing never panics,
//! what it accepts is well-formed, and a cursor with any bit changed is
//! refused. Property tests over generated input.

use charter_app::records::IfMatch;
use charter_app::{App, AppConfig, TestClock};
use charter_store::{sqlite::SqliteDb, Caller, Database, MigrateOptions};
use proptest::prelude::*;
use std::sync::Arc;

const TASKBOARD: &str = include_str!("../../../examples/taskboard/app.md");
const NOTES: &str = "# N\n\n## Entities\n\n### Note\n| field | type | rules |\n|---|---|---|\n| body | text | required |\n\nPermissions:\n- read, create: anyone\n";

fn app(spec: &str) -> (App, tempfile::TempDir) {
    let model = Arc::new(charter_model::compile(spec).model.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteDb::open(&dir.path().join("app.db"), false).unwrap();
    db.migrate(&model, MigrateOptions::default()).unwrap();
    let app = App::new(model, AppConfig::dev("http://127.0.0.1"), Database::Sqlite(db), Arc::new(TestClock::new())).unwrap();
    (app, dir)
}

fn escape(v: &str) -> String {
    v.replace('%', "%25").replace('&', "%26").replace('#', "%23").replace('+', "%2B")
}

fn query_part() -> impl Strategy<Value = String> {
    let keys = prop::sample::select(vec![
        "title",
        "done",
        "priority",
        "due",
        "notes",
        "project",
        "id",
        "created_at",
        "version",
        "sort",
        "limit",
        "after",
        "count",
        "title__contains",
        "due__gte",
        "version__lt",
        "priority__in",
        "done__ne",
        "title__zz",
        "project.owner",
        "x",
    ]);
    let values = prop_oneof![
        Just(String::new()),
        "[a-z0-9,._-]{0,12}",
        "-?[0-9]{1,25}",
        Just("2025-02-30".to_string()),
        Just("2025-01-01T00:00:00Z".to_string()),
        Just("-created_at,title".to_string()),
        ".{0,20}",
    ];
    (keys, values).prop_map(|(k, v)| format!("{k}={}", escape(&v)))
}

fn any_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::String),
        prop::sample::select(vec!["low", "high", "2025-01-01", "1.5", "x"]).prop_map(|s| serde_json::Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let keys = prop::sample::select(vec!["title", "done", "priority", "due", "notes", "project", "id", "zzz"]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::vec((keys, inner), 0..6)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn list_queries_never_panic_and_accepted_ones_are_bounded(parts in prop::collection::vec(query_part(), 0..6)) {
        let (app, _dir) = app(TASKBOARD);
        let task = app.model.entity_by_name("Task").unwrap().id;
        if let Ok((q, _)) = app.parse_list_query(task, &parts.join("&")) {
            prop_assert!((1..=500).contains(&q.limit));
            prop_assert!(q.after.is_none(), "only cursors the app signed are accepted");
            prop_assert!(q.filters.iter().all(|f| f.values.len() <= 100));
        }
    }

    #[test]
    fn a_cursor_with_any_bit_changed_is_refused(flip in 0usize..1000, bit in 0u8..7) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (app, _dir) = app(NOTES);
        let note = app.model.entity_by_name("Note").unwrap().id;
        let anyone = Caller::anonymous();
        let cursor = rt.block_on(async {
            for i in 0..3 {
                app.create_record(&anyone, note, &serde_json::json!({"body": format!("n{i}")})).await.unwrap();
            }
            app.list_records(&anyone, note, "limit=1").await.unwrap().next.expect("a next page")
        });
        let real = format!("limit=1&after={cursor}");
        prop_assert!(app.parse_list_query(note, &real).is_ok(), "the real cursor works");
        let mut bytes = cursor.into_bytes();
        let i = flip % bytes.len();
        bytes[i] ^= 1 << bit;
        let edited = String::from_utf8_lossy(&bytes).into_owned();
        let query = format!("limit=1&after={}", escape(&edited));
        prop_assert!(app.parse_list_query(note, &query).is_err(), "accepted {}", edited);
    }

    #[test]
    fn bodies_never_panic(body in any_json()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (app, _dir) = app(TASKBOARD);
        let task = app.model.entity_by_name("Task").unwrap().id;
        let member = Caller::user("nobody", app.model.role_by_name("member").unwrap());
        let _ = rt.block_on(app.create_record(&member, task, &body));
        let _ = rt.block_on(app.update_record(&member, task, "nope", &body, IfMatch::Absent));
    }
}
