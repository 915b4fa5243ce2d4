//! Record use cases: list, get, create, update, delete for every entity.
//!
//! This is the one place a request's data is checked before it reaches the
//! store: bodies are decoded once into typed values against the entity
//! (no coercion), defaults applied, every rule of the spec validated with
//! all field errors reported at once; list query strings are parsed into
//! typed filters and signed cursors. Permissions are not checked here: the
//! store puts each rule into the SQL of the statement it runs, so neither
//! this module nor any handler decides who may see or change a row.

use crate::{App, AppError, FieldError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use charter_model::{Action, AppModel, Bound, Builtin, DefaultValue, Entity, EntityId, Expr, Field, FieldId, FieldType, USER};
use charter_schema::DbValue;
use charter_store::{Caller, Filter, FilterOp, IdempotencyClaim, ListQuery, Record, SortKey, WriteError};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value as J;
use sha2::Sha256;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

/// Most values one `__in` filter may list.
pub const MAX_IN_VALUES: usize = 100;
/// Most sort keys one list may use.
pub const MAX_SORT_KEYS: usize = 5;
/// `limit` bounds (http-api.md).
pub const MAX_LIMIT: u32 = 500;
/// Deepest nesting a `json` field may hold.
pub const MAX_JSON_DEPTH: usize = 32;
/// Longest id a reference may name; longer ones cannot exist.
const MAX_ID_LEN: usize = 64;

/// Compiled `pattern` rules, built once per app so no request compiles a regex.
pub struct Rules {
    patterns: HashMap<(EntityId, FieldId), regex::Regex>,
}

impl Rules {
    pub fn new(model: &AppModel) -> Rules {
        let mut patterns = HashMap::new();
        for e in &model.entities {
            for (i, f) in e.fields.iter().enumerate() {
                if let Some(p) = &f.pattern {
                    // The model compiled it under the same size limit, so
                    // this cannot fail for a checked spec.
                    if let Ok(re) = charter_model::pattern_regex(p) {
                        patterns.insert((e.id, FieldId(i)), re);
                    }
                }
            }
        }
        Rules { patterns }
    }
}

/// What `If-Match` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    Absent,
    /// `*`: any current version.
    Any,
    Version(i64),
    /// A tag that no version can match (`"abc"`): the write is refused as stale.
    Never,
}

impl IfMatch {
    /// Parses the header value: `"3"`, `W/"3"`, `*`, or a list of them.
    pub fn parse(header: Option<&str>) -> IfMatch {
        let Some(h) = header else { return IfMatch::Absent };
        let h = h.trim();
        if h == "*" {
            return IfMatch::Any;
        }
        let mut versions = h.split(',').map(|t| {
            let t = t.trim();
            let t = t.strip_prefix("W/").unwrap_or(t);
            t.strip_prefix('"').and_then(|t| t.strip_suffix('"')).and_then(|v| v.parse::<i64>().ok())
        });
        // Several tags: charter has one current version, so only the first
        // well-formed one can match; more tags than that are unusual enough
        // that taking the first is the honest reading.
        match versions.find_map(|v| v) {
            Some(v) => IfMatch::Version(v),
            None => IfMatch::Never,
        }
    }
}

/// A created record, and whether it is the replay of an earlier request.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub record: Record,
    pub replayed: bool,
}

/// A page of a list, with the opaque cursor for the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct ListResult {
    pub items: Vec<Record>,
    pub next: Option<String>,
    pub count: Option<u64>,
}

impl ListResult {
    pub fn to_json(&self) -> J {
        let mut m = serde_json::Map::new();
        m.insert("items".into(), J::Array(self.items.iter().cloned().map(J::Object).collect()));
        m.insert("next".into(), self.next.clone().map_or(J::Null, J::String));
        if let Some(c) = self.count {
            m.insert("count".into(), J::from(c));
        }
        J::Object(m)
    }
}

impl App {
    /// The rows of `entity` the caller may read, as `query` (the raw URL
    /// query string) filters, sorts and pages them.
    pub async fn list_records(&self, caller: &Caller, entity: EntityId, query: &str) -> Result<ListResult, AppError> {
        let (q, sort_text) = self.parse_list_query_for(caller, entity, query)?;
        let page = self.records.list(entity, caller, &q).await?;
        let next = page.next.map(|keys| self.encode_cursor(entity, &sort_text, &keys));
        Ok(ListResult { items: page.items, next, count: page.count })
    }

    /// One row; 404 when it does not exist or the caller may not read it.
    pub async fn get_record(&self, caller: &Caller, entity: EntityId, id: &str) -> Result<Record, AppError> {
        if !plausible_id(id) {
            return Err(AppError::NotFound);
        }
        self.records.get(entity, caller, id).await?.ok_or(AppError::NotFound)
    }

    /// The caller's own `User` record (`/api/users/me`).
    pub async fn get_me(&self, caller: &Caller) -> Result<Record, AppError> {
        let id = caller.user.as_deref().ok_or(AppError::Unauthorized)?;
        self.get_record(caller, USER, id).await
    }

