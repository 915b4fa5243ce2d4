//! `## Settings`: keys, values, defaults and their validation.

use charter_spec::diagnostic::did_you_mean;
use charter_spec::syntax::SettingLine;
use charter_spec::{Code, Diagnostic, Span};
use serde::Serialize;

pub const SETTING_KEYS: &[&str] = &[
    "signup",
    "email verification",
    "session lifetime",
    "session idle timeout",
    "password min length",
    "login attempts",
    "page size",
    "require if-match",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signup {
    Open,
    Invite,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailVerification {
    Required,
    Optional,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LoginAttempts {
    pub count: u32,
    pub window_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub signup: Signup,
    pub email_verification: EmailVerification,
    pub session_lifetime_secs: u64,
    pub session_idle_timeout_secs: u64,
    pub password_min_length: u32,
    pub login_attempts: LoginAttempts,
    pub page_size: u32,
    pub require_if_match: bool,
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;
/// Browsers keep a cookie at most 400 days.
const MAX_SESSION: u64 = 400 * DAY;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            signup: Signup::Open,
            email_verification: EmailVerification::Required,
            session_lifetime_secs: 30 * DAY,
            session_idle_timeout_secs: 7 * DAY,
            password_min_length: 10,
            login_attempts: LoginAttempts { count: 10, window_secs: 15 * MINUTE },
            page_size: 20,
            require_if_match: false,
        }
    }
}

impl Signup {
    pub fn as_str(self) -> &'static str {
        match self {
            Signup::Open => "open",
            Signup::Invite => "invite",
            Signup::Closed => "closed",
        }
    }
}

impl EmailVerification {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailVerification::Required => "required",
            EmailVerification::Optional => "optional",
            EmailVerification::Off => "off",
        }
    }
}

/// A duration in the largest unit that divides it exactly: `30 days`.
pub fn format_duration(secs: u64) -> String {
    let units = [(WEEK, "week"), (DAY, "day"), (HOUR, "hour"), (MINUTE, "minute")];
    for (size, name) in units {
        if secs.is_multiple_of(size) && secs >= size {
            let n = secs / size;
            return format!("{n} {name}{}", if n == 1 { "" } else { "s" });
        }
    }
    format!("{secs} seconds")
}

fn unit_secs(unit: &str) -> Option<u64> {
    Some(match unit {
        "second" | "seconds" => 1,
        "minute" | "minutes" => MINUTE,
        "hour" | "hours" => HOUR,
        "day" | "days" => DAY,
        "week" | "weeks" => WEEK,
        _ => return None,
    })
}

fn parse_duration(value: &str) -> Result<u64, String> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [n, unit] = parts.as_slice() else {
        return Err("expected a number and a unit, like `30 days` or `12 hours`".into());
    };
    let n: u64 = n.parse().map_err(|_| format!("`{n}` is not a whole number"))?;
    let unit = unit_secs(&unit.to_lowercase()).ok_or_else(|| format!("`{unit}` is not a unit; use minutes, hours, days or weeks"))?;
    n.checked_mul(unit).filter(|s| *s > 0).ok_or_else(|| "the duration must be more than zero".to_string())
}

/// The one key that has every word of `key` (`session timeout` -> `session
/// idle timeout`): a shortened key rather than a misspelled one.
fn key_with_words(key: &str) -> Option<&'static str> {
    let words: Vec<&str> = key.split_whitespace().collect();
    let mut matches = SETTING_KEYS.iter().filter(|k| words.iter().all(|w| k.split_whitespace().any(|kw| kw == *w)));
    match (matches.next(), matches.next()) {
        (Some(k), None) => Some(k),
        _ => None,
    }
}

