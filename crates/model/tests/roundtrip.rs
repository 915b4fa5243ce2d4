//! Random valid specs, written by a generator of their own (not by
//! `to_spec`), must compile; the printer and the formatter must keep their
//! model: `compile(to_spec(m)) == m`, `to_spec` is a fixed point, and
//! `compile(fmt::format(src)) == m`.
//!
//! The generator draws every decision from a list of numbers that proptest
//! generates. An exhausted list gives 0, and 0 is always the simplest
//! choice, so shrinking the list shrinks the spec.

use charter_model::{compile, plural_of, to_spec, AppModel};
use proptest::prelude::*;

struct Draw<'a> {
    choices: &'a [u32],
    at: usize,
}

impl Draw<'_> {
    fn next(&mut self) -> u32 {
        let c = self.choices.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        c
    }

    fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            0
        } else {
            self.next() as usize % n
        }
    }

    /// True with about `percent`% probability; false for a 0 draw.
    fn chance(&mut self, percent: u32) -> bool {
        self.next() % 100 >= 100 - percent
    }

    fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len())]
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    fn int(&mut self) -> i64 {
        match self.below(4) {
            0 => self.below(200) as i64 - 100,
            1 => self.below(2_000_001) as i64 - 1_000_000,
            2 => *self.pick(&[i64::MIN, i64::MAX, 0, -1, 1]),
            _ => ((u64::from(self.next()) << 32) | u64::from(self.next())) as i64,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Text,
    Int,
    Decimal,
    Bool,
    Date,
    DateTime,
    Email,
    Url,
    Json,
    Enum(Vec<String>),
    /// Index into `Plan::entities` (0 is `User`).
    Ref(usize),
    Id,
    Role,
}

struct FieldPlan {
    name: String,
    ty: Ty,
    required: bool,
    rules: Vec<String>,
    description: String,
}

struct EntityPlan {
    name: String,
    /// Whether the spec has a section for it (always, except maybe `User`).
    declared: bool,
    renamed_from: Option<String>,
    description: Vec<String>,
    has_table: bool,
    fields: Vec<FieldPlan>,
    permissions: Vec<String>,
}

struct Plan {
    roles: Vec<String>,
    entities: Vec<EntityPlan>,
}

impl Plan {
    /// Every field a path can name on entity `e`, built-ins first.
    fn fields_of(&self, e: usize) -> Vec<(String, Ty)> {
        let mut out: Vec<(String, Ty)> = vec![
            ("id".into(), Ty::Id),
            ("created_at".into(), Ty::DateTime),
            ("updated_at".into(), Ty::DateTime),
            ("version".into(), Ty::Int),
        ];
        if e == 0 {
            out.extend([("email".into(), Ty::Email), ("name".into(), Ty::Text), ("role".into(), Ty::Role), ("verified".into(), Ty::Bool)]);
        }
        out.extend(self.entities[e].fields.iter().map(|f| (f.name.clone(), f.ty.clone())));
        out
    }
}

const ENTITY_NAMES: &[&str] = &[
    "Task",
    "Project",
    "LineItem",
    "Box",
    "Category",
    "Day",
    "Address",
    "Match",
    "Person",
    "Note",
    "HTTPRequest",
    "Quiz",
    "Tag",
    "Invoice",
    "Comment",
    "A",
    "B2",
    "Team",
];
/// Includes words that are keywords in conditions: a path may still start
/// with them.
const FIELD_NAMES: &[&str] = &[
    "title",
    "body",
    "count",
    "price",
    "done",
    "due",
    "starts_at",
    "contact",
    "website",
    "meta",
    "status",
    "kind",
    "owner",
    "parent",
    "project",
    "notes",
    "rank",
    "weight",
    "score",
    "label",
    "x",
    "a1",
    "not",
    "and",
    "or",
    "anyone",
    "signed",
    "me",
    "true",
    "in",
    "read",
];
const ROLE_NAMES: &[&str] = &["member", "admin", "editor", "viewer", "staff", "guest", "support", "billing_team", "r2", "owner", "user"];
const ENUM_MEMBERS: &[&str] = &["low", "normal", "high", "me", "now", "today", "true", "and", "a1", "x_y", "open", "closed"];
const WORDS: &[&str] = &[
    "the",
    "app",
    "keeps",
    "tasks",
    "Ünïcode",
    "日本語",
    "café",
    "*bold*",
    "`code`",
    "[link](https://example.org)",
    "a|b",
    "50%",
    "x_y",
    "it's",
    "—",
    "3.",
    "#1",
    "C#",
];
/// Regexes with values that match them.
const PATTERNS: &[(&str, &[&str])] = &[
    ("[a-z]+", &["abc", "z"]),
    ("[A-Z]{3}-[0-9]+", &["ABC-1", "XYZ-2024"]),
    (r"\d{4}", &["2024"]),
    ("(ab|cd)+", &["abcd", "cd"]),
    ("[^\"]*", &["no quotes here", ""]),
    ("é+ü?", &["éé", "éü"]),
    (".*", &["any thing", "x|y"]),
];
const EMAILS: &[&str] = &["a@b.co", "first.last@example.org", "ü@exämple.de"];
const URLS: &[&str] = &["https://example.org/x?y=1", "http://a.b", "https://ü.example/日本"];
const DATETIMES: &[&str] = &["2025-01-02T03:04:05Z", "1999-12-31T23:59:60.123+02:00", "2024-02-29t00:00:00z", "0001-01-01T00:00:00-11:30"];
const JSONS: &[&str] = &["{}", "[]", "null", "1.5", "\"s\"", "{\"a\": [1, 2, {\"b\": null}]}", "\"x|y\""];
const STRING_CHARS: &[char] = &[
    'a', 'b', 'Z', '0', '7', ' ', '-', '_', '.', ',', ':', ';', '!', '?', '\'', '(', ')', '/', '@', '#', '%', '&', '*', '+', '=', '[', ']',
    '{', '}', '~', '^', '$', '`', '<', '>', '"', '|', 'é', 'ü', '日', 'ß', '☕',
];

/// A string literal as the spec's lexer reads it: `"` and `|` escaped.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\\\"").replace('|', "\\|"))
}