    /// Creates a row from a JSON body.
    pub async fn create_record(&self, caller: &Caller, entity: EntityId, body: &J) -> Result<Record, AppError> {
        let e = self.model.entity(entity);
        // A create this caller can never make is refused before its body is
        // judged: field errors would only describe a request that cannot work.
        if crate::permissions::verdict(e.permissions.create.as_ref(), who(caller)).never() {
            return Err(if caller.user.is_none() {
                AppError::Unauthorized
            } else {
                AppError::Forbidden { kind: None, detail: "Your permissions do not allow this.".into() }
            });
        }
        let obj = body_object(body)?;
        check_unknown_fields(e, obj)?;
        let mut errors = Vec::new();
        let mut values = Vec::new();
        let mut sets_role = false;
        for (i, f) in e.fields.iter().enumerate() {
            let fid = FieldId(i);
            if let Some(why) = create_refusal(entity, f) {
                if obj.contains_key(&f.name) {
                    errors.push(FieldError::new(&f.name, "read_only", why));
                } else if let Some(v) = self.default_value(f, caller) {
                    // Server-set fields with a default (`User.verified`) start at it.
                    values.push((fid, v));
                }
                continue;
            }
            let given = obj.get(&f.name);
            let value = match given {
                Some(v) => self.decode(entity, fid, f, v, &mut errors),
                None if f.builtin == Some(Builtin::Role) => Some(DbValue::Text(self.model.role(self.model.default_role).name.clone())),
                None => Some(self.default_value(f, caller).unwrap_or(DbValue::Null)),
            };
            let Some(value) = value else { continue };
            if f.builtin == Some(Builtin::Role) && given.is_some() {
                sets_role = true;
            }
            if value == DbValue::Null {
                if f.required {
                    errors.push(required(f));
                }
                continue;
            }
            values.push((fid, value));
        }
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        let rule = if sets_role { Some(self.role_rule(Action::Create)?) } else { None };
        self.records.create_with_rule(entity, caller, values, rule).await.map_err(write_error)
    }

    /// `create_record`, made idempotent by `key` when the client sent one.
    /// The keyed create runs on its own task: a client that gives up and
    /// disconnects must not cancel it between claiming the key and storing
    /// its answer, or the key would stay "in flight" (409) for a day.
    pub async fn create_record_keyed(
        self: &std::sync::Arc<Self>,
        caller: &Caller,
        entity: EntityId,
        key: Option<&str>,
        body: &J,
    ) -> Result<Record, AppError> {
        let Some(key) = key else { return self.create_record(caller, entity, body).await };
        let (app, caller, key, body) = (self.clone(), caller.clone(), key.to_string(), body.clone());
        tokio::spawn(async move { app.create_record_idempotent(&caller, entity, &key, &body).await })
            .await
            .map_err(|e| AppError::Internal(format!("idempotent create task: {e}")))?
            .map(|c| c.record)
    }

