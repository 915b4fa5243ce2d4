//! `charter fmt`: rewrites the field tables of a spec with aligned columns,
//! leaving every other byte (prose, lists, headings) as it was.

use crate::span::Span;

/// Formats `source`. Call only on a spec without errors: a malformed table
/// row would otherwise be padded into a well-formed one.
pub fn format(source: &str) -> String {
    let (doc, _) = crate::parse(source);
    let mut spans: Vec<Span> = doc.entities.iter().filter_map(|e| e.table.as_ref().map(|t| t.span)).collect();
    spans.sort();
    let mut out = String::with_capacity(source.len());
    let mut at = 0;
    for span in spans {
        out.push_str(&source[at..span.start]);
        out.push_str(&format_table(&source[span.start..span.end]));
        at = span.end;
    }
    out.push_str(&source[at..]);
    out
}

fn format_table(text: &str) -> String {
    let lines = split_lines(text);
    let rows: Vec<Vec<String>> = lines.iter().map(|(l, _)| split_cells(l)).collect();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let is_delim = |row: &Vec<String>| row.iter().all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':')));
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().filter(|r| !is_delim(r)).map(|r| r.get(c).map_or(0, |s| s.chars().count())).max().unwrap_or(0).max(3))
        .collect();
    let mut out = String::new();
    for (row, (_, ending)) in rows.iter().zip(&lines) {
        out.push('|');
        for (c, w) in widths.iter().enumerate() {
            let cell = row.get(c).map_or("", String::as_str);
            if is_delim(row) {
                let left = cell.starts_with(':');
                let right = cell.ends_with(':') && cell.len() > 1;
                let dashes = w + 2 - usize::from(left) - usize::from(right);
                out.push_str(if left { ":" } else { "" });
                out.push_str(&"-".repeat(dashes));
                out.push_str(if right { ":" } else { "" });
                out.push('|');
            } else {
                let pad = w - cell.chars().count();
                out.push(' ');
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
                out.push_str(" |");
            }
        }
        // Each row keeps its own ending: CRLF files stay CRLF, and a table
        // at the end of a file may lack one.
        out.push_str(ending);
    }
    out
}

/// Lines with their endings. A lone `\r` ends a line too (CommonMark reads
/// it so), which `str::lines` does not know.
fn split_lines(text: &str) -> Vec<(&str, &str)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        let end = match bytes[i] {
            b'\n' => i + 1,
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => i + 2,
            b'\r' => i + 1,
            _ => {
                i += 1;
                continue;
            }
        };
        out.push((&text[start..i], &text[i..end]));
        start = end;
        i = end;
    }
    if start < text.len() {
        out.push((&text[start..], ""));
    }
    out
}

fn split_cells(line: &str) -> Vec<String> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut chars = t.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                cur.push(ch);
                if let Some(next) = chars.next() {
                    cur.push(next);
                }
            }
            '|' => {
                cells.push(cur.trim().to_string());
                cur.clear();
            }
            c => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        cells.push(cur.trim().to_string());
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_tables_and_keeps_prose() {
        let src = "# A\n\nSome *prose*   stays.\n\n## Entities\n\n### T\n|field|type|rules|\n|-|:-:|-|\n|title|text|required, pattern \"a\\|b\"|\n|n|int||\n\nMore prose.\n";
        let out = format(src);
        let expected = "# A\n\nSome *prose*   stays.\n\n## Entities\n\n### T\n| field | type | rules                    |\n|-------|:----:|--------------------------|\n| title | text | required, pattern \"a\\|b\" |\n| n     | int  |                          |\n\nMore prose.\n";
        assert_eq!(out, expected);
        assert_eq!(format(&out), out, "formatting is idempotent");
    }

    #[test]
    fn keeps_crlf_and_lone_cr_line_endings() {
        for nl in ["\r\n", "\r"] {
            let src = "# A\n\n## Entities\n\n### T\n|field|type|rules|\n|-|-|-|\n|n|int||\n".replace('\n', nl);
            let expected = "# A\n\n## Entities\n\n### T\n| field | type | rules |\n|-------|------|-------|\n| n     | int  |       |\n"
                .replace('\n', nl);
            assert_eq!(format(&src), expected, "{nl:?}");
        }
    }
}
