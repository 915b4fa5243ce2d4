//! The SQL a permission rule compiles to matches the rule's meaning:
//! random rules over random rows, checked against a reference evaluator
//! with three-valued logic (a comparison with a missing value is unknown;
//! only true admits a row). Guards the index-friendly rewrites and the
//! constant folding in `records.rs`.

use charter_model::{CompareOp, Expr, Value};
use charter_store::sqlite::SqliteDb;
use charter_store::*;
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

const USERS: [&str; 3] = ["u0", "u1", "u2"];

fn spec(rule: &str) -> String {
    format!(
        "# R\n\n## Roles\n- member (default): all\n- admin: staff\n\n## Entities\n\n### Team\n| field | type | rules |\n|---|---|---|\n| name | text | |\n| lead | User | |\n\nPermissions:\n- read: anyone\n\n### Doc\n| field | type | rules |\n|---|---|---|\n| title | text | |\n| team | Team | |\n| owner | User | |\n| level | int | |\n| flag | bool | |\n| kind | enum(a, b) | |\n\nPermissions:\n- read: {rule}\n"
    )
}

fn atom() -> impl Strategy<Value = String> {
    let user_ref = prop_oneof![Just("owner"), Just("team.lead")];
    prop_oneof![
        Just("anyone".to_string()),
        Just("signed in".to_string()),
        Just("admin".to_string()),
        Just("member".to_string()),
        (user_ref, prop_oneof![Just("="), Just("!=")]).prop_map(|(p, op)| format!("{p} {op} me")),
        (prop_oneof![Just("="), Just("!=")], 0..3i64).prop_map(|(op, n)| format!("level {op} {n}")),
        (prop_oneof![Just("="), Just("!=")], any::<bool>()).prop_map(|(op, b)| format!("flag {op} {b}")),
        (prop_oneof![Just("="), Just("!=")], prop_oneof![Just("a"), Just("b")]).prop_map(|(op, m)| format!("kind {op} {m}")),
        (prop_oneof![Just("="), Just("!=")], prop_oneof![Just("x"), Just("y")]).prop_map(|(op, t)| format!("team.name {op} \"{t}\"")),
    ]
}

fn rule() -> impl Strategy<Value = String> {
    atom().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| format!("not ({c})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a}) or ({b})")),
        ]
    })
}

#[derive(Debug, Clone)]
struct Doc {
    team: Option<usize>,
    owner: Option<usize>,
    level: Option<i64>,
    flag: Option<bool>,
    kind: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct Team {
    name: Option<&'static str>,
    lead: Option<usize>,
}

fn team() -> impl Strategy<Value = Team> {
    (prop::option::of(prop_oneof![Just("x"), Just("y")]), prop::option::of(0..3usize)).prop_map(|(name, lead)| Team { name, lead })
}

fn doc() -> impl Strategy<Value = Doc> {
    (
        prop::option::of(0..3usize),
        prop::option::of(0..3usize),
        prop::option::of(0..3i64),
        prop::option::of(any::<bool>()),
        prop::option::of(prop_oneof![Just("a"), Just("b")]),
    )
        .prop_map(|(team, owner, level, flag, kind)| Doc { team, owner, level, flag, kind })
}

/// A value as the reference evaluator sees it.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    Text(String),
    Int(i64),
    Bool(bool),
}

fn lookup(path: &[&str], d: &Doc, teams: &[Team]) -> V {
    let user = |u: Option<usize>| u.map_or(V::Null, |u| V::Text(USERS[u].into()));
    match path {
        ["owner"] => user(d.owner),
        ["level"] => d.level.map_or(V::Null, V::Int),
        ["flag"] => d.flag.map_or(V::Null, V::Bool),
        ["kind"] => d.kind.map_or(V::Null, |k| V::Text(k.into())),
        ["team", "lead"] => d.team.map_or(V::Null, |t| user(teams[t].lead)),
        ["team", "name"] => d.team.and_then(|t| teams[t].name).map_or(V::Null, |n| V::Text(n.into())),
        other => panic!("unexpected path {other:?}"),
    }
}