    /// `create_record` under an `Idempotency-Key`: the first answer is
    /// remembered for 24 hours per caller, and a retry with the same key and
    /// body gets it again: the same record without a second row, or the same
    /// refusal (400, 401, 403, 404, 409 or 422; the request cannot succeed
    /// as sent, so running it again would only hide the first answer).
    /// Transient failures (503, 500, 429) are not remembered: the claim is
    /// released and a retry runs again.
    pub async fn create_record_idempotent(&self, caller: &Caller, entity: EntityId, key: &str, body: &J) -> Result<Created, AppError> {
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(bad("`Idempotency-Key` must be 1 to 255 visible ASCII characters."));
        }
        let scope = caller.user.as_deref().map_or_else(|| "anonymous".to_string(), |u| format!("user:{u}"));
        let hash = {
            use sha2::Digest;
            let mut h = Sha256::new();
            h.update(self.model.entity(entity).plural.as_bytes());
            h.update(b"\0");
            h.update(body.to_string().as_bytes());
            URL_SAFE_NO_PAD.encode(h.finalize())
        };
        match self.records.idempotency_claim(&scope, key, &hash, self.clock.now_ms()).await? {
            IdempotencyClaim::Done(stored) => {
                if let Some(refusal) = stored.strip_prefix(REFUSED) {
                    let refusal: Refusal =
                        serde_json::from_str(refusal).map_err(|e| AppError::Internal(format!("stored idempotent refusal: {e}")))?;
                    return Err(refusal.into_error());
                }
                let record: Record =
                    serde_json::from_str(&stored).map_err(|e| AppError::Internal(format!("stored idempotent response: {e}")))?;
                Ok(Created { record, replayed: true })
            }
            IdempotencyClaim::Mismatch => Err(AppError::Validation(vec![FieldError::new(
                "Idempotency-Key",
                "reused",
                "This Idempotency-Key was used with a different request; use a new key.",
            )])),
            IdempotencyClaim::InFlight => Err(AppError::Conflict("A request with this Idempotency-Key is still being processed.".into())),
            IdempotencyClaim::New => match self.create_record(caller, entity, body).await {
                Ok(record) => {
                    let text = serde_json::to_string(&record).expect("records serialise");
                    self.records.idempotency_finish(&scope, key, &text).await?;
                    Ok(Created { record, replayed: false })
                }
                Err(e) => {
                    match Refusal::of(&e) {
                        Some(refusal) => {
                            let text = format!("{REFUSED}{}", serde_json::to_string(&refusal).expect("refusals serialise"));
                            self.records.idempotency_finish(&scope, key, &text).await?;
                        }
                        None => self.records.idempotency_abandon(&scope, key).await?,
                    }
                    Err(e)
                }
            },
        }
    }

    /// Changes the fields a JSON body names; `if_match` as the client sent it.
    pub async fn update_record(
        &self,
        caller: &Caller,
        entity: EntityId,
        id: &str,
        body: &J,
        if_match: IfMatch,
    ) -> Result<Record, AppError> {
        let e = self.model.entity(entity);
        let obj = body_object(body)?;
        check_unknown_fields(e, obj)?;
        let if_version = self.precondition(if_match)?;
        let mut errors = Vec::new();
        let mut values = Vec::new();
        let mut sets_role = false;
        let mut sets_other = false;
        for (name, v) in obj {
            let (fid, f) = e.field_by_name(name).expect("checked above");
            if let Some(why) = update_refusal(entity, f) {
                errors.push(FieldError::new(&f.name, "read_only", why));
                continue;
            }
            let Some(value) = self.decode(entity, fid, f, v, &mut errors) else { continue };
            if value == DbValue::Null && f.required {
                errors.push(required(f));
                continue;
            }
            if f.builtin == Some(Builtin::Role) {
                sets_role = true;
            } else {
                sets_other = true;
            }
            values.push((fid, value));
        }
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        if !plausible_id(id) {
            return Err(AppError::NotFound);
        }
        // Changing a role is governed by `update role`; anything else in the
        // same body also needs the entity's update rule.
        let rule = match (sets_role, sets_other) {
            (false, _) => None,
            (true, false) => Some(self.role_rule(Action::Update)?),
            (true, true) => {
                let update = e.permissions.update.clone().unwrap_or(Expr::Not { expr: Box::new(Expr::Anyone) });
                Some(Expr::And { items: vec![update, self.role_rule(Action::Update)?] })
            }
        };
        let record = self.records.update_with_rule(entity, caller, id, values, if_version, rule).await.map_err(write_error)?;
        if entity == USER && sets_role {
            // A new role must not ride on sessions opened under the old one.
            self.end_user_sessions(id, "role_changed").await?;
        }
        Ok(record)
    }

    /// `PATCH /api/users/me`.
    pub async fn update_me(&self, caller: &Caller, body: &J, if_match: IfMatch) -> Result<Record, AppError> {
        let id = caller.user.clone().ok_or(AppError::Unauthorized)?;
        self.update_record(caller, USER, &id, body, if_match).await
    }

    pub async fn delete_record(&self, caller: &Caller, entity: EntityId, id: &str, if_match: IfMatch) -> Result<(), AppError> {
        let if_version = self.precondition(if_match)?;
        if !plausible_id(id) {
            return Err(AppError::NotFound);
        }
        self.records.delete(entity, caller, id, if_version).await.map_err(write_error)
    }

    fn precondition(&self, if_match: IfMatch) -> Result<Option<i64>, AppError> {
        match if_match {
            IfMatch::Absent if self.model.settings.require_if_match => Err(AppError::PreconditionRequired),
            IfMatch::Absent | IfMatch::Any => Ok(None),
            IfMatch::Version(v) => Ok(Some(v)),
            // No row has a negative version, so the store answers 412 (or
            // 404 for a row the caller cannot see, as for any write).
            IfMatch::Never => Ok(Some(-1)),
        }
    }

    /// The condition under which the caller may set `User.role`; without an
    /// `update role` line nobody may, which is a field error, not a 403.
    fn role_rule(&self, action: Action) -> Result<Expr, AppError> {
        let user = self.model.user();
        let (role, _) = user.field_by_name("role").expect("User has role");
        let rule = user.permissions.field_rule(Action::Update, role).cloned().ok_or_else(|| {
            let verb = if action == Action::Create { "set" } else { "changed" };
            AppError::Validation(vec![FieldError::new("role", "read_only", format!("`role` cannot be {verb} through the API."))])
        })?;
        Ok(match action {
            Action::Create => match user.permissions.create.clone() {
                Some(create) => Expr::And { items: vec![create, rule] },
                None => Expr::Not { expr: Box::new(Expr::Anyone) },
            },
            _ => rule,
        })
    }

    fn default_value(&self, f: &Field, caller: &Caller) -> Option<DbValue> {
        let d = f.default.as_ref()?;
        Some(match d {
            DefaultValue::Me => caller.user.clone().map_or(DbValue::Null, DbValue::Text),
            DefaultValue::Now => DbValue::DateTime(format_utc(
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.clock.now_ms()) * 1_000_000)
                    .unwrap_or_else(|_| time::OffsetDateTime::now_utc()),
            )),
            DefaultValue::Today => {
                let now = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.clock.now_ms()) * 1_000_000)
                    .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
                DbValue::Date(format_utc(now)[..10].to_string())
            }
            DefaultValue::Bool(b) => DbValue::Boolean(*b),
            DefaultValue::Int(n) => DbValue::Integer(*n),
            DefaultValue::Decimal(s) => DbValue::Decimal(s.clone()),
            DefaultValue::Text(s) | DefaultValue::Enum(s) => DbValue::Text(s.clone()),
            DefaultValue::Date(s) => DbValue::Date(s.clone()),
            DefaultValue::DateTime(s) => DbValue::DateTime(normalize_datetime(s).unwrap_or_else(|| s.clone())),
            DefaultValue::Json(s) => DbValue::Json(s.clone()),
        })
    }

    /// One JSON value as the field's typed value, or `None` with the field
    /// error recorded. JSON `null` becomes `DbValue::Null` (the caller
    /// decides whether the field may be empty).
    fn decode(&self, entity: EntityId, fid: FieldId, f: &Field, v: &J, errors: &mut Vec<FieldError>) -> Option<DbValue> {
        if v.is_null() {
            return Some(DbValue::Null);
        }
        let mut err = |code: &str, message: String| {
            errors.push(FieldError::new(&f.name, code, message));
            None
        };
        let type_name = json_type_name(&f.ty);
        let wrong_type = |v: &J| format!("`{}` must be {type_name}, not {}.", f.name, describe_json(v));
        match &f.ty {
            FieldType::Int => {
                let n = match v {
                    J::Number(n) => n,
                    _ => return err("invalid_type", wrong_type(v)),
                };
                let Some(i) = n.as_i64() else {
                    if n.as_u64().is_some() || n.as_f64().is_some_and(|x| x.fract() == 0.0) {
                        return err("out_of_range", format!("`{}` must fit in a 64-bit signed integer.", f.name));
                    }
                    return err("invalid_type", format!("`{}` must be a whole number.", f.name));
                };
                if let Some(Bound::Int(m)) = &f.min {
                    if i < *m {
                        return err("out_of_range", format!("`{}` must be at least {m}.", f.name));
                    }
                }
                if let Some(Bound::Int(m)) = &f.max {
                    if i > *m {
                        return err("out_of_range", format!("`{}` must be at most {m}.", f.name));
                    }
                }
                Some(DbValue::Integer(i))
            }
            FieldType::Bool => match v {
                J::Bool(b) => Some(DbValue::Boolean(*b)),
                _ => err("invalid_type", wrong_type(v)),
            },
            FieldType::Json => {
                if json_has_nul(v) {
                    return err("invalid_format", format!("`{}` must not contain NUL characters.", f.name));
                }
                if json_depth(v) > MAX_JSON_DEPTH {
                    return err("too_deep", format!("`{}` nests deeper than {MAX_JSON_DEPTH} levels.", f.name));
                }
                Some(DbValue::Json(v.to_string()))
            }
            _ => {
                let J::String(s) = v else { return err("invalid_type", wrong_type(v)) };
                // Neither PostgreSQL text nor a C string can hold NUL; refusing
                // it here keeps both backends answering the same.
                if s.contains('\0') {
                    return err("invalid_format", format!("`{}` must not contain NUL characters.", f.name));
                }
                match &f.ty {
                    FieldType::Text | FieldType::Email | FieldType::Url => {
                        // A user's address is kept in the one form auth looks it up by.
                        let s = if f.builtin == Some(Builtin::Email) {
                            match crate::auth::secrets::normalize_email(s) {
                                Some(e) => e,
                                None => return err("invalid_format", format!("`{}` must be an email address.", f.name)),
                            }
                        } else {
                            s.clone()
                        };
                        let n = s.chars().count() as u64;
                        if let Some(Bound::Length(m)) = &f.min {
                            if n < *m {
                                return err("too_short", format!("`{}` must have at least {m} characters.", f.name));
                            }
                        }
                        if let Some(Bound::Length(m)) = &f.max {
                            if n > *m {
                                return err("too_long", format!("`{}` must have at most {m} characters.", f.name));
                            }
                        }
                        if f.ty == FieldType::Email && !charter_model::looks_like_email(&s) {
                            return err("invalid_format", format!("`{}` must be an email address.", f.name));
                        }
                        if f.ty == FieldType::Url && !is_web_url(&s) {
                            return err("invalid_format", format!("`{}` must be an http or https URL.", f.name));
                        }
                        if let Some(re) = self.rules.patterns.get(&(entity, fid)) {
                            if !re.is_match(&s) {
                                return err("pattern", format!("`{}` does not match the required pattern.", f.name));
                            }
                        }
                        Some(DbValue::Text(s))
                    }
                    FieldType::Decimal => {
                        if !charter_model::is_valid_decimal(s) {
                            return err(
                                "invalid_format",
                                format!("`{}` must be a decimal number written as a string, like \"12.50\".", f.name),
                            );
                        }
                        if let Some(m) = f.min.as_ref().map(bound_decimal) {
                            if cmp_decimal(s, &m) == Ordering::Less {
                                return err("out_of_range", format!("`{}` must be at least {m}.", f.name));
                            }
                        }
                        if let Some(m) = f.max.as_ref().map(bound_decimal) {
                            if cmp_decimal(s, &m) == Ordering::Greater {
                                return err("out_of_range", format!("`{}` must be at most {m}.", f.name));
                            }
                        }
                        Some(DbValue::Decimal(s.clone()))
                    }
                    FieldType::Date => {
                        if !charter_model::is_valid_date(s) {
                            return err("invalid_format", format!("`{}` must be a date, YYYY-MM-DD.", f.name));
                        }
                        if let Some(Bound::Date(m)) = &f.min {
                            if s.as_str() < m.as_str() {
                                return err("out_of_range", format!("`{}` must be on or after {m}.", f.name));
                            }
                        }
                        if let Some(Bound::Date(m)) = &f.max {
                            if s.as_str() > m.as_str() {
                                return err("out_of_range", format!("`{}` must be on or before {m}.", f.name));
                            }
                        }
                        Some(DbValue::Date(s.clone()))
                    }
                    FieldType::DateTime => match normalize_datetime(s) {
                        Some(t) => Some(DbValue::DateTime(t)),
                        None => {
                            err("invalid_format", format!("`{}` must be an RFC 3339 date and time, like 2025-01-31T09:30:00Z.", f.name))
                        }
                    },
                    FieldType::Enum(members) => {
                        if members.contains(s) {
                            Some(DbValue::Text(s.clone()))
                        } else {
                            err("not_in_enum", format!("`{}` must be one of {}.", f.name, members.join(", ")))
                        }
                    }
                    FieldType::Role => {
                        if self.model.role_by_name(s).is_some() {
                            Some(DbValue::Text(s.clone()))
                        } else {
                            let names: Vec<&str> = self.model.roles.iter().map(|r| r.name.as_str()).collect();
                            err("not_in_enum", format!("`{}` must be one of {}.", f.name, names.join(", ")))
                        }
                    }
                    FieldType::Ref(target) => {
                        if plausible_id(s) {
                            Some(DbValue::Text(s.clone()))
                        } else {
                            let t = &self.model.entity(*target).name;
                            err("not_found", format!("There is no {t} with this id."))
                        }
                    }
                    FieldType::Id => err("read_only", format!("`{}` is set by the server.", f.name)),
                    FieldType::Int | FieldType::Bool | FieldType::Json => unreachable!("handled above"),
                }
            }
        }
    }

    /// Parses a list's query string. Returns the query and the sort as text
    /// (what a cursor is bound to). `User.email` is refused in filters and
    /// sorts here; `parse_list_query_for` admits it for callers who may read
    /// every address.
    pub fn parse_list_query(&self, entity: EntityId, query: &str) -> Result<(ListQuery, String), AppError> {
        self.parse_query(entity, query, false)
    }

    /// `parse_list_query` for `caller`: filters and sorts on `User.email`
    /// are allowed only when the caller's `read email` rule holds whatever
    /// the row (verdict allowed for their role). A rule that depends on the
    /// row would let a filter probe addresses the caller cannot read, so it
    /// is 400 like no rule at all.
    pub fn parse_list_query_for(&self, caller: &Caller, entity: EntityId, query: &str) -> Result<(ListQuery, String), AppError> {
        let email_ok = entity == USER && {
            let user = self.model.user();
            let (email, _) = user.field_by_name("email").expect("User has email");
            crate::permissions::verdict(user.permissions.field_rule(Action::Read, email), who(caller))
                == crate::permissions::Verdict::Allowed
        };
        self.parse_query(entity, query, email_ok)
    }

    fn parse_query(&self, entity: EntityId, query: &str, email_ok: bool) -> Result<(ListQuery, String), AppError> {
        let e = self.model.entity(entity);
        let mut seen = HashSet::new();
        let mut filters = Vec::new();
        let mut sort_text = "-created_at".to_string();
        let mut limit = self.model.settings.page_size;
        let mut after = None;
        let mut count = false;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if !seen.insert(key.to_string()) {
                return Err(bad(format!("`{key}` is given more than once; give each query parameter once.")));
            }
            match key.as_ref() {
                "sort" => sort_text = value.to_string(),
                "limit" => {
                    limit = value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| bad(format!("`limit` must be a whole number from 1 to {MAX_LIMIT}.")))?;
                }
                "after" => after = Some(value.to_string()),
                "count" => {
                    count = match value.as_ref() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("`count` must be `true` or `false`.")),
                    }
                }
                _ => filters.push(self.parse_filter(e, &key, &value, email_ok)?),
            }
        }
        let sort = self.parse_sort(e, &sort_text, email_ok)?;
        let after = match after {
            Some(c) => Some(self.decode_cursor(entity, &sort_text, sort.len() + 1, &c)?),
            None => None,
        };
        Ok((ListQuery { filters, sort, limit, after, count }, sort_text))
    }

    fn parse_filter(&self, e: &Entity, key: &str, value: &str, email_ok: bool) -> Result<Filter, AppError> {
        let (name, op_text) = match key.split_once("__") {
            Some((n, o)) => (n, Some(o)),
            None => (key, None),
        };
        if name.contains('.') {
            return Err(bad(format!("`{key}`: filters name this entity's own fields only; paths through references are not supported.")));
        }
        let (fid, f) = e.field_by_name(name).ok_or_else(|| {
            let names: Vec<&str> = e.fields.iter().map(|f| f.name.as_str()).collect();
            bad(format!("unknown field `{name}` in the query; {} has {}.", e.name, names.join(", ")))
        })?;
        let op = match op_text {
            None | Some("eq") => FilterOp::Eq,
            Some("ne") => FilterOp::Ne,
            Some("gt") => FilterOp::Gt,
            Some("gte") => FilterOp::Gte,
            Some("lt") => FilterOp::Lt,
            Some("lte") => FilterOp::Lte,
            Some("in") => FilterOp::In,
            Some("contains") => FilterOp::Contains,
            Some(other) => {
                return Err(bad(format!(
                    "unknown operator `__{other}` on `{name}`; use __gt, __gte, __lt, __lte, __ne, __in or __contains."
                )))
            }
        };
        let is_email = f.builtin == Some(Builtin::Email) && e.id == USER;
        if is_email && !email_ok {
            // Filtering on addresses the caller may not read would reveal them.
            return Err(bad("`email` can be used in filters only by callers who may read every user's email."));
        }
        if f.ty == FieldType::Json {
            return Err(bad(format!("`{name}` is a json field and cannot be filtered.")));
        }
        if op == FilterOp::Contains && !f.ty.is_textual() {
            return Err(bad(format!("`__contains` applies to text fields; `{name}` is not one.")));
        }
        if matches!(op, FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte) && f.ty == FieldType::Bool {
            return Err(bad(format!("`{name}` is a bool; compare it with `=` or `__ne`.")));
        }
        let values = if op == FilterOp::In {
            let parts: Vec<&str> = if value.is_empty() { Vec::new() } else { value.split(',').collect() };
            if parts.len() > MAX_IN_VALUES {
                return Err(bad(format!("`{key}` lists {} values; at most {MAX_IN_VALUES} are allowed.", parts.len())));
            }
            parts.iter().map(|p| query_value(f, p).map_err(|why| bad(format!("`{key}`: {why}")))).collect::<Result<Vec<_>, _>>()?
        } else {
            vec![query_value(f, value).map_err(|why| bad(format!("`{key}`: {why}")))?]
        };
        // Addresses are stored normalised (NFC, lowercase); a filter naming
        // one finds it however it is typed.
        let values = if is_email && op != FilterOp::Contains {
            values
                .into_iter()
                .map(|v| match v {
                    DbValue::Text(t) => DbValue::Text(crate::auth::secrets::normalize_email(&t).unwrap_or(t)),
                    other => other,
                })
                .collect()
        } else {
            values
        };
        Ok(Filter { field: fid, op, values })
    }

    fn parse_sort(&self, e: &Entity, text: &str, email_ok: bool) -> Result<Vec<SortKey>, AppError> {
        let mut keys = Vec::new();
        let mut names = HashSet::new();
        for part in text.split(',') {
            let (descending, name) = match part.strip_prefix('-') {
                Some(n) => (true, n),
                None => (false, part),
            };
            let (fid, f) =
                e.field_by_name(name).ok_or_else(|| bad(format!("unknown field `{name}` in `sort`; sort by fields of {}.", e.name)))?;
            if f.ty == FieldType::Json {
                return Err(bad(format!("`{name}` cannot be sorted on.")));
            }
            if f.builtin == Some(Builtin::Email) && e.id == USER && !email_ok {
                return Err(bad(format!("`{name}` can be sorted on only by callers who may read every user's email.")));
            }
            if !names.insert(name) {
                return Err(bad(format!("`{name}` appears twice in `sort`.")));
            }
            keys.push(SortKey { field: fid, descending });
        }
        if keys.len() > MAX_SORT_KEYS {
            return Err(bad(format!("`sort` has {} keys; at most {MAX_SORT_KEYS} are allowed.", keys.len())));
        }
        Ok(keys)
    }

    /// A cursor: the keyset, bound to the entity and the sort, signed with
    /// the app's secret so a client can neither forge nor edit it.
    fn encode_cursor(&self, entity: EntityId, sort: &str, keys: &[DbValue]) -> String {
        let payload = serde_json::json!({"e": self.model.entity(entity).plural, "s": sort, "k": keys});
        let payload = serde_json::to_vec(&payload).expect("serialises");
        let tag = self.cursor_mac(&payload).finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(tag))
    }

    fn decode_cursor(&self, entity: EntityId, sort: &str, keys: usize, cursor: &str) -> Result<Vec<DbValue>, AppError> {
        let invalid = || bad("`after` is not a cursor this list gave out (cursors are bound to the sort and cannot be edited).");
        let (payload, tag) = cursor.split_once('.').ok_or_else(invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        self.cursor_mac(&payload).verify_slice(&tag).map_err(|_| invalid())?;
        #[derive(serde::Deserialize)]
        struct Payload {
            e: String,
            s: String,
            k: Vec<DbValue>,
        }
        let p: Payload = serde_json::from_slice(&payload).map_err(|_| invalid())?;
        if p.e != self.model.entity(entity).plural || p.s != sort || p.k.len() != keys {
            return Err(invalid());
        }
        Ok(p.k)
    }

    fn cursor_mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.config.secret.expose()).expect("HMAC takes any key length");
        // A label keeps these tags from being valid for anything else the
        // same secret signs.
        mac.update(b"charter-cursor-v1\0");
        mac.update(payload);
        mac
    }
}

