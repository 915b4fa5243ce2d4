//! `AppModel` -> canonical spec text. Compiling the output gives back an
//! equal model (a property test holds this), so the printer is the
//! definition of what the model means in the spec language.

use crate::resolve::type_name;
use crate::settings::format_duration;
use crate::*;
use std::fmt::Write as _;

pub fn to_spec(model: &AppModel) -> String {
    let mut out = String::new();
    // A name ending in `#` (`C#`, read from `# C# #`) needs a closing
    // sequence, or its own `#`s would be read as one.
    let closing = if model.name.ends_with('#') { " #" } else { "" };
    let _ = writeln!(out, "# {}{closing}\n", model.name);
    if !model.description.is_empty() {
        let _ = writeln!(out, "{}\n", model.description);
    }
    let s = &model.settings;
    out.push_str("## Settings\n");
    let _ = writeln!(out, "- signup: {}", s.signup.as_str());
    let _ = writeln!(out, "- email verification: {}", s.email_verification.as_str());
    let _ = writeln!(out, "- session lifetime: {}", format_duration(s.session_lifetime_secs));
    let _ = writeln!(out, "- session idle timeout: {}", format_duration(s.session_idle_timeout_secs));
    let _ = writeln!(out, "- password min length: {}", s.password_min_length);
    let window = s.login_attempts.window_secs;
    let window = if window.is_multiple_of(3600) { format!("{} hours", window / 3600) } else { format!("{} minutes", window / 60) };
    let _ = writeln!(out, "- login attempts: {} per {window}", s.login_attempts.count);
    let _ = writeln!(out, "- page size: {}", s.page_size);
    let _ = writeln!(out, "- require if-match: {}\n", if s.require_if_match { "yes" } else { "no" });
    out.push_str("## Roles\n");
    for (i, role) in model.roles.iter().enumerate() {
        let mark = if RoleId(i) == model.default_role { " (default)" } else { "" };
        let _ = writeln!(out, "- {}{mark}: {}", role.name, role.description);
    }
    out.push_str("\n## Entities\n");
    for entity in &model.entities {
        if entity.builtin && !entity.declared {
            continue;
        }
        out.push('\n');
        print_entity(&mut out, model, entity);
    }
    out
}

fn print_entity(out: &mut String, model: &AppModel, e: &Entity) {
    let _ = write!(out, "### {}", e.name);
    if let Some(old) = &e.renamed_from {
        let _ = write!(out, " (renamed from {old})");
    }
    out.push_str("\n\n");
    if !e.description.is_empty() {
        let _ = writeln!(out, "{}\n", e.description);
    }
    let fields: Vec<&Field> = e.declared_fields().collect();
    if !fields.is_empty() || !e.builtin {
        let with_desc = fields.iter().any(|f| !f.description.is_empty());
        let mut rows: Vec<Vec<String>> = vec![vec!["field".into(), "type".into(), "rules".into()]];
        if with_desc {
            rows[0].push("description".into());
        }
        for f in &fields {
            let mut row = vec![f.name.clone(), type_name_for_spec(&f.ty, model), rules_text(f)];
            if with_desc {
                row.push(escape_cell(&f.description));
            }
            rows.push(row);
        }
        out.push_str(&render_table(&rows));
        out.push('\n');
    }
    let p = &e.permissions;
    if p.declared {
        out.push_str("Permissions:\n");
        for action in Action::ALL {
            if let Some(expr) = p.get(action) {
                let _ = writeln!(out, "- {}: {}", action.as_str(), expr_text(expr, model));
            }
        }
        for rule in &p.fields {
            let _ = writeln!(out, "- {} {}: {}", rule.action.as_str(), e.field(rule.field).name, expr_text(&rule.condition, model));
        }
        out.push('\n');
    }
}

/// Renders rows as a Markdown table with aligned columns (first row is the
/// header). Widths count characters.
pub fn render_table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|c| rows.iter().map(|r| r.get(c).map_or(0, |s| s.chars().count())).max().unwrap_or(0).max(3)).collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push('|');
        for (c, w) in widths.iter().enumerate() {
            let cell = row.get(c).map_or("", String::as_str);
            let pad = w - cell.chars().count();
            let _ = write!(out, " {cell}{} |", " ".repeat(pad));
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            for w in &widths {
                let _ = write!(out, "{}|", "-".repeat(w + 2));
            }
            out.push('\n');
        }
    }
    out
}

