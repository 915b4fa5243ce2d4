//! Markdown -> `SpecDoc`. pulldown-cmark finds the blocks (headings, tables,
//! lists, paragraphs); their text is then read straight from the source so
//! every name keeps its exact span.

use crate::diagnostic::{closest, Code, Diagnostic};
use crate::inline::{parse_condition, parse_rules, parse_targets, parse_type};
use crate::span::{Span, Spanned};
use crate::syntax::*;
use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag};
use std::ops::Range;

/// The recognised `##` sections.
pub const SECTIONS: &[&str] = &["Settings", "Roles", "Entities"];
pub const ACTIONS: &[&str] = &["read", "create", "update", "delete"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Preamble,
    Settings,
    Roles,
    Entities,
    Prose,
}

/// Parses the document structure. Diagnostics are collected, never fatal:
/// the tree holds everything that could be read.
pub fn parse(source: &str) -> (SpecDoc, Vec<Diagnostic>) {
    let mut p = DocParser {
        src: source,
        events: Parser::new_ext(source, Options::ENABLE_TABLES).into_offset_iter().collect(),
        doc: SpecDoc { title: None, description: String::new(), settings: None, roles: None, entities_heading: None, entities: Vec::new() },
        diags: Vec::new(),
        section: Section::Preamble,
        entity: None,
        pending_permissions: None,
    };
    p.run();
    (p.doc, p.diags)
}

struct DocParser<'s> {
    src: &'s str,
    events: Vec<(Event<'s>, Range<usize>)>,
    doc: SpecDoc,
    diags: Vec<Diagnostic>,
    section: Section,
    /// Index of the entity whose body we are in.
    entity: Option<usize>,
    /// A `Permissions:` label waiting for its list: the entity's index and
    /// the label's span.
    pending_permissions: Option<(usize, Span)>,
}

impl<'s> DocParser<'s> {
    fn run(&mut self) {
        let mut i = 0;
        while i < self.events.len() {
            let end = self.matching_end(i);
            let (event, range) = self.events[i].clone();
            let span = Span::new(range.start, range.end);
            match event {
                Event::Start(Tag::Heading { level, .. }) => {
                    self.flush_pending(span);
                    self.heading(level, span);
                }
                Event::Start(Tag::Paragraph) => self.paragraph(span),
                Event::Start(Tag::Table(_)) => {
                    let after_label = self.pending_permissions.is_some();
                    self.flush_pending(span);
                    self.table(i, end, span, after_label);
                }
                Event::Start(Tag::List(_)) => self.list(i, end, span),
                Event::Start(_) | Event::Rule | Event::Html(_) => self.flush_pending(span),
                _ => {}
            }
            i = end + 1;
        }
        let eof = Span::new(self.src.len(), self.src.len());
        self.flush_pending(eof);
        if self.doc.title.is_none() {
            self.diags.push(
                Diagnostic::new(Code::MissingAppName, Span::new(0, 0), "the spec has no app name")
                    .label("expected `# App name` as the first heading")
                    .help("start the file with a heading such as `# Taskboard`"),
            );
        }
    }

    /// Index of the event closing the block opened at `i` (or `i` itself).
    fn matching_end(&self, i: usize) -> usize {
        if !matches!(self.events[i].0, Event::Start(_)) {
            return i;
        }
        let mut depth = 0usize;
        for (j, (ev, _)) in self.events.iter().enumerate().skip(i) {
            match ev {
                Event::Start(_) => depth += 1,
                Event::End(_) => {
                    depth -= 1;
                    if depth == 0 {
                        return j;
                    }
                }
                _ => {}
            }
        }
        self.events.len() - 1
    }

    /// A `Permissions:` label must be followed by its list; anything else
    /// arriving first is an error.
    fn flush_pending(&mut self, _at: Span) {
        if let Some((ei, label)) = self.pending_permissions.take() {
            self.diags.push(
                Diagnostic::new(Code::PermissionsWithoutList, label, "`Permissions:` is not followed by a list")
                    .label("expected a bullet list right after this")
                    .help("write one line per action below it, e.g. `- read: signed in`"),
            );
            self.mark_permissions_written(ei, label);
        }
    }

