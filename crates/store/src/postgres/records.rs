//! Records on PostgreSQL, from the same dialect-aware SQL builder as
//! SQLite: the permission rule is part of every statement, so the two
//! backends agree by construction and the records suite runs on both.
//!
//! Every parameter is sent as text and cast in SQL (the builder writes
//! `$1::bigint`, `$2::timestamptz`, ...), which gives one parameter type
//! for every column and PostgreSQL's own parsing of decimals, dates and
//! instants. Every column is read back as text in the store's formats
//! (datetimes as `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC), so a record is the
//! same JSON whichever database holds it.
//!
//! Writes run in a transaction each. The row being changed is locked
//! (`FOR UPDATE`) while its rule and version are checked, so concurrent
//! writers with one `If-Match` get one success and the rest 412.

use super::PgDb;
use crate::records::*;
use crate::sqlite::idempotency::{Claim, KEEP_MS, LEASE_MS};
use crate::StoreError;
use charter_model::{Action, AppModel, Builtin, EntityId, Expr, FieldId, FieldType};
use charter_schema::{ColumnType, DbValue};
use std::sync::Arc;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::GenericClient;

const IDEMPOTENCY: &str = "_charter_idempotency";

pub struct PgRecords {
    db: PgDb,
    model: Arc<AppModel>,
    /// `statement_timeout` of every list (and its count), set with
    /// `SET LOCAL` in the list's read-only transaction.
    statement_timeout: Option<std::time::Duration>,
    /// The idempotency table is made on first use: record access is built
    /// synchronously, and most apps never see an `Idempotency-Key`.
    idempotency_ready: tokio::sync::OnceCell<()>,
}

type Param = Option<String>;

fn text_param(v: &DbValue) -> Param {
    match v {
        DbValue::Null => None,
        DbValue::Integer(n) => Some(n.to_string()),
        DbValue::Boolean(b) => Some(b.to_string()),
        DbValue::Text(s) | DbValue::Decimal(s) | DbValue::Date(s) | DbValue::DateTime(s) | DbValue::Json(s) => Some(s.clone()),
    }
}

async fn query<C: GenericClient>(c: &C, sql: &Sql) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let types = vec![Type::TEXT; sql.params.len()];
    let stmt = c.prepare_typed(&sql.text, &types).await?;
    let params: Vec<Param> = sql.params.iter().map(text_param).collect();
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        params.iter().map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
    c.query(&stmt, &refs).await
}

async fn execute<C: GenericClient>(c: &C, sql: &Sql) -> Result<u64, tokio_postgres::Error> {
    let types = vec![Type::TEXT; sql.params.len()];
    let stmt = c.prepare_typed(&sql.text, &types).await?;
    let params: Vec<Param> = sql.params.iter().map(text_param).collect();
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        params.iter().map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
    c.execute(&stmt, &refs).await
}

impl PgRecords {
    pub fn new(db: PgDb, model: Arc<AppModel>) -> PgRecords {
        PgRecords { db, model, statement_timeout: None, idempotency_ready: tokio::sync::OnceCell::new() }
    }

    /// Lists (and their counts) still running after `timeout` are cancelled by the server.
    pub fn with_statement_timeout(self, timeout: Option<std::time::Duration>) -> PgRecords {
        PgRecords { statement_timeout: timeout, ..self }
    }

    /// Auth storage on the same pool.
    pub(crate) fn auth(&self) -> super::auth::PgAuth {
        super::auth::PgAuth::new(self.db.clone(), self.model.clone())
    }