fn type_name_for_spec(ty: &FieldType, model: &AppModel) -> String {
    match ty {
        FieldType::Ref(e) => model.entity(*e).name.clone(),
        other => type_name(other, model),
    }
}

fn rules_text(f: &Field) -> String {
    let mut rules: Vec<String> = Vec::new();
    if f.required {
        rules.push("required".into());
    }
    if f.unique {
        rules.push("unique".into());
    }
    if f.read_only {
        rules.push("read only".into());
    }
    if let Some(d) = &f.default {
        rules.push(format!("default {}", default_text(d)));
    }
    match (&f.min, &f.max) {
        (Some(lo), Some(hi)) => rules.push(format!("{}..{}", bound_text(lo), bound_text(hi))),
        (Some(lo), None) => rules.push(format!("min {}", bound_text(lo))),
        (None, Some(hi)) => rules.push(format!("max {}", bound_text(hi))),
        (None, None) => {}
    }
    if let Some(p) = &f.pattern {
        rules.push(format!("pattern {}", quote(p)));
    }
    // `restrict` is the default for references, so it is not written.
    match f.on_delete {
        Some(OnDelete::Cascade) => rules.push("on delete cascade".into()),
        Some(OnDelete::SetNull) => rules.push("on delete set null".into()),
        Some(OnDelete::Restrict) | None => {}
    }
    if let Some(old) = &f.renamed_from {
        rules.push(format!("renamed from {old}"));
    }
    rules.join(", ")
}

fn bound_text(b: &Bound) -> String {
    match b {
        Bound::Length(n) => n.to_string(),
        Bound::Int(n) => n.to_string(),
        Bound::Decimal(d) | Bound::Date(d) => d.clone(),
    }
}

fn default_text(d: &DefaultValue) -> String {
    match d {
        DefaultValue::Me => "me".into(),
        DefaultValue::Now => "now".into(),
        DefaultValue::Today => "today".into(),
        DefaultValue::Bool(b) => b.to_string(),
        DefaultValue::Int(n) => n.to_string(),
        DefaultValue::Decimal(s) | DefaultValue::Date(s) => s.clone(),
        DefaultValue::Enum(s) => enum_member_text(s),
        DefaultValue::Text(s) | DefaultValue::DateTime(s) | DefaultValue::Json(s) => quote(s),
    }
}

/// Members are written bare, except those spelled like `me`, `now` and
/// `today`: bare, those words mean the user, the instant and the date, and a
/// quoted member is read as the member.
fn enum_member_text(member: &str) -> String {
    if matches!(member, "me" | "now" | "today") {
        quote(member)
    } else {
        member.to_string()
    }
}

/// A string literal as the spec's lexer reads it back: `"` and `|` are
/// escaped; other backslashes stand as written.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '|' => out.push_str("\\|"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn escape_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// A condition in the spec's own syntax.
pub fn expr_text(e: &Expr, model: &AppModel) -> String {
    match e {
        Expr::Anyone => "anyone".into(),
        Expr::SignedIn => "signed in".into(),
        Expr::Role { role } => model.role(*role).name.clone(),
        Expr::Compare { path, op, value } => {
            let op = match op {
                CompareOp::Eq => "=",
                CompareOp::Ne => "!=",
            };
            format!("{} {op} {}", path.dotted(), value_text(value, model))
        }
        Expr::Not { expr } => match **expr {
            Expr::And { .. } | Expr::Or { .. } => format!("not ({})", expr_text(expr, model)),
            _ => format!("not {}", expr_text(expr, model)),
        },
        Expr::And { items } => items
            .iter()
            .map(|i| match i {
                Expr::And { .. } | Expr::Or { .. } => format!("({})", expr_text(i, model)),
                _ => expr_text(i, model),
            })
            .collect::<Vec<_>>()
            .join(" and "),
        Expr::Or { items } => items
            .iter()
            .map(|i| match i {
                Expr::Or { .. } => format!("({})", expr_text(i, model)),
                _ => expr_text(i, model),
            })
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

fn value_text(v: &Value, model: &AppModel) -> String {
    match v {
        Value::Me => "me".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Decimal(s) | Value::Date(s) => s.clone(),
        Value::Enum(s) => enum_member_text(s),
        Value::Text(s) => quote(s),
        Value::Role(r) => model.role(*r).name.clone(),
    }
}
