//! Records as people read them: values in words, references by the
//! referenced row's first text field (looked up with the viewer's own
//! permissions, so a row they cannot read is never named).

use super::{base_path, humanize};
use crate::SharedApp;
use charter_app::AppError;
use charter_model::{Entity, EntityId, Field, FieldType};
use charter_store::{Caller, Record};
use serde_json::{json, Value as J};
use std::collections::HashMap;

/// Labels of referenced rows, by entity and id.
#[derive(Default)]
pub struct Labels(HashMap<(EntityId, String), String>);

impl Labels {
    /// Looks up the labels of every reference in `records` the caller may read.
    pub async fn of(app: &SharedApp, caller: &Caller, e: &Entity, records: &[Record]) -> Result<Labels, AppError> {
        let mut labels = Labels::default();
        for f in &e.fields {
            let FieldType::Ref(target) = f.ty else { continue };
            let mut ids: Vec<String> = records.iter().filter_map(|r| r.get(&f.name).and_then(J::as_str)).map(str::to_string).collect();
            ids.sort();
            ids.dedup();
            labels.fetch(app, caller, target, &ids).await?;
        }
        Ok(labels)
    }

    async fn fetch(&mut self, app: &SharedApp, caller: &Caller, target: EntityId, ids: &[String]) -> Result<(), AppError> {
        let t = app.model.entity(target);
        for chunk in ids.chunks(charter_app::records::MAX_IN_VALUES) {
            let missing: Vec<&String> = chunk.iter().filter(|id| !self.0.contains_key(&(target, (*id).clone()))).collect();
            if missing.is_empty() {
                continue;
            }
            let list: Vec<String> = missing.iter().map(|s| s.to_string()).collect();
            let query = format!("id__in={}&limit={}", super::urlencode(&list.join(",")), charter_app::records::MAX_LIMIT);
            let page = match app.list_records(caller, target, &query).await {
                Ok(p) => p,
                // Lists the role may never read: no labels, ids stay unnamed.
                Err(AppError::Unauthorized | AppError::Forbidden { .. } | AppError::NotFound | AppError::BadRequest(_)) => continue,
                Err(e) => return Err(e),
            };
            for r in page.items {
                if let Some(id) = r.get("id").and_then(J::as_str) {
                    self.0.insert((target, id.to_string()), label_of(&r, t));
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, target: EntityId, id: &str) -> Option<&String> {
        self.0.get(&(target, id.to_string()))
    }
}

/// The label of a row of `e`: its display field; a user without a name by
/// the email address when the viewer may read it; else the id.
pub fn label_of(r: &Record, e: &Entity) -> String {
    let display = &e.display_field().name;
    match r.get(display) {
        Some(J::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(v) if !v.is_null() && !v.is_string() => v.to_string(),
        _ if e.builtin => r.get("email").and_then(J::as_str).map_or_else(|| "(no name)".to_string(), str::to_string),
        _ => r.get("id").and_then(J::as_str).unwrap_or("").to_string(),
    }
}

/// One field's value for display: `text`, and `href` for links.
pub fn cell(app: &SharedApp, f: &Field, r: &Record, labels: &Labels) -> J {
    let v = r.get(&f.name).unwrap_or(&J::Null);
    let (text, href, kind) = match (&f.ty, v) {
        (_, J::Null) => (String::new(), None, "empty"),
        (FieldType::Bool, J::Bool(b)) => ((if *b { "Yes" } else { "No" }).to_string(), None, "bool"),
        (FieldType::Enum(_), J::String(s)) | (FieldType::Role, J::String(s)) => (humanize(s), None, "enum"),
        (FieldType::Ref(t), J::String(id)) => match labels.get(*t, id) {
            Some(label) => (label.clone(), Some(format!("{}/{id}", base_path(app.model.entity(*t)))), "ref"),
            None => ("(not visible to you)".to_string(), None, "ref"),
        },
        (FieldType::DateTime, J::String(s)) => (datetime_text(s), None, "datetime"),
        (FieldType::Url, J::String(s)) => {
            let safe = s.starts_with("https://") || s.starts_with("http://");
            (s.clone(), safe.then(|| s.clone()), "url")
        }
        (FieldType::Json, v) => (serde_json::to_string_pretty(v).unwrap_or_default(), None, "json"),
        (_, J::String(s)) => (s.clone(), None, "text"),
        (_, other) => (other.to_string(), None, "text"),
    };
    json!({"name": f.name, "label": humanize(&f.name), "text": text, "href": href, "kind": kind, "external": f.ty == FieldType::Url})
}

/// `2026-11-27T08:37:48.721Z` as people read it: `2026-11-27 08:37 UTC`.
pub fn datetime_text(s: &str) -> String {
    match (s.get(..10), s.get(11..16)) {
        (Some(date), Some(time)) if s.as_bytes().get(10) == Some(&b'T') => format!("{date} {time} UTC"),
        _ => s.to_string(),
    }
}
