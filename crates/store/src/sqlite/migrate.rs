//! Applying a plan to SQLite: one transaction; changes SQLite cannot
//! `ALTER` use the documented 12-step table rebuild (new table, copy, drop,
//! rename), with foreign keys checked before commit.

use super::ddl::{check_expr, column_def, convert_expr, create_index, create_table, ident, sql_type};
use super::SqliteDb;
use crate::convert::{converts, satisfies_converted};
use crate::migrate::*;
use crate::StoreError;
use charter_model::AppModel;
use charter_schema::*;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use std::time::Instant;

const HISTORY: &str = "_charter_migrations";
/// Rows copied per statement during a rebuild: small enough for steady
/// progress, large enough that statement overhead does not matter.
const CHUNK: i64 = 20_000;

pub(super) fn ensure_history(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {} (
            id INTEGER PRIMARY KEY,
            spec_hash TEXT NOT NULL,
            schema TEXT NOT NULL,
            steps TEXT NOT NULL,
            applied_at TEXT NOT NULL,
            duration_ms INTEGER NOT NULL
        ) STRICT",
        ident(HISTORY)
    ))?;
    Ok(())
}

pub(super) fn recorded_schema(conn: &Connection) -> Result<Schema, StoreError> {
    let json: Option<String> =
        conn.query_row(&format!("SELECT schema FROM {} ORDER BY id DESC LIMIT 1", ident(HISTORY)), [], |r| r.get(0)).optional()?;
    match json {
        None => Ok(Schema::default()),
        Some(j) => serde_json::from_str(&j).map_err(|e| StoreError::Drift(format!("the recorded schema cannot be read: {e}"))),
    }
}

