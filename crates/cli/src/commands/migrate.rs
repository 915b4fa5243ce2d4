//! `charter plan` and `charter migrate`.

use super::{compile_or_report, read_spec};
use crate::config::{spec_dir, store_config, Env};
use crate::{exit, Format};
use charter_schema::render_plan;
use charter_store::{Database, MigrateOptions, Progress, ProgressFn};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub struct Args<'a> {
    pub spec: &'a Path,
    pub data: &'a Path,
    pub allow_destructive: bool,
    pub dry_run: bool,
    pub format: Format,
}

pub fn run(args: Args) -> u8 {
    let source = match read_spec(args.spec) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let Some(model) = compile_or_report(args.spec, &source) else { return exit::PROBLEM };
    let env = match Env::load(&spec_dir(args.spec)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let config = match store_config(&env, args.data) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let db = match Database::open(&config).await {
            Ok(db) => db,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        };
        let opts = MigrateOptions {
            allow_destructive: args.allow_destructive,
            dry_run: args.dry_run,
            spec_hash: charter_store::spec_hash(&source),
            progress: Some(progress_printer()),
            backup_dir: Some(args.data.join("backups")),
            ..Default::default()
        };
        let report = match db.migrate(&model, opts).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::PROBLEM;
            }
        };
        if args.format == Format::Json {
            println!("{}", serde_json::to_string_pretty(&report).expect("report serialises"));
        } else {
            print!("{}", render_plan(&report.plan, &report.results()));
        }
        let target = config.url.redacted();
        if report.plan.is_empty() {
            return exit::OK;
        }
        if let Some(at) = report.blocked_at {
            let refused = report.has_refused();
            if args.format == Format::Human {
                if refused {
                    eprintln!("\n{target}: not migrated: step {} cannot be applied to the data as it is. Nothing was changed.", at + 1);
                } else if args.dry_run {
                    eprintln!("\n{target}: `charter migrate` would stop at step {}: it is destructive. Run it with --allow-destructive (a backup is taken first).", at + 1);
                } else {
                    eprintln!("\n{target}: not migrated: step {} is destructive. Nothing was changed; rerun with --allow-destructive (a backup is taken first).", at + 1);
                }
            }
            // A plan preview with destructive steps is not a failure; a refused step is.
            return if refused || !args.dry_run { exit::PROBLEM } else { exit::OK };
        }
        if args.format == Format::Human {
            if let Some(b) = &report.backup {
                eprintln!("backup taken: {}", b.display());
            }
            if args.dry_run {
                eprintln!("\n{target}: `charter migrate` would apply this plan (checked against the data in a transaction that was rolled back).");
            } else {
                eprintln!("\n{target}: migrated in {} ms.", report.duration.as_millis());
            }
        }
        exit::OK
    })
}

/// Progress of long copies: a live line on a terminal, every 10 % otherwise.
fn progress_printer() -> ProgressFn {
    let tty = std::io::stderr().is_terminal();
    let last = Arc::new(Mutex::new((String::new(), 0u64)));
    Arc::new(move |p: Progress| {
        let pct = (p.done * 100).checked_div(p.total).unwrap_or(100);
        let mut last = last.lock().expect("progress lock");
        if tty {
            let width = 30;
            let filled = (pct as usize * width / 100).min(width);
            eprint!("\r  {} [{}{}] {}/{} rows", p.table, "#".repeat(filled), " ".repeat(width - filled), p.done, p.total);
            if p.done >= p.total {
                eprintln!();
            }
        } else if last.0 != p.table || pct / 10 > last.1 / 10 || p.done >= p.total {
            eprintln!("  {}: {}/{} rows ({pct}%)", p.table, p.done, p.total);
        }
        *last = (p.table.clone(), pct);
    })
}
