//! `AppModel` -> `Schema` and the migration hints only the model knows
//! (renames, values for back-filling new required columns).

use crate::*;
use charter_model::{AppModel, Bound, DefaultValue, Entity, Field, FieldType};

/// What the model says about moving data, beyond the target shape.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Hints {
    /// `(new table, old table)` from `### New (renamed from Old)`.
    pub table_renames: Vec<(String, String)>,
    /// `(table, new column, old column)` from `renamed from`.
    pub column_renames: Vec<(String, String, String)>,
    /// `(table, column)` -> value for rows that exist when the column is
    /// added or made required: the field's default.
    pub backfills: Vec<(String, String, Backfill)>,
}

impl Hints {
    pub fn backfill(&self, table: &str, column: &str) -> Option<&Backfill> {
        self.backfills.iter().find(|(t, c, _)| t == table && c == column).map(|(_, _, b)| b)
    }

    pub fn old_table_name(&self, table: &str) -> Option<&str> {
        self.table_renames.iter().find(|(n, _)| n == table).map(|(_, o)| o.as_str())
    }

    pub fn old_column_name(&self, table: &str, column: &str) -> Option<&str> {
        self.column_renames.iter().find(|(t, n, _)| t == table && n == column).map(|(_, _, o)| o.as_str())
    }
}

/// The value existing rows get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Backfill {
    Value(DbValue),
    /// The instant the migration runs.
    Now,
    /// The date the migration runs (UTC).
    Today,
}

/// A value as stored, independent of dialect. Also the type of bind
/// parameters the store sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum DbValue {
    Null,
    Integer(i64),
    Boolean(bool),
    Text(String),
    /// A validated decimal string.
    Decimal(String),
    /// `YYYY-MM-DD`.
    Date(String),
    /// RFC 3339 UTC.
    DateTime(String),
    /// A JSON document as text.
    Json(String),
}

/// PostgreSQL truncates identifiers past 63 bytes; names we make are kept
/// under that, with a hash suffix when a long name must be shortened.
pub const MAX_IDENT: usize = 63;

pub fn index_name(prefix: &str, table: &str, columns: &[&str]) -> String {
    let name = format!("{prefix}_{table}_{}", columns.join("_"));
    if name.len() <= MAX_IDENT {
        return name;
    }
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{}_{:08x}", &name[..MAX_IDENT - 9], h as u32)
}

pub fn schema_of(model: &AppModel) -> (Schema, Hints) {
    let mut schema = Schema::default();
    let mut hints = Hints::default();
    for entity in &model.entities {
        schema.tables.push(table_of(model, entity, &mut hints));
        if let Some(old) = &entity.renamed_from {
            hints.table_renames.push((entity.plural.clone(), charter_model::plural_of(old)));
        }
    }
    (schema, hints)
}

fn table_of(model: &AppModel, entity: &Entity, hints: &mut Hints) -> Table {
    let t = entity.plural.clone();
    let mut columns = Vec::new();
    let mut indexes =
        vec![Index { name: index_name("ix", &t, &["created_at", "id"]), columns: vec!["created_at".into(), "id".into()], unique: false }];
    for f in &entity.fields {
        let col = column_of(model, f);
        if col.references.is_some() {
            indexes.push(Index { name: index_name("ix", &t, &[&f.name]), columns: vec![f.name.clone()], unique: false });
        }
        if f.unique && !col.primary_key {
            indexes.push(Index { name: index_name("ux", &t, &[&f.name]), columns: vec![f.name.clone()], unique: true });
        }
        if let Some(old) = &f.renamed_from {
            hints.column_renames.push((t.clone(), f.name.clone(), old.clone()));
        }
        if let Some(b) = backfill_of(f) {
            hints.backfills.push((t.clone(), f.name.clone(), b));
        }
        columns.push(col);
    }
    Table { name: t, columns, indexes }
}

fn column_of(model: &AppModel, f: &Field) -> Column {
    let ty = match &f.ty {
        FieldType::Id | FieldType::Text | FieldType::Email | FieldType::Url | FieldType::Enum(_) | FieldType::Role | FieldType::Ref(_) => {
            ColumnType::Text
        }
        FieldType::Int => ColumnType::Integer,
        FieldType::Decimal => ColumnType::Decimal,
        FieldType::Bool => ColumnType::Boolean,
        FieldType::Date => ColumnType::Date,
        FieldType::DateTime => ColumnType::DateTime,
        FieldType::Json => ColumnType::Json,
    };
    let check = match &f.ty {
        FieldType::Enum(members) => Some(Check::OneOf(members.clone())),
        FieldType::Role => Some(Check::OneOf(model.roles.iter().map(|r| r.name.clone()).collect())),
        t if t.is_textual() => {
            let min = match f.min {
                Some(Bound::Length(n)) => Some(n),
                _ => None,
            };
            let max = match f.max {
                Some(Bound::Length(n)) => Some(n),
                _ => None,
            };
            (min.is_some() || max.is_some()).then_some(Check::Length { min, max })
        }
        FieldType::Int => {
            let min = match f.min {
                Some(Bound::Int(n)) => Some(n),
                _ => None,
            };
            let max = match f.max {
                Some(Bound::Int(n)) => Some(n),
                _ => None,
            };
            (min.is_some() || max.is_some()).then_some(Check::IntRange { min, max })
        }
        _ => None,
    };
    let references = match &f.ty {
        FieldType::Ref(target) => Some(Reference {
            table: model.entity(*target).plural.clone(),
            on_delete: match f.on_delete.unwrap_or(charter_model::OnDelete::Restrict) {
                charter_model::OnDelete::Cascade => OnDelete::Cascade,
                charter_model::OnDelete::Restrict => OnDelete::Restrict,
                charter_model::OnDelete::SetNull => OnDelete::SetNull,
            },
        }),
        _ => None,
    };
    Column { name: f.name.clone(), ty, nullable: !f.required, primary_key: f.ty == FieldType::Id, check, references }
}

fn backfill_of(f: &Field) -> Option<Backfill> {
    Some(match f.default.as_ref()? {
        DefaultValue::Me => return None,
        DefaultValue::Now => Backfill::Now,
        DefaultValue::Today => Backfill::Today,
        DefaultValue::Bool(b) => Backfill::Value(DbValue::Boolean(*b)),
        DefaultValue::Int(n) => Backfill::Value(DbValue::Integer(*n)),
        DefaultValue::Decimal(d) => Backfill::Value(DbValue::Decimal(d.clone())),
        DefaultValue::Text(s) | DefaultValue::Enum(s) => Backfill::Value(DbValue::Text(s.clone())),
        DefaultValue::Date(d) => Backfill::Value(DbValue::Date(d.clone())),
        DefaultValue::DateTime(d) => Backfill::Value(DbValue::DateTime(d.clone())),
        DefaultValue::Json(j) => Backfill::Value(DbValue::Json(j.clone())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_index_names_are_shortened_stably() {
        let long = "a".repeat(80);
        let n = index_name("ix", &long, &["created_at", "id"]);
        assert_eq!(n.len(), MAX_IDENT);
        assert_eq!(n, index_name("ix", &long, &["created_at", "id"]));
        assert_ne!(n, index_name("ix", &long, &["created_at", "id2"]));
    }
}
