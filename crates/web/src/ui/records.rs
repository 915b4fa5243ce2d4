//! Entity pages: list, detail, create, edit and delete for every entity,
//! all through the records use cases with the viewer's session.

use super::form::{self, FormData};
use super::view::{self, Labels};
use super::{
    base_path, entity_label, entity_plural_label, fail, humanize, may, new_key, query_param, redirect, render, to_login, urlencode, Page,
    Ui, Viewer,
};
use crate::SharedApp;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use charter_app::{AppError, FieldError};
use charter_model::{Action, Builtin, Entity, EntityId, Field, FieldType, USER};
use charter_store::Record;
use serde_json::{json, Map, Value as J};
use std::sync::Arc;

type UiExt = Extension<Arc<Ui>>;

pub fn routes(app: &SharedApp) -> Router<SharedApp> {
    let mut router = Router::new().route("/", get(home));
    for e in &app.model.entities {
        let id = e.id;
        let base = base_path(e);
        router = router
            .route(&base, get(move |s, u, v| list(s, u, v, id)).post(move |s, u, v, f| create(s, u, v, id, f)))
            .route(&format!("{base}/new"), get(move |s, u, v| new(s, u, v, id)))
            .route(&format!("{base}/{{id}}"), get(move |s, u, v, p| detail(s, u, v, p, id)))
            .route(
                &format!("{base}/{{id}}/edit"),
                get(move |s, u, v, p| edit(s, u, v, p, id)).post(move |s, u, v, p, f| save(s, u, v, p, id, f)),
            )
            .route(
                &format!("{base}/{{id}}/delete"),
                get(move |s, u, v, p| confirm_delete(s, u, v, p, id)).post(move |s, u, v, p, f| delete(s, u, v, p, id, f)),
            );
    }
    router
}

async fn home(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer) -> Response {
    if viewer.session.is_none() {
        let public: Vec<&Entity> = app.model.entities.iter().filter(|e| super::in_nav(e, viewer.who())).collect();
        if public.is_empty() {
            return redirect("/login");
        }
    }
    let who = viewer.who();
    let cards: Vec<J> = app
        .model
        .entities
        .iter()
        .filter(|e| super::in_nav(e, who))
        .map(|e| {
            json!({
                "label": entity_plural_label(e),
                "href": base_path(e),
                "description": e.description,
                "create": may(e, Action::Create, who).then(|| format!("{}/new", base_path(e))),
                "singular": entity_label(e).to_lowercase(),
            })
        })
        .collect();
    let name = app.model.name.clone();
    render(&app, &ui, &viewer, Page::new("home.html", name, json!({"cards": cards})))
}

/// The query a list page passes on to the records use case: its own
/// parameters, with `q` (search) turned into a `contains` filter on the
/// display field and empty filter inputs dropped.
fn list_query(e: &Entity, here: &str) -> (String, Vec<(String, String)>) {
    let q = here.split_once('?').map_or("", |(_, q)| q);
    let display = e.display_field();
    let mut api = form_urlencoded::Serializer::new(String::new());
    let mut kept = Vec::new();
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        if v.is_empty() || k == "n" {
            continue;
        }
        if k == "q" {
            if display.ty.is_textual() {
                api.append_pair(&format!("{}__contains", display.name), &v);
            }
        } else {
            api.append_pair(&k, &v);
        }
        kept.push((k.into_owned(), v.into_owned()));
    }
    (api.finish(), kept)
}

