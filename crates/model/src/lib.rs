//! The application model: what a spec means, with every name resolved.
//!
//! `compile(source)` runs the whole front end (parse, then resolve) and
//! returns the `AppModel` or the diagnostics that stop it. Everything later
//! (schema, API, UI, permissions in SQL) is generated from `AppModel`, so it
//! carries no spans and no syntax: two specs that mean the same thing give
//! equal models.

mod names;
mod print;
mod resolve;
mod settings;
#[doc(hidden)]
pub mod testing;
mod values;

pub use names::{plural_of, snake_case};
pub use print::to_spec;
pub use resolve::{looks_like_email, pattern_regex};
pub use settings::{EmailVerification, LoginAttempts, Settings, Signup, SETTING_KEYS};
pub use values::{is_valid_date, is_valid_datetime, is_valid_decimal};

use charter_spec::Diagnostic;
use serde::Serialize;

/// The result of compiling a spec: the model when there were no errors, and
/// every diagnostic (warnings included) either way.
#[derive(Debug)]
pub struct Compiled {
    pub model: Option<AppModel>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Parses and resolves a spec.
pub fn compile(source: &str) -> Compiled {
    let (doc, mut diagnostics) = charter_spec::parse(source);
    let (model, more) = resolve::resolve(&doc);
    diagnostics.extend(more);
    charter_spec::diagnostic::sort_diagnostics(&mut diagnostics);
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    Compiled { model: if has_errors { None } else { Some(model) }, diagnostics }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppModel {
    pub name: String,
    /// Prose under the title, for docs and OpenAPI.
    pub description: String,
    pub settings: Settings,
    pub roles: Vec<Role>,
    pub default_role: RoleId,
    /// `User` is always first (`EntityId(0)`), then the spec's entities in order.
    pub entities: Vec<Entity>,
}

impl AppModel {
    pub fn entity(&self, id: EntityId) -> &Entity {
        &self.entities[id.0]
    }

    pub fn entity_by_name(&self, name: &str) -> Option<&Entity> {
        self.entities.iter().find(|e| e.name == name)
    }

    pub fn role(&self, id: RoleId) -> &Role {
        &self.roles[id.0]
    }

    pub fn role_by_name(&self, name: &str) -> Option<RoleId> {
        self.roles.iter().position(|r| r.name == name).map(RoleId)
    }

    pub fn user(&self) -> &Entity {
        &self.entities[0]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EntityId(pub usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RoleId(pub usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FieldId(pub usize);

pub const USER: EntityId = EntityId(0);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Role {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entity {
    pub id: EntityId,
    /// PascalCase, as declared: `LineItem`.
    pub name: String,
    /// snake_case plural: the API path segment and the table name (`line_items`).
    pub plural: String,
    pub description: String,
    /// The built-in `User` (possibly extended by the spec).
    pub builtin: bool,
    /// Whether the spec declared this entity (always true except for a
    /// `User` the spec does not mention).
    pub declared: bool,
    pub renamed_from: Option<String>,
    /// Built-in fields first (`id`, ..., `version`), then declared fields in order.
    pub fields: Vec<Field>,
    pub permissions: Permissions,
}

impl Entity {
    pub fn field(&self, id: FieldId) -> &Field {
        &self.fields[id.0]
    }

    pub fn field_by_name(&self, name: &str) -> Option<(FieldId, &Field)> {
        self.fields.iter().enumerate().find(|(_, f)| f.name == name).map(|(i, f)| (FieldId(i), f))
    }

    /// Fields the spec declared (not built in).
    pub fn declared_fields(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.builtin.is_none())
    }

    /// The field used to show a row to people: the first declared text field,
    /// else `id`. (`User` shows `name`.)
    pub fn display_field(&self) -> &Field {
        if self.builtin {
            return self.field_by_name("name").map(|(_, f)| f).expect("User has name");
        }
        self.declared_fields().find(|f| f.ty == FieldType::Text).unwrap_or(&self.fields[0])
    }
}

/// Which built-in field this is; `None` for declared fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    Id,
    CreatedAt,
    UpdatedAt,
    Version,
    Email,
    Name,
    Role,
    Verified,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    pub builtin: Option<Builtin>,
    pub required: bool,
    pub unique: bool,
    pub read_only: bool,
    pub default: Option<DefaultValue>,
    /// Inclusive lower and upper bound: length for text types, value for
    /// numbers and dates.
    pub min: Option<Bound>,
    pub max: Option<Bound>,
    /// The regex as written (matched against the whole text).
    pub pattern: Option<String>,
    /// For references: what happens to this row when the target is deleted.
    pub on_delete: Option<OnDelete>,
    pub renamed_from: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "of", rename_all = "snake_case")]
pub enum FieldType {
    /// The opaque row id.
    Id,
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
    /// `User.role`: one of the app's roles.
    Role,
    Ref(EntityId),
}

impl FieldType {
    /// Text-like types: bounds count characters, `pattern` applies.
    pub fn is_textual(&self) -> bool {
        matches!(self, FieldType::Text | FieldType::Email | FieldType::Url)
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, FieldType::Int | FieldType::Decimal)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Bound {
    /// A length in characters (text types).
    Length(u64),
    Int(i64),
    /// A decimal as written, validated.
    Decimal(String),
    /// `YYYY-MM-DD`, validated.
    Date(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum DefaultValue {
    /// The signed-in user (`User` references).
    Me,
    /// The current instant (`datetime`).
    Now,
    /// The current date (`date`).
    Today,
    Bool(bool),
    Int(i64),
    Decimal(String),
    Text(String),
    Date(String),
    DateTime(String),
    Enum(String),
    Json(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnDelete {
    Cascade,
    Restrict,
    SetNull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Read,
    Create,
    Update,
    Delete,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Read, Action::Create, Action::Update, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// Who may do what to an entity. `None` means nobody (deny by default).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Permissions {
    pub read: Option<Expr>,
    pub create: Option<Expr>,
    pub update: Option<Expr>,
    pub delete: Option<Expr>,
    /// Field-scoped rules: `update role: admin`, `read email: admin`.
    pub fields: Vec<FieldRule>,
    /// Whether the spec wrote a `Permissions:` list for this entity.
    pub declared: bool,
}

impl Permissions {
    pub fn get(&self, action: Action) -> Option<&Expr> {
        match action {
            Action::Read => self.read.as_ref(),
            Action::Create => self.create.as_ref(),
            Action::Update => self.update.as_ref(),
            Action::Delete => self.delete.as_ref(),
        }
    }

    pub fn slot(&mut self, action: Action) -> &mut Option<Expr> {
        match action {
            Action::Read => &mut self.read,
            Action::Create => &mut self.create,
            Action::Update => &mut self.update,
            Action::Delete => &mut self.delete,
        }
    }

    pub fn field_rule(&self, action: Action, field: FieldId) -> Option<&Expr> {
        self.fields.iter().find(|r| r.action == action && r.field == field).map(|r| &r.condition)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldRule {
    pub action: Action,
    pub field: FieldId,
    pub condition: Expr,
}

/// A permission condition, typed and resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Expr {
    /// Everyone, signed in or not.
    Anyone,
    SignedIn,
    /// The caller is signed in and has this role.
    Role {
        role: RoleId,
    },
    /// The row's value at `path` compared with `value`.
    Compare {
        path: Path,
        op: CompareOp,
        value: Value,
    },
    Not {
        expr: Box<Expr>,
    },
    And {
        items: Vec<Expr>,
    },
    Or {
        items: Vec<Expr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareOp {
    Eq,
    Ne,
}

/// A path from the row through references: `project.owner` is
/// `[Task.project, Project.owner]`. Every step but the last is a reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Path {
    pub steps: Vec<PathStep>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PathStep {
    /// The entity this step's field belongs to.
    pub entity: EntityId,
    pub field: FieldId,
    pub name: String,
}

impl Path {
    pub fn last(&self) -> &PathStep {
        self.steps.last().expect("paths have at least one step")
    }

    pub fn dotted(&self) -> String {
        self.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(".")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Value {
    /// The caller's user id (never matches when not signed in).
    Me,
    Bool(bool),
    Int(i64),
    Decimal(String),
    Text(String),
    Date(String),
    Enum(String),
    Role(RoleId),
}
