//! Spec evolutions applied to databases holding data: the plan each one
//! gets (snapshotted with its check results), whether it applies, and that
//! every row and every unchanged value survives it. A migration that does
//! not apply must leave the database exactly as it was.
//!
//! Every evolution runs on SQLite and on PostgreSQL (`./scripts/test`
//! starts one), and both must produce the same snapshot.

mod common;

use charter_model::AppModel;
use charter_schema::{render_plan, schema_of, DbValue, Verdict};
use charter_store::MigrateOptions;
use common::{Backend, Dump, TestDb};
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------
// The specs and the data

fn model(src: &str) -> AppModel {
    let c = charter_model::compile(src);
    c.model.unwrap_or_else(|| panic!("spec does not compile: {:#?}\n{src}", c.diagnostics))
}

const BASE: &str = "# Shop

Customers place orders.

## Roles
- member (default): everyone who signs up
- admin: runs the shop

## Entities

### Customer
| field | type | rules |
|---|---|---|
| name | text | required, 1..40 |
| email | email | |
| age | int | |
| born | date | |
| vip | bool | default false |
| tier | enum(bronze, silver, gold) | default bronze |
| nickname | text | |

Permissions:
- read: signed in

### Order
| field | type | rules |
|---|---|---|
| customer | Customer | required |
| code | text | |
| total | int | |
| placed | date | |
| paid | bool | |
| status | enum(open, sent, done, lost) | |

Permissions:
- read: signed in

### Tag
| field | type | rules |
|---|---|---|
| label | text | required |

Permissions:
- read: signed in
";

/// `src` with each `(from, to)` replaced once; every `from` must be there.
fn edit(src: &str, edits: &[(&str, &str)]) -> String {
    let mut s = src.to_string();
    for (from, to) in edits {
        assert!(s.contains(from), "the spec has no {from:?}");
        s = s.replacen(from, to, 1);
    }
    s
}

struct Row {
    table: &'static str,
    values: Vec<(String, DbValue)>,
}

fn text(s: &str) -> DbValue {
    DbValue::Text(s.into())
}
fn int(n: i64) -> DbValue {
    DbValue::Integer(n)
}
fn boolean(b: bool) -> DbValue {
    DbValue::Boolean(b)
}
fn date(s: &str) -> DbValue {
    DbValue::Date(s.into())
}
fn null() -> DbValue {
    DbValue::Null
}

fn row(table: &'static str, id: &str, fields: Vec<(&str, DbValue)>) -> Row {
    let stamp = DbValue::DateTime(format!("2025-01-{:02}T10:00:00.000Z", 1 + id.bytes().map(u32::from).sum::<u32>() % 28));
    let mut values =
        vec![("id".to_string(), text(id)), ("created_at".into(), stamp.clone()), ("updated_at".into(), stamp), ("version".into(), int(1))];
    values.extend(fields.into_iter().map(|(c, v)| (c.to_string(), v)));
    Row { table, values }
}

fn set(rows: &mut [Row], id: &str, column: &str, value: DbValue) {
    let row = rows.iter_mut().find(|r| r.values[0].1 == text(id)).unwrap_or_else(|| panic!("no row {id}"));
    let slot = row.values.iter_mut().find(|(c, _)| c == column).unwrap_or_else(|| panic!("row {id} has no {column}"));
    slot.1 = value;
}

/// Rows for `BASE`: NULLs, unicode, quotes, duplicates and extremes where
/// the scenarios need them; `tags` stays empty.
fn base_rows() -> Vec<Row> {
    let customer = |id, name, email: Option<&str>, age, born: Option<&str>, vip, tier: Option<&str>, nickname: Option<&str>| {
        row(
            "customers",
            id,
            vec![
                ("name", text(name)),
                ("email", email.map_or(null(), text)),
                ("age", int(age)),
                ("born", born.map_or(null(), date)),
                ("vip", boolean(vip)),
                ("tier", tier.map_or(null(), text)),
                ("nickname", nickname.map_or(null(), text)),
            ],
        )
    };
    let order =
        |id, customer: &str, code: Option<&str>, total: Option<i64>, placed: Option<&str>, paid: Option<bool>, status: Option<&str>| {
            row(
                "orders",
                id,
                vec![
                    ("customer", text(customer)),
                    ("code", code.map_or(null(), text)),
                    ("total", total.map_or(null(), int)),
                    ("placed", placed.map_or(null(), date)),
                    ("paid", paid.map_or(null(), boolean)),
                    ("status", status.map_or(null(), text)),
                ],
            )
        };
    vec![
        row(
            "users",
            "u1",
            vec![("email", text("ann@example.com")), ("name", text("Ann")), ("role", text("member")), ("verified", boolean(true))],
        ),
        customer("c1", "Ada Lovelace", Some("ada@example.com"), 36, Some("1815-12-10"), true, Some("gold"), Some("ace")),
        customer("c2", "Bo", Some("bo@example.com"), 0, Some("2000-02-29"), false, Some("silver"), None),
        customer("c3", "Chidi Anagonye", Some("chidi@example.com"), 41, None, false, Some("bronze"), Some("ace")),
        customer(
            "c4",
            "Dörte \"Dee\" O'Brien",
            Some("dee@example.com"),
            9_007_199_254_740_993,
            Some("1990-06-15"),
            true,
            Some("gold"),
            Some("dee"),
        ),
        customer("c5", "Eve", None, -1, Some("1970-01-01"), false, None, Some("dee")),
        order("o1", "c1", Some("1001"), Some(1999), Some("2025-01-02"), Some(true), Some("sent")),
        order("o2", "c1", Some("1002"), Some(0), None, Some(false), Some("open")),
        order("o3", "c2", Some("1003"), Some(-5), Some("2024-12-31"), None, Some("done")),
        order("o4", "c3", None, None, Some("2025-03-01"), Some(true), None),
        order("o5", "c4", Some("1005"), Some(i64::MAX), Some("2025-01-02"), Some(false), Some("sent")),
        order("o6", "c4", Some("1006"), Some(250), Some("2024-02-29"), Some(false), Some("done")),
    ]
}

