//! Shared harness for the end-to-end tests: `Daemon` starts the real `spool` binary on a free
//! port with a temporary SQLite file and a temporary plugins folder (copied from the built
//! fixtures), waits for its `listening on` line, and offers a blocking HTTP client and the CLI.
//! It kills the process on drop and prints the daemon's log when the test failed.
//!
//! Needs `cargo build -p spool-host` (the binary, or `$SPOOL_BIN`) and
//! `scripts/build-plugins.sh` (the fixtures in target/plugins, or `$SPOOL_TEST_PLUGINS`).
//!
//! The host's integration tests (host/tests) use this crate too, for its Redis servers
//! (`redis`) and `eventually`.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Throwaway Redis servers for the Redis tests of both test trees.
pub mod redis;

/// Waiting for a condition against a deadline.
mod wait;
pub use wait::{eventually, eventually_blocking};

/// Headless Chromium over WebDriver, for the dashboard tests.
pub mod browser;

/// The repository root (the root package's manifest folder).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `spool` binary: `$SPOOL_BIN`, else the dev build in the target folder.
pub fn spool_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SPOOL_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let bin = target.join("debug").join("spool");
    assert!(
        bin.exists(),
        "no spool binary at {}: run `cargo build -p spool-host` first (or set SPOOL_BIN)",
        bin.display()
    );
    bin
}

/// Where the built plugin fixtures are: `$SPOOL_TEST_PLUGINS`, else target/plugins.
pub fn plugins_src() -> PathBuf {
    std::env::var_os("SPOOL_TEST_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target").join("plugins"))
}

/// target/spool-test-cache: the compiled-plugin cache every test daemon shares.
pub fn shared_cache_dir() -> PathBuf {
    let dir = repo_root().join("target").join("spool-test-cache");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Copy `NAME.wasm` (and `NAME.toml` when there is one) of each plugin into `dir`.
pub fn install_plugins(dir: &Path, names: &[&str]) {
    let src = plugins_src();
    for name in names {
        let wasm = src.join(format!("{name}.wasm"));
        assert!(
            wasm.exists(),
            "plugin fixture {} is missing: run scripts/build-plugins.sh (or set SPOOL_TEST_PLUGINS)",
            wasm.display()
        );
        let toml = src.join(format!("{name}.toml"));
        if toml.exists() {
            std::fs::copy(&toml, dir.join(format!("{name}.toml"))).expect("copy plugin manifest");
        }
        // Copy to a temp name and rename, as a deploy would: the watcher never sees half a file.
        let tmp = dir.join(format!(".{name}.wasm.tmp"));
        std::fs::copy(&wasm, &tmp).expect("copy plugin");
        std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).expect("install plugin");
    }
}

/// How to start a daemon. `Daemon::builder(&["echo"])...start()`.
pub struct Builder {
    plugins: Vec<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    config: Option<String>,
    storage: Option<String>,
}

impl Builder {
    /// Extra `spool daemon` flags, e.g. `["--workers", "1"]`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Contents of a `spool.toml` passed with `--config`.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.into());
        self
    }

    /// Storage URL (default: SQLite in the daemon's temporary folder).
    pub fn storage(mut self, url: &str) -> Self {
        self.storage = Some(url.into());
        self
    }

    pub fn start(self) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).expect("plugins dir");
        let names: Vec<&str> = self.plugins.iter().map(String::as_str).collect();
        install_plugins(&plugins, &names);
        let storage = self
            .storage
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("spool.db").display()));
        let mut args: Vec<String> = vec![
            "daemon".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--storage".into(),
            storage,
            "--plugins".into(),
            plugins.display().to_string(),
        ];
        if let Some(toml) = &self.config {
            let path = dir.path().join("spool.toml");
            std::fs::write(&path, toml).expect("write config");
            args.push("--config".into());
            args.push(path.display().to_string());
        }
        args.extend(self.args.iter().cloned());
        let mut env = vec![
            // Short lease so a killed daemon's jobs come back quickly; tests may override.
            ("SPOOL_LEASE".to_string(), "5s".to_string()),
            (
                "SPOOL_DATA_DIR".to_string(),
                dir.path().display().to_string(),
            ),
            ("SPOOL_LOG".to_string(), "info".to_string()),
            // Compiled plugins are cached by content hash: share them across test daemons.
            (
                "SPOOL_CACHE_DIR".to_string(),
                shared_cache_dir().display().to_string(),
            ),
        ];
        env.extend(self.env.iter().cloned());
        let token = env
            .iter()
            .rev()
            .find(|(k, _)| k == "SPOOL_API_TOKEN")
            .map(|(_, v)| v.clone());
        let mut d = Daemon {
            child: None,
            url: String::new(),
            dir,
            plugins,
            args,
            env,
            log: Arc::new(Mutex::new(String::new())),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            token,
            runs: 0,
        };
        d.spawn()
            .unwrap_or_else(|e| panic!("{e:#}\n--- daemon log ---\n{}", d.logs()));
        d
    }
}