/// Three-valued evaluation: `None` is unknown.
fn eval(e: &Expr, d: &Doc, teams: &[Team], caller: &Caller) -> Option<bool> {
    match e {
        Expr::Anyone => Some(true),
        Expr::SignedIn => Some(caller.user.is_some()),
        Expr::Role { role } => Some(caller.user.is_some() && caller.role == Some(*role)),
        Expr::Not { expr } => eval(expr, d, teams, caller).map(|b| !b),
        Expr::And { items } => {
            let vals: Vec<Option<bool>> = items.iter().map(|i| eval(i, d, teams, caller)).collect();
            if vals.contains(&Some(false)) {
                Some(false)
            } else if vals.contains(&None) {
                None
            } else {
                Some(true)
            }
        }
        Expr::Or { items } => {
            let vals: Vec<Option<bool>> = items.iter().map(|i| eval(i, d, teams, caller)).collect();
            if vals.contains(&Some(true)) {
                Some(true)
            } else if vals.contains(&None) {
                None
            } else {
                Some(false)
            }
        }
        Expr::Compare { path, op, value } => {
            let names: Vec<&str> = path.steps.iter().map(|s| s.name.as_str()).collect();
            let left = lookup(&names, d, teams);
            let right = match value {
                Value::Me => caller.user.clone().map_or(V::Null, V::Text),
                Value::Int(n) => V::Int(*n),
                Value::Bool(b) => V::Bool(*b),
                Value::Enum(m) | Value::Text(m) => V::Text(m.clone()),
                other => panic!("unexpected value {other:?}"),
            };
            if left == V::Null || right == V::Null {
                return None;
            }
            Some(match op {
                CompareOp::Eq => left == right,
                CompareOp::Ne => left != right,
            })
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sql_rules_admit_exactly_the_rows_the_rule_admits(rule in rule(), teams in prop::collection::vec(team(), 3), docs in prop::collection::vec(doc(), 1..12)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let compiled = charter_model::compile(&spec(&rule));
        let model = Arc::new(compiled.model.unwrap_or_else(|| panic!("{rule}: {:?}", compiled.diagnostics)));
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDb::open(&dir.path().join("app.db"), false).unwrap();
        db.migrate(&model, MigrateOptions::default()).unwrap();
        {
            let conn = db.connect().unwrap();
            let ts = "2025-01-01T00:00:00.000Z";
            for (i, u) in USERS.iter().enumerate() {
                let role = if i == 2 { "admin" } else { "member" };
                conn.execute("INSERT INTO users (id, email, role, verified, created_at, updated_at, version) VALUES (?1, ?1 || '@x.org', ?2, 1, ?3, ?3, 1)", rusqlite::params![u, role, ts]).unwrap();
            }
            for (i, t) in teams.iter().enumerate() {
                conn.execute("INSERT INTO teams (id, name, lead, created_at, updated_at, version) VALUES (?1, ?2, ?3, ?4, ?4, 1)", rusqlite::params![format!("t{i}"), t.name, t.lead.map(|u| USERS[u]), ts]).unwrap();
            }
            for (i, d) in docs.iter().enumerate() {
                conn.execute(
                    "INSERT INTO docs (id, team, owner, level, flag, kind, created_at, updated_at, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 1)",
                    rusqlite::params![format!("d{i:02}"), d.team.map(|t| format!("t{t}")), d.owner.map(|u| USERS[u]), d.level, d.flag, d.kind, ts],
                ).unwrap();
            }
        }
        let records = Database::Sqlite(db).records(model.clone()).unwrap();
        let doc_entity = model.entity_by_name("Doc").unwrap();
        let expr = doc_entity.permissions.read.clone().unwrap();
        let roles: HashMap<&str, _> = [("member", model.role_by_name("member").unwrap()), ("admin", model.role_by_name("admin").unwrap())].into();
        let callers = vec![Caller::anonymous(), Caller::user("u0", roles["member"]), Caller::user("u1", roles["member"]), Caller::user("u2", roles["admin"])];
        for caller in &callers {
            let q = ListQuery { filters: vec![], sort: vec![], limit: 100, after: None, count: false };
            let page = rt.block_on(records.list(doc_entity.id, caller, &q)).unwrap();
            let got: BTreeSet<String> = page.items.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
            let want: BTreeSet<String> = docs.iter().enumerate().filter(|(_, d)| eval(&expr, d, &teams, caller) == Some(true)).map(|(i, _)| format!("d{i:02}")).collect();
            prop_assert_eq!(&got, &want, "rule `{}` for {:?}", rule, caller);
            for (i, d) in docs.iter().enumerate() {
                let visible = rt.block_on(records.get(doc_entity.id, caller, &format!("d{i:02}"))).unwrap().is_some();
                prop_assert_eq!(visible, eval(&expr, d, &teams, caller) == Some(true));
            }
        }
    }
}
