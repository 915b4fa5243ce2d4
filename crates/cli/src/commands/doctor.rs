//! `charter doctor`: the production-readiness scorecard of this
//! configuration and, with `--url`, of a running instance. Each item passes
//! or fails with the reason and the fix; any failure exits 1.

use super::serve::{secret_problem, smtp_problem, tls_files, tls_problem, Problem};
use super::{read_spec, serve::trusted_proxies};
use crate::config::{spec_dir, store_config, Env};
use crate::{exit, Format};
use charter_store::{backup, Database, DatabaseUrl, MigrateOptions};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A backup older than this fails the backups item.
const BACKUP_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Item {
    name: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Default, Serialize)]
struct Card {
    items: Vec<Item>,
}

impl Card {
    fn pass(&mut self, name: &'static str, detail: impl Into<String>) {
        self.items.push(Item { name, status: Status::Pass, detail: detail.into(), fix: None });
    }
    fn warn(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.items.push(Item { name, status: Status::Warn, detail: detail.into(), fix: Some(fix.into()) });
    }
    fn fail(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.items.push(Item { name, status: Status::Fail, detail: detail.into(), fix: Some(fix.into()) });
    }
    /// One of the checks `serve` refuses prod on.
    fn problem(&mut self, name: &'static str, problem: Problem, ok: impl Into<String>) {
        match problem {
            None => self.pass(name, ok),
            Some((what, fix)) => self.fail(name, what, fix),
        }
    }
    fn count(&self, status: Status) -> usize {
        self.items.iter().filter(|i| i.status == status).count()
    }
}

pub struct Args<'a> {
    pub spec: &'a Path,
    pub data: &'a Path,
    pub url: Option<&'a str>,
    pub format: Format,
}

