//! The app's typed configuration. Built by the CLI from flags, environment
//! and `.env`; nothing below the CLI reads the environment.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Dev,
    Test,
    Prod,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Dev => "dev",
            Profile::Test => "test",
            Profile::Prod => "prod",
        }
    }
}

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    pub profile: Profile,
    /// Key for signing cursors, CSRF tokens and cookies.
    pub secret: Secret,
    /// The URL people use, for links in mail and cookie security.
    pub public_url: String,
    /// `CHARTER_METRICS_TOKEN`: `/metrics` needs it in prod; unset there means 404.
    pub metrics_token: Option<Secret>,
    /// Whether cookies get `Secure` (HTTPS in front or TLS served directly).
    pub secure_cookies: bool,
    /// `CHARTER_SECRET_PREVIOUS`: the secret before a rotation, still
    /// accepted when checking CSRF tokens so sessions survive the change.
    pub previous_secret: Option<Secret>,
    /// `CHARTER_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `CHARTER_SMTP_URL` (may hold credentials). `None`: mail goes to the dev outbox.
    pub smtp_url: Option<Secret>,
    /// `CHARTER_MAIL_FROM`; default `noreply@<public host>`.
    pub mail_from: Option<String>,
    /// Mail template overrides (`mail/<name>` beside the spec): name and source.
    pub mail_templates: Vec<(String, String)>,
    /// `CHARTER_STATEMENT_TIMEOUT_MS`: a list or `count` query still running
    /// after this is cancelled and answered 503.
    pub statement_timeout: std::time::Duration,
    /// UI template overrides (`templates/<name>` beside the spec): name and source.
    pub ui_templates: Vec<(String, String)>,
}

/// The statement timeout when none is configured.
pub const DEFAULT_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl AppConfig {
    /// A configuration for tests and development.
    pub fn dev(public_url: impl Into<String>) -> AppConfig {
        AppConfig {
            profile: Profile::Dev,
            secret: Secret::new(b"dev-secret-not-for-production-use-0123".to_vec()),
            public_url: public_url.into(),
            metrics_token: None,
            secure_cookies: false,
            previous_secret: None,
            trusted_proxies: Vec::new(),
            smtp_url: None,
            mail_from: None,
            mail_templates: Vec::new(),
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            ui_templates: Vec::new(),
        }
    }
}
