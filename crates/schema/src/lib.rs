//! The database schema charter derives from an `AppModel`, and the plan that
//! takes a database from one schema to another.
//!
//! Pure: no SQL, no I/O. `charter-store` renders schemas and plans as SQL for
//! each dialect, runs the data checks a plan asks for, and applies it.

mod build;
mod diff;
mod plan;

pub use build::{index_name, schema_of, Backfill, DbValue, Hints, MAX_IDENT};
pub use diff::diff;
pub use plan::*;

use serde::{Deserialize, Serialize};

/// The shape of the app's tables. Recorded (as JSON) with every applied
/// migration, so the next plan diffs against exactly what was applied.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Schema {
    pub tables: Vec<Table>,
}

impl Schema {
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub indexes: Vec<Index>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub primary_key: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<Reference>,
}

/// Logical column types; each dialect maps them to its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Text,
    Integer,
    Decimal,
    Boolean,
    Date,
    DateTime,
    Json,
}

impl ColumnType {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Integer => "integer",
            ColumnType::Decimal => "decimal",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::DateTime => "datetime",
            ColumnType::Json => "json",
        }
    }

    /// Whether every value of `self` converts to `to` without loss.
    pub fn widens_to(self, to: ColumnType) -> bool {
        use ColumnType::*;
        self == to
            || matches!(
                (self, to),
                (Integer, Decimal) | (Integer | Decimal | Boolean | Date | DateTime | Json, Text) | (Boolean, Integer) | (Date, DateTime)
            )
    }
}

/// A CHECK constraint. Every literal in it comes from the checked model:
/// enum members and role names are snake_case words, bounds are integers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    OneOf(Vec<String>),
    /// Length in characters.
    Length {
        min: Option<u64>,
        max: Option<u64>,
    },
    IntRange {
        min: Option<i64>,
        max: Option<i64>,
    },
}

impl Check {
    /// Whether every value allowed by `other` is allowed by `self`.
    pub fn admits_all_of(&self, other: &Check) -> bool {
        match (self, other) {
            (Check::OneOf(a), Check::OneOf(b)) => b.iter().all(|m| a.contains(m)),
            (Check::Length { min: a0, max: a1 }, Check::Length { min: b0, max: b1 }) => {
                a0.is_none_or(|a| b0.is_some_and(|b| b >= a)) && a1.is_none_or(|a| b1.is_some_and(|b| b <= a))
            }
            (Check::IntRange { min: a0, max: a1 }, Check::IntRange { min: b0, max: b1 }) => {
                a0.is_none_or(|a| b0.is_some_and(|b| b >= a)) && a1.is_none_or(|a| b1.is_some_and(|b| b <= a))
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub table: String,
    pub on_delete: OnDelete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    Cascade,
    Restrict,
    SetNull,
}

impl OnDelete {
    pub fn as_str(self) -> &'static str {
        match self {
            OnDelete::Cascade => "cascade",
            OnDelete::Restrict => "restrict",
            OnDelete::SetNull => "set null",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub name: String,
    pub columns: Vec<String>,
    pub unique: bool,
}

/// The schema after `change`: how each step moves the shape. Executors use
/// it to know the table they are rebuilding; tests use it to check that a
/// plan lands exactly on the desired schema.
pub fn apply_change(schema: &mut Schema, change: &Change) {
    match change {
        Change::CreateTable { table } => schema.tables.push(table.clone()),
        Change::DropTable { table } => schema.tables.retain(|t| t.name != *table),
        Change::RenameTable { from, to } => {
            for t in &mut schema.tables {
                if t.name == *from {
                    t.name = to.clone();
                }
                for c in &mut t.columns {
                    if let Some(r) = &mut c.references {
                        if r.table == *from {
                            r.table = to.clone();
                        }
                    }
                }
            }
        }
        Change::AddColumn { table, column, .. } => with_table(schema, table, |t| t.columns.push(column.clone())),
        Change::DropColumn { table, column } => with_table(schema, table, |t| {
            t.columns.retain(|c| c.name != *column);
            t.indexes.retain(|i| !i.columns.contains(column));
        }),
        Change::RenameColumn { table, from, to } => with_table(schema, table, |t| {
            for c in &mut t.columns {
                if c.name == *from {
                    c.name = to.clone();
                }
            }
            for i in &mut t.indexes {
                for c in &mut i.columns {
                    if c == from {
                        *c = to.clone();
                    }
                }
            }
        }),
        Change::AlterColumn { table, to, .. } => with_table(schema, table, |t| {
            for c in &mut t.columns {
                if c.name == to.name {
                    *c = to.clone();
                }
            }
        }),
        Change::CreateIndex { table, index } => with_table(schema, table, |t| t.indexes.push(index.clone())),
        Change::DropIndex { table, index } => with_table(schema, table, |t| t.indexes.retain(|i| i.name != index.name)),
    }
}

fn with_table(schema: &mut Schema, name: &str, f: impl FnOnce(&mut Table)) {
    if let Some(t) = schema.tables.iter_mut().find(|t| t.name == name) {
        f(t);
    }
}

/// Whether two schemas describe the same database: the same tables, columns
/// and indexes, whatever their order.
pub fn same_schema(a: &Schema, b: &Schema) -> bool {
    let norm = |s: &Schema| {
        let mut tables = s.tables.clone();
        for t in &mut tables {
            t.columns.sort_by(|x, y| x.name.cmp(&y.name));
            t.indexes.sort_by(|x, y| x.name.cmp(&y.name));
        }
        tables.sort_by(|x, y| x.name.cmp(&y.name));
        tables
    };
    norm(a) == norm(b)
}
