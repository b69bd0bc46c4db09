//! End to end: what the daemon refuses: deep JSON, cross-site and
//! rebinding requests, a job timeout over its plugin's limit, times past year 9999, slow or
//! too many connections, special files in the plugins folder, control characters in what
//! `spool job` prints, files readable by others, oversized errors and bad `Last-Event-ID`s.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use spool_tests::{Answer, Daemon, eventually_blocking, id_of, stdout};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// `[[[...0...]]]`, `depth` arrays deep.
fn nested(depth: usize) -> String {
    format!("{}0{}", "[".repeat(depth), "]".repeat(depth))
}

/// A request with exactly these headers (no token, no defaults but reqwest's own).
fn send(
    d: &Daemon,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut rb = client.request(method.parse().unwrap(), format!("{}{path}", d.url));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.body(b.to_string());
    }
    let resp = rb.send().expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, body, text }
}

fn code(a: &Answer) -> &str {
    a.body["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn deeply_nested_json_is_refused_at_submit_and_listings_keep_working() {
    let d = Daemon::start(&["echo"]);
    let deep = format!(r#"{{"type": "echo", "payload": {}}}"#, nested(200_000));
    let a = d.post_raw("/api/v1/jobs", deep);
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.text.contains("nested"), "{}", a.text);
    // A batch is refused whole, before anything is created.
    let batch = format!(
        r#"{{"jobs": [{{"type": "echo"}}, {{"type": "echo", "payload": {}}}]}}"#,
        nested(130)
    );
    let a = d.post_raw("/api/v1/jobs/batch", batch);
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.text.contains("jobs[1]"), "{}", a.text);
    // At the limit is fine, and the listing that includes it answers.
    let ok = d.post_raw(
        "/api/v1/jobs",
        format!(r#"{{"type": "echo", "payload": {}}}"#, nested(64)),
    );
    assert_eq!(ok.status, 201, "{}", ok.text);
    let list = d.get("/api/v1/jobs");
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(
        list.body["jobs"].as_array().unwrap().len(),
        1,
        "{}",
        list.text
    );
}

#[test]
fn cross_site_and_rebinding_requests_are_refused() {
    let d = Daemon::start(&["echo"]);
    let job = r#"{"type": "echo"}"#;
    // A cross-site form or `text/plain` fetch cannot send JSON without a preflight.
    let a = send(
        &d,
        "POST",
        "/api/v1/jobs",
        &[("content-type", "text/plain")],
        Some(job),
    );
    assert_eq!(a.status, 415, "{}", a.text);
    let a = send(&d, "POST", "/api/v1/jobs", &[], Some(job));
    assert_eq!(a.status, 415, "{}", a.text);
    let json = ("content-type", "application/json");
    let a = send(
        &d,
        "POST",
        "/api/v1/jobs",
        &[json, ("origin", "https://evil.example")],
        Some(job),
    );
    assert_eq!(a.status, 403, "{}", a.text);
    assert_eq!(code(&a), "forbidden_origin");
    let a = send(&d, "GET", "/api/v1/jobs", &[("origin", "null")], None);
    assert_eq!(a.status, 403, "{}", a.text);
    // DNS rebinding: the page's own name arrives in `Host`.
    let a = send(
        &d,
        "GET",
        "/api/v1/jobs",
        &[("host", "evil.example:80")],
        None,
    );
    assert_eq!(a.status, 421, "{}", a.text);
    assert_eq!(code(&a), "forbidden_host");
    // The daemon's own origin (a page it serves) passes, reads and writes alike.
    let own = d.url.clone();
    let a = send(&d, "GET", "/api/v1/jobs", &[("origin", &own)], None);
    assert_eq!(a.status, 200, "{}", a.text);
    let a = send(
        &d,
        "POST",
        "/api/v1/jobs",
        &[json, ("origin", &own)],
        Some(job),
    );
    assert_eq!(a.status, 201, "{}", a.text);
    let port = d.url.rsplit(':').next().unwrap();
    let a = send(
        &d,
        "GET",
        "/health",
        &[("host", &format!("localhost:{port}"))],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.text);
    // A body-less action needs no content type.
    let id = id_of(&a_job(&d));
    let a = send(&d, "POST", &format!("/api/v1/jobs/{id}/cancel"), &[], None);
    assert!(
        a.status == 200 || a.status == 202 || a.status == 409,
        "{}",
        a.text
    );
}

fn a_job(d: &Daemon) -> Value {
    d.submit(&json!({"type": "echo", "delay": "1h"}))
}

#[test]
fn configured_api_hosts_are_served() {
    let d = Daemon::builder(&["echo"])
        .env("SPOOL_API_HOSTS", "spool.internal, jobs.example")
        .start();
    let a = send(
        &d,
        "GET",
        "/api/v1/jobs",
        &[("host", "spool.internal")],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.text);
    let a = send(
        &d,
        "GET",
        "/api/v1/jobs",
        &[("host", "jobs.example:7878")],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.text);
    let a = send(
        &d,
        "GET",
        "/api/v1/jobs",
        &[("host", "other.example")],
        None,
    );
    assert_eq!(a.status, 421, "{}", a.text);
}

#[test]
fn a_job_timeout_over_its_plugin_limit_is_refused() {
    // loop-forever's manifest says 2s; the daemon's job_timeout is 30s by default.
    let d = Daemon::start(&["loop-forever", "echo"]);
    let a = d.post(
        "/api/v1/jobs",
        &json!({"type": "loop-forever", "timeout": "15s"}),
    );
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.text.contains("2s"), "{}", a.text);
    let a = d.post("/api/v1/jobs", &json!({"type": "echo", "timeout": "31s"}));
    assert_eq!(a.status, 400, "{}", a.text);
    let a = d.post(
        "/api/v1/jobs",
        &json!({"type": "no-plugin-yet", "timeout": "1h"}),
    );
    assert_eq!(a.status, 400, "{}", a.text);
    let a = d.post(
        "/api/v1/jobs",
        &json!({"type": "loop-forever", "timeout": "1s", "max_attempts": 1}),
    );
    assert_eq!(a.status, 201, "{}", a.text);
}

