//! Records on SQLite. Reads run on the calling thread with a connection
//! kept per thread (no hop to a blocking pool for millisecond queries);
//! writes go to one writer thread that commits queued requests together
//! (group commit), each in its own savepoint so one failure does not sink
//! the others, and answers only after COMMIT.

use super::SqliteDb;
use crate::records::*;
use crate::StoreError;
use charter_model::{Action, AppModel, Builtin, EntityId, Expr, FieldId, FieldType};
use charter_schema::{ColumnType, DbValue};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{params_from_iter, Connection, ErrorCode, OptionalExtension};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most requests one write transaction commits together.
const GROUP_COMMIT: usize = 64;

pub(crate) type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
pub(crate) type Job = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;

thread_local! {
    static READERS: RefCell<HashMap<PathBuf, Connection>> = RefCell::new(HashMap::new());
}

pub struct SqliteRecords {
    db: SqliteDb,
    model: Arc<AppModel>,
    writer: mpsc::Sender<Job>,
    statement_timeout: Option<Duration>,
}

/// Virtual machine instructions between two looks at the clock while a
/// list runs under a statement timeout: microseconds of work, so a query
/// stops soon after its deadline, and the clock is read rarely.
const PROGRESS_OPS: std::ffi::c_int = 1000;

/// A deadline on a connection: SQLite's progress handler interrupts any
/// statement still running after it (the statement fails with
/// `SQLITE_INTERRUPT`). Dropping the guard removes the handler, so the
/// connection's later statements run unbounded again.
struct Deadline<'a>(&'a mut Connection);

impl<'a> Deadline<'a> {
    fn set(conn: &'a mut Connection, timeout: Duration) -> Result<Deadline<'a>, StoreError> {
        let deadline = Instant::now() + timeout;
        conn.progress_handler(PROGRESS_OPS, Some(move || Instant::now() >= deadline))?;
        Ok(Deadline(conn))
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        let _ = self.0.progress_handler(0, None::<fn() -> bool>);
    }
}

impl SqliteRecords {
    pub fn new(db: SqliteDb, model: Arc<AppModel>) -> Result<SqliteRecords, StoreError> {
        let conn = db.connect()?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("charter-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Internal(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteRecords { db, model, writer: tx, statement_timeout: None })
    }

    /// Lists (and their counts) still running after `timeout` are interrupted.
    pub fn with_statement_timeout(self, timeout: Option<Duration>) -> SqliteRecords {
        SqliteRecords { statement_timeout: timeout, ..self }
    }

    /// Auth storage sharing this writer thread, so auth writes are
    /// group-committed with record writes instead of contending for the lock.
    pub(crate) fn auth(&self) -> Result<super::auth::SqliteAuth, StoreError> {
        super::auth::SqliteAuth::new(self.db.clone(), self.model.clone(), self.writer.clone())
    }

    fn read<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        READERS.with(|cell| {
            let mut readers = cell.borrow_mut();
            let conn = match readers.entry(self.db.path().to_path_buf()) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(self.db.connect()?),
            };
            f(conn)
        })
    }

