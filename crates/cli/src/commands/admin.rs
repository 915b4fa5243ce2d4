//! `charter user create`, `charter sessions revoke` and `charter mail`:
//! operations on an app's database without a running server.

use super::{compile_or_report, read_spec};
use crate::config::{spec_dir, store_config, Env};
use crate::exit;
use charter_app::{App, AppError, Profile, Secret, SystemClock};
use charter_store::{Database, MigrateOptions};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// Opens the app on its database, migrating first when that is safe (as
/// `serve` does), so these commands work on a fresh data folder too.
async fn open_app(spec: &Path, data: &Path) -> Result<Arc<App>, u8> {
    let source = read_spec(spec)?;
    let Some(model) = compile_or_report(spec, &source) else { return Err(exit::PROBLEM) };
    let fail = |e: String| {
        eprintln!("error: {e}");
        exit::USAGE
    };
    let env = Env::load(&spec_dir(spec)).map_err(fail)?;
    let store = store_config(&env, data).map_err(fail)?;
    let db = Database::open(&store).await.map_err(|e| fail(e.to_string()))?;
    let opts =
        MigrateOptions { spec_hash: charter_store::spec_hash(&source), backup_dir: Some(data.join("backups")), ..Default::default() };
    match db.migrate(&model, opts).await {
        Ok(report) if report.blocked_at.is_some() => {
            eprintln!(
                "error: the database needs a migration that is not safe to apply automatically; run `charter plan`, then `charter migrate`"
            );
            return Err(exit::PROBLEM);
        }
        Ok(_) => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    // The secret and URL only matter for links and CSRF tokens, which
    // these commands do not make.
    let secret = Secret::new(env.get("CHARTER_SECRET").unwrap_or("dev-secret-not-for-production-use-0123").as_bytes().to_vec());
    let public_url = env.get("CHARTER_PUBLIC_URL").unwrap_or("http://127.0.0.1:8080").to_string();
    let config = super::serve::app_config(&env, Profile::Dev, secret, public_url, &spec_dir(spec)).map_err(fail)?;
    App::new(Arc::new(model), config, db, Arc::new(SystemClock)).map(Arc::new).map_err(|e| fail(describe(e)))
}

fn describe(e: AppError) -> String {
    match e {
        AppError::Validation(errors) => errors.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; "),
        AppError::Conflict(m) | AppError::Internal(m) | AppError::Unavailable(m) | AppError::BadRequest(m) => m,
        other => other.to_string(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

pub struct UserCreate<'a> {
    pub spec: &'a Path,
    pub data: &'a Path,
    pub email: &'a str,
    pub role: Option<&'a str>,
    pub name: Option<&'a str>,
    pub password_stdin: bool,
}

/// Reads the password from standard input. One trailing line break (what
/// `echo` and a terminal add) is dropped; nothing else is trimmed.
fn password_from_stdin() -> Result<String, String> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let s = s.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&s).to_string();
    if s.is_empty() {
        return Err("standard input held no password".into());
    }
    Ok(s)
}

pub fn user_create(args: UserCreate) -> u8 {
    let password = if args.password_stdin {
        match password_from_stdin() {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        }
    } else {
        None
    };
    runtime().block_on(async {
        let app = match open_app(args.spec, args.data).await {
            Ok(a) => a,
            Err(code) => return code,
        };
        match app.create_user(args.email, args.role, password, args.name).await {
            Ok(user) => {
                let id = user.get("id").and_then(|v| v.as_str()).unwrap_or("?");
                let role = user.get("role").and_then(|v| v.as_str()).unwrap_or("?");
                let email = user.get("email").and_then(|v| v.as_str()).unwrap_or("?");
                println!("created user {email} (id {id}, role {role}, verified)");
                if !args.password_stdin {
                    println!("It has no password yet: its owner sets one with \"forgot password\".");
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {}", describe(e));
                exit::PROBLEM
            }
        }
    })
}

pub fn sessions_revoke(spec: &Path, data: &Path, user: Option<&str>, all: bool) -> u8 {
    runtime().block_on(async {
        let app = match open_app(spec, data).await {
            Ok(a) => a,
            Err(code) => return code,
        };
        let result = match (user, all) {
            (Some(email), false) => match app.user_id_by_email(email).await {
                Ok(Some(id)) => {
                    app.end_user_sessions(&id, "charter sessions revoke --user").await.map(|n| format!("ended {n} sessions of {email}"))
                }
                Ok(None) => {
                    eprintln!("error: no user has the email {email}");
                    return exit::PROBLEM;
                }
                Err(e) => Err(e),
            },
            (None, true) => app.end_all_sessions().await.map(|n| format!("ended {n} sessions")),
            _ => {
                eprintln!("error: give either --user EMAIL or --all");
                return exit::USAGE;
            }
        };
        match result {
            Ok(line) => {
                println!("{line}");
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {}", describe(e));
                exit::PROBLEM
            }
        }
    })
}

pub fn mail(spec: &Path, data: &Path, limit: u32) -> u8 {
    runtime().block_on(async {
        let app = match open_app(spec, data).await {
            Ok(a) => a,
            Err(code) => return code,
        };
        match app.outbox(limit).await {
            Ok(mails) if mails.is_empty() => {
                println!("The dev outbox is empty.");
                exit::OK
            }
            Ok(mails) => {
                for (i, m) in mails.iter().enumerate() {
                    if i > 0 {
                        println!("{}", "-".repeat(72));
                    }
                    println!(
                        "To: {}\nSubject: {}\nDate: {}\n\n{}",
                        m.to,
                        m.subject,
                        charter_app::auth::rfc3339(m.sent_at),
                        m.text.trim_end()
                    );
                }
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {}", describe(e));
                exit::PROBLEM
            }
        }
    })
}