#[test]
fn times_past_year_9999_are_refused() {
    let d = Daemon::start(&["echo"]);
    for job in [
        json!({"type": "echo", "run_at": 9_223_372_036_854_775_807_i64}),
        json!({"type": "echo", "delay": "100000years"}),
        json!({"type": "echo", "run_at": -62_135_596_800_001_i64}),
    ] {
        let a = d.post("/api/v1/jobs", &job);
        assert_eq!(a.status, 400, "{job}: {}", a.text);
        assert!(a.text.contains("9999"), "{job}: {}", a.text);
    }
}

#[test]
fn a_half_sent_request_head_is_dropped_after_the_header_timeout() {
    let d = Daemon::builder(&["echo"])
        .config("[api]\nheader_timeout = \"1s\"\n")
        .start();
    let addr = d.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "held for {:?}",
        start.elapsed()
    );
}

#[test]
fn connections_and_event_streams_past_their_caps_get_503() {
    let d = Daemon::builder(&["echo"])
        .config("[api]\nmax_connections = 3\nmax_event_streams = 1\n")
        .start();
    let addr = d.url.trim_start_matches("http://").to_string();
    // One SSE stream is allowed; the second gets 503 with Retry-After.
    let mut first = TcpStream::connect(&addr).unwrap();
    first
        .write_all(b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    first.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let a = send(
        &d,
        "GET",
        "/api/v1/events",
        &[("connection", "close")],
        None,
    );
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(code(&a), "too_many_streams");
    // Two keep-alive connections more fill the cap of 3 (each answered once, so the server
    // holds them); the next one is answered 503 and closed. The server closed the 503
    // stream request's connection itself (`Connection: close`), freeing its slot.
    let kept: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut c = TcpStream::connect(&addr).unwrap();
            c.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .unwrap();
            let mut head = [0u8; 12];
            c.read_exact(&mut head).unwrap();
            assert_eq!(
                &head, b"HTTP/1.1 200",
                "a connection within the cap is served"
            );
            c
        })
        .collect();
    let mut over = TcpStream::connect(&addr).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut text = String::new();
    let _ = over.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 503"), "{text:?}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after:"),
        "{text:?}"
    ); // Held open until here: they are what fills the cap.
    drop(kept);
}