pub fn run(args: Args) -> u8 {
    let env = match Env::load(&spec_dir(args.spec)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let mut card = Card::default();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let model = check_spec(&mut card, args.spec);
    check_config(&mut card, &env, args.spec);
    runtime.block_on(async {
        check_database(&mut card, &env, args.data, model.as_ref()).await;
        if let Some(url) = args.url {
            check_instance(&mut card, url.trim_end_matches('/')).await;
        }
    });
    let (passed, warned, failed) = (card.count(Status::Pass), card.count(Status::Warn), card.count(Status::Fail));
    if args.format == Format::Json {
        let out = serde_json::json!({ "items": card.items, "passed": passed, "warnings": warned, "failed": failed });
        println!("{}", serde_json::to_string_pretty(&out).expect("serialises"));
    } else {
        println!("charter doctor: {}{}", args.spec.display(), args.url.map(|u| format!(" and {u}")).unwrap_or_default());
        for item in &card.items {
            let tag = match item.status {
                Status::Pass => "PASS",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            println!("  {tag}  {:<18} {}", item.name, item.detail);
            if let Some(fix) = &item.fix {
                println!("        {:<18} fix: {fix}", "");
            }
        }
        println!("{passed} passed, {warned} warnings, {failed} failed");
    }
    if failed > 0 {
        exit::PROBLEM
    } else {
        exit::OK
    }
}

fn check_spec(card: &mut Card, spec: &Path) -> Option<charter_model::AppModel> {
    let Ok(source) = read_spec(spec) else {
        card.fail("spec", format!("cannot read {}", spec.display()), "run doctor beside app.md or pass its path");
        return None;
    };
    let compiled = charter_model::compile(&source);
    let warnings = compiled.diagnostics.iter().filter(|d| d.severity() == charter_spec::Severity::Warning).count();
    match compiled.model {
        Some(model) if warnings == 0 => {
            card.pass("spec", "compiles without warnings");
            Some(model)
        }
        Some(model) => {
            card.warn("spec", format!("compiles with {warnings} warning(s)"), format!("see `charter check {}`", spec.display()));
            Some(model)
        }
        None => {
            card.fail("spec", "does not compile", format!("fix what `charter check {}` reports", spec.display()));
            None
        }
    }
}

fn check_config(card: &mut Card, env: &Env, spec: &Path) {
    match env.get("CHARTER_ENV").unwrap_or("prod") {
        "prod" => card.pass("profile", "prod (the default for serve)"),
        other => card.fail(
            "profile",
            format!("CHARTER_ENV={other}: mail goes to the outbox, /_dev/* is served and the limits are for development"),
            "unset CHARTER_ENV (or set it to prod) where the app serves users",
        ),
    }
    card.problem("secret", secret_problem(env), "CHARTER_SECRET is set, at least 32 bytes");
    match tls_files(env) {
        Ok(Some(_)) => card.pass("tls", "HTTPS served directly; the certificate and key load and match"),
        Ok(None) => {
            let proxies = trusted_proxies(env.get("CHARTER_TRUSTED_PROXIES")).unwrap_or_default();
            card.problem("tls", tls_problem(env), format!("behind a TLS proxy ({} trusted)", proxies.len()));
        }
        Err(e) => card.fail("tls", e, "point CHARTER_TLS_CERT and CHARTER_TLS_KEY at the PEM certificate chain and its key"),
    }
    match env.get("CHARTER_PUBLIC_URL") {
        Some(u) if u.starts_with("https://") => card.pass("public url", u.to_string()),
        Some(u) => card.fail(
            "public url",
            format!("{u} is not https: links in mail would be plain HTTP and cookies would not be Secure"),
            "set CHARTER_PUBLIC_URL to the https:// address users open",
        ),
        None => card.fail(
            "public url",
            "CHARTER_PUBLIC_URL is not set: links in mail would point at the bind address",
            "set CHARTER_PUBLIC_URL to the https:// address users open",
        ),
    }
    card.problem("mail", smtp_problem(env), "CHARTER_SMTP_URL is set, over TLS or to this machine");
    match env.get("CHARTER_METRICS_TOKEN") {
        Some(_) => card.pass("metrics", "/metrics needs CHARTER_METRICS_TOKEN"),
        None => card.warn("metrics", "no CHARTER_METRICS_TOKEN: /metrics is 404 in prod", "set CHARTER_METRICS_TOKEN to scrape metrics"),
    }
    // Secrets never in the repository.
    let dir = spec_dir(spec);
    let tracked = std::process::Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(["ls-files", "--", ".env"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty());
    if tracked {
        card.fail(
            "secrets",
            ".env is tracked by git: its secrets are in the repository's history",
            "`git rm --cached .env`, add it to .gitignore, and replace every secret it held",
        );
    } else {
        card.pass("secrets", ".env is not in git");
    }
}

async fn check_database(card: &mut Card, env: &Env, data: &Path, model: Option<&charter_model::AppModel>) {
    let config = match store_config(env, data) {
        Ok(c) => c,
        Err(e) => {
            card.fail("database", e, "fix CHARTER_DATABASE_URL");
            return;
        }
    };
    match &config.url {
        DatabaseUrl::Postgres(url) => {
            let host = url.split_once("://").map_or("", |(_, r)| r).rsplit_once('@').map_or(url.as_str(), |(_, h)| h);
            let host = host.split(['/', ':', '?']).next().unwrap_or("");
            let local = host.is_empty() || host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if local || url.contains("sslmode=verify-full") {
                card.pass("database tls", if local { "PostgreSQL on this machine" } else { "sslmode=verify-full" });
            } else {
                card.fail(
                    "database tls",
                    format!("the connection to {host} does not verify the server's certificate"),
                    "add ?sslmode=verify-full (and sslrootcert=/path/ca.pem unless the system's CAs sign it) to CHARTER_DATABASE_URL",
                );
            }
        }
        DatabaseUrl::Sqlite(path) => {
            #[cfg(unix)]
            if let Ok(meta) = std::fs::metadata(path) {
                use std::os::unix::fs::PermissionsExt;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 == 0 {
                    card.pass("database file", format!("{} is readable by its owner only", path.display()));
                } else {
                    card.fail(
                        "database file",
                        format!("{} has mode {mode:o}: other users can read password hashes", path.display()),
                        format!("chmod 600 {}", path.display()),
                    );
                }
            }
            if !path.exists() {
                card.fail("database", format!("no database at {}", path.display()), "run `charter migrate` (or `charter serve`)");
                return;
            }
        }
    }
    let db = match Database::open(&config).await {
        Ok(db) => {
            card.pass("database", format!("{} answers", config.url.redacted()));
            db
        }
        Err(e) => {
            card.fail("database", e.to_string(), "check CHARTER_DATABASE_URL and that the server runs");
            return;
        }
    };
    if let Some(model) = model {
        match db.migrate(model, MigrateOptions { dry_run: true, ..Default::default() }).await {
            Ok(r) if r.plan.is_empty() => card.pass("schema", "the database matches the spec"),
            Ok(r) => card.warn(
                "schema",
                format!("{} migration step(s) pending", r.plan.steps.len()),
                "review `charter plan`, then `charter migrate` (serve applies safe steps itself)",
            ),
            Err(e) => card.fail("schema", e.to_string(), "see `charter plan`"),
        }
    }
    drop(db);
    check_backups(card, &config.url, &data.join("backups")).await;
}

async fn check_backups(card: &mut Card, url: &DatabaseUrl, dir: &Path) {
    let newest: Option<(PathBuf, SystemTime)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("backup-") && !e.file_name().to_string_lossy().ends_with(".partial"))
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.modified().ok()?)))
        .max_by_key(|(_, t)| *t);
    let fix = format!(
        "run `charter backup` on a schedule (hourly from cron, say) and keep copies off this machine; backups go to {}",
        dir.display()
    );
    let Some((path, modified)) = newest else {
        card.fail("backups", format!("no backup in {}", dir.display()), fix);
        return;
    };
    let age = SystemTime::now().duration_since(modified).unwrap_or_default();
    if age > BACKUP_MAX_AGE {
        card.fail("backups", format!("the newest backup, {}, is {} hours old", path.display(), age.as_secs() / 3600), fix);
        return;
    }
    let server = match url {
        DatabaseUrl::Postgres(u) => Some(u.as_str()),
        DatabaseUrl::Sqlite(_) => None,
    };
    match backup::verify(&path, server).await {
        Ok(v) if v.ok() => card.pass("backups", format!("{} is {} minutes old and verifies", path.display(), age.as_secs() / 60)),
        Ok(v) => card.fail("backups", format!("{} does not verify: {}", path.display(), v.faults.join("; ")), fix),
        Err(e) => card.fail("backups", format!("{} cannot be verified: {e}", path.display()), fix),
    }
}

