//! `SpecDoc` -> `AppModel`: resolves names, types, rules and permission
//! conditions, reporting every problem it finds.

use crate::names::*;
use crate::settings::resolve_settings;
use crate::values::*;
use crate::*;
use charter_spec::diagnostic::did_you_mean;
use charter_spec::syntax::{self as syn, EntityDecl, FieldRow, LiteralKind, RuleKind, SpecDoc};
use charter_spec::{Code, Diagnostic, Span, Spanned};

pub const TYPE_NAMES: &[&str] = &["text", "int", "decimal", "bool", "date", "datetime", "email", "url", "json"];
const RECORD_BUILTINS: &[&str] = &["id", "created_at", "updated_at", "version"];
const USER_BUILTINS: &[&str] = &["email", "name", "role", "verified"];
/// Words with a meaning in conditions; never role names.
const RESERVED_WORDS: &[&str] = &["anyone", "signed", "in", "me", "and", "or", "not", "true", "false", "null", "everyone"];

pub(crate) fn resolve(doc: &SpecDoc) -> (AppModel, Vec<Diagnostic>) {
    let mut r = Resolver::default();
    let settings = resolve_settings(doc.settings.as_ref().map_or(&[][..], |s| &s.items), &mut r.diags);
    let (roles, default_role) = r.roles(doc);
    let mut model = AppModel {
        name: doc.title.as_ref().map(|t| t.value.clone()).unwrap_or_default(),
        description: doc.description.clone(),
        settings,
        roles,
        default_role,
        entities: vec![builtin_user()],
    };
    // Pass 1: entity names, so types and paths can refer to any entity.
    let mut decls: Vec<(EntityId, &EntityDecl)> = Vec::new();
    for decl in &doc.entities {
        if let Some(id) = r.declare_entity(&mut model, decl) {
            decls.push((id, decl));
        }
    }
    // Pass 2: fields.
    for (id, decl) in &decls {
        r.fields(&mut model, *id, decl);
    }
    // Pass 3: permissions (paths need every entity's fields).
    for (id, decl) in &decls {
        r.permissions(&mut model, *id, decl);
    }
    let user = &mut model.entities[0];
    let me_rule = Expr::Compare {
        path: Path { steps: vec![PathStep { entity: USER, field: FieldId(0), name: "id".into() }] },
        op: CompareOp::Eq,
        value: Value::Me,
    };
    for action in [Action::Read, Action::Update] {
        let slot = user.permissions.slot(action);
        if slot.is_none() {
            *slot = Some(me_rule.clone());
        }
    }
    // An entity whose heading could not be read was already reported; it is
    // not also "no entity".
    let no_entity_headings = doc.entities.iter().all(|e| e.name.value == "User");
    if no_entity_headings && doc.title.is_some() {
        let span = doc.entities_heading.or(doc.title.as_ref().map(|t| t.span)).unwrap_or_default();
        r.diags.push(
            Diagnostic::new(Code::NoEntities, span, "the spec declares no entity")
                .label("the app will only have users")
                .help("add `## Entities` with a `### Name` heading and a field table"),
        );
    }
    (model, r.diags)
}

fn field(name: &str, ty: FieldType, builtin: Builtin) -> Field {
    Field {
        name: name.to_string(),
        ty,
        builtin: Some(builtin),
        required: false,
        unique: false,
        read_only: false,
        default: None,
        min: None,
        max: None,
        pattern: None,
        on_delete: None,
        renamed_from: None,
        description: String::new(),
    }
}

fn record_builtins() -> Vec<Field> {
    vec![
        Field { required: true, unique: true, read_only: true, ..field("id", FieldType::Id, Builtin::Id) },
        Field { required: true, read_only: true, ..field("created_at", FieldType::DateTime, Builtin::CreatedAt) },
        Field { required: true, read_only: true, ..field("updated_at", FieldType::DateTime, Builtin::UpdatedAt) },
        Field { required: true, read_only: true, ..field("version", FieldType::Int, Builtin::Version) },
    ]
}

fn builtin_user() -> Entity {
    let mut fields = record_builtins();
    fields.insert(
        1,
        Field { required: true, unique: true, max: Some(Bound::Length(254)), ..field("email", FieldType::Email, Builtin::Email) },
    );
    fields.insert(2, Field { max: Some(Bound::Length(200)), ..field("name", FieldType::Text, Builtin::Name) });
    fields.insert(3, Field { required: true, ..field("role", FieldType::Role, Builtin::Role) });
    fields.insert(
        4,
        Field { required: true, default: Some(DefaultValue::Bool(false)), ..field("verified", FieldType::Bool, Builtin::Verified) },
    );
    Entity {
        id: USER,
        name: "User".into(),
        plural: "users".into(),
        description: String::new(),
        builtin: true,
        declared: false,
        renamed_from: None,
        fields,
        permissions: Permissions::default(),
    }
}

#[derive(Default)]
struct Resolver {
    diags: Vec<Diagnostic>,
    /// Names already reported as broken; later uses of them are not
    /// reported again, so one typo gives one error.
    broken_fields: std::collections::HashSet<(EntityId, String)>,
    broken_roles: std::collections::HashSet<String>,
    broken_entities: std::collections::HashSet<String>,
    /// Entities whose field table could not be read: any field name may be
    /// one of theirs, so paths through them are not checked.
    unknown_fields: std::collections::HashSet<EntityId>,
    /// Whether the spec has a `## Roles` section; without one the only role
    /// is `member`, which is worth saying when a role is not found.
    roles_declared: bool,
}

impl Resolver {
    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn roles(&mut self, doc: &SpecDoc) -> (Vec<Role>, RoleId) {
        self.roles_declared = doc.roles.is_some();
        let Some(section) = &doc.roles else {
            return (vec![Role { name: "member".into(), description: "everyone who signs up".into() }], RoleId(0));
        };
        let mut roles: Vec<Role> = Vec::new();
        let mut default: Option<(RoleId, Span)> = None;
        for line in &section.items {
            let name = &line.name.value;
            if !is_snake_case(name) {
                let suggestion = to_snake_suggestion(name);
                self.err(
                    Diagnostic::new(Code::RoleName, line.name.span, format!("`{name}` is not a role name"))
                        .label("role names are lowercase snake_case")
                        .maybe_help((!suggestion.is_empty()).then(|| format!("did you mean `{suggestion}`?"))),
                );
                self.broken_roles.insert(name.clone());
                self.broken_roles.insert(suggestion);
                continue;
            }
            if RESERVED_WORDS.contains(&name.as_str()) {
                let help = match name.as_str() {
                    "and" | "or" | "not" => "`and`, `or` and `not` join conditions; pick another name",
                    "true" | "false" | "null" => "`true`, `false` and `null` are values in conditions; pick another name",
                    "everyone" => "`everyone` would read as `anyone`, which is built in; pick another name",
                    _ => "`anyone`, `signed in` and `me` are built into conditions; pick another name",
                };
                self.err(
                    Diagnostic::new(Code::ReservedRole, line.name.span, format!("`{name}` is a built-in word, not a role name"))
                        .label("reserved")
                        .help(help),
                );
                self.broken_roles.insert(name.clone());
                continue;
            }
            if roles.iter().any(|r| r.name == *name) {
                self.err(
                    Diagnostic::new(Code::DuplicateRole, line.name.span, format!("the role `{name}` is declared twice"))
                        .label("declared again here")
                        .help("keep one line per role"),
                );
                continue;
            }
            roles.push(Role { name: name.clone(), description: line.description.clone() });
            if let Some(mark) = line.default_mark {
                match default {
                    Some((first, _)) => {
                        let first = roles[first.0].name.clone();
                        self.err(
                            Diagnostic::new(Code::SecondDefaultRole, mark, "a second default role")
                                .label("only one role can be the default")
                                .help(format!("`{first}` is already the default; remove one of the marks")),
                        );
                    }
                    None => default = Some((RoleId(roles.len() - 1), mark)),
                }
            }
        }
        if section.items.is_empty() {
            self.err(
                Diagnostic::new(Code::MalformedRole, section.heading, "`## Roles` lists no role")
                    .label("expected a bullet list of roles below")
                    .help("write `- member (default): everyone who signs up`, or remove the section to get a single `member` role"),
            );
        }
        if roles.is_empty() {
            roles.push(Role { name: "member".into(), description: String::new() });
        }
        (roles, default.map_or(RoleId(0), |(id, _)| id))
    }