    async fn ensure_idempotency_table(&self) -> Result<(), StoreError> {
        self.idempotency_ready
            .get_or_try_init(|| async {
                let mut client = self.db.client().await?;
                let tx = client.transaction().await?;
                // CREATE ... IF NOT EXISTS races between processes; the lock
                // makes the second wait and then find the table.
                tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&IDEMPOTENCY]).await?;
                tx.batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS \"{IDEMPOTENCY}\" (
                        scope text NOT NULL,
                        key text NOT NULL,
                        request_hash text NOT NULL,
                        response text,
                        created_at bigint NOT NULL,
                        PRIMARY KEY (scope, key)
                    );
                    CREATE INDEX IF NOT EXISTS \"{IDEMPOTENCY}_created_at\" ON \"{IDEMPOTENCY}\" (created_at);"
                ))
                .await?;
                tx.commit().await?;
                Ok::<(), StoreError>(())
            })
            .await
            .map(|_| ())
    }

    pub async fn get(&self, entity: EntityId, caller: &Caller, id: &str) -> Result<Option<Record>, StoreError> {
        let model = &self.model;
        let mut sql = Sql::new(Dialect::Postgres);
        let select = select_list(&mut sql, model, entity, caller);
        let p = sql.param(DbValue::Text(id.to_string()), ColumnType::Text);
        let pred = predicate(&mut sql, model, entity, model.entity(entity).permissions.get(Action::Read), &RowSource::Alias("t"), caller);
        sql.push(&format!("SELECT {select} FROM {} t WHERE t.\"id\" = {p} AND {pred}", ident(&model.entity(entity).plural)));
        let client = self.db.client().await?;
        let rows = query(&**client, &sql).await?;
        Ok(rows.first().map(|r| row_to_record(model, entity, r, 0)))
    }

    pub async fn list(&self, entity: EntityId, caller: &Caller, q: &ListQuery) -> Result<Page, StoreError> {
        let model = &self.model;
        let e = model.entity(entity);
        let mut sql = Sql::new(Dialect::Postgres);
        let select = select_list(&mut sql, model, entity, caller);
        let mut wheres = vec![predicate(&mut sql, model, entity, e.permissions.get(Action::Read), &RowSource::Alias("t"), caller)];
        for f in &q.filters {
            wheres.push(filter_sql(&mut sql, model, entity, "t", f));
        }
        let mut keys: Vec<(String, ColumnType, bool)> = q
            .sort
            .iter()
            .map(|k| {
                let f = e.field(k.field);
                (f.name.clone(), column_type(&f.ty), k.descending)
            })
            .collect();
        let id_desc = keys.last().is_some_and(|k| k.2);
        keys.push(("id".into(), ColumnType::Text, id_desc));
        // The count ignores the cursor, so it is the same on every page. It
        // shares the parameters bound so far (select list and filters).
        let mut count_sql = sql.clone();
        count_sql.text = format!("SELECT count(*) FROM {} t WHERE {}", ident(&e.plural), wheres.join(" AND "));
        if let Some(after) = &q.after {
            if after.len() != keys.len() {
                return Err(StoreError::Internal("cursor does not match the sort keys".into()));
            }
            wheres.push(keyset_after(&mut sql, "t", &keys, after));
        }
        let order = order_by(&sql, "t", &keys);
        let limit = sql.param(DbValue::Integer(i64::from(q.limit) + 1), ColumnType::Integer);
        sql.push(&format!("SELECT {select} FROM {} t WHERE {} ORDER BY {order} LIMIT {limit}", ident(&e.plural), wheres.join(" AND ")));
        // Parameters of the select list are unused by the count text; PostgreSQL
        // refuses unused typed parameters only when it cannot infer them,
        // and every one here is typed, so binding them all is harmless.
        let count_sql = q.count.then_some(&count_sql);
        let mut client = self.db.client().await?;
        let (rows, count) = match self.statement_timeout {
            None => list_rows(&**client, &sql, count_sql).await?,
            Some(timeout) => {
                // SET LOCAL lasts until the transaction ends, so the pooled
                // connection goes back without it.
                let tx = client.build_transaction().read_only(true).start().await?;
                let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
                tx.batch_execute(&format!("SET LOCAL statement_timeout = {ms}")).await?;
                let found = list_rows(&*tx, &sql, count_sql).await?;
                tx.commit().await?;
                found
            }
        };
        let mut items: Vec<Record> = rows.iter().take(q.limit as usize).map(|r| row_to_record(model, entity, r, 0)).collect();
        let next = if rows.len() > q.limit as usize {
            let last = items.last().expect("limit >= 1");
            Some(keys.iter().map(|(name, _, _)| keyset_value(model, entity, name, last)).collect())
        } else {
            None
        };
        items.shrink_to_fit();
        Ok(Page { items, next, count: count.map(|n| n as u64) })
    }

    pub async fn create(
        &self,
        entity: EntityId,
        caller: &Caller,
        values: Vec<(FieldId, DbValue)>,
        rule: Option<Expr>,
    ) -> Result<Record, WriteError> {
        let model = &self.model;
        let e = model.entity(entity);
        let mut client = self.db.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        check_references(&*tx, model, entity, caller, &values).await?;
        let mut sql = Sql::new(Dialect::Postgres);
        let rule = rule.as_ref().or(e.permissions.get(Action::Create));
        let pred = predicate(&mut sql, model, entity, rule, &RowSource::Values(&values), caller);
        sql.push(&format!("SELECT {pred}"));
        let allowed: Option<bool> = query(&*tx, &sql).await.map_err(StoreError::from)?.first().and_then(|r| r.get(0));
        if allowed != Some(true) {
            return Err(WriteError::Forbidden);
        }
        let id = crate::sqlite::records::new_id();
        let now = crate::migrate::now_text();
        let mut sql = Sql::new(Dialect::Postgres);
        let mut cols = vec!["\"id\"".to_string(), "\"created_at\"".into(), "\"updated_at\"".into(), "\"version\"".into()];
        let mut vals = vec![
            sql.param(DbValue::Text(id.clone()), ColumnType::Text),
            sql.param(DbValue::DateTime(now.clone()), ColumnType::DateTime),
            sql.param(DbValue::DateTime(now), ColumnType::DateTime),
            sql.param(DbValue::Integer(1), ColumnType::Integer),
        ];
        for (fid, v) in &values {
            let f = e.field(*fid);
            cols.push(ident(&f.name));
            vals.push(sql.param(v.clone(), column_type(&f.ty)));
        }
        sql.push(&format!("INSERT INTO {} ({}) VALUES ({})", ident(&e.plural), cols.join(", "), vals.join(", ")));
        execute(&*tx, &sql).await.map_err(|err| constraint_error(err, model, entity))?;
        let record = read_row(&*tx, model, entity, caller, &id).await?;
        tx.commit().await.map_err(|err| constraint_error(err, model, entity))?;
        Ok(record)
    }

    pub async fn update(
        &self,
        entity: EntityId,
        caller: &Caller,
        id: &str,
        values: Vec<(FieldId, DbValue)>,
        if_version: Option<i64>,
        rule: Option<Expr>,
    ) -> Result<Record, WriteError> {
        let model = &self.model;
        let e = model.entity(entity);
        let rule = rule.as_ref().or(e.permissions.get(Action::Update));
        let mut client = self.db.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let version = access(&*tx, model, entity, caller, id, rule).await?;
        if if_version.is_some_and(|v| v != version) {
            return Err(WriteError::Stale { current_version: version });
        }
        check_references(&*tx, model, entity, caller, &values).await?;
        let mut sql = Sql::new(Dialect::Postgres);
        let now = sql.param(DbValue::DateTime(crate::migrate::now_text()), ColumnType::DateTime);
        let mut sets = vec!["\"version\" = \"version\" + 1".to_string(), format!("\"updated_at\" = {now}")];
        for (fid, v) in &values {
            let f = e.field(*fid);
            let p = sql.param(v.clone(), column_type(&f.ty));
            sets.push(format!("{} = {p}", ident(&f.name)));
        }
        let pid = sql.param(DbValue::Text(id.to_string()), ColumnType::Text);
        let pv = sql.param(DbValue::Integer(version), ColumnType::Integer);
        sql.push(&format!("UPDATE {} SET {} WHERE \"id\" = {pid} AND \"version\" = {pv}", ident(&e.plural), sets.join(", ")));
        let n = execute(&*tx, &sql).await.map_err(|err| constraint_error(err, model, entity))?;
        if n == 0 {
            return Err(WriteError::Stale { current_version: version });
        }
        // The rule must hold after the change too; otherwise the
        // transaction is dropped, which rolls it back.
        let mut sql = Sql::new(Dialect::Postgres);
        let pred = predicate(&mut sql, model, entity, rule, &RowSource::Alias("t"), caller);
        let p = sql.param(DbValue::Text(id.to_string()), ColumnType::Text);
        sql.push(&format!("SELECT {pred} FROM {} t WHERE t.\"id\" = {p}", ident(&e.plural)));
        let still: Option<bool> = query(&*tx, &sql).await.map_err(StoreError::from)?.first().and_then(|r| r.get(0));
        if still != Some(true) {
            return Err(WriteError::Forbidden);
        }
        let record = read_row(&*tx, model, entity, caller, id).await?;
        tx.commit().await.map_err(|err| constraint_error(err, model, entity))?;
        Ok(record)
    }

    pub async fn delete(&self, entity: EntityId, caller: &Caller, id: &str, if_version: Option<i64>) -> Result<(), WriteError> {
        let model = &self.model;
        let e = model.entity(entity);
        let mut client = self.db.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let version = access(&*tx, model, entity, caller, id, e.permissions.get(Action::Delete)).await?;
        if if_version.is_some_and(|v| v != version) {
            return Err(WriteError::Stale { current_version: version });
        }
        let mut sql = Sql::new(Dialect::Postgres);
        let pid = sql.param(DbValue::Text(id.to_string()), ColumnType::Text);
        let pv = sql.param(DbValue::Integer(version), ColumnType::Integer);
        sql.push(&format!("DELETE FROM {} WHERE \"id\" = {pid} AND \"version\" = {pv}", ident(&e.plural)));
        let n = execute(&*tx, &sql).await.map_err(|err| constraint_error(err, model, entity))?;
        if n == 0 {
            return Err(WriteError::Stale { current_version: version });
        }
        tx.commit().await.map_err(|err| constraint_error(err, model, entity))?;
        Ok(())
    }

    pub async fn idempotency_claim(&self, scope: &str, key: &str, hash: &str, now_ms: i64) -> Result<Claim, StoreError> {
        self.ensure_idempotency_table().await?;
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        tx.execute(&format!("DELETE FROM \"{IDEMPOTENCY}\" WHERE created_at < $1"), &[&(now_ms - KEEP_MS)]).await?;
        // ON CONFLICT makes racing claims of one key serialise on the key.
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO \"{IDEMPOTENCY}\" (scope, key, request_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
                ),
                &[&scope, &key, &hash, &now_ms],
            )
            .await?;
        let claim = if inserted == 1 {
            Claim::New
        } else {
            // FOR UPDATE: two retries of an abandoned claim take it over once.
            let row = tx
                .query_one(
                    &format!("SELECT request_hash, response, created_at FROM \"{IDEMPOTENCY}\" WHERE scope = $1 AND key = $2 FOR UPDATE"),
                    &[&scope, &key],
                )
                .await?;
            let (h, response, claimed_at): (String, Option<String>, i64) = (row.get(0), row.get(1), row.get(2));
            match response {
                _ if h != hash => Claim::Mismatch,
                None if claimed_at < now_ms - LEASE_MS => {
                    tx.execute(
                        &format!("UPDATE \"{IDEMPOTENCY}\" SET created_at = $3 WHERE scope = $1 AND key = $2"),
                        &[&scope, &key, &now_ms],
                    )
                    .await?;
                    Claim::New
                }
                None => Claim::InFlight,
                Some(r) => Claim::Done(r),
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    pub async fn idempotency_finish(&self, scope: &str, key: &str, response: &str) -> Result<(), StoreError> {
        let client = self.db.client().await?;
        client
            .execute(&format!("UPDATE \"{IDEMPOTENCY}\" SET response = $3 WHERE scope = $1 AND key = $2"), &[&scope, &key, &response])
            .await?;
        Ok(())
    }

    pub async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        let client = self.db.client().await?;
        client
            .execute(&format!("DELETE FROM \"{IDEMPOTENCY}\" WHERE scope = $1 AND key = $2 AND response IS NULL"), &[&scope, &key])
            .await?;
        Ok(())
    }
}