#[test]
fn a_fifo_in_the_plugins_folder_does_not_stall_loading() {
    let mut d = Daemon::builder(&[]).start();
    d.terminate(Duration::from_secs(10));
    let fifo = d.plugins.join("x.wasm");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a plain mkfifo on a path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink("/dev/zero", d.plugins.join("zero.wasm")).unwrap();
    spool_tests::install_plugins(&d.plugins, &["echo"]);
    // The start-up scan reads every NAME.wasm: before, it blocked on the FIFO for good.
    d.restart();
    eventually_blocking("echo to load", Duration::from_secs(60), || {
        d.get("/api/v1/plugins").text.contains("\"echo\"")
    });
    let plugins = d.get("/api/v1/plugins").text;
    assert!(plugins.contains("not a regular file"), "{plugins}");
}

#[test]
fn spool_job_escapes_control_characters() {
    let d = Daemon::start(&["fail-permanent"]);
    let job = d.submit(&json!({"type": "fail-permanent", "payload": {"msg": "\u{1b}]0;pwned\u{7}\u{1b}[2Jgone\r"}}));
    let id = id_of(&job);
    d.wait_status(&id, "failed", Duration::from_secs(30));
    let out = stdout(&d.cli(&["job", &id]));
    assert!(
        !out.contains('\u{1b}') && !out.contains('\u{7}') && !out.contains('\r'),
        "{out:?}"
    );
    assert!(out.contains("\\u{1b}]0;pwned"), "{out}");
}

#[test]
fn data_files_are_private_to_the_daemon_user() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = Daemon::builder(&["echo"])
        .env("SPOOL_DATA_DIR", data.to_str().unwrap())
        .env("SPOOL_CACHE_DIR", data.join("cache").to_str().unwrap())
        .storage(&format!("sqlite://{}", data.join("spool.db").display()))
        .start();
    d.submit(&json!({"type": "echo"}));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("cache")), 0o700);
    assert_eq!(mode(&data.join("spool.db")), 0o600);
}

#[test]
fn job_errors_are_capped_like_results() {
    let d = Daemon::start(&["fail-permanent"]);
    let job = d.submit(&json!({"type": "fail-permanent", "payload": {"msg": "x".repeat(100_000)}}));
    let id = id_of(&job);
    let done = d.wait_status(&id, "failed", Duration::from_secs(30));
    let error = done["error"].as_str().unwrap();
    assert!(error.len() <= 16 * 1024 + 64, "{} bytes", error.len());
    assert!(
        error.contains("(truncated"),
        "{}",
        &error[error.len() - 80..]
    );
}

#[test]
fn a_bad_last_event_id_is_a_400() {
    let d = Daemon::start(&["echo"]);
    let a = send(
        &d,
        "GET",
        "/api/v1/events",
        &[("last-event-id", "not-a-number")],
        None,
    );
    assert_eq!(a.status, 400, "{}", a.text);
}

#[test]
fn storage_passwords_never_reach_the_daemons_output() {
    // Nothing listens on port 1: the daemon reports the storage it cannot reach.
    let url = "redis+sentinel://admin:hunter2@127.0.0.1:1/mymaster?sentinel_password=swordfish";
    let text = spool_tests::daemon_output(url, Duration::from_secs(10));
    assert!(text.contains("127.0.0.1:1"), "the storage is named: {text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("swordfish"), "{text}");
}

#[test]
fn a_plugin_cache_past_its_quota_fails_the_write_not_the_daemon() {
    let d = Daemon::builder(&["cache-user"])
        .config("[plugin_cache]\nmax_entries = 5\n")
        .start();
    // Each new key takes two entries (`<key>:count`, `<key>:value`).
    for key in ["a", "b"] {
        let job = d.submit(&json!({"type": "cache-user", "payload": {"key": key}}));
        d.wait_status(&id_of(&job), "completed", Duration::from_secs(60));
    }
    let over = d.submit(&json!({"type": "cache-user", "payload": {"key": "c"}, "max_attempts": 1}));
    let failed = d.wait_status(&id_of(&over), "failed", Duration::from_secs(60));
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cache of `cache-user` is full") && error.contains("quota"),
        "{error}"
    );
    // Entries already there can still be rewritten.
    let again = d.submit(&json!({"type": "cache-user", "payload": {"key": "a"}}));
    let done = d.wait_status(&id_of(&again), "completed", Duration::from_secs(60));
    assert_eq!(done["result"]["count"], 2, "{done}");

    eventually_blocking(
        "health to show the full cache",
        Duration::from_secs(10),
        || {
            let h = d.get("/health");
            h.body["plugin_cache"]["usage"]["cache-user"]["entries"] == 5
                && h.body["reasons"].to_string().contains("is full")
        },
    );
    let metrics = d.get("/metrics").text;
    assert!(
        metrics.contains("spool_plugin_cache_entries{plugin=\"cache-user\"} 5"),
        "{metrics}"
    );
}

