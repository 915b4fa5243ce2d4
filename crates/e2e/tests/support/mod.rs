//! The browser harness: starts chromedriver or geckodriver on a free port,
//! opens a headless browser session through it, and offers the few steps
//! the tests are written in (open a page, fill a field, submit, wait,
//! screenshot at desktop and phone width, check accessibility with axe).
//!
//! A browser or driver that cannot start fails the test with what it
//! printed; nothing is skipped.

#![allow(dead_code)] // each test binary uses a different part of the harness

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a step may wait for the page to reach the state it expects.
pub const WAIT: Duration = Duration::from_secs(15);

/// Window sizes of the screenshots: a desktop and a phone.
pub const DESKTOP: (u32, u32) = (1280, 800);
pub const PHONE: (u32, u32) = (390, 844);

/// axe-core 4.14.1, `axe.min.js` from the npm package `axe-core@4.14.1`
/// (MPL-2.0: `assets/axe-LICENSE.txt`; the code it bundles:
/// `assets/axe-LICENSE-3RD-PARTY.txt`). Test-only: the app never serves it.
/// The pages' CSP (`script-src 'self'`) would refuse it as a `<script>`, so
/// it is evaluated in a WebDriver script call, once per document.
const AXE: &str = include_str!("../../assets/axe.min.js");

/// Runs axe on the page (an async WebDriver script), or answers
/// `{missing: true}` when the document has no axe yet. Rules: WCAG 2.0 and
/// 2.1, levels A and AA, and axe's landmark rules (best practice, outside
/// those tags).
const AXE_RUN: &str = "const done = arguments[arguments.length - 1];
if (!window.axe) return done({missing: true});
axe.run(document, {
  runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
  rules: Object.fromEntries([
    'landmark-one-main', 'landmark-unique', 'region',
    'landmark-no-duplicate-banner', 'landmark-no-duplicate-main', 'landmark-no-duplicate-contentinfo',
    'landmark-banner-is-top-level', 'landmark-main-is-top-level', 'landmark-contentinfo-is-top-level',
  ].map(id => [id, {enabled: true}])),
  resultTypes: ['violations'],
}).then(
  r => done({violations: r.violations.map(v => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    nodes: v.nodes.length,
    targets: v.nodes.slice(0, 3).map(n => n.target.map(String).join(' ')),
  }))}),
  e => done({error: String((e && e.stack) || e)}),
);";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Browser {
    Chromium,
    Firefox,
}

impl Browser {
    pub fn name(self) -> &'static str {
        match self {
            Browser::Chromium => "chromium",
            Browser::Firefox => "firefox",
        }
    }
}

/// `target/screenshots` (under `CARGO_TARGET_DIR` when set).
pub fn screenshot_root() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("screenshots")
}