/// A list's rows and, when asked, its count.
async fn list_rows<C: GenericClient>(
    c: &C,
    sql: &Sql,
    count_sql: Option<&Sql>,
) -> Result<(Vec<tokio_postgres::Row>, Option<i64>), tokio_postgres::Error> {
    let rows = query(c, sql).await?;
    let count = match count_sql {
        Some(count_sql) => Some(query(c, count_sql).await?.first().map_or(0, |r| r.get(0))),
        None => None,
    };
    Ok((rows, count))
}

/// The row's version if the caller may read it and `rule` holds for it;
/// the row stays locked until the transaction ends.
async fn access<C: GenericClient>(
    c: &C,
    model: &AppModel,
    entity: EntityId,
    caller: &Caller,
    id: &str,
    rule: Option<&Expr>,
) -> Result<i64, WriteError> {
    let e = model.entity(entity);
    let mut sql = Sql::new(Dialect::Postgres);
    let read = predicate(&mut sql, model, entity, e.permissions.get(Action::Read), &RowSource::Alias("t"), caller);
    let act = predicate(&mut sql, model, entity, rule, &RowSource::Alias("t"), caller);
    let p = sql.param(DbValue::Text(id.to_string()), ColumnType::Text);
    // Lock first, then judge: the rule is evaluated on the row as it is
    // once no other writer holds it.
    let mut lock = Sql::new(Dialect::Postgres);
    let lp = lock.param(DbValue::Text(id.to_string()), ColumnType::Text);
    lock.push(&format!("SELECT 1 FROM {} t WHERE t.\"id\" = {lp} FOR UPDATE", ident(&e.plural)));
    query(c, &lock).await.map_err(StoreError::from)?;
    sql.push(&format!("SELECT t.\"version\", {read}, {act} FROM {} t WHERE t.\"id\" = {p}", ident(&e.plural)));
    let rows = query(c, &sql).await.map_err(StoreError::from)?;
    match rows.first().map(|r| (r.get::<_, i64>(0), r.get::<_, Option<bool>>(1), r.get::<_, Option<bool>>(2))) {
        None | Some((_, None | Some(false), _)) => Err(WriteError::NotFound),
        Some((_, _, None | Some(false))) => Err(WriteError::Forbidden),
        Some((v, _, _)) => Ok(v),
    }
}

