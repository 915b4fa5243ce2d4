//! PostgreSQL DDL for the logical schema. Constraints carry names derived
//! from their table and column, so a migration can drop and re-add exactly
//! the one it changes without reading the catalog.

use charter_schema::{index_name, Check, Column, ColumnType, Index, OnDelete, Table, MAX_IDENT};

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
        ColumnType::Text => "text",
        ColumnType::Integer => "bigint",
        ColumnType::Decimal => "numeric",
        ColumnType::Boolean => "boolean",
        ColumnType::Date => "date",
        ColumnType::DateTime => "timestamptz",
        ColumnType::Json => "jsonb",
    }
}

/// The type as the catalog spells it (`format_type`), for drift facts.
pub fn catalog_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::DateTime => "timestamp with time zone",
        other => sql_type(other),
    }
}

/// `ck_<table>_<column>`: the column's CHECK constraint.
pub fn check_name(table: &str, column: &str) -> String {
    index_name("ck", table, &[column])
}

/// `fk_<table>_<column>`: the column's FOREIGN KEY constraint.
pub fn fk_name(table: &str, column: &str) -> String {
    index_name("fk", table, &[column])
}

/// `pk_<table>`. Named by us, not left to PostgreSQL's `<table>_pkey`,
/// which would keep the old table's name after a rename and then collide
/// with a new table of that name.
pub fn pk_name(table: &str) -> String {
    let name = format!("pk_{table}");
    if name.len() <= MAX_IDENT {
        name
    } else {
        index_name("pk", table, &["key"])
    }
}

pub fn on_delete_sql(on_delete: OnDelete) -> &'static str {
    match on_delete {
        OnDelete::Cascade => "CASCADE",
        OnDelete::Restrict => "RESTRICT",
        OnDelete::SetNull => "SET NULL",
    }
}

/// The column as created. NOT NULL is left to the caller when `with_not_null`
/// is false: a column added to a table with rows is back-filled first.
pub fn column_def(table: &str, c: &Column, with_not_null: bool) -> String {
    let name = ident(&c.name);
    let mut s = format!("{name} {}", sql_type(c.ty));
    if c.primary_key {
        s.push_str(&format!(" CONSTRAINT {} PRIMARY KEY", ident(&pk_name(table))));
    }
    if !c.nullable && with_not_null {
        s.push_str(" NOT NULL");
    }
    if let Some(check) = &c.check {
        s.push_str(&format!(" CONSTRAINT {} CHECK ({})", ident(&check_name(table, &c.name)), check_expr(&name, check)));
    }
    if let Some(r) = &c.references {
        s.push_str(&format!(
            " CONSTRAINT {} REFERENCES {}(\"id\") ON DELETE {}",
            ident(&fk_name(table, &c.name)),
            ident(&r.table),
            on_delete_sql(r.on_delete)
        ));
    }
    s
}

pub fn check_expr(col: &str, check: &Check) -> String {
    match check {
        Check::OneOf(members) => format!("{col} IN ({})", members.iter().map(|m| word_literal(m)).collect::<Vec<_>>().join(", ")),
        Check::Length { min, max } => range(&format!("char_length({col})"), min.map(|v| v.to_string()), max.map(|v| v.to_string())),
        Check::IntRange { min, max } => range(col, min.map(|v| v.to_string()), max.map(|v| v.to_string())),
    }
}

fn range(expr: &str, min: Option<String>, max: Option<String>) -> String {
    match (min, max) {
        (Some(lo), Some(hi)) => format!("{expr} BETWEEN {lo} AND {hi}"),
        (Some(lo), None) => format!("{expr} >= {lo}"),
        (None, Some(hi)) => format!("{expr} <= {hi}"),
        (None, None) => "true".into(),
    }
}

pub fn create_table(table: &Table) -> String {
    let cols: Vec<String> = table.columns.iter().map(|c| column_def(&table.name, c, true)).collect();
    format!("CREATE TABLE {} (\n  {}\n)", ident(&table.name), cols.join(",\n  "))
}

pub fn create_index(table: &str, index: &Index) -> String {
    format!(
        "CREATE {}INDEX {} ON {} ({})",
        if index.unique { "UNIQUE " } else { "" },
        ident(&index.name),
        ident(table),
        index.columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
    )
}

/// A value of `col` (of type `ty`) as text, rendered the way the store
/// writes it: datetimes as `YYYY-MM-DDTHH:MM:SS.mmmZ`, like SQLite holds
/// them, so the Rust-side checks and their examples read the same text.
pub fn text_expr(col: &str, ty: ColumnType) -> String {
    match ty {
        ColumnType::DateTime => format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"),
        _ => format!("{col}::text"),
    }
}

/// The `USING` expression converting `col` from one type to another, for
/// values that the Rust-side check (`convert::converts`) accepted. Each
/// gives the value SQLite's `convert_expr` gives, in PostgreSQL's type.
pub fn convert_expr(col: &str, from: ColumnType, to: ColumnType) -> String {
    use ColumnType::*;
    match (from, to) {
        (a, b) if a == b => col.to_string(),
        (DateTime, Text) => text_expr(col, DateTime),
        (_, Text) => format!("{col}::text"),
        (Boolean, Integer) => format!("{col}::integer::bigint"),
        (Decimal | Text, Integer) => format!("{col}::numeric::bigint"),
        (Integer, Decimal) => format!("{col}::numeric"),
        (Text, Decimal) => format!("{col}::numeric"),
        (Integer, Boolean) => format!("({col} <> 0)"),
        // The check trims before it accepts; so must the conversion.
        (Text, Boolean) => {
            format!("CASE lower(btrim({col})) WHEN 'true' THEN true WHEN '1' THEN true WHEN 'false' THEN false WHEN '0' THEN false END")
        }
        (Text, Date) => format!("btrim({col})::date"),
        (DateTime, Date) => format!("({col} AT TIME ZONE 'UTC')::date"),
        // Midnight UTC, as SQLite's `|| 'T00:00:00.000Z'`.
        (Date, DateTime) => format!("({col}::timestamp AT TIME ZONE 'UTC')"),
        (Text, DateTime) => format!("btrim({col})::timestamptz"),
        (Text, Json) => format!("{col}::jsonb"),
        // SQLite holds booleans as 0/1, so they become the JSON numbers 0/1.
        (Boolean, Json) => format!("({col}::integer)::text::jsonb"),
        // Anything else reaches here only on an empty column (the check
        // refuses every value); any well-typed expression will do.
        _ => format!("{col}::text::{}", sql_type(to)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_constraint_names_fit_postgres() {
        let t = "t".repeat(70);
        assert!(check_name(&t, "c").len() <= MAX_IDENT);
        assert!(fk_name(&t, "c").len() <= MAX_IDENT);
        assert!(pk_name(&t).len() <= MAX_IDENT);
        assert_eq!(pk_name("tasks"), "pk_tasks");
        assert_eq!(check_name("tasks", "level"), "ck_tasks_level");
    }
}