fn random_string(d: &mut Draw) -> String {
    let len = d.below(13);
    (0..len).map(|_| *d.pick(STRING_CHARS)).collect()
}

fn prose_line(d: &mut Draw) -> String {
    let mut words = vec![d.pick(&["Some", "This", "Ünïcode", "People", "Notes"]).to_string()];
    for _ in 0..d.below(8) {
        words.push(d.pick(WORDS).to_string());
    }
    words.join(" ")
}

fn paragraph(d: &mut Draw) -> String {
    let lines: Vec<String> = (0..1 + d.below(3)).map(|_| prose_line(d)).collect();
    lines.join("\n")
}

fn date(d: &mut Draw) -> String {
    if d.chance(10) {
        return "2024-02-29".into();
    }
    format!("{:04}-{:02}-{:02}", 1 + d.below(9999), 1 + d.below(12), 1 + d.below(28))
}

fn decimal_text(hundredths: i64, d: &mut Draw) -> String {
    let sign = if hundredths < 0 { "-" } else { "" };
    let abs = hundredths.unsigned_abs();
    if abs.is_multiple_of(100) && d.chance(50) {
        format!("{sign}{}", abs / 100)
    } else {
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// `lo..hi`, `min lo`, `max hi`, both, or half-open ranges.
fn bound_rules(d: &mut Draw, lo: String, hi: String) -> Vec<String> {
    match d.below(7) {
        0 => vec![],
        1 => vec![format!("{lo}..{hi}")],
        2 => vec![format!("min {lo}")],
        3 => vec![format!("max {hi}")],
        4 => vec![format!("min {lo}"), format!("max {hi}")],
        5 => vec![format!("{lo}..")],
        _ => vec![format!("..{hi}")],
    }
}

/// Bounds on a length that `len` satisfies.
fn length_bounds(d: &mut Draw, len: Option<usize>) -> Vec<String> {
    let (lo, hi) = match len {
        Some(n) => (n - d.below(n + 1), n + d.below(20)),
        None => {
            let lo = d.below(50);
            (lo, lo + d.below(100))
        }
    };
    bound_rules(d, lo.to_string(), hi.to_string())
}

fn sorted3<T: Ord>(mut v: [T; 3]) -> [T; 3] {
    v.sort();
    v
}

fn gen_type(d: &mut Draw, entity: usize) -> Ty {
    match d.below(11) {
        0 => Ty::Text,
        1 => Ty::Int,
        2 => Ty::Decimal,
        3 => Ty::Bool,
        4 => Ty::Date,
        5 => Ty::DateTime,
        6 => Ty::Email,
        7 => Ty::Url,
        8 => Ty::Json,
        9 => {
            let mut members: Vec<String> = Vec::new();
            for _ in 0..1 + d.below(4) {
                let m = d.pick(ENUM_MEMBERS).to_string();
                if !members.contains(&m) {
                    members.push(m);
                }
            }
            Ty::Enum(members)
        }
        // `User`, an earlier entity, or this one.
        _ => Ty::Ref(d.below(entity + 1)),
    }
}

fn type_text(ty: &Ty, plan_names: &[String], d: &mut Draw) -> String {
    match ty {
        Ty::Text => "text".into(),
        Ty::Int => "int".into(),
        Ty::Decimal => "decimal".into(),
        Ty::Bool => "bool".into(),
        Ty::Date => "date".into(),
        Ty::DateTime => "datetime".into(),
        Ty::Email => "email".into(),
        Ty::Url => "url".into(),
        Ty::Json => "json".into(),
        Ty::Enum(m) => {
            if d.chance(30) {
                format!("enum( {} )", m.join(" , "))
            } else {
                format!("enum({})", m.join(", "))
            }
        }
        Ty::Ref(e) => plan_names[*e].clone(),
        Ty::Id | Ty::Role => unreachable!("built-in types are never declared"),
    }
}

/// The rules of a field of type `ty`: every combination the language
/// accepts, with a default that satisfies the bounds and the pattern.
fn gen_rules(d: &mut Draw, ty: &Ty, field: &str) -> (bool, Vec<String>) {
    let mut rules = Vec::new();
    let required = d.chance(30);
    if required {
        rules.push("required".to_string());
    }
    if *ty != Ty::Json && d.chance(15) {
        rules.push("unique".into());
    }
    if d.chance(15) {
        rules.push("read only".into());
    }
    if d.chance(10) {
        rules.push(format!("renamed from old_{field}"));
    }
    match ty {
        Ty::Text | Ty::Email | Ty::Url => {
            let pattern = d.chance(30).then(|| *d.pick(PATTERNS));
            let pattern = match (ty, pattern) {
                // Email and URL defaults must also look like one.
                (Ty::Email | Ty::Url, Some(_)) => Some(*d.pick(&[(".*", &[][..]), ("[^ ]+", &[][..])])),
                (_, p) => p,
            };
            let default = if d.chance(50) {
                Some(match (ty, pattern) {
                    (Ty::Email, _) => d.pick(EMAILS).to_string(),
                    (Ty::Url, _) => d.pick(URLS).to_string(),
                    (_, Some((_, samples))) => d.pick(samples).to_string(),
                    _ => random_string(d),
                })
            } else {
                None
            };
            if let Some((p, _)) = pattern {
                rules.push(format!("pattern {}", quoted(p)));
            }
            if let Some(v) = &default {
                let bare = *ty == Ty::Text && pattern.is_none() && d.chance(20);
                rules.push(if bare {
                    format!("default {}", d.pick(&["hello", "draft", "true", "x1", "_u"]))
                } else {
                    format!("default {}", quoted(v))
                });
                // A bare word replaces the drawn value; bound its length instead.
                let len = if bare { None } else { Some(v.chars().count()) };
                if len.is_some() {
                    rules.extend(length_bounds(d, len));
                }
            } else {
                rules.extend(length_bounds(d, None));
            }
        }
        Ty::Int => {
            let [lo, v, hi] = sorted3([d.int(), d.int(), d.int()]);
            if d.chance(50) {
                rules.push(format!("default {v}"));
            }
            rules.extend(bound_rules(d, lo.to_string(), hi.to_string()));
        }
        Ty::Decimal => {
            let mut draw = || d.below(200_000_001) as i64 - 100_000_000;
            let [lo, v, hi] = sorted3([draw(), draw(), draw()]);
            if d.chance(50) {
                rules.push(format!("default {}", decimal_text(v, d)));
            }
            let (lo, hi) = (decimal_text(lo, d), decimal_text(hi, d));
            rules.extend(bound_rules(d, lo, hi));
        }
        Ty::Bool => {
            if d.chance(50) {
                rules.push(format!("default {}", d.pick(&["true", "false"])));
            }
        }
        Ty::Date => {
            let [lo, v, hi] = sorted3([date(d), date(d), date(d)]);
            match d.below(3) {
                0 => {}
                1 => rules.push(format!("default {v}")),
                _ => rules.push("default today".into()),
            }
            rules.extend(bound_rules(d, lo, hi));
        }
        Ty::DateTime => match d.below(3) {
            0 => {}
            1 => rules.push(format!("default {}", quoted(d.pick::<&str>(DATETIMES)))),
            _ => rules.push("default now".into()),
        },
        Ty::Json => {
            if d.chance(50) {
                rules.push(format!("default {}", quoted(d.pick::<&str>(JSONS))));
            }
        }
        Ty::Enum(members) => {
            if d.chance(50) {
                let m = d.pick(members).clone();
                // Bare, these words mean the user, the instant, the date.
                let quote = matches!(m.as_str(), "me" | "now" | "today") || d.chance(20);
                rules.push(format!("default {}", if quote { quoted(&m) } else { m }));
            }
        }
        Ty::Ref(target) => {
            if *target == 0 && d.chance(40) {
                rules.push("default me".into());
            }
            let actions: &[&str] = if required { &["", "cascade", "restrict"] } else { &["", "cascade", "restrict", "set null"] };
            let action = d.pick(actions);
            if !action.is_empty() {
                rules.push(format!("on delete {action}"));
            }
        }
        Ty::Id | Ty::Role => unreachable!(),
    }
    d.shuffle(&mut rules);
    (required, rules)
}

enum Cond {
    Anyone,
    SignedIn,
    Role(String),
    Compare(String),
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Paren(Box<Cond>),
}

fn gen_value(d: &mut Draw, plan: &Plan, ty: &Ty, on_user: bool) -> String {
    match ty {
        Ty::Id if on_user && d.chance(60) => "me".into(),
        Ty::Ref(0) if d.chance(60) => "me".into(),
        Ty::Id | Ty::Ref(_) | Ty::Text | Ty::Email | Ty::Url => quoted(&random_string(d)),
        Ty::Int => d.int().to_string(),
        Ty::Decimal => {
            let v = d.below(2_000_001) as i64 - 1_000_000;
            decimal_text(v, d)
        }
        Ty::Bool => d.pick(&["true", "false"]).to_string(),
        Ty::Date => date(d),
        Ty::DateTime => quoted(d.pick::<&str>(DATETIMES)),
        Ty::Enum(members) => {
            let m = d.pick(members).clone();
            if m == "me" || d.chance(20) {
                quoted(&m)
            } else {
                m
            }
        }
        Ty::Role => {
            let r = d.pick(&plan.roles).clone();
            if d.chance(20) {
                quoted(&r)
            } else {
                r
            }
        }
        Ty::Json => unreachable!("json is never compared"),
    }
}

fn gen_compare(d: &mut Draw, plan: &Plan, entity: usize) -> String {
    let mut e = entity;
    let mut path: Vec<String> = Vec::new();
    let ty = loop {
        let fields = plan.fields_of(e);
        let (name, ty) = d.pick(&fields).clone();
        match ty {
            Ty::Ref(target) if path.len() < 3 && d.chance(50) => {
                path.push(name);
                e = target;
            }
            Ty::Json => {
                path.push("id".into());
                break Ty::Id;
            }
            ty => {
                path.push(name);
                break ty;
            }
        }
    };
    let value = gen_value(d, plan, &ty, e == 0);
    let op = if d.chance(30) { "!=" } else { "=" };
    if d.chance(20) {
        format!("{}{op}{value}", path.join("."))
    } else {
        format!("{} {op} {value}", path.join("."))
    }
}

fn gen_cond(d: &mut Draw, plan: &Plan, entity: usize, depth: u32) -> Cond {
    let kinds = if depth >= 3 { 4 } else { 8 };
    match d.below(kinds) {
        0 => Cond::SignedIn,
        1 => Cond::Role(d.pick(&plan.roles).clone()),
        2 => Cond::Compare(gen_compare(d, plan, entity)),
        3 => Cond::Anyone,
        4 => Cond::Not(Box::new(gen_cond(d, plan, entity, depth + 1))),
        5 => Cond::And((0..2 + d.below(3)).map(|_| gen_cond(d, plan, entity, depth + 1)).collect()),
        6 => Cond::Or((0..2 + d.below(3)).map(|_| gen_cond(d, plan, entity, depth + 1)).collect()),
        _ => Cond::Paren(Box::new(gen_cond(d, plan, entity, depth + 1))),
    }
}

fn render_cond(c: &Cond) -> String {
    match c {
        Cond::Anyone => "anyone".into(),
        Cond::SignedIn => "signed in".into(),
        Cond::Role(r) => r.clone(),
        Cond::Compare(text) => text.clone(),
        Cond::Not(inner) => match **inner {
            Cond::And(_) | Cond::Or(_) => format!("not ({})", render_cond(inner)),
            _ => format!("not {}", render_cond(inner)),
        },
        // `and` binds tighter than `or`.
        Cond::And(items) => items
            .iter()
            .map(|i| match i {
                Cond::Or(_) => format!("({})", render_cond(i)),
                _ => render_cond(i),
            })
            .collect::<Vec<_>>()
            .join(" and "),
        Cond::Or(items) => items.iter().map(render_cond).collect::<Vec<_>>().join(" or "),
        Cond::Paren(inner) => format!("({})", render_cond(inner)),
    }
}

fn gen_permissions(d: &mut Draw, plan: &Plan, entity: usize) -> Vec<String> {
    let mut actions = vec!["read", "create", "update", "delete"];
    d.shuffle(&mut actions);
    actions.truncate(d.below(5));
    let mut lines = Vec::new();
    while !actions.is_empty() {
        let take = 1 + d.below(actions.len());
        let group: Vec<&str> = actions.drain(..take).collect();
        let cond = render_cond(&gen_cond(d, plan, entity, 0));
        lines.push(format!("{}: {cond}", group.join(", ")));
    }
    if entity == 0 {
        for target in ["update role", "read email"] {
            if d.chance(40) {
                lines.push(format!("{target}: {}", render_cond(&gen_cond(d, plan, 0, 0))));
            }
        }
    }
    d.shuffle(&mut lines);
    lines
}

const USER_RESERVED: &[&str] =
    &["id", "created_at", "updated_at", "version", "email", "name", "role", "verified", "password", "password_hash", "token"];

fn gen_plan(d: &mut Draw) -> Plan {
    let mut roles: Vec<String> = Vec::new();
    for _ in 0..1 + d.below(4) {
        let r = d.pick(ROLE_NAMES).to_string();
        if !roles.contains(&r) {
            roles.push(r);
        }
    }
    let user = EntityPlan {
        name: "User".into(),
        declared: d.chance(40),
        renamed_from: None,
        description: Vec::new(),
        has_table: false,
        fields: Vec::new(),
        permissions: Vec::new(),
    };
    let mut plan = Plan { roles, entities: vec![user] };
    let mut plurals = vec!["users".to_string()];
    for _ in 0..1 + d.below(6) {
        let base = d.pick(ENTITY_NAMES);
        let name = if d.chance(20) { format!("{base}{}", d.below(10)) } else { base.to_string() };
        if plurals.contains(&plural_of(&name)) {
            continue;
        }
        plurals.push(plural_of(&name));
        let renamed_from = d.chance(15).then(|| format!("Legacy{name}"));
        plan.entities.push(EntityPlan {
            name,
            declared: true,
            renamed_from,
            description: Vec::new(),
            has_table: true,
            fields: Vec::new(),
            permissions: Vec::new(),
        });
    }
    for e in 0..plan.entities.len() {
        if !plan.entities[e].declared {
            continue;
        }
        let description: Vec<String> = (0..d.below(3)).map(|_| paragraph(d)).collect();
        let has_table = e != 0 || d.chance(70);
        let mut fields: Vec<FieldPlan> = Vec::new();
        if has_table {
            for _ in 0..d.below(9) {
                let name = d.pick(FIELD_NAMES).to_string();
                if fields.iter().any(|f| f.name == name) || (e == 0 && USER_RESERVED.contains(&name.as_str())) {
                    continue;
                }
                let ty = gen_type(d, e);
                let (required, rules) = gen_rules(d, &ty, &name);
                let description = if d.chance(30) { prose_line(d) } else { String::new() };
                fields.push(FieldPlan { name, ty, required, rules, description });
            }
        }
        let entity = &mut plan.entities[e];
        entity.description = description;
        entity.has_table = has_table;
        entity.fields = fields;
    }
    for e in 0..plan.entities.len() {
        if plan.entities[e].declared && d.chance(85) {
            let lines = gen_permissions(d, &plan, e);
            plan.entities[e].permissions = lines;
        }
    }
    plan
}

fn render_table(d: &mut Draw, plan: &Plan, e: &EntityPlan) -> String {
    let names: Vec<String> = plan.entities.iter().map(|e| e.name.clone()).collect();
    let with_desc = d.chance(30);
    let mut rows: Vec<Vec<String>> = vec![vec![d.pick(&["field", "Field", "FIELD"]).to_string(), "type".into(), "rules".into()]];
    if with_desc {
        rows[0].push("description".into());
    }
    for f in &e.fields {
        let mut rules = f.rules.join(if d.chance(20) { " ,  " } else { ", " });
        if !rules.is_empty() && d.chance(10) {
            // A trailing comma is harmless.
            rules.push(',');
        }
        let mut row = vec![f.name.clone(), type_text(&f.ty, &names, d), rules];
        if with_desc {
            row.push(f.description.replace('|', "\\|"));
        }
        rows.push(row);
    }
    let aligned = d.chance(50);
    let cols = rows[0].len();
    let widths: Vec<usize> = (0..cols).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0).max(3)).collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push('|');
        for (c, cell) in row.iter().enumerate() {
            let pad = if aligned { widths[c] - cell.chars().count() } else { 0 };
            out.push_str(&format!(" {cell}{} |", " ".repeat(pad)));
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            for w in &widths {
                let dashes = if aligned { *w } else { 3 };
                let cell = match d.below(4) {
                    0 => "-".repeat(dashes + 2),
                    1 => format!(":{}", "-".repeat(dashes + 1)),
                    2 => format!(":{}:", "-".repeat(dashes)),
                    _ => format!("{}:", "-".repeat(dashes + 1)),
                };
                out.push_str(&cell);
                out.push('|');
            }
            out.push('\n');
        }
    }
    out
}

