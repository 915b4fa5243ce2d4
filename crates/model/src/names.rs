//! Naming rules: entity names to snake_case plurals for API paths and tables.

/// `LineItem` -> `line_item`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower = i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The snake_case plural used for API paths and table names, with the
/// English rules of the HTTP contract: consonant+y -> ies; s, x, z, ch, sh ->
/// es; else +s.
pub fn plural_of(name: &str) -> String {
    let snake = snake_case(name);
    let bytes = snake.as_bytes();
    let n = bytes.len();
    if n >= 2 && bytes[n - 1] == b'y' && !b"aeiou".contains(&bytes[n - 2]) {
        format!("{}ies", &snake[..n - 1])
    } else if snake.ends_with('s') || snake.ends_with('x') || snake.ends_with('z') || snake.ends_with("ch") || snake.ends_with("sh") {
        format!("{snake}es")
    } else {
        format!("{snake}s")
    }
}

pub(crate) fn is_pascal_case(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

pub(crate) fn is_snake_case(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with('_')
        && !name.contains("__")
}

/// `Project Name`, `projectName`, `Project-Name` -> `project_name`.
pub(crate) fn to_snake_suggestion(name: &str) -> String {
    let spaced: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let snake = snake_case(&spaced).to_lowercase();
    let parts: Vec<&str> = snake.split('_').filter(|p| !p.is_empty()).collect();
    parts.join("_")
}

/// `line_item`, `lineItem` -> `LineItem`.
pub(crate) fn to_pascal_suggestion(name: &str) -> String {
    to_snake_suggestion(name)
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_follow_the_contract() {
        assert_eq!(plural_of("Task"), "tasks");
        assert_eq!(plural_of("LineItem"), "line_items");
        assert_eq!(plural_of("Category"), "categories");
        assert_eq!(plural_of("Day"), "days");
        assert_eq!(plural_of("Box"), "boxes");
        assert_eq!(plural_of("Address"), "addresses");
        assert_eq!(plural_of("Match"), "matches");
        assert_eq!(plural_of("Wish"), "wishes");
        assert_eq!(plural_of("Quiz"), "quizes");
        assert_eq!(plural_of("User"), "users");
        assert_eq!(plural_of("HTTPRequest"), "http_requests");
    }

    #[test]
    fn case_checks() {
        assert!(is_pascal_case("LineItem"));
        assert!(!is_pascal_case("lineItem"));
        assert!(!is_pascal_case("Line_Item"));
        assert!(is_snake_case("due_at2"));
        assert!(!is_snake_case("dueAt"));
        assert!(!is_snake_case("_x"));
        assert_eq!(to_snake_suggestion("dueAt"), "due_at");
        assert_eq!(to_pascal_suggestion("line_item"), "LineItem");
    }
}
