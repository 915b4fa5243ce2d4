//! HTML forms: reading a urlencoded body, turning an entity form into the
//! JSON body the records use case takes, and describing the inputs of a
//! form (with values and errors) for the templates.

use super::humanize;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use charter_app::FieldError;
use charter_model::{AppModel, Bound, Builtin, DefaultValue, Entity, Field, FieldType};
use serde_json::{json, Map, Value as J};

/// A submitted form, in order, keys possibly repeated.
#[derive(Debug, Default, Clone)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The version the form was opened at (its hidden `_version`).
    pub fn version(&self) -> Option<i64> {
        self.get("_version").and_then(|v| v.parse::<i64>().ok())
    }

    /// `If-Match` for a write from this form: the version it was opened at.
    pub fn if_match(&self) -> charter_app::records::IfMatch {
        self.version().map_or(charter_app::records::IfMatch::Absent, charter_app::records::IfMatch::Version)
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

impl<S: Send + Sync> FromRequest<S> for FormData {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let urlencoded = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
        if !urlencoded {
            return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "Send the form as application/x-www-form-urlencoded.").into_response());
        }
        let bytes =
            Bytes::from_request(req, state).await.map_err(|_| (StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.").into_response())?;
        Ok(FormData(form_urlencoded::parse(&bytes).map(|(k, v)| (k.into_owned(), v.replace("\r\n", "\n"))).collect()))
    }
}

/// The fields a person edits in a form for this entity: declared fields
/// that are not read only, and for `User` the name (and the role when the
/// spec lets some role change it; the server decides per request).
pub fn editable_fields(e: &Entity, creating: bool, role_editable: bool) -> Vec<&Field> {
    e.fields
        .iter()
        .filter(|f| match f.builtin {
            None => !f.read_only,
            Some(Builtin::Name) => !creating,
            Some(Builtin::Role) => !creating && role_editable,
            Some(_) => false,
        })
        .collect()
}

/// Turns the submitted values of `fields` into a JSON body. Empty inputs
/// are left out on create (so defaults apply and `required` speaks) and
/// sent as `null` on edit (clearing the field). Values that are not of the
/// field's type are sent as text, so the use case reports them.
pub fn to_body(fields: &[&Field], form: &FormData, creating: bool) -> J {
    let mut body = Map::new();
    for f in fields {
        let raw = form.get(&f.name);
        let value = match &f.ty {
            FieldType::Bool => {
                // A checkbox sends a value only when ticked; the hidden
                // `_present_<name>` says the box was on the form.
                if !form.has(&format!("_present_{}", f.name)) && raw.is_none() {
                    continue;
                }
                J::Bool(raw.is_some_and(|v| v == "true" || v == "on"))
            }
            _ => {
                let Some(raw) = raw else { continue };
                let text =
                    if f.ty == FieldType::Json || matches!(f.ty, FieldType::Text) { raw.to_string() } else { raw.trim().to_string() };
                if text.trim().is_empty() {
                    if creating {
                        continue;
                    }
                    J::Null
                } else {
                    typed(&f.ty, &text)
                }
            }
        };
        body.insert(f.name.clone(), value);
    }
    J::Object(body)
}

fn typed(ty: &FieldType, text: &str) -> J {
    match ty {
        FieldType::Int => text.parse::<i64>().map_or_else(|_| J::String(text.into()), J::from),
        FieldType::Json => serde_json::from_str(text).unwrap_or_else(|_| J::String(text.into())),
        // `datetime-local` gives `2026-11-27T10:30`; the UI speaks UTC.
        FieldType::DateTime => {
            let t = text.trim();
            let t = if t.len() == 16 {
                format!("{t}:00Z")
            } else if t.len() == 19 {
                format!("{t}Z")
            } else {
                t.to_string()
            };
            J::String(t)
        }
        _ => J::String(text.into()),
    }
}

/// Words a person understands for a field error.
pub fn friendly(f: &Field, error: &FieldError) -> String {
    let label = humanize(&f.name).to_lowercase();
    let bound = |b: &Option<Bound>| match b {
        Some(Bound::Length(n)) => n.to_string(),
        Some(Bound::Int(n)) => n.to_string(),
        Some(Bound::Decimal(d)) | Some(Bound::Date(d)) => d.clone(),
        None => String::new(),
    };
    match error.code.as_str() {
        "required" => match &f.ty {
            FieldType::Ref(_) | FieldType::Enum(_) | FieldType::Role => format!("Choose a {label}."),
            _ => format!("Enter a {label}."),
        },
        "too_short" => {
            let n = bound(&f.min);
            if n == "1" {
                format!("Enter a {label}.")
            } else {
                format!("Use at least {n} characters.")
            }
        }
        "too_long" => format!("Use at most {} characters.", bound(&f.max)),
        "out_of_range" => match (&f.min, &f.max) {
            (Some(_), Some(_)) => format!("Enter a value from {} to {}.", bound(&f.min), bound(&f.max)),
            (Some(_), None) => format!("Enter a value of at least {}.", bound(&f.min)),
            (None, Some(_)) => format!("Enter a value of at most {}.", bound(&f.max)),
            (None, None) => "This number is too large.".into(),
        },
        "invalid_type" | "invalid_format" => match &f.ty {
            FieldType::Int => "Enter a whole number, like 42.".into(),
            FieldType::Decimal => "Enter a number, like 12.50.".into(),
            FieldType::Date => "Enter a date, like 2026-01-31.".into(),
            FieldType::DateTime => "Enter a date and time.".into(),
            FieldType::Email => "Enter an email address, like name@example.com.".into(),
            FieldType::Url => "Enter a web address starting with http:// or https://.".into(),
            FieldType::Json => "Enter valid JSON, like {\"key\": \"value\"}.".into(),
            _ => plain(&error.message),
        },
        "not_in_enum" => format!("Choose one of the {label} options."),
        "not_found" => format!("Choose a {label} from the list."),
        "pattern" => format!("This {label} is not in the expected format."),
        "unique" => format!("Another record already has this {label}. Choose a different one."),
        "read_only" => format!("The {label} cannot be changed here."),
        _ => plain(&error.message),
    }
}

