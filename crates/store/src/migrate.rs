//! Types shared by both backends' migration executors.

use charter_schema::{CheckResult, Plan, Verdict};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Long work reports how far it got: `done` of `total` rows of `table`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub table: String,
    pub done: u64,
    pub total: u64,
}

pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

#[derive(Clone, Default)]
pub struct MigrateOptions {
    pub allow_destructive: bool,
    /// Check and execute everything, then roll back: `charter plan`.
    pub dry_run: bool,
    /// Recorded with the migration.
    pub spec_hash: String,
    pub progress: Option<ProgressFn>,
    /// Test hook: stop (sleep) inside the transaction after this many
    /// copied rows, so a test can kill the process mid-migration.
    pub pause_after_rows: Option<u64>,
    /// Where the pre-migration backup goes (default: `backups/` beside the database).
    pub backup_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    pub verdict: Verdict,
    /// The step's data check results, when its checks ran (steps after a
    /// blocked one are not checked).
    pub results: Option<Vec<CheckResult>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrationReport {
    pub plan: Plan,
    pub outcomes: Vec<StepOutcome>,
    /// True when the changes were committed.
    pub applied: bool,
    /// Index of the step that stopped the migration (refused, or
    /// destructive without permission).
    pub blocked_at: Option<usize>,
    pub backup: Option<PathBuf>,
    #[serde(serialize_with = "ser_ms")]
    pub duration: Duration,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl MigrationReport {
    pub fn results(&self) -> Vec<Option<Vec<CheckResult>>> {
        self.outcomes.iter().map(|o| o.results.clone()).collect()
    }

    pub fn has_destructive(&self) -> bool {
        self.outcomes.iter().any(|o| matches!(o.verdict, Verdict::Destructive(_)))
    }

    pub fn has_refused(&self) -> bool {
        self.outcomes.iter().any(|o| matches!(o.verdict, Verdict::Refused(_)))
    }
}

/// One row of the migration history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationRecord {
    pub id: i64,
    pub spec_hash: String,
    /// The steps as people read them.
    pub steps: Vec<String>,
    pub applied_at: String,
    pub duration_ms: i64,
}

/// Now, as stored: RFC 3339 UTC with milliseconds (fixed width, so text
/// order is time order).
pub fn now_text() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z")).expect("formats")
}

/// Now as digits only (`20261127113458221`), for file and database names.
pub(crate) fn now_stamp() -> String {
    now_text().chars().filter(|c| c.is_ascii_digit()).collect()
}

pub fn today_text() -> String {
    now_text()[..10].to_string()
}
