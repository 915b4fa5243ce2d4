//! Online backups with a manifest, verification and restore.
//!
//! A backup is one file holding the data and a manifest: for every table,
//! its row count and a checksum of its rows, computed in the same snapshot
//! the data was copied from. Verifying a backup restores it into a scratch
//! database and recomputes both, so a backup that verifies is one that
//! restores to exactly what was backed up.
//!
//! - SQLite: a SQLite database file (the online backup API, under a read
//!   transaction, so writers are not blocked in WAL mode) with the manifest
//!   in its `_charter_backup` table.
//! - PostgreSQL: a plain `pg_dump` of a snapshot exported from the
//!   transaction that computed the manifest, whose first line is an SQL
//!   comment holding the manifest: `psql -f` restores it as it is.
//!
//! The checksum of a table does not depend on row order: the rows'
//! SHA-256 digests are added lane by lane, so the same rows give the same
//! sum however each database returns them. Checksums compare a backup with
//! its own backend only.

use crate::migrate::{now_stamp, now_text};
use crate::postgres::{PgDb, ScratchDatabase};
use crate::sqlite::SqliteDb;
use crate::{Database, DatabaseUrl, StoreConfig, StoreError};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// The manifest table inside a SQLite backup (dropped on restore).
const MANIFEST_TABLE: &str = "_charter_backup";
/// The first line of a PostgreSQL backup starts with this.
const PG_HEADER: &str = "-- charter-backup-manifest: ";
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Of this manifest's layout.
    pub format: u32,
    /// `sqlite` or `postgres`.
    pub backend: String,
    pub created_at: String,
    /// The spec hash of the last applied migration, if any.
    pub spec_hash: Option<String>,
    /// Table name -> what it held.
    pub tables: BTreeMap<String, TableSum>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSum {
    pub rows: u64,
    pub checksum: String,
}

/// What `verify` found: the backup's manifest and every fault (none when
/// the backup is good).
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub manifest: Option<Manifest>,
    pub faults: Vec<String>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.faults.is_empty() && self.manifest.is_some()
    }
}

/// The order-independent checksum of one table.
#[derive(Default)]
struct RowSum {
    rows: u64,
    lanes: [u64; 4],
}

impl RowSum {
    fn add(&mut self, row: &[u8]) {
        let digest = Sha256::digest(row);
        for (lane, chunk) in self.lanes.iter_mut().zip(digest.chunks_exact(8)) {
            *lane = lane.wrapping_add(u64::from_be_bytes(chunk.try_into().expect("8 bytes")));
        }
        self.rows += 1;
    }

    fn finish(self) -> TableSum {
        TableSum { rows: self.rows, checksum: self.lanes.iter().map(|l| format!("{l:016x}")).collect() }
    }
}

fn compare(expected: &Manifest, found: &BTreeMap<String, TableSum>) -> Vec<String> {
    let mut faults = Vec::new();
    for (table, want) in &expected.tables {
        match found.get(table) {
            None => faults.push(format!("table {table} is missing")),
            Some(got) if got.rows != want.rows => {
                faults.push(format!("table {table} has {} rows; the manifest says {}", got.rows, want.rows))
            }
            Some(got) if got.checksum != want.checksum => {
                faults.push(format!("table {table}: its rows differ from the manifest's checksum"))
            }
            Some(_) => {}
        }
    }
    for table in found.keys().filter(|t| !expected.tables.contains_key(*t)) {
        faults.push(format!("table {table} is not in the manifest"));
    }
    faults
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
}

/// The default name of a new backup in `dir`.
pub fn default_path(dir: &Path, backend: &str) -> PathBuf {
    let stamp = now_stamp();
    let ext = if backend == "postgres" { "sql" } else { "db" };
    dir.join(format!("backup-{stamp}.{ext}"))
}

/// Creates `path` for writing, readable by its owner only (a backup holds
/// password hashes and personal data); never overwrites.
pub(crate) fn create_private(path: &Path) -> Result<std::fs::File, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io_error("cannot create", parent, e))?;
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    open.open(path).map_err(|e| io_error("cannot create backup", path, e))
}