    fn declare_entity(&mut self, model: &mut AppModel, decl: &EntityDecl) -> Option<EntityId> {
        let id = self.try_declare_entity(model, decl);
        if id.is_none() {
            self.broken_entities.insert(decl.name.value.clone());
        }
        id
    }

    fn try_declare_entity(&mut self, model: &mut AppModel, decl: &EntityDecl) -> Option<EntityId> {
        let name = &decl.name.value;
        if name == "User" {
            let user = &mut model.entities[0];
            if user.declared {
                self.err(
                    Diagnostic::new(Code::DuplicateEntity, decl.name.span, "`User` is declared twice")
                        .label("declared again here")
                        .help("merge the two `### User` sections"),
                );
                return None;
            }
            if let Some(old) = &decl.renamed_from {
                self.err(
                    Diagnostic::new(Code::BadRename, old.span, "the built-in `User` cannot be renamed")
                        .label("not allowed on `User`")
                        .help("remove the rename hint"),
                );
            }
            user.declared = true;
            user.description = decl.description.clone();
            return Some(USER);
        }
        if !is_pascal_case(name) {
            // Malformed headings were already reported by the parser.
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                let suggestion = to_pascal_suggestion(name);
                self.err(
                    Diagnostic::new(Code::EntityName, decl.name.span, format!("`{name}` is not an entity name"))
                        .label("entity names are PascalCase")
                        .help(format!("did you mean `{suggestion}`?")),
                );
            }
            return None;
        }
        if model.entities.iter().any(|e| e.name == *name) {
            self.err(
                Diagnostic::new(Code::DuplicateEntity, decl.name.span, format!("the entity `{name}` is declared twice"))
                    .label("declared again here")
                    .help("merge the two sections, or rename one"),
            );
            return None;
        }
        let plural = plural_of(name);
        if let Some(other) = model.entities.iter().find(|e| e.plural == plural) {
            let other = other.name.clone();
            self.err(
                Diagnostic::new(
                    Code::DuplicateEntity,
                    decl.name.span,
                    format!("`{name}` and `{other}` would share the API path `/api/{plural}`"),
                )
                .label("path already taken")
                .help("rename one of the entities"),
            );
            return None;
        }
        if let Some(old) = &decl.renamed_from {
            if old.value == *name || doc_declares(model, &old.value) {
                self.err(
                    Diagnostic::new(Code::BadRename, old.span, format!("`{}` still exists, so nothing was renamed from it", old.value))
                        .label("names an entity that is still declared")
                        .help("a rename hint names the entity's old name, which no entity has any more"),
                );
            } else if !is_pascal_case(&old.value) {
                self.err(
                    Diagnostic::new(Code::BadRename, old.span, format!("`{}` is not an entity name", old.value))
                        .label("expected the old PascalCase name"),
                );
            }
        }
        let id = EntityId(model.entities.len());
        model.entities.push(Entity {
            id,
            name: name.clone(),
            plural,
            description: decl.description.clone(),
            builtin: false,
            declared: true,
            renamed_from: decl.renamed_from.as_ref().map(|o| o.value.clone()),
            fields: record_builtins(),
            permissions: Permissions::default(),
        });
        Some(id)
    }

    fn fields(&mut self, model: &mut AppModel, id: EntityId, decl: &EntityDecl) {
        let Some(table) = &decl.table else {
            if id != USER {
                self.unknown_fields.insert(id);
                self.err(
                    Diagnostic::new(Code::NoFieldTable, decl.name.span, format!("the entity `{}` has no field table", decl.name.value))
                        .label("expected a `| field | type | rules |` table below")
                        .help("add a table with one row per field"),
                );
            }
            return;
        };
        if !table.readable {
            self.unknown_fields.insert(id);
        }
        let entity_names: Vec<String> = model.entities.iter().map(|e| e.name.clone()).collect();
        let mut new_fields: Vec<Field> = Vec::new();
        for row in &table.rows {
            match self.field(model, id, row, &entity_names, &new_fields) {
                Some(f) => new_fields.push(f),
                None => {
                    self.broken_fields.insert((id, row.name.value.clone()));
                }
            }
        }
        // Rename hints must name a field that no longer exists.
        for f in &new_fields {
            if let Some(old) = &f.renamed_from {
                let row = table.rows.iter().find(|r| r.name.value == f.name).expect("row of field");
                let span = row.rules.iter().find_map(|r| match &r.kind {
                    RuleKind::RenamedFrom(o) => Some(o.span),
                    _ => None,
                });
                let exists = new_fields.iter().any(|o| o.name == *old) || model.entity(id).field_by_name(old).is_some();
                if exists || *old == f.name {
                    self.err(
                        Diagnostic::new(
                            Code::BadRename,
                            span.unwrap_or(row.span),
                            format!("`{old}` still exists, so nothing was renamed from it"),
                        )
                        .label("names a field that is still declared")
                        .help("a rename hint names the field's old name, which no field has any more"),
                    );
                }
            }
        }
        model.entities[id.0].fields.extend(new_fields);
    }

    fn field(&mut self, model: &AppModel, id: EntityId, row: &FieldRow, entity_names: &[String], so_far: &[Field]) -> Option<Field> {
        let name = &row.name.value;
        let entity = model.entity(id);
        if !is_snake_case(name) {
            let suggestion = to_snake_suggestion(name);
            self.err(
                Diagnostic::new(Code::FieldName, row.name.span, format!("`{name}` is not a field name"))
                    .label("field names are snake_case")
                    .maybe_help((!suggestion.is_empty() && suggestion != *name).then(|| format!("did you mean `{suggestion}`?"))),
            );
            // Permissions may already use the corrected spelling.
            self.broken_fields.insert((id, suggestion));
            return None;
        }
        let builtin = RECORD_BUILTINS.contains(&name.as_str()) || (id == USER && USER_BUILTINS.contains(&name.as_str()));
        if builtin {
            let help = if id == USER {
                "every user has `id`, `email`, `name`, `role`, `verified`, `created_at`, `updated_at` and `version`; remove this row"
            } else {
                "every record has `id`, `created_at`, `updated_at` and `version`; remove this row"
            };
            self.err(
                Diagnostic::new(Code::BuiltinField, row.name.span, format!("`{name}` is a built-in field"))
                    .label("declared by charter already")
                    .help(help),
            );
            return None;
        }
        if id == USER && matches!(name.as_str(), "password" | "password_hash" | "token") {
            self.err(
                Diagnostic::new(Code::BuiltinField, row.name.span, format!("`{name}` cannot be a field"))
                    .label("passwords and tokens never appear in any entity")
                    .help("charter stores password hashes and tokens itself; remove this row"),
            );
            return None;
        }
        if so_far.iter().any(|f| f.name == *name) || entity.field_by_name(name).is_some() {
            self.err(
                Diagnostic::new(Code::DuplicateField, row.name.span, format!("the field `{name}` is declared twice"))
                    .label("declared again here")
                    .help("remove one row, or rename it"),
            );
            return None;
        }
        let ty = self.field_type(row.ty.as_ref()?, entity_names)?;
        let mut f = Field {
            name: name.clone(),
            ty,
            builtin: None,
            required: false,
            unique: false,
            read_only: false,
            default: None,
            min: None,
            max: None,
            pattern: None,
            on_delete: None,
            renamed_from: None,
            description: row.description.as_ref().map(|d| d.value.replace("\\|", "|")).unwrap_or_default(),
        };
        self.rules(&mut f, row, model);
        Some(f)
    }

    fn field_type(&mut self, ty: &syn::TypeSyntax, entity_names: &[String]) -> Option<FieldType> {
        match ty {
            syn::TypeSyntax::Named(n) => {
                let t = match n.value.as_str() {
                    "text" => FieldType::Text,
                    "int" => FieldType::Int,
                    "decimal" => FieldType::Decimal,
                    "bool" => FieldType::Bool,
                    "date" => FieldType::Date,
                    "datetime" => FieldType::DateTime,
                    "email" => FieldType::Email,
                    "url" => FieldType::Url,
                    "json" => FieldType::Json,
                    "enum" => {
                        self.err(
                            Diagnostic::new(Code::BadEnum, n.span, "`enum` needs its members")
                                .label("no members")
                                .help("write `enum(low, normal, high)`"),
                        );
                        return None;
                    }
                    other => match entity_names.iter().position(|e| e == other) {
                        Some(i) => FieldType::Ref(EntityId(i)),
                        None if self.broken_entities.contains(other) => return None,
                        None => {
                            let candidates = TYPE_NAMES.iter().copied().chain(entity_names.iter().map(String::as_str));
                            let help = did_you_mean(other, candidates).or_else(|| type_alias_help(other));
                            self.err(
                                Diagnostic::new(Code::UnknownType, n.span, format!("unknown type `{other}`"))
                                    .label("no entity or type has this name")
                                    .maybe_help(
                                        help.or_else(|| Some(format!("types are {}, enum(...), or an entity name", TYPE_NAMES.join(", ")))),
                                    ),
                            );
                            return None;
                        }
                    },
                };
                Some(t)
            }
            syn::TypeSyntax::Enum { members, span } => {
                let mut out: Vec<String> = Vec::new();
                let mut ok = true;
                for m in members {
                    if !is_snake_case(&m.value) {
                        let suggestion = to_snake_suggestion(&m.value);
                        self.err(
                            Diagnostic::new(Code::BadEnum, m.span, format!("`{}` is not an enum member name", m.value))
                                .label("members are snake_case")
                                .maybe_help((!suggestion.is_empty()).then(|| format!("did you mean `{suggestion}`?"))),
                        );
                        ok = false;
                    } else if out.contains(&m.value) {
                        self.err(
                            Diagnostic::new(Code::BadEnum, m.span, format!("`{}` is listed twice", m.value))
                                .label("repeated member")
                                .help("list each member once"),
                        );
                        ok = false;
                    } else {
                        out.push(m.value.clone());
                    }
                }
                if members.is_empty() {
                    self.err(
                        Diagnostic::new(Code::BadEnum, *span, "an enum needs at least one member")
                            .label("no members")
                            .help("write `enum(low, normal, high)`"),
                    );
                    ok = false;
                }
                ok.then_some(FieldType::Enum(out))
            }
        }
    }

    fn rules(&mut self, f: &mut Field, row: &FieldRow, model: &AppModel) {
        let mut seen: Vec<&'static str> = Vec::new();
        // Which ends of the range earlier rules have bounded.
        let (mut has_lo, mut has_hi) = (false, false);
        let mut default_lit = None;
        let mut bounds: Vec<(&syn::RuleSyntax, Option<&syn::Literal>, Option<&syn::Literal>)> = Vec::new();
        let ty_name = type_name(&f.ty, model);
        for rule in &row.rules {
            // Each end of the range may be bounded once, by `N..M`, `min`
            // or `max`; every other rule may appear once.
            let ends = match &rule.kind {
                RuleKind::Range(lo, hi) => Some((lo.is_some(), hi.is_some())),
                RuleKind::Min(_) => Some((true, false)),
                RuleKind::Max(_) => Some((false, true)),
                _ => None,
            };
            if let Some((lo, hi)) = ends {
                let twice = match (lo && has_lo, hi && has_hi) {
                    (true, true) => Some("both bounds are"),
                    (true, false) => Some("the lower bound is"),
                    (false, true) => Some("the upper bound is"),
                    (false, false) => None,
                };
                if let Some(what) = twice {
                    self.err(
                        Diagnostic::new(Code::ConflictingRules, rule.span, format!("{what} given twice for `{}`", f.name))
                            .label("bounded again here")
                            .help("give each bound once: `1..80`, or `min 1, max 80`"),
                    );
                    continue;
                }
                has_lo |= lo;
                has_hi |= hi;
            } else {
                let key = rule.kind.keyword();
                if seen.contains(&key) {
                    self.err(
                        Diagnostic::new(Code::ConflictingRules, rule.span, format!("`{key}` is given twice for `{}`", f.name))
                            .label("repeated")
                            .help(if key == "default" { "a field has one default; keep the one you mean" } else { "give each rule once" }),
                    );
                    continue;
                }
                seen.push(key);
            }
            let not_for = |this: &mut Self, what: &str| {
                this.err(
                    Diagnostic::new(
                        Code::RuleNotForType,
                        rule.span,
                        format!("`{what}` does not apply to {} {ty_name} field", article(&ty_name)),
                    )
                    .label(format!("`{}` is {ty_name}", f.name))
                    .help(rule_help(what)),
                );
            };
            match &rule.kind {
                RuleKind::Required => f.required = true,
                RuleKind::Unique => {
                    if matches!(f.ty, FieldType::Json) {
                        not_for(self, "unique");
                    } else {
                        f.unique = true;
                    }
                }
                RuleKind::ReadOnly => f.read_only = true,
                RuleKind::Default(lit) => default_lit = Some((rule, lit)),
                RuleKind::Range(lo, hi) => bounds.push((rule, lo.as_ref(), hi.as_ref())),
                RuleKind::Min(lo) => bounds.push((rule, Some(lo), None)),
                RuleKind::Max(hi) => bounds.push((rule, None, Some(hi))),
                RuleKind::Pattern(p) => {
                    if !f.ty.is_textual() {
                        not_for(self, "pattern");
                        continue;
                    }
                    match compile_pattern(&p.value) {
                        Ok(()) => f.pattern = Some(p.value.clone()),
                        Err(msg) => self.err(
                            Diagnostic::new(Code::BadPattern, p.span, "this pattern is not a valid regular expression")
                                .label("invalid regex")
                                .help(msg),
                        ),
                    }
                }
                RuleKind::OnDelete(a) => {
                    if !matches!(f.ty, FieldType::Ref(_)) {
                        not_for(self, "on delete");
                        continue;
                    }
                    f.on_delete = Some(match a.value {
                        syn::OnDeleteSyntax::Cascade => OnDelete::Cascade,
                        syn::OnDeleteSyntax::Restrict => OnDelete::Restrict,
                        syn::OnDeleteSyntax::SetNull => OnDelete::SetNull,
                    });
                }
                RuleKind::RenamedFrom(old) => {
                    if !is_snake_case(&old.value) {
                        self.err(
                            Diagnostic::new(Code::BadRename, old.span, format!("`{}` is not a field name", old.value))
                                .label("expected the old snake_case name"),
                        );
                    } else {
                        f.renamed_from = Some(old.value.clone());
                    }
                }
            }
        }
        if let FieldType::Ref(_) = f.ty {
            if f.on_delete.is_none() {
                f.on_delete = Some(OnDelete::Restrict);
            }
            if f.on_delete == Some(OnDelete::SetNull) && f.required {
                let span = row.rules.iter().find(|r| matches!(r.kind, RuleKind::OnDelete(_))).map_or(row.span, |r| r.span);
                self.err(
                    Diagnostic::new(Code::ConflictingRules, span, "`on delete set null` on a required field")
                        .label("a required field can never be set to null")
                        .help("use `on delete cascade` or `restrict`, or drop `required`"),
                );
            }
        }
        for (rule, lo, hi) in bounds {
            self.bounds(f, rule, lo, hi, &ty_name);
        }
        if let Some((rule, lit)) = default_lit {
            match default_value(f, lit, model) {
                Ok(v) => {
                    if let Err(msg) = check_default_fits(f, &v) {
                        self.err(
                            Diagnostic::new(Code::BadDefault, lit.span, format!("the default breaks this field's own rules: {msg}"))
                                .label("does not satisfy the field's rules")
                                .help("pick a default the field accepts"),
                        );
                    } else {
                        f.default = Some(v);
                    }
                }
                Err((msg, help)) => self.err(
                    Diagnostic::new(Code::BadDefault, rule.span.to(lit.span), msg).label("not a valid default for this field").help(help),
                ),
            }
        }
    }

    fn bounds(&mut self, f: &mut Field, rule: &syn::RuleSyntax, lo: Option<&syn::Literal>, hi: Option<&syn::Literal>, ty_name: &str) {
        let kind = match &f.ty {
            t if t.is_textual() => "length",
            FieldType::Int | FieldType::Decimal | FieldType::Date => "value",
            _ => {
                self.err(
                    Diagnostic::new(
                        Code::RuleNotForType,
                        rule.span,
                        format!("bounds do not apply to {} {ty_name} field", article(ty_name)),
                    )
                    .label(format!("`{}` is {ty_name}", f.name))
                    .help("bounds limit the length of text, email and url, and the value of int, decimal and date"),
                );
                return;
            }
        };
        let mut parsed = [None, None];
        for (i, lit) in [lo, hi].into_iter().enumerate() {
            let Some(lit) = lit else { continue };
            match bound_value(&f.ty, lit) {
                Ok(b) => parsed[i] = Some(b),
                Err(expected) => {
                    self.err(
                        Diagnostic::new(Code::BadBounds, lit.span, format!("this {kind} bound is not {expected}"))
                            .label(format!("expected {expected}"))
                            .help(format!("`{}` is {} {ty_name} field", f.name, article(ty_name))),
                    );
                    return;
                }
            }
        }
        let [lo, hi] = parsed;
        if let (Some(l), Some(h)) = (&lo, &hi) {
            if bound_gt(l, h) {
                self.err(
                    Diagnostic::new(Code::BadBounds, rule.span, "the lower bound is above the upper bound")
                        .label("no value fits")
                        .help("write the smaller bound first: `1..80`"),
                );
                return;
            }
        }
        if let Some(l) = lo {
            if let Some(existing) = &f.max {
                if bound_gt(&l, existing) {
                    self.err(
                        Diagnostic::new(Code::BadBounds, rule.span, "`min` is above `max`").label("no value fits").help("swap the bounds"),
                    );
                    return;
                }
            }
            f.min = Some(l);
        }
        if let Some(h) = hi {
            if let Some(existing) = &f.min {
                if bound_gt(existing, &h) {
                    self.err(
                        Diagnostic::new(Code::BadBounds, rule.span, "`max` is below `min`").label("no value fits").help("swap the bounds"),
                    );
                    return;
                }
            }
            f.max = Some(h);
        }
    }

    fn permissions(&mut self, model: &mut AppModel, id: EntityId, decl: &EntityDecl) {
        let Some(block) = &decl.permissions else {
            if id != USER && decl.table.is_some() {
                self.err(
                    Diagnostic::new(
                        Code::NoPermissions,
                        decl.name.span,
                        format!("`{}` has no permissions: every action on it is denied", decl.name.value),
                    )
                    .label("no `Permissions:` list")
                    .help("add `Permissions:` with a line per action, e.g. `- read: signed in`"),
                );
            }
            return;
        };
        let mut perms = Permissions { declared: true, ..Permissions::default() };
        let mut seen: Vec<(Action, Option<FieldId>)> = Vec::new();
        for line in &block.lines {
            let mut targets: Vec<(Action, Option<FieldId>, Span)> = Vec::new();
            for t in &line.targets {
                let Some(action) = parse_action(&t.action.value) else {
                    let help = match t.action.value.to_lowercase().as_str() {
                        "write" | "edit" | "modify" | "change" => Some("to change rows, the action is `update`".to_string()),
                        "view" | "list" | "see" | "get" => Some("to see rows, the action is `read`".to_string()),
                        "remove" | "destroy" => Some("the action is `delete`".to_string()),
                        "add" | "insert" | "new" => Some("the action is `create`".to_string()),
                        "all" => Some("list the actions: `read, create, update, delete`".to_string()),
                        w => did_you_mean(w, ["read", "create", "update", "delete"]),
                    };
                    self.err(
                        Diagnostic::new(Code::UnknownAction, t.action.span, format!("unknown action `{}`", t.action.value))
                            .label("not an action")
                            .maybe_help(help.or_else(|| Some("actions are `read`, `create`, `update`, `delete`".into()))),
                    );
                    continue;
                };
                let field = match &t.field {
                    None => None,
                    Some(fname) => {
                        let allowed =
                            id == USER && matches!((action, fname.value.as_str()), (Action::Update, "role") | (Action::Read, "email"));
                        if !allowed {
                            let label = if id == USER {
                                "only `update role` and `read email` are field-scoped"
                            } else {
                                "field-scoped permissions exist only for `User`"
                            };
                            self.err(
                                Diagnostic::new(
                                    Code::FieldPermission,
                                    fname.span.to(t.action.span),
                                    format!("`{} {}` is not a permission charter has", t.action.value, fname.value),
                                )
                                .label(label)
                                .help("the only field-scoped lines are `- update role: ...` and `- read email: ...` under `### User`"),
                            );
                            continue;
                        }
                        Some(model.entity(USER).field_by_name(&fname.value).expect("built-in field").0)
                    }
                };
                if seen.contains(&(action, field)) {
                    self.err(
                        Diagnostic::new(
                            Code::DuplicateAction,
                            t.action.span,
                            format!("`{}` already has a rule in this entity", target_name(action, field, model)),
                        )
                        .label("given a rule again here")
                        .help("combine the conditions into one line with `or`"),
                    );
                    continue;
                }
                seen.push((action, field));
                targets.push((action, field, t.action.span));
            }
            let Some(cond) = &line.condition else { continue };
            let Some(expr) = self.expr(model, id, cond) else { continue };
            for (action, field, _) in &targets {
                self.lint(*action, &expr, cond.span());
                match field {
                    None => *perms.slot(*action) = Some(expr.clone()),
                    Some(fid) => perms.fields.push(FieldRule { action: *action, field: *fid, condition: expr.clone() }),
                }
            }
        }
        model.entities[id.0].permissions = perms;
    }

    fn lint(&mut self, action: Action, expr: &Expr, span: Span) {
        if never_true(expr) {
            self.err(
                Diagnostic::new(Code::NeverTrue, span, "this condition can never hold")
                    .label(format!("`{}` is denied to everyone", action.as_str()))
                    .help("remove the line to deny the action, or fix the condition"),
            );
        } else if action != Action::Read && const_value(expr) == Some(true) {
            self.err(
                Diagnostic::new(
                    Code::AlwaysTrueWrite,
                    span,
                    format!("anyone, even without signing in, may {} these rows", action.as_str()),
                )
                .label("always true")
                .help("did you mean `signed in`, a role, or a row condition such as `owner = me`?"),
            );
        }
    }

    fn expr(&mut self, model: &AppModel, id: EntityId, cond: &syn::Condition) -> Option<Expr> {
        Some(match cond {
            syn::Condition::Anyone(_) => Expr::Anyone,
            syn::Condition::SignedIn(_) => Expr::SignedIn,
            syn::Condition::Role(name) => match model.role_by_name(&name.value) {
                Some(role) => Expr::Role { role },
                None if self.broken_roles.contains(&name.value) => return None,
                None => {
                    let help = match name.value.as_str() {
                        "me" => Some("`me` is compared with a field: `owner = me`".to_string()),
                        "everyone" | "all" | "public" | "everybody" => Some("did you mean `anyone`?".to_string()),
                        "authenticated" | "logged" | "users" | "user" => Some("did you mean `signed in`?".to_string()),
                        "true" | "false" => Some("conditions are roles, `anyone`, `signed in` or comparisons such as `done = true`".into()),
                        w => did_you_mean(w, model.roles.iter().map(|r| r.name.as_str()).chain(["anyone"])),
                    };
                    let roles: Vec<&str> = model.roles.iter().map(|r| r.name.as_str()).collect();
                    let list = if self.roles_declared {
                        format!("the roles are: {}", roles.join(", "))
                    } else {
                        "without a `## Roles` section the only role is `member`; declare other roles there".to_string()
                    };
                    self.err(
                        Diagnostic::new(Code::UnknownRole, name.span, format!("`{}` is not a role", name.value))
                            .label("unknown role")
                            .maybe_help(help.or(Some(list))),
                    );
                    return None;
                }
            },
            syn::Condition::Not(inner, _) => Expr::Not { expr: Box::new(self.expr(model, id, inner)?) },
            syn::Condition::And(items) | syn::Condition::Or(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for item in items {
                    match self.expr(model, id, item) {
                        Some(e) => out.push(e),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                if matches!(cond, syn::Condition::And(_)) {
                    Expr::And { items: out }
                } else {
                    Expr::Or { items: out }
                }
            }
            syn::Condition::Compare { path, op, value } => {
                let path = self.path(model, id, path)?;
                let value = self.value(model, &path, value)?;
                let op = match op.value {
                    syn::CompareOp::Eq => CompareOp::Eq,
                    syn::CompareOp::Ne => CompareOp::Ne,
                };
                Expr::Compare { path, op, value }
            }
        })
    }

    fn path(&mut self, model: &AppModel, start: EntityId, names: &[Spanned<String>]) -> Option<Path> {
        let mut steps = Vec::new();
        let mut entity = start;
        for (i, name) in names.iter().enumerate() {
            let e = model.entity(entity);
            let Some((fid, f)) = e.field_by_name(&name.value) else {
                if self.broken_fields.contains(&(entity, name.value.clone())) || self.unknown_fields.contains(&entity) {
                    return None;
                }
                // Fields reported as broken are still what the author meant.
                let mut broken: Vec<&str> = self.broken_fields.iter().filter(|(b, _)| *b == entity).map(|(_, n)| n.as_str()).collect();
                broken.sort_unstable();
                let help = did_you_mean(&name.value, e.fields.iter().map(|f| f.name.as_str()).chain(broken));
                self.err(
                    Diagnostic::new(Code::UnknownPathField, name.span, format!("`{}` has no field `{}`", e.name, name.value))
                        .label("unknown field")
                        .maybe_help(help.or_else(|| {
                            Some(format!(
                                "the fields of `{}` are: {}",
                                e.name,
                                e.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
                            ))
                        })),
                );
                return None;
            };
            steps.push(PathStep { entity, field: fid, name: name.value.clone() });
            if i + 1 < names.len() {
                match f.ty {
                    FieldType::Ref(target) => entity = target,
                    _ => {
                        self.err(
                            Diagnostic::new(
                                Code::PathThroughValue,
                                names[i + 1].span,
                                format!("`{}` is not a reference, so the path cannot go on", name.value),
                            )
                            .label({
                                let tn = type_name(&f.ty, model);
                                format!("`{}.{}` is {} {tn} field", e.name, name.value, article(&tn))
                            })
                            .help("only references to other entities can be followed with `.`"),
                        );
                        return None;
                    }
                }
            }
        }
        Some(Path { steps })
    }

    fn value(&mut self, model: &AppModel, path: &Path, lit: &syn::Literal) -> Option<Value> {
        let last = path.last();
        let f = model.entity(last.entity).field(last.field);
        let is_user_id = matches!(f.ty, FieldType::Ref(USER)) || (last.entity == USER && f.ty == FieldType::Id);
        let result: Result<Value, String> = match (&f.ty, &lit.kind) {
            (_, LiteralKind::Word(w)) if w == "me" => {
                if is_user_id {
                    Ok(Value::Me)
                } else {
                    Err(format!("`me` is a user, and `{}` is not a reference to `User`", path.dotted()))
                }
            }
            (FieldType::Ref(_) | FieldType::Id, LiteralKind::String(s)) => Ok(Value::Text(s.clone())),
            (FieldType::Bool, LiteralKind::Word(w)) if w == "true" || w == "false" => Ok(Value::Bool(w == "true")),
            (FieldType::Int, LiteralKind::Number(n)) => n.parse().map(Value::Int).map_err(|_| not_an_int(n)),
            (FieldType::Decimal, LiteralKind::Number(n)) if is_valid_decimal(n) => Ok(Value::Decimal(n.clone())),
            (t, LiteralKind::String(s)) if t.is_textual() => Ok(Value::Text(s.clone())),
            (FieldType::Date, LiteralKind::Date(d)) if is_valid_date(d) => Ok(Value::Date(d.clone())),
            (FieldType::DateTime, LiteralKind::String(s)) if is_valid_datetime(s) => Ok(Value::Text(s.clone())),
            (FieldType::Enum(members), LiteralKind::Word(w) | LiteralKind::String(w)) => {
                if members.contains(w) {
                    Ok(Value::Enum(w.clone()))
                } else {
                    Err(format!("`{w}` is not a member of `{}` ({})", path.dotted(), members.join(", ")))
                }
            }
            (FieldType::Role, LiteralKind::Word(w) | LiteralKind::String(w)) => match model.role_by_name(w) {
                Some(r) => Ok(Value::Role(r)),
                None if self.broken_roles.contains(w) => return None,
                None => Err(format!("`{w}` is not a role")),
            },
            (FieldType::Json, _) => Err(format!("`{}` is json, which conditions cannot compare", path.dotted())),
            (t, _) => {
                let tn = type_name(t, model);
                Err(format!(
                    "`{}` is {} {tn} field, and `{}` is not {} {tn} value",
                    path.dotted(),
                    article(&tn),
                    literal_text(lit),
                    article(&tn)
                ))
            }
        };
        match result {
            Ok(v) => Some(v),
            Err(msg) => {
                let dotted = path.dotted();
                let help = match (&f.ty, &lit.kind) {
                    (FieldType::Text | FieldType::Email | FieldType::Url, LiteralKind::Word(w)) if w != "me" => {
                        format!("text values are quoted: `{dotted} = \"{w}\"`")
                    }
                    (FieldType::Bool, _) => "compare with `true` or `false`".into(),
                    (FieldType::Int, _) => format!("compare with a whole number, like `{dotted} = 3`"),
                    (FieldType::Decimal, _) => format!("compare with a number, like `{dotted} = 9.99`"),
                    (FieldType::Date, _) => "write dates as `2025-01-31`".into(),
                    (FieldType::DateTime, _) => "write instants as \"2025-01-31T12:00:00Z\"".into(),
                    (FieldType::Enum(members), LiteralKind::Word(w) | LiteralKind::String(w)) => {
                        did_you_mean(w, members.iter().map(String::as_str))
                            .unwrap_or_else(|| format!("write one of the members, bare: `{dotted} = {}`", members[0]))
                    }
                    (FieldType::Enum(members), _) => format!("write one of the members, bare: `{dotted} = {}`", members[0]),
                    (FieldType::Role, _) => {
                        let roles = model.roles.iter().map(|r| r.name.as_str());
                        let typo = match &lit.kind {
                            LiteralKind::Word(w) | LiteralKind::String(w) => did_you_mean(w, roles.clone()),
                            _ => None,
                        };
                        typo.unwrap_or_else(|| format!("the roles are: {}", roles.collect::<Vec<_>>().join(", ")))
                    }
                    (FieldType::Json, _) => "compare a field of another type".into(),
                    (FieldType::Ref(_) | FieldType::Id, _) => {
                        "compare a reference to `User` with `me`, or a reference with an id in quotes".into()
                    }
                    _ => "`me` matches references to `User`; other values must be of the field's type".into(),
                };
                self.err(Diagnostic::new(Code::ValueType, lit.span, msg).label("cannot be compared").help(help));
                None
            }
        }
    }
}

/// A literal as it was written, for messages.
fn literal_text(lit: &syn::Literal) -> String {
    match &lit.kind {
        LiteralKind::String(s) => format!("\"{s}\""),
        LiteralKind::Number(s) | LiteralKind::Date(s) | LiteralKind::Word(s) => s.clone(),
    }
}

/// Why a number does not parse as an `int`.
fn not_an_int(n: &str) -> String {
    if n.contains('.') {
        format!("`{n}` is not a whole number")
    } else {
        format!("`{n}` does not fit in a 64-bit integer")
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn doc_declares(model: &AppModel, name: &str) -> bool {
    model.entities.iter().any(|e| e.name == name)
}

fn parse_action(word: &str) -> Option<Action> {
    Some(match word {
        "read" => Action::Read,
        "create" => Action::Create,
        "update" => Action::Update,
        "delete" => Action::Delete,
        _ => return None,
    })
}

fn target_name(action: Action, field: Option<FieldId>, model: &AppModel) -> String {
    match field {
        None => action.as_str().to_string(),
        Some(f) => format!("{} {}", action.as_str(), model.user().field(f).name),
    }
}

pub(crate) fn type_name(ty: &FieldType, model: &AppModel) -> String {
    match ty {
        FieldType::Id => "id".into(),
        FieldType::Text => "text".into(),
        FieldType::Int => "int".into(),
        FieldType::Decimal => "decimal".into(),
        FieldType::Bool => "bool".into(),
        FieldType::Date => "date".into(),
        FieldType::DateTime => "datetime".into(),
        FieldType::Email => "email".into(),
        FieldType::Url => "url".into(),
        FieldType::Json => "json".into(),
        FieldType::Enum(m) => format!("enum({})", m.join(", ")),
        FieldType::Role => "role".into(),
        FieldType::Ref(e) => model.entities.get(e.0).map_or_else(|| "reference".into(), |e| format!("reference to {}", e.name)),
    }
}

fn type_alias_help(word: &str) -> Option<String> {
    let t = match word.to_lowercase().as_str() {
        "string" | "str" | "varchar" | "char" => "text",
        "integer" | "number" | "bigint" | "i64" => "int",
        "float" | "double" | "money" | "numeric" | "real" => "decimal",
        "boolean" => "bool",
        "timestamp" | "time" | "instant" => "datetime",
        "uri" | "link" => "url",
        "object" | "map" | "any" => "json",
        "users" => "User",
        _ => return None,
    };
    Some(format!("did you mean `{t}`?"))
}

fn rule_help(rule: &str) -> String {
    match rule {
        "pattern" => "`pattern` applies to text, email and url fields".into(),
        "on delete" => "`on delete` applies to references (a field whose type is an entity)".into(),
        "unique" => "json values cannot be unique".into(),
        _ => "remove the rule".into(),
    }
}

/// A `pattern` rule as the regex that checks values: anchored at both ends,
/// under a size limit so a spec cannot make matching expensive. The
/// records use case builds its matcher the same way.
pub fn pattern_regex(p: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{p})$")).size_limit(1 << 20).build()
}

fn compile_pattern(p: &str) -> Result<(), String> {
    pattern_regex(p).map(|_| ()).map_err(|e| {
        let text = e.to_string();
        // The regex crate's message ends with a one-line summary.
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("invalid").trim();
        last.strip_prefix("error: ").unwrap_or(last).to_string()
    })
}

fn bound_value(ty: &FieldType, lit: &syn::Literal) -> Result<Bound, &'static str> {
    match (ty, &lit.kind) {
        (t, LiteralKind::Number(n)) if t.is_textual() => n.parse::<u64>().map(Bound::Length).map_err(|_| "a whole number of characters"),
        (_, _) if ty.is_textual() => Err("a whole number of characters"),
        (FieldType::Int, LiteralKind::Number(n)) => n.parse::<i64>().map(Bound::Int).map_err(|_| "a whole number"),
        (FieldType::Int, _) => Err("a whole number"),
        (FieldType::Decimal, LiteralKind::Number(n)) if is_valid_decimal(n) => Ok(Bound::Decimal(n.clone())),
        (FieldType::Decimal, _) => Err("a decimal number"),
        (FieldType::Date, LiteralKind::Date(d)) if is_valid_date(d) => Ok(Bound::Date(d.clone())),
        (FieldType::Date, LiteralKind::Date(_)) => Err("a real calendar date"),
        _ => Err("a date written YYYY-MM-DD"),
    }
}

/// Compares two decimals written as plain decimal strings.
fn decimal_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let neg_a = a.starts_with('-');
    let neg_b = b.starts_with('-');
    let norm = |s: &str| -> (String, String) {
        let s = s.trim_start_matches('-');
        let (i, f) = s.split_once('.').unwrap_or((s, ""));
        let i = i.trim_start_matches('0').to_string();
        let f = f.trim_end_matches('0').to_string();
        (i, f)
    };
    let (ia, fa) = norm(a);
    let (ib, fb) = norm(b);
    let zero_a = ia.is_empty() && fa.is_empty();
    let zero_b = ib.is_empty() && fb.is_empty();
    let sign = |neg: bool, zero: bool| {
        if zero {
            0
        } else if neg {
            -1
        } else {
            1
        }
    };
    let (sa, sb) = (sign(neg_a, zero_a), sign(neg_b, zero_b));
    if sa != sb {
        return sa.cmp(&sb);
    }
    let mag = ia.len().cmp(&ib.len()).then_with(|| ia.cmp(&ib)).then_with(|| fa.cmp(&fb));
    if sa < 0 {
        mag.reverse()
    } else if sa == 0 {
        Ordering::Equal
    } else {
        mag
    }
}

