//! `charter serve`: migrate if safe, then serve the app.

use super::{compile_or_report, read_spec};
use crate::config::{spec_dir, store_config, Env};
use crate::exit;
use charter_app::{App, AppConfig, Profile, Secret, SystemClock};
use charter_store::{Database, MigrateOptions};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub struct Args<'a> {
    pub spec: &'a Path,
    pub data: &'a Path,
    pub port: u16,
    pub bind: &'a str,
}

/// The secret outside prod when none is set (prod refuses it).
pub const DEV_SECRET: &str = "dev-secret-not-for-production-use-0123";

/// The secret `.env.example` and the docs show; refused in prod.
const EXAMPLE_SECRET: &str = "change-me";

/// Reasons prod refuses to start, each with its fix.
fn prod_refusals(env: &Env) -> Vec<String> {
    [secret_problem(env), tls_problem(env), smtp_problem(env)].into_iter().flatten().map(|(what, fix)| format!("{what}: {fix}")).collect()
}

/// What is wrong for prod, and its fix.
pub type Problem = Option<(String, String)>;

fn problem(what: impl Into<String>, fix: impl Into<String>) -> Problem {
    Some((what.into(), fix.into()))
}

/// What is wrong with `CHARTER_SECRET` for prod.
pub fn secret_problem(env: &Env) -> Problem {
    const GENERATE: &str = "set it to at least 32 random bytes (e.g. `openssl rand -base64 48`)";
    match env.get("CHARTER_SECRET") {
        None => problem("CHARTER_SECRET is not set", GENERATE),
        Some(s) if s == EXAMPLE_SECRET || s.starts_with("dev-secret") => problem("CHARTER_SECRET is the example value", GENERATE),
        Some(s) if s.len() < 32 => problem(format!("CHARTER_SECRET is {} bytes long", s.len()), GENERATE),
        Some(_) => None,
    }
}

/// Why users would reach prod without TLS.
pub fn tls_problem(env: &Env) -> Problem {
    if env.get("CHARTER_TLS_CERT").is_some() || env.get("CHARTER_TLS_KEY").is_some() {
        // Served directly; `tls_files` checks the pair.
        None
    } else if trusted_proxies(env.get("CHARTER_TRUSTED_PROXIES")).map_or(true, |p| p.is_empty()) {
        problem("no TLS", "set CHARTER_TRUSTED_PROXIES to the address of the TLS proxy in front of charter (e.g. 127.0.0.1/32)")
    } else {
        None
    }
}

/// `CHARTER_TLS_CERT` and `CHARTER_TLS_KEY`: both (HTTPS served directly,
/// the files read and checked now) or neither.
pub fn tls_files(env: &Env) -> Result<Option<std::sync::Arc<charter_web::tls::CertFiles>>, String> {
    match (env.get("CHARTER_TLS_CERT"), env.get("CHARTER_TLS_KEY")) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => charter_web::tls::CertFiles::load(Path::new(cert), Path::new(key)).map(Some),
        _ => Err("set both CHARTER_TLS_CERT and CHARTER_TLS_KEY (PEM files) to serve HTTPS, or neither".into()),
    }
}

/// Why prod could not send its mail safely.
pub fn smtp_problem(env: &Env) -> Problem {
    match env.get("CHARTER_SMTP_URL") {
        Some(url) if !smtp_is_private(url) => {
            problem("CHARTER_SMTP_URL sends mail in clear text to another machine", "use smtps:// or add ?tls=required")
        }
        Some(_) => None,
        None => problem(
            "CHARTER_SMTP_URL is not set, and verification and password-reset mail need an SMTP server",
            "set CHARTER_SMTP_URL (smtp:// or smtps://)",
        ),
    }
}

/// Whether mail to this SMTP URL is protected: TLS (`smtps://`,
/// `?tls=required`), or a relay on this machine. Mail carries reset links,
/// so prod never sends it in clear text over a network.
fn smtp_is_private(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else { return false };
    if scheme.eq_ignore_ascii_case("smtps") || rest.contains("tls=required") {
        return true;
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.strip_prefix('[').and_then(|h| h.split_once(']')).map_or_else(|| host.split(':').next().unwrap_or(""), |(h, _)| h);
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `CHARTER_TRUSTED_PROXIES`: CIDRs or bare addresses, separated by commas or spaces.
pub fn trusted_proxies(value: Option<&str>) -> Result<Vec<ipnet::IpNet>, String> {
    let mut out = Vec::new();
    for item in value.unwrap_or("").split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
        let net = item
            .parse::<ipnet::IpNet>()
            .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| format!("CHARTER_TRUSTED_PROXIES: `{item}` is not an address or CIDR (e.g. 127.0.0.1/32, 10.0.0.0/8)"))?;
        out.push(net);
    }
    Ok(out)
}