/// Marks a stored idempotent response that is a refusal; a stored record
/// is a JSON object, which never starts with this.
const REFUSED: &str = "refused:";

/// A create's refusal, as kept for an idempotency key and replayed to its
/// retries. Only answers that running the same request again would not
/// change belong here; a 5xx or a 429 does not.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Refusal {
    BadRequest { detail: String },
    Unauthorized,
    Forbidden { problem: Option<String>, detail: String },
    NotFound,
    Conflict { detail: String },
    Unique { field: String },
    Validation { errors: Vec<FieldError> },
}

/// Problem types a 403 may carry (`AppError::Forbidden` holds them as
/// static text).
const FORBIDDEN_KINDS: &[&str] = &["email-not-verified", "signup-closed"];

impl Refusal {
    fn of(e: &AppError) -> Option<Refusal> {
        Some(match e {
            AppError::BadRequest(detail) => Refusal::BadRequest { detail: detail.clone() },
            AppError::Unauthorized => Refusal::Unauthorized,
            AppError::Forbidden { kind, detail } => {
                if kind.is_some_and(|k| !FORBIDDEN_KINDS.contains(&k)) {
                    return None;
                }
                Refusal::Forbidden { problem: kind.map(str::to_string), detail: detail.clone() }
            }
            AppError::NotFound => Refusal::NotFound,
            AppError::Conflict(detail) => Refusal::Conflict { detail: detail.clone() },
            AppError::Unique { field } => Refusal::Unique { field: field.clone() },
            AppError::Validation(errors) => Refusal::Validation { errors: errors.clone() },
            AppError::InvalidToken
            | AppError::PreconditionFailed { .. }
            | AppError::PreconditionRequired
            | AppError::TooManyRequests { .. }
            | AppError::Unavailable(_)
            | AppError::Internal(_) => return None,
        })
    }