    /// The spec meant to give this entity permissions even though they could
    /// not be read; an empty block keeps it from also being reported as
    /// having no permissions at all.
    fn mark_permissions_written(&mut self, ei: usize, label: Span) {
        let entity = &mut self.doc.entities[ei];
        if entity.permissions.is_none() {
            entity.permissions = Some(PermissionsBlock { label, lines: Vec::new() });
        }
    }

    fn trimmed(&self, span: Span) -> Spanned<String> {
        let text = &self.src[span.start..span.end];
        let lead = text.len() - text.trim_start().len();
        let t = text.trim();
        Spanned::new(t.to_string(), Span::new(span.start + lead, span.start + lead + t.len()))
    }

    fn heading(&mut self, level: HeadingLevel, span: Span) {
        let raw = &self.src[span.start..span.end];
        let first_line = first_line(raw);
        let (lead, body) = if first_line.trim_start().starts_with('#') {
            let ws = first_line.len() - first_line.trim_start().len();
            let after = first_line[ws..].trim_start_matches('#');
            let hashes = first_line.len() - ws - after.len();
            // A closing sequence of `#`s is not part of the text.
            let mut body = after.trim_end();
            let stripped = body.trim_end_matches('#');
            if stripped.len() != body.len() && (stripped.is_empty() || stripped.ends_with([' ', '\t'])) {
                body = stripped;
            }
            (ws + hashes, body)
        } else {
            (0, first_line)
        };
        let text = self.trimmed(Span::new(span.start + lead, span.start + lead + body.len()));
        match level {
            HeadingLevel::H1 => {
                self.entity = None;
                if self.doc.title.is_some() {
                    let names_section = SECTIONS.iter().find(|s| s.eq_ignore_ascii_case(&text.value));
                    let help = match names_section {
                        Some(s) => format!("did you mean `## {s}`? Sections are `##` headings"),
                        None => "use `##` for sections and `###` for entities".to_string(),
                    };
                    self.diags.push(
                        Diagnostic::new(Code::SecondAppName, text.span, "a second `#` heading")
                            .label("the app is already named above")
                            .help(help),
                    );
                    if names_section.is_some() {
                        // `# Entities` for `## Entities`: read what follows
                        // as that section, or every entity below would be
                        // lost and reported as missing.
                        self.section(text);
                    }
                } else if text.value.is_empty() {
                    self.diags.push(
                        Diagnostic::new(Code::MissingAppName, span, "the app name is empty")
                            .label("expected a name after `#`")
                            .help("write the app's name after `#`, e.g. `# Taskboard`"),
                    );
                    self.doc.title = Some(text);
                } else {
                    self.doc.title = Some(text);
                }
            }
            HeadingLevel::H2 => {
                self.entity = None;
                self.section(text);
            }
            HeadingLevel::H3 if self.section == Section::Entities => self.entity_heading(text),
            HeadingLevel::H3 => self.entity = None,
            _ => {}
        }
    }

    fn section(&mut self, text: Spanned<String>) {
        let lower = text.value.to_lowercase();
        let found = SECTIONS.iter().find(|s| s.to_lowercase() == lower);
        let Some(name) = found.or_else(|| self.misspelled_section(&text)) else {
            self.section = Section::Prose;
            return;
        };
        let heading = text.span;
        let dup = |this: &mut Self| {
            this.diags.push(
                Diagnostic::new(Code::DuplicateSection, heading, format!("a second `## {name}` section"))
                    .label("already declared above")
                    .help("merge the two sections into one"),
            );
        };
        match *name {
            "Settings" => {
                self.section = Section::Settings;
                if self.doc.settings.is_some() {
                    dup(self);
                } else {
                    self.doc.settings = Some(Section_ { heading, items: Vec::new() });
                }
            }
            "Roles" => {
                self.section = Section::Roles;
                if self.doc.roles.is_some() {
                    dup(self);
                } else {
                    self.doc.roles = Some(Section_ { heading, items: Vec::new() });
                }
            }
            _ => {
                self.section = Section::Entities;
                if self.doc.entities_heading.is_some() {
                    dup(self);
                } else {
                    self.doc.entities_heading = Some(heading);
                }
            }
        }
    }