    /// Runs `f` in the writer's transaction; its result comes back after commit.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &AppModel) -> Result<T, WriteError> + Send + 'static,
    ) -> Result<T, WriteError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let model = self.model.clone();
        let job: Job = Box::new(move |conn| {
            let result = f(conn, &model);
            let keep = result.is_ok();
            let done: Completion = Box::new(move |commit| {
                let _ = tx.send(match commit {
                    Ok(()) => result,
                    Err(e) => Err(WriteError::Store(e)),
                });
            });
            (keep, done)
        });
        self.writer.send(job).map_err(|_| WriteError::Store(StoreError::Unavailable("the writer thread stopped".into())))?;
        rx.await.map_err(|_| WriteError::Store(StoreError::Unavailable("the writer thread stopped".into())))?
    }

    pub fn get(&self, entity: EntityId, caller: &Caller, id: &str) -> Result<Option<Record>, StoreError> {
        let model = &self.model;
        let mut sql = Sql::new(Dialect::Sqlite);
        let select = select_list(&mut sql, model, entity, caller);
        let table = ident(&model.entity(entity).plural);
        let p = sql.param(DbValue::Text(id.to_string()), ColumnType::Text);
        let pred = predicate(&mut sql, model, entity, model.entity(entity).permissions.get(Action::Read), &RowSource::Alias("t"), caller);
        sql.push(&format!("SELECT {select} FROM {table} t WHERE t.\"id\" = {p} AND {pred}"));
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql.text)?;
            let row =
                stmt.query_row(params_from_iter(sql.params.iter().map(to_sql)), |r| Ok(row_to_record(model, entity, r))).optional()?;
            Ok(row)
        })
    }

    pub fn list(&self, entity: EntityId, caller: &Caller, q: &ListQuery) -> Result<Page, StoreError> {
        let model = &self.model;
        let e = model.entity(entity);
        let mut sql = Sql::new(Dialect::Sqlite);
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
        // The count ignores the cursor, so it is the same on every page.
        let count_where = wheres.clone();
        let count_params = sql.params.clone();
        if let Some(after) = &q.after {
            if after.len() != keys.len() {
                return Err(StoreError::Internal("cursor does not match the sort keys".into()));
            }
            wheres.push(keyset_after(&mut sql, "t", &keys, after));
        }
        let table = ident(&e.plural);
        let order = order_by(&sql, "t", &keys);
        let limit = sql.param(DbValue::Integer(i64::from(q.limit) + 1), ColumnType::Integer);
        sql.push(&format!("SELECT {select} FROM {table} t WHERE {} ORDER BY {order} LIMIT {limit}", wheres.join(" AND ")));
        let run = |conn: &Connection| -> Result<Page, StoreError> {
            let mut stmt = conn.prepare_cached(&sql.text)?;
            let mut rows = stmt.query(params_from_iter(sql.params.iter().map(to_sql)))?;
            let mut items = Vec::new();
            let mut last_keys = None;
            while let Some(r) = rows.next()? {
                if items.len() == q.limit as usize {
                    // One row beyond the page: there is a next page.
                    let last: &Record = items.last().expect("limit >= 1");
                    last_keys = Some(keys.iter().map(|(name, _, _)| keyset_value(model, entity, name, last)).collect());
                    break;
                }
                items.push(row_to_record(model, entity, r));
            }
            let count = if q.count {
                let text = format!("SELECT count(*) FROM {table} t WHERE {}", count_where.join(" AND "));
                let n: i64 = conn.prepare_cached(&text)?.query_row(params_from_iter(count_params.iter().map(to_sql)), |r| r.get(0))?;
                Some(n as u64)
            } else {
                None
            };
            Ok(Page { items, next: last_keys, count })
        };
        self.read(|conn| match self.statement_timeout {
            Some(t) => {
                let deadline = Deadline::set(conn, t)?;
                run(deadline.0)
            }
            None => run(conn),
        })
    }

    /// `rule` replaces the entity's create rule when given (a `User` create
    /// that sets `role` must also pass `update role`).
    pub async fn create(
        &self,
        entity: EntityId,
        caller: &Caller,
        values: Vec<(FieldId, DbValue)>,
        rule: Option<Expr>,
    ) -> Result<Record, WriteError> {
        let caller = caller.clone();
        let id = new_id();
        self.write(move |conn, model| {
            let e = model.entity(entity);
            check_references(conn, model, entity, &caller, &values)?;
            let mut sql = Sql::new(Dialect::Sqlite);
            let rule = rule.as_ref().or(e.permissions.get(Action::Create));
            let pred = predicate(&mut sql, model, entity, rule, &RowSource::Values(&values), &caller);
            let allowed: bool = conn
                .prepare_cached(&format!("SELECT {pred}"))?
                .query_row(params_from_iter(sql.params.iter().map(to_sql)), |r| r.get(0))
                .map_err(StoreError::from)?;
            if !allowed {
                return Err(WriteError::Forbidden);
            }
            let now = crate::migrate::now_text();
            let mut cols = vec!["\"id\"".to_string(), "\"created_at\"".into(), "\"updated_at\"".into(), "\"version\"".into()];
            let mut params = vec![SqlValue::Text(id.clone()), SqlValue::Text(now.clone()), SqlValue::Text(now), SqlValue::Integer(1)];
            for (fid, v) in &values {
                cols.push(ident(&e.field(*fid).name));
                params.push(to_sql(v));
            }
            let placeholders = vec!["?"; cols.len()].join(", ");
            let insert = format!("INSERT INTO {} ({}) VALUES ({placeholders})", ident(&e.plural), cols.join(", "));
            conn.prepare_cached(&insert)?.execute(params_from_iter(params)).map_err(|err| constraint_error(err, model, entity))?;
            let mut sql = Sql::new(Dialect::Sqlite);
            let select = select_list(&mut sql, model, entity, &caller);
            let p = sql.param(DbValue::Text(id.clone()), ColumnType::Text);
            sql.push(&format!("SELECT {select} FROM {} t WHERE t.\"id\" = {p}", ident(&e.plural)));
            let record = conn
                .prepare_cached(&sql.text)?
                .query_row(params_from_iter(sql.params.iter().map(to_sql)), |r| Ok(row_to_record(model, entity, r)))
                .map_err(StoreError::from)?;
            Ok(record)
        })
        .await
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
        let caller = caller.clone();
        let id = id.to_string();
        self.write(move |conn, model| {
            let e = model.entity(entity);
            let rule = rule.as_ref().or(e.permissions.get(Action::Update));
            let version = access(conn, model, entity, &caller, &id, rule)?;
            if let Some(v) = if_version {
                if v != version {
                    return Err(WriteError::Stale { current_version: version });
                }
            }
            check_references(conn, model, entity, &caller, &values)?;
            let mut sets = vec!["\"version\" = \"version\" + 1".to_string(), "\"updated_at\" = ?".to_string()];
            let mut params = vec![SqlValue::Text(crate::migrate::now_text())];
            for (fid, v) in &values {
                sets.push(format!("{} = ?", ident(&e.field(*fid).name)));
                params.push(to_sql(v));
            }
            params.push(SqlValue::Text(id.clone()));
            params.push(SqlValue::Integer(version));
            let update = format!("UPDATE {} SET {} WHERE \"id\" = ? AND \"version\" = ?", ident(&e.plural), sets.join(", "));
            let n = conn.prepare_cached(&update)?.execute(params_from_iter(params)).map_err(|err| constraint_error(err, model, entity))?;
            if n == 0 {
                return Err(WriteError::Stale { current_version: version });
            }
            // The rule must hold after the change too; otherwise the
            // savepoint is rolled back with the error.
            let mut sql = Sql::new(Dialect::Sqlite);
            let pred = predicate(&mut sql, model, entity, rule, &RowSource::Alias("t"), &caller);
            let select = select_list(&mut sql, model, entity, &caller);
            let p = sql.param(DbValue::Text(id.clone()), ColumnType::Text);
            sql.push(&format!("SELECT {pred}, {select} FROM {} t WHERE t.\"id\" = {p}", ident(&e.plural)));
            let (still, record): (bool, Record) = conn
                .prepare_cached(&sql.text)?
                .query_row(params_from_iter(sql.params.iter().map(to_sql)), |r| {
                    Ok((r.get::<_, Option<bool>>(0)?.unwrap_or(false), row_to_record_at(model, entity, r, 1)))
                })
                .map_err(StoreError::from)?;
            if !still {
                return Err(WriteError::Forbidden);
            }
            Ok(record)
        })
        .await
    }

    pub async fn delete(&self, entity: EntityId, caller: &Caller, id: &str, if_version: Option<i64>) -> Result<(), WriteError> {
        let caller = caller.clone();
        let id = id.to_string();
        self.write(move |conn, model| {
            let e = model.entity(entity);
            let version = access(conn, model, entity, &caller, &id, e.permissions.get(Action::Delete))?;
            if let Some(v) = if_version {
                if v != version {
                    return Err(WriteError::Stale { current_version: version });
                }
            }
            let n = conn
                .prepare_cached(&format!("DELETE FROM {} WHERE \"id\" = ? AND \"version\" = ?", ident(&e.plural)))?
                .execute(rusqlite::params![id, version])
                .map_err(|err| constraint_error(err, model, entity))?;
            if n == 0 {
                return Err(WriteError::Stale { current_version: version });
            }
            Ok(())
        })
        .await
    }
}

