//! Diagnostics as people and tools see them. Every spec under
//! `tests/specs/broken/` is a mistake a user could make; its rendered
//! diagnostics are snapshotted, so a change of message, span or help shows up
//! in review. Together the broken specs must raise every diagnostic code, and
//! the reference docs must describe every code.

use charter_model::{
    compile, Action, AppModel, Bound, CompareOp, DefaultValue, EmailVerification, Expr, FieldType, OnDelete, Signup, Value,
};
use charter_spec::diagnostic::{render_human, render_json_lines};
use charter_spec::Code;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `.md` files directly in `dir`, sorted by name, with their text.
fn specs_in(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| {
            let name = p.file_name().expect("file name").to_string_lossy().into_owned();
            let source = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (name, source)
        })
        .collect();
    out.sort();
    out
}

fn broken_specs() -> Vec<(String, String)> {
    let specs = specs_in(&manifest_dir().join("tests/specs/broken"));
    assert!(specs.len() >= 45, "expected the whole broken corpus, found {} specs", specs.len());
    specs
}

fn good_specs() -> Vec<(String, String)> {
    let specs = specs_in(&manifest_dir().join("tests/specs/good"));
    assert!(specs.len() >= 4, "expected the good corpus, found {} specs", specs.len());
    specs
}

fn good_model(name: &str) -> AppModel {
    let (_, source) = good_specs().into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no good spec {name}"));
    let compiled = compile(&source);
    assert!(compiled.diagnostics.is_empty(), "{name}: {}", render_human(name, &source, &compiled.diagnostics));
    compiled.model.expect("a spec without diagnostics has a model")
}

#[test]
fn broken_specs_render_as_snapshotted() {
    for (name, source) in broken_specs() {
        let compiled = compile(&source);
        let text = render_human(&name, &source, &compiled.diagnostics);
        insta::assert_snapshot!(name.trim_end_matches(".md"), text);
    }
}

#[test]
fn json_lines_render_as_snapshotted() {
    for name in ["09-unescaped-pipe-in-cell.md", "33-bad-setting-values.md", "57-first-draft.md"] {
        let (_, source) = broken_specs().into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no broken spec {name}"));
        let compiled = compile(&source);
        let text = render_json_lines(name, &source, &compiled.diagnostics);
        assert_eq!(text.lines().count(), compiled.diagnostics.len(), "one line per diagnostic");
        insta::assert_snapshot!(format!("json-{}", name.trim_end_matches(".md")), text);
    }
}

#[test]
fn every_broken_spec_reports_a_problem() {
    for (name, source) in broken_specs() {
        let compiled = compile(&source);
        assert!(!compiled.diagnostics.is_empty(), "{name} compiles without any diagnostic");
        // Errors, and only errors, stop compilation.
        assert_eq!(compiled.model.is_none(), compiled.has_errors(), "{name}");
    }
}

#[test]
fn broken_specs_raise_every_code() {
    let mut reported = BTreeSet::new();
    for (_, source) in broken_specs() {
        reported.extend(compile(&source).diagnostics.iter().map(|d| d.code));
    }
    let all: BTreeSet<Code> = Code::ALL.iter().copied().collect();
    let missing: Vec<&str> = all.difference(&reported).map(|c| c.as_str()).collect();
    assert!(missing.is_empty(), "no broken spec raises {missing:?}; add one to tests/specs/broken/");
    assert_eq!(reported, all);
}

#[test]
fn several_problems_are_reported_in_one_run() {
    let (_, source) = broken_specs().into_iter().find(|(n, _)| n == "57-first-draft.md").expect("first draft spec");
    let codes: BTreeSet<&str> = compile(&source).diagnostics.iter().map(|d| d.code.as_str()).collect();
    for code in ["E0301", "E0302", "E0401", "E0203", "E0209", "E0202", "E0212", "E0505"] {
        assert!(codes.contains(code), "{code} missing from {codes:?}");
    }
}

/// Every `app.md` under `examples/`, at any depth.
fn example_specs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            example_specs(&path, out);
        } else if path.file_name().is_some_and(|n| n == "app.md") {
            out.push(path);
        }
    }
}

