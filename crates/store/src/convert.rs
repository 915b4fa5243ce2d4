//! Whether a stored value converts to another column type, decided in Rust
//! so both dialects refuse exactly the same rows.

use charter_model::{is_valid_date, is_valid_datetime, is_valid_decimal};
use charter_schema::{Check, ColumnType};

/// `value` is the stored value rendered as text (booleans as `0`/`1` in
/// SQLite, `true`/`false` in PostgreSQL).
pub fn converts(value: &str, from: ColumnType, to: ColumnType) -> bool {
    use ColumnType::*;
    let v = value.trim();
    match to {
        Text => true,
        Integer => match from {
            Boolean => true,
            Decimal | Text => {
                let (int, frac) = v.split_once('.').unwrap_or((v, ""));
                frac.bytes().all(|b| b == b'0') && int.parse::<i64>().is_ok() && (from == Decimal || frac.is_empty())
            }
            _ => false,
        },
        Decimal => matches!(from, Integer) || (from == Text && is_valid_decimal(v)),
        Boolean => match from {
            Integer => v == "0" || v == "1",
            Text => matches!(v.to_ascii_lowercase().as_str(), "true" | "false" | "0" | "1"),
            _ => false,
        },
        Date => match from {
            DateTime => true,
            Text => is_valid_date(v),
            _ => false,
        },
        DateTime => match from {
            Date => true,
            Text => is_valid_datetime(v),
            _ => false,
        },
        Json => serde_json::from_str::<serde_json::Value>(v).is_ok(),
    }
}

/// Whether `check` admits `value` (of type `from`, as text, and accepted
/// by `converts`) once converted to `to`. Rules exist only on text and
/// integer columns.
pub fn satisfies_converted(value: &str, from: ColumnType, to: ColumnType, check: &Check) -> bool {
    let v = value.trim();
    let within = |n: i128, min: Option<i128>, max: Option<i128>| min.is_none_or(|lo| n >= lo) && max.is_none_or(|hi| n <= hi);
    // The text the column holds after the change: booleans read `0`/`1`
    // in SQLite and become `false`/`true` as text in both dialects.
    let as_text = || -> String {
        match (from, v) {
            (ColumnType::Boolean, "1" | "true") => "true".into(),
            (ColumnType::Boolean, "0" | "false") => "false".into(),
            _ => value.to_string(),
        }
    };
    match check {
        Check::OneOf(members) => to != ColumnType::Text || members.contains(&as_text()),
        Check::Length { min, max } => {
            to != ColumnType::Text || within(as_text().chars().count() as i128, min.map(i128::from), max.map(i128::from))
        }
        Check::IntRange { min, max } => {
            let n = match from {
                ColumnType::Boolean => Some(i128::from(v == "1" || v == "true")),
                _ => v.split_once('.').map_or(v, |(int, _)| int).parse::<i128>().ok(),
            };
            to != ColumnType::Integer || n.is_none_or(|n| within(n, min.map(i128::from), max.map(i128::from)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ColumnType::*;

    #[test]
    fn conversions() {
        assert!(converts("12", Text, Integer));
        assert!(!converts("12.5", Decimal, Integer));
        assert!(converts("12.00", Decimal, Integer));
        assert!(!converts("12.0", Text, Integer));
        assert!(!converts("abc", Text, Integer));
        assert!(converts("TRUE", Text, Boolean));
        assert!(!converts("2", Integer, Boolean));
        assert!(converts("2024-02-29", Text, Date));
        assert!(!converts("2023-02-29", Text, Date));
        assert!(converts("[1,2]", Text, Json));
        assert!(!converts("{", Text, Json));
    }

    #[test]
    fn rules_after_conversion() {
        let range = Check::IntRange { min: Some(1), max: Some(100) };
        assert!(satisfies_converted(" 7", Text, Integer, &range));
        assert!(!satisfies_converted("5000", Text, Integer, &range));
        assert!(satisfies_converted("12.00", Decimal, Integer, &range));
        assert!(satisfies_converted("1", Boolean, Integer, &range));
        assert!(!satisfies_converted("false", Boolean, Integer, &range));
        let members = Check::OneOf(vec!["true".into()]);
        assert!(satisfies_converted("1", Boolean, Text, &members));
        assert!(satisfies_converted("true", Boolean, Text, &members));
        assert!(!satisfies_converted("0", Boolean, Text, &members));
        let length = Check::Length { min: None, max: Some(3) };
        assert!(satisfies_converted("123", Integer, Text, &length));
        assert!(!satisfies_converted("1234", Integer, Text, &length));
    }
}