/// Resident memory of a process, in bytes (`VmRSS`).
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn memory_of_finished_jobs_does_not_stay_in_the_daemon() {
    let d = Daemon::start(&["memory-hog"]);
    // A plugin allowed 512 MiB; each job fills 400 MiB and returns.
    std::fs::write(d.plugins.join("memory-hog.toml"), "memory = \"512MiB\"\n").expect("manifest");
    eventually_blocking(
        "the 512 MiB manifest to load",
        Duration::from_secs(60),
        || {
            d.get("/api/v1/plugins")
                .text
                .contains("\"memory_bytes\":536870912")
        },
    );
    let pid = d.pid().expect("pid");
    let before = rss_bytes(pid);
    for _ in 0..6 {
        let job =
            d.submit(&json!({"type": "memory-hog", "payload": {"max_mib": 400, "graceful": true}}));
        let done = d.wait_status(&id_of(&job), "completed", Duration::from_secs(120));
        assert_eq!(done["result"]["allocated_mib"], 400, "{done}");
    }
    let after = rss_bytes(pid);
    // Before the fix the six instances' memory (2.4 GB) stayed resident.
    assert!(
        after < before + (600 << 20),
        "resident memory grew from {} MiB to {} MiB after six jobs of 400 MiB",
        before >> 20,
        after >> 20
    );
}

/// The sha256 of a file, in hex (what names its compiled-cache entry).
fn sha256_hex(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_tampered_compiled_cache_entry_is_recompiled_not_run() {
    let cache = tempfile::tempdir().expect("cache dir");
    let cache_dir = cache.path().join("cache");
    let mut d = Daemon::builder(&["echo", "fail-permanent"])
        .env("SPOOL_CACHE_DIR", &cache_dir.display().to_string())
        .start();
    let job = d.submit(&json!({"type": "echo", "payload": {"who": "echo"}}));
    d.wait_status(&id_of(&job), "completed", Duration::from_secs(60));
    d.terminate(Duration::from_secs(20));

    // Copy fail-permanent's artifact (and its MAC) over echo's, as a writer of the folder could.
    let entry = |plugin: &str| {
        let hash = sha256_hex(&d.plugins.join(format!("{plugin}.wasm")));
        std::fs::read_dir(&cache_dir)
            .expect("cache dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.extension().is_some_and(|x| x == "cwasm")
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&hash))
            })
            .unwrap_or_else(|| panic!("no cache entry for {plugin} in {}", cache_dir.display()))
    };
    let (echo, other) = (entry("echo"), entry("fail-permanent"));
    std::fs::copy(&other, &echo).expect("copy artifact");
    std::fs::copy(other.with_extension("mac"), echo.with_extension("mac")).expect("copy mac");

    d.restart();
    let job = d.submit(&json!({"type": "echo", "payload": {"who": "echo"}}));
    let done = d.wait_status(&id_of(&job), "completed", Duration::from_secs(60));
    assert_eq!(
        done["result"],
        json!({"who": "echo"}),
        "echo ran echo's code"
    );
    eventually_blocking("the warning in the log", Duration::from_secs(10), || {
        d.logs().contains("integrity check")
    });
}