/// Every reference being set must point at a row the caller can read;
/// otherwise it is reported exactly like an id that does not exist.
async fn check_references<C: GenericClient>(
    c: &C,
    model: &AppModel,
    entity: EntityId,
    caller: &Caller,
    values: &[(FieldId, DbValue)],
) -> Result<(), WriteError> {
    for (fid, v) in values {
        let f = model.entity(entity).field(*fid);
        let (FieldType::Ref(target), DbValue::Text(id)) = (&f.ty, v) else { continue };
        let t = model.entity(*target);
        let mut sql = Sql::new(Dialect::Postgres);
        let read = predicate(&mut sql, model, *target, t.permissions.get(Action::Read), &RowSource::Alias("t"), caller);
        let p = sql.param(DbValue::Text(id.clone()), ColumnType::Text);
        // FOR SHARE: the target cannot be deleted before this write commits.
        sql.push(&format!("SELECT 1 FROM {} t WHERE t.\"id\" = {p} AND {read} FOR SHARE OF t", ident(&t.plural)));
        if query(c, &sql).await.map_err(StoreError::from)?.is_empty() {
            return Err(WriteError::ReferenceNotFound { field: f.name.clone() });
        }
    }
    Ok(())
}

async fn read_row<C: GenericClient>(c: &C, model: &AppModel, entity: EntityId, caller: &Caller, id: &str) -> Result<Record, WriteError> {
    let mut sql = Sql::new(Dialect::Postgres);
    let select = select_list(&mut sql, model, entity, caller);
    let p = sql.param(DbValue::Text(id.to_string()), ColumnType::Text);
    sql.push(&format!("SELECT {select} FROM {} t WHERE t.\"id\" = {p}", ident(&model.entity(entity).plural)));
    let rows = query(c, &sql).await.map_err(StoreError::from)?;
    rows.first()
        .map(|r| row_to_record(model, entity, r, 0))
        .ok_or_else(|| WriteError::Store(StoreError::Internal("the written row is gone".into())))
}

