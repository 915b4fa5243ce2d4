//! Plans between two versions of a spec, without a database: what the steps
//! are and which are destructive by nature. (Plans applied to databases
//! holding data are tested in charter-store.)

use charter_schema::*;

fn schema(src: &str) -> (Schema, Hints) {
    let compiled = charter_model::compile(src);
    let model = compiled.model.unwrap_or_else(|| panic!("spec compiles: {:?}", compiled.diagnostics));
    schema_of(&model)
}

fn plan(before: &str, after: &str) -> Plan {
    let (old, _) = schema(before);
    let (new, hints) = schema(after);
    diff(&old, &new, &hints)
}

const BASE: &str = "# A\n\n## Entities\n\n### Task\n| field | type | rules |\n|---|---|---|\n| title | text | required, 1..200 |\n| done | bool | default false |\n\nPermissions:\n- read: signed in\n";

#[test]
fn same_spec_plans_nothing() {
    assert!(plan(BASE, BASE).is_empty());
}

#[test]
fn empty_database_creates_every_table() {
    let (new, hints) = schema(BASE);
    let p = diff(&Schema::default(), &new, &hints);
    insta::assert_snapshot!(render_plan(&p, &[]), @r"
    1. [safe] create table `users` (8 columns, 2 indexes)
    2. [safe] create table `tasks` (6 columns, 1 index)
    2 steps: 2 safe, 0 destructive, 0 refused
    ");
}

#[test]
fn renames_keep_data_and_unhinted_renames_get_a_hint() {
    let hinted = BASE.replace("| title | text | required, 1..200 |", "| name | text | required, 1..200, renamed from title |");
    let p = plan(BASE, &hinted);
    assert_eq!(p.steps.len(), 1);
    assert!(matches!(&p.steps[0].change, Change::RenameColumn { from, to, .. } if from == "title" && to == "name"));

    let unhinted = BASE.replace("| title | text | required, 1..200 |", "| name | text | required, 1..200 |");
    let p = plan(BASE, &unhinted);
    assert!(p.steps.iter().any(|s| matches!(&s.change, Change::DropColumn { column, .. } if column == "title") && s.destructive.is_some()));
    assert_eq!(p.hints.len(), 1, "{:?}", p.hints);
    assert!(p.hints[0].contains("renamed from title"));
}

#[test]
fn entity_rename_renames_the_table() {
    let renamed = BASE.replace("### Task", "### Todo (renamed from Task)");
    let p = plan(BASE, &renamed);
    assert!(p.steps.iter().any(|s| matches!(&s.change, Change::RenameTable { from, to } if from == "tasks" && to == "todos")), "{p:#?}");
    assert!(p.steps.iter().all(|s| s.destructive.is_none()));
}

#[test]
fn widening_is_safe_and_narrowing_is_destructive_and_checked() {
    let with_int = BASE.replace("| done | bool | default false |", "| done | bool | default false |\n| n | int | |");
    let widened = with_int.replace("| n | int | |", "| n | decimal | |");
    let p = plan(&with_int, &widened);
    assert_eq!(p.steps.len(), 1);
    assert_eq!(p.steps[0].verdict(None), Verdict::Safe);
    let p = plan(&widened, &with_int);
    assert!(matches!(p.steps[0].verdict(None), Verdict::Destructive(_)));
    assert!(matches!(&p.steps[0].checks[..], [DataCheck::Converts { .. }]));
    let refused = p.steps[0].verdict(Some(&[CheckResult { rows: 2, examples: vec!["1.5".into()] }]));
    assert!(matches!(refused, Verdict::Refused(r) if r.contains("2 rows") && r.contains("1.5")));
}

#[test]
fn required_without_default_needs_an_empty_table_or_no_nulls() {
    let added = BASE.replace("| done | bool | default false |", "| done | bool | default false |\n| owner | User | required |");
    let p = plan(BASE, &added);
    let add = p.steps.iter().find(|s| matches!(s.change, Change::AddColumn { .. })).unwrap();
    assert_eq!(add.checks, vec![DataCheck::TableEmpty { table: "tasks".into(), column: "owner".into() }]);
    assert!(matches!(add.verdict(Some(&[CheckResult { rows: 3, examples: vec![] }])), Verdict::Refused(r) if r.contains("3 rows exist")));

    let with_default = BASE.replace("| done | bool | default false |", "| done | bool | required, default false |");
    let p = plan(BASE, &with_default);
    match &p.steps[0].change {
        Change::AlterColumn { backfill: Some(Backfill::Value(DbValue::Boolean(false))), .. } => {}
        other => panic!("{other:?}"),
    }
    assert!(p.steps[0].checks.is_empty());
}

#[test]
fn enum_member_removal_is_destructive_only_when_used() {
    let v1 = BASE.replace("| done | bool | default false |", "| level | enum(low, high, urgent) | default low |");
    let v2 = v1.replace("enum(low, high, urgent)", "enum(low, high)");
    let p = plan(&v1, &v2);
    assert_eq!(p.steps.len(), 1);
    assert_eq!(p.steps[0].verdict(Some(&[CheckResult::default()])), Verdict::Safe);
    let used = p.steps[0].verdict(Some(&[CheckResult { rows: 4, examples: vec!["urgent".into()] }]));
    assert!(matches!(&used, Verdict::Destructive(r) if r.contains("4 rows use removed members")), "{used:?}");
    // Adding a member is plainly safe, with no data check.
    let p = plan(&v2, &v1);
    assert!(p.steps[0].checks.is_empty());
}

#[test]
fn unique_added_checks_duplicates() {
    let v2 = BASE.replace("required, 1..200", "required, unique, 1..200");
    let p = plan(BASE, &v2);
    assert_eq!(p.steps.len(), 1);
    assert!(matches!(&p.steps[0].checks[..], [DataCheck::NoDuplicates { columns, .. }] if columns == &vec!["title".to_string()]));
}

#[test]
fn dropping_an_entity_is_destructive() {
    let v2 = BASE.split("### Task").next().unwrap().to_string();
    let p = plan(BASE, &v2);
    assert!(matches!(&p.steps[..], [Step { change: Change::DropTable { table }, destructive: Some(_), .. }] if table == "tasks"));
}

/// Applying a plan's changes to the old schema gives the new one, for a
/// chain of evolutions.
#[test]
fn plans_land_on_the_desired_schema() {
    let v1 = BASE.to_string();
    let v2 = v1.replace(
        "| done | bool | default false |",
        "| done | bool | required, default false |\n| due | date | |\n| owner | User | default me |",
    );
    let v3 = v2.replace("### Task", "### Todo (renamed from Task)").replace("| due | date | |", "| deadline | date | renamed from due |");
    let v4 = v3.replace("| owner | User | default me |", "").replace("required, 1..200", "required, unique, 1..100");
    let versions = [String::new(), v1, v2, v3, v4];
    let mut current = Schema::default();
    for next in versions.iter().skip(1) {
        let (want, hints) = schema(next);
        let p = diff(&current, &want, &hints);
        for step in &p.steps {
            apply_change(&mut current, &step.change);
        }
        assert!(same_schema(&current, &want), "{p:#?}\n{current:#?}\n{want:#?}");
        assert!(diff(&current, &want, &hints).is_empty());
    }
}
