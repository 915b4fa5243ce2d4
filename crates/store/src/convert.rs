//! Whether a stored value converts to another column type, decided in Rust
//! so both dialects refuse exactly the same rows.

use charter_model::{is_valid_date, is_valid_datetime, is_valid_decimal};
use charter_schema::ColumnType;

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
}