/// Maps constraint failures to what they mean; anything else is internal.
fn constraint_error(err: tokio_postgres::Error, model: &AppModel, entity: EntityId) -> WriteError {
    if let Some(db) = err.as_db_error() {
        if *db.code() == SqlState::UNIQUE_VIOLATION {
            // "Key (code)=(x) already exists."
            let field = db.detail().and_then(|d| d.strip_prefix("Key (")).and_then(|d| d.split(')').next()).unwrap_or("").to_string();
            if model.entity(entity).field_by_name(&field).is_some() {
                return WriteError::Unique { field };
            }
        }
        if *db.code() == SqlState::FOREIGN_KEY_VIOLATION {
            return WriteError::Restricted;
        }
    }
    WriteError::Store(StoreError::from(err))
}

/// Every column as text in the store's formats, then the email flag.
fn select_list(sql: &mut Sql, model: &AppModel, entity: EntityId, caller: &Caller) -> String {
    let mut cols: Vec<String> = select_columns(model, entity)
        .iter()
        .map(|(name, ty, _)| {
            let c = format!("t.{}", ident(name));
            match ty {
                ColumnType::Text => c,
                ColumnType::Date => format!("to_char({c}, 'YYYY-MM-DD')"),
                ColumnType::DateTime => format!("to_char({c} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"),
                _ => format!("{c}::text"),
            }
        })
        .collect();
    if entity == charter_model::USER {
        cols.push(email_visible(sql, model, "t", caller));
    }
    cols.join(", ")
}

