//! Configuration: flags, then the environment, then `.env` beside the spec
//! (the real environment wins). The only place charter reads either.

use charter_store::{DatabaseUrl, StoreConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Variables from the environment over those in `.env`.
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// Reads `.env` in `dir` (if present) and overlays the process
    /// environment. A malformed `.env` is an error naming the line.
    pub fn load(dir: &Path) -> Result<Env, String> {
        let mut vars = HashMap::new();
        let path = dir.join(".env");
        if let Ok(text) = std::fs::read_to_string(&path) {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let line = line.strip_prefix("export ").unwrap_or(line);
                let Some((key, value)) = line.split_once('=') else {
                    return Err(format!("{}:{}: expected KEY=VALUE", path.display(), n + 1));
                };
                let key = key.trim();
                if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("{}:{}: `{key}` is not a variable name", path.display(), n + 1));
                }
                let value = value.trim();
                let value = match (value.chars().next(), value.chars().last()) {
                    (Some('"'), Some('"')) | (Some('\''), Some('\'')) if value.len() >= 2 => &value[1..value.len() - 1],
                    _ => value,
                };
                vars.insert(key.to_string(), value.to_string());
            }
        }
        for (k, v) in std::env::vars() {
            if k.starts_with("CHARTER_") {
                vars.insert(k, v);
            }
        }
        Ok(Env { vars })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// The folder holding the spec, for `.env` and relative defaults.
pub fn spec_dir(spec: &Path) -> PathBuf {
    spec.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Where the database is, from `CHARTER_DATABASE_URL` or `<data>/app.db`.
pub fn store_config(env: &Env, data: &Path) -> Result<StoreConfig, String> {
    let url = match env.get("CHARTER_DATABASE_URL") {
        Some(u) => DatabaseUrl::parse(u).map_err(|e| format!("CHARTER_DATABASE_URL: {e}"))?,
        None => DatabaseUrl::Sqlite(data.join("app.db")),
    };
    let synchronous_full = match env.get("CHARTER_SQLITE_SYNCHRONOUS").map(str::to_ascii_lowercase).as_deref() {
        None | Some("normal") => false,
        Some("full") => true,
        Some(other) => return Err(format!("CHARTER_SQLITE_SYNCHRONOUS must be `normal` or `full`, not `{other}`")),
    };
    Ok(StoreConfig { url, synchronous_full })
}