/// Template overrides: the files of `mail/` or `templates/` beside the spec.
fn template_files(dir: &Path, folder: &str) -> Result<Vec<(String, String)>, String> {
    let folder = dir.join(folder);
    let Ok(entries) = std::fs::read_dir(&folder) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
        out.push((name, text));
    }
    out.sort();
    Ok(out)
}

/// The app's configuration from the environment (and `mail/` beside the spec).
pub fn app_config(env: &Env, profile: Profile, secret: Secret, public_url: String, dir: &Path) -> Result<AppConfig, String> {
    Ok(AppConfig {
        profile,
        secret,
        secure_cookies: public_url.starts_with("https://"),
        public_url,
        metrics_token: env.get("CHARTER_METRICS_TOKEN").map(|t| Secret::new(t.as_bytes().to_vec())),
        previous_secret: env.get("CHARTER_SECRET_PREVIOUS").map(|t| Secret::new(t.as_bytes().to_vec())),
        trusted_proxies: trusted_proxies(env.get("CHARTER_TRUSTED_PROXIES"))?,
        smtp_url: env.get("CHARTER_SMTP_URL").map(|u| Secret::new(u.as_bytes().to_vec())),
        mail_from: env.get("CHARTER_MAIL_FROM").map(str::to_string),
        mail_templates: template_files(dir, "mail")?,
        ui_templates: template_files(dir, "templates")?,
        statement_timeout: statement_timeout(env.get("CHARTER_STATEMENT_TIMEOUT_MS"))?,
    })
}

/// `CHARTER_STATEMENT_TIMEOUT_MS`: milliseconds a list or `count` query may
/// run (default 5000).
pub fn statement_timeout(value: Option<&str>) -> Result<std::time::Duration, String> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(charter_app::DEFAULT_STATEMENT_TIMEOUT) };
    match v.parse::<u64>() {
        Ok(ms) if (1..=3_600_000).contains(&ms) => Ok(std::time::Duration::from_millis(ms)),
        _ => Err(format!("CHARTER_STATEMENT_TIMEOUT_MS must be a whole number of milliseconds from 1 to 3600000, not `{v}`")),
    }
}

pub fn init_logging(profile: Profile, filter: Option<&str>) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter.unwrap_or("info")).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout).with_ansi(std::io::stdout().is_terminal());
    let _ = if profile == Profile::Prod { builder.json().flatten_event(true).try_init() } else { builder.compact().try_init() };
}

/// Why `serve` or `dev` cannot serve the spec on this database yet.
pub enum NotMigrated {
    /// A step is destructive or refused: the plan, rendered.
    Unsafe(String),
    Failed(charter_store::StoreError),
}

/// What `serve` and `dev` do before serving: apply the plan when every
/// step is safe (backups, if any, under `<data>/backups`).
pub async fn migrate_if_safe(
    db: &Database,
    model: &charter_model::AppModel,
    source: &str,
    data: &Path,
) -> Result<charter_store::MigrationReport, NotMigrated> {
    let opts = MigrateOptions { spec_hash: charter_store::spec_hash(source), backup_dir: Some(data.join("backups")), ..Default::default() };
    match db.migrate(model, opts).await {
        Ok(report) if report.blocked_at.is_some() => Err(NotMigrated::Unsafe(charter_schema::render_plan(&report.plan, &report.results()))),
        Ok(report) => Ok(report),
        Err(e) => Err(NotMigrated::Failed(e)),
    }
}

