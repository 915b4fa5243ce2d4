//! Diagnostics: stable codes, spans, and their two renderings (human text in
//! the style of rustc, and one JSON object per line for editors and CI).

use crate::span::{LineIndex, Span};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! codes {
    ($($variant:ident = $code:literal, $sev:ident, $summary:literal;)*) => {
        /// Every diagnostic the compiler can report. Codes are stable: a code
        /// is never reused for a different problem.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $($variant,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$sev,)* }
            }

            /// One line saying what the code means, for the reference docs.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary,)* }
            }
        }
    };
}

codes! {
    // Document structure
    MissingAppName = "E0101", Error, "the spec has no `# App name` heading";
    SecondAppName = "E0102", Error, "a second `#` heading; exactly one names the app";
    DuplicateSection = "E0103", Error, "a recognised section (`## Settings`, `## Roles`, `## Entities`) appears twice";
    MisspelledSection = "E0104", Error, "a `##` heading that is almost a recognised section name";
    MisplacedBlock = "E0105", Error, "a table or list where the section expects something else";
    FieldTableHeader = "E0106", Error, "a field table whose header is not `field | type | rules [| description]`";
    FieldTableRow = "E0107", Error, "a field table row with a missing or extra cell";
    SecondFieldTable = "E0108", Error, "an entity with more than one field table";
    PermissionsWithoutList = "E0109", Error, "`Permissions:` not followed by a bullet list";
    PermissionsLabel = "E0110", Error, "permission lines without a `Permissions:` label, or a misspelled label";
    SecondPermissions = "E0111", Error, "an entity with more than one `Permissions:` list";
    NestedList = "E0112", Error, "a nested list inside settings, roles or permissions";
    NoFieldTable = "E0113", Error, "an entity (other than `User`) without a field table";
    // Entities and fields
    EntityName = "E0201", Error, "an entity heading that is not a PascalCase name (with an optional `(renamed from Old)`)";
    FieldName = "E0202", Error, "a field name that is not snake_case";
    UnknownType = "E0203", Error, "a type that is neither a built-in type nor an entity";
    DuplicateField = "E0204", Error, "a field declared twice in one entity";
    BuiltinField = "E0205", Error, "a field that redeclares a built-in field";
    UnknownRule = "E0206", Error, "a rule the language does not have";
    RuleNotForType = "E0207", Error, "a rule that does not apply to the field's type";
    BadDefault = "E0208", Error, "a default that is not a valid value of the field's type";
    BadBounds = "E0209", Error, "a length or value bound that is malformed, of the wrong type, or empty (min > max)";
    BadPattern = "E0210", Error, "a `pattern` that is not a valid regular expression";
    ConflictingRules = "E0211", Error, "a rule given twice, or rules that contradict each other";
    BadEnum = "E0212", Error, "an `enum(...)` with no members, a repeated member, or a member that is not snake_case";
    DuplicateEntity = "E0213", Error, "two entities with the same name or the same API path";
    BadRename = "E0214", Error, "a `renamed from` hint that is malformed or names something that still exists";
    BadType = "E0215", Error, "a type that is malformed";
    // Settings
    UnknownSetting = "E0301", Error, "a setting key the language does not have";
    BadSettingValue = "E0302", Error, "a setting value outside what the key accepts";
    DuplicateSetting = "E0303", Error, "a setting given twice";
    MalformedSetting = "E0304", Error, "a settings line that is not `key: value`";
    // Roles
    RoleName = "E0401", Error, "a role name that is not lowercase snake_case";
    DuplicateRole = "E0402", Error, "a role declared twice";
    ReservedRole = "E0403", Error, "a role named after a built-in word (`anyone`, `signed in`, `me`, ...)";
    SecondDefaultRole = "E0404", Error, "more than one role marked `(default)`";
    MalformedRole = "E0405", Error, "a roles line that is not `name: description` or `name (default): description`";
    // Permissions
    UnknownAction = "E0501", Error, "an action other than `read`, `create`, `update`, `delete`";
    DuplicateAction = "E0502", Error, "an action given a rule twice in one entity";
    ConditionSyntax = "E0503", Error, "a permission condition that does not follow the grammar";
    UnknownRole = "E0504", Error, "a bare word in a condition that is not a role or built-in word";
    UnknownPathField = "E0505", Error, "a path naming a field the entity does not have";
    PathThroughValue = "E0506", Error, "a path that continues past a field that is not a reference";
    ValueType = "E0507", Error, "a value that cannot be compared with the path's type";
    MalformedPermission = "E0508", Error, "a permission line that is not `actions: condition`";
    FieldPermission = "E0509", Error, "a field-scoped permission other than `update role` or `read email` on `User`";
    // Warnings
    NoPermissions = "W0001", Warning, "an entity without a `Permissions:` list: every action is denied";
    NeverTrue = "W0002", Warning, "a permission condition that can never hold";
    AlwaysTrueWrite = "W0003", Warning, "a write permission open to anyone, including callers who are not signed in";
    IdleOverLifetime = "W0004", Warning, "a session idle timeout longer than the session lifetime";
    NoEntities = "W0005", Warning, "a spec without any entity";
}

/// One problem found in a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    pub span: Span,
    /// Short text printed beside the caret.
    pub label: Option<String>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { code, message: message.into(), span, label: None, help: None }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    pub fn severity(&self) -> Severity {
        self.code.severity()
    }

    pub fn is_error(&self) -> bool {
        self.severity() == Severity::Error
    }
}

/// Sort diagnostics by position, then code, and drop exact repeats.
pub fn sort_diagnostics(diags: &mut Vec<Diagnostic>) {
    diags.sort_by_key(|a| (a.span.start, a.span.end, a.code));
    diags.dedup();
}

