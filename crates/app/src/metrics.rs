//! Prometheus metrics, one registry per app (tests run many apps in one
//! process, so nothing is global).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BucketLabels {
    bucket: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    role: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    login_failures: Counter,
    rate_limited: Family<BucketLabels, Counter>,
    active_sessions: Gauge,
    mail_queued: Gauge,
    mail_failures: Counter,
    db_up: Gauge,
    db_connections: Family<PoolLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by method, route and status", requests.clone());
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))) as fn() -> Histogram,
        );
        registry.register("http_request_duration_seconds", "Time to answer, by route", latency.clone());
        let login_failures = Counter::default();
        registry.register("charter_login_failures", "Failed sign-ins (bad pair, unknown account)", login_failures.clone());
        let rate_limited = Family::<BucketLabels, Counter>::default();
        registry.register("charter_rate_limited", "Requests refused with 429, by limit", rate_limited.clone());
        let active_sessions = Gauge::default();
        registry.register("charter_active_sessions", "Sessions not yet past their absolute lifetime", active_sessions.clone());
        let mail_queued = Gauge::default();
        registry.register("charter_mail_queued", "Mail waiting in the queue to be sent by SMTP", mail_queued.clone());
        let mail_failures = Counter::default();
        registry.register("charter_mail_send_failures", "SMTP sends that failed (each is retried, then given up)", mail_failures.clone());
        let db_up = Gauge::default();
        registry.register("charter_db_up", "1 when the database answered the last scrape", db_up.clone());
        let db_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "charter_db_connections",
            "Database connections by role (SQLite: one writer; readers are per thread)",
            db_connections.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            login_failures,
            rate_limited,
            active_sessions,
            mail_queued,
            mail_failures,
            db_up,
            db_connections,
        }
    }

    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests.get_or_create(&RequestLabels { method: method.to_string(), route: route.to_string(), status }).inc();
        self.latency.get_or_create(&RouteLabels { route: route.to_string() }).observe(seconds);
    }

    pub fn login_failed(&self) {
        self.login_failures.inc();
    }

    pub fn rate_limited(&self, bucket: &str) {
        self.rate_limited.get_or_create(&BucketLabels { bucket: bucket.to_string() }).inc();
    }

    pub fn mail_failed(&self) {
        self.mail_failures.inc();
    }

    /// The text exposition, with the gauges read at scrape time.
    pub fn render(&self, active_sessions: Option<u64>, mail_queued: Option<u64>, db_up: bool, connections: &[(&str, i64)]) -> String {
        if let Some(n) = active_sessions {
            self.active_sessions.set(n as i64);
        }
        if let Some(n) = mail_queued {
            self.mail_queued.set(n as i64);
        }
        self.db_up.set(i64::from(db_up));
        for (role, n) in connections {
            self.db_connections.get_or_create(&PoolLabels { role: (*role).to_string() }).set(*n);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.observe_request("GET", "/api/tasks", 200, 0.002);
        m.login_failed();
        m.rate_limited("login_ip");
        m.mail_failed();
        let text = m.render(Some(3), Some(2), true, &[("writer", 1)]);
        assert!(text.contains(r#"http_requests_total{method="GET",route="/api/tasks",status="200"} 1"#), "{text}");
        assert!(text.contains("http_request_duration_seconds_bucket{"));
        assert!(text.contains("charter_login_failures_total 1"));
        assert!(text.contains(r#"charter_rate_limited_total{bucket="login_ip"} 1"#));
        assert!(text.contains("charter_active_sessions 3"));
        assert!(text.contains("charter_mail_queued 2"), "{text}");
        assert!(text.contains("charter_mail_send_failures_total 1"), "{text}");
    }
}