fn bound_gt(a: &Bound, b: &Bound) -> bool {
    match (a, b) {
        (Bound::Length(x), Bound::Length(y)) => x > y,
        (Bound::Int(x), Bound::Int(y)) => x > y,
        (Bound::Date(x), Bound::Date(y)) => x > y,
        (Bound::Decimal(x), Bound::Decimal(y)) => decimal_cmp(x, y).is_gt(),
        _ => false,
    }
}

fn default_value(f: &Field, lit: &syn::Literal, model: &AppModel) -> Result<DefaultValue, (String, String)> {
    let tn = type_name(&f.ty, model);
    let bad = |msg: String, help: &str| Err((msg, help.to_string()));
    match (&f.ty, &lit.kind) {
        (FieldType::Ref(USER), LiteralKind::Word(w)) if w == "me" => Ok(DefaultValue::Me),
        (_, LiteralKind::Word(w)) if w == "me" => {
            bad("`default me` is only for references to `User`".into(), "give the field the type `User`, or remove the default")
        }
        (FieldType::DateTime, LiteralKind::Word(w)) if w == "now" => Ok(DefaultValue::Now),
        (_, LiteralKind::Word(w)) if w == "now" => {
            bad("`default now` is only for datetime fields".into(), "for a date, use `default today`")
        }
        (FieldType::Date, LiteralKind::Word(w)) if w == "today" => Ok(DefaultValue::Today),
        (_, LiteralKind::Word(w)) if w == "today" => {
            bad("`default today` is only for date fields".into(), "for a datetime, use `default now`")
        }
        (FieldType::Ref(_), _) => {
            bad(format!("{} {tn} field cannot have a literal default", article(&tn)), "references default only to `me` (for `User`)")
        }
        (FieldType::Bool, LiteralKind::Word(w)) if w == "true" || w == "false" => Ok(DefaultValue::Bool(w == "true")),
        (FieldType::Bool, _) => bad("a bool default is `true` or `false`".into(), "write `default false`"),
        (FieldType::Int, LiteralKind::Number(n)) => {
            n.parse().map(DefaultValue::Int).or_else(|_| bad(not_an_int(n), "write a whole number, like `default 0`"))
        }
        (FieldType::Int, _) => bad("an int default is a whole number".into(), "write `default 0`"),
        (FieldType::Decimal, LiteralKind::Number(n)) if is_valid_decimal(n) => Ok(DefaultValue::Decimal(n.clone())),
        (FieldType::Decimal, _) => bad("a decimal default is a number".into(), "write `default 0.00`"),
        (FieldType::Date, LiteralKind::Date(d)) if is_valid_date(d) => Ok(DefaultValue::Date(d.clone())),
        (FieldType::Date, _) => bad("a date default is `today` or a date".into(), "write `default today` or `default 2025-01-31`"),
        (FieldType::DateTime, LiteralKind::String(s)) if is_valid_datetime(s) => Ok(DefaultValue::DateTime(s.clone())),
        (FieldType::DateTime, _) => {
            bad("a datetime default is `now` or an RFC 3339 instant".into(), "write `default now` or `default \"2025-01-31T12:00:00Z\"`")
        }
        (FieldType::Enum(members), LiteralKind::Word(w) | LiteralKind::String(w)) => {
            if members.contains(w) {
                Ok(DefaultValue::Enum(w.clone()))
            } else {
                let help = did_you_mean(w, members.iter().map(String::as_str))
                    .unwrap_or_else(|| format!("the members are: {}", members.join(", ")));
                Err((format!("`{w}` is not a member of this enum"), help))
            }
        }
        (FieldType::Enum(_), _) => bad("an enum default is one of its members".into(), "write the member bare: `default normal`"),
        (FieldType::Json, LiteralKind::String(s)) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(_) => Ok(DefaultValue::Json(s.clone())),
            Err(_) => bad("this json default is not valid JSON".into(), "write JSON inside the quotes, like `default \"[]\"`"),
        },
        (FieldType::Json, _) => bad("a json default is JSON in a string".into(), "write `default \"{}\"`"),
        (t, LiteralKind::String(s)) if t.is_textual() => Ok(DefaultValue::Text(s.clone())),
        (t, LiteralKind::Word(w)) if t.is_textual() => Ok(DefaultValue::Text(w.clone())),
        (t, _) if t.is_textual() => bad("a text default is a string".into(), "quote it: `default \"text\"`"),
        _ => bad(format!("{} {tn} field cannot have this default", article(&tn)), "remove the default"),
    }
}

