//! Migration plans: ordered steps, the data checks that decide whether each
//! is safe, destructive or refused, and their rendering for people.

use crate::*;
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Advice that is not a step: "this drop + add looks like a rename".
    pub hints: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub change: Change,
    /// Why the step loses data whatever the data is (`drop column`), if so.
    pub destructive: Option<String>,
    /// Questions about the live data that decide the step's verdict.
    pub checks: Vec<DataCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// A new table with its indexes.
    CreateTable {
        table: Table,
    },
    DropTable {
        table: String,
    },
    RenameTable {
        from: String,
        to: String,
    },
    AddColumn {
        table: String,
        column: Column,
        backfill: Option<Backfill>,
    },
    DropColumn {
        table: String,
        column: String,
    },
    RenameColumn {
        table: String,
        from: String,
        to: String,
    },
    /// Type, nullability, check or reference changes of one column.
    /// `backfill` fills NULLs when the column becomes required;
    /// `invalid_to` replaces values the new check rejects (removed enum
    /// members), when the step is allowed to be destructive.
    AlterColumn {
        table: String,
        from: Column,
        to: Column,
        backfill: Option<Backfill>,
        invalid_to: Option<Backfill>,
    },
    CreateIndex {
        table: String,
        index: Index,
    },
    DropIndex {
        table: String,
        index: Index,
    },
}

impl Change {
    pub fn table(&self) -> &str {
        match self {
            Change::CreateTable { table } => &table.name,
            Change::RenameTable { to, .. } => to,
            Change::DropTable { table }
            | Change::AddColumn { table, .. }
            | Change::DropColumn { table, .. }
            | Change::RenameColumn { table, .. }
            | Change::AlterColumn { table, .. }
            | Change::CreateIndex { table, .. }
            | Change::DropIndex { table, .. } => table,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataCheck {
    /// Rows that would lose data (a dropped table or column); for the message.
    RowsWithData {
        table: String,
        column: Option<String>,
    },
    /// A required column without a default can only be added to an empty table.
    TableEmpty {
        table: String,
        column: String,
    },
    /// A column becoming required without a default must hold no NULLs.
    NoNulls {
        table: String,
        column: String,
    },
    NoDuplicates {
        table: String,
        columns: Vec<String>,
    },
    /// Every non-NULL value must convert.
    Converts {
        table: String,
        column: String,
        from: ColumnType,
        to: ColumnType,
    },
    /// Every non-NULL value must pass the new check.
    Satisfies {
        table: String,
        column: String,
        check: Check,
    },
    /// Every non-NULL value must be an id in `target`.
    ReferencesExist {
        table: String,
        column: String,
        target: String,
    },
}

/// What the store found for one check: how many rows fail it, and a few
/// of the offending values for the message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CheckResult {
    pub rows: u64,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    Safe,
    /// Allowed only with `--allow-destructive` (a backup is taken first).
    Destructive(String),
    /// Cannot be applied to this data, whatever the flags.
    Refused(String),
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Safe => "safe",
            Verdict::Destructive(_) => "DESTRUCTIVE",
            Verdict::Refused(_) => "REFUSED",
        }
    }
}

fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}

/// `n` rows and the rest of the clause, in agreement:
/// `count(1, "has", "have")` is "1 row has", `count(3, ..)` "3 rows have".
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", rows(n), if n == 1 { one } else { many })
}

/// "them" or "it", for `n` rows.
fn them(n: u64) -> &'static str {
    if n == 1 {
        "it"
    } else {
        "them"
    }
}

/// The offending values in parentheses; "e.g." unless they are all there.
fn examples(r: &CheckResult) -> String {
    if r.examples.is_empty() {
        String::new()
    } else if r.examples.len() as u64 >= r.rows {
        format!(" ({})", r.examples.join(", "))
    } else {
        format!(" (e.g. {})", r.examples.join(", "))
    }
}