fn sync_file(path: &Path) -> Result<(), StoreError> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| io_error("cannot sync", path, e))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // The directory entry too, so the file survives a power cut.
        let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
    }
    Ok(())
}

impl Database {
    /// Writes a consistent backup of the live database to `to` (which must
    /// not exist) while it keeps serving; returns its manifest.
    pub async fn backup(&self, to: &Path) -> Result<Manifest, StoreError> {
        match self {
            Database::Sqlite(db) => {
                let (db, to) = (db.clone(), to.to_path_buf());
                tokio::task::spawn_blocking(move || sqlite_backup(&db, &to))
                    .await
                    .map_err(|e| StoreError::Internal(format!("backup task: {e}")))?
            }
            Database::Postgres(db) => pg_backup(db, to).await,
        }
    }
}

/// Checks the backup at `path`: restores it into a scratch database (for a
/// PostgreSQL backup, a new database on the server of `postgres_server`,
/// dropped afterwards) and compares every table with the manifest.
pub async fn verify(path: &Path, postgres_server: Option<&str>) -> Result<Verification, StoreError> {
    match kind_of(path)? {
        Kind::Sqlite => {
            let path = path.to_path_buf();
            tokio::task::spawn_blocking(move || sqlite_verify(&path))
                .await
                .map_err(|e| StoreError::Internal(format!("verify task: {e}")))?
        }
        Kind::Postgres => {
            let Some(server) = postgres_server else {
                return Err(StoreError::Config(
                    "this is a PostgreSQL backup: set CHARTER_DATABASE_URL to a PostgreSQL server to restore it into a scratch database there".into(),
                ));
            };
            let scratch = ScratchDatabase::create(server).await?;
            let result = pg_verify_into(path, &scratch.url).await;
            let dropped = scratch.drop_now().await;
            let verification = result?;
            dropped?;
            Ok(verification)
        }
    }
}

/// What `restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub manifest: Manifest,
    /// Where the database as it was before the restore was kept.
    pub previous: String,
}

/// Verifies the backup at `path`, then replaces the database of `config`
/// with it, keeping the database as it was: a SQLite file moved to
/// `keep_dir`, or a PostgreSQL database renamed. The caller makes sure no
/// server is using the database.
pub async fn restore(config: &StoreConfig, path: &Path, keep_dir: &Path) -> Result<Restored, StoreError> {
    match (&config.url, kind_of(path)?) {
        (DatabaseUrl::Sqlite(target), Kind::Sqlite) => {
            let (target, path, keep_dir) = (target.clone(), path.to_path_buf(), keep_dir.to_path_buf());
            tokio::task::spawn_blocking(move || sqlite_restore(&target, &path, &keep_dir))
                .await
                .map_err(|e| StoreError::Internal(format!("restore task: {e}")))?
        }
        (DatabaseUrl::Postgres(url), Kind::Postgres) => pg_restore(url, path).await,
        (DatabaseUrl::Sqlite(_), Kind::Postgres) => Err(StoreError::Config(
            "this is a PostgreSQL backup and the configured database is SQLite; set CHARTER_DATABASE_URL to the PostgreSQL database to restore".into(),
        )),
        (DatabaseUrl::Postgres(_), Kind::Sqlite) => Err(StoreError::Config(
            "this is a SQLite backup and the configured database is PostgreSQL; restore it with CHARTER_DATABASE_URL unset (or sqlite://PATH)".into(),
        )),
    }
}

/// The manifest of a backup that verified; a restore of one that did not is refused.
fn verified(path: &Path, v: Verification) -> Result<Manifest, StoreError> {
    match v.manifest {
        Some(manifest) if v.faults.is_empty() => Ok(manifest),
        _ => Err(StoreError::Refused(format!("{} does not verify, so nothing was restored: {}", path.display(), v.faults.join("; ")))),
    }
}

enum Kind {
    Sqlite,
    Postgres,
}