/// The address to listen on; a bad one is a usage error, printed.
pub fn listen_addr(bind: &str, port: u16) -> Result<SocketAddr, u8> {
    format!("{bind}:{port}").parse().or_else(|_| format!("[{bind}]:{port}").parse()).map_err(|_| {
        eprintln!("error: `{bind}` is not an IP address to bind to");
        exit::USAGE
    })
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
    let profile = match env.get("CHARTER_ENV").unwrap_or("prod") {
        "dev" => Profile::Dev,
        "test" => Profile::Test,
        "prod" => Profile::Prod,
        other => {
            eprintln!("error: CHARTER_ENV must be dev, test or prod, not `{other}`");
            return exit::USAGE;
        }
    };
    if profile == Profile::Prod {
        let refusals = prod_refusals(&env);
        if !refusals.is_empty() {
            eprintln!("error: refusing to start in prod (CHARTER_ENV=prod, the default for `serve`):");
            for r in &refusals {
                eprintln!("  - {r}");
            }
            eprintln!("For local use, run with CHARTER_ENV=dev.");
            return exit::USAGE;
        }
    }
    let addr = match listen_addr(args.bind, args.port) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let config = match store_config(&env, args.data) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    // Held until the process ends: `charter restore` refuses while it is.
    let _serving = match super::backup::serve_lock(args.data) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    init_logging(profile, env.get("CHARTER_LOG"));
    let secret = match (env.get("CHARTER_SECRET"), profile) {
        (Some(s), _) => Secret::new(s.as_bytes().to_vec()),
        (None, _) => Secret::new(DEV_SECRET.as_bytes().to_vec()),
    };
    let tls = match tls_files(&env).and_then(|files| files.map(|f| f.server_config()).transpose()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = env.get("CHARTER_PUBLIC_URL").map_or_else(|| format!("{scheme}://{addr}"), str::to_string);
    if tls.is_some() && !public_url.starts_with("https://") {
        eprintln!("error: CHARTER_PUBLIC_URL is {public_url}, but charter serves HTTPS (CHARTER_TLS_CERT): make it https://");
        return exit::USAGE;
    }
    let app_config = match app_config(&env, profile, secret, public_url.clone(), &spec_dir(args.spec)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    // A broken UI template override stops the start, before any migration.
    if let Err(e) = charter_web::ui::Ui::new(&app_config.ui_templates) {
        eprintln!("error: {e}");
        return exit::USAGE;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async move {
        let db = match Database::open(&config).await {
            Ok(db) => db,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        };
        match migrate_if_safe(&db, &model, &source, args.data).await {
            Err(NotMigrated::Unsafe(plan)) => {
                eprint!("{plan}");
                eprintln!("error: not starting: the spec needs a migration that is not safe to apply automatically.");
                eprintln!(
                    "Review it with `charter plan`, then apply it with `charter migrate` (--allow-destructive for destructive steps)."
                );
                return exit::PROBLEM;
            }
            Ok(report) => {
                if report.applied {
                    tracing::info!(steps = report.plan.steps.len(), duration_ms = report.duration.as_millis() as u64, "migrated");
                }
            }
            Err(NotMigrated::Failed(e)) => {
                eprintln!("error: {e}");
                return exit::PROBLEM;
            }
        }
        let model = Arc::new(model);
        let app = match App::new(model, app_config, db, Arc::new(SystemClock)) {
            Ok(a) => Arc::new(a),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        };
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {addr}: {e}");
                return exit::USAGE;
            }
        };
        eprintln!("charter: serving `{}` at {public_url} ({} profile)", app.model.name, profile.as_str());
        tracing::info!(addr = %addr, profile = profile.as_str(), "listening");
        let served = match tls {
            Some(tls) => charter_web::tls::serve_tls(app, listener, tls, charter_web::shutdown_signal()).await,
            None => charter_web::serve(app, listener, charter_web::shutdown_signal()).await,
        };
        match served {
            Ok(()) => {
                tracing::info!("stopped");
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::PROBLEM
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_in_clear_text_only_to_this_machine() {
        assert!(smtp_is_private("smtps://u:p@mail.example.com"));
        assert!(smtp_is_private("smtp://u:p@mail.example.com:587?tls=required"));
        assert!(smtp_is_private("smtp://127.0.0.1:2525"));
        assert!(smtp_is_private("smtp://[::1]:25"));
        assert!(smtp_is_private("smtp://localhost"));
        assert!(!smtp_is_private("smtp://u:p@mail.example.com:587"));
        assert!(!smtp_is_private("smtp://10.0.0.5"));
        assert!(!smtp_is_private("nonsense"));
    }

    #[test]
    fn trusted_proxies_parse_cidrs_and_addresses() {
        assert_eq!(trusted_proxies(Some("127.0.0.1/32, 10.0.0.0/8 ::1")).unwrap().len(), 3);
        assert!(trusted_proxies(Some("127.0.0.1")).unwrap()[0].contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        assert!(trusted_proxies(Some("not-an-address")).is_err());
        assert!(trusted_proxies(None).unwrap().is_empty());
    }

    #[test]
    fn statement_timeout_is_milliseconds_with_a_default() {
        assert_eq!(statement_timeout(None).unwrap(), charter_app::DEFAULT_STATEMENT_TIMEOUT);
        assert_eq!(statement_timeout(Some("250")).unwrap(), std::time::Duration::from_millis(250));
        for bad in ["0", "-5", "1.5", "5s", "3600001"] {
            assert!(statement_timeout(Some(bad)).unwrap_err().contains("CHARTER_STATEMENT_TIMEOUT_MS"), "{bad}");
        }
    }
}
