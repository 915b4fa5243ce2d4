//! `charter dev`: the real binary reloads on save, shows a broken spec in
//! the terminal and the browser, and keeps the data across reloads.

mod common;

use common::{app_dir, command, free_port, http, text};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct Dev {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dev {
    fn start(dir: &Path) -> Dev {
        let port = free_port();
        let log = dir.join("dev.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = command(dir)
            .args(["dev", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Dev { child, port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until GET `path` answers `status` with `needle` in its body.
    fn wait_for(&self, path: &str, status: u16, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((s, _, body)) = http(self.port, "GET", path, None, &[]) {
                if s == status && body.contains(needle) {
                    return body;
                }
            }
            assert!(Instant::now() < deadline, "GET {path} never gave {status} with `{needle}`; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Saves `spec` as the app's spec, so the watcher sees a change even within
/// one mtime tick (the length differs).
fn save(dir: &Path, spec: &str) {
    std::fs::write(dir.join("app.md"), spec).unwrap();
}

#[test]
fn dev_reloads_on_save_and_shows_a_broken_spec_until_it_is_fixed() {
    let dir = app_dir();
    let d = dir.path();
    let original = std::fs::read_to_string(d.join("app.md")).unwrap();
    let dev = Dev::start(d);
    dev.wait_for("/api/openapi.json", 200, "/api/projects");
    assert!(dev.log().contains("charter dev: serving"), "{}", dev.log());

    // Data made now survives the reloads below.
    let body = r#"{"email": "dev@example.com", "password": "correct-horse-battery-9"}"#;
    let status = http(dev.port, "POST", "/api/auth/signup", Some(body), &[]).map(|r| r.0);
    assert!(matches!(status, Some(201 | 202)), "{status:?}");

    // A new entity appears without a restart.
    let with_notes = format!(
        "{original}\n### Note\n| field | type | rules |\n|---|---|---|\n| text | text | required |\n\nPermissions:\n- read, create: signed in\n"
    );
    save(d, &with_notes);
    dev.wait_for("/api/openapi.json", 200, "/api/notes");

    // A typo: the page and the API say so, the terminal too.
    save(d, &with_notes.replace("| text | text | required |", "| text | txet | required |"));
    let page = dev.wait_for("/", 503, "The spec has errors");
    assert!(page.contains("txet") && page.contains("app.md:"), "line and column of the problem: {page}");
    assert!(page.contains("http-equiv=\"refresh\""), "the page reloads itself");
    let (status, head, problem) = http(dev.port, "GET", "/api/projects", None, &[]).unwrap();
    assert_eq!(status, 503);
    assert!(head.to_ascii_lowercase().contains("application/problem+json"), "{head}");
    assert!(problem.contains("spec-not-running"), "{problem}");
    assert!(dev.log().contains("txet"), "the terminal shows the diagnostic: {}", dev.log());

    // Fixed: back, with the data.
    save(d, &with_notes);
    dev.wait_for("/api/openapi.json", 200, "/api/notes");
    let login = http(dev.port, "POST", "/api/auth/login", Some(body), &[]).map(|r| r.0);
    assert!(matches!(login, Some(200 | 403)), "the user made before the reloads still exists: {login:?}");

    // A change that needs a destructive migration is not applied by itself.
    save(d, &original);
    let page = dev.wait_for("/", 503, "not safe to apply by itself");
    assert!(page.contains("charter migrate"), "{page}");
    drop(dev);
    assert!(!text(&std::fs::read(d.join("dev.log")).unwrap()).contains("panicked"));
}