/// "did you mean `x`?" among `candidates`, when one is close enough.
pub fn did_you_mean<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The candidate closest to `word`, if close enough to be a plausible typo.
pub fn closest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let dist = strsim::damerau_levenshtein(&lower, &candidate.to_lowercase());
        let limit = match candidate.chars().count().max(lower.chars().count()) {
            0..=2 => 0,
            3..=4 => 1,
            5..=8 => 2,
            _ => 3,
        };
        // Same letters, other case: always a suggestion.
        let fits = dist <= limit || lower == candidate.to_lowercase();
        if fits && best.is_none_or(|(d, _)| dist < d) {
            best = Some((dist, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// Renders diagnostics as people read them.
pub fn render_human(file: &str, source: &str, diags: &[Diagnostic]) -> String {
    let index = LineIndex::new(source);
    let mut out = String::new();
    for d in diags {
        render_one(&mut out, file, &index, d);
        out.push('\n');
    }
    out
}

fn render_one(out: &mut String, file: &str, index: &LineIndex, d: &Diagnostic) {
    let start = index.position(d.span.start);
    let _ = writeln!(out, "{}[{}]: {}", d.severity().as_str(), d.code.as_str(), d.message);
    let line_no = start.line.to_string();
    let gutter = " ".repeat(line_no.len());
    let _ = writeln!(out, "{gutter}--> {file}:{}:{}", start.line, start.column);
    let _ = writeln!(out, "{gutter} |");
    let line_idx = start.line - 1;
    let text = index.line_text(line_idx);
    let (shown, caret_col, caret_len) = caret_geometry(index, text, line_idx, d.span);
    let _ = writeln!(out, "{line_no} | {shown}");
    let mut caret_line = format!("{gutter} | {}{}", " ".repeat(caret_col), "^".repeat(caret_len));
    if let Some(label) = &d.label {
        caret_line.push(' ');
        caret_line.push_str(label);
    }
    let _ = writeln!(out, "{}", caret_line.trim_end());
    if let Some(help) = &d.help {
        let _ = writeln!(out, "{gutter} = help: {help}");
    }
}

/// The line as shown (tabs expanded), the caret's display column and width.
/// A span running past the end of its first line is underlined to the line's
/// end; an empty span gets one caret.
fn caret_geometry(index: &LineIndex, text: &str, line: usize, span: Span) -> (String, usize, usize) {
    let line_start = index.line_start(line);
    let from = span.start.saturating_sub(line_start).min(text.len());
    let to = span.end.saturating_sub(line_start).clamp(from, text.len());
    let mut shown = String::new();
    let (mut col, mut caret_col, mut caret_end) = (0, None, None);
    for (i, ch) in text.char_indices() {
        if i == from {
            caret_col = Some(col);
        }
        if i == to {
            caret_end = Some(col);
        }
        let width = if ch == '\t' { 4 } else { 1 };
        if ch == '\t' {
            shown.push_str("    ");
        } else {
            shown.push(ch);
        }
        col += width;
    }
    let caret_col = caret_col.unwrap_or(col);
    let caret_end = caret_end.unwrap_or(col);
    (shown, caret_col, caret_end.saturating_sub(caret_col).max(1))
}

/// One diagnostic as the JSON object of `charter check --format json`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct JsonDiagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub help: Option<String>,
}

pub fn to_json(file: &str, source: &str, d: &Diagnostic) -> JsonDiagnostic {
    let index = LineIndex::new(source);
    json_with_index(file, &index, d)
}

fn json_with_index(file: &str, index: &LineIndex, d: &Diagnostic) -> JsonDiagnostic {
    let start = index.position(d.span.start);
    let end = index.position(d.span.end);
    JsonDiagnostic {
        severity: d.severity(),
        code: d.code.as_str(),
        message: d.message.clone(),
        file: file.to_string(),
        line: start.line,
        column: start.column,
        end_line: end.line,
        end_column: end.column,
        help: d.help.clone(),
    }
}

/// Diagnostics as JSON lines, one object per line.
pub fn render_json_lines(file: &str, source: &str, diags: &[Diagnostic]) -> String {
    let index = LineIndex::new(source);
    let mut out = String::new();
    for d in diags {
        let json = json_with_index(file, &index, d);
        out.push_str(&serde_json::to_string(&json).expect("diagnostic serialises"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert_eq!(s.len(), 5);
            let expected = if code.severity() == Severity::Error { 'E' } else { 'W' };
            assert!(s.starts_with(expected), "{s}");
        }
    }

    #[test]
    fn suggestions_find_close_names_only() {
        assert_eq!(closest("Projcet", ["Project", "Task", "User"]), Some("Project"));
        assert_eq!(closest("projects", ["Project", "Task"]), Some("Project"));
        assert_eq!(closest("Zebra", ["Project", "Task"]), None);
        assert_eq!(closest("txt", ["text", "int"]), Some("text"));
    }

    #[test]
    fn renders_caret_under_span() {
        let src = "# A\n| project  | Projcet | required |\n";
        let start = src.find("Projcet").unwrap();
        let d = Diagnostic::new(Code::UnknownType, Span::new(start, start + 7), "unknown type `Projcet`")
            .label("no entity or type has this name")
            .help("did you mean `Project`?");
        let text = render_human("app.md", src, &[d]);
        let expected = "error[E0203]: unknown type `Projcet`\n --> app.md:2:14\n  |\n2 | | project  | Projcet | required |\n  |              ^^^^^^^ no entity or type has this name\n  = help: did you mean `Project`?\n\n";
        assert_eq!(text, expected);
    }
}
