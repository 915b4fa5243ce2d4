use crate::StoreError;
use std::path::PathBuf;

/// `CHARTER_DATABASE_URL`: `sqlite://PATH` or `postgres://...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    /// The full connection string (may hold a password: never log it).
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(s: &str) -> Result<DatabaseUrl, StoreError> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::Config("`sqlite://` needs a file path, e.g. sqlite://data/app.db".into()));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(s.to_string()));
        }
        let shown: String = s.split("://").next().unwrap_or("").chars().take(20).collect();
        Err(StoreError::Config(format!("unsupported database URL scheme `{shown}`; use sqlite://PATH or postgres://USER@HOST/DB")))
    }

    /// A form safe to print: no credentials.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            DatabaseUrl::Postgres(s) => {
                let rest = s.split_once("://").map_or("", |(_, r)| r);
                // The query may hold `password=`: only sslmode is shown.
                let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
                let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                match query.split('&').find(|p| p.starts_with("sslmode=")) {
                    Some(mode) => format!("postgres://{host}?{mode}"),
                    None => format!("postgres://{host}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        assert_eq!(DatabaseUrl::parse("sqlite://data/app.db").unwrap(), DatabaseUrl::Sqlite("data/app.db".into()));
        let pg = DatabaseUrl::parse("postgres://u:secret@localhost:5432/app").unwrap();
        assert_eq!(pg.redacted(), "postgres://localhost:5432/app");
        assert!(!pg.redacted().contains("secret"));
        let pg = DatabaseUrl::parse("postgres://u@db:5432/app?password=secret&sslmode=verify-full&sslrootcert=/ca.pem").unwrap();
        assert_eq!(pg.redacted(), "postgres://db:5432/app?sslmode=verify-full");
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }
}