    fn into_error(self) -> AppError {
        match self {
            Refusal::BadRequest { detail } => AppError::BadRequest(detail),
            Refusal::Unauthorized => AppError::Unauthorized,
            Refusal::Forbidden { problem, detail } => {
                AppError::Forbidden { kind: problem.and_then(|p| FORBIDDEN_KINDS.iter().copied().find(|k| *k == p)), detail }
            }
            Refusal::NotFound => AppError::NotFound,
            Refusal::Conflict { detail } => AppError::Conflict(detail),
            Refusal::Unique { field } => AppError::Unique { field },
            Refusal::Validation { errors } => AppError::Validation(errors),
        }
    }
}

/// The kind of caller, for rules decided before any row is read.
pub fn who(caller: &Caller) -> crate::permissions::Who {
    match (&caller.user, caller.role) {
        (Some(_), Some(r)) => crate::permissions::Who::Role(r),
        _ => crate::permissions::Who::Anonymous,
    }
}

fn bad(detail: impl Into<String>) -> AppError {
    AppError::BadRequest(detail.into())
}

fn required(f: &Field) -> FieldError {
    FieldError::new(&f.name, "required", format!("`{}` is required.", f.name))
}

/// Maps a refused write to what the client sees.
pub fn write_error(e: WriteError) -> AppError {
    match e {
        WriteError::NotFound => AppError::NotFound,
        WriteError::Forbidden => AppError::Forbidden { kind: None, detail: "Your permissions do not allow this.".into() },
        WriteError::Stale { current_version } => AppError::PreconditionFailed { current_version },
        WriteError::ReferenceNotFound { field } => {
            AppError::Validation(vec![FieldError::new(&field, "not_found", format!("`{field}` names a record that does not exist."))])
        }
        WriteError::Unique { field } => AppError::Unique { field },
        WriteError::Restricted => AppError::Conflict("Other records refer to this one; delete or change them first.".into()),
        WriteError::Store(s) => AppError::from(s),
    }
}

