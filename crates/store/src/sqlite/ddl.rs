//! SQLite DDL for the logical schema. Tables are STRICT, so a value of the
//! wrong type is an error, never silently stored.

use charter_schema::{Check, Column, ColumnType, Index, OnDelete, Table};

/// A quoted identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal for CHECK constraints. Only model words reach here
/// (enum members, role names: `[a-z0-9_]`); anything else is a bug.
fn word_literal(w: &str) -> String {
    assert!(w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "not a model word: {w:?}");
    format!("'{w}'")
}

pub fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Integer | ColumnType::Boolean => "INTEGER",
        ColumnType::Text | ColumnType::Decimal | ColumnType::Date | ColumnType::DateTime | ColumnType::Json => "TEXT",
    }
}

pub fn column_def(c: &Column) -> String {
    let name = ident(&c.name);
    let mut s = format!("{name} {}", sql_type(c.ty));
    if c.primary_key {
        s.push_str(" PRIMARY KEY");
    }
    if !c.nullable {
        s.push_str(" NOT NULL");
    }
    match c.ty {
        ColumnType::Boolean => s.push_str(&format!(" CHECK ({name} IN (0, 1))")),
        ColumnType::Json => s.push_str(&format!(" CHECK (json_valid({name}))")),
        _ => {}
    }
    if let Some(check) = &c.check {
        s.push_str(&format!(" CHECK ({})", check_expr(&name, check)));
    }
    if let Some(r) = &c.references {
        let action = match r.on_delete {
            OnDelete::Cascade => "CASCADE",
            OnDelete::Restrict => "RESTRICT",
            OnDelete::SetNull => "SET NULL",
        };
        s.push_str(&format!(" REFERENCES {}(\"id\") ON DELETE {action}", ident(&r.table)));
    }
    s
}

pub fn check_expr(col: &str, check: &Check) -> String {
    match check {
        Check::OneOf(members) => format!("{col} IN ({})", members.iter().map(|m| word_literal(m)).collect::<Vec<_>>().join(", ")),
        Check::Length { min, max } => range(&format!("length({col})"), min.map(|v| v.to_string()), max.map(|v| v.to_string())),
        Check::IntRange { min, max } => range(col, min.map(|v| v.to_string()), max.map(|v| v.to_string())),
    }
}

fn range(expr: &str, min: Option<String>, max: Option<String>) -> String {
    match (min, max) {
        (Some(lo), Some(hi)) => format!("{expr} BETWEEN {lo} AND {hi}"),
        (Some(lo), None) => format!("{expr} >= {lo}"),
        (None, Some(hi)) => format!("{expr} <= {hi}"),
        (None, None) => "1".into(),
    }
}

pub fn create_table(table: &Table, name: &str) -> String {
    let cols: Vec<String> = table.columns.iter().map(column_def).collect();
    format!("CREATE TABLE {} (\n  {}\n) STRICT", ident(name), cols.join(",\n  "))
}

pub fn create_index(table: &str, index: &Index) -> String {
    format!(
        "CREATE {}INDEX IF NOT EXISTS {} ON {} ({})",
        if index.unique { "UNIQUE " } else { "" },
        ident(&index.name),
        ident(table),
        index.columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
    )
}

/// The SQL expression converting `col` from one type to another, for a
/// value that the Rust-side check (`convert::converts`) accepted.
pub fn convert_expr(col: &str, from: ColumnType, to: ColumnType) -> String {
    use ColumnType::*;
    match (from, to) {
        (a, b) if a == b => col.to_string(),
        (Boolean, Text) => format!("CASE {col} WHEN 1 THEN 'true' WHEN 0 THEN 'false' END"),
        (_, Text) | (Integer, Decimal) => format!("CAST({col} AS TEXT)"),
        (_, Integer) => format!("CAST({col} AS INTEGER)"),
        (Text, Boolean) => format!("CASE lower({col}) WHEN 'true' THEN 1 WHEN '1' THEN 1 WHEN 'false' THEN 0 WHEN '0' THEN 0 END"),
        (Integer, Boolean) => col.to_string(),
        (Date, DateTime) => format!("{col} || 'T00:00:00.000Z'"),
        (Text, DateTime) => format!("strftime('%Y-%m-%dT%H:%M:%fZ', {col})"),
        (DateTime, Date) => format!("substr({col}, 1, 10)"),
        _ => col.to_string(),
    }
}