/// What a running instance shows the world.
async fn check_instance(card: &mut Card, base: &str) {
    let client = match reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(10)).build() {
        Ok(c) => c,
        Err(e) => {
            card.fail("instance", e.to_string(), "");
            return;
        }
    };
    let get = |path: &str| client.get(format!("{base}{path}")).send();
    match (get("/healthz").await, get("/readyz").await) {
        (Ok(h), Ok(r)) if h.status() == 200 && r.status() == 200 => card.pass("health", "/healthz and /readyz answer 200"),
        (Ok(h), Ok(r)) => card.fail(
            "health",
            format!("/healthz is {}, /readyz is {}", h.status().as_u16(), r.status().as_u16()),
            "see the server's log; /readyz fails while the database does not answer",
        ),
        (Err(e), _) | (_, Err(e)) => {
            card.fail("health", format!("{base} does not answer: {e}"), "check the URL and that the server runs");
            return;
        }
    }
    if base.starts_with("https://") {
        card.pass("https", "served over HTTPS");
    } else {
        card.fail("https", format!("{base} is plain HTTP"), "open the instance through its https:// address (the TLS proxy)");
    }
    match get("/login").await {
        Ok(page) => {
            let header = |name: &str| page.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let csp = header("content-security-policy");
            let script_src = csp.split(';').find(|d| d.trim().starts_with("script-src")).unwrap_or("");
            let mut problems = Vec::new();
            if csp.is_empty() || script_src.contains("unsafe-inline") || csp.contains("unsafe-eval") {
                problems.push("no strict Content-Security-Policy");
            }
            if header("x-content-type-options") != "nosniff" {
                problems.push("no X-Content-Type-Options: nosniff");
            }
            if base.starts_with("https://") && !header("strict-transport-security").contains("max-age=") {
                problems.push("no Strict-Transport-Security");
            }
            if problems.is_empty() {
                card.pass("headers", "CSP without inline scripts, nosniff, and HSTS over HTTPS");
            } else {
                card.fail("headers", problems.join(", "), "serve charter's responses unchanged: the proxy must not strip its headers");
            }
        }
        Err(e) => card.fail("headers", format!("GET /login failed: {e}"), "check the instance"),
    }
    let mut exposed = Vec::new();
    for path in ["/_dev/mail", "/.env", "/app.md", "/.git/config", "/data/app.db"] {
        if let Ok(r) = get(path).await {
            if r.status() != 404 {
                exposed.push(format!("{path} is {}", r.status().as_u16()));
            }
        }
    }
    if exposed.is_empty() {
        card.pass("exposure", "dev routes, .env, the spec, .git and the database are not served");
    } else {
        card.fail("exposure", exposed.join(", "), "run the instance with CHARTER_ENV=prod and serve nothing else from its address");
    }
    match get("/metrics").await {
        Ok(r) if r.status() == 401 || r.status() == 404 => card.pass("metrics access", "/metrics needs a token"),
        Ok(r) => card.fail(
            "metrics access",
            format!("/metrics answers {} without a token", r.status().as_u16()),
            "run with CHARTER_ENV=prod and set CHARTER_METRICS_TOKEN",
        ),
        Err(e) => card.fail("metrics access", e.to_string(), "check the instance"),
    }
}
