//! A real headless Chromium for the dashboard tests, driven over the W3C WebDriver protocol
//! by `chromedriver` (Debian's `chromium` and `chromium-driver`, installed by
//! `scripts/setup.sh`). The protocol is plain JSON over HTTP, so this speaks it with the
//! blocking `reqwest` client the harness already has: no driver crate, nothing to download.
//!
//! `Browser::start` returns None (a loud skip) when either binary is missing, and panics under
//! `CI=true`. Each browser has a fresh profile folder, and collects the page's console errors
//! and uncaught exceptions so that a test can fail on any JavaScript error.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long `wait_*` calls wait by default.
pub const WAIT: Duration = Duration::from_secs(20);

/// Where screenshots go: target/dashboard-screenshots.
pub fn screenshot_dir() -> PathBuf {
    let dir = crate::repo_root()
        .join("target")
        .join("dashboard-screenshots");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// One browser console message (`level` is SEVERE, WARNING, INFO...; `source` is
/// `javascript`, `console-api`, `network`...).
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub level: String,
    pub source: String,
    pub message: String,
}

pub struct Browser {
    driver: Option<Child>,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
    /// Every console message read so far (chromedriver hands each out once).
    logs: Vec<LogEntry>,
}

impl Browser {
    /// A headless Chromium with a `width` x `height` window, or None (after a loud message)
    /// when Chromium or its driver is not installed; under `CI=true` that is a panic.
    pub fn start(width: u32, height: u32) -> Option<Browser> {
        let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .filter(|p| !Path::new(p).exists())
            .collect();
        if !missing.is_empty() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "dashboard tests: {} missing, and CI=true makes browser tests mandatory; \
                     run scripts/setup.sh (apt install chromium chromium-driver)",
                    missing.join(" and ")
                );
            }
            let _ = std::io::stderr().write_all(
                format!(
                    "\n!!! SKIPPED dashboard browser test: {} missing. Run scripts/setup.sh \
                     (apt install chromium chromium-driver); under CI=true this is a failure.\n\n",
                    missing.join(" and ")
                )
                .as_bytes(),
            );
            return None;
        }
        Some(
            Browser::launch(width, height)
                .unwrap_or_else(|e| panic!("cannot start headless Chromium: {e:#}")),
        )
    }

    fn launch(width: u32, height: u32) -> Result<Browser> {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The driver (and the browser it starts) dies with the test, even a killed one.
        // SAFETY: prctl in the child before exec; it only sets the parent-death signal.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let driver = cmd.spawn().context("cannot start chromedriver")?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let profile = tempfile::tempdir()?;
        let mut b = Browser {
            driver: Some(driver),
            base,
            session: String::new(),
            http,
            _profile: profile,
            logs: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while b.http.get(format!("{}/status", b.base)).send().is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not answer on port {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The machine has no internet: without the background-networking flags Chromium
        // keeps trying (and failing) to reach its update and sync services.
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", b._profile.path().display()),
        ];
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                    "goog:loggingPrefs": { "browser": "ALL" },
                }
            }
        });
        let v = b.call(reqwest::Method::POST, "/session", Some(caps))?;
        b.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no sessionId in {v}"))?
            .to_string();
        Ok(b)
    }

    /// One WebDriver command; returns its `value`.
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let rb = self.http.request(method, &url);
        let rb = match body {
            Some(b) => rb.json(&b),
            None => rb,
        };
        let resp = rb.send().with_context(|| format!("webdriver {path}"))?;
        let status = resp.status();
        let v: Value = resp
            .json()
            .with_context(|| format!("webdriver {path}: not JSON"))?;
        if !status.is_success() {
            bail!("webdriver {path} answered {status}: {}", v["value"]);
        }
        Ok(v["value"].clone())
    }

    fn session_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&mut self, url: &str) {
        self.session_call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .expect("navigate");
    }

    /// Run `script` (a function body; `arguments[i]` are `args`) in the page.
    pub fn exec(&self, script: &str, args: &[Value]) -> Value {
        self.session_call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .unwrap_or_else(|e| panic!("script failed: {e:#}\n{script}"))
    }

    /// The text of the first element matching `css`, or None.
    pub fn text(&self, css: &str) -> Option<String> {
        self.exec(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            &[json!(css)],
        )
        .as_str()
        .map(str::to_string)
    }

    /// The whole page's visible text.
    pub fn page_text(&self) -> String {
        self.exec("return document.body.innerText;", &[])
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Poll `f` until it gives Some, or panic after `limit` saying `what` (with a screenshot).
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        limit: Duration,
        f: impl Fn(&Browser) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if Instant::now() > deadline {
                let shot = self.screenshot(&format!("timeout-{}", slug(what)));
                panic!(
                    "timed out after {limit:?} waiting for {what}; screenshot {}; page text:\n{}",
                    shot.display(),
                    self.page_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait for an element and return its text.
    pub fn wait_text(&mut self, css: &str) -> String {
        self.wait_for(&format!("`{css}`"), WAIT, |b| b.text(css))
    }

    fn element(&self, css: &str) -> Result<String> {
        let v = self.session_call(
            reqwest::Method::POST,
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        )?;
        v[ELEMENT]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no element reference for `{css}`: {v}"))
    }

    /// A real click (as a user's) on the element matching `css`, once it exists. A live
    /// page may redraw the element between finding and clicking it: then it is found again.
    pub fn click(&mut self, css: &str) {
        for _ in 0..20 {
            self.wait_text(css);
            let id = self.element(css).expect("find element");
            match self.session_call(
                reqwest::Method::POST,
                &format!("/element/{id}/click"),
                Some(json!({})),
            ) {
                Ok(_) => return,
                Err(e) if format!("{e:#}").contains("stale element") => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("click `{css}`: {e:#}"),
            }
        }
        panic!("click `{css}`: the element kept being replaced");
    }

    /// Type `text` into the input matching `css`.
    pub fn type_into(&mut self, css: &str, text: &str) {
        self.wait_text(css);
        let id = self.element(css).expect("find element");
        self.session_call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .unwrap_or_else(|e| panic!("type into `{css}`: {e:#}"));
    }

    /// Resize the window (CSS pixels).
    pub fn resize(&mut self, width: u32, height: u32) {
        self.session_call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .expect("resize");
    }

    /// Save a PNG of the viewport as target/dashboard-screenshots/NAME.png.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let path = screenshot_dir().join(format!("{name}.png"));
        match self
            .session_call(reqwest::Method::GET, "/screenshot", None)
            .ok()
            .and_then(|v| v.as_str().and_then(decode_base64))
        {
            Some(png) => {
                let _ = std::fs::write(&path, png);
            }
            None => eprintln!("could not take screenshot {name}"),
        }
        path
    }

    /// Console messages since the last call, added to `self.logs`.
    fn read_logs(&mut self) {
        let Ok(v) = self.session_call(
            reqwest::Method::POST,
            "/se/log",
            Some(json!({ "type": "browser" })),
        ) else {
            return;
        };
        for e in v.as_array().into_iter().flatten() {
            self.logs.push(LogEntry {
                level: e["level"].as_str().unwrap_or_default().to_string(),
                source: e["source"].as_str().unwrap_or_default().to_string(),
                message: e["message"].as_str().unwrap_or_default().to_string(),
            });
        }
    }

    /// JavaScript errors so far: SEVERE console messages (uncaught exceptions, failed module
    /// loads, `console.error`) and what the page's own `window.onerror` collected. Messages
    /// containing any of `allowed` are left out (e.g. an expected 401).
    pub fn js_errors(&mut self, allowed: &[&str]) -> Vec<String> {
        self.read_logs();
        let mut out: Vec<String> = self
            .logs
            .iter()
            .filter(|e| e.level == "SEVERE")
            .map(|e| format!("[{}] {}", e.source, e.message))
            .collect();
        if let Some(list) = self
            .exec("return window.spoolErrors || [];", &[])
            .as_array()
        {
            out.extend(list.iter().map(|v| format!("[window.onerror] {v}")));
        }
        out.retain(|m| !allowed.iter().any(|a| m.contains(a)));
        out
    }

    /// Panic when the page logged a JavaScript error (see `js_errors`).
    pub fn assert_no_js_errors(&mut self, allowed: &[&str]) {
        let errors = self.js_errors(allowed);
        assert!(
            errors.is_empty(),
            "the page logged JavaScript errors:\n{}",
            errors.join("\n")
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.session_call(reqwest::Method::DELETE, "", None);
        }
        if let Some(mut d) = self.driver.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect()
}

/// Standard base64 (WebDriver screenshots); None on bad input.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert!(decode_base64("a*b").is_none());
    }
}