// ---------------------------------------------------------------------------
// Running one evolution

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// An empty plan: nothing to do, nothing recorded.
    Nothing,
    /// Applies without `allow_destructive`.
    Safe,
    /// Blocked without `allow_destructive`, applied with it.
    Destructive,
    /// Refused whatever the flags.
    Refused,
}

struct Evolution {
    name: &'static str,
    /// One line for the person reading the snapshot.
    about: &'static str,
    before: String,
    after: String,
    expect: Expect,
    rows: Vec<Row>,
    /// `(table, column)` (names after the migration) whose values the
    /// migration changes on purpose; the scenario checks them itself.
    changed: Vec<(&'static str, &'static str)>,
}

struct Applied {
    before: Dump,
    after: Dump,
}

impl Evolution {
    fn new(name: &'static str, about: &'static str, after: String, expect: Expect) -> Evolution {
        Evolution { name, about, before: BASE.to_string(), after, expect, rows: base_rows(), changed: vec![] }
    }

    fn rows(mut self, f: impl FnOnce(&mut Vec<Row>)) -> Evolution {
        f(&mut self.rows);
        self
    }

    fn changed(mut self, columns: &[(&'static str, &'static str)]) -> Evolution {
        self.changed.extend_from_slice(columns);
        self
    }

    fn run(self, db: &TestDb) -> Applied {
        let old = model(&self.before);
        let r = db.migrate(&old, opts(false)).unwrap();
        assert!(r.applied, "{r:#?}");
        for row in &self.rows {
            db.insert(row.table, &row.values);
        }
        let before = db.dump();
        let snapshot = step(db, &self.before, &self.after, self.expect, &before, &self.changed);
        snapshot_as(self.name, format!("{}\n\n{snapshot}", self.about));
        Applied { before, after: db.dump() }
    }
}

/// Snapshots `text` as `tests/snapshots/evolutions__{name}.snap`: the same
/// file for every backend, so they must plan and check alike.
fn snapshot_as(name: &str, text: String) {
    insta::with_settings!({ omit_expression => true, prepend_module_to_snapshot => false, snapshot_path => "snapshots" }, {
        insta::assert_snapshot!(format!("evolutions__{name}"), text);
    });
}

fn opts(allow_destructive: bool) -> MigrateOptions {
    MigrateOptions { allow_destructive, spec_hash: "test".into(), ..Default::default() }
}