pub(super) fn history(conn: &Connection) -> Result<Vec<MigrationRecord>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT id, spec_hash, steps, applied_at, duration_ms FROM {} ORDER BY id", ident(HISTORY)))?;
    let rows = stmt.query_map([], |r| {
        let steps: String = r.get(2)?;
        Ok(MigrationRecord {
            id: r.get(0)?,
            spec_hash: r.get(1)?,
            steps: serde_json::from_str(&steps).unwrap_or_default(),
            applied_at: r.get(3)?,
            duration_ms: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The live database as comparable facts: for each table its columns
/// (name, type, not null, primary key), foreign keys and indexes.
pub(super) fn live_facts(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut facts = Vec::new();
    let mut tables = conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_charter\\_%' ESCAPE '\\' ORDER BY name")?;
    let names: Vec<String> = tables.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    for t in names {
        facts.push(format!("table {t}"));
        let mut cols = conn.prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)")?;
        for row in
            cols.query_map([&t], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?, r.get::<_, i64>(3)?)))?
        {
            let (name, ty, notnull, pk) = row?;
            facts.push(format!(
                "column {t}.{name} {ty}{}{}",
                if notnull { " not null" } else { "" },
                if pk > 0 { " primary key" } else { "" }
            ));
        }
        let mut fks = conn.prepare("SELECT \"from\", \"table\", on_delete FROM pragma_foreign_key_list(?1)")?;
        for row in fks.query_map([&t], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))? {
            let (from, target, on_delete) = row?;
            facts.push(format!("reference {t}.{from} -> {target} on delete {}", on_delete.to_lowercase()));
        }
        let mut ixs = conn.prepare("SELECT name, \"unique\" FROM pragma_index_list(?1) WHERE origin = 'c'")?;
        let ix_rows: Vec<(String, bool)> = ixs.query_map([&t], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        for (name, unique) in ix_rows {
            let mut cols = conn.prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?;
            let cols: Vec<String> = cols.query_map([&name], |r| r.get(0))?.collect::<Result<_, _>>()?;
            facts.push(format!("{}index {name} on {t} ({})", if unique { "unique " } else { "" }, cols.join(", ")));
        }
    }
    facts.sort();
    Ok(facts)
}

/// The facts a database built from `schema` has.
pub(super) fn expected_facts(schema: &Schema) -> Vec<String> {
    let mut facts = Vec::new();
    for t in &schema.tables {
        facts.push(format!("table {}", t.name));
        for c in &t.columns {
            facts.push(format!(
                "column {}.{} {}{}{}",
                t.name,
                c.name,
                sql_type(c.ty),
                if !c.nullable { " not null" } else { "" },
                if c.primary_key { " primary key" } else { "" }
            ));
            if let Some(r) = &c.references {
                facts.push(format!("reference {}.{} -> {} on delete {}", t.name, c.name, r.table, r.on_delete.as_str()));
            }
        }
        for i in &t.indexes {
            facts.push(format!("{}index {} on {} ({})", if i.unique { "unique " } else { "" }, i.name, t.name, i.columns.join(", ")));
        }
    }
    facts.sort();
    facts
}

/// Differences between the live database and `schema`, as people read them.
pub(super) fn drift(conn: &Connection, schema: &Schema) -> Result<Vec<String>, StoreError> {
    let live = live_facts(conn)?;
    let want = expected_facts(schema);
    let mut out: Vec<String> =
        live.iter().filter(|f| !want.contains(f)).map(|f| format!("the database has {f}, which no migration made")).collect();
    out.extend(want.iter().filter(|f| !live.contains(f)).map(|f| format!("the database lacks {f}, which a migration made")));
    Ok(out)
}

impl SqliteDb {
    /// Differences between the live database and the schema `model` wants.
    pub fn schema_differences(&self, model: &AppModel) -> Result<Vec<String>, StoreError> {
        let (want, _) = schema_of(model);
        drift(&self.connect()?, &want)
    }

    pub fn migrate(&self, model: &AppModel, opts: MigrateOptions) -> Result<MigrationReport, StoreError> {
        let started = Instant::now();
        let mut conn = self.connect()?;
        let recorded = recorded_schema(&conn)?;
        let differences = drift(&conn, &recorded)?;
        if !differences.is_empty() {
            return Err(StoreError::Drift(differences.join("; ")));
        }
        let (desired, hints) = schema_of(model);
        let plan = diff(&recorded, &desired, &hints);
        let mut report =
            MigrationReport { plan, outcomes: Vec::new(), applied: false, blocked_at: None, backup: None, duration: Default::default() };
        if report.plan.is_empty() {
            report.duration = started.elapsed();
            return Ok(report);
        }
        if !opts.dry_run && opts.allow_destructive && may_destroy(&report.plan) {
            report.backup = Some(self.backup_before_migration(&conn, opts.backup_dir.as_deref())?);
        }
        // Foreign keys cannot be switched inside a transaction; a rebuild
        // must not cascade when it drops the old table.
        conn.execute_batch("PRAGMA foreign_keys=OFF")?;
        let result = run_in_transaction(&mut conn, &recorded, &desired, &mut report, &opts, started);
        conn.execute_batch("PRAGMA foreign_keys=ON")?;
        result?;
        report.duration = started.elapsed();
        Ok(report)
    }

    fn backup_before_migration(&self, conn: &Connection, dir: Option<&std::path::Path>) -> Result<std::path::PathBuf, StoreError> {
        let dir = dir.map(|d| d.to_path_buf()).unwrap_or_else(|| self.path().parent().unwrap_or(std::path::Path::new(".")).join("backups"));
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        let stamp = now_stamp();
        let path = dir.join(format!("pre-migrate-{stamp}.db"));
        // Owner-only from the start: it holds password hashes and personal data.
        drop(crate::backup::create_private(&path)?);
        let mut dst =
            Connection::open(&path).map_err(|e| StoreError::Unavailable(format!("cannot create backup {}: {e}", path.display())))?;
        let backup = rusqlite::backup::Backup::new(conn, &mut dst)?;
        backup.run_to_completion(1024, std::time::Duration::from_millis(0), None)?;
        drop(backup);
        Ok(path)
    }
}

fn may_destroy(plan: &Plan) -> bool {
    plan.steps.iter().any(|s| s.destructive.is_some() || matches!(s.change, Change::AlterColumn { invalid_to: Some(_), .. }))
}

fn run_in_transaction(
    conn: &mut Connection,
    recorded: &Schema,
    desired: &Schema,
    report: &mut MigrationReport,
    opts: &MigrateOptions,
    started: Instant,
) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut current = recorded.clone();
    let steps = report.plan.steps.clone();
    let mut i = 0;
    while i < steps.len() {
        let group_end = column_group_end(&steps, i);
        let group = &steps[i..group_end];
        let mut blocked = None;
        for (k, step) in group.iter().enumerate() {
            let results = step.checks.iter().map(|c| run_check(&tx, step, c)).collect::<Result<Vec<_>, _>>()?;
            let verdict = step.verdict(Some(&results));
            let stop = match &verdict {
                Verdict::Safe => false,
                Verdict::Destructive(_) => !opts.allow_destructive,
                Verdict::Refused(_) => true,
            };
            report.outcomes.push(StepOutcome { verdict, results: Some(results) });
            if stop && blocked.is_none() {
                blocked = Some(i + k);
            }
        }
        if let Some(at) = blocked {
            report.blocked_at = Some(at);
            // The rest are shown as planned, unchecked.
            for step in &steps[report.outcomes.len()..] {
                report.outcomes.push(StepOutcome { verdict: step.verdict(None), results: None });
            }
            return Ok(()); // dropping `tx` rolls back
        }
        execute_group(&tx, &mut current, group, opts).map_err(|e| match e {
            StoreError::Internal(m) => StoreError::MigrationFailed(m),
            other => other,
        })?;
        i = group_end;
    }
    debug_assert!(same_schema(&current, desired), "the plan lands on the desired schema");
    let violations: Vec<String> = {
        let mut stmt = tx.prepare("SELECT \"table\", parent FROM pragma_foreign_key_check")?;
        let rows = stmt.query_map([], |r| Ok(format!("{} -> {}", r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    if !violations.is_empty() {
        return Err(StoreError::MigrationFailed(format!("foreign keys would be broken: {}", violations.join(", "))));
    }
    if opts.dry_run {
        return Ok(()); // rolled back on drop
    }
    let steps_json = serde_json::to_string(&report.plan.steps.iter().map(Step::describe).collect::<Vec<_>>()).expect("serialises");
    let schema_json = serde_json::to_string(desired).expect("serialises");
    tx.execute(
        &format!("INSERT INTO {} (spec_hash, schema, steps, applied_at, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5)", ident(HISTORY)),
        rusqlite::params![opts.spec_hash, schema_json, steps_json, now_text(), started.elapsed().as_millis() as i64],
    )?;
    tx.commit()?;
    report.applied = true;
    Ok(())
}

fn is_column_change(c: &Change) -> bool {
    matches!(c, Change::AddColumn { .. } | Change::AlterColumn { .. } | Change::DropColumn { .. })
}

/// Column additions, changes and drops of one table come together in the
/// plan; they are executed as one group (one rebuild at most).
fn column_group_end(steps: &[Step], i: usize) -> usize {
    if !is_column_change(&steps[i].change) {
        return i + 1;
    }
    let table = steps[i].change.table();
    let mut j = i + 1;
    while j < steps.len() && is_column_change(&steps[j].change) && steps[j].change.table() == table {
        j += 1;
    }
    j
}

fn needs_rebuild(c: &Change) -> bool {
    match c {
        Change::AddColumn { column, .. } => !column.nullable,
        Change::AlterColumn { .. } | Change::DropColumn { .. } => true,
        _ => false,
    }
}

fn backfill_value(b: &Backfill) -> SqlValue {
    match b {
        Backfill::Now => SqlValue::Text(now_text()),
        Backfill::Today => SqlValue::Text(today_text()),
        Backfill::Value(v) => db_value(v),
    }
}

pub(crate) fn db_value(v: &DbValue) -> SqlValue {
    match v {
        DbValue::Null => SqlValue::Null,
        DbValue::Integer(n) => SqlValue::Integer(*n),
        DbValue::Boolean(b) => SqlValue::Integer(i64::from(*b)),
        DbValue::Text(s) | DbValue::Decimal(s) | DbValue::Date(s) | DbValue::DateTime(s) | DbValue::Json(s) => SqlValue::Text(s.clone()),
    }
}

fn execute_group(conn: &Connection, current: &mut Schema, group: &[Step], opts: &MigrateOptions) -> Result<(), StoreError> {
    if group.iter().any(|s| needs_rebuild(&s.change)) {
        let table = group[0].change.table().to_string();
        let old = current.table(&table).cloned().ok_or_else(|| StoreError::Internal(format!("table {table} is not in the schema")))?;
        for s in group {
            apply_change(current, &s.change);
        }
        let new = current.table(&table).cloned().expect("table still exists");
        return rebuild(conn, &old, &new, group, opts);
    }
    for step in group {
        execute_step(conn, current, &step.change)?;
        apply_change(current, &step.change);
    }
    Ok(())
}

fn execute_step(conn: &Connection, current: &Schema, change: &Change) -> Result<(), StoreError> {
    match change {
        Change::CreateTable { table } => {
            conn.execute_batch(&create_table(table, &table.name))?;
            for ix in &table.indexes {
                conn.execute_batch(&create_index(&table.name, ix))?;
            }
        }
        Change::DropTable { table } => conn.execute_batch(&format!("DROP TABLE {}", ident(table)))?,
        Change::RenameTable { from, to } => conn.execute_batch(&format!("ALTER TABLE {} RENAME TO {}", ident(from), ident(to)))?,
        Change::RenameColumn { table, from, to } => {
            conn.execute_batch(&format!("ALTER TABLE {} RENAME COLUMN {} TO {}", ident(table), ident(from), ident(to)))?
        }
        Change::AddColumn { table, column, backfill } => {
            conn.execute_batch(&format!("ALTER TABLE {} ADD COLUMN {}", ident(table), column_def(column)))?;
            if let Some(b) = backfill {
                conn.execute(&format!("UPDATE {} SET {} = ?1", ident(table), ident(&column.name)), [backfill_value(b)])?;
            }
        }
        Change::CreateIndex { table, index } => conn.execute_batch(&create_index(table, index))?,
        Change::DropIndex { index, .. } => conn.execute_batch(&format!("DROP INDEX IF EXISTS {}", ident(&index.name)))?,
        Change::AlterColumn { .. } | Change::DropColumn { .. } => {
            let _ = current;
            unreachable!("column alterations and drops always go through a rebuild")
        }
    }
    Ok(())
}

/// The 12-step rebuild: create the new shape under a temporary name, copy
/// the rows (converting and back-filling), drop the old table, rename.
fn rebuild(conn: &Connection, old: &Table, new: &Table, group: &[Step], opts: &MigrateOptions) -> Result<(), StoreError> {
    let tmp = format!("_charter_new_{}", new.name);
    conn.execute_batch(&create_table(new, &tmp))?;
    let mut exprs = Vec::new();
    let mut params: Vec<SqlValue> = Vec::new();
    for c in &new.columns {
        let col = ident(&c.name);
        let change = group.iter().find_map(|s| match &s.change {
            Change::AddColumn { column, backfill, .. } if column.name == c.name => Some((None, backfill.clone(), None)),
            Change::AlterColumn { from, to, backfill, invalid_to, .. } if to.name == c.name => {
                Some((Some(from.clone()), backfill.clone(), invalid_to.clone()))
            }
            _ => None,
        });
        let expr = match change {
            None => col,
            Some((None, backfill, _)) => match backfill {
                Some(b) => {
                    params.push(backfill_value(&b));
                    "?".to_string()
                }
                None => "NULL".to_string(),
            },
            Some((Some(from), backfill, invalid_to)) => {
                let mut e = convert_expr(&col, from.ty, c.ty);
                if let (Some(inv), Some(check)) = (invalid_to, &c.check) {
                    params.push(backfill_value(&inv));
                    // NULL fails no check: only values the check rejects are replaced.
                    e = format!("CASE WHEN ({e}) IS NULL OR {} THEN {e} ELSE ? END", check_expr(&format!("({e})"), check));
                }
                if let Some(b) = backfill {
                    params.push(backfill_value(&b));
                    e = format!("COALESCE({e}, ?)");
                }
                e
            }
        };
        exprs.push(expr);
    }
    let cols: Vec<String> = new.columns.iter().map(|c| ident(&c.name)).collect();
    let insert = format!(
        "INSERT INTO {} ({}) SELECT {} FROM {} WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
        ident(&tmp),
        cols.join(", "),
        exprs.join(", "),
        ident(&old.name)
    );
    let (lo, hi, total): (Option<i64>, Option<i64>, i64) =
        conn.query_row(&format!("SELECT min(rowid), max(rowid), count(*) FROM {}", ident(&old.name)), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if let (Some(lo), Some(hi)) = (lo, hi) {
        let mut stmt = conn.prepare(&insert)?;
        let mut done: u64 = 0;
        let mut start = lo;
        while start <= hi {
            let end = start.saturating_add(CHUNK - 1);
            let mut p = params.clone();
            p.push(SqlValue::Integer(start));
            p.push(SqlValue::Integer(end));
            done += stmt.execute(params_from_iter(p))? as u64;
            if let Some(progress) = &opts.progress {
                progress(Progress { table: new.name.clone(), done, total: total as u64 });
            }
            if opts.pause_after_rows.is_some_and(|n| done >= n) {
                // Test hook: hold the transaction open until killed.
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
            if end == i64::MAX {
                break;
            }
            start = end + 1;
        }
    }
    conn.execute_batch(&format!("DROP TABLE {}", ident(&old.name)))?;
    conn.execute_batch(&format!("ALTER TABLE {} RENAME TO {}", ident(&tmp), ident(&new.name)))?;
    for ix in &new.indexes {
        conn.execute_batch(&create_index(&new.name, ix))?;
    }
    Ok(())
}

fn short(v: String) -> String {
    if v.chars().count() > 40 {
        format!("{:?}…", v.chars().take(40).collect::<String>())
    } else {
        format!("{v:?}")
    }
}

fn run_check(conn: &Connection, step: &Step, check: &DataCheck) -> Result<CheckResult, StoreError> {
    let count = |sql: String| -> Result<u64, StoreError> { Ok(conn.query_row(&sql, [], |r| r.get::<_, i64>(0))? as u64) };
    let examples = |sql: String| -> Result<Vec<String>, StoreError> {
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], |r| r.get::<_, Option<String>>(0))?;
        Ok(rows.filter_map(|r| r.ok().flatten()).map(short).collect())
    };
    Ok(match check {
        DataCheck::RowsWithData { table, column: None } | DataCheck::TableEmpty { table, .. } => {
            CheckResult { rows: count(format!("SELECT count(*) FROM {}", ident(table)))?, examples: vec![] }
        }
        DataCheck::RowsWithData { table, column: Some(c) } => {
            CheckResult { rows: count(format!("SELECT count(*) FROM {} WHERE {} IS NOT NULL", ident(table), ident(c)))?, examples: vec![] }
        }
        DataCheck::NoNulls { table, column } => {
            let rows = count(format!("SELECT count(*) FROM {} WHERE {} IS NULL", ident(table), ident(column)))?;
            let ex = examples(format!("SELECT id FROM {} WHERE {} IS NULL LIMIT 3", ident(table), ident(column)))?;
            CheckResult { rows, examples: ex.into_iter().map(|id| format!("id {id}")).collect() }
        }
        DataCheck::NoDuplicates { table, columns } => {
            let cols: Vec<String> = columns.iter().map(|c| ident(c)).collect();
            let not_null: Vec<String> = cols.iter().map(|c| format!("{c} IS NOT NULL")).collect();
            let sql = format!(
                "SELECT {} AS v, count(*) AS n FROM {} WHERE {} GROUP BY {} HAVING count(*) > 1 ORDER BY n DESC, {}",
                cols.iter().map(|c| format!("CAST({c} AS TEXT)")).collect::<Vec<_>>().join(" || ', ' || "),
                ident(table),
                not_null.join(" AND "),
                cols.join(", "),
                // Ties by value, so the examples do not depend on the query plan.
                cols.join(", ")
            );
            let mut stmt = conn.prepare(&sql)?;
            let mut rows = 0;
            let mut ex = Vec::new();
            for r in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                let (v, n) = r?;
                rows += n as u64;
                if ex.len() < 3 {
                    ex.push(format!("{} x{n}", short(v)));
                }
            }
            CheckResult { rows, examples: ex }
        }
        DataCheck::Converts { table, column, from, to } => {
            let mut stmt =
                conn.prepare(&format!("SELECT CAST({c} AS TEXT) FROM {} WHERE {c} IS NOT NULL", ident(table), c = ident(column)))?;
            let mut rows = 0;
            let mut ex: Vec<String> = Vec::new();
            for v in stmt.query_map([], |r| r.get::<_, String>(0))? {
                let v = v?;
                if !converts(&v, *from, *to) {
                    rows += 1;
                    let s = short(v);
                    if ex.len() < 3 && !ex.contains(&s) {
                        ex.push(s);
                    }
                }
            }
            CheckResult { rows, examples: ex }
        }
        DataCheck::Satisfies { table, column, check } => {
            let col = ident(column);
            // After a type change the rule applies to the converted value:
            // decided in Rust, like `Converts`, so both dialects count the
            // same rows (values that do not convert are left to `Converts`).
            if let Change::AlterColumn { from, to, .. } = &step.change {
                if from.ty != to.ty {
                    let mut stmt = conn.prepare(&format!("SELECT CAST({col} AS TEXT) FROM {} WHERE {col} IS NOT NULL", ident(table)))?;
                    let mut rows = 0;
                    let mut ex: Vec<String> = Vec::new();
                    for v in stmt.query_map([], |r| r.get::<_, String>(0))? {
                        let v = v?;
                        if converts(&v, from.ty, to.ty) && !satisfies_converted(&v, from.ty, to.ty, check) {
                            rows += 1;
                            let s = short(v);
                            if ex.len() < 3 && !ex.contains(&s) {
                                ex.push(s);
                            }
                        }
                    }
                    return Ok(CheckResult { rows, examples: ex });
                }
            }
            let cond = format!("{col} IS NOT NULL AND NOT ({})", check_expr(&col, check));
            let rows = count(format!("SELECT count(*) FROM {} WHERE {cond}", ident(table)))?;
            let ex = examples(format!("SELECT DISTINCT CAST({col} AS TEXT) FROM {} WHERE {cond} LIMIT 3", ident(table)))?;
            CheckResult { rows, examples: ex }
        }
        DataCheck::ReferencesExist { table, column, target } => {
            let col = ident(column);
            let cond = format!("{col} IS NOT NULL AND {col} NOT IN (SELECT \"id\" FROM {})", ident(target));
            let rows = count(format!("SELECT count(*) FROM {} WHERE {cond}", ident(table)))?;
            let ex = examples(format!("SELECT DISTINCT {col} FROM {} WHERE {cond} LIMIT 3", ident(table)))?;
            CheckResult { rows, examples: ex }
        }
    })
}