/// An API message without its code quoting: "`name` must ..." -> "name must ...".
pub fn plain(message: &str) -> String {
    message.replace('`', "")
}

/// One input of a form, for the templates.
pub fn input(model: &AppModel, f: &Field, value: Option<&J>, error: Option<String>, options: Option<Vec<(String, String)>>) -> J {
    let label = humanize(&f.name);
    let text_value = |v: Option<&J>| -> String {
        match v {
            None | Some(J::Null) => String::new(),
            Some(J::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    };
    let (kind, extra) = match &f.ty {
        FieldType::Bool => ("checkbox", json!({"checked": value.and_then(J::as_bool).unwrap_or(false)})),
        FieldType::Enum(members) => {
            let current = text_value(value);
            let opts: Vec<J> = members.iter().map(|m| json!({"value": m, "label": humanize(m), "selected": *m == current})).collect();
            ("select", json!({"options": opts, "blank": !f.required || current.is_empty()}))
        }
        FieldType::Role => {
            let current = text_value(value);
            let opts: Vec<J> =
                model.roles.iter().map(|r| json!({"value": r.name, "label": humanize(&r.name), "selected": r.name == current})).collect();
            ("select", json!({"options": opts, "blank": false}))
        }
        FieldType::Ref(_) => {
            let current = text_value(value);
            let mut opts: Vec<J> = options
                .unwrap_or_default()
                .into_iter()
                .map(|(id, label)| json!({"selected": id == current, "value": id, "label": label}))
                .collect();
            if !current.is_empty() && !opts.iter().any(|o| o["selected"] == J::Bool(true)) {
                // The current target is not in the list (not readable, or beyond the first page).
                opts.insert(0, json!({"value": current, "label": "(current)", "selected": true}));
            }
            ("select", json!({"options": opts, "blank": !f.required || current.is_empty()}))
        }
        FieldType::Int => ("number", json!({"step": "1", "min": bound_text(&f.min), "max": bound_text(&f.max)})),
        FieldType::Decimal => ("text", json!({"inputmode": "decimal"})),
        FieldType::Date => ("date", json!({"min": bound_text(&f.min), "max": bound_text(&f.max)})),
        FieldType::DateTime => ("datetime-local", json!({})),
        FieldType::Email => ("email", json!({"autocomplete": "email"})),
        FieldType::Url => ("url", json!({"inputmode": "url"})),
        FieldType::Json => ("textarea", json!({"mono": true})),
        FieldType::Text => {
            let long = match &f.max {
                Some(Bound::Length(n)) => *n > 200,
                _ => true,
            };
            let lengths = json!({"maxlength": bound_text(&f.max), "minlength": bound_text(&f.min)});
            (if long { "textarea" } else { "text" }, lengths)
        }
        FieldType::Id => ("text", json!({})),
    };
    let value_text = match (&f.ty, value) {
        (FieldType::Json, Some(v)) if !v.is_null() && !v.is_string() => serde_json::to_string_pretty(v).unwrap_or_default(),
        (FieldType::DateTime, Some(J::String(s))) => s.trim_end_matches('Z').chars().take(16).collect(),
        _ => text_value(value),
    };
    let mut out = json!({
        "name": f.name,
        "label": label,
        "kind": kind,
        "value": value_text,
        "required": f.required,
        "error": error,
        "help": if f.description.is_empty() { None } else { Some(f.description.clone()) },
        "utc": f.ty == FieldType::DateTime,
    });
    if let (Some(o), J::Object(e)) = (out.as_object_mut(), extra) {
        o.extend(e);
    }
    out
}

fn bound_text(b: &Option<Bound>) -> Option<String> {
    match b {
        Some(Bound::Length(n)) => Some(n.to_string()),
        Some(Bound::Int(n)) => Some(n.to_string()),
        Some(Bound::Decimal(d)) | Some(Bound::Date(d)) => Some(d.clone()),
        None => None,
    }
}

/// The value a new record's form starts with: the literal default, if any.
pub fn initial(f: &Field) -> Option<J> {
    Some(match f.default.as_ref()? {
        DefaultValue::Bool(b) => J::Bool(*b),
        DefaultValue::Int(n) => J::from(*n),
        DefaultValue::Decimal(s) | DefaultValue::Text(s) | DefaultValue::Date(s) | DefaultValue::DateTime(s) | DefaultValue::Enum(s) => {
            J::String(s.clone())
        }
        DefaultValue::Json(s) => serde_json::from_str(s).unwrap_or(J::Null),
        DefaultValue::Me | DefaultValue::Now | DefaultValue::Today => return None,
    })
}

/// The values a form shows again after an error: what was typed.
pub fn submitted(fields: &[&Field], form: &FormData) -> Map<String, J> {
    let mut out = Map::new();
    for f in fields {
        let v = match f.ty {
            FieldType::Bool => J::Bool(form.get(&f.name).is_some_and(|v| v == "true" || v == "on")),
            _ => form.get(&f.name).map_or(J::Null, |s| J::String(s.to_string())),
        };
        out.insert(f.name.clone(), v);
    }
    out
}
