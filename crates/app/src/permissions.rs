//! What a permission rule means for one kind of caller before any row is
//! looked at, and the rule in plain words. The store enforces rules in
//! SQL; this is for answering early (an anonymous create that can never be
//! allowed is 401, not a list of field errors) and for `charter audit`.
//!
//! The logic is SQL's, as the store compiles it: a comparison with `me`
//! for an anonymous caller is unknown, and unknown denies.

use charter_model::{AppModel, CompareOp, Expr, RoleId, Value};

/// Who is asking, as far as rules can tell before reading a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Anonymous,
    Role(RoleId),
}

/// A rule's value for a kind of caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    /// SQL unknown (a comparison with `me` and nobody signed in): denies,
    /// and so does its negation.
    Unknown,
    /// Depends on the row.
    Depends,
}

impl Verdict {
    /// Whether the rule can never hold for this caller, whatever the row.
    pub fn never(self) -> bool {
        matches!(self, Verdict::Denied | Verdict::Unknown)
    }
}

pub fn verdict(rule: Option<&Expr>, who: Who) -> Verdict {
    match rule {
        None => Verdict::Denied,
        Some(e) => eval(e, who),
    }
}

/// The values a condition can take for this caller over all rows, as a
/// set of SQL's three values (bit 0 true, bit 1 false, bit 2 unknown).
/// Tracking the set, not one value, keeps `x = me and y = 1` for an
/// anonymous caller at "never true" (unknown and anything is never true).
const T: u8 = 1;
const F: u8 = 2;
const U: u8 = 4;

fn possible(e: &Expr, who: Who) -> u8 {
    let b = |x: bool| if x { T } else { F };
    match e {
        Expr::Anyone => T,
        Expr::SignedIn => b(who != Who::Anonymous),
        Expr::Role { role } => b(who == Who::Role(*role)),
        Expr::Compare { value: Value::Me, .. } if who == Who::Anonymous => U,
        // A row may match, not match, or hold no value (unknown).
        Expr::Compare { .. } => T | F | U,
        Expr::Not { expr } => {
            let v = possible(expr, who);
            (if v & T != 0 { F } else { 0 }) | (if v & F != 0 { T } else { 0 }) | (v & U)
        }
        Expr::And { items } => items.iter().map(|i| possible(i, who)).fold(T, |acc, v| combine(acc, v, and3)),
        Expr::Or { items } => items.iter().map(|i| possible(i, who)).fold(F, |acc, v| combine(acc, v, or3)),
    }
}

fn combine(a: u8, b: u8, op: fn(u8, u8) -> u8) -> u8 {
    let mut out = 0;
    for x in [T, F, U] {
        for y in [T, F, U] {
            if a & x != 0 && b & y != 0 {
                out |= op(x, y);
            }
        }
    }
    out
}

fn and3(x: u8, y: u8) -> u8 {
    if x == F || y == F {
        F
    } else if x == U || y == U {
        U
    } else {
        T
    }
}

fn or3(x: u8, y: u8) -> u8 {
    if x == T || y == T {
        T
    } else if x == U || y == U {
        U
    } else {
        F
    }
}

fn eval(e: &Expr, who: Who) -> Verdict {
    match possible(e, who) {
        T => Verdict::Allowed,
        U => Verdict::Unknown,
        v if v & T == 0 => Verdict::Denied,
        _ => Verdict::Depends,
    }
}

/// The part of a rule that still depends on the row, for this caller
/// (`None` when the rule does not depend on the row).
pub fn residual(rule: &Expr, who: Who) -> Option<Expr> {
    match eval(rule, who) {
        Verdict::Depends => Some(simplify(rule, who)),
        _ => None,
    }
}

fn simplify(e: &Expr, who: Who) -> Expr {
    match e {
        Expr::And { items } | Expr::Or { items } => {
            let and = matches!(e, Expr::And { .. });
            // Parts that are settled for this caller drop out: true parts
            // of an `and`, false parts of an `or`.
            let kept: Vec<Expr> = items
                .iter()
                .filter(|i| {
                    let v = eval(i, who);
                    !(and && v == Verdict::Allowed || !and && v.never())
                })
                .map(|i| simplify(i, who))
                .collect();
            match kept.len() {
                1 => kept.into_iter().next().expect("one"),
                _ if and => Expr::And { items: kept },
                _ => Expr::Or { items: kept },
            }
        }
        Expr::Not { expr } => Expr::Not { expr: Box::new(simplify(expr, who)) },
        other => other.clone(),
    }
}

