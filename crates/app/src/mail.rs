//! Outgoing mail: templates (embedded defaults, overridable by files in a
//! `mail/` folder beside the spec, which the CLI reads), and delivery by
//! SMTP or, without it, into the dev outbox table.
//!
//! Templates are minijinja, auto-escaped in `.html`; a template is never
//! built from data. Every value reaching a header (the address, the
//! subject) is refused if it holds CR or LF.

use crate::{AppConfig, AppError};
use charter_store::auth::{OutboxMail, QueuedMail};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use minijinja::{AutoEscape, Environment};
use std::time::Duration;

/// Template names, and their defaults. Overrides use the same file names.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("verify.subject", include_str!("mail/verify.subject")),
    ("verify.txt", include_str!("mail/verify.txt")),
    ("verify.html", include_str!("mail/verify.html")),
    ("reset.subject", include_str!("mail/reset.subject")),
    ("reset.txt", include_str!("mail/reset.txt")),
    ("reset.html", include_str!("mail/reset.html")),
];

/// Delays (seconds) before each retry of a failed send; after the last, the
/// mail is given up (and logged).
pub(crate) const RETRIES: &[u64] = &[2, 10, 60, 300, 1800];
/// How long a claimed mail is held by its sender before another may take it.
pub(crate) const LEASE_MS: i64 = 2 * 60 * 1000;
/// How often the queue is looked at without a wake-up (mail queued by
/// another process, retries that came due).
pub(crate) const POLL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    Verify,
    Reset,
}

impl MailKind {
    fn name(self) -> &'static str {
        match self {
            MailKind::Verify => "verify",
            MailKind::Reset => "reset",
        }
    }
}

/// What a template may use.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MailVars {
    pub app_name: String,
    pub email: String,
    pub name: Option<String>,
    /// The page whose button spends the token (`token=` in the query).
    pub link: String,
    /// `1 hour`, `24 hours`.
    pub expires_in: String,
}

#[derive(Clone)]
struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

pub struct Mailer {
    env: Environment<'static>,
    smtp: Option<Smtp>,
    /// Rung when mail is queued, so it leaves at once.
    queued: tokio::sync::Notify,
}

fn config_error(m: String) -> AppError {
    AppError::Internal(m)
}

impl Mailer {
    /// Builds the templates (defaults, then overrides) and the SMTP
    /// transport; a broken template or URL is an error now, not at the
    /// first signup.
    pub fn new(config: &AppConfig) -> Result<Mailer, AppError> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| if name.ends_with(".html") { AutoEscape::Html } else { AutoEscape::None });
        for (name, source) in TEMPLATES {
            let source = config.mail_templates.iter().find(|(n, _)| n == name).map_or(*source, |(_, s)| s.as_str());
            env.add_template_owned(name.to_string(), source.to_string()).map_err(|e| config_error(format!("mail template {name}: {e}")))?;
        }
        for (name, _) in &config.mail_templates {
            if !TEMPLATES.iter().any(|(n, _)| n == name) {
                return Err(config_error(format!(
                    "mail/{name} is not a template charter uses; the names are {}",
                    TEMPLATES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let smtp = match &config.smtp_url {
            None => None,
            Some(url) => {
                let url = std::str::from_utf8(url.expose()).map_err(|_| config_error("CHARTER_SMTP_URL is not UTF-8".into()))?;
                // The URL may hold a password: the error names the setting, not the value.
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|_| config_error("CHARTER_SMTP_URL is not a valid smtp:// or smtps:// URL".into()))?
                    .timeout(Some(Duration::from_secs(20)))
                    .build();
                let from: Mailbox = match &config.mail_from {
                    Some(f) => f.parse().map_err(|_| config_error(format!("CHARTER_MAIL_FROM `{f}` is not a valid address")))?,
                    // A public URL on a bare address (127.0.0.1) makes no valid sender: fall back.
                    None => default_from(&config.public_url)
                        .parse()
                        .or_else(|_| "noreply@localhost".parse())
                        .map_err(|_| config_error("no sender address".into()))?,
                };
                Some(Smtp { transport, from })
            }
        };
        Ok(Mailer { env, smtp, queued: tokio::sync::Notify::new() })
    }

    /// Whether mail goes to the dev outbox (no SMTP configured).
    pub fn uses_outbox(&self) -> bool {
        self.smtp.is_none()
    }

    pub fn render(&self, kind: MailKind, vars: &MailVars, now: i64) -> Result<OutboxMail, AppError> {
        let render = |part: &str| {
            self.env
                .get_template(&format!("{}.{part}", kind.name()))
                .and_then(|t| t.render(vars))
                .map_err(|e| AppError::Internal(format!("mail template {}.{part}: {e}", kind.name())))
        };
        let subject = render("subject")?.trim().to_string();
        if subject.contains(['\r', '\n']) || vars.email.contains(['\r', '\n']) {
            return Err(AppError::Internal("a mail header would hold a line break; not sent".into()));
        }
        Ok(OutboxMail {
            to: vars.email.clone(),
            subject,
            text: render("txt")?,
            html: render("html")?,
            sent_at: now,
            queued: self.smtp.is_some(),
        })
    }

    /// Mail was queued: the sender looks now.
    pub fn wake(&self) {
        self.queued.notify_one();
    }

    /// Until mail is queued, or `poll` passes.
    pub async fn wait(&self, poll: Duration) {
        let _ = tokio::time::timeout(poll, self.queued.notified()).await;
    }

    /// One attempt to send through SMTP. The error never holds the body
    /// (it carries a token).
    pub async fn send(&self, mail: QueuedMail) -> Result<(), String> {
        let Some(smtp) = &self.smtp else { return Err("no SMTP server is configured".into()) };
        let to: Mailbox = mail.to.parse().map_err(|_| "the address is not valid".to_string())?;
        let message = Message::builder()
            .from(smtp.from.clone())
            .to(to)
            .subject(mail.subject)
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html))
            .map_err(|e| format!("mail not built: {e}"))?;
        smtp.transport.send(message).await.map(|_| ()).map_err(|e| e.to_string())
    }
}