#[test]
fn examples_compile_without_diagnostics() {
    let mut paths = Vec::new();
    example_specs(&manifest_dir().join("../../examples"), &mut paths);
    assert!(paths.iter().any(|p| p.ends_with("taskboard/app.md")), "the taskboard example is missing: {paths:?}");
    for path in paths {
        let source = std::fs::read_to_string(&path).expect("example spec");
        let compiled = compile(&source);
        let name = path.display().to_string();
        assert!(compiled.diagnostics.is_empty(), "{}", render_human(&name, &source, &compiled.diagnostics));
        assert!(compiled.model.is_some(), "{name}");
    }
}

#[test]
fn good_specs_compile_without_diagnostics() {
    for (name, source) in good_specs() {
        let compiled = compile(&source);
        assert!(compiled.diagnostics.is_empty(), "{}", render_human(&name, &source, &compiled.diagnostics));
        assert!(compiled.model.is_some(), "{name}");
    }
}

#[test]
fn good_spec_with_every_type_and_rule_means_what_it_says() {
    let model = good_model("01-every-type-and-rule.md");
    let supplier = model.entity_by_name("Supplier").expect("Supplier");
    let field = |name: &str| supplier.field_by_name(name).unwrap_or_else(|| panic!("no field {name}")).1;
    assert!(field("name").unique && field("name").required);
    assert_eq!(field("name").min, Some(Bound::Length(2)));
    assert_eq!(field("code").pattern.as_deref(), Some("[A-Z]{3}-[0-9]+"));
    assert!(field("code").read_only);
    // `\|` is a pipe inside a table cell; `\"` a quote inside a string.
    assert_eq!(field("notes").pattern.as_deref(), Some("(yes|no|maybe)"));
    assert_eq!(field("notes").description, "One of yes | no | maybe");
    assert_eq!(field("greeting").default, Some(DefaultValue::Text("say \"hi\"".into())));
    assert_eq!(field("owner").default, Some(DefaultValue::Me));
    assert_eq!(field("contact").ty, FieldType::Email);
    assert_eq!(field("website").ty, FieldType::Url);

    let product = model.entity_by_name("Product").expect("Product");
    let field = |name: &str| product.field_by_name(name).unwrap_or_else(|| panic!("no field {name}")).1;
    let types: Vec<FieldType> =
        ["quantity", "price", "fragile", "listed_on", "updated", "tags"].iter().map(|n| field(n).ty.clone()).collect();
    assert_eq!(types, [FieldType::Int, FieldType::Decimal, FieldType::Bool, FieldType::Date, FieldType::DateTime, FieldType::Json]);
    assert_eq!((field("reorder_at").min.clone(), field("reorder_at").max.clone()), (Some(Bound::Int(-5)), Some(Bound::Int(1000))));
    assert_eq!(field("price").max, Some(Bound::Decimal("99999.99".into())));
    assert_eq!(field("listed_on").min, Some(Bound::Date("2020-01-01".into())));
    assert_eq!(field("listed_on").default, Some(DefaultValue::Today));
    assert_eq!(field("updated").default, Some(DefaultValue::Now));
    assert_eq!(field("specs").default, Some(DefaultValue::Json("{\"size\": [1, 2]}".into())));
    assert_eq!(field("size").ty, FieldType::Enum(vec!["small".into(), "medium".into(), "large".into()]));
    assert_eq!(field("size").default, Some(DefaultValue::Enum("medium".into())));
    assert_eq!(field("supplier").on_delete, Some(OnDelete::Restrict));
    assert_eq!(field("backup").on_delete, Some(OnDelete::SetNull));
    // `restrict` is the default for references.
    assert_eq!(field("added_by").on_delete, Some(OnDelete::Restrict));
    let delivery = model.entity_by_name("Delivery").expect("Delivery");
    assert_eq!(delivery.field_by_name("product").expect("product").1.on_delete, Some(OnDelete::Cascade));
    assert_eq!(product.permissions.get(Action::Read), Some(&Expr::Anyone));
}

