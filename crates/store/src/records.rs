//! Records: the types of the record API and the SQL it runs, for both
//! dialects. Permission conditions are compiled here into SQL predicates, so
//! every read and write carries its rule in the statement itself: lists are
//! filtered by the database and there is no check-then-act gap.
//!
//! Semantics of conditions (both dialects, by construction the same): SQL's
//! three-valued logic, with "unknown" denying. A comparison with a missing
//! value (no signed-in caller for `me`, a NULL field, a path through an
//! empty reference) is unknown, so `owner = me` and `owner != me` both deny
//! an anonymous caller, and `not (owner = me)` does too.

use charter_model::{AppModel, Builtin, CompareOp, EntityId, Expr, FieldId, FieldType, Path, RoleId, Value};
use charter_schema::{ColumnType, DbValue};

/// Who is asking. `user` is `None` for anonymous callers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caller {
    pub user: Option<String>,
    pub role: Option<RoleId>,
}

impl Caller {
    pub fn anonymous() -> Caller {
        Caller::default()
    }

    pub fn user(id: impl Into<String>, role: RoleId) -> Caller {
        Caller { user: Some(id.into()), role: Some(role) }
    }
}

/// A record as the API shows it: fields in model order.
pub type Record = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    /// Case-insensitive substring (text).
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub field: FieldId,
    pub op: FilterOp,
    /// One value, or several for `In`. `DbValue::Null` matches NULL for `Eq`/`Ne`.
    pub values: Vec<DbValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub field: FieldId,
    pub descending: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub filters: Vec<Filter>,
    /// Sort keys; `id` is always added last as the tie-break.
    pub sort: Vec<SortKey>,
    pub limit: u32,
    /// The keyset position to continue after: the values of the sort keys
    /// and then the id of the last row of the previous page.
    pub after: Option<Vec<DbValue>>,
    pub count: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Record>,
    /// The keyset of the last item when there may be more rows.
    pub next: Option<Vec<DbValue>>,
    pub count: Option<u64>,
}

/// Why a write did not happen. `NotFound` covers rows the caller cannot
/// read: an invisible row is indistinguishable from a missing one.
#[derive(Debug)]
pub enum WriteError {
    NotFound,
    /// The row is visible but the rule for this action does not hold
    /// (before or after the change).
    Forbidden,
    /// `If-Match` no longer matches.
    Stale {
        current_version: i64,
    },
    /// A reference points at a row that does not exist or the caller cannot read.
    ReferenceNotFound {
        field: String,
    },
    /// A unique field already has this value.
    Unique {
        field: String,
    },
    /// `on delete restrict` keeps this row: others refer to it.
    Restricted,
    Store(crate::StoreError),
}