/// Migrates from `old` to `new` on a database holding `before` (its dump)
/// and checks everything the evolution promises; returns the text to
/// snapshot: the spec change, the plan with its check results, the outcome.
fn step(db: &TestDb, old_src: &str, new_src: &str, expect: Expect, before: &Dump, changed: &[(&str, &str)]) -> String {
    let (old, new) = (&model(old_src), &model(new_src));
    let history = db.history().len();
    let unchanged = |why: &str| {
        assert_eq!(&db.dump(), before, "{why}: the data changed");
        assert_eq!(db.schema_differences(old), Vec::<String>::new(), "{why}: the schema changed");
        assert_eq!(db.history().len(), history, "{why}: a migration was recorded");
    };

    // `charter plan`: everything checked and executed, then rolled back.
    let dry = db.migrate(new, MigrateOptions { dry_run: true, ..opts(true) }).unwrap();
    assert!(!dry.applied && dry.backup.is_none());
    unchanged("a dry run");

    let report = match expect {
        Expect::Nothing => {
            let r = db.migrate(new, opts(true)).unwrap();
            assert!(r.plan.is_empty() && r.plan.hints.is_empty() && !r.applied, "expected an empty plan: {r:#?}");
            unchanged("an empty plan");
            assert_eq!(db.schema_differences(new), Vec::<String>::new());
            r
        }
        Expect::Safe => {
            let r = db.migrate(new, opts(false)).unwrap();
            assert!(r.applied, "expected a safe migration: {r:#?}");
            assert!(r.outcomes.iter().all(|o| o.verdict == Verdict::Safe), "{:#?}", r.outcomes);
            assert!(r.backup.is_none(), "a safe migration takes no backup");
            r
        }
        Expect::Destructive => {
            let r = db.migrate(new, opts(false)).unwrap();
            assert!(!r.applied, "a destructive migration needs permission: {r:#?}");
            let at = r.blocked_at.expect("blocked");
            assert!(matches!(r.outcomes[at].verdict, Verdict::Destructive(_)), "{:#?}", r.outcomes[at]);
            unchanged("a destructive migration without permission");
            let r = db.migrate(new, opts(true)).unwrap();
            assert!(r.applied, "{r:#?}");
            assert!(r.has_destructive() && !r.has_refused(), "{:#?}", r.outcomes);
            assert!(r.backup.is_some(), "a destructive migration takes a backup first");
            r
        }
        Expect::Refused => {
            for allow in [false, true] {
                let r = db.migrate(new, opts(allow)).unwrap();
                assert!(!r.applied, "expected a refusal: {r:#?}");
                unchanged("a refused migration");
                if allow {
                    let at = r.blocked_at.expect("blocked");
                    assert!(matches!(r.outcomes[at].verdict, Verdict::Refused(_)), "{:#?}", r.outcomes[at]);
                }
            }
            db.migrate(new, opts(true)).unwrap()
        }
    };
    assert_eq!(
        render_plan(&dry.plan, &dry.results()),
        render_plan(&report.plan, &report.results()),
        "the dry run plans what the migration does"
    );
    let rendered = render_plan(&report.plan, &report.results());

    let outcome = if expect == Expect::Nothing {
        "nothing to do".to_string()
    } else if report.applied {
        assert_eq!(db.schema_differences(new), Vec::<String>::new(), "the database has the new model's schema");
        assert_eq!(db.history().len(), history + 1);
        assert_survives(before, &db.dump(), old, new, changed);
        let again = db.migrate(new, opts(true)).unwrap();
        assert!(again.plan.is_empty() && !again.applied, "a second migrate does nothing: {:#?}", again.plan);
        "applied".to_string()
    } else {
        unchanged("a refused migration");
        format!("not applied: stopped at step {}", report.blocked_at.expect("blocked") + 1)
    };
    format!("{}\n{rendered}=> {outcome}", spec_diff(old_src, new_src))
}

/// Every row of every table that still exists is still there, and every
/// column that still exists (under its new name, if renamed) with the same
/// type holds the same values, unless the scenario changes it on purpose.
/// Columns added for existing rows hold NULL, or the field's default.
fn assert_survives(before: &Dump, after: &Dump, old: &AppModel, new: &AppModel, changed: &[(&str, &str)]) {
    let (old_s, _) = schema_of(old);
    let (new_s, hints) = schema_of(new);
    for ot in &old_s.tables {
        let renamed = hints.table_renames.iter().find(|(n, o)| *o == ot.name && new_s.table(n).is_some() && old_s.table(n).is_none());
        let name = renamed.map_or(ot.name.as_str(), |(n, _)| n.as_str());
        let Some(nt) = new_s.table(name) else { continue };
        let empty = BTreeMap::new();
        let rows_before = before.get(&ot.name).unwrap_or(&empty);
        let rows_after = after.get(name).unwrap_or(&empty);
        assert_eq!(rows_before.keys().collect::<Vec<_>>(), rows_after.keys().collect::<Vec<_>>(), "the rows of `{name}`");
        let mut from_old = Vec::new();
        for oc in &ot.columns {
            let renamed = hints.column_renames.iter().find(|(t, n, o)| t == name && *o == oc.name && ot.column(n).is_none());
            let col = renamed.map_or(oc.name.as_str(), |(_, n, _)| n.as_str());
            let Some(nc) = nt.column(col) else { continue };
            from_old.push(col);
            if changed.contains(&(name, col)) {
                continue;
            }
            assert_eq!(oc.ty, nc.ty, "`{name}.{col}` changed type: list it as changed and check its values");
            for (id, r) in rows_before {
                assert_eq!(r[&oc.name], rows_after[id][col], "`{name}.{col}` of row {id}");
            }
        }
        for nc in &nt.columns {
            if from_old.contains(&nc.name.as_str()) || changed.contains(&(name, nc.name.as_str())) {
                continue;
            }
            let want = match hints.backfill(name, &nc.name) {
                None => None,
                Some(charter_schema::Backfill::Value(v)) => TestDb::render(v),
                Some(b) => panic!("`{name}.{}` is back-filled with {b:?}: list it as changed", nc.name),
            };
            for (id, r) in rows_after {
                assert_eq!(r[&nc.name], want, "new column `{name}.{}` of row {id}", nc.name);
            }
        }
    }
}