/// A running `spool daemon`.
pub struct Daemon {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Holds the database, plugins folder and config; removed on drop.
    pub dir: tempfile::TempDir,
    pub plugins: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: Arc<Mutex<String>>,
    http: reqwest::blocking::Client,
    token: Option<String>,
    runs: usize,
}

/// An HTTP answer: status and JSON body (Null when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Daemon {
    pub fn builder(plugins: &[&str]) -> Builder {
        Builder {
            plugins: plugins.iter().map(|s| s.to_string()).collect(),
            args: Vec::new(),
            env: Vec::new(),
            config: None,
            storage: None,
        }
    }

    /// A daemon with these plugins and the defaults.
    pub fn start(plugins: &[&str]) -> Daemon {
        Daemon::builder(plugins).start()
    }

    fn spawn(&mut self) -> Result<()> {
        self.runs += 1;
        let mut cmd = Command::new(spool_bin());
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("SPOOL_API_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .current_dir(self.dir.path());
        if let Some(t) = &self.token {
            cmd.env("SPOOL_API_TOKEN", t);
        }
        // The daemon dies with the thread that started it, so a test binary killed mid-run
        // leaves no daemon behind.
        // SAFETY: prctl in the child before exec; it only sets the parent-death signal.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("cannot start the spool binary")?;
        let (tx, rx) = mpsc::channel::<String>();
        let run = self.runs;
        {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            log.push_str(&format!(
                "=== daemon run {run}: spool {}\n",
                self.args.join(" ")
            ));
        }
        let stderr = child.stderr.take().context("no stderr")?;
        let stdout = child.stdout.take().context("no stdout")?;
        spawn_reader(stderr, self.log.clone(), Some(tx));
        spawn_reader(stdout, self.log.clone(), None);
        self.child = Some(child);
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let status = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                bail!(
                    "the daemon did not print `listening on` within 60 s (exit status: {status:?})"
                );
            }
        };
        self.url = format!("http://{addr}");
        Ok(())
    }

    /// Start the daemon again with the same folder, database and flags (after `kill9` or
    /// `terminate`).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the daemon before restarting it");
        self.spawn()
            .unwrap_or_else(|e| panic!("{e:#}\n--- daemon log ---\n{}", self.logs()));
    }

    /// SIGSTOP: the daemon stands still (no claim, no renewal, no result) until `resume`;
    /// a test reads storage meanwhile to know exactly what the daemon holds.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        let c = self.child.as_ref().expect("the daemon is not running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(c.id() as i32, sig);
        }
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; waits for the exit up to `limit` and returns the status and how long it took.
    pub fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let mut c = self.child.take().expect("the daemon is not running");
        let t0 = Instant::now();
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return (status, t0.elapsed());
            }
            if t0.elapsed() > limit {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "the daemon did not exit within {limit:?} of SIGTERM\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the daemon printed so far.
    pub fn logs(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    fn answer(resp: reqwest::Result<reqwest::blocking::Response>) -> Answer {
        let resp = resp.expect("HTTP request to the daemon failed");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, body, text }
    }

    pub fn get(&self, path: &str) -> Answer {
        Self::answer(self.request(reqwest::Method::GET, path).send())
    }

    /// POST a raw body (any bytes, to test bad requests).
    pub fn post_raw(&self, path: &str, body: impl Into<reqwest::blocking::Body>) -> Answer {
        Self::answer(
            self.request(reqwest::Method::POST, path)
                .header("content-type", "application/json")
                .body(body)
                .send(),
        )
    }

    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.post_raw(path, body.to_string())
    }

    pub fn put(&self, path: &str, body: &Value) -> Answer {
        Self::answer(
            self.request(reqwest::Method::PUT, path)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send(),
        )
    }

    pub fn delete(&self, path: &str) -> Answer {
        Self::answer(self.request(reqwest::Method::DELETE, path).send())
    }

    /// Submit one job; panics unless the daemon answered 201. Returns the job.
    pub fn submit(&self, job: &Value) -> Value {
        let a = self.post("/api/v1/jobs", job);
        assert_eq!(
            a.status, 201,
            "submit {job} answered {}: {}",
            a.status, a.text
        );
        a.body
    }

    /// Submit many jobs in one batch call; returns their ids.
    pub fn submit_batch(&self, jobs: &[Value]) -> Vec<String> {
        let a = self.post("/api/v1/jobs/batch", &serde_json::json!({ "jobs": jobs }));
        assert!(
            a.status == 201 || a.status == 200,
            "batch answered {}: {}",
            a.status,
            a.text
        );
        a.body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(id_of)
            .collect()
    }

    pub fn job(&self, id: &str) -> Value {
        let a = self.get(&format!("/api/v1/jobs/{id}"));
        assert_eq!(a.status, 200, "GET job {id}: {}", a.text);
        a.body
    }

    /// Poll a job until `done(job)` or panic after `limit`.
    pub fn wait_job(&self, id: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let j = self.job(id);
            if done(&j) {
                return j;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} did not get there within {limit:?}: {j}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Poll until the job has this status.
    pub fn wait_status(&self, id: &str, status: &str, limit: Duration) -> Value {
        self.wait_job(id, limit, |j| j["status"] == status)
    }

    /// Count of jobs in `status` across types (from `/api/v1/stats`).
    pub fn count(&self, status: &str) -> u64 {
        let a = self.get("/api/v1/stats");
        assert_eq!(a.status, 200, "stats: {}", a.text);
        a.body["totals"][status].as_u64().unwrap_or(0)
    }

    /// Every job with this status (all pages of `GET /api/v1/jobs`).
    pub fn all_jobs(&self, status: &str) -> Vec<Value> {
        let mut jobs = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/jobs?status={status}&limit=1000");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let a = self.get(&path);
            assert_eq!(a.status, 200, "list jobs: {}", a.text);
            jobs.extend(a.body["jobs"].as_array().cloned().unwrap_or_default());
            match a.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return jobs,
            }
        }
    }

    /// Run the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(spool_bin());
        cmd.args(args)
            .env("SPOOL_URL", &self.url)
            .env_remove("SPOOL_TOKEN");
        if let Some(t) = &self.token {
            cmd.env("SPOOL_TOKEN", t);
        }
        cmd.output().expect("run the spool CLI")
    }

    /// The process id (for signals).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- daemon log ({}) ---\n{}--- end of daemon log ---",
                self.url,
                self.logs()
            );
        }
    }
}