    /// The section a misspelled heading was meant to be, if it is close to
    /// one. Only a single word can be a typo of a section name; longer
    /// headings are prose by design. Once reported, the heading is read as
    /// the section it was meant to be (unless that section exists already),
    /// so its content is checked in the same run instead of being dropped
    /// and reported as missing.
    fn misspelled_section(&mut self, text: &Spanned<String>) -> Option<&'static &'static str> {
        if text.value.contains(char::is_whitespace) {
            return None;
        }
        let near = closest(&text.value, SECTIONS.iter().copied())?;
        let taken = match near {
            "Settings" => self.doc.settings.is_some(),
            "Roles" => self.doc.roles.is_some(),
            _ => self.doc.entities_heading.is_some(),
        };
        self.diags.push(
            Diagnostic::new(Code::MisspelledSection, text.span, format!("`{}` is not a section charter reads", text.value))
                .label(if taken { "read as prose" } else { "misspelled section name" })
                .help(format!("did you mean `{near}`?")),
        );
        if taken {
            None
        } else {
            SECTIONS.iter().find(|s| **s == near)
        }
    }

    fn entity_heading(&mut self, text: Spanned<String>) {
        let raw = text.value.as_str();
        let (name_part, hint) = match raw.find('(') {
            Some(open) => (&raw[..open], Some(open)),
            None => (raw, None),
        };
        let name = self.trimmed(Span::new(text.span.start, text.span.start + name_part.len()));
        let mut renamed_from = None;
        let mut ok = is_word(&name.value);
        if let Some(open) = hint {
            let inner_start = text.span.start + open + 1;
            let rest = &raw[open + 1..];
            match rest.strip_suffix(')') {
                Some(inner) => {
                    let inner_span = self.trimmed(Span::new(inner_start, inner_start + inner.len()));
                    let words: Vec<&str> = inner_span.value.split_whitespace().collect();
                    match words.as_slice() {
                        ["renamed", "from", old] if is_word(old) => {
                            let off = inner_span.value.rfind(old).expect("word present");
                            let s = inner_span.span.start + off;
                            renamed_from = Some(Spanned::new(old.to_string(), Span::new(s, s + old.len())));
                        }
                        _ => {
                            self.diags.push(
                                Diagnostic::new(
                                    Code::BadRename,
                                    inner_span.span,
                                    "an entity heading can only carry `(renamed from OldName)`",
                                )
                                .label("not a rename hint")
                                .help("write `### Person (renamed from Customer)`, or move the note into the prose below"),
                            );
                        }
                    }
                }
                None => ok = false,
            }
        }
        if !ok || name.value.is_empty() {
            let suggestion: String = name.value.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(capitalize).collect();
            let mut d = Diagnostic::new(Code::EntityName, text.span, format!("`{}` is not an entity name", text.value))
                .label("every `###` heading under `## Entities` declares an entity");
            d = if !suggestion.is_empty() && suggestion != text.value {
                d.help(format!(
                    "entity names are PascalCase words: did you mean `{suggestion}`? Prose headings go under their own `##` section"
                ))
            } else {
                d.help("entity names are PascalCase words such as `Task` or `LineItem`")
            };
            self.diags.push(d);
        }
        self.doc.entities.push(EntityDecl {
            name,
            renamed_from,
            heading: text.span,
            description: String::new(),
            table: None,
            permissions: None,
        });
        self.entity = Some(self.doc.entities.len() - 1);
    }

