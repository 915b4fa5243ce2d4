//! Record routes for every entity: `/api/{plural}` and `/api/{plural}/{id}`,
//! plus `/api/users/me`. Handlers only translate HTTP to a use case and
//! back; validation and permissions live in `charter-app` and the store.

use crate::caller::Auth;
use crate::json::JsonBody;
use crate::problem::Problem;
use crate::SharedApp;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use charter_app::records::IfMatch;
use charter_model::{EntityId, USER};
use charter_store::Record;
use serde_json::Value as J;

/// The routes of every entity of the app's model.
pub fn routes(app: &SharedApp) -> Router<SharedApp> {
    let mut router = Router::new().route("/users/me", get(get_me).patch(patch_me));
    for e in &app.model.entities {
        let entity = e.id;
        router = router
            .route(
                &format!("/{}", e.plural),
                get(move |state, auth, query| list(state, auth, query, entity))
                    .post(move |state, auth, headers, body| create(state, auth, headers, body, entity)),
            )
            .route(
                &format!("/{}/{{id}}", e.plural),
                get(move |state, auth, id| read(state, auth, id, entity))
                    .patch(move |state, auth, id, headers, body| update(state, auth, id, headers, body, entity))
                    .delete(move |state, auth, id, headers| delete(state, auth, id, headers, entity)),
            );
    }
    router
}

fn etag(record: &Record) -> HeaderValue {
    let v = record.get("version").and_then(J::as_i64).unwrap_or_default();
    HeaderValue::from_str(&format!("\"{v}\"")).expect("digits and quotes")
}

fn with_etag(status: StatusCode, record: Record) -> Response {
    let tag = etag(&record);
    let mut res = (status, Json(J::Object(record))).into_response();
    res.headers_mut().insert(header::ETAG, tag);
    res
}

fn if_match(headers: &HeaderMap) -> IfMatch {
    IfMatch::parse(headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()))
}

async fn list(State(app): State<SharedApp>, Auth(caller): Auth, RawQuery(query): RawQuery, entity: EntityId) -> Result<Response, Problem> {
    let page = app.list_records(&caller, entity, query.as_deref().unwrap_or("")).await?;
    Ok(Json(page.to_json()).into_response())
}

async fn read(State(app): State<SharedApp>, Auth(caller): Auth, Path(id): Path<String>, entity: EntityId) -> Result<Response, Problem> {
    let record = app.get_record(&caller, entity, &id).await?;
    Ok(with_etag(StatusCode::OK, record))
}

async fn create(
    State(app): State<SharedApp>,
    Auth(caller): Auth,
    headers: HeaderMap,
    JsonBody(body): JsonBody<J>,
    entity: EntityId,
) -> Result<Response, Problem> {
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(v.to_str().map_err(|_| Problem::bad_request("`Idempotency-Key` must be visible ASCII."))?),
        None => None,
    };
    let record = app.create_record_keyed(&caller, entity, key, &body).await?;
    let id = record.get("id").and_then(J::as_str).unwrap_or_default().to_string();
    let mut res = with_etag(StatusCode::CREATED, record);
    let location = format!("/api/{}/{id}", app.model.entity(entity).plural);
    res.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).expect("ids are URL-safe"));
    Ok(res)
}

async fn update(
    State(app): State<SharedApp>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<J>,
    entity: EntityId,
) -> Result<Response, Problem> {
    let record = app.update_record(&caller, entity, &id, &body, if_match(&headers)).await?;
    Ok(with_etag(StatusCode::OK, record))
}

async fn delete(
    State(app): State<SharedApp>,
    Auth(caller): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    entity: EntityId,
) -> Result<Response, Problem> {
    app.delete_record(&caller, entity, &id, if_match(&headers)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_me(State(app): State<SharedApp>, Auth(caller): Auth) -> Result<Response, Problem> {
    let record = app.get_me(&caller).await?;
    Ok(with_etag(StatusCode::OK, record))
}

async fn patch_me(
    State(app): State<SharedApp>,
    Auth(caller): Auth,
    headers: HeaderMap,
    JsonBody(body): JsonBody<J>,
) -> Result<Response, Problem> {
    let record = app.update_me(&caller, &body, if_match(&headers)).await?;
    debug_assert_eq!(app.model.entity(USER).plural, "users");
    Ok(with_etag(StatusCode::OK, record))
}