impl From<crate::StoreError> for WriteError {
    fn from(e: crate::StoreError) -> Self {
        WriteError::Store(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// SQL text and its bind parameters, built together so placeholders and
/// values cannot drift apart.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    pub dialect: Dialect,
    pub text: String,
    pub params: Vec<DbValue>,
    aliases: usize,
}

pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Sql {
    pub fn new(dialect: Dialect) -> Sql {
        Sql { dialect, text: String::new(), params: Vec::new(), aliases: 0 }
    }

    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// A placeholder for `v`, typed for the column it meets.
    pub fn param(&mut self, v: DbValue, ty: ColumnType) -> String {
        self.params.push(v);
        let n = self.params.len();
        match self.dialect {
            // Numbered, so text may be assembled in any order.
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => match ty {
                ColumnType::Text => format!("${n}::text"),
                ColumnType::Integer => format!("${n}::bigint"),
                ColumnType::Decimal => format!("${n}::numeric"),
                ColumnType::Boolean => format!("${n}::boolean"),
                ColumnType::Date => format!("${n}::date"),
                ColumnType::DateTime => format!("${n}::timestamptz"),
                ColumnType::Json => format!("${n}::jsonb"),
            },
        }
    }

    /// A value placeholder for comparing with a column of type `ty`
    /// (decimals compare as numbers in SQLite, where they are stored as text).
    pub fn cmp_param(&mut self, v: DbValue, ty: ColumnType) -> String {
        let p = self.param(v, ty);
        match (self.dialect, ty) {
            (Dialect::Sqlite, ColumnType::Decimal) => format!("CAST({p} AS REAL)"),
            _ => p,
        }
    }

    /// A column as compared and sorted.
    pub fn col(&self, alias: &str, name: &str, ty: ColumnType) -> String {
        let c = format!("{alias}.{}", ident(name));
        match (self.dialect, ty) {
            (Dialect::Sqlite, ColumnType::Decimal) => format!("CAST({c} AS REAL)"),
            _ => c,
        }
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("p{}", self.aliases)
    }
}

/// The logical column type of a field.
pub(crate) fn column_type(ty: &FieldType) -> ColumnType {
    match ty {
        FieldType::Int => ColumnType::Integer,
        FieldType::Decimal => ColumnType::Decimal,
        FieldType::Bool => ColumnType::Boolean,
        FieldType::Date => ColumnType::Date,
        FieldType::DateTime => ColumnType::DateTime,
        FieldType::Json => ColumnType::Json,
        _ => ColumnType::Text,
    }
}

/// Where a condition reads the row's own fields from.
pub(crate) enum RowSource<'a> {
    /// A table alias in the statement.
    Alias(&'a str),
    /// Values of a row about to be inserted.
    Values(&'a [(FieldId, DbValue)]),
}

/// Compiles a permission condition into a SQL predicate for `caller`.
/// Facts about the caller (signed in, role) are decided here, so the SQL
/// holds only row conditions.
pub(crate) fn predicate(
    sql: &mut Sql,
    model: &AppModel,
    _entity: EntityId,
    expr: Option<&Expr>,
    row: &RowSource,
    caller: &Caller,
) -> String {
    match expr {
        None => Pred::False.render(),
        Some(e) => compile(sql, model, e, row, caller, true).render(),
    }
}

/// A compiled condition, with constants folded so the planner sees only
/// row conditions.
enum Pred {
    True,
    False,
    Sql(String),
}

impl Pred {
    fn render(self) -> String {
        match self {
            Pred::True => "(1 = 1)".into(),
            Pred::False => "(1 = 0)".into(),
            Pred::Sql(s) => s,
        }
    }
}

/// `approx` holds while no `not` is above: there "unknown" and "false"
/// lead to the same outcome (the row is not matched), so a comparison with
/// a missing value may be folded to false and paths may use the
/// index-friendly `IN (SELECT ...)` form. Under a `not`, everything is
/// compiled exactly, keeping SQL's three-valued logic.
fn compile(sql: &mut Sql, model: &AppModel, e: &Expr, row: &RowSource, caller: &Caller, approx: bool) -> Pred {
    let truth = |b: bool| if b { Pred::True } else { Pred::False };
    match e {
        Expr::Anyone => Pred::True,
        Expr::SignedIn => truth(caller.user.is_some()),
        Expr::Role { role } => truth(caller.user.is_some() && caller.role == Some(*role)),
        Expr::Not { expr } => match compile(sql, model, expr, row, caller, false) {
            Pred::True => Pred::False,
            Pred::False => Pred::True,
            Pred::Sql(s) => Pred::Sql(format!("(NOT {s})")),
        },
        Expr::And { items } | Expr::Or { items } => {
            let and = matches!(e, Expr::And { .. });
            // Parameters of parts that fold away are dropped again, so the
            // text and its parameters stay in step.
            let start = sql.params.len();
            let mut parts = Vec::new();
            for item in items {
                let before = sql.params.len();
                match (compile(sql, model, item, row, caller, approx), and) {
                    (Pred::False, true) => {
                        sql.params.truncate(start);
                        return Pred::False;
                    }
                    (Pred::True, false) => {
                        sql.params.truncate(start);
                        return Pred::True;
                    }
                    (Pred::True, true) | (Pred::False, false) => sql.params.truncate(before),
                    (Pred::Sql(s), _) => parts.push(s),
                }
            }
            match parts.len() {
                0 => truth(and),
                1 => Pred::Sql(parts.pop().expect("one part")),
                _ => Pred::Sql(format!("({})", parts.join(if and { " AND " } else { " OR " }))),
            }
        }
        Expr::Compare { path, op, value } => {
            let last = path.last();
            let f = model.entity(last.entity).field(last.field);
            let ty = column_type(&f.ty);
            let v = match value {
                Value::Me => caller.user.clone().map_or(DbValue::Null, DbValue::Text),
                Value::Bool(b) => DbValue::Boolean(*b),
                Value::Int(n) => DbValue::Integer(*n),
                Value::Decimal(d) => DbValue::Decimal(d.clone()),
                Value::Text(s) => match ty {
                    ColumnType::DateTime => DbValue::DateTime(s.clone()),
                    _ => DbValue::Text(s.clone()),
                },
                Value::Date(d) => DbValue::Date(d.clone()),
                Value::Enum(m) => DbValue::Text(m.clone()),
                Value::Role(r) => DbValue::Text(model.role(*r).name.clone()),
            };
            let op = match op {
                CompareOp::Eq => "=",
                CompareOp::Ne => "<>",
            };
            // A missing value makes the comparison unknown.
            if v == DbValue::Null {
                return if approx { Pred::False } else { Pred::Sql("(NULL)".into()) };
            }
            let rhs = sql.cmp_param(v, ty);
            if approx && path.steps.len() > 1 {
                return Pred::Sql(format!("({})", path_in(sql, model, path, row, op, &rhs)));
            }
            let mut lhs = path_expr(sql, model, path, row);
            if sql.dialect == Dialect::Sqlite && ty == ColumnType::Decimal {
                lhs = format!("CAST({lhs} AS REAL)");
            }
            Pred::Sql(format!("({lhs} {op} {rhs})"))
        }
    }
}

/// `row.a IN (SELECT p1."id" FROM A p1 WHERE p1.b IN (... WHERE pn.z op rhs))`:
/// the same rows as following the path with scalar subqueries when unknown
/// counts as false, but planned from the inside out through indexes.
fn path_in(sql: &mut Sql, model: &AppModel, path: &Path, row: &RowSource, op: &str, rhs: &str) -> String {
    let first = &path.steps[0];
    let head = match row {
        RowSource::Alias(a) => format!("{a}.{}", ident(&first.name)),
        RowSource::Values(values) => {
            let field = model.entity(first.entity).field(first.field);
            let v = values.iter().find(|(f, _)| *f == first.field).map_or(DbValue::Null, |(_, v)| v.clone());
            sql.param(v, column_type(&field.ty))
        }
    };
    let mut cond = String::new();
    let mut closes = 0;
    let mut current = head;
    for (i, step) in path.steps.iter().enumerate().skip(1) {
        let alias = sql.alias();
        let table = ident(&model.entity(step.entity).plural);
        let mut col = format!("{alias}.{}", ident(&step.name));
        if i + 1 == path.steps.len() {
            let f = model.entity(step.entity).field(step.field);
            if sql.dialect == Dialect::Sqlite && column_type(&f.ty) == ColumnType::Decimal {
                col = format!("CAST({col} AS REAL)");
            }
            cond.push_str(&format!("{current} IN (SELECT {alias}.\"id\" FROM {table} {alias} WHERE {col} {op} {rhs}"));
        } else {
            cond.push_str(&format!("{current} IN (SELECT {alias}.\"id\" FROM {table} {alias} WHERE "));
            current = col;
        }
        closes += 1;
    }
    cond.push_str(&")".repeat(closes));
    cond
}

/// The value at `path`: the row's own field, then one scalar subquery per
/// reference followed.
fn path_expr(sql: &mut Sql, model: &AppModel, path: &Path, row: &RowSource) -> String {
    let first = &path.steps[0];
    let first_field = model.entity(first.entity).field(first.field);
    let mut expr = match row {
        RowSource::Alias(a) => format!("{a}.{}", ident(&first.name)),
        RowSource::Values(values) => {
            let v = values.iter().find(|(f, _)| *f == first.field).map_or(DbValue::Null, |(_, v)| v.clone());
            sql.param(v, column_type(&first_field.ty))
        }
    };
    for step in &path.steps[1..] {
        let alias = sql.alias();
        let table = &model.entity(step.entity).plural;
        expr = format!("(SELECT {alias}.{} FROM {} {alias} WHERE {alias}.\"id\" = {expr})", ident(&step.name), ident(table));
    }
    expr
}

/// Whether the caller may read `email` of the User row at `alias`: their
/// own, or as the `read email` rule says.
pub(crate) fn email_visible(sql: &mut Sql, model: &AppModel, alias: &str, caller: &Caller) -> String {
    let user = model.user();
    let (email_id, _) = user.field_by_name("email").expect("User has email");
    let own = match &caller.user {
        Some(id) => {
            let p = sql.param(DbValue::Text(id.clone()), ColumnType::Text);
            format!("({alias}.\"id\" = {p})")
        }
        None => "(1 = 0)".to_string(),
    };
    let rule = predicate(
        sql,
        model,
        charter_model::USER,
        user.permissions.field_rule(charter_model::Action::Read, email_id),
        &RowSource::Alias(alias),
        caller,
    );
    format!("({own} OR {rule})")
}

/// The columns of an entity in model order, with the builtin kind of each.
pub(crate) fn select_columns(model: &AppModel, entity: EntityId) -> Vec<(String, ColumnType, Option<Builtin>)> {
    model.entity(entity).fields.iter().map(|f| (f.name.clone(), column_type(&f.ty), f.builtin)).collect()
}

/// The keyset condition "after `values`" for the sort keys (then id), with
/// NULL ordered as the smallest value in both dialects.
pub(crate) fn keyset_after(sql: &mut Sql, alias: &str, keys: &[(String, ColumnType, bool)], values: &[DbValue]) -> String {
    let mut ors = Vec::new();
    for i in 0..keys.len() {
        let mut ands = Vec::new();
        for (j, (name, ty, _)) in keys.iter().enumerate().take(i) {
            let col = sql.col(alias, name, *ty);
            match &values[j] {
                DbValue::Null => ands.push(format!("{col} IS NULL")),
                v => {
                    let p = sql.cmp_param(v.clone(), *ty);
                    ands.push(format!("{col} = {p}"));
                }
            }
        }
        let (name, ty, desc) = &keys[i];
        let col = sql.col(alias, name, *ty);
        let after = match (&values[i], desc) {
            (DbValue::Null, false) => Some(format!("{col} IS NOT NULL")),
            (DbValue::Null, true) => None, // nothing sorts below NULL
            (v, false) => {
                let p = sql.cmp_param(v.clone(), *ty);
                Some(format!("{col} > {p}"))
            }
            (v, true) => {
                let p = sql.cmp_param(v.clone(), *ty);
                Some(format!("({col} < {p} OR {col} IS NULL)"))
            }
        };
        if let Some(a) = after {
            ands.push(a);
            ors.push(format!("({})", ands.join(" AND ")));
        }
    }
    if ors.is_empty() {
        "(1 = 0)".to_string()
    } else {
        format!("({})", ors.join(" OR "))
    }
}

/// `ORDER BY` for the keys, NULLs first ascending and last descending in
/// both dialects (SQLite's natural order).
pub(crate) fn order_by(sql: &Sql, alias: &str, keys: &[(String, ColumnType, bool)]) -> String {
    keys.iter()
        .map(|(name, ty, desc)| {
            let col = sql.col(alias, name, *ty);
            match (sql.dialect, desc) {
                (Dialect::Sqlite, false) => format!("{col} ASC"),
                (Dialect::Sqlite, true) => format!("{col} DESC"),
                (Dialect::Postgres, false) => format!("{col} ASC NULLS FIRST"),
                (Dialect::Postgres, true) => format!("{col} DESC NULLS LAST"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A list filter as SQL.
pub(crate) fn filter_sql(sql: &mut Sql, model: &AppModel, entity: EntityId, alias: &str, f: &Filter) -> String {
    let field = model.entity(entity).field(f.field);
    let ty = column_type(&field.ty);
    let col = sql.col(alias, &field.name, ty);
    let first = f.values.first().cloned().unwrap_or(DbValue::Null);
    match (f.op, &first) {
        (FilterOp::Eq, DbValue::Null) => format!("{col} IS NULL"),
        (FilterOp::Ne, DbValue::Null) => format!("{col} IS NOT NULL"),
        (FilterOp::Ne, v) => {
            // `!=` includes rows where the field is empty: people asking for
            // "not done" do not expect rows without a value to vanish.
            let p = sql.cmp_param(v.clone(), ty);
            format!("({col} <> {p} OR {col} IS NULL)")
        }
        (FilterOp::In, _) => {
            if f.values.is_empty() {
                return "(1 = 0)".into();
            }
            let ps: Vec<String> = f.values.iter().map(|v| sql.cmp_param(v.clone(), ty)).collect();
            format!("{col} IN ({})", ps.join(", "))
        }
        (FilterOp::Contains, v) => {
            let p = sql.param(v.clone(), ColumnType::Text);
            match sql.dialect {
                Dialect::Sqlite => format!("instr(lower({col}), lower({p})) > 0"),
                Dialect::Postgres => format!("strpos(lower({col}), lower({p})) > 0"),
            }
        }
        (op, v) => {
            let p = sql.cmp_param(v.clone(), ty);
            let o = match op {
                FilterOp::Eq => "=",
                FilterOp::Gt => ">",
                FilterOp::Gte => ">=",
                FilterOp::Lt => "<",
                FilterOp::Lte => "<=",
                _ => unreachable!("handled above"),
            };
            format!("{col} {o} {p}")
        }
    }
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        WriteError::Store(crate::StoreError::from(e))
    }
}