fn normalize_key(key: &str) -> String {
    key.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

pub(crate) fn resolve_settings(lines: &[SettingLine], diags: &mut Vec<Diagnostic>) -> Settings {
    let mut s = Settings::default();
    let mut seen: Vec<(String, Span)> = Vec::new();
    let mut lifetime_span = None;
    // A session setting whose value was rejected is not compared with the
    // other: the comparison would be against a value the spec never gave.
    let mut session_value_rejected = false;
    for line in lines {
        let key = normalize_key(&line.key.value);
        if !SETTING_KEYS.contains(&key.as_str()) {
            diags.push(
                Diagnostic::new(Code::UnknownSetting, line.key.span, format!("unknown setting `{}`", line.key.value))
                    .label("not a setting")
                    .maybe_help(
                        did_you_mean(&key, SETTING_KEYS.iter().copied())
                            .or_else(|| key_with_words(&key).map(|k| format!("did you mean `{k}`?")))
                            .or_else(|| Some(format!("settings are: {}", SETTING_KEYS.join(", ")))),
                    ),
            );
            continue;
        }
        if seen.iter().any(|(k, _)| *k == key) {
            diags.push(
                Diagnostic::new(Code::DuplicateSetting, line.key.span, format!("`{key}` is set twice"))
                    .label("set again here")
                    .help("keep one line per setting"),
            );
            continue;
        }
        seen.push((key.clone(), line.key.span));
        let raw = line.value.value.trim();
        let value = raw.to_lowercase();
        let bad = |msg: String, help: String| {
            let span = if line.value.value.is_empty() { line.span } else { line.value.span };
            Diagnostic::new(Code::BadSettingValue, span, msg).label("not accepted here").help(help)
        };
        let choice = |choices: &[&str]| -> Result<usize, Diagnostic> {
            choices.iter().position(|c| *c == value).ok_or_else(|| {
                let help = did_you_mean(&value, choices.iter().copied())
                    .unwrap_or_else(|| format!("`{key}` takes one of: {}", choices.join(", ")));
                bad(format!("`{raw}` is not a value of `{key}`"), help)
            })
        };
        let result: Result<(), Diagnostic> = (|| {
            match key.as_str() {
                "signup" => s.signup = [Signup::Open, Signup::Invite, Signup::Closed][choice(&["open", "invite", "closed"])?],
                "email verification" => {
                    s.email_verification = [EmailVerification::Required, EmailVerification::Optional, EmailVerification::Off]
                        [choice(&["required", "optional", "off"])?]
                }
                "session lifetime" | "session idle timeout" => {
                    let secs = parse_duration(&value).map_err(|m| bad(format!("`{raw}` is not a duration"), m))?;
                    if secs > MAX_SESSION {
                        return Err(bad(format!("`{raw}` is longer than 400 days"), "browsers keep cookies at most 400 days".into()));
                    }
                    if secs < MINUTE {
                        return Err(bad(format!("`{raw}` is shorter than a minute"), "sessions last at least one minute".into()));
                    }
                    if key == "session lifetime" {
                        s.session_lifetime_secs = secs;
                        lifetime_span = Some(line.span);
                    } else {
                        s.session_idle_timeout_secs = secs;
                    }
                }
                "password min length" => {
                    let n: u32 = value
                        .parse()
                        .map_err(|_| bad(format!("`{raw}` is not a whole number"), "for example `password min length: 12`".into()))?;
                    if !(8..=64).contains(&n) {
                        return Err(bad(
                            format!("a minimum password length of {n} is outside 8..64"),
                            "write a whole number from 8 to 64".into(),
                        ));
                    }
                    s.password_min_length = n;
                }
                "login attempts" => {
                    let parts: Vec<&str> = value.split_whitespace().collect();
                    let help = "write it as `N per M minutes`, e.g. `10 per 15 minutes`";
                    let [n, "per", m, unit] = parts.as_slice() else {
                        return Err(bad(format!("`{raw}` is not `N per M minutes`"), help.into()));
                    };
                    let count: u32 = n
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad(format!("`{n}` is not a positive whole number"), help.into()))?;
                    let m: u64 = m
                        .parse()
                        .ok()
                        .filter(|m| *m > 0)
                        .ok_or_else(|| bad(format!("`{m}` is not a positive whole number"), help.into()))?;
                    let unit = match *unit {
                        "minute" | "minutes" => MINUTE,
                        "hour" | "hours" => HOUR,
                        _ => return Err(bad(format!("`{unit}` is not `minutes` or `hours`"), help.into())),
                    };
                    let window_secs =
                        m.checked_mul(unit).ok_or_else(|| bad(format!("`{raw}` has a window too long to count"), help.into()))?;
                    s.login_attempts = LoginAttempts { count, window_secs };
                }
                "page size" => {
                    let n: u32 = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=500).contains(n))
                        .ok_or_else(|| bad(format!("`{raw}` is not a page size"), "a whole number from 1 to 500".into()))?;
                    s.page_size = n;
                }
                "require if-match" => s.require_if_match = choice(&["yes", "no"])? == 0,
                _ => unreachable!("key checked against SETTING_KEYS"),
            }
            Ok(())
        })();
        if let Err(d) = result {
            session_value_rejected |= key.starts_with("session");
            diags.push(d);
        }
    }
    if s.session_idle_timeout_secs > s.session_lifetime_secs && !session_value_rejected {
        let span = seen.iter().find(|(k, _)| k == "session idle timeout").map(|(_, s)| *s).or(lifetime_span).unwrap_or_default();
        diags.push(
            Diagnostic::new(Code::IdleOverLifetime, span, "the session idle timeout is longer than the session lifetime")
                .label("sessions end at the lifetime first")
                .help(format!("the lifetime is {}; an idle timeout above it has no effect", format_duration(s.session_lifetime_secs))),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for secs in [60, 90 * 60, 12 * HOUR, 30 * DAY, 2 * WEEK, 45] {
            assert_eq!(parse_duration(&format_duration(secs)), Ok(secs));
        }
        assert!(parse_duration("0 days").is_err());
        assert!(parse_duration("3 fortnights").is_err());
    }

    #[test]
    fn a_login_window_that_overflows_is_an_error() {
        let line = |value: &str| SettingLine {
            key: charter_spec::Spanned::new("login attempts".into(), Span::new(0, 14)),
            value: charter_spec::Spanned::new(value.into(), Span::new(16, 16 + value.len())),
            span: Span::new(0, 16 + value.len()),
        };
        let mut diags = Vec::new();
        let s = resolve_settings(&[line("1 per 6000000000000000 hours")], &mut diags);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, Code::BadSettingValue);
        assert_eq!(s.login_attempts, Settings::default().login_attempts);
    }
}