fn kind_of(path: &Path) -> Result<Kind, StoreError> {
    let mut file = std::fs::File::open(path).map_err(|e| io_error("cannot open backup", path, e))?;
    let mut head = [0u8; 64];
    let n = std::io::Read::read(&mut file, &mut head).map_err(|e| io_error("cannot read backup", path, e))?;
    if head[..n].starts_with(SQLITE_MAGIC) {
        Ok(Kind::Sqlite)
    } else if head[..n].starts_with(PG_HEADER.as_bytes()) {
        Ok(Kind::Postgres)
    } else {
        Err(StoreError::Config(format!("{} is not a charter backup (neither a SQLite backup nor a PostgreSQL one)", path.display())))
    }
}

// ---------------------------------------------------------------- SQLite

fn sqlite_sums(conn: &Connection) -> Result<BTreeMap<String, TableSum>, StoreError> {
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> ?1 ORDER BY name",
        )?
        .query_map([MANIFEST_TABLE], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut sums = BTreeMap::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{}\"", table.replace('"', "\"\"")))?;
        let columns = stmt.column_count();
        let mut rows = stmt.query([])?;
        let mut sum = RowSum::default();
        let mut buf = Vec::new();
        while let Some(row) = rows.next()? {
            buf.clear();
            for i in 0..columns {
                use rusqlite::types::ValueRef;
                let (tag, bytes): (u8, std::borrow::Cow<[u8]>) = match row.get_ref(i)? {
                    ValueRef::Null => (0, (&[][..]).into()),
                    ValueRef::Integer(v) => (1, v.to_be_bytes().to_vec().into()),
                    ValueRef::Real(v) => (2, v.to_bits().to_be_bytes().to_vec().into()),
                    ValueRef::Text(t) => (3, t.into()),
                    ValueRef::Blob(b) => (4, b.into()),
                };
                buf.push(tag);
                buf.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
                buf.extend_from_slice(&bytes);
            }
            sum.add(&buf);
        }
        sums.insert(table, sum.finish());
    }
    Ok(sums)
}

fn sqlite_spec_hash(conn: &Connection) -> Option<String> {
    conn.query_row("SELECT spec_hash FROM _charter_migrations ORDER BY id DESC LIMIT 1", [], |r| r.get(0)).ok()
}