/// The row's version if the caller may read it and `rule` holds for it.
fn access(
    conn: &Connection,
    model: &AppModel,
    entity: EntityId,
    caller: &Caller,
    id: &str,
    rule: Option<&Expr>,
) -> Result<i64, WriteError> {
    let e = model.entity(entity);
    let mut sql = Sql::new(Dialect::Sqlite);
    let read = predicate(&mut sql, model, entity, e.permissions.get(Action::Read), &RowSource::Alias("t"), caller);
    let act = predicate(&mut sql, model, entity, rule, &RowSource::Alias("t"), caller);
    let p = sql.param(DbValue::Text(id.to_string()), ColumnType::Text);
    sql.push(&format!("SELECT t.\"version\", {read}, {act} FROM {} t WHERE t.\"id\" = {p}", ident(&e.plural)));
    let row: Option<(i64, Option<bool>, Option<bool>)> = conn
        .prepare_cached(&sql.text)?
        .query_row(params_from_iter(sql.params.iter().map(to_sql)), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .map_err(StoreError::from)?;
    match row {
        None | Some((_, None | Some(false), _)) => Err(WriteError::NotFound),
        Some((_, _, None | Some(false))) => Err(WriteError::Forbidden),
        Some((v, _, _)) => Ok(v),
    }
}

/// Every reference being set must point at a row the caller can read;
/// otherwise it is reported exactly like an id that does not exist.
fn check_references(
    conn: &Connection,
    model: &AppModel,
    entity: EntityId,
    caller: &Caller,
    values: &[(FieldId, DbValue)],
) -> Result<(), WriteError> {
    for (fid, v) in values {
        let f = model.entity(entity).field(*fid);
        let (FieldType::Ref(target), DbValue::Text(id)) = (&f.ty, v) else { continue };
        let t = model.entity(*target);
        let mut sql = Sql::new(Dialect::Sqlite);
        let read = predicate(&mut sql, model, *target, t.permissions.get(Action::Read), &RowSource::Alias("t"), caller);
        let p = sql.param(DbValue::Text(id.clone()), ColumnType::Text);
        sql.push(&format!("SELECT 1 FROM {} t WHERE t.\"id\" = {p} AND {read}", ident(&t.plural)));
        let found = conn
            .prepare_cached(&sql.text)?
            .query_row(params_from_iter(sql.params.iter().map(to_sql)), |_| Ok(()))
            .optional()
            .map_err(StoreError::from)?;
        if found.is_none() {
            return Err(WriteError::ReferenceNotFound { field: f.name.clone() });
        }
    }
    Ok(())
}

/// Maps constraint failures to what they mean; anything else is internal.
fn constraint_error(err: rusqlite::Error, model: &AppModel, entity: EntityId) -> WriteError {
    if let rusqlite::Error::SqliteFailure(e, Some(msg)) = &err {
        if e.code == ErrorCode::ConstraintViolation {
            // "UNIQUE constraint failed: tasks.title"
            if let Some(rest) = msg.strip_prefix("UNIQUE constraint failed: ") {
                let field = rest.split(',').next().and_then(|c| c.trim().split('.').nth(1)).unwrap_or("").to_string();
                if model.entity(entity).field_by_name(&field).is_some() {
                    return WriteError::Unique { field };
                }
            }
            if msg.starts_with("FOREIGN KEY constraint failed") {
                return WriteError::Restricted;
            }
        }
    }
    WriteError::Store(StoreError::from(err))
}

fn select_list(sql: &mut Sql, model: &AppModel, entity: EntityId, caller: &Caller) -> String {
    let mut cols: Vec<String> = select_columns(model, entity).iter().map(|(name, _, _)| format!("t.{}", ident(name))).collect();
    if entity == charter_model::USER {
        cols.push(email_visible(sql, model, "t", caller));
    }
    cols.join(", ")
}

fn row_to_record(model: &AppModel, entity: EntityId, r: &rusqlite::Row) -> Record {
    row_to_record_at(model, entity, r, 0)
}

pub(crate) fn row_to_record_at(model: &AppModel, entity: EntityId, r: &rusqlite::Row, offset: usize) -> Record {
    use serde_json::Value as J;
    let e = model.entity(entity);
    let mut out = Record::new();
    let email_ok = if entity == charter_model::USER {
        r.get::<_, Option<bool>>(offset + e.fields.len()).ok().flatten().unwrap_or(false)
    } else {
        true
    };
    for (i, f) in e.fields.iter().enumerate() {
        if f.builtin == Some(Builtin::Email) && !email_ok {
            continue; // absent, not null
        }
        let v = match r.get_ref(offset + i) {
            Ok(ValueRef::Null) | Err(_) => J::Null,
            Ok(ValueRef::Integer(n)) => match f.ty {
                FieldType::Bool => J::Bool(n != 0),
                _ => J::from(n),
            },
            Ok(ValueRef::Real(x)) => serde_json::Number::from_f64(x).map_or(J::Null, J::Number),
            Ok(ValueRef::Text(t)) => {
                let s = String::from_utf8_lossy(t).into_owned();
                match f.ty {
                    FieldType::Json => serde_json::from_str(&s).unwrap_or(J::String(s)),
                    _ => J::String(s),
                }
            }
            Ok(ValueRef::Blob(_)) => J::Null,
        };
        out.insert(f.name.clone(), v);
    }
    out
}

/// The value of a sort key in a record, for the next-page cursor.
fn keyset_value(model: &AppModel, entity: EntityId, name: &str, rec: &Record) -> DbValue {
    let f = model.entity(entity).field_by_name(name).map(|(_, f)| f);
    match (rec.get(name), f.map(|f| &f.ty)) {
        (None | Some(serde_json::Value::Null), _) => DbValue::Null,
        (Some(serde_json::Value::Bool(b)), _) => DbValue::Boolean(*b),
        (Some(serde_json::Value::Number(n)), _) => DbValue::Integer(n.as_i64().unwrap_or_default()),
        (Some(serde_json::Value::String(s)), Some(FieldType::Decimal)) => DbValue::Decimal(s.clone()),
        (Some(serde_json::Value::String(s)), _) => DbValue::Text(s.clone()),
        (Some(other), _) => DbValue::Json(other.to_string()),
    }
}

pub(crate) fn to_sql(v: &DbValue) -> SqlValue {
    super::migrate::db_value(v)
}

/// A new record id: 16 characters of `[a-z0-9]` from the OS CSPRNG
/// (about 82 bits).
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char).collect()
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < GROUP_COMMIT {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let msg = e.to_string();
                for job in jobs {
                    // Give each job a chance to answer: run nothing, fail.
                    let (_, done) = job(&dead_connection());
                    done(Err(StoreError::Unavailable(msg.clone())));
                }
                continue;
            }
        };
        let mut completions = Vec::with_capacity(jobs.len());
        for job in jobs {
            let ok = tx.execute_batch("SAVEPOINT job").is_ok();
            let (keep, done) = job(&tx);
            let _ = if keep && ok { tx.execute_batch("RELEASE job") } else { tx.execute_batch("ROLLBACK TO job; RELEASE job") };
            completions.push(done);
        }
        let result = tx.commit().map_err(|e| StoreError::Unavailable(e.to_string()));
        for done in completions {
            done(result.as_ref().map(|_| ()).map_err(|e| StoreError::Unavailable(e.to_string())));
        }
    }
}

/// An in-memory connection handed to jobs that cannot run because the
/// write transaction could not start; they fail on their first statement.
fn dead_connection() -> Connection {
    let c = Connection::open_in_memory().expect("in-memory database");
    let _ = c.execute_batch("PRAGMA query_only=ON");
    c
}
