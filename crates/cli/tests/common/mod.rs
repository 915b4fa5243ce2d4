//! What the CLI test suites share: the real binary run in a folder of its
//! own, a served app on a free port, and a minimal HTTP client.

// Each test crate uses part of this module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/taskboard/app.md")
}

pub fn command(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_charter"));
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("CHARTER_") {
            c.env_remove(k);
        }
    }
    c
}

pub fn run(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = command(dir).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(example(), dir.path().join("app.md")).unwrap();
    dir
}

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `charter serve` in dev on a free port, ready.
pub fn serve(dir: &Path) -> Server {
    serve_with(dir, &[("CHARTER_ENV", "dev")])
}

/// `charter serve` with `env` (over the folder's `.env`) on a free port, ready.
pub fn serve_with(dir: &Path, env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let log = dir.join("serve.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = command(dir)
        .args(["serve", "--port", &port.to_string()])
        .envs(env.iter().copied())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let server = Server { child, port, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(port, "GET", "/readyz", None, &[]).map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "the server did not get ready: {}", std::fs::read_to_string(&server.log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// A minimal HTTP/1.1 client: status, headers, body.
pub fn http(port: u16, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head.to_string(), body.to_string()))
}