fn sqlite_backup(db: &SqliteDb, to: &Path) -> Result<Manifest, StoreError> {
    let tmp = with_suffix(to, ".partial");
    if to.exists() {
        return Err(StoreError::Refused(format!("{} exists; a backup never overwrites a file", to.display())));
    }
    let _ = std::fs::remove_file(&tmp);
    drop(create_private(&tmp)?);
    let result = (|| {
        let mut src = db.connect()?;
        // One read transaction: the manifest and the copied pages are the
        // same snapshot. Writers go on (WAL); the copy does not restart.
        let tx = src.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
        let tables = sqlite_sums(&tx)?;
        let manifest = Manifest { format: 1, backend: "sqlite".into(), created_at: now_text(), spec_hash: sqlite_spec_hash(&tx), tables };
        let mut dst = Connection::open(&tmp).map_err(|e| io_error("cannot create backup", &tmp, e))?;
        {
            let backup = rusqlite::backup::Backup::new(&tx, &mut dst)?;
            // All pages in one step: the snapshot of this read transaction.
            match backup.step(-1)? {
                rusqlite::backup::StepResult::Done => {}
                other => return Err(StoreError::Unavailable(format!("the backup did not complete ({other:?})"))),
            }
        }
        tx.finish()?;
        // A self-contained file: no WAL beside it.
        dst.execute_batch("PRAGMA journal_mode=DELETE")?;
        dst.execute(&format!("CREATE TABLE \"{MANIFEST_TABLE}\" (manifest TEXT NOT NULL) STRICT"), [])?;
        dst.execute(
            &format!("INSERT INTO \"{MANIFEST_TABLE}\" (manifest) VALUES (?1)"),
            [serde_json::to_string(&manifest).expect("manifests serialise")],
        )?;
        drop(dst);
        sync_file(&tmp)?;
        Ok(manifest)
    })();
    match result {
        Ok(manifest) => {
            std::fs::rename(&tmp, to).map_err(|e| io_error("cannot move the backup to", to, e))?;
            sync_file(to)?;
            Ok(manifest)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Reads the backup file itself: opened read-only, never modified.
fn sqlite_verify(path: &Path) -> Result<Verification, StoreError> {
    // A scratch copy: opening a database can write to it (a hot journal).
    let dir = tempfile::tempdir().map_err(|e| StoreError::Unavailable(format!("cannot make a scratch folder: {e}")))?;
    let copy = dir.path().join("verify.db");
    std::fs::copy(path, &copy).map_err(|e| io_error("cannot read backup", path, e))?;
    let conn = Connection::open_with_flags(&copy, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| io_error("cannot open backup", path, e))?;
    let mut faults = Vec::new();
    let integrity: Vec<String> = match conn.prepare("PRAGMA integrity_check") {
        Ok(mut s) => s.query_map([], |r| r.get(0))?.collect::<Result<_, _>>().unwrap_or_else(|e| vec![e.to_string()]),
        Err(e) => vec![e.to_string()],
    };
    if integrity != ["ok"] {
        faults.extend(integrity.into_iter().take(10).map(|m| format!("integrity check: {m}")));
        return Ok(Verification { manifest: None, faults });
    }
    let fk: i64 = conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap_or(0);
    if fk > 0 {
        faults.push(format!("{fk} rows reference rows that are not in the backup"));
    }
    let manifest: Option<Manifest> = conn
        .query_row(&format!("SELECT manifest FROM \"{MANIFEST_TABLE}\""), [], |r| r.get::<_, String>(0))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let Some(manifest) = manifest else {
        faults.push("the backup holds no readable manifest (it was not made by `charter backup`, or was changed)".into());
        return Ok(Verification { manifest: None, faults });
    };
    faults.extend(compare(&manifest, &sqlite_sums(&conn)?));
    Ok(Verification { manifest: Some(manifest), faults })
}

fn sqlite_restore(target: &Path, path: &Path, keep_dir: &Path) -> Result<Restored, StoreError> {
    let manifest = verified(path, sqlite_verify(path)?)?;
    // The new file beside the target, so the final rename is atomic.
    let incoming = with_suffix(target, ".restoring");
    let _ = std::fs::remove_file(&incoming);
    std::fs::copy(path, &incoming).map_err(|e| io_error("cannot copy the backup to", &incoming, e))?;
    let prepared = (|| {
        let conn = Connection::open(&incoming).map_err(|e| io_error("cannot open", &incoming, e))?;
        conn.execute_batch(&format!("DROP TABLE \"{MANIFEST_TABLE}\"; PRAGMA journal_mode=WAL;"))?;
        drop(conn);
        sync_file(&incoming)
    })();
    if let Err(e) = prepared {
        let _ = std::fs::remove_file(&incoming);
        return Err(e);
    }
    // Keep the current database, checkpointed into one file, as a backup.
    std::fs::create_dir_all(keep_dir).map_err(|e| io_error("cannot create", keep_dir, e))?;
    let stamp = now_stamp();
    let previous = keep_dir.join(format!("pre-restore-{stamp}.db"));
    if target.exists() {
        let conn = Connection::open(target).map_err(|e| io_error("cannot open", target, e))?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        conn.execute_batch("PRAGMA journal_mode=DELETE")?;
        drop(conn);
        std::fs::rename(target, &previous).map_err(|e| io_error("cannot move the current database to", &previous, e))?;
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(with_suffix(target, suffix));
    }
    std::fs::rename(&incoming, target).map_err(|e| io_error("cannot move the restored database to", target, e))?;
    sync_file(target)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o600));
    }
    Ok(Restored { manifest, previous: previous.display().to_string() })
}

// ------------------------------------------------------------ PostgreSQL