fn body_object(body: &J) -> Result<&serde_json::Map<String, J>, AppError> {
    body.as_object().ok_or_else(|| bad(format!("The body must be a JSON object, not {}.", describe_json(body))))
}

fn check_unknown_fields(e: &Entity, obj: &serde_json::Map<String, J>) -> Result<(), AppError> {
    let unknown: Vec<String> = obj.keys().filter(|k| e.field_by_name(k).is_none()).map(|k| format!("`{k}`")).collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(bad(format!("unknown field{} {} for {}.", if unknown.len() == 1 { "" } else { "s" }, unknown.join(", "), e.name)))
    }
}

/// Why a field may not be given on create, if it may not.
fn create_refusal(entity: EntityId, f: &Field) -> Option<String> {
    match f.builtin {
        Some(Builtin::Id | Builtin::CreatedAt | Builtin::UpdatedAt | Builtin::Version) => {
            Some(format!("`{}` is set by the server.", f.name))
        }
        Some(Builtin::Verified) if entity == USER => Some("`verified` is set by email verification only.".into()),
        _ => None,
    }
}

/// Why a field may not be given on update, if it may not.
fn update_refusal(entity: EntityId, f: &Field) -> Option<String> {
    match f.builtin {
        Some(Builtin::Id | Builtin::CreatedAt | Builtin::UpdatedAt | Builtin::Version) => {
            Some(format!("`{}` is set by the server.", f.name))
        }
        Some(Builtin::Email) if entity == USER => Some("`email` cannot be changed through the API.".into()),
        Some(Builtin::Verified) if entity == USER => Some("`verified` is set by email verification only.".into()),
        Some(Builtin::Role) => None,
        _ if f.read_only => Some(format!("`{}` is read only: it is set when the record is created.", f.name)),
        _ => None,
    }
}