/// The lines of the canonical specs that differ, `-` before and `+` after.
fn spec_diff(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    // Longest common subsequence, then walk it.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    if out.is_empty() {
        "spec: no change to the model".into()
    } else {
        format!("spec:\n{}", out.join("\n"))
    }
}

fn value<'a>(dump: &'a Dump, table: &str, id: &str, column: &str) -> Option<&'a str> {
    dump[table][id][column].as_deref()
}

fn column<'a>(dump: &'a Dump, table: &str, column: &str) -> Vec<(&'a str, Option<&'a str>)> {
    dump[table].iter().map(|(id, r)| (id.as_str(), r[column].as_deref())).collect()
}

// ---------------------------------------------------------------------------
// The evolutions

fn add_entity(db: &TestDb) {
    let after = BASE.to_string() + "\n### Coupon\n| field | type | rules |\n|---|---|---|\n| code | text | required, unique |\n| percent | int | 1..100 |\n\nPermissions:\n- read: signed in\n";
    let a = Evolution::new("add_entity", "A new entity: a new, empty table.", after, Expect::Safe).run(db);
    assert!(a.after["coupons"].is_empty());
}

fn drop_entity(db: &TestDb) {
    let after = edit(
        BASE,
        &[("### Order\n| field | type | rules |\n|---|---|---|\n| customer | Customer | required |\n| code | text | |\n| total | int | |\n| placed | date | |\n| paid | bool | |\n| status | enum(open, sent, done, lost) | |\n\nPermissions:\n- read: signed in\n\n", "")],
    );
    let a =
        Evolution::new("drop_entity", "Order is removed from the spec: its table and rows go (destructive).", after, Expect::Destructive)
            .run(db);
    assert!(!a.after.contains_key("orders"));
    assert_eq!(a.before["orders"].len(), 6);
}

fn rename_entity(db: &TestDb) {
    let after = edit(
        BASE,
        &[
            ("### Customer\n", "### Client (renamed from Customer)\n"),
            ("| customer | Customer | required |", "| customer | Client | required |"),
        ],
    );
    let a = Evolution::new(
        "rename_entity",
        "Customer is renamed to Client with a hint: the table is renamed and references follow it.",
        after,
        Expect::Safe,
    )
    .run(db);
    assert!(!a.after.contains_key("customers"));
    assert_eq!(a.after["clients"].len(), 5);
    // The foreign key follows the table: deleting a client with orders is refused.
    assert!(db.execute("DELETE FROM \"clients\" WHERE \"id\" = 'c1'").is_err(), "orders still reference their client");
    assert_eq!(db.execute("DELETE FROM \"clients\" WHERE \"id\" = 'c5'"), Ok(1));
}

fn rename_entity_without_hint(db: &TestDb) {
    let after = edit(BASE, &[("### Order\n", "### Purchase\n")]);
    let a = Evolution::new(
        "rename_entity_without_hint",
        "Order is renamed to Purchase without a hint: drop and create, and a hint says how to keep the rows.",
        after,
        Expect::Destructive,
    )
    .run(db);
    assert!(a.after["purchases"].is_empty() && !a.after.contains_key("orders"));
}

fn add_optional_field(db: &TestDb) {
    let after = edit(BASE, &[("| nickname | text | |\n", "| nickname | text | |\n| phone | text | max 20 |\n")]);
    let a = Evolution::new("add_optional_field", "A new optional field: existing rows have no value.", after, Expect::Safe).run(db);
    assert!(column(&a.after, "customers", "phone").iter().all(|(_, v)| v.is_none()));
}

fn add_required_field_with_default(db: &TestDb) {
    let after = edit(BASE, &[("| nickname | text | |\n", "| nickname | text | |\n| country | text | required, default \"NZ\" |\n")]);
    let a = Evolution::new(
        "add_required_field_with_default",
        "A new required field with a default: existing rows get the default.",
        after,
        Expect::Safe,
    )
    .run(db);
    assert!(column(&a.after, "customers", "country").iter().all(|(_, v)| *v == Some("NZ")));
}

fn add_required_field_to_empty_table(db: &TestDb) {
    let after = edit(BASE, &[("| label | text | required |\n", "| label | text | required |\n| color | text | required |\n")]);
    Evolution::new(
        "add_required_field_to_empty_table",
        "A new required field without a default on a table with no rows: nothing needs a value.",
        after,
        Expect::Safe,
    )
    .run(db);
}

fn add_required_field_refused(db: &TestDb) {
    let after = edit(BASE, &[("| nickname | text | |\n", "| nickname | text | |\n| country | text | required |\n")]);
    Evolution::new(
        "add_required_field_refused",
        "A new required field without a default on a table with rows: refused, with the row count.",
        after,
        Expect::Refused,
    )
    .run(db);
}