/// Every table of the `public` schema, summed in the caller's transaction.
async fn pg_sums(client: &impl tokio_postgres::GenericClient) -> Result<BTreeMap<String, TableSum>, StoreError> {
    let tables: Vec<String> = client
        .query("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut sums = BTreeMap::new();
    for table in tables {
        // A row's text form is canonical for its types (and time zone:
        // every charter connection runs in UTC).
        let rows = client.query(&format!("SELECT t::text FROM {} t", crate::postgres::ident(&table)), &[]).await?;
        let mut sum = RowSum::default();
        for row in rows {
            sum.add(row.get::<_, &str>(0).as_bytes());
        }
        sums.insert(table, sum.finish());
    }
    Ok(sums)
}

async fn pg_spec_hash(client: &impl tokio_postgres::GenericClient) -> Option<String> {
    client.query_opt("SELECT spec_hash FROM _charter_migrations ORDER BY id DESC LIMIT 1", &[]).await.ok().flatten().map(|r| r.get(0))
}

async fn pg_backup(db: &PgDb, to: &Path) -> Result<Manifest, StoreError> {
    if to.exists() {
        return Err(StoreError::Refused(format!("{} exists; a backup never overwrites a file", to.display())));
    }
    let tmp = with_suffix(to, ".partial");
    let _ = std::fs::remove_file(&tmp);
    let mut client = db.client().await?;
    let tx = client.build_transaction().isolation_level(tokio_postgres::IsolationLevel::RepeatableRead).read_only(true).start().await?;
    let snapshot: String = tx.query_one("SELECT pg_export_snapshot()", &[]).await?.get(0);
    let manifest = Manifest {
        format: 1,
        backend: "postgres".into(),
        created_at: now_text(),
        spec_hash: pg_spec_hash(&*tx).await,
        tables: pg_sums(&*tx).await?,
    };
    let mut file = create_private(&tmp)?;
    let header = format!("{PG_HEADER}{}\n", serde_json::to_string(&manifest).expect("manifests serialise"));
    file.write_all(header.as_bytes()).map_err(|e| io_error("cannot write backup", &tmp, e))?;
    // pg_dump appends to the same open file, from the exported snapshot,
    // while this transaction holds it.
    let result = db.pg_dump(&["--format=plain", "--no-owner", "--no-privileges", &format!("--snapshot={snapshot}")], file).await;
    tx.commit().await?;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_file(&tmp)?;
    std::fs::rename(&tmp, to).map_err(|e| io_error("cannot move the backup to", to, e))?;
    sync_file(to)?;
    Ok(manifest)
}

fn pg_manifest(path: &Path) -> Result<Option<Manifest>, StoreError> {
    let file = std::fs::File::open(path).map_err(|e| io_error("cannot open backup", path, e))?;
    let mut line = String::new();
    std::io::BufReader::new(file).read_line(&mut line).map_err(|e| io_error("cannot read backup", path, e))?;
    Ok(line.strip_prefix(PG_HEADER).and_then(|json| serde_json::from_str(json.trim_end()).ok()))
}

/// Loads the dump at `path` into the empty database at `url` with psql.
async fn psql_load(url: &str, path: &Path) -> Result<(), StoreError> {
    let db = PgDb::connect(url).await?;
    let out = db.psql_file(path).await?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).take(5).collect();
        return Err(StoreError::Unavailable(format!("the backup does not load ({}): {}", out.status, first.join(" | "))));
    }
    Ok(())
}

async fn pg_verify_into(path: &Path, url: &str) -> Result<Verification, StoreError> {
    let Some(manifest) = pg_manifest(path)? else {
        return Ok(Verification { manifest: None, faults: vec!["the backup's first line is not a readable manifest".into()] });
    };
    if let Err(e) = psql_load(url, path).await {
        return Ok(Verification { manifest: Some(manifest), faults: vec![e.to_string()] });
    }
    let db = PgDb::connect(url).await?;
    let client = db.client().await?;
    let faults = compare(&manifest, &pg_sums(&**client).await?);
    Ok(Verification { manifest: Some(manifest), faults })
}

async fn pg_restore(url: &str, path: &Path) -> Result<Restored, StoreError> {
    // Load and verify into a new database on the same server, then swap
    // names: the old database stays, renamed, until someone drops it.
    let scratch = ScratchDatabase::create(url).await?;
    let verification = match pg_verify_into(path, &scratch.url).await {
        Ok(v) => v,
        Err(e) => {
            let _ = scratch.drop_now().await;
            return Err(e);
        }
    };
    let manifest = match verified(path, verification) {
        Ok(m) => m,
        Err(e) => {
            let _ = scratch.drop_now().await;
            return Err(e);
        }
    };
    let stamp = now_stamp();
    let previous = scratch.swap_into(url, &format!("pre_restore_{stamp}")).await?;
    Ok(Restored { manifest, previous })
}