impl Step {
    /// The verdict given the results of this step's checks (in order).
    /// Without results (`None`), checks are assumed to pass: the plan as it
    /// would be on an empty database.
    pub fn verdict(&self, results: Option<&[CheckResult]>) -> Verdict {
        let mut destructive = self.destructive.clone();
        for (i, check) in self.checks.iter().enumerate() {
            let Some(r) = results.and_then(|r| r.get(i)) else { continue };
            let n = r.rows;
            if n == 0 {
                continue;
            }
            match check {
                DataCheck::RowsWithData { column, .. } => {
                    if let Some(d) = &mut destructive {
                        match column {
                            None => {
                                let _ = write!(d, "; {} will be lost", rows(n));
                            }
                            Some(_) => {
                                let _ = write!(d, "; {} a value there", count(n, "has", "have"));
                            }
                        }
                    }
                }
                DataCheck::TableEmpty { column, .. } => {
                    return Verdict::Refused(format!(
                        "{} and `{column}` is required with no default; give it a default, or add it optional first",
                        count(n, "exists", "exist")
                    ))
                }
                DataCheck::NoNulls { column, .. } => {
                    return Verdict::Refused(format!(
                        "{} no value in `{column}`{}; give the field a default or fill {} in first",
                        count(n, "has", "have"),
                        examples(r),
                        them(n)
                    ))
                }
                DataCheck::NoDuplicates { columns, .. } => {
                    return Verdict::Refused(format!(
                        "{} of `{}` with another row{}; make the values unique first",
                        count(n, "shares a value", "share a value"),
                        columns.join(", "),
                        examples(r)
                    ))
                }
                DataCheck::Converts { column, to, .. } => {
                    return Verdict::Refused(format!(
                        "{} of `{column}` that {} not convert to {}{}; change {} first",
                        count(n, "holds a value", "hold values"),
                        if n == 1 { "does" } else { "do" },
                        to.as_str(),
                        examples(r),
                        them(n)
                    ))
                }
                DataCheck::ReferencesExist { column, target, .. } => {
                    return Verdict::Refused(format!(
                        "{} `{column}` at {} not in `{target}`{}; change {} first",
                        count(n, "points", "point"),
                        if n == 1 { "an id that is" } else { "ids that are" },
                        examples(r),
                        them(n)
                    ))
                }
                DataCheck::Satisfies { column, check, .. } => {
                    let invalid_to = match &self.change {
                        Change::AlterColumn { invalid_to, .. } => invalid_to.as_ref(),
                        _ => None,
                    };
                    match (check, invalid_to) {
                        (Check::OneOf(_), Some(to)) => {
                            let fate = match to {
                                Backfill::Value(DbValue::Null) => format!("{} value will be removed", if n == 1 { "its" } else { "their" }),
                                _ => format!("{} will be set to {}", if n == 1 { "it" } else { "they" }, backfill_text(to)),
                            };
                            destructive =
                                Some(format!("{}{}; {fate}", count(n, "uses a removed member", "use removed members"), examples(r)));
                        }
                        _ => {
                            return Verdict::Refused(format!(
                                "{} of `{column}` that the new rule rejects{}; change {} first",
                                count(n, "holds a value", "hold values"),
                                examples(r),
                                them(n)
                            ))
                        }
                    }
                }
            }
        }
        match destructive {
            Some(reason) => Verdict::Destructive(reason),
            None => Verdict::Safe,
        }
    }

    /// One line saying what the step does.
    pub fn describe(&self) -> String {
        match &self.change {
            Change::CreateTable { table } => {
                let n = table.indexes.len();
                format!("create table `{}` ({} columns, {n} {})", table.name, table.columns.len(), if n == 1 { "index" } else { "indexes" })
            }
            Change::DropTable { table } => format!("drop table `{table}`"),
            Change::RenameTable { from, to } => format!("rename table `{from}` to `{to}`"),
            Change::AddColumn { table, column, backfill } => {
                let mut s = format!("add column `{table}.{}` {}", column.name, column_desc(column));
                if let Some(b) = backfill {
                    let _ = write!(s, "; existing rows get {}", backfill_text(b));
                }
                s
            }
            Change::DropColumn { table, column } => format!("drop column `{table}.{column}`"),
            Change::RenameColumn { table, from, to } => format!("rename column `{table}.{from}` to `{to}`"),
            Change::AlterColumn { table, from, to, backfill, .. } => {
                let mut parts = Vec::new();
                if from.ty != to.ty {
                    parts.push(format!("type {} -> {}", from.ty.as_str(), to.ty.as_str()));
                }
                if from.nullable && !to.nullable {
                    let mut p = "now required".to_string();
                    if let Some(b) = backfill {
                        let _ = write!(p, " (rows without a value get {})", backfill_text(b));
                    }
                    parts.push(p);
                }
                if !from.nullable && to.nullable {
                    parts.push("now optional".into());
                }
                if from.check != to.check {
                    parts.push(check_change(from.check.as_ref(), to.check.as_ref()));
                }
                if from.references != to.references {
                    match (&from.references, &to.references) {
                        (Some(a), Some(b)) if a.table == b.table => {
                            parts.push(format!("on delete {} -> {}", a.on_delete.as_str(), b.on_delete.as_str()))
                        }
                        (_, Some(b)) => parts.push(format!("now references `{}`", b.table)),
                        (Some(_), None) => parts.push("no longer a reference".into()),
                        (None, None) => {}
                    }
                }
                format!("change column `{table}.{}`: {}", to.name, parts.join(", "))
            }
            Change::CreateIndex { table, index } => {
                format!(
                    "create {}index `{}` on `{table}` ({})",
                    if index.unique { "unique " } else { "" },
                    index.name,
                    index.columns.join(", ")
                )
            }
            Change::DropIndex { table, index } => format!("drop index `{}` on `{table}`", index.name),
        }
    }
}