fn add_required_field_refused_one_row(db: &TestDb) {
    let after = edit(BASE, &[("| nickname | text | |\n", "| nickname | text | |\n| country | text | required |\n")]);
    Evolution::new("add_required_field_refused_one_row", "The same with one row: the message counts it.", after, Expect::Refused)
        .rows(|rows| rows.retain(|r| r.table != "customers" && r.table != "orders" || r.values[0].1 == text("c5")))
        .run(db);
}

fn drop_field(db: &TestDb) {
    let after = edit(BASE, &[("| nickname | text | |\n", "")]);
    let a = Evolution::new("drop_field", "A field is removed: its values go (destructive); other values stay.", after, Expect::Destructive)
        .run(db);
    assert!(a.after["customers"].values().all(|r| !r.contains_key("nickname")));
}

fn rename_field(db: &TestDb) {
    let after = edit(BASE, &[("| nickname | text | |", "| handle | text | renamed from nickname |")]);
    let a = Evolution::new("rename_field", "A field is renamed with a hint: the values move with it.", after, Expect::Safe).run(db);
    assert_eq!(value(&a.after, "customers", "c1", "handle"), Some("ace"));
}

fn rename_field_without_hint(db: &TestDb) {
    let after = edit(BASE, &[("| nickname | text | |", "| handle | text | |")]);
    Evolution::new(
        "rename_field_without_hint",
        "A field is renamed without a hint: drop and add, and a hint says how to keep the values.",
        after,
        Expect::Destructive,
    )
    .run(db);
}

fn widen_int_to_decimal(db: &TestDb) {
    let after = edit(BASE, &[("| total | int | |", "| total | decimal | |")]);
    let a = Evolution::new("widen_int_to_decimal", "int -> decimal: every integer is a decimal (safe).", after, Expect::Safe)
        .changed(&[("orders", "total")])
        .run(db);
    let totals = column(&a.after, "orders", "total");
    assert_eq!(
        totals,
        [
            ("o1", Some("1999")),
            ("o2", Some("0")),
            ("o3", Some("-5")),
            ("o4", None),
            ("o5", Some("9223372036854775807")),
            ("o6", Some("250"))
        ]
    );
}

fn widen_int_to_text(db: &TestDb) {
    let after = edit(BASE, &[("| age | int | |", "| age | text | |")]);
    let a = Evolution::new("widen_int_to_text", "int -> text: every integer has a text form (safe).", after, Expect::Safe)
        .changed(&[("customers", "age")])
        .run(db);
    let ages = column(&a.after, "customers", "age");
    assert_eq!(ages, [("c1", Some("36")), ("c2", Some("0")), ("c3", Some("41")), ("c4", Some("9007199254740993")), ("c5", Some("-1"))]);
}

fn widen_date_to_datetime(db: &TestDb) {
    let after = edit(BASE, &[("| placed | date | |", "| placed | datetime | |")]);
    let a =
        Evolution::new("widen_date_to_datetime", "date -> datetime: a date becomes midnight UTC of that day (safe).", after, Expect::Safe)
            .changed(&[("orders", "placed")])
            .run(db);
    for (id, v) in column(&a.after, "orders", "placed") {
        let was = value(&a.before, "orders", id, "placed");
        assert_eq!(v.map(String::from), was.map(|d| format!("{d}T00:00:00.000Z")), "row {id}");
    }
}

fn widen_bool_to_int(db: &TestDb) {
    let after = edit(BASE, &[("| paid | bool | |", "| paid | int | |")]);
    let a = Evolution::new("widen_bool_to_int", "bool -> int: false is 0, true is 1 (safe).", after, Expect::Safe)
        .changed(&[("orders", "paid")])
        .run(db);
    let paid = column(&a.after, "orders", "paid");
    assert_eq!(paid, [("o1", Some("1")), ("o2", Some("0")), ("o3", None), ("o4", Some("1")), ("o5", Some("0")), ("o6", Some("0"))]);
}

fn narrow_text_to_int(db: &TestDb) {
    let after = edit(BASE, &[("| code | text | |", "| code | int | |")]);
    let a = Evolution::new(
        "narrow_text_to_int",
        "text -> int where every value is an integer: destructive by nature, applied with the flag.",
        after,
        Expect::Destructive,
    )
    .changed(&[("orders", "code")])
    .run(db);
    let codes = column(&a.after, "orders", "code");
    assert_eq!(
        codes,
        [("o1", Some("1001")), ("o2", Some("1002")), ("o3", Some("1003")), ("o4", None), ("o5", Some("1005")), ("o6", Some("1006"))]
    );
}

fn narrow_text_to_int_refused(db: &TestDb) {
    let after = edit(BASE, &[("| code | text | |", "| code | int | |")]);
    Evolution::new(
        "narrow_text_to_int_refused",
        "text -> int where some values are not integers: refused, with the count and examples.",
        after,
        Expect::Refused,
    )
    .rows(|rows| {
        set(rows, "o2", "code", text("A-17"));
        set(rows, "o3", "code", text("n/a"));
        set(rows, "o6", "code", text("12.0"));
    })
    .run(db);
}