/// Ids charter makes are short `[a-z0-9]` strings; anything far from that
/// cannot name a row and is not worth a query.
fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && !id.contains('\0')
}

fn is_web_url(s: &str) -> bool {
    match url::Url::parse(s) {
        Ok(u) => {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()) && !s.chars().any(char::is_whitespace)
        }
        Err(_) => false,
    }
}

fn json_has_nul(v: &J) -> bool {
    match v {
        J::String(s) => s.contains('\0'),
        J::Array(a) => a.iter().any(json_has_nul),
        J::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

fn json_depth(v: &J) -> usize {
    match v {
        J::Array(a) => 1 + a.iter().map(json_depth).max().unwrap_or(0),
        J::Object(o) => 1 + o.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn json_type_name(ty: &FieldType) -> &'static str {
    match ty {
        FieldType::Int => "a whole number",
        FieldType::Bool => "true or false",
        FieldType::Decimal => "a decimal written as a string",
        FieldType::Date => "a date string (YYYY-MM-DD)",
        FieldType::DateTime => "a date-time string (RFC 3339)",
        FieldType::Ref(_) | FieldType::Id => "an id string",
        _ => "a string",
    }
}

fn describe_json(v: &J) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        J::String(_) => "a string",
        J::Array(_) => "an array",
        J::Object(_) => "an object",
    }
}

fn bound_decimal(b: &Bound) -> String {
    match b {
        Bound::Int(n) => n.to_string(),
        Bound::Decimal(d) => d.clone(),
        Bound::Length(n) => n.to_string(),
        Bound::Date(d) => d.clone(),
    }
}

/// Compares two valid decimal strings exactly.
pub fn cmp_decimal(a: &str, b: &str) -> Ordering {
    fn parts(s: &str) -> (bool, String, String) {
        let (neg, body) = match s.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, s),
        };
        let (i, f) = body.split_once('.').unwrap_or((body, ""));
        let i = i.trim_start_matches('0').to_string();
        let f = f.trim_end_matches('0').to_string();
        let zero = i.is_empty() && f.is_empty();
        (neg && !zero, i, f)
    }
    let (an, ai, af) = parts(a);
    let (bn, bi, bf) = parts(b);
    let magnitude = ai.len().cmp(&bi.len()).then_with(|| ai.cmp(&bi)).then_with(|| af.cmp(&bf));
    match (an, bn) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
    }
}