fn check_default_fits(f: &Field, v: &DefaultValue) -> Result<(), String> {
    let len_ok = |s: &str| {
        let n = s.chars().count() as u64;
        match (&f.min, &f.max) {
            (Some(Bound::Length(m)), _) if n < *m => Err(format!("it has {n} characters, fewer than the minimum {m}")),
            (_, Some(Bound::Length(m))) if n > *m => Err(format!("it has {n} characters, more than the maximum {m}")),
            _ => Ok(()),
        }
    };
    match v {
        DefaultValue::Text(s) => {
            len_ok(s)?;
            if f.ty == FieldType::Email && !looks_like_email(s) {
                return Err("it is not an email address".into());
            }
            if f.ty == FieldType::Url && !(s.starts_with("http://") || s.starts_with("https://")) {
                return Err("it is not an http or https URL".into());
            }
            if let Some(p) = &f.pattern {
                let re = pattern_regex(p).map_err(|e| e.to_string())?;
                if !re.is_match(s) {
                    return Err("it does not match the pattern".into());
                }
            }
            Ok(())
        }
        DefaultValue::Int(n) => {
            let lo = matches!(f.min, Some(Bound::Int(m)) if *n < m);
            let hi = matches!(f.max, Some(Bound::Int(m)) if *n > m);
            if lo || hi {
                Err(format!("{n} is outside the bounds"))
            } else {
                Ok(())
            }
        }
        DefaultValue::Decimal(d) => {
            let lo = matches!(&f.min, Some(Bound::Decimal(m)) if decimal_cmp(d, m).is_lt());
            let hi = matches!(&f.max, Some(Bound::Decimal(m)) if decimal_cmp(d, m).is_gt());
            if lo || hi {
                Err(format!("{d} is outside the bounds"))
            } else {
                Ok(())
            }
        }
        DefaultValue::Date(d) => {
            let lo = matches!(&f.min, Some(Bound::Date(m)) if d < m);
            let hi = matches!(&f.max, Some(Bound::Date(m)) if d > m);
            if lo || hi {
                Err(format!("{d} is outside the bounds"))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// The shape check used for email defaults; the runtime applies the same.
pub fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `Some(b)` when the condition is `b` whoever asks, about whatever row.
pub(crate) fn const_value(e: &Expr) -> Option<bool> {
    match e {
        Expr::Anyone => Some(true),
        Expr::SignedIn | Expr::Role { .. } | Expr::Compare { .. } => None,
        Expr::Not { expr } => const_value(expr).map(|b| !b),
        Expr::And { items } => {
            let vals: Vec<Option<bool>> = items.iter().map(const_value).collect();
            if vals.contains(&Some(false)) {
                Some(false)
            } else if vals.iter().all(|v| *v == Some(true)) {
                Some(true)
            } else {
                None
            }
        }
        Expr::Or { items } => {
            let vals: Vec<Option<bool>> = items.iter().map(const_value).collect();
            if vals.contains(&Some(true)) {
                Some(true)
            } else if vals.iter().all(|v| *v == Some(false)) {
                Some(false)
            } else {
                None
            }
        }
    }
}

/// Whether the condition can never hold: constant false, or an `and` of
/// facts that exclude each other (two roles, signed in and not, one path
/// equal to two values, `me` without a signed-in caller).
pub(crate) fn never_true(e: &Expr) -> bool {
    if const_value(e) == Some(false) {
        return true;
    }
    match e {
        Expr::Or { items } => items.iter().all(never_true),
        Expr::And { items } => {
            if items.iter().any(never_true) {
                return true;
            }
            let mut atoms = Vec::new();
            flatten_and(e, &mut atoms);
            let roles: Vec<RoleId> = atoms.iter().filter_map(|a| if let Expr::Role { role } = a { Some(*role) } else { None }).collect();
            if roles.windows(2).any(|w| w[0] != w[1]) {
                return true;
            }
            let not_signed_in = atoms.iter().any(|a| matches!(a, Expr::Not { expr } if matches!(**expr, Expr::SignedIn)));
            let needs_user = atoms.iter().any(|a| {
                matches!(a, Expr::SignedIn | Expr::Role { .. }) || matches!(a, Expr::Compare { op: CompareOp::Eq, value: Value::Me, .. })
            });
            if not_signed_in && needs_user {
                return true;
            }
            for (i, a) in atoms.iter().enumerate() {
                for b in &atoms[i + 1..] {
                    if let (
                        Expr::Compare { path: p1, op: CompareOp::Eq, value: v1 },
                        Expr::Compare { path: p2, op: CompareOp::Eq, value: v2 },
                    ) = (a, b)
                    {
                        if p1 == p2 && v1 != v2 && *v1 != Value::Me && *v2 != Value::Me {
                            return true;
                        }
                    }
                    if let (Expr::Compare { path: p1, op: o1, value: v1 }, Expr::Compare { path: p2, op: o2, value: v2 }) = (a, b) {
                        if p1 == p2 && v1 == v2 && o1 != o2 {
                            return true;
                        }
                    }
                }
            }
            false
        }
        _ => false,
    }
}

fn flatten_and<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::And { items } => items.iter().for_each(|i| flatten_and(i, out)),
        other => out.push(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use charter_spec::diagnostic::closest;

    #[test]
    fn decimal_ordering() {
        assert!(decimal_cmp("10", "9.99").is_gt());
        assert!(decimal_cmp("-1", "0").is_lt());
        assert!(decimal_cmp("-2.5", "-2.4").is_lt());
        assert!(decimal_cmp("1.50", "1.5").is_eq());
        assert!(decimal_cmp("0.0", "-0").is_eq());
    }

    #[test]
    fn suggestion_for_closest_entity_is_exact_case() {
        assert_eq!(closest("Projcet", ["text", "Project"]), Some("Project"));
    }
}