fn encode(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Fields shown as list columns: the display field first, then the
/// declared short fields (long text and JSON stay on the detail page).
fn columns(e: &Entity) -> Vec<&Field> {
    let display = e.display_field();
    let mut cols = vec![display];
    for f in e.fields.iter() {
        if std::ptr::eq(f, display) || matches!(f.builtin, Some(Builtin::Id | Builtin::Version | Builtin::UpdatedAt)) {
            continue;
        }
        if f.builtin.is_some() && e.id != USER && f.builtin != Some(Builtin::CreatedAt) {
            continue;
        }
        let long =
            f.ty == FieldType::Json || (f.ty == FieldType::Text && !matches!(f.max, Some(charter_model::Bound::Length(n)) if n <= 200));
        if !long {
            cols.push(f);
        }
    }
    // Creation time last.
    let (mut rest, created): (Vec<&Field>, Vec<&Field>) = cols.into_iter().partition(|f| f.builtin != Some(Builtin::CreatedAt));
    rest.extend(created);
    rest.truncate(7);
    rest
}

async fn list(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer, entity: EntityId) -> Response {
    let e = app.model.entity(entity);
    let who = viewer.who();
    if !may(e, Action::Read, who) {
        return if viewer.session.is_none() {
            to_login(&app, &viewer)
        } else {
            super::error_page(&app, &ui, &viewer, StatusCode::NOT_FOUND)
        };
    }
    let caller = viewer.caller();
    let (api_query, kept) = list_query(e, &viewer.here);
    let (page, problem) = match app.list_records(&caller, entity, &api_query).await {
        Ok(p) => (Some(p), None),
        Err(AppError::BadRequest(m)) => (None, Some(form::plain(&m))),
        Err(err) => return fail(&app, &ui, &viewer, err),
    };
    let items = page.as_ref().map(|p| p.items.clone()).unwrap_or_default();
    let labels = match Labels::of(&app, &caller, e, &items).await {
        Ok(l) => l,
        Err(err) => return fail(&app, &ui, &viewer, err),
    };
    let cols = columns(e);
    let base = base_path(e);
    let sort = kept.iter().find(|(k, _)| k == "sort").map(|(_, v)| v.clone()).unwrap_or_else(|| "-created_at".into());
    let without =
        |names: &[&str]| -> Vec<(String, String)> { kept.iter().filter(|(k, _)| !names.contains(&k.as_str())).cloned().collect() };
    let headers: Vec<J> = cols
        .iter()
        .map(|f| {
            let sortable = f.ty != FieldType::Json && !(e.id == USER && f.builtin == Some(Builtin::Email));
            let (next, dir) = if sort == f.name {
                (format!("-{}", f.name), "ascending")
            } else if sort == format!("-{}", f.name) {
                (f.name.clone(), "descending")
            } else {
                (f.name.clone(), "none")
            };
            let mut pairs = without(&["sort", "after"]);
            pairs.push(("sort".into(), next));
            json!({"label": humanize(&f.name), "href": sortable.then(|| format!("{base}?{}", encode(&pairs))), "sort": dir})
        })
        .collect();
    let rows: Vec<J> = items
        .iter()
        .map(|r| {
            let id = r.get("id").and_then(J::as_str).unwrap_or("");
            let cells: Vec<J> = cols.iter().map(|f| view::cell(&app, f, r, &labels)).collect();
            json!({"id": id, "href": format!("{base}/{id}"), "cells": cells})
        })
        .collect();
    let next = page.as_ref().and_then(|p| p.next.clone()).map(|cursor| {
        let mut pairs = without(&["after"]);
        pairs.push(("after".into(), cursor));
        format!("{base}?{}", encode(&pairs))
    });
    let first = kept.iter().any(|(k, _)| k == "after").then(|| {
        let pairs = without(&["after"]);
        if pairs.is_empty() {
            base.clone()
        } else {
            format!("{base}?{}", encode(&pairs))
        }
    });
    let filtering = kept.iter().any(|(k, _)| k != "sort" && k != "after");
    // The filter box shows only over rows, filters or a refused query (an
    // empty list shows its empty state instead): only then are its
    // reference options (a list query each) worth reading.
    let shows_filters = !items.is_empty() || filtering || problem.is_some();
    let filters = if shows_filters {
        match filter_inputs(&app, &caller, e, &kept).await {
            Ok(f) => f,
            Err(err) => return fail(&app, &ui, &viewer, err),
        }
    } else {
        Vec::new()
    };
    let label = entity_plural_label(e);
    let data = json!({
        "entity": {"label": label, "singular": entity_label(e).to_lowercase(), "base": base, "description": e.description},
        "headers": headers,
        "rows": rows,
        "next": next,
        "first": first,
        "filtering": filtering,
        "filters": filters,
        "search": e.display_field().ty.is_textual().then(|| json!({"label": format!("Search {}", humanize(&e.display_field().name).to_lowercase()), "value": query_param(&viewer.here, "q")})),
        "sort": sort,
        "problem": problem,
        "create": may(e, Action::Create, who).then(|| format!("{base}/new")),
    });
    render(&app, &ui, &viewer, Page::new("list.html", label, data))
}

/// The filter inputs of a list: enum, bool and reference fields.
async fn filter_inputs(app: &SharedApp, caller: &charter_store::Caller, e: &Entity, kept: &[(String, String)]) -> Result<Vec<J>, AppError> {
    let mut out = Vec::new();
    for f in e.declared_fields() {
        let current = kept.iter().find(|(k, _)| *k == f.name).map(|(_, v)| v.clone()).unwrap_or_default();
        let options: Vec<(String, String)> = match &f.ty {
            FieldType::Enum(members) => members.iter().map(|m| (m.clone(), humanize(m))).collect(),
            FieldType::Bool => vec![("true".into(), "Yes".into()), ("false".into(), "No".into())],
            FieldType::Ref(t) => match reference_options(app, caller, *t).await? {
                Some(o) => o,
                None => continue,
            },
            _ => continue,
        };
        let opts: Vec<J> = options.into_iter().map(|(v, l)| json!({"selected": v == current, "value": v, "label": l})).collect();
        out.push(json!({"name": f.name, "label": humanize(&f.name), "options": opts}));
    }
    Ok(out)
}

/// The rows of `target` a person can pick for a reference: those the
/// caller may read, by label. `None` when they may read none at all.
async fn reference_options(
    app: &SharedApp,
    caller: &charter_store::Caller,
    target: EntityId,
) -> Result<Option<Vec<(String, String)>>, AppError> {
    let t = app.model.entity(target);
    let shown = t.display_field();
    let sort = if shown.ty.is_textual() && shown.builtin != Some(Builtin::Email) { shown.name.clone() } else { "-created_at".into() };
    let query = format!("sort={}&limit={}", urlencode(&sort), charter_app::records::MAX_LIMIT);
    match app.list_records(caller, target, &query).await {
        Ok(page) => Ok(Some(page.items.iter().filter_map(|r| Some((r.get("id")?.as_str()?.to_string(), view::label_of(r, t)))).collect())),
        Err(AppError::Unauthorized | AppError::Forbidden { .. } | AppError::BadRequest(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn detail(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer, Path(id): Path<String>, entity: EntityId) -> Response {
    let e = app.model.entity(entity);
    let caller = viewer.caller();
    let record = match app.get_record(&caller, entity, &id).await {
        Ok(r) => r,
        Err(AppError::NotFound) if viewer.session.is_none() => return to_login(&app, &viewer),
        Err(err) => return fail(&app, &ui, &viewer, err),
    };
    let labels = match Labels::of(&app, &caller, e, std::slice::from_ref(&record)).await {
        Ok(l) => l,
        Err(err) => return fail(&app, &ui, &viewer, err),
    };
    let who = viewer.who();
    let base = base_path(e);
    // Declared fields first, then the record's own times.
    let shown = |f: &&Field| !matches!(f.builtin, Some(Builtin::Id | Builtin::Version)) && record.contains_key(&f.name);
    let (times, rest): (Vec<&Field>, Vec<&Field>) =
        e.fields.iter().filter(shown).partition(|f| matches!(f.builtin, Some(Builtin::CreatedAt | Builtin::UpdatedAt)));
    let fields: Vec<J> = rest.into_iter().chain(times).map(|f| view::cell(&app, f, &record, &labels)).collect();
    // Rows of other entities that point here, the caller's view of them.
    let mut related = Vec::new();
    for other in &app.model.entities {
        for f in other.declared_fields() {
            if f.ty != FieldType::Ref(entity) || !may(other, Action::Read, who) {
                continue;
            }
            let query = format!("{}={}&limit=50", f.name, urlencode(&id));
            let Ok(page) = app.list_records(&caller, other.id, &query).await else { continue };
            let obase = base_path(other);
            let rows: Vec<J> = page
                .items
                .iter()
                .map(|r| {
                    let rid = r.get("id").and_then(J::as_str).unwrap_or("");
                    json!({"label": view::label_of(r, other), "href": format!("{obase}/{rid}")})
                })
                .collect();
            let title = if other.declared_fields().filter(|g| g.ty == FieldType::Ref(entity)).count() > 1 {
                format!("{} ({})", entity_plural_label(other), humanize(&f.name).to_lowercase())
            } else {
                entity_plural_label(other)
            };
            related.push(json!({
                "title": title,
                "singular": entity_label(other).to_lowercase(),
                "rows": rows,
                "more": page.next.is_some().then(|| format!("{obase}?{}={}", f.name, urlencode(&id))),
                "create": may(other, Action::Create, who).then(|| format!("{obase}/new?{}={}", f.name, urlencode(&id))),
            }));
        }
    }
    let title = view::label_of(&record, e);
    let data = json!({
        "entity": {"label": entity_plural_label(e), "singular": entity_label(e), "base": base},
        "record": {"id": id, "title": title, "fields": fields},
        "edit": may(e, Action::Update, who).then(|| format!("{base}/{id}/edit")),
        "delete": (e.id != USER && may(e, Action::Delete, who)).then(|| format!("{base}/{id}/delete")),
        "related": related,
    });
    render(&app, &ui, &viewer, Page::new("detail.html", title, data))
}

/// Whether some role may change `User.role` (the edit form then offers it;
/// the server decides for each request).
fn role_editable(app: &SharedApp, viewer: &Viewer) -> bool {
    let user = app.model.user();
    user.field_by_name("role")
        .and_then(|(fid, _)| user.permissions.field_rule(Action::Update, fid))
        .is_some_and(|rule| !charter_app::permissions::verdict(Some(rule), viewer.who()).never())
}

/// Everything a record form page needs.
struct FormPage<'a> {
    e: &'a Entity,
    creating: bool,
    id: Option<String>,
    values: Map<String, J>,
    errors: Vec<FieldError>,
    alert: Option<String>,
    version: Option<i64>,
    stale: bool,
}

async fn form_page(app: &SharedApp, ui: &Ui, viewer: &Viewer, p: FormPage<'_>, status: StatusCode) -> Response {
    let caller = viewer.caller();
    let fields = form::editable_fields(p.e, p.creating, role_editable(app, viewer));
    let mut inputs = Vec::new();
    let mut first_error = true;
    for f in &fields {
        let options = match f.ty {
            FieldType::Ref(t) => match reference_options(app, &caller, t).await {
                Ok(o) => Some(o.unwrap_or_default()),
                Err(err) => return fail(app, ui, viewer, err),
            },
            _ => None,
        };
        let error = p.errors.iter().find(|x| x.field == f.name).map(|x| form::friendly(f, x));
        let mut input = form::input(&app.model, f, p.values.get(&f.name), error.clone(), options);
        if error.is_some() && first_error {
            input["autofocus"] = J::Bool(true);
            first_error = false;
        }
        inputs.push(input);
    }
    // Errors about fields the form does not show still need saying.
    let shown: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    let mut others: Vec<String> = p.errors.iter().filter(|x| !shown.contains(&x.field.as_str())).map(|x| form::plain(&x.message)).collect();
    if let Some(a) = &p.alert {
        others.insert(0, a.clone());
    }
    let base = base_path(p.e);
    let singular = entity_label(p.e);
    let (title, action, cancel) = match &p.id {
        None => (format!("New {}", singular.to_lowercase()), base.clone(), base.clone()),
        Some(id) => (format!("Edit {}", singular.to_lowercase()), format!("{base}/{id}/edit"), format!("{base}/{id}")),
    };
    let data = json!({
        "entity": {"label": entity_plural_label(p.e), "singular": singular, "base": base},
        "form": {
            "action": action,
            "cancel": cancel,
            "inputs": inputs,
            "alerts": others,
            "creating": p.creating,
            "key": p.creating.then(new_key),
            "version": p.version,
            "stale": p.stale,
            "reload": p.id.as_ref().map(|id| format!("{base}/{id}/edit")),
            "submit": if p.creating { format!("Create {}", singular.to_lowercase()) } else { "Save changes".to_string() },
        },
    });
    render(app, ui, viewer, Page::new("form.html", title, data).status(status))
}

async fn new(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer, entity: EntityId) -> Response {
    let e = app.model.entity(entity);
    if viewer.session.is_none() && !may(e, Action::Create, viewer.who()) {
        return to_login(&app, &viewer);
    }
    if !may(e, Action::Create, viewer.who()) {
        return super::error_page(&app, &ui, &viewer, StatusCode::FORBIDDEN);
    }
    // Literal defaults, then values given in the address (`?project=ID`
    // from a project's "add task" link).
    let mut values = Map::new();
    for f in e.declared_fields() {
        if let Some(v) = form::initial(f) {
            values.insert(f.name.clone(), v);
        }
        if let Some(v) = query_param(&viewer.here, &f.name) {
            values.insert(f.name.clone(), J::String(v));
        }
    }
    let p = FormPage { e, creating: true, id: None, values, errors: vec![], alert: None, version: None, stale: false };
    form_page(&app, &ui, &viewer, p, StatusCode::OK).await
}

/// Refuses a form whose CSRF token does not match: the form is shown
/// again with a fresh token and the person's input.
fn csrf_alert() -> String {
    "This form had expired, so nothing was saved. Check the values and submit again.".into()
}

async fn create(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer, entity: EntityId, form: FormData) -> Response {
    let e = app.model.entity(entity);
    if viewer.session.is_none() && viewer.expired {
        return to_login(&app, &viewer);
    }
    let fields = form::editable_fields(e, true, false);
    let again = |errors: Vec<FieldError>, alert: Option<String>, status: StatusCode| {
        let values = form::submitted(&fields, &form);
        let p = FormPage { e, creating: true, id: None, values, errors, alert, version: None, stale: false };
        form_page(&app, &ui, &viewer, p, status)
    };
    if !viewer.csrf_ok(&app, &form) {
        return again(vec![], Some(csrf_alert()), StatusCode::FORBIDDEN).await;
    }
    let body = form::to_body(&fields, &form, true);
    let caller = viewer.caller();
    let key = form.get("_key").filter(|k| !k.is_empty() && k.len() <= 64);
    match app.create_record_keyed(&caller, entity, key, &body).await {
        Ok(record) => {
            let id = record.get("id").and_then(J::as_str).unwrap_or_default();
            redirect(&format!("{}/{id}?n=created", base_path(e)))
        }
        Err(err) => match written_error(err) {
            Ok((errors, alert, status)) => again(errors, alert, status).await,
            Err(err) => fail(&app, &ui, &viewer, err),
        },
    }
}

/// A write's error as what the form says: field errors, an alert, a status.
#[allow(clippy::type_complexity)]
fn written_error(err: AppError) -> Result<(Vec<FieldError>, Option<String>, StatusCode), AppError> {
    Ok(match err {
        AppError::Validation(errors) => {
            (errors, Some("Some fields need your attention; see below.".into()), StatusCode::UNPROCESSABLE_ENTITY)
        }
        AppError::Unique { field } => {
            (vec![FieldError::new(&field, "unique", format!("Another record already has this {field}."))], None, StatusCode::CONFLICT)
        }
        AppError::Conflict(m) => (vec![], Some(m), StatusCode::CONFLICT),
        AppError::Forbidden { detail, .. } => (vec![], Some(form::plain(&detail)), StatusCode::FORBIDDEN),
        AppError::TooManyRequests { .. } => {
            (vec![], Some("Too many requests; wait a moment and submit again.".into()), StatusCode::TOO_MANY_REQUESTS)
        }
        other => return Err(other),
    })
}

async fn edit(State(app): State<SharedApp>, Extension(ui): UiExt, viewer: Viewer, Path(id): Path<String>, entity: EntityId) -> Response {
    let e = app.model.entity(entity);
    let caller = viewer.caller();
    let record = match app.get_record(&caller, entity, &id).await {
        Ok(r) => r,
        Err(AppError::NotFound) if viewer.session.is_none() => return to_login(&app, &viewer),
        Err(err) => return fail(&app, &ui, &viewer, err),
    };
    if !may(e, Action::Update, viewer.who()) {
        return super::error_page(&app, &ui, &viewer, StatusCode::FORBIDDEN);
    }
    let version = record.get("version").and_then(J::as_i64);
    let values: Map<String, J> = record.into_iter().collect();
    let p = FormPage { e, creating: false, id: Some(id), values, errors: vec![], alert: None, version, stale: false };
    form_page(&app, &ui, &viewer, p, StatusCode::OK).await
}

async fn save(
    State(app): State<SharedApp>,
    Extension(ui): UiExt,
    viewer: Viewer,
    Path(id): Path<String>,
    entity: EntityId,
    form: FormData,
) -> Response {
    let e = app.model.entity(entity);
    if viewer.session.is_none() {
        return to_login(&app, &viewer);
    }
    let fields = form::editable_fields(e, false, role_editable(&app, &viewer));
    let version = form.version();
    let again = |errors: Vec<FieldError>, alert: Option<String>, stale: bool, status: StatusCode| {
        let values = form::submitted(&fields, &form);
        let p = FormPage { e, creating: false, id: Some(id.clone()), values, errors, alert, version, stale };
        form_page(&app, &ui, &viewer, p, status)
    };
    if !viewer.csrf_ok(&app, &form) {
        return again(vec![], Some(csrf_alert()), false, StatusCode::FORBIDDEN).await;
    }
    let body = form::to_body(&fields, &form, false);
    let caller = viewer.caller();
    match app.update_record(&caller, entity, &id, &body, form.if_match()).await {
        Ok(_) => redirect(&format!("{}/{id}?n=saved", base_path(e))),
        Err(AppError::PreconditionFailed { .. }) => again(vec![], None, true, StatusCode::PRECONDITION_FAILED).await,
        Err(err) => match written_error(err) {
            Ok((errors, alert, status)) => again(errors, alert, false, status).await,
            Err(err) => fail(&app, &ui, &viewer, err),
        },
    }
}

async fn confirm_delete(
    State(app): State<SharedApp>,
    Extension(ui): UiExt,
    viewer: Viewer,
    Path(id): Path<String>,
    entity: EntityId,
) -> Response {
    let e = app.model.entity(entity);
    let record = match app.get_record(&viewer.caller(), entity, &id).await {
        Ok(r) => r,
        Err(AppError::NotFound) if viewer.session.is_none() => return to_login(&app, &viewer),
        Err(err) => return fail(&app, &ui, &viewer, err),
    };
    delete_page(&app, &ui, &viewer, e, &record, None, StatusCode::OK)
}

fn delete_page(
    app: &SharedApp,
    ui: &Ui,
    viewer: &Viewer,
    e: &Entity,
    record: &Record,
    alert: Option<String>,
    status: StatusCode,
) -> Response {
    let id = record.get("id").and_then(J::as_str).unwrap_or_default();
    let base = base_path(e);
    let title = view::label_of(record, e);
    let cascades: Vec<String> = app
        .model
        .entities
        .iter()
        .filter(|o| o.declared_fields().any(|f| f.ty == FieldType::Ref(e.id) && f.on_delete == Some(charter_model::OnDelete::Cascade)))
        .map(|o| entity_plural_label(o).to_lowercase())
        .collect();
    let data = json!({
        "entity": {"label": entity_plural_label(e), "singular": entity_label(e), "base": base},
        "record": {"id": id, "title": title, "href": format!("{base}/{id}")},
        "version": record.get("version"),
        "cascades": cascades,
        "alert": alert,
    });
    render(app, ui, viewer, Page::new("delete.html", format!("Delete {title}?"), data).status(status))
}

async fn delete(
    State(app): State<SharedApp>,
    Extension(ui): UiExt,
    viewer: Viewer,
    Path(id): Path<String>,
    entity: EntityId,
    form: FormData,
) -> Response {
    let e = app.model.entity(entity);
    if viewer.session.is_none() {
        return to_login(&app, &viewer);
    }
    let caller = viewer.caller();
    let record = match app.get_record(&caller, entity, &id).await {
        Ok(r) => r,
        Err(err) => return fail(&app, &ui, &viewer, err),
    };
    if !viewer.csrf_ok(&app, &form) {
        return delete_page(&app, &ui, &viewer, e, &record, Some(csrf_alert()), StatusCode::FORBIDDEN);
    }
    match app.delete_record(&caller, entity, &id, form.if_match()).await {
        Ok(()) => redirect(&format!("{}?n=deleted", base_path(e))),
        Err(AppError::PreconditionFailed { .. }) => {
            let fresh = app.get_record(&caller, entity, &id).await.unwrap_or(record);
            let alert = "Someone changed this record since you opened this page. Look at it again before deleting.".to_string();
            delete_page(&app, &ui, &viewer, e, &fresh, Some(alert), StatusCode::PRECONDITION_FAILED)
        }
        Err(AppError::Conflict(m)) => delete_page(&app, &ui, &viewer, e, &record, Some(m), StatusCode::CONFLICT),
        Err(err) => fail(&app, &ui, &viewer, err),
    }
}