#[test]
fn good_spec_conditions_follow_two_references_and_keep_precedence() {
    let model = good_model("02-conditions.md");
    let ticket = model.entity_by_name("Ticket").expect("Ticket");
    let Some(Expr::Or { items }) = ticket.permissions.get(Action::Read) else { panic!("read is an `or`") };
    assert_eq!(items.len(), 3, "`and` binds tighter than `or`, parentheses group");
    let Expr::Compare { path, op, value } = &items[2] else { panic!("third term is a comparison") };
    assert_eq!(path.dotted(), "queue.team.lead");
    let entities: Vec<&str> = path.steps.iter().map(|s| model.entity(s.entity).name.as_str()).collect();
    assert_eq!(entities, ["Ticket", "Queue", "Team"]);
    assert_eq!((*op, value), (CompareOp::Eq, &Value::Me));
    let Some(Expr::And { items }) = ticket.permissions.get(Action::Create) else { panic!("create is an `and`") };
    assert!(matches!(&items[1], Expr::Not { expr } if matches!(**expr, Expr::Or { .. })));
    let Some(Expr::Or { items }) = ticket.permissions.get(Action::Update) else { panic!("update is an `or`") };
    let Expr::And { items } = &items[0] else { panic!("first group is an `and`") };
    assert!(matches!(&items[1], Expr::Compare { op: CompareOp::Ne, value: Value::Enum(m), .. } if m == "closed"));
}

#[test]
fn good_spec_user_extension_has_field_scoped_permissions() {
    let model = good_model("03-user-extension.md");
    let user = model.user();
    assert!(user.declared && user.builtin);
    let builtins: Vec<&str> = user.fields.iter().filter(|f| f.builtin.is_some()).map(|f| f.name.as_str()).collect();
    assert_eq!(builtins, ["id", "email", "name", "role", "verified", "created_at", "updated_at", "version"]);
    let declared: Vec<&str> = user.declared_fields().map(|f| f.name.as_str()).collect();
    assert_eq!(declared, ["handicap", "nickname", "home"]);
    let admin = model.role_by_name("admin").expect("admin");
    let (role_field, _) = user.field_by_name("role").expect("role");
    let (email_field, _) = user.field_by_name("email").expect("email");
    assert_eq!(user.permissions.field_rule(Action::Update, role_field), Some(&Expr::Role { role: admin }));
    assert!(matches!(user.permissions.field_rule(Action::Read, email_field), Some(Expr::Or { .. })));
    assert_eq!(model.settings.signup, Signup::Invite);
}

#[test]
fn user_permissions_default_to_own_record() {
    // Without a `Permissions:` list under `### User`, a user reads and
    // updates only their own record.
    let model = good_model("05-settings-and-default-role.md");
    for action in [Action::Read, Action::Update] {
        let Some(Expr::Compare { path, op: CompareOp::Eq, value: Value::Me }) = model.user().permissions.get(action) else {
            panic!("{action:?} is not `id = me`")
        };
        assert_eq!(path.dotted(), "id");
    }
    assert_eq!(model.user().permissions.get(Action::Create), None);
    assert_eq!(model.user().permissions.get(Action::Delete), None);
}

#[test]
fn good_spec_renames_are_kept() {
    let model = good_model("04-renames.md");
    let client = model.entity_by_name("Client").expect("Client");
    assert_eq!(client.renamed_from.as_deref(), Some("Customer"));
    assert_eq!(client.plural, "clients");
    assert_eq!(client.field_by_name("full_name").expect("full_name").1.renamed_from.as_deref(), Some("name"));
    let order = model.entity_by_name("PurchaseOrder").expect("PurchaseOrder");
    assert_eq!(order.plural, "purchase_orders");
    assert_eq!(order.renamed_from.as_deref(), Some("Order"));
    assert_eq!(order.field_by_name("client").expect("client").1.renamed_from.as_deref(), Some("customer"));
}

#[test]
fn good_spec_settings_and_default_role() {
    let model = good_model("05-settings-and-default-role.md");
    let s = &model.settings;
    assert_eq!(s.signup, Signup::Closed);
    assert_eq!(s.email_verification, EmailVerification::Optional);
    assert_eq!((s.session_lifetime_secs, s.session_idle_timeout_secs), (12 * 3600, 90 * 60));
    assert_eq!(s.password_min_length, 12);
    assert_eq!((s.login_attempts.count, s.login_attempts.window_secs), (5, 3600));
    assert_eq!(s.page_size, 500);
    assert!(s.require_if_match);
    assert_eq!(model.role(model.default_role).name, "writer");
}

#[test]
fn good_model_snapshot() {
    insta::assert_json_snapshot!("model-03-user-extension", good_model("03-user-extension.md"));
}

#[test]
fn reference_docs_describe_every_code() {
    let path = manifest_dir().join("../../docs/spec-language.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    // Each code has its own row in the table of codes.
    let missing: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).filter(|code| !doc.contains(&format!("| `{code}` |"))).collect();
    assert!(missing.is_empty(), "docs/spec-language.md does not list {missing:?}");
}