    fn paragraph(&mut self, span: Span) {
        let text = self.trimmed(span);
        if self.pending_permissions.is_some() {
            self.flush_pending(span);
        }
        let first_line = first_line(&text.value);
        let label = first_line.trim().trim_matches(['*', '_']).trim();
        if let Some(ei) = self.entity {
            let normalized = label.to_lowercase();
            if normalized == "permissions:" {
                let label_span = Span::new(text.span.start, text.span.start + first_line.len());
                if first_line.len() < text.value.len() {
                    self.diags.push(
                        Diagnostic::new(Code::PermissionsWithoutList, label_span, "`Permissions:` is followed by plain lines, not a list")
                            .label("the lines below are not list items")
                            .help("start each permission line with `- `"),
                    );
                    self.mark_permissions_written(ei, label_span);
                } else {
                    self.open_permissions(ei, label_span);
                }
                return;
            }
            let bare = normalized.trim_end_matches(':');
            let near = !bare.contains(' ') && bare.len() >= 8 && strsim_close(bare, "permissions");
            if near || normalized == "permissions" {
                let label_span = Span::new(text.span.start, text.span.start + first_line.len());
                self.diags.push(
                    Diagnostic::new(Code::PermissionsLabel, label_span, format!("`{label}` is not the permissions label"))
                        .label("expected `Permissions:`")
                        .help("write the label exactly as `Permissions:`"),
                );
                self.open_permissions(ei, label_span);
                return;
            }
            let entity = &mut self.doc.entities[ei];
            if entity.table.is_none() && entity.permissions.is_none() {
                push_para(&mut entity.description, prose(&self.src[span.start..span.end]));
            }
        } else if self.section == Section::Preamble {
            push_para(&mut self.doc.description, prose(&self.src[span.start..span.end]));
        }
    }

    fn open_permissions(&mut self, ei: usize, label: Span) {
        if self.doc.entities[ei].permissions.is_some() {
            self.diags.push(
                Diagnostic::new(Code::SecondPermissions, label, "a second `Permissions:` list for this entity")
                    .label("the entity already has permissions above")
                    .help("merge both lists under one `Permissions:` label"),
            );
        }
        self.pending_permissions = Some((ei, label));
    }

    /// `after_label`: the table came right after a `Permissions:` label
    /// (already reported), so it was meant as permissions, not fields.
    fn table(&mut self, start: usize, end: usize, span: Span, after_label: bool) {
        match (self.section, self.entity) {
            (Section::Settings | Section::Roles, _) => {
                let what = if self.section == Section::Settings { "settings" } else { "roles" };
                let example = if self.section == Section::Settings { "- signup: open" } else { "- admin: runs the place" };
                self.diags.push(
                    Diagnostic::new(Code::MisplacedBlock, first_line_span(self.src, span), format!("a table in the {what} section"))
                        .label(format!("{what} are read from a bullet list"))
                        .help(format!("write one line per item, like `{example}`")),
                );
            }
            (Section::Entities, None) => {
                self.diags.push(
                    Diagnostic::new(Code::MisplacedBlock, first_line_span(self.src, span), "a field table outside any entity")
                        .label("no `###` entity heading above this table")
                        .help("put a heading such as `### Task` above the table"),
                );
            }
            (Section::Entities, Some(ei)) => {
                if self.doc.entities[ei].table.is_some() {
                    if after_label {
                        return;
                    }
                    self.diags.push(
                        Diagnostic::new(Code::SecondFieldTable, first_line_span(self.src, span), "a second field table in this entity")
                            .label("the entity's fields are already declared above")
                            .help("merge the rows into one table"),
                    );
                    // Its rows are still read: they are checked in this run,
                    // and names used in permissions are found.
                    if let Some(more) = self.field_table(start, end, span) {
                        let table = self.doc.entities[ei].table.as_mut().expect("checked above");
                        table.rows.extend(more.rows);
                        table.readable &= more.readable;
                    }
                    return;
                }
                if let Some(table) = self.field_table(start, end, span) {
                    self.doc.entities[ei].table = Some(table);
                }
            }
            _ => {}
        }
    }