fn column_desc(c: &Column) -> String {
    let mut s = c.ty.as_str().to_string();
    if !c.nullable {
        s.push_str(" not null");
    }
    if let Some(r) = &c.references {
        let _ = write!(s, " references `{}` on delete {}", r.table, r.on_delete.as_str());
    }
    s
}

fn check_change(from: Option<&Check>, to: Option<&Check>) -> String {
    match (from, to) {
        (Some(Check::OneOf(a)), Some(Check::OneOf(b))) => {
            let added: Vec<&str> = b.iter().filter(|m| !a.contains(m)).map(String::as_str).collect();
            let removed: Vec<&str> = a.iter().filter(|m| !b.contains(m)).map(String::as_str).collect();
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("members added: {}", added.join(", ")));
            }
            if !removed.is_empty() {
                parts.push(format!("members removed: {}", removed.join(", ")));
            }
            if parts.is_empty() {
                parts.push("members reordered".into());
            }
            parts.join("; ")
        }
        (None, Some(c)) => format!("rule {} added", check_text(c)),
        (Some(a), Some(b)) => format!("rule {} -> {}", check_text(a), check_text(b)),
        (Some(c), None) => format!("rule {} removed", check_text(c)),
        (None, None) => String::new(),
    }
}

/// A check as the spec writes it: `1..40`, `min 2`, `one of a, b`.
fn check_text(c: &Check) -> String {
    let range = |lo: Option<String>, hi: Option<String>| match (lo, hi) {
        (Some(l), Some(h)) => format!("`{l}..{h}`"),
        (Some(l), None) => format!("`min {l}`"),
        (None, Some(h)) => format!("`max {h}`"),
        (None, None) => "`any`".into(),
    };
    match c {
        Check::OneOf(m) => format!("`one of {}`", m.join(", ")),
        Check::Length { min, max } => range(min.map(|v| v.to_string()), max.map(|v| v.to_string())),
        Check::IntRange { min, max } => range(min.map(|v| v.to_string()), max.map(|v| v.to_string())),
    }
}

pub fn backfill_text(b: &Backfill) -> String {
    match b {
        Backfill::Now => "the current time".into(),
        Backfill::Today => "today's date".into(),
        Backfill::Value(v) => match v {
            DbValue::Null => "no value".into(),
            DbValue::Integer(n) => n.to_string(),
            DbValue::Boolean(b) => b.to_string(),
            DbValue::Text(s) | DbValue::Json(s) => format!("{s:?}"),
            DbValue::Decimal(s) | DbValue::Date(s) | DbValue::DateTime(s) => s.clone(),
        },
    }
}

/// A plan with its verdicts, as `charter plan` prints it.
/// `results[i]` holds the check results of step `i` when its checks ran.
pub fn render_plan(plan: &Plan, results: &[Option<Vec<CheckResult>>]) -> String {
    let mut out = String::new();
    if plan.steps.is_empty() {
        out.push_str("Nothing to do: the database matches the spec.\n");
    }
    let verdicts: Vec<Verdict> = plan.steps.iter().enumerate().map(|(i, s)| s.verdict(results.get(i).and_then(Option::as_deref))).collect();
    let width = plan.steps.len().to_string().len();
    for (i, (step, verdict)) in plan.steps.iter().zip(&verdicts).enumerate() {
        let _ = writeln!(out, "{:>width$}. [{}] {}", i + 1, verdict.label(), step.describe());
        match verdict {
            Verdict::Safe => {}
            Verdict::Destructive(r) | Verdict::Refused(r) => {
                let _ = writeln!(out, "{:>width$}  {}", "", r);
            }
        }
    }
    for hint in &plan.hints {
        let _ = writeln!(out, "hint: {hint}");
    }
    let destructive = verdicts.iter().filter(|v| matches!(v, Verdict::Destructive(_))).count();
    let refused = verdicts.iter().filter(|v| matches!(v, Verdict::Refused(_))).count();
    if !plan.steps.is_empty() {
        let _ = writeln!(
            out,
            "{} step{}: {} safe, {} destructive, {} refused",
            plan.steps.len(),
            if plan.steps.len() == 1 { "" } else { "s" },
            plan.steps.len() - destructive - refused,
            destructive,
            refused
        );
    }
    out
}
