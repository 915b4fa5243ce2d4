//! The syntax tree of a spec: what the Markdown says, with spans, before any
//! name is resolved. Mini-languages (types, rules, conditions) are parsed
//! here too; their meaning is decided by `charter-model`.

use crate::span::{Span, Spanned};

#[derive(Debug, Clone, PartialEq)]
pub struct SpecDoc {
    pub title: Option<Spanned<String>>,
    /// Prose between the title and the first section, for docs.
    pub description: String,
    pub settings: Option<Section<SettingLine>>,
    pub roles: Option<Section<RoleLine>>,
    pub entities_heading: Option<Span>,
    pub entities: Vec<EntityDecl>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Section<T> {
    pub heading: Span,
    pub items: Vec<T>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SettingLine {
    /// Key as written (trimmed).
    pub key: Spanned<String>,
    pub value: Spanned<String>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoleLine {
    pub name: Spanned<String>,
    /// Span of `(default)` when present.
    pub default_mark: Option<Span>,
    pub description: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EntityDecl {
    pub name: Spanned<String>,
    pub renamed_from: Option<Spanned<String>>,
    pub heading: Span,
    /// Prose paragraphs under the heading, joined by blank lines.
    pub description: String,
    pub table: Option<FieldTable>,
    pub permissions: Option<PermissionsBlock>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldTable {
    pub span: Span,
    pub has_description: bool,
    pub rows: Vec<FieldRow>,
    /// False when the header was not understood and the rows were skipped:
    /// the entity's fields are then unknown, and names used elsewhere are
    /// not checked against them.
    pub readable: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldRow {
    pub name: Spanned<String>,
    pub ty: Option<TypeSyntax>,
    pub rules: Vec<RuleSyntax>,
    /// The raw rules cell, for the formatter.
    pub rules_text: Spanned<String>,
    pub type_text: Spanned<String>,
    pub description: Option<Spanned<String>>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypeSyntax {
    /// `text`, `int`, ..., or an entity name.
    Named(Spanned<String>),
    /// `enum(a, b, c)`.
    Enum { members: Vec<Spanned<String>>, span: Span },
}

impl TypeSyntax {
    pub fn span(&self) -> Span {
        match self {
            TypeSyntax::Named(n) => n.span,
            TypeSyntax::Enum { span, .. } => *span,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleSyntax {
    pub kind: RuleKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    Required,
    Unique,
    ReadOnly,
    Default(Literal),
    /// `N..M`; either side may be absent (`N..`, `..M`).
    Range(Option<Literal>, Option<Literal>),
    Min(Literal),
    Max(Literal),
    Pattern(Spanned<String>),
    OnDelete(Spanned<OnDeleteSyntax>),
    RenamedFrom(Spanned<String>),
}

impl RuleKind {
    /// The rule's keyword, for messages about repeated or misplaced rules.
    pub fn keyword(&self) -> &'static str {
        match self {
            RuleKind::Required => "required",
            RuleKind::Unique => "unique",
            RuleKind::ReadOnly => "read only",
            RuleKind::Default(_) => "default",
            RuleKind::Range(..) => "N..M",
            RuleKind::Min(_) => "min",
            RuleKind::Max(_) => "max",
            RuleKind::Pattern(_) => "pattern",
            RuleKind::OnDelete(_) => "on delete",
            RuleKind::RenamedFrom(_) => "renamed from",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDeleteSyntax {
    Cascade,
    Restrict,
    SetNull,
}

/// A literal as written in rules and conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct Literal {
    pub kind: LiteralKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LiteralKind {
    /// A number as written: `-3`, `10`, `2.50`.
    Number(String),
    /// A quoted string, unescaped.
    String(String),
    /// A `YYYY-MM-DD` date as written.
    Date(String),
    /// A bare word: `true`, `me`, `now`, an enum member, ...
    Word(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PermissionsBlock {
    pub label: Span,
    pub lines: Vec<PermissionLine>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PermissionLine {
    pub targets: Vec<ActionTarget>,
    pub condition: Option<Condition>,
    /// The raw condition text, for the formatter and plain-words output.
    pub condition_text: Spanned<String>,
    pub span: Span,
}

/// `read`, `update role`, ...
#[derive(Debug, Clone, PartialEq)]
pub struct ActionTarget {
    pub action: Spanned<String>,
    pub field: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Anyone(Span),
    SignedIn(Span),
    /// A bare word: a role name.
    Role(Spanned<String>),
    Compare {
        path: Vec<Spanned<String>>,
        op: Spanned<CompareOp>,
        value: Literal,
    },
    Not(Box<Condition>, Span),
    And(Vec<Condition>),
    Or(Vec<Condition>),
}

impl Condition {
    pub fn span(&self) -> Span {
        match self {
            Condition::Anyone(s) | Condition::SignedIn(s) => *s,
            Condition::Role(r) => r.span,
            Condition::Compare { path, value, .. } => path[0].span.to(value.span),
            Condition::Not(inner, s) => s.to(inner.span()),
            Condition::And(items) | Condition::Or(items) => items[0].span().to(items[items.len() - 1].span()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
}