/// A condition in plain words: `project.owner = me or admin` reads
/// "the project's owner is you, or the caller is an admin".
pub fn words(model: &AppModel, e: &Expr) -> String {
    match e {
        Expr::Anyone => "anyone".into(),
        Expr::SignedIn => "the caller is signed in".into(),
        Expr::Role { role } => format!("the caller is {} {}", article(&model.role(*role).name), model.role(*role).name),
        Expr::Compare { path, op, value } => {
            let subject = {
                let names: Vec<&str> = path.steps.iter().map(|s| s.name.as_str()).collect();
                let mut out = format!("its {}", names[0].replace('_', " "));
                for n in &names[1..] {
                    out = format!("{out}'s {}", n.replace('_', " "));
                }
                if path.steps.len() == 1 && names[0] == "id" {
                    out = "it".into();
                }
                out
            };
            let verb = if *op == CompareOp::Eq { "is" } else { "is not" };
            let v = match value {
                Value::Me => "you".to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Int(n) => n.to_string(),
                Value::Decimal(d) | Value::Date(d) | Value::Enum(d) => d.clone(),
                Value::Text(t) => format!("\"{t}\""),
                Value::Role(r) => model.role(*r).name.clone(),
            };
            format!("{subject} {verb} {v}")
        }
        Expr::Not { expr } => format!("not ({})", words(model, expr)),
        Expr::And { items } => items.iter().map(|i| group(model, i)).collect::<Vec<_>>().join(" and "),
        Expr::Or { items } => items.iter().map(|i| group(model, i)).collect::<Vec<_>>().join(", or "),
    }
}

fn group(model: &AppModel, e: &Expr) -> String {
    match e {
        Expr::And { .. } | Expr::Or { .. } => format!("({})", words(model, e)),
        _ => words(model, e),
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "# T\n\n## Roles\n- member (default)\n- admin\n\n## Entities\n\n### Project\n| field | type | rules |\n|---|---|---|\n| owner | User | default me |\n\nPermissions:\n- read: owner = me or admin\n- create: signed in\n- update: not (owner = me)\n- delete: admin and owner != me\n";

    #[test]
    fn verdicts_follow_sql_logic() {
        let m = charter_model::compile(SPEC).model.unwrap();
        let p = &m.entity_by_name("Project").unwrap().permissions;
        let admin = Who::Role(m.role_by_name("admin").unwrap());
        let member = Who::Role(m.role_by_name("member").unwrap());
        assert_eq!(verdict(p.read.as_ref(), admin), Verdict::Allowed);
        assert_eq!(verdict(p.read.as_ref(), member), Verdict::Depends);
        assert_eq!(verdict(p.read.as_ref(), Who::Anonymous), Verdict::Unknown);
        assert_eq!(verdict(p.update.as_ref(), Who::Anonymous), Verdict::Unknown, "not unknown is unknown");
        assert_eq!(verdict(p.create.as_ref(), Who::Anonymous), Verdict::Denied);
        assert_eq!(verdict(p.delete.as_ref(), member), Verdict::Denied);
        let both = Expr::And { items: vec![p.read.clone().unwrap(), Expr::SignedIn] };
        assert!(verdict(Some(&both), Who::Anonymous).never());
        let owner_and_open = Expr::And { items: vec![p.update.clone().unwrap(), Expr::Anyone] };
        assert!(verdict(Some(&owner_and_open), Who::Anonymous).never(), "unknown and anything is never true");
        assert_eq!(words(&m, &residual(p.read.as_ref().unwrap(), member).unwrap()), "its owner is you");
        assert_eq!(words(&m, p.read.as_ref().unwrap()), "its owner is you, or the caller is an admin");
    }
}
