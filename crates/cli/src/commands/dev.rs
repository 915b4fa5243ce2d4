//! `charter dev`: `serve` with the dev profile, reloaded whenever the spec
//! (or a template override beside it) is saved. A spec that does not
//! compile, or needs a migration that is not safe, shows its diagnostics in
//! the terminal and on every page until it is fixed; the database and its
//! data stay across reloads.

use super::serve::{app_config, init_logging, migrate_if_safe, NotMigrated, DEV_SECRET};
use crate::config::{spec_dir, store_config, Env};
use crate::exit;
use charter_app::{App, Profile, Secret, SystemClock};
use charter_store::{Database, StoreConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use super::serve::Args;

/// How often the files are looked at.
const POLL: Duration = Duration::from_millis(250);

/// What the spec and the template folders look like now: any edit changes it.
fn fingerprint(spec: &Path) -> Vec<(PathBuf, Option<std::time::SystemTime>, u64)> {
    let stat = |p: &Path| {
        let meta = std::fs::metadata(p).ok();
        (p.to_path_buf(), meta.as_ref().and_then(|m| m.modified().ok()), meta.map_or(0, |m| m.len()))
    };
    let mut out = vec![stat(spec), stat(&spec_dir(spec).join(".env"))];
    for folder in ["templates", "mail"] {
        let dir = spec_dir(spec).join(folder);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
        files.sort();
        out.push(stat(&dir));
        out.extend(files.iter().map(|f| stat(f)));
    }
    out
}

/// The app the spec describes, migrated; or the text that says why not.
async fn prepare(args: &Args<'_>, addr: SocketAddr) -> Result<(Arc<App>, StoreConfig), (String, String)> {
    let file = super::display_name(args.spec);
    let source = std::fs::read_to_string(args.spec).map_err(|e| ("The spec cannot be read".to_string(), format!("{file}: {e}")))?;
    let compiled = charter_model::compile(&source);
    let Some(model) = compiled.model.filter(|_| !compiled.diagnostics.iter().any(|d| d.severity() == charter_spec::Severity::Error)) else {
        let text = charter_spec::diagnostic::render_human(&file, &source, &compiled.diagnostics);
        return Err(("The spec has errors".to_string(), text));
    };
    if !compiled.diagnostics.is_empty() {
        eprint!("{}", charter_spec::diagnostic::render_human(&file, &source, &compiled.diagnostics));
    }
    let env = Env::load(&spec_dir(args.spec)).map_err(|e| ("The .env file has an error".to_string(), e))?;
    let profile = match env.get("CHARTER_ENV").unwrap_or("dev") {
        "dev" => Profile::Dev,
        "test" => Profile::Test,
        other => {
            return Err((
                "charter dev runs the dev or test profile".to_string(),
                format!("CHARTER_ENV={other}: use `charter serve` for prod"),
            ))
        }
    };
    let config = store_config(&env, args.data).map_err(|e| ("The database setting has an error".to_string(), e))?;
    let secret = Secret::new(env.get("CHARTER_SECRET").unwrap_or(DEV_SECRET).as_bytes().to_vec());
    let public_url = env.get("CHARTER_PUBLIC_URL").map_or_else(|| format!("http://{addr}"), str::to_string);
    let app_config =
        app_config(&env, profile, secret, public_url, &spec_dir(args.spec)).map_err(|e| ("A setting has an error".to_string(), e))?;
    charter_web::ui::Ui::new(&app_config.ui_templates).map_err(|e| ("A template override has an error".to_string(), e.to_string()))?;
    let db = Database::open(&config).await.map_err(|e| ("The database cannot be opened".to_string(), e.to_string()))?;
    match migrate_if_safe(&db, &model, &source, args.data).await {
        Err(NotMigrated::Unsafe(plan)) => {
            return Err((
                "The spec needs a migration that is not safe to apply by itself".to_string(),
                format!("{plan}\nReview it with `charter plan {file}`, then apply it with `charter migrate {file}` (--allow-destructive for destructive steps), or change the spec back."),
            ));
        }
        Ok(report) if report.applied => eprintln!("charter dev: migrated ({} steps)", report.plan.steps.len()),
        Ok(_) => {}
        Err(NotMigrated::Failed(e)) => return Err(("The migration failed".to_string(), e.to_string())),
    }
    let app = App::new(Arc::new(model), app_config, db, Arc::new(SystemClock))
        .map_err(|e| ("The app cannot start".to_string(), format!("{e:?}")))?;
    Ok((Arc::new(app), config))
}

pub fn run(args: Args) -> u8 {
    let addr = match super::serve::listen_addr(args.bind, args.port) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if !args.spec.exists() {
        eprintln!("error: cannot read {}: no such file", args.spec.display());
        return exit::USAGE;
    }
    let _serving = match super::backup::serve_lock(args.data) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let env = Env::load(&spec_dir(args.spec)).ok();
    init_logging(Profile::Dev, env.as_ref().and_then(|e| e.get("CHARTER_LOG")));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let (changed_tx, changed_rx) = tokio::sync::watch::channel(0u64);
        let watched = args.spec.to_path_buf();
        tokio::spawn(async move {
            let mut last = fingerprint(&watched);
            loop {
                tokio::time::sleep(POLL).await;
                let now = fingerprint(&watched);
                if now != last {
                    last = now;
                    changed_tx.send_modify(|n| *n += 1);
                }
            }
        });
        let stopping = Arc::new(AtomicBool::new(false));
        loop {
            let mut changed = changed_rx.clone();
            changed.borrow_and_update();
            let listener = match bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: cannot listen on {addr}: {e}");
                    return exit::USAGE;
                }
            };
            let stop = stopping.clone();
            let shutdown = async move {
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = charter_web::shutdown_signal() => stop.store(true, Ordering::SeqCst),
                }
            };
            let served = match prepare(&args, addr).await {
                Ok((app, config)) => {
                    eprintln!(
                        "charter dev: serving `{}` at {} on {} (watching {})",
                        app.model.name,
                        app.config.public_url,
                        config.url.redacted(),
                        args.spec.display()
                    );
                    charter_web::serve(app, listener, shutdown).await
                }
                Err((title, text)) => {
                    eprintln!("charter dev: {title}:\n{text}");
                    eprintln!("charter dev: waiting for {} to change (pages show this too)", args.spec.display());
                    charter_web::dev::serve_problem(listener, &title, &text, shutdown).await
                }
            };
            if let Err(e) = served {
                eprintln!("error: {e}");
                return exit::PROBLEM;
            }
            if stopping.load(Ordering::SeqCst) {
                return exit::OK;
            }
            eprintln!("charter dev: {} changed; reloading", args.spec.display());
        }
    })
}

/// Binds `addr`, waiting a moment for the previous server's socket to go.
async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let mut tries = 0;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 40 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}
