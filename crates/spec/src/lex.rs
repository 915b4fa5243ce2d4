//! The tokenizer shared by the small languages inside cells and list items:
//! types, rules and permission conditions.

use crate::diagnostic::{Code, Diagnostic};
use crate::span::Span;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Letters, digits and `_`, starting with a letter or `_`.
    Word(String),
    Number(String),
    Date(String),
    Str(String),
    Dot,
    DotDot,
    Comma,
    LParen,
    RParen,
    Eq,
    Ne,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Number(n) => format!("number `{n}`"),
            Tok::Date(d) => format!("date `{d}`"),
            Tok::Str(_) => "a string".to_string(),
            Tok::Dot => "`.`".to_string(),
            Tok::DotDot => "`..`".to_string(),
            Tok::Comma => "`,`".to_string(),
            Tok::LParen => "`(`".to_string(),
            Tok::RParen => "`)`".to_string(),
            Tok::Eq => "`=`".to_string(),
            Tok::Ne => "`!=`".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

/// Tokenizes `text`, which starts at byte `base` of the source. Errors carry
/// `code` so each language reports in its own family.
pub fn tokenize(text: &str, base: usize, code: Code) -> Result<Vec<Token>, Diagnostic> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let span = |end: usize| Span::new(base + start, base + end);
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'.' if bytes.get(i + 1) == Some(&b'.') => {
                i += 2;
                out.push(Token { tok: Tok::DotDot, span: span(i) });
            }
            b'.' => {
                i += 1;
                out.push(Token { tok: Tok::Dot, span: span(i) });
            }
            b',' => {
                i += 1;
                out.push(Token { tok: Tok::Comma, span: span(i) });
            }
            b'(' => {
                i += 1;
                out.push(Token { tok: Tok::LParen, span: span(i) });
            }
            b')' => {
                i += 1;
                out.push(Token { tok: Tok::RParen, span: span(i) });
            }
            b'=' if bytes.get(i + 1) == Some(&b'=') => {
                return Err(Diagnostic::new(code, span(i + 2), "`==` is not an operator").label("here").help("compare with a single `=`"));
            }
            b'=' => {
                i += 1;
                out.push(Token { tok: Tok::Eq, span: span(i) });
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                out.push(Token { tok: Tok::Ne, span: span(i) });
            }
            b'"' => {
                i += 1;
                let mut value = String::new();
                loop {
                    match text[i..].chars().next() {
                        None => {
                            return Err(Diagnostic::new(code, span(i), "unterminated string")
                                .label("this string has no closing quote")
                                .help("close it with `\"`; write `\\\"` for a quote inside"));
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => match text[i + 1..].chars().next() {
                            Some('"') => {
                                value.push('"');
                                i += 2;
                            }
                            Some('\\') => {
                                // Kept as written (regexes mean a literal backslash).
                                value.push_str("\\\\");
                                i += 2;
                            }
                            Some('|') => {
                                // `\|` is how a pipe is written inside a table cell.
                                value.push('|');
                                i += 2;
                            }
                            Some(other) => {
                                // Kept as written: regexes need their escapes.
                                value.push('\\');
                                value.push(other);
                                i += 1 + other.len_utf8();
                            }
                            None => {
                                i += 1;
                            }
                        },
                        Some(ch) => {
                            value.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                out.push(Token { tok: Tok::Str(value), span: span(i) });
            }
            b'-' | b'0'..=b'9' => {
                if c == b'-' && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return Err(unexpected(code, text, base, i));
                }
                if let Some(len) = date_len(&bytes[i..]) {
                    i += len;
                    out.push(Token { tok: Tok::Date(text[start..i].to_string()), span: span(i) });
                    continue;
                }
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                if i < bytes.len() && (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_') {
                    // `10days`, `5x`: not a number and not a word.
                    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                        i += 1;
                    }
                    return Err(Diagnostic::new(code, span(i), format!("`{}` is not a number", &text[start..i])).label("not a number"));
                }
                out.push(Token { tok: Tok::Number(text[start..i].to_string()), span: span(i) });
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push(Token { tok: Tok::Word(text[start..i].to_string()), span: span(i) });
            }
            _ => return Err(unexpected(code, text, base, i)),
        }
    }
    Ok(out)
}

fn unexpected(code: Code, text: &str, base: usize, i: usize) -> Diagnostic {
    let ch = text[i..].chars().next().unwrap_or(' ');
    let mut d = Diagnostic::new(code, Span::new(base + i, base + i + ch.len_utf8()), format!("unexpected character `{ch}`"))
        .label("not expected here");
    if ch == '`' {
        d = d.help("write names and values without backticks");
    } else if ch == '\'' {
        d = d.help("strings are written in double quotes: \"like this\"");
    } else if ch == '&' || ch == '|' {
        d = d.help("combine conditions with `and` / `or`");
    }
    d
}

/// Length of a `YYYY-MM-DD` date at the start of `b`, if there is one.
fn date_len(b: &[u8]) -> Option<usize> {
    let shape = b"dddd-dd-dd";
    if b.len() < shape.len() {
        return None;
    }
    for (i, s) in shape.iter().enumerate() {
        let ok = if *s == b'd' { b[i].is_ascii_digit() } else { b[i] == b'-' };
        if !ok {
            return None;
        }
    }
    if b.get(10).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s, 0, Code::ConditionSyntax).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn ranges_dates_and_strings() {
        assert_eq!(toks("1..80"), vec![Tok::Number("1".into()), Tok::DotDot, Tok::Number("80".into())]);
        assert_eq!(toks("2025-01-01..2025-12-31"), vec![Tok::Date("2025-01-01".into()), Tok::DotDot, Tok::Date("2025-12-31".into())]);
        assert_eq!(toks(r#"pattern "a\"b\|c\d""#), vec![Tok::Word("pattern".into()), Tok::Str("a\"b|c\\d".into())]);
        assert_eq!(
            toks("-2.5 x.y != z"),
            vec![Tok::Number("-2.5".into()), Tok::Word("x".into()), Tok::Dot, Tok::Word("y".into()), Tok::Ne, Tok::Word("z".into())]
        );
    }

    #[test]
    fn bad_characters_are_errors_with_spans() {
        let err = tokenize("owner == me", 10, Code::ConditionSyntax).unwrap_err();
        assert_eq!(err.span, Span::new(16, 18));
        let err = tokenize("a && b", 0, Code::ConditionSyntax).unwrap_err();
        assert_eq!(err.span, Span::new(2, 3));
    }
}