fn render_entity(d: &mut Draw, plan: &Plan, e: &EntityPlan) -> String {
    let mut out = format!("### {}", e.name);
    if let Some(old) = &e.renamed_from {
        out.push_str(&format!(" (renamed from {old})"));
    }
    out.push_str("\n\n");
    for p in &e.description {
        out.push_str(p);
        out.push_str("\n\n");
    }
    if e.has_table {
        out.push_str(&render_table(d, plan, e));
        out.push('\n');
        if d.chance(15) {
            out.push_str("Prose after the table is not the description.\n\n");
        }
    }
    if !e.permissions.is_empty() {
        out.push_str(d.pick::<&str>(&["Permissions:\n", "**Permissions:**\n", "permissions:\n"]));
        // Another marker would start another list.
        let marker = *d.pick(&["- ", "* ", "+ "]);
        for line in &e.permissions {
            out.push_str(marker);
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

fn render_settings(d: &mut Draw) -> String {
    let mut lines: Vec<(String, String)> = Vec::new();
    let cap = |d: &mut Draw, s: &str| -> String {
        if d.chance(20) {
            let mut c = s.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
        } else {
            s.to_string()
        }
    };
    let duration = |d: &mut Draw| -> String {
        match d.below(5) {
            0 => format!("{} days", 1 + d.below(400)),
            1 => format!("{} minutes", 1 + d.below(10_000)),
            2 => format!("{} hours", 1 + d.below(9600)),
            3 => format!("{} week{}", 1 + d.below(57), if d.chance(50) { "s" } else { "" }),
            _ => format!("{} seconds", 60 + d.below(100_000)),
        }
    };
    if d.chance(50) {
        let v = d.pick(&["open", "invite", "closed"]).to_string();
        lines.push(("signup".into(), cap(d, &v)));
    }
    if d.chance(50) {
        let v = d.pick(&["required", "optional", "off"]).to_string();
        lines.push(("email verification".into(), cap(d, &v)));
    }
    if d.chance(50) {
        lines.push(("session lifetime".into(), duration(d)));
    }
    if d.chance(50) {
        lines.push(("session idle timeout".into(), duration(d)));
    }
    if d.chance(50) {
        lines.push(("password min length".into(), (8 + d.below(57)).to_string()));
    }
    if d.chance(50) {
        let unit = d.pick(&["minutes", "minute", "hours", "hour"]);
        lines.push(("login attempts".into(), format!("{} per {} {unit}", 1 + d.below(1000), 1 + d.below(1000))));
    }
    if d.chance(50) {
        lines.push(("page size".into(), (1 + d.below(500)).to_string()));
    }
    if d.chance(50) {
        let v = d.pick(&["yes", "no"]).to_string();
        lines.push(("require if-match".into(), cap(d, &v)));
    }
    d.shuffle(&mut lines);
    let mut out = String::from("## Settings\n");
    for (k, v) in lines {
        let k = if d.chance(10) { k.replace(' ', "  ") } else { cap(d, &k) };
        out.push_str(&format!("- {k}: {v}\n"));
    }
    out
}

fn render_roles(d: &mut Draw, roles: &[String]) -> (String, usize) {
    let marked = d.chance(50).then(|| d.below(roles.len()));
    let mut out = String::from(*d.pick(&["## Roles\n", "## roles\n"]));
    for (i, r) in roles.iter().enumerate() {
        let mark = if marked == Some(i) { *d.pick(&[" (default)", " (Default)", "(default)"]) } else { "" };
        if d.chance(15) {
            out.push_str(&format!("- {r}{mark}\n"));
        } else {
            out.push_str(&format!("- {r}{mark}: {}\n", prose_line(d)));
        }
    }
    (out, marked.unwrap_or(0))
}

struct Rendered {
    source: String,
    default_role: usize,
}

fn render(d: &mut Draw, plan: &Plan) -> Rendered {
    let title = {
        let mut t = d.pick(&["Taskboard", "Café Ünïcode", "My App 2", "C#", "Shop & Co", "x"]).to_string();
        if d.chance(10) {
            t.push_str(" #");
        }
        t
    };
    let mut out = if d.chance(20) {
        format!("{title}\n{}\n\n", "=".repeat(1 + d.below(10)))
    } else if title.ends_with('#') {
        format!("# {title} #\n\n")
    } else {
        format!("# {title}\n\n")
    };
    for _ in 0..d.below(3) {
        out.push_str(&paragraph(d));
        out.push_str("\n\n");
    }
    let mut sections: Vec<String> = Vec::new();
    if d.chance(60) {
        sections.push(render_settings(d));
    }
    // Without `## Roles` the app has one role, `member`.
    let (roles, default_role) = if plan.roles == ["member"] && d.chance(50) {
        (None, 0)
    } else {
        let (r, def) = render_roles(d, &plan.roles);
        (Some(r), def)
    };
    if let Some(r) = roles {
        sections.push(r);
    }
    let mut entities = String::from(*d.pick(&["## Entities\n\n", "## entities\n\n", "Entities\n--------\n\n"]));
    let user_at = d.below(plan.entities.len());
    let mut order: Vec<usize> = (1..plan.entities.len()).collect();
    order.insert(user_at, 0);
    for e in order {
        if plan.entities[e].declared {
            entities.push_str(&render_entity(d, plan, &plan.entities[e]));
        }
    }
    sections.push(entities);
    if d.chance(20) {
        sections.push("## About this app\n\nProse, and a list that is not read:\n\n- read: anyone\n".into());
    }
    d.shuffle(&mut sections);
    for s in sections {
        out.push_str(&s);
        out.push('\n');
    }
    let source = match d.below(10) {
        0 => out.replace('\n', "\r\n"),
        1 => out.replace('\n', "\r"),
        _ => out,
    };
    Rendered { source, default_role }
}

fn compile_ok(source: &str, what: &str) -> AppModel {
    let compiled = compile(source);
    match compiled.model {
        Some(m) => m,
        None => panic!(
            "{what} does not compile:\n{}\n--- {what} ---\n{source}",
            charter_spec::diagnostic::render_human("app.md", source, &compiled.diagnostics)
        ),
    }
}

/// The model says what the plan meant: names, order, flags.
fn check_model_matches_plan(model: &AppModel, plan: &Plan, default_role: usize, source: &str) {
    let roles: Vec<&str> = model.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(roles, plan.roles, "roles\n{source}");
    assert_eq!(model.default_role.0, default_role, "default role\n{source}");
    let names: Vec<&str> = model.entities.iter().map(|e| e.name.as_str()).collect();
    let expected: Vec<&str> = plan.entities.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, expected, "entities\n{source}");
    for (entity, p) in model.entities.iter().zip(&plan.entities) {
        let fields: Vec<(&str, bool)> = entity.declared_fields().map(|f| (f.name.as_str(), f.required)).collect();
        let expected: Vec<(&str, bool)> = p.fields.iter().map(|f| (f.name.as_str(), f.required)).collect();
        assert_eq!(fields, expected, "fields of {}\n{source}", entity.name);
        assert_eq!(entity.permissions.declared, !p.permissions.is_empty(), "permissions of {}\n{source}", entity.name);
        let descriptions: Vec<&str> = entity.declared_fields().map(|f| f.description.as_str()).collect();
        let expected: Vec<&str> = p.fields.iter().map(|f| f.description.as_str()).collect();
        // A table without the description column gives empty descriptions.
        assert!(descriptions == expected || descriptions.iter().all(|d| d.is_empty()), "descriptions of {}\n{source}", entity.name);
    }
}

fn check_round_trips(choices: &[u32]) {
    let mut d = Draw { choices, at: 0 };
    let plan = gen_plan(&mut d);
    let rendered = render(&mut d, &plan);
    let source = &rendered.source;
    let model = compile_ok(source, "generated spec");
    // To judge the generator's variety, read what it writes.
    if std::env::var_os("ROUNDTRIP_DUMP").is_some() {
        eprintln!("=====\n{source}");
    }
    check_model_matches_plan(&model, &plan, rendered.default_role, source);

    let printed = to_spec(&model);
    let reprinted = compile_ok(&printed, "to_spec output");
    assert!(reprinted == model, "compile(to_spec(m)) != m\n--- source ---\n{source}\n--- printed ---\n{printed}");
    let printed_again = to_spec(&reprinted);
    assert!(printed_again == printed, "to_spec is not a fixed point\n--- first ---\n{printed}\n--- second ---\n{printed_again}");

    let formatted = charter_spec::fmt::format(source);
    let reformatted = compile_ok(&formatted, "fmt::format output");
    assert!(reformatted == model, "compile(fmt::format(src)) != m\n--- source ---\n{source}\n--- formatted ---\n{formatted}");
}

proptest! {
    // 256 cases unless PROPTEST_CASES says otherwise.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(prop::test_runner::FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_specs_round_trip(choices in prop::collection::vec(any::<u32>(), 0..3000)) {
        check_round_trips(&choices);
    }
}

/// The simplest spec the generator makes (every draw 0) compiles too.
#[test]
fn simplest_generated_spec_round_trips() {
    check_round_trips(&[]);
}
