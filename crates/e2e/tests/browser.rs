//! The generated web UI of the taskboard example, driven in headless
//! Chromium and headless Firefox over WebDriver. Each browser's tests are
//! separate tests, so nextest can run or rerun them one by one.

mod support;

use support::{Browser, Session};

const TASKBOARD: &str = include_str!("../../../examples/taskboard/app.md");

/// The harness itself: the driver starts, the browser opens the login
/// page, and screenshots are written at both widths.
async fn smoke(browser: Browser) {
    let app = charter_testkit::spawn_app(TASKBOARD).await;
    let s = Session::start(browser, &app.url, "").await;
    s.goto("/login").await;
    assert_eq!(s.path().await, "/login");
    s.find("form [name=email]").await;
    s.find("form [name=password]").await;
    s.screenshot("login").await;
    for width in [support::DESKTOP.0, support::PHONE.0] {
        let shot = support::screenshot_root().join(browser.name()).join(format!("login-{width}.png"));
        let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
        assert!(png.starts_with(b"\x89PNG"), "{} is a PNG", shot.display());
    }
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_chromium() {
    smoke(Browser::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_firefox() {
    smoke(Browser::Firefox).await;
}
