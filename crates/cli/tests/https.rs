//! HTTPS served directly (`CHARTER_TLS_CERT`, `CHARTER_TLS_KEY`), checked
//! with curl and openssl against a certificate from a throwaway CA, in prod.

mod common;

use common::{app_dir, command, free_port, text};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs (./scripts/test installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out.stderr));
}

/// A CA, and a certificate for `localhost` with `serial` signed by it, as
/// ca.crt, server.crt and server.key in `dir`.
fn certificate(dir: &Path, serial: &str) {
    if !dir.join("ca.crt").exists() {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "new.key",
            "-out",
            "new.csr",
        ],
    );
    std::fs::write(dir.join("ext"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "new.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            "2",
            "-extfile",
            "ext",
            "-out",
            "new.crt",
        ],
    );
    // Replaced the way a renewal does it: each file appears whole.
    std::fs::rename(dir.join("new.key"), dir.join("server.key")).unwrap();
    std::fs::rename(dir.join("new.crt"), dir.join("server.crt")).unwrap();
}

fn curl(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("curl").current_dir(dir).args(["-sS", "--max-time", "5"]).args(args).output().expect("curl runs")
}

/// The serial number of the certificate the server presents, in hex.
fn served_serial(port: u16) -> String {
    let mut s_client = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-servername", "localhost"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pem = s_client.stdout.take().unwrap();
    let out = Command::new("openssl").args(["x509", "-noout", "-serial"]).stdin(pem).output().unwrap();
    let _ = s_client.wait();
    text(&out.stdout).trim().to_string()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const ENV: &str = "CHARTER_SECRET=9d0f1c7a2b6e4f8a0c3d5e7f9a1b3c5d7e9f0a2b4c6d8e0f\n\
CHARTER_SMTP_URL=smtps://mailer:pw@mail.example.com\n\
CHARTER_TLS_CERT=server.crt\n\
CHARTER_TLS_KEY=server.key\n";

#[test]
fn prod_serves_https_itself_with_hsts_secure_cookies_and_renewed_certificates() {
    let dir = app_dir();
    let d = dir.path();
    certificate(d, "0x1001");
    std::fs::write(d.join(".env"), ENV).unwrap();
    let port = free_port();
    let log = std::fs::File::create(d.join("serve.log")).unwrap();
    let _server =
        Server(command(d).args(["serve", "--port", &port.to_string()]).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap());
    let url = format!("https://localhost:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !curl(d, &["--cacert", "ca.crt", "-o", "/dev/null", &format!("{url}/readyz")]).status.success() {
        assert!(Instant::now() < deadline, "not ready: {}", std::fs::read_to_string(d.join("serve.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = curl(d, &["--cacert", "ca.crt", "-D", "-", "-o", "/dev/null", &format!("{url}/login")]);
    let head = text(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("strict-transport-security: max-age=31536000; includesubdomains"), "{head}");
    assert!(head.contains("set-cookie: __host-csrf=") && head.contains("; secure"), "{head}");
    let log_text = std::fs::read_to_string(d.join("serve.log")).unwrap();
    assert!(log_text.contains(&format!("https://127.0.0.1:{port}")), "the printed URL is https: {log_text}");

    // `doctor --url` checks the instance over HTTPS, trusting the system's
    // CAs (SSL_CERT_FILE names the test CA here).
    let doctor = |ca: Option<&str>| {
        let mut c = command(d);
        c.args(["doctor", "--format", "json", "--url", &url]);
        if let Some(ca) = ca {
            c.env("SSL_CERT_FILE", d.join(ca));
        }
        let out = c.output().unwrap();
        let card: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out.stderr)));
        move |item: &str| {
            card["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["name"] == item)
                .map(|i| (i["status"].to_string(), i["detail"].to_string()))
                .unwrap()
        }
    };
    let trusted = doctor(Some("ca.crt"));
    for item in ["health", "https", "headers", "exposure", "metrics access", "tls"] {
        assert_eq!(trusted(item).0, "\"pass\"", "{item}: {:?}", trusted(item));
    }
    let untrusted = doctor(None);
    assert_eq!(untrusted("health").0, "\"fail\"", "the test CA is not trusted without SSL_CERT_FILE");

    // Plain HTTP on the HTTPS port gets nothing, and a client that does not
    // trust the CA refuses the server.
    let plain = curl(d, &["-o", "/dev/null", "-w", "%{http_code}", &format!("http://localhost:{port}/healthz")]);
    assert_ne!(text(&plain.stdout), "200");
    assert!(!curl(d, &["-o", "/dev/null", &format!("{url}/healthz")]).status.success(), "the system CAs do not know the test CA");

    // A renewed certificate is served without a restart.
    assert_eq!(served_serial(port), "serial=1001");
    certificate(d, "0x1002");
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_serial(port) != "serial=1002" {
        assert!(Instant::now() < deadline, "the renewed certificate was never served");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(curl(d, &["--cacert", "ca.crt", "-o", "/dev/null", &format!("{url}/healthz")]).status.success());
}

#[test]
fn bad_tls_settings_stop_the_start_with_the_reason() {
    let dir = app_dir();
    let d = dir.path();
    certificate(d, "0x2001");
    let start = |env: &str| {
        std::fs::write(d.join(".env"), env).unwrap();
        let out = command(d).args(["serve", "--port", &free_port().to_string()]).output().unwrap();
        (out.status.code(), text(&out.stderr))
    };
    let (code, err) = start(&ENV.replace("CHARTER_TLS_KEY=server.key\n", ""));
    assert_eq!(code, Some(2));
    assert!(err.contains("set both CHARTER_TLS_CERT and CHARTER_TLS_KEY"), "{err}");
    let (code, err) = start(&ENV.replace("server.crt", "missing.crt"));
    assert_eq!(code, Some(2));
    assert!(err.contains("missing.crt"), "{err}");
    std::fs::copy(d.join("ca.key"), d.join("other.key")).unwrap();
    let (code, err) = start(&ENV.replace("server.key", "other.key"));
    assert_eq!(code, Some(2));
    assert!(err.contains("does not go with"), "{err}");
    let (code, err) = start(&format!("{ENV}CHARTER_PUBLIC_URL=http://tasks.example.com\n"));
    assert_eq!(code, Some(2));
    assert!(err.contains("make it https://"), "{err}");
}