fn default_from(public_url: &str) -> String {
    let host = public_url.split("://").nth(1).unwrap_or("localhost").split(['/', ':']).next().unwrap_or("localhost");
    let host = if host.contains('.') { host } else { "localhost.localdomain" };
    format!("noreply@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> MailVars {
        MailVars {
            app_name: "Taskboard".into(),
            email: "a@example.com".into(),
            name: Some("<b>Al</b>".into()),
            link: "http://x/verify?token=abc&x=1".into(),
            expires_in: "24 hours".into(),
        }
    }

    #[test]
    fn defaults_render_with_the_link_and_escape_html() {
        let m = Mailer::new(&AppConfig::dev("http://x")).unwrap();
        let mail = m.render(MailKind::Verify, &vars(), 1).unwrap();
        assert_eq!(mail.subject, "Confirm your address for Taskboard");
        assert!(mail.text.contains("http://x/verify?token=abc&x=1"));
        assert!(mail.html.contains("&lt;b&gt;Al&lt;&#x2f;b&gt;") || mail.html.contains("&lt;b&gt;Al&lt;/b&gt;"));
        assert!(!mail.html.contains("<b>Al</b>"));
    }

    #[test]
    fn overrides_replace_defaults_and_unknown_names_are_refused() {
        let mut c = AppConfig::dev("http://x");
        c.mail_templates = vec![("verify.subject".into(), "Hi from {{ app_name }}".into())];
        let mail = Mailer::new(&c).unwrap().render(MailKind::Verify, &vars(), 1).unwrap();
        assert_eq!(mail.subject, "Hi from Taskboard");
        c.mail_templates = vec![("welcome.txt".into(), "x".into())];
        assert!(Mailer::new(&c).is_err());
        c.mail_templates = vec![("verify.txt".into(), "{% if %}".into())];
        assert!(Mailer::new(&c).is_err());
    }

    #[tokio::test]
    async fn an_smtp_url_on_a_bare_address_starts() {
        let mut c = AppConfig::dev("http://127.0.0.1:8080");
        c.smtp_url = Some(crate::Secret::new(b"smtp://127.0.0.1:2525".to_vec()));
        assert!(!Mailer::new(&c).unwrap().uses_outbox());
        c.smtp_url = Some(crate::Secret::new(b"nonsense".to_vec()));
        assert!(Mailer::new(&c).is_err());
    }

    #[test]
    fn line_breaks_never_reach_a_header() {
        let mut c = AppConfig::dev("http://x");
        c.mail_templates = vec![("reset.subject".into(), "Hi\nBcc: evil@example.com {{ app_name }}".into())];
        assert!(Mailer::new(&c).unwrap().render(MailKind::Reset, &vars(), 1).is_err());
    }
}