fn require_field_without_nulls(db: &TestDb) {
    let after = edit(BASE, &[("| age | int | |", "| age | int | required |")]);
    Evolution::new(
        "require_field_without_nulls",
        "An optional field becomes required and every row has a value: safe.",
        after,
        Expect::Safe,
    )
    .run(db);
}

fn require_field_with_nulls_refused(db: &TestDb) {
    let after = edit(BASE, &[("| nickname | text | |", "| nickname | text | required |")]);
    Evolution::new(
        "require_field_with_nulls_refused",
        "An optional field becomes required, some rows have no value and there is no default: refused, naming the rows.",
        after,
        Expect::Refused,
    )
    .rows(|rows| set(rows, "c3", "nickname", null()))
    .run(db);
}

fn require_field_with_one_null_refused(db: &TestDb) {
    let after = edit(BASE, &[("| email | email | |", "| email | email | required |")]);
    Evolution::new("require_field_with_one_null_refused", "The same with a single row lacking a value.", after, Expect::Refused).run(db);
}

fn require_field_with_nulls_and_default(db: &TestDb) {
    let after = edit(BASE, &[("| nickname | text | |", "| nickname | text | required, default \"anon\" |")]);
    let a = Evolution::new(
        "require_field_with_nulls_and_default",
        "An optional field becomes required with a default: rows without a value get the default.",
        after,
        Expect::Safe,
    )
    .changed(&[("customers", "nickname")])
    .run(db);
    for (id, v) in column(&a.after, "customers", "nickname") {
        assert_eq!(v, value(&a.before, "customers", id, "nickname").or(Some("anon")), "row {id}");
    }
}

fn enum_member_added(db: &TestDb) {
    let after = edit(BASE, &[("enum(bronze, silver, gold)", "enum(bronze, silver, gold, platinum)")]);
    Evolution::new("enum_member_added", "An enum gains a member: every stored value is still valid (safe).", after, Expect::Safe).run(db);
}

fn enum_member_removed_unused(db: &TestDb) {
    let after = edit(BASE, &[("enum(open, sent, done, lost)", "enum(open, sent, done)")]);
    Evolution::new("enum_member_removed_unused", "An enum loses a member no row uses: checked, and safe.", after, Expect::Safe).run(db);
}

fn enum_member_removed_used(db: &TestDb) {
    let after = edit(BASE, &[("enum(open, sent, done, lost)", "enum(open, done, lost)")]);
    let a = Evolution::new(
        "enum_member_removed_used",
        "An optional enum without a default loses a member rows use: destructive, those rows lose the value.",
        after,
        Expect::Destructive,
    )
    .changed(&[("orders", "status")])
    .run(db);
    for (id, v) in column(&a.after, "orders", "status") {
        let was = value(&a.before, "orders", id, "status");
        assert_eq!(v, was.filter(|s| *s != "sent"), "row {id}");
    }
}

fn enum_member_removed_used_with_default(db: &TestDb) {
    let after = edit(BASE, &[("enum(bronze, silver, gold)", "enum(bronze, silver)")]);
    let a = Evolution::new(
        "enum_member_removed_used_with_default",
        "An enum with a default loses a member rows use: destructive, those rows get the default.",
        after,
        Expect::Destructive,
    )
    .changed(&[("customers", "tier")])
    .run(db);
    let tiers = column(&a.after, "customers", "tier");
    assert_eq!(tiers, [("c1", Some("bronze")), ("c2", Some("silver")), ("c3", Some("bronze")), ("c4", Some("bronze")), ("c5", None)]);
}

fn unique_added(db: &TestDb) {
    let after = edit(BASE, &[("| email | email | |", "| email | email | unique |")]);
    Evolution::new(
        "unique_added",
        "A field becomes unique and no two rows share a value (rows without one don't count): safe.",
        after,
        Expect::Safe,
    )
    .run(db);
    assert!(db.execute("INSERT INTO \"customers\" (id, created_at, updated_at, version, name, email) SELECT 'c9', created_at, updated_at, 1, 'Copy', email FROM \"customers\" WHERE id = 'c1'").is_err(), "the index is enforced");
}

fn unique_added_with_duplicates(db: &TestDb) {
    let after = edit(BASE, &[("| nickname | text | |", "| nickname | text | unique |")]);
    Evolution::new(
        "unique_added_with_duplicates",
        "A field becomes unique but rows share values: refused, showing the duplicates.",
        after,
        Expect::Refused,
    )
    .run(db);
}