fn row_to_record(model: &AppModel, entity: EntityId, r: &tokio_postgres::Row, offset: usize) -> Record {
    use serde_json::Value as J;
    let e = model.entity(entity);
    let mut out = Record::new();
    let email_ok = entity != charter_model::USER || r.try_get::<_, Option<bool>>(offset + e.fields.len()).ok().flatten().unwrap_or(false);
    for (i, f) in e.fields.iter().enumerate() {
        if f.builtin == Some(Builtin::Email) && !email_ok {
            continue; // absent, not null
        }
        let v = match r.try_get::<_, Option<String>>(offset + i).ok().flatten() {
            None => J::Null,
            Some(s) => match &f.ty {
                FieldType::Int => s.parse::<i64>().map_or(J::Null, J::from),
                FieldType::Bool => J::Bool(s == "true"),
                FieldType::Json => serde_json::from_str(&s).unwrap_or(J::String(s)),
                _ => J::String(s),
            },
        };
        out.insert(f.name.clone(), v);
    }
    out
}

/// The value of a sort key in a record, for the next-page cursor.
fn keyset_value(model: &AppModel, entity: EntityId, name: &str, rec: &Record) -> DbValue {
    use serde_json::Value as J;
    let ty = model.entity(entity).field_by_name(name).map(|(_, f)| column_type(&f.ty)).unwrap_or(ColumnType::Text);
    match rec.get(name) {
        None | Some(J::Null) => DbValue::Null,
        Some(J::Bool(b)) => DbValue::Boolean(*b),
        Some(J::Number(n)) => DbValue::Integer(n.as_i64().unwrap_or_default()),
        Some(J::String(s)) => match ty {
            ColumnType::Decimal => DbValue::Decimal(s.clone()),
            ColumnType::Date => DbValue::Date(s.clone()),
            ColumnType::DateTime => DbValue::DateTime(s.clone()),
            _ => DbValue::Text(s.clone()),
        },
        Some(other) => DbValue::Json(other.to_string()),
    }
}