    fn field_table(&mut self, start: usize, end: usize, span: Span) -> Option<FieldTable> {
        let mut head = None;
        let mut rows = Vec::new();
        for (ev, range) in &self.events[start..end] {
            match ev {
                Event::Start(Tag::TableHead) => head = Some(Span::new(range.start, range.end)),
                Event::Start(Tag::TableRow) => rows.push(Span::new(range.start, range.end)),
                _ => {}
            }
        }
        let head = head?;
        let header = split_row(self.src, head);
        let names: Vec<String> = header.iter().map(|c| c.value.to_lowercase()).collect();
        let has_description = match names.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["field", "type", "rules"] => false,
            ["field", "type", "rules", "description"] => true,
            _ => {
                let mut d = Diagnostic::new(
                    Code::FieldTableHeader,
                    first_line_span(self.src, head),
                    "the field table's header is not `field | type | rules`",
                )
                .label("unexpected columns");
                d = d.help("write the header as `| field | type | rules |`, optionally with `| description |` as a fourth column");
                self.diags.push(d);
                // The table is there, just malformed: keep it so the entity
                // is not also reported as having no table.
                return Some(FieldTable { span, has_description: false, rows: Vec::new(), readable: false });
            }
        };
        let columns = header.len();
        let mut out = Vec::new();
        for row_span in rows {
            let cells = split_row(self.src, row_span);
            let line = first_line_span(self.src, row_span);
            if cells.len() != columns {
                let msg = format!("this row has {} cells; the table has {columns} columns", cells.len());
                let (at, label) = if cells.len() < columns {
                    (line, "a cell is missing")
                } else {
                    let extra = cells[columns].span.to(cells[cells.len() - 1].span);
                    (if extra.is_empty() { line } else { extra }, if cells.len() - columns == 1 { "extra cell" } else { "extra cells" })
                };
                self.diags.push(
                    Diagnostic::new(Code::FieldTableRow, at, msg).label(label).help(
                        "every row needs one cell per column; leave a cell empty as `|  |`, and write `\\|` for a pipe inside a cell",
                    ),
                );
                // The row is kept by name only, without a type: the field
                // exists as far as the rest of the spec is concerned, so
                // permissions that use it are not reported as well.
                if !cells[0].value.is_empty() {
                    let empty = Spanned::new(String::new(), Span::new(line.end, line.end));
                    out.push(FieldRow {
                        name: cells[0].clone(),
                        ty: None,
                        rules: Vec::new(),
                        rules_text: empty.clone(),
                        type_text: cells.get(1).cloned().unwrap_or(empty),
                        description: None,
                        span: line,
                    });
                }
                continue;
            }
            let name = cells[0].clone();
            let type_text = cells[1].clone();
            let rules_text = cells[2].clone();
            if name.value.is_empty() {
                self.diags.push(
                    Diagnostic::new(Code::FieldName, line, "a field row without a name")
                        .label("the first cell is empty")
                        .help("write the field's snake_case name in the first column"),
                );
                continue;
            }
            let ty = match parse_type(&type_text.value, type_text.span.start, cell_span(&type_text, line)) {
                Ok(t) => Some(t),
                Err(d) => {
                    self.diags.push(d);
                    None
                }
            };
            let (rules, rule_diags) = parse_rules(&rules_text.value, rules_text.span.start, cell_span(&rules_text, line));
            self.diags.extend(rule_diags);
            out.push(FieldRow {
                name,
                ty,
                rules,
                rules_text,
                type_text,
                description: if has_description { Some(cells[3].clone()) } else { None },
                span: line,
            });
        }
        Some(FieldTable { span, has_description, rows: out, readable: true })
    }

    fn list(&mut self, start: usize, end: usize, _span: Span) {
        let items = self.list_items(start, end);
        match (self.section, self.entity) {
            (Section::Settings | Section::Roles, _) => self.setting_or_role_items(items),
            (Section::Entities, Some(ei)) => self.permission_list(ei, items),
            _ => {}
        }
    }

    fn setting_or_role_items(&mut self, items: Vec<ListItem>) {
        for item in items {
            if self.section == Section::Settings {
                if let Some(line) = self.setting_item(item.content) {
                    self.doc.settings.as_mut().expect("in settings").items.push(line);
                }
            } else if let Some(line) = self.role_item(item.content) {
                self.doc.roles.as_mut().expect("in roles").items.push(line);
            }
            if let Some((nested, at)) = item.nested {
                self.diags.push(
                    Diagnostic::new(Code::NestedList, first_line_span(self.src, nested), "a nested list here is not allowed")
                        .label("nested under the item above")
                        .help("write every line at the top level of the list"),
                );
                // Its lines are still read as if they were at the top level:
                // a role declared there is meant, and dropping it would make
                // every use of it an error too.
                let inner = self.list_items(at, self.matching_end(at));
                self.setting_or_role_items(inner);
            }
        }
    }

    fn permission_list(&mut self, ei: usize, items: Vec<ListItem>) {
        let label = match self.pending_permissions.take() {
            Some((_, label)) => label,
            None => {
                let looks = |item: &ListItem| looks_like_permission(&self.src[item.content.start..item.content.end]);
                let Some(first) = items.iter().find(|item| looks(item)) else { return };
                let first_line = first_line_span(self.src, first.content);
                let all = items.iter().all(looks);
                self.diags.push(
                    Diagnostic::new(Code::PermissionsLabel, first_line, "permission lines without a `Permissions:` label")
                        .label("this looks like a permission rule")
                        .help("put a line `Permissions:` right above the list"),
                );
                // A list made only of permission lines is read as the
                // entity's permissions, so their own problems are reported
                // now and the entity is not also reported as having none.
                if !all {
                    return;
                }
                first_line
            }
        };
        let mut lines = Vec::new();
        for item in &items {
            if let Some((nested, _)) = item.nested {
                self.diags.push(
                    Diagnostic::new(Code::NestedList, first_line_span(self.src, nested), "a nested list inside permissions is not read")
                        .label("nested under the line above")
                        .help(
                            "write the whole condition on the action's line, joining alternatives with `or`: `- read: owner = me or admin`",
                        ),
                );
            }
            if let Some(line) = self.permission_item(item.content, item.nested.is_some()) {
                lines.push(line);
            }
        }
        let entity = &mut self.doc.entities[ei];
        match &mut entity.permissions {
            Some(existing) => existing.lines.extend(lines),
            None => entity.permissions = Some(PermissionsBlock { label, lines }),
        }
    }

    /// The items of the list whose `Start(List)` event is at `start`.
    fn list_items(&self, start: usize, end: usize) -> Vec<ListItem> {
        let mut items = Vec::new();
        let mut i = start + 1;
        while i < end {
            let item_end = self.matching_end(i);
            if let (Event::Start(Tag::Item), range) = &self.events[i] {
                let mut content_end = range.end;
                let mut nested = None;
                for (k, (ev, r)) in self.events[i + 1..item_end].iter().enumerate() {
                    if matches!(ev, Event::Start(Tag::List(_))) {
                        content_end = r.start;
                        nested = Some((Span::new(r.start, r.end), i + 1 + k));
                        break;
                    }
                }
                let raw = &self.src[range.start..content_end];
                let marker = marker_len(raw);
                let content = self.trimmed(Span::new(range.start + marker, content_end));
                items.push(ListItem { content: content.span, nested });
            }
            i = item_end + 1;
        }
        items
    }

    fn split_colon(&self, item: Span) -> Option<(Spanned<String>, Spanned<String>)> {
        let text = &self.src[item.start..item.end];
        let colon = text.find(':')?;
        Some((self.trimmed(Span::new(item.start, item.start + colon)), self.trimmed(Span::new(item.start + colon + 1, item.end))))
    }

    fn setting_item(&mut self, item: Span) -> Option<SettingLine> {
        match self.split_colon(item) {
            Some((key, value)) if !key.value.is_empty() => Some(SettingLine { key, value, span: item }),
            _ => {
                self.diags.push(
                    Diagnostic::new(Code::MalformedSetting, first_line_span(self.src, item), "a setting must be written `key: value`")
                        .label("no `key:` here")
                        .help("for example `- signup: open`"),
                );
                None
            }
        }
    }

    fn role_item(&mut self, item: Span) -> Option<RoleLine> {
        let (head, description, has_colon) = match self.split_colon(item) {
            Some((h, d)) => (h, d.value, true),
            None => (self.trimmed(item), String::new(), false),
        };
        let mut name = head.clone();
        let mut default_mark = None;
        let lower = head.value.to_lowercase();
        if let Some(pos) = lower.find('(') {
            let mark = &lower[pos..];
            if mark.trim_end() == "(default)" {
                default_mark = Some(Span::new(head.span.start + pos, head.span.end));
                name = self.trimmed(Span::new(head.span.start, head.span.start + pos));
            } else {
                self.diags.push(
                    Diagnostic::new(
                        Code::MalformedRole,
                        Span::new(head.span.start + pos, head.span.end),
                        "only `(default)` may follow a role name",
                    )
                    .label("not `(default)`")
                    .help("write `- member (default): description`; other notes go after the colon"),
                );
                // The name before the note is still declared, so its uses in
                // permissions are not reported as unknown roles.
                name = self.trimmed(Span::new(head.span.start, head.span.start + pos));
            }
        }
        // Before a colon, a name with spaces (`chief editor:`) is passed on:
        // the resolver reports it as a bad role name and suggests the
        // snake_case spelling. Without a colon it is more likely prose.
        if name.value.is_empty() || (!has_colon && name.value.contains(char::is_whitespace)) {
            self.diags.push(
                Diagnostic::new(Code::MalformedRole, first_line_span(self.src, item), "a role must be written `name: description`")
                    .label("expected one lowercase role name before the colon")
                    .help("for example `- admin: runs the place`"),
            );
            return None;
        }
        Some(RoleLine { name, default_mark, description, span: item })
    }

    /// `has_nested`: a nested list follows the line (already reported); an
    /// empty condition is then that list's doing and not reported again.
    fn permission_item(&mut self, item: Span, has_nested: bool) -> Option<PermissionLine> {
        let Some((head, cond)) = self.split_colon(item) else {
            self.diags.push(
                Diagnostic::new(
                    Code::MalformedPermission,
                    first_line_span(self.src, item),
                    "a permission line must be written `actions: condition`",
                )
                .label("no colon")
                .help("for example `- read: signed in` or `- update, delete: owner = me`"),
            );
            return None;
        };
        let targets = match parse_targets(&head.value, head.span.start, head.span) {
            Ok(t) => t,
            Err(d) => {
                self.diags.push(d);
                return None;
            }
        };
        if has_nested && cond.value.is_empty() {
            return None;
        }
        let cond_span = if cond.value.is_empty() { Span::new(item.end, item.end) } else { cond.span };
        let condition = match parse_condition(&cond.value, cond.span.start, Span::new(head.span.start, cond_span.end)) {
            Ok(c) => Some(c),
            Err(d) => {
                self.diags.push(d);
                None
            }
        };
        Some(PermissionLine { targets, condition, condition_text: cond, span: item })
    }
}