fn on_delete_changed(db: &TestDb) {
    let after = edit(BASE, &[("| customer | Customer | required |", "| customer | Customer | required, on delete cascade |")]);
    let ev = Evolution::new("on_delete_changed", "A reference's `on delete` goes from restrict to cascade.", after, Expect::Safe);
    let old = model(&ev.before);
    // Run by hand up to the data, to see restrict at work first.
    let r = db.migrate(&old, opts(false)).unwrap();
    assert!(r.applied);
    for row in &ev.rows {
        db.insert(row.table, &row.values);
    }
    assert!(db.execute("DELETE FROM \"customers\" WHERE \"id\" = 'c1'").is_err(), "restrict: c1 has orders");
    let before = db.dump();
    let snapshot = step(db, &ev.before, &ev.after, ev.expect, &before, &[]);
    snapshot_as(ev.name, format!("{}\n\n{snapshot}", ev.about));
    assert_eq!(db.execute("DELETE FROM \"customers\" WHERE \"id\" = 'c1'"), Ok(1));
    let after = db.dump();
    assert_eq!(after["orders"].keys().collect::<Vec<_>>(), ["o3", "o4", "o5", "o6"], "cascade: c1's orders went with it");
    assert_eq!(after["customers"].len(), 4);
}

fn reference_added(db: &TestDb) {
    let after = edit(
        BASE,
        &[(
            "| status | enum(open, sent, done, lost) | |\n",
            "| status | enum(open, sent, done, lost) | |\n| gift_for | Customer | on delete set null |\n",
        )],
    );
    Evolution::new("reference_added", "A new optional reference: a new column with a foreign key and an index.", after, Expect::Safe)
        .run(db);
    db.execute("UPDATE \"orders\" SET \"gift_for\" = 'c2' WHERE \"id\" = 'o1'").unwrap();
    assert!(db.execute("UPDATE \"orders\" SET \"gift_for\" = 'nobody' WHERE \"id\" = 'o2'").is_err(), "the foreign key is enforced");
    assert_eq!(db.execute("DELETE FROM \"orders\" WHERE \"customer\" = 'c2'"), Ok(1));
    assert_eq!(db.execute("DELETE FROM \"customers\" WHERE \"id\" = 'c2'"), Ok(1));
    assert_eq!(value(&db.dump(), "orders", "o1", "gift_for"), None, "on delete set null");
}

fn field_becomes_reference_refused(db: &TestDb) {
    let after = edit(BASE, &[("| code | text | |", "| code | Customer | |")]);
    Evolution::new(
        "field_becomes_reference_refused",
        "A text field becomes a reference but holds values that are no ids: refused, with examples.",
        after,
        Expect::Refused,
    )
    .run(db);
}

fn text_bound_tightened_refused(db: &TestDb) {
    let after = edit(BASE, &[("| name | text | required, 1..40 |", "| name | text | required, 1..12 |")]);
    Evolution::new(
        "text_bound_tightened_refused",
        "A text length bound is tightened below some values: refused, with examples.",
        after,
        Expect::Refused,
    )
    .run(db);
}

fn text_bound_tightened(db: &TestDb) {
    let after = edit(BASE, &[("| name | text | required, 1..40 |", "| name | text | required, 2..20 |")]);
    Evolution::new(
        "text_bound_tightened",
        "A text length bound is tightened and every value fits (lengths count characters): checked, and safe.",
        after,
        Expect::Safe,
    )
    .run(db);
}

fn text_bound_loosened(db: &TestDb) {
    let after = edit(BASE, &[("| name | text | required, 1..40 |", "| name | text | required, max 100 |")]);
    Evolution::new(
        "text_bound_loosened",
        "A text length bound is loosened: every stored value still fits, nothing to check.",
        after,
        Expect::Safe,
    )
    .run(db);
}

fn int_range_added(db: &TestDb) {
    let after = edit(BASE, &[("| total | int | |", "| total | int | min -10 |")]);
    Evolution::new("int_range_added", "An int gains a range every value is in: checked, and safe.", after, Expect::Safe).run(db);
    assert!(db.execute("UPDATE \"orders\" SET \"total\" = -11 WHERE \"id\" = 'o1'").is_err(), "the range is enforced");
}

fn int_range_added_refused(db: &TestDb) {
    let after = edit(BASE, &[("| age | int | |", "| age | int | 0..150 |")]);
    Evolution::new(
        "int_range_added_refused",
        "An int gains a range some values are outside of: refused, with examples.",
        after,
        Expect::Refused,
    )
    .run(db);
}

fn default_changed(db: &TestDb) {
    let after = edit(BASE, &[("| vip | bool | default false |", "| vip | bool | default true |"), ("default bronze", "default silver")]);
    let a = Evolution::new(
        "default_changed",
        "Only defaults change: they live in the app, not the database, so there is nothing to do.",
        after,
        Expect::Nothing,
    )
    .run(db);
    assert_eq!(a.before, a.after);
}

fn prose_only(db: &TestDb) {
    let after = edit(
        BASE,
        &[
            ("Customers place orders.\n", "Customers place orders, and we ship them.\n\nMore prose, *with emphasis*.\n"),
            ("### Tag\n", "### Tag\nTags are labels. This is prose.\n\n"),
        ],
    );
    let a = Evolution::new("prose_only", "Only prose changes: an empty plan.", after, Expect::Nothing).run(db);
    assert_eq!(a.before, a.after);
}