/// An RFC 3339 instant as the store keeps it: UTC, milliseconds, `Z`.
pub fn normalize_datetime(s: &str) -> Option<String> {
    if !charter_model::is_valid_datetime(s) {
        return None;
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let t = t.to_offset(time::UtcOffset::UTC);
    if !(1..=9999).contains(&t.year()) {
        return None;
    }
    Some(format_utc(t))
}

fn format_utc(t: time::OffsetDateTime) -> String {
    t.format(&time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z")).expect("formats")
}

/// A query-string value as the field's typed value.
fn query_value(f: &Field, s: &str) -> Result<DbValue, String> {
    if s.contains('\0') {
        return Err("values cannot contain NUL characters".into());
    }
    Ok(match &f.ty {
        FieldType::Int => DbValue::Integer(s.parse().map_err(|_| format!("`{s}` is not a whole number in 64 bits"))?),
        FieldType::Decimal => {
            if !charter_model::is_valid_decimal(s) {
                return Err(format!("`{s}` is not a decimal number"));
            }
            DbValue::Decimal(s.to_string())
        }
        FieldType::Bool => match s {
            "true" => DbValue::Boolean(true),
            "false" => DbValue::Boolean(false),
            _ => return Err(format!("`{s}` is not `true` or `false`")),
        },
        FieldType::Date => {
            if !charter_model::is_valid_date(s) {
                return Err(format!("`{s}` is not a date (YYYY-MM-DD)"));
            }
            DbValue::Date(s.to_string())
        }
        FieldType::DateTime => DbValue::DateTime(normalize_datetime(s).ok_or_else(|| format!("`{s}` is not an RFC 3339 date and time"))?),
        FieldType::Enum(members) => {
            if !members.iter().any(|m| m == s) {
                return Err(format!("`{s}` is not one of {}", members.join(", ")));
            }
            DbValue::Text(s.to_string())
        }
        FieldType::Json => return Err("json fields cannot be filtered".into()),
        FieldType::Text | FieldType::Email | FieldType::Url | FieldType::Role | FieldType::Ref(_) | FieldType::Id => {
            DbValue::Text(s.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_compare_exactly() {
        assert_eq!(cmp_decimal("1.50", "1.5"), Ordering::Equal);
        assert_eq!(cmp_decimal("-0", "0.000"), Ordering::Equal);
        assert_eq!(cmp_decimal("10", "9.999"), Ordering::Greater);
        assert_eq!(cmp_decimal("-10", "-9.999"), Ordering::Less);
        assert_eq!(cmp_decimal("0.1", "0.09"), Ordering::Greater);
        assert_eq!(cmp_decimal("007", "7.0"), Ordering::Equal);
    }

    #[test]
    fn datetimes_normalise_to_utc_milliseconds() {
        assert_eq!(normalize_datetime("2025-01-02T03:04:05Z").unwrap(), "2025-01-02T03:04:05.000Z");
        assert_eq!(normalize_datetime("2025-01-02T03:04:05.123456+02:00").unwrap(), "2025-01-02T01:04:05.123Z");
        assert_eq!(normalize_datetime("2025-01-01T00:30:00+01:00").unwrap(), "2024-12-31T23:30:00.000Z");
        assert!(normalize_datetime("0001-01-01T00:00:00+01:00").is_none(), "year 0 after conversion");
        assert!(normalize_datetime("2025-01-02 03:04:05Z").is_none());
        assert!(normalize_datetime("yesterday").is_none());
    }

    #[test]
    fn if_match_headers() {
        assert_eq!(IfMatch::parse(None), IfMatch::Absent);
        assert_eq!(IfMatch::parse(Some("\"3\"")), IfMatch::Version(3));
        assert_eq!(IfMatch::parse(Some("W/\"7\"")), IfMatch::Version(7));
        assert_eq!(IfMatch::parse(Some("*")), IfMatch::Any);
        assert_eq!(IfMatch::parse(Some("3")), IfMatch::Never, "unquoted is not an entity tag");
        assert_eq!(IfMatch::parse(Some("\"abc\"")), IfMatch::Never);
    }

    #[test]
    fn web_urls_only() {
        assert!(is_web_url("https://example.com/a?b=c"));
        assert!(is_web_url("http://localhost:8080"));
        assert!(!is_web_url("javascript:alert(1)"));
        assert!(!is_web_url("ftp://example.com"));
        assert!(!is_web_url("https://"));
        assert!(!is_web_url("example.com"));
    }
}
