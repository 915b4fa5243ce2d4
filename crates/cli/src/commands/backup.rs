//! `charter backup`, `charter verify-backup` and `charter restore`.

use crate::config::{store_config, Env};
use crate::exit;
use charter_store::backup::{self, Manifest};
use charter_store::{Database, DatabaseUrl, StoreConfig};
use std::fs::File;
use std::path::Path;

/// The lock file in the data folder: every `serve` holds it shared, a
/// restore exclusively, so neither starts while the other runs.
const LOCK_FILE: &str = ".charter.lock";

fn lock_file(data: &Path) -> Result<File, String> {
    std::fs::create_dir_all(data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    let path = data.join(LOCK_FILE);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// Held by `serve` and `dev` for as long as they run; a refusal is printed.
pub fn serve_lock(data: &Path) -> Result<File, u8> {
    take_lock(data, false).map_err(|e| {
        eprintln!("error: {e}");
        exit::USAGE
    })
}

/// The lock file, shared (serve) or exclusive (restore), or why not.
fn take_lock(data: &Path, exclusive: bool) -> Result<File, String> {
    let file = lock_file(data)?;
    let taken = if exclusive { file.try_lock() } else { file.try_lock_shared() };
    match taken {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) if exclusive => {
            Err(format!("a charter server is running on {} (or another restore is): stop it, then restore", data.display()))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(format!("a restore is running on {}; start the server when it has finished", data.display()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", data.join(LOCK_FILE).display())),
    }
}

fn config(data: &Path) -> Result<StoreConfig, String> {
    let env = Env::load(Path::new("."))?;
    store_config(&env, data)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

fn summary(manifest: &Manifest) -> String {
    let rows: u64 = manifest.tables.values().map(|t| t.rows).sum();
    format!("{} tables, {rows} rows, taken {}", manifest.tables.len(), manifest.created_at)
}

pub fn backup(data: &Path, to: Option<&Path>) -> u8 {
    let config = match config(data) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    if let DatabaseUrl::Sqlite(path) = &config.url {
        if !path.exists() {
            eprintln!("error: there is no database at {} to back up", path.display());
            return exit::USAGE;
        }
    }
    runtime().block_on(async {
        let db = match Database::open(&config).await {
            Ok(db) => db,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        };
        let backend = if matches!(config.url, DatabaseUrl::Postgres(_)) { "postgres" } else { "sqlite" };
        let to = to.map_or_else(|| backup::default_path(&data.join("backups"), backend), Path::to_path_buf);
        match db.backup(&to).await {
            Ok(manifest) => {
                println!("{}: {}", to.display(), summary(&manifest));
                exit::OK
            }
            Err(e) => {
                eprintln!("error: backup failed, nothing was written: {e}");
                exit::PROBLEM
            }
        }
    })
}

pub fn verify(data: &Path, path: &Path) -> u8 {
    let config = match config(data) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let server = match &config.url {
        DatabaseUrl::Postgres(url) => Some(url.clone()),
        DatabaseUrl::Sqlite(_) => None,
    };
    runtime().block_on(async {
        match backup::verify(path, server.as_deref()).await {
            Ok(v) if v.ok() => {
                println!("{}: ok ({})", path.display(), summary(v.manifest.as_ref().expect("ok has a manifest")));
                exit::OK
            }
            Ok(v) => {
                eprintln!("{}: does NOT verify:", path.display());
                for fault in &v.faults {
                    eprintln!("  - {fault}");
                }
                exit::PROBLEM
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::PROBLEM
            }
        }
    })
}

pub fn restore(data: &Path, path: &Path, live: bool) -> u8 {
    if live {
        eprintln!("error: `--live` (a swap under a running server) is not supported yet; stop the server, run `charter restore` without it, then start the server");
        return exit::USAGE;
    }
    let config = match config(data) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let _lock = match take_lock(data, true) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::PROBLEM;
        }
    };
    runtime().block_on(async {
        match backup::restore(&config, path, &data.join("backups")).await {
            Ok(r) => {
                println!("restored {} into {} ({})", path.display(), config.url.redacted(), summary(&r.manifest));
                if !r.previous.is_empty() {
                    println!("the database as it was is kept: {}", r.previous);
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::PROBLEM
            }
        }
    })
}
