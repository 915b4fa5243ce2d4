//! The `charter` binary: argv, environment and files in; typed calls into the
//! library crates out. Nothing below this crate reads the environment.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

mod commands;
mod config;

/// Exit codes of every command (docs/cli.md).
pub mod exit {
    pub const OK: u8 = 0;
    /// The work found a problem: spec errors, a refused plan, ...
    pub const PROBLEM: u8 = 1;
    /// Usage or environment error.
    pub const USAGE: u8 = 2;
}

#[derive(Parser)]
#[command(name = "charter", version, about = "Compile one Markdown spec (app.md) into a production web application.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and check a spec; report every problem at once.
    Check {
        /// The spec file.
        #[arg(default_value = "app.md")]
        spec: PathBuf,
        /// `human` (default) or `json` (one JSON object per diagnostic line, on stdout).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Write a new app: NAME/app.md, README.md, .env.example, .gitignore.
    New {
        /// Directory to create (its last part also names the app).
        name: PathBuf,
    },
    /// Show what `migrate` would do to the database: each step, safe or destructive, checked against the data.
    Plan {
        #[arg(default_value = "app.md")]
        spec: PathBuf,
        /// Folder for the SQLite database, backups and the dev outbox.
        #[arg(long, default_value = "data")]
        data: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Apply the plan in one transaction, recorded in the migration history.
    Migrate {
        #[arg(default_value = "app.md")]
        spec: PathBuf,
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Allow steps that lose data (a backup is taken first).
        #[arg(long)]
        allow_destructive: bool,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Migrate if the plan is safe, then serve the API and operations endpoints.
    Serve(ServeFlags),
    /// `serve` with the dev profile, reloaded on every save of the spec; its problems show in the terminal and the browser.
    Dev(ServeFlags),
    /// Manage users: `charter user create --email E [--role R] [--password-stdin]`.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// End sessions now: `charter sessions revoke --user EMAIL | --all`.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Print the dev outbox (mail sent without SMTP), newest first.
    Mail {
        #[arg(default_value = "app.md")]
        spec: PathBuf,
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// How many mails to print.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Print the OpenAPI 3.1 document of the app's API (what `/api/openapi.json` serves).
    Openapi {
        #[arg(default_value = "app.md")]
        spec: PathBuf,
    },
    /// Print the permission matrix (caller x entity x action); with --probe, prove every cell against a scratch instance.
    Audit {
        #[arg(default_value = "app.md")]
        spec: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Start a scratch instance, make users of every role and rows, and check every cell with real requests; exit 1 on any mismatch.
        #[arg(long)]
        probe: bool,
    },
    /// The production-readiness scorecard of this configuration (and, with --url, of a running instance); exit 1 on any failure.
    Doctor {
        #[arg(default_value = "app.md")]
        spec: PathBuf,
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// A running instance to check from outside, e.g. https://app.example.com
        #[arg(long)]
        url: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Write a consistent backup of the live database (a running server keeps serving and writing).
    Backup {
        /// Where to write it (default: <data>/backups/backup-<time>.db, or .sql on PostgreSQL). Never overwritten.
        #[arg(long)]
        to: Option<PathBuf>,
        #[arg(long, default_value = "data")]
        data: PathBuf,
    },
    /// Restore a backup into a scratch database and check it against its manifest; exit 1 on any fault.
    #[command(name = "verify-backup")]
    VerifyBackup {
        path: PathBuf,
        #[arg(long, default_value = "data")]
        data: PathBuf,
    },
    /// Verify a backup, then replace the database with it, keeping the database as it was.
    Restore {
        path: PathBuf,
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// Swap under a running server (not supported yet: stop the server first).
        #[arg(long)]
        live: bool,
    },
    /// Rewrite a spec with aligned field tables, keeping all prose.
    Fmt {
        #[arg(default_value = "app.md")]
        spec: PathBuf,
        /// Do not write; exit 1 if the file is not formatted.
        #[arg(long)]
        check: bool,
    },
}

/// What `serve` and `dev` take.
#[derive(clap::Args)]
struct ServeFlags {
    #[arg(default_value = "app.md")]
    spec: PathBuf,
    #[arg(long, default_value = "data")]
    data: PathBuf,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a verified user (the first admin, say). Migrates the database first if that is safe.
    Create {
        #[arg(default_value = "app.md")]
        spec: PathBuf,
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// The user's email address.
        #[arg(long)]
        email: String,
        /// One of the spec's roles (default: the default role).
        #[arg(long)]
        role: Option<String>,
        /// The user's display name.
        #[arg(long)]
        name: Option<String>,
        /// Read the password from standard input (one trailing newline is dropped). Without it the user has no password until a reset.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// Revoke the sessions of one user, or of everyone.
    Revoke {
        #[arg(default_value = "app.md")]
        spec: PathBuf,
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// The email of the user whose sessions end.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        user: Option<String>,
        /// End every session of every user.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    let code = match cli.command {
        Command::Check { spec, format } => commands::check::run(&spec, format),
        Command::New { name } => commands::new::run(&name),
        Command::User { command: UserCommand::Create { spec, data, email, role, name, password_stdin } } => {
            commands::admin::user_create(commands::admin::UserCreate {
                spec: &spec,
                data: &data,
                email: &email,
                role: role.as_deref(),
                name: name.as_deref(),
                password_stdin,
            })
        }
        Command::Sessions { command: SessionsCommand::Revoke { spec, data, user, all } } => {
            commands::admin::sessions_revoke(&spec, &data, user.as_deref(), all)
        }
        Command::Mail { spec, data, limit } => commands::admin::mail(&spec, &data, limit),
        Command::Fmt { spec, check } => commands::fmt::run(&spec, check),
        Command::Doctor { spec, data, url, format } => {
            commands::doctor::run(commands::doctor::Args { spec: &spec, data: &data, url: url.as_deref(), format })
        }
        Command::Backup { to, data } => commands::backup::backup(&data, to.as_deref()),
        Command::VerifyBackup { path, data } => commands::backup::verify(&data, &path),
        Command::Restore { path, data, live } => commands::backup::restore(&data, &path, live),
        Command::Openapi { spec } => commands::openapi::run(&spec),
        Command::Audit { spec, format, probe } => commands::audit::run(&spec, format, probe),
        Command::Dev(f) => commands::dev::run(commands::serve::Args { spec: &f.spec, data: &f.data, port: f.port, bind: &f.bind }),
        Command::Serve(f) => commands::serve::run(commands::serve::Args { spec: &f.spec, data: &f.data, port: f.port, bind: &f.bind }),
        Command::Plan { spec, data, format } => {
            commands::migrate::run(commands::migrate::Args { spec: &spec, data: &data, allow_destructive: false, dry_run: true, format })
        }
        Command::Migrate { spec, data, allow_destructive, format } => {
            commands::migrate::run(commands::migrate::Args { spec: &spec, data: &data, allow_destructive, dry_run: false, format })
        }
    };
    ExitCode::from(code)
}