/// Copies a pipe into the shared log; the first `listening on http://ADDR` line sends ADDR.
fn spawn_reader(
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<String>>,
    tx: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        let mut tx = tx;
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on http://").nth(1)
                && let Some(t) = tx.take()
            {
                let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                let _ = t.send(addr);
            }
            if let Ok(mut l) = log.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
}

/// Runs `spool daemon` on storage `url` (no plugins, debug log) for at most `limit`, for
/// a daemon expected to stop or keep retrying on its own, and returns all it printed.
pub fn daemon_output(url: &str, limit: Duration) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    let mut child = Command::new(spool_bin())
        .args([
            "daemon",
            "--listen",
            "127.0.0.1:0",
            "--storage",
            url,
            "--plugins",
        ])
        .arg(&plugins)
        .env("SPOOL_DATA_DIR", dir.path())
        .env("SPOOL_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start spool");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `id` of a job JSON.
pub fn id_of(job: &Value) -> String {
    job["id"].as_str().expect("job id").to_string()
}

/// Text of a CLI run's stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parse an RFC 3339 time from the API into milliseconds since 1970.
pub fn millis(v: &Value) -> Result<i64> {
    let s = v
        .as_str()
        .ok_or_else(|| anyhow!("not a time string: {v}"))?;
    // 2026-08-01T12:00:00.123Z: the API always writes UTC with milliseconds.
    let (date, time) = s.trim_end_matches('Z').split_once('T').context("no T")?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse())
        .collect::<Result<_, _>>()?;
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms
        .split(':')
        .map(|x| x.parse())
        .collect::<Result<_, _>>()?;
    let days = days_from_civil(d[0], d[1], d[2]);
    Ok(((days * 24 + t[0]) * 60 + t[1]) * 60_000 + t[2] * 1000 + ms.parse::<i64>()?)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_parses_api_times() {
        assert_eq!(
            millis(&Value::from("1970-01-01T00:00:01.500Z")).unwrap(),
            1500
        );
        assert_eq!(
            millis(&Value::from("2001-09-09T01:46:40.000Z")).unwrap(),
            1_000_000_000_000
        );
    }
}