fn second_migrate_is_noop(db: &TestDb) {
    let a = Evolution::new("second_migrate_is_noop", "The same spec again: nothing to do.", BASE.to_string(), Expect::Nothing).run(db);
    assert_eq!(a.before, a.after);
    assert_eq!(db.history().len(), 1);
}

fn chain_of_five(db: &TestDb) {
    let v1 = BASE.to_string();
    let v2 = edit(
        &v1,
        &[
            ("| nickname | text | |", "| handle | text | renamed from nickname |"),
            ("| paid | bool | |\n", "| paid | bool | |\n| note | text | max 200 |\n"),
        ],
    );
    let v3 = edit(
        &v2,
        &[
            ("| total | int | |", "| total | decimal | |"),
            ("| handle | text | renamed from nickname |", "| handle | text | required, default \"anon\" |"),
        ],
    );
    let v4 = edit(
        &v3,
        &[
            ("### Customer\n", "### Client (renamed from Customer)\n"),
            ("| customer | Customer | required |", "| customer | Client | required, on delete cascade |"),
        ],
    );
    let v5 = edit(&v4, &[("enum(open, sent, done, lost)", "enum(open, sent, done, lost, returned)")])
        + "\n### Review\n| field | type | rules |\n|---|---|---|\n| order | Order | required, on delete cascade |\n| stars | int | required, 1..5 |\n\nPermissions:\n- read: signed in\n";
    let v6 = edit(&v5, &[("| born | date | |\n", ""), ("| placed | date | |", "| placed | datetime | |")]);
    let versions = [&v1, &v2, &v3, &v4, &v5, &v6];
    let expect = [Expect::Safe, Expect::Safe, Expect::Safe, Expect::Safe, Expect::Destructive];
    let changed: [&[(&str, &str)]; 5] = [&[], &[("orders", "total"), ("customers", "handle")], &[], &[], &[("orders", "placed")]];

    let r = db.migrate(&model(&v1), opts(false)).unwrap();
    assert!(r.applied);
    for row in base_rows() {
        db.insert(row.table, &row.values);
    }
    let first = db.dump();
    let mut out = Vec::new();
    for (i, pair) in versions.windows(2).enumerate() {
        let before = db.dump();
        let text = step(db, pair[0], pair[1], expect[i], &before, changed[i]);
        out.push(format!("## v{} -> v{}\n{text}", i + 1, i + 2));
        if i == 1 {
            let after = db.dump();
            for (id, r) in &after["orders"] {
                assert_eq!(r["total"], before["orders"][id]["total"], "int -> decimal keeps the number");
            }
            for (id, r) in &after["customers"] {
                assert_eq!(r["handle"].as_deref(), before["customers"][id]["handle"].as_deref().or(Some("anon")));
            }
        }
    }
    // After five migrations every original row is there, under the new names.
    let last = db.dump();
    assert_eq!(first["customers"].keys().collect::<Vec<_>>(), last["clients"].keys().collect::<Vec<_>>());
    assert_eq!(first["orders"].keys().collect::<Vec<_>>(), last["orders"].keys().collect::<Vec<_>>());
    for (id, r) in &first["customers"] {
        for c in ["name", "email", "age", "vip", "tier", "created_at", "updated_at", "version"] {
            assert_eq!(r[c], last["clients"][id][c], "clients.{c} of {id}");
        }
    }
    assert_eq!(db.history().len(), 6);
    snapshot_as("chain_of_five", out.join("\n\n"));
}

// ---------------------------------------------------------------------------

/// One test per backend for each evolution, so either can fail on its own;
/// both compare against the same snapshot.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&super::TestDb::fresh(super::Backend::Sqlite)) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(&super::TestDb::fresh(super::Backend::Postgres)) })*
        }
    };
}

on_every_backend!(
    add_entity,
    drop_entity,
    rename_entity,
    rename_entity_without_hint,
    add_optional_field,
    add_required_field_with_default,
    add_required_field_to_empty_table,
    add_required_field_refused,
    add_required_field_refused_one_row,
    drop_field,
    rename_field,
    rename_field_without_hint,
    widen_int_to_decimal,
    widen_int_to_text,
    widen_date_to_datetime,
    widen_bool_to_int,
    narrow_text_to_int,
    narrow_text_to_int_refused,
    require_field_without_nulls,
    require_field_with_nulls_refused,
    require_field_with_one_null_refused,
    require_field_with_nulls_and_default,
    enum_member_added,
    enum_member_removed_unused,
    enum_member_removed_used,
    enum_member_removed_used_with_default,
    unique_added,
    unique_added_with_duplicates,
    on_delete_changed,
    reference_added,
    field_becomes_reference_refused,
    text_bound_tightened_refused,
    text_bound_tightened,
    text_bound_loosened,
    int_range_added,
    int_range_added_refused,
    default_changed,
    prose_only,
    second_migrate_is_noop,
    chain_of_five,
);
