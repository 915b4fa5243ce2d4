//! Validation of literal values written in specs (and, later, sent by
//! clients): dates, instants, decimals.

/// `YYYY-MM-DD`, a real calendar date in years 0001..=9999.
pub fn is_valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits =
        |r: std::ops::Range<usize>| -> Option<u32> { b[r.clone()].iter().all(u8::is_ascii_digit).then(|| s[r].parse().ok()).flatten() };
    let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) else { return false };
    if y == 0 || !(1..=12).contains(&m) || d == 0 {
        return false;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    d <= days
}

/// An RFC 3339 instant: `YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)`.
pub fn is_valid_datetime(s: &str) -> bool {
    if s.len() < 20 || !s.is_char_boundary(10) || !is_valid_date(&s[..10]) {
        return false;
    }
    let rest = &s.as_bytes()[10..];
    if !matches!(rest[0], b'T' | b't') {
        return false;
    }
    let two = |i: usize, max: u32| -> bool {
        rest.get(i..i + 2).is_some_and(|p| p.iter().all(u8::is_ascii_digit) && ((p[0] - b'0') as u32 * 10 + (p[1] - b'0') as u32) <= max)
    };
    if !(two(1, 23) && rest[3] == b':' && two(4, 59) && rest[6] == b':' && two(7, 60)) {
        return false;
    }
    let mut i = 9;
    if rest.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while rest.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match rest.get(i) {
        Some(b'Z' | b'z') => i + 1 == rest.len(),
        Some(b'+' | b'-') => i + 6 == rest.len() && two(i + 1, 23) && rest[i + 3] == b':' && two(i + 4, 59),
        _ => false,
    }
}

/// A plain decimal: optional `-`, digits, optional `.digits`. At most 38
/// significant digits, so every backend stores it exactly.
pub fn is_valid_decimal(s: &str) -> bool {
    let body = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
        && int.len() + frac.map_or(0, str::len) <= 38
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert!(is_valid_date("2024-02-29"));
        assert!(!is_valid_date("2023-02-29"));
        assert!(!is_valid_date("2023-13-01"));
        assert!(!is_valid_date("2023-1-01"));
        assert!(!is_valid_date("0000-01-01"));
    }

    #[test]
    fn datetimes() {
        assert!(is_valid_datetime("2025-01-02T03:04:05Z"));
        assert!(is_valid_datetime("2025-01-02T03:04:05.123+02:00"));
        assert!(!is_valid_datetime("2025-01-02 03:04:05Z"));
        assert!(!is_valid_datetime("2025-01-02T24:04:05Z"));
        assert!(!is_valid_datetime("2025-01-02T03:04:05"));
    }

    #[test]
    fn decimals() {
        assert!(is_valid_decimal("-12.50"));
        assert!(is_valid_decimal("7"));
        assert!(!is_valid_decimal("1."));
        assert!(!is_valid_decimal(".5"));
        assert!(!is_valid_decimal("1e5"));
    }
}