/// A WebDriver server (chromedriver or geckodriver) in a process group of
/// its own. Dropping it kills the group: the driver and every browser
/// process it started, even when the test failed half-way.
struct Driver {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Driver {
    /// Starts the driver for `browser` on a free port and waits until it
    /// accepts connections. Panics, with the driver's output, if it cannot.
    fn start(browser: Browser, dir: &Path) -> Driver {
        let mut last_failure = String::new();
        // A port that is free now may be taken before the driver binds it:
        // a driver that exits at once is retried on another port.
        for attempt in 0..3 {
            let port = free_port();
            let log = dir.join(format!("{}-driver-{attempt}.log", browser.name()));
            let out = File::create(&log).expect("driver log file");
            let err = out.try_clone().expect("driver log file");
            let mut cmd = match browser {
                Browser::Chromium => {
                    let mut c = Command::new(chromedriver());
                    c.arg(format!("--port={port}")).arg("--allowed-ips=127.0.0.1");
                    c
                }
                Browser::Firefox => {
                    let mut c = Command::new(geckodriver());
                    c.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log", "warn"]).env("MOZ_HEADLESS", "1");
                    c
                }
            };
            cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start the WebDriver server for {} ({:?}): {e}", browser.name(), cmd.get_program()));
            let mut driver = Driver { child, url: format!("http://127.0.0.1:{port}"), log };
            let deadline = Instant::now() + WAIT;
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return driver;
                }
                if let Ok(Some(status)) = driver.child.try_wait() {
                    last_failure = format!("exited with {status}: {}", driver.output());
                    break;
                }
                if Instant::now() > deadline {
                    panic!("the WebDriver server for {} did not listen within {WAIT:?}: {}", browser.name(), driver.output());
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        panic!("the WebDriver server for {} cannot start: {last_failure}", browser.name())
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

fn chromedriver() -> PathBuf {
    std::env::var_os("CHARTER_CHROMEDRIVER").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromedriver".into())
}

/// `CHARTER_GECKODRIVER` (set by scripts/test), else `geckodriver` on PATH.
fn geckodriver() -> PathBuf {
    std::env::var_os("CHARTER_GECKODRIVER").filter(|p| !p.is_empty()).map(PathBuf::from).unwrap_or_else(|| "geckodriver".into())
}

/// A fresh Firefox profile: no network beyond loopback, and a window that
/// may be as narrow as a phone (Firefox's toolbars otherwise hold it at
/// 500 pixels or more).
fn firefox_profile(dir: &Path) {
    let prefs = [
        ("toolkit.legacyUserProfileCustomizations.stylesheets", "true"),
        ("app.update.enabled", "false"),
        ("app.normandy.enabled", "false"),
        ("messaging-system.rsexperimentloader.enabled", "false"),
        ("services.settings.server", "\"http://127.0.0.1:9/\""),
        ("browser.region.update.enabled", "false"),
        ("browser.aboutwelcome.enabled", "false"),
        ("browser.shell.checkDefaultBrowser", "false"),
        ("browser.safebrowsing.malware.enabled", "false"),
        ("browser.safebrowsing.phishing.enabled", "false"),
        ("datareporting.policy.dataSubmissionEnabled", "false"),
        ("extensions.update.enabled", "false"),
        ("network.captive-portal-service.enabled", "false"),
        ("network.connectivity-service.enabled", "false"),
        ("signon.rememberSignons", "false"),
        ("toolkit.telemetry.enabled", "false"),
    ];
    let user_js: String = prefs.iter().map(|(k, v)| format!("user_pref(\"{k}\", {v});\n")).collect();
    std::fs::write(dir.join("user.js"), user_js).expect("user.js");
    std::fs::create_dir_all(dir.join("chrome")).expect("profile chrome dir");
    std::fs::write(
        dir.join("chrome/userChrome.css"),
        ":root, #main-window, #navigator-toolbox, #nav-bar, toolbar { min-width: 0 !important; }\n",
    )
    .expect("userChrome.css");
}

fn capabilities(browser: Browser, profile: &Path) -> serde_json::Map<String, serde_json::Value> {
    let caps = match browser {
        Browser::Chromium => serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": std::env::var("CHARTER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--password-store=basic",
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }),
        Browser::Firefox => serde_json::json!({
            "browserName": "firefox",
            "moz:firefoxOptions": {
                "binary": std::env::var("CHARTER_FIREFOX").unwrap_or_else(|_| "/usr/bin/firefox-esr".into()),
                "args": ["-headless", "-profile", profile.display().to_string()],
            },
        }),
    };
    match caps {
        serde_json::Value::Object(map) => map,
        _ => unreachable!(),
    }
}

/// One headless browser (its own driver process and fresh profile) on one
/// app. Call `close` at the end of a test; on a panic, dropping it kills
/// the browser.
pub struct Session {
    pub client: Client,
    pub browser: Browser,
    /// The app's base URL, `http://127.0.0.1:PORT`.
    pub base: String,
    /// Who this session is, for screenshot names (`""` for the main user).
    who: String,
    /// Outer window size minus viewport size, measured once.
    chrome: (i64, i64),
    /// Pages visited while signed in, for the logout check.
    pub signed_in_pages: Vec<String>,
    driver: Driver,
    _dir: tempfile::TempDir,
}

impl Session {
    /// Starts `browser` headless for the app at `base`. `who` prefixes this
    /// session's screenshot names (`""` for none).
    pub async fn start(browser: Browser, base: &str, who: &str) -> Session {
        let dir = tempfile::Builder::new().prefix(&format!("charter-e2e-{}-", browser.name())).tempdir().expect("temp dir");
        let profile = dir.path().join("profile");
        std::fs::create_dir_all(&profile).expect("profile dir");
        if browser == Browser::Firefox {
            firefox_profile(&profile);
        }
        let driver = Driver::start(browser, dir.path());
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut connected = None;
        let mut failure = String::new();
        // chromedriver listens before it is ready to start a browser; a
        // refused first session is retried briefly.
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match ClientBuilder::new(connector.clone()).capabilities(capabilities(browser, &profile)).connect(&driver.url).await {
                Ok(c) => {
                    connected = Some(c);
                    break;
                }
                Err(e) => {
                    failure = e.to_string();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let Some(client) = connected else {
            panic!("cannot start headless {} through its WebDriver server: {failure}\ndriver output:\n{}", browser.name(), driver.output());
        };
        let mut s = Session {
            client,
            browser,
            base: base.trim_end_matches('/').to_string(),
            who: who.to_string(),
            chrome: (0, 0),
            signed_in_pages: Vec::new(),
            driver,
            _dir: dir,
        };
        s.calibrate().await;
        s
    }

    /// Ends the browser session (the driver is killed when `self` drops).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Measures how much larger the window is than its viewport, so that
    /// screenshots are exactly the sizes asked for.
    async fn calibrate(&mut self) {
        self.client.set_window_size(DESKTOP.0, DESKTOP.1).await.expect("set window size");
        let (w, h) = self.viewport().await;
        self.chrome = (DESKTOP.0 as i64 - w, DESKTOP.1 as i64 - h);
    }

    async fn viewport(&self) -> (i64, i64) {
        let v = self.client.execute("return [window.innerWidth, window.innerHeight]", vec![]).await.expect("viewport size");
        (v[0].as_i64().expect("innerWidth"), v[1].as_i64().expect("innerHeight"))
    }

    /// Sets the viewport (not the window) to `width` x `height`.
    pub async fn set_viewport(&self, (width, height): (u32, u32)) {
        let w = (width as i64 + self.chrome.0).max(1) as u32;
        let h = (height as i64 + self.chrome.1).max(1) as u32;
        self.client.set_window_size(w, h).await.expect("set window size");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Opens `path` and waits for the page to load.
    pub async fn goto(&self, path: &str) {
        self.client.goto(&self.url(path)).await.unwrap_or_else(|e| panic!("{}: open {path}: {e}", self.browser.name()));
        self.wait_loaded().await;
    }

    /// The current URL's path and query (`/login?next=%2Fprojects`).
    pub async fn path(&self) -> String {
        let u = self.client.current_url().await.expect("current url");
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// Waits until the document has loaded and no htmx request (boosted
    /// links and forms) is in flight.
    pub async fn wait_loaded(&self) {
        self.wait_until("the page to load", || async {
            let script = "return document.readyState === 'complete' && !document.querySelector('.htmx-request')";
            matches!(self.client.execute(script, vec![]).await, Ok(serde_json::Value::Bool(true)))
        })
        .await;
    }

    /// Polls `ready` until it is true; panics after `WAIT` saying what was
    /// awaited, where the browser is, and what the page shows.
    pub async fn wait_until<F, Fut>(&self, what: &str, mut ready: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + WAIT;
        loop {
            if ready().await {
                return;
            }
            if Instant::now() > deadline {
                let at = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                let shot = self.failure_screenshot().await;
                panic!("{}: waited {WAIT:?} for {what}; at {at} ({shot}), the page says:\n{}", self.browser.name(), self.body_text().await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the current path satisfies `pred` and the page loaded.
    pub async fn wait_path(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_until(what, || async { pred(&self.path().await) }).await;
        self.wait_loaded().await;
        self.path().await
    }

    /// The element matching `css`, waiting for it to appear.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                return e;
            }
            if Instant::now() > deadline {
                let at = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                let shot = self.failure_screenshot().await;
                panic!(
                    "{}: no element `{css}` on {at} within {WAIT:?} ({shot}); the page says:\n{}",
                    self.browser.name(),
                    self.body_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every element matching `css` now (no waiting).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.expect("find elements")
    }

    /// Whether an element matches `css` now (no waiting).
    pub async fn has(&self, css: &str) -> bool {
        !self.find_all(css).await.is_empty()
    }

    /// The visible text of the page.
    pub async fn body_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(b) => b.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Sets the form control named `name` inside `form` (a CSS selector)
    /// to `value`: text inputs and text areas are typed into, selects
    /// choose the option with that value (else that label), checkboxes are
    /// ticked for `"true"` and cleared for anything else.
    pub async fn fill(&self, form: &str, name: &str, value: &str) {
        let css = format!("{form} [name=\"{name}\"]");
        let el = self.find(&css).await;
        let tag = el.tag_name().await.expect("tag name").to_ascii_lowercase();
        let kind = el.attr("type").await.expect("type").unwrap_or_default().to_ascii_lowercase();
        match (tag.as_str(), kind.as_str()) {
            ("select", _) => {
                if el.select_by_value(value).await.is_err() {
                    el.select_by_label(value).await.unwrap_or_else(|e| panic!("{css} has no option with value or label {value:?}: {e}"));
                }
            }
            (_, "checkbox") => {
                let on = el.is_selected().await.expect("checkbox state");
                if on != (value == "true") {
                    el.click().await.expect("click checkbox");
                }
            }
            (_, "radio") => {
                self.find(&format!("{form} [name=\"{name}\"][value=\"{value}\"]")).await.click().await.expect("click radio");
            }
            _ => {
                el.clear().await.expect("clear field");
                if !value.is_empty() {
                    el.send_keys(value).await.expect("type into field");
                }
            }
        }
    }

    /// The current value of the control named `name` inside `form`.
    pub async fn value(&self, form: &str, name: &str) -> String {
        let el = self.find(&format!("{form} [name=\"{name}\"]")).await;
        el.prop("value").await.expect("value").unwrap_or_default()
    }

    /// The visible label of the selected option of the select `name`.
    pub async fn selected_label(&self, form: &str, name: &str) -> String {
        let el = self.find(&format!("{form} [name=\"{name}\"] option:checked")).await;
        el.text().await.expect("option text").trim().to_string()
    }

    /// Clicks the submit button of `form`.
    pub async fn submit(&self, form: &str) {
        self.find(&format!("{form} button[type=submit]")).await.click().await.expect("click submit");
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Saves the page as `target/screenshots/<browser>/<page>-<width>.png`
    /// at desktop and at phone size, checks it with axe at both sizes, and
    /// gives the window back its desktop size.
    pub async fn screenshot(&self, page: &str) {
        let dir = screenshot_root().join(self.browser.name());
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let name = if self.who.is_empty() { page.to_string() } else { format!("{}-{page}", self.who) };
        for size in [DESKTOP, PHONE] {
            self.set_viewport(size).await;
            self.wait_until(&format!("a {}x{} viewport", size.0, size.1), || async { self.viewport().await.0 == size.0 as i64 }).await;
            let png = self.client.screenshot().await.unwrap_or_else(|e| panic!("{}: screenshot of {page}: {e}", self.browser.name()));
            std::fs::write(dir.join(format!("{name}-{}.png", size.0)), png).expect("write screenshot");
            self.check_accessibility(&format!("{name}-{}", size.0)).await;
        }
        self.set_viewport(DESKTOP).await;
    }

    /// Runs axe-core's WCAG 2.0/2.1 A and AA rules and its landmark rules
    /// on the page as it is now; panics listing every violation (of any impact), with up to
    /// three of the elements at fault for each.
    pub async fn check_accessibility(&self, page: &str) {
        let name = self.browser.name();
        let run = || async { self.client.execute_async(AXE_RUN, vec![]).await.unwrap_or_else(|e| panic!("{name}: axe on {page}: {e}")) };
        let mut out = run().await;
        if out["missing"] == true {
            self.client.execute(AXE, vec![]).await.unwrap_or_else(|e| panic!("{name}: loading axe into {page}: {e}"));
            out = run().await;
        }
        let Some(violations) = out["violations"].as_array() else {
            panic!("{name}: axe did not run on {page}: {}", out["error"].as_str().unwrap_or(&out.to_string()));
        };
        if violations.is_empty() {
            return;
        }
        let path = self.path().await;
        let list: Vec<String> = violations
            .iter()
            .map(|v| {
                let targets: Vec<&str> = v["targets"].as_array().into_iter().flatten().filter_map(|t| t.as_str()).collect();
                format!(
                    "  {} ({}): {} - {} element(s), e.g. {}",
                    v["id"].as_str().unwrap_or("?"),
                    v["impact"].as_str().unwrap_or("?"),
                    v["help"].as_str().unwrap_or("?"),
                    v["nodes"],
                    targets.join(" | ")
                )
            })
            .collect();
        panic!("{name}: axe finds {} accessibility violation(s) on {page} ({path}):\n{}", violations.len(), list.join("\n"));
    }

    /// Saves what the browser shows now as `failed-<who>.png`, for a test
    /// that is about to fail; says where.
    async fn failure_screenshot(&self) -> String {
        let dir = screenshot_root().join(self.browser.name());
        let file = dir.join(if self.who.is_empty() { "failed.png".to_string() } else { format!("failed-{}.png", self.who) });
        match self.client.screenshot().await {
            Ok(png) if std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, &png)).is_ok() => {
                format!("screenshot: {}", file.display())
            }
            _ => "no screenshot".to_string(),
        }
    }

    /// A page shown to a signed-in user: it must offer `#logout`. Takes its
    /// screenshots.
    pub async fn signed_in_page(&mut self, page: &str) {
        let path = self.path().await;
        assert!(
            self.has("#logout").await,
            "{}: the signed-in page {path} ({page}) has no #logout control; the page says:\n{}",
            self.browser.name(),
            self.body_text().await
        );
        self.signed_in_pages.push(path);
        self.screenshot(page).await;
    }

    /// The HTTP status of a GET of `path` from this browser (with its
    /// cookies), read through `fetch`.
    pub async fn status_of(&self, path: &str) -> u16 {
        let r = self
            .client
            .execute_async(
                "const [url, done] = arguments; fetch(url, {credentials: 'same-origin', redirect: 'manual'}).then(r => done(r.status), e => done(String(e)));",
                vec![serde_json::Value::String(path.to_string())],
            )
            .await
            .expect("fetch from the page");
        r.as_u64().unwrap_or_else(|| panic!("fetch {path} failed in the browser: {r}")) as u16
    }
}