type Section_<T> = crate::syntax::Section<T>;

/// One list item: its text (marker removed, any nested list cut off), and
/// the span and event index of a nested list under it.
struct ListItem {
    content: Span,
    nested: Option<(Span, usize)>,
}

/// A paragraph kept as prose, trimmed of Markdown's own whitespace only:
/// printed back, `\u{b}## x` or a no-break space before `#` must stay a
/// paragraph, which it is only while that character is still there.
fn prose(text: &str) -> &str {
    text.trim_matches([' ', '\t', '\n', '\r'])
}

fn push_para(out: &mut String, text: &str) {
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out.push_str(text);
}

fn strsim_close(a: &str, b: &str) -> bool {
    closest(a, [b]).is_some()
}

fn is_word(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// Length of a list marker (`- `, `* `, `1. `) and the spaces around it.
fn marker_len(raw: &str) -> usize {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() && bytes[i] == b' ' {
        i += 1;
    }
    if i < bytes.len() && matches!(bytes[i], b'-' | b'*' | b'+') {
        i += 1;
    } else {
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i < bytes.len() && matches!(bytes[i], b'.' | b')') {
            i += 1;
        }
    }
    i
}

/// The text before the first line ending. A lone `\r` ends a line too
/// (CommonMark reads it so), which `str::lines` does not know.
fn first_line(text: &str) -> &str {
    text.find(['\n', '\r']).map_or(text, |end| &text[..end])
}

fn first_line_span(src: &str, span: Span) -> Span {
    let text = &src[span.start..span.end];
    let line = first_line(text).trim_end();
    Span::new(span.start, span.start + line.len())
}

/// The span to point at for an empty cell: the cell itself when it has a
/// position, else the row.
fn cell_span(cell: &Spanned<String>, row: Span) -> Span {
    if cell.value.is_empty() {
        row
    } else {
        cell.span
    }
}

/// Splits one table row into trimmed cells, honouring `\|`.
fn split_row(src: &str, span: Span) -> Vec<Spanned<String>> {
    let line = first_line_span(src, span);
    let text = &src[line.start..line.end];
    let mut bounds = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut cell_start = 0;
    let lead = text.len() - text.trim_start().len();
    let leading_pipe = text[lead..].starts_with('|');
    if leading_pipe {
        cell_start = lead + 1;
        i = lead + 1;
    }
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'|' => {
                bounds.push((cell_start, i));
                cell_start = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    let tail = &text[cell_start.min(text.len())..];
    if !tail.trim().is_empty() || bounds.is_empty() {
        bounds.push((cell_start.min(text.len()), text.len()));
    }
    bounds
        .into_iter()
        .map(|(s, e)| {
            let cell = &text[s..e];
            let lead = cell.len() - cell.trim_start().len();
            let t = cell.trim();
            let start = line.start + s + lead;
            Spanned::new(t.to_string(), Span::new(start, start + t.len()))
        })
        .collect()
}

fn looks_like_permission(text: &str) -> bool {
    let Some(colon) = text.find(':') else { return false };
    let head = text[..colon].trim().to_lowercase();
    head.split(',').all(|part| {
        let first = part.split_whitespace().next().unwrap_or("");
        ACTIONS.contains(&first)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_row_handles_escaped_pipes_and_missing_trailing_pipe() {
        let src = "| a | b \\| c |  |\n";
        let cells = split_row(src, Span::new(0, src.len()));
        let values: Vec<&str> = cells.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(values, ["a", "b \\| c", ""]);
        let src = "a | b";
        let cells = split_row(src, Span::new(0, src.len()));
        assert_eq!(cells.len(), 2);
        assert_eq!(&src[cells[1].span.start..cells[1].span.end], "b");
    }

    #[test]
    fn reads_the_example_structure() {
        let src = "# Taskboard\n\nProse.\n\n## Settings\n- signup: open\n\n## Roles\n- member (default): all\n- admin: staff\n\n## Entities\n\n### Project\nA project.\n\n| field | type | rules |\n|---|---|---|\n| name | text | required, 1..80 |\n\nPermissions:\n- read: owner = me or admin\n";
        let (doc, diags) = parse(src);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(doc.title.unwrap().value, "Taskboard");
        assert_eq!(doc.settings.unwrap().items[0].key.value, "signup");
        let roles = doc.roles.unwrap();
        assert_eq!(roles.items.len(), 2);
        assert!(roles.items[0].default_mark.is_some());
        let e = &doc.entities[0];
        assert_eq!(e.name.value, "Project");
        assert_eq!(e.description, "A project.");
        assert_eq!(e.table.as_ref().unwrap().rows.len(), 1);
        assert_eq!(e.permissions.as_ref().unwrap().lines.len(), 1);
    }
}
