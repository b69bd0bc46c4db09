//! Outbound HTTP end to end: the real daemon, the `webhook` (Rust) and `fetch-title`
//! (JavaScript) example plugins (contract 0.2.0) built from source, and a small HTTP server
//! these tests start on loopback. Covers the allow-list, redirects (never followed), the
//! private-address check, limits (body size, first byte, a trickling server), Retry-After, and
//! secrets never leaving the daemon (log, API answers, metrics, the event stream).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use spool_tests::{Daemon, eventually_blocking, plugins_src};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "whsec-e2e-7f3a9c1d5b";

/// What the test server answers, by request count (the last entry repeats).
#[derive(Clone)]
enum Reply {
    Status(u16, Vec<(&'static str, String)>, String),
    /// Accept the request and never answer.
    Silent,
    /// Send the head and then one body byte every `interval`.
    Trickle(Duration),
}

struct Seen {
    at: Instant,
    head: String,
    body: String,
}

struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn serve(replies: Vec<Reply>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let n = log.lock().unwrap().len();
            let reply = replies[n.min(replies.len() - 1)].clone();
            if let Some(s) = answer(stream, reply, &log) {
                held.push(s);
            }
        }
    });
    Server { port, seen }
}

fn answer(stream: TcpStream, reply: Reply, log: &Mutex<Vec<Seen>>) -> Option<TcpStream> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    log.lock().unwrap().push(Seen {
        at: Instant::now(),
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let mut stream = stream;
    match reply {
        Reply::Silent => Some(stream),
        Reply::Trickle(interval) => {
            std::thread::spawn(move || {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n");
                for _ in 0..1000 {
                    std::thread::sleep(interval);
                    if stream.write_all(b"x").is_err() {
                        return;
                    }
                }
            });
            None
        }
        Reply::Status(code, headers, body) => {
            let mut text = format!(
                "HTTP/1.1 {code} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                text.push_str(&format!("{k}: {v}\r\n"));
            }
            text.push_str("\r\n");
            text.push_str(&body);
            let _ = stream.write_all(text.as_bytes());
            None
        }
    }
}

/// A daemon with the webhook plugin under `manifest`, loaded and ready.
fn daemon_with_webhook(manifest: &str) -> Daemon {
    let d = Daemon::builder(&[]).env("SPOOL_WEBHOOK_KEY", KEY).start();
    std::fs::write(d.plugins.join("webhook.toml"), manifest).unwrap();
    let tmp = d.plugins.join(".webhook.wasm.tmp");
    std::fs::copy(plugins_src().join("webhook.wasm"), &tmp).unwrap();
    std::fs::rename(&tmp, d.plugins.join("webhook.wasm")).unwrap();
    eventually_blocking("webhook loaded", Duration::from_secs(60), || {
        d.get("/api/v1/plugins").text.contains("\"loaded\"")
    });
    d
}

fn manifest(url: &str, allowed: &str, extra: &str) -> String {
    format!(
        "allowed_hosts = [\"{allowed}\"]\n{extra}\n[retry]\nmax_attempts = 2\nbackoff_base = \"100ms\"\n\
         [config]\nurl = \"{url}\"\n[secrets]\nsigning_key = \"env:SPOOL_WEBHOOK_KEY\"\n"
    )
}

fn logs(job: &Value) -> String {
    job["logs"].to_string()
}

#[test]
fn an_allowed_request_is_signed_and_delivered() {
    let s = serve(vec![Reply::Status(200, vec![], "ok".into())]);
    let base = format!("http://127.0.0.1:{}", s.port);
    let d = daemon_with_webhook(&manifest(&format!("{base}/hook"), &base, ""));
    let job = d.submit(&json!({"type": "webhook", "payload": {"order": 42}}));
    let done = d.wait_status(
        job["id"].as_str().unwrap(),
        "completed",
        Duration::from_secs(30),
    );
    assert_eq!(done["result"]["status"], 200, "{done}");
    let seen = s.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, r#"{"order":42}"#);
    let head = seen[0].head.to_ascii_lowercase();
    assert!(head.starts_with("post /hook http/1.1"), "{head}");
    assert!(head.contains("x-spool-signature: sha256="), "{head}");
    assert!(!head.contains(&KEY.to_ascii_lowercase()));
}

#[test]
fn a_host_not_on_the_list_is_refused_with_a_log_line() {
    let s = serve(vec![Reply::Status(200, vec![], "ok".into())]);
    let url = format!("http://127.0.0.1:{}/hook", s.port);
    let d = daemon_with_webhook(&manifest(&url, "https://api.example.com", ""));
    let job = d.submit(&json!({"type": "webhook", "payload": {}}));
    let id = job["id"].as_str().unwrap().to_string();
    let done = d.wait_status(&id, "failed", Duration::from_secs(30));
    let logs = logs(&done);
    assert!(
        logs.contains("refused") && logs.contains("allowed_hosts"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("http://127.0.0.1:{}", s.port)),
        "{logs}"
    );
    assert!(
        s.seen.lock().unwrap().is_empty(),
        "no connection may be made"
    );
    let metrics = d.get("/metrics").text;
    assert!(
        metrics.contains("spool_http_denied_total{plugin=\"webhook\",reason=\"not_allowed\"}"),
        "{metrics}"
    );
}

#[test]
fn a_name_that_resolves_to_a_private_address_is_refused() {
    let s = serve(vec![Reply::Status(200, vec![], "ok".into())]);
    let base = format!("http://localhost:{}", s.port);
    let d = daemon_with_webhook(&manifest(&format!("{base}/hook"), &base, ""));
    let job = d.submit(&json!({"type": "webhook", "payload": {}}));
    let id = job["id"].as_str().unwrap().to_string();
    let done = d.wait_status(&id, "failed", Duration::from_secs(30));
    let logs = logs(&done);
    assert!(
        logs.contains("resolves to") && logs.contains("loopback"),
        "{logs}"
    );
    assert!(
        s.seen.lock().unwrap().is_empty(),
        "no connection may be made"
    );
}

#[test]
fn retry_after_sets_the_next_attempt() {
    let s = serve(vec![
        Reply::Status(429, vec![("retry-after", "2".into())], "slow down".into()),
        Reply::Status(200, vec![], "ok".into()),
    ]);
    let base = format!("http://127.0.0.1:{}", s.port);
    let d = daemon_with_webhook(&manifest(&format!("{base}/hook"), &base, ""));
    let job = d.submit(&json!({"type": "webhook", "payload": {}}));
    let id = job["id"].as_str().unwrap().to_string();
    d.wait_status(&id, "completed", Duration::from_secs(30));
    let seen = s.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_millis(1500) && gap <= Duration::from_millis(2500),
        "next attempt after {gap:?}, expected 2 s +- 0.5 s"
    );
}

#[test]
fn limits_fail_the_request_not_the_daemon() {
    // A body over the limit, and a server that never answers.
    let big = serve(vec![Reply::Status(400, vec![], "x".repeat(100_000))]);
    let base = format!("http://127.0.0.1:{}", big.port);
    let d = daemon_with_webhook(&manifest(
        &format!("{base}/hook"),
        &base,
        "[http]\nmax_response_bytes = \"1KiB\"\nfirst_byte_timeout = \"1s\"\n",
    ));
    let job = d.submit(&json!({"type": "webhook", "payload": {}}));
    let id = job["id"].as_str().unwrap().to_string();
    let done = d.wait_status(&id, "failed", Duration::from_secs(30));
    assert!(logs(&done).contains("http.max_response_bytes"), "{done}");

    let silent = serve(vec![Reply::Silent]);
    let base = format!("http://127.0.0.1:{}", silent.port);
    std::fs::write(
        d.plugins.join("webhook.toml"),
        manifest(
            &format!("{base}/hook"),
            &base,
            "[http]\nfirst_byte_timeout = \"1s\"\n",
        ),
    )
    .unwrap();
    eventually_blocking("manifest reloaded", Duration::from_secs(30), || {
        d.get("/api/v1/plugins")
            .text
            .contains(&silent.port.to_string())
            || d.logs().matches("plugin loaded").count() >= 2
    });
    let start = Instant::now();
    let job = d.submit(&json!({"type": "webhook", "payload": {}}));
    let id = job["id"].as_str().unwrap().to_string();
    let done = d.wait_status(&id, "failed", Duration::from_secs(30));
    assert!(logs(&done).contains("http.first_byte_timeout"), "{done}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(d.get("/health").status, 200);
}

#[test]
fn a_secret_echoed_back_never_leaves_the_daemon() {
    // The receiver quotes the key in its error body; the plugin puts that excerpt in its error.
    let s = serve(vec![Reply::Status(
        400,
        vec![],
        format!("bad signature key {KEY}"),
    )]);
    let base = format!("http://127.0.0.1:{}", s.port);
    let d = daemon_with_webhook(&manifest(&format!("{base}/hook"), &base, ""));
    let job = d.submit(&json!({"type": "webhook", "payload": {}}));
    let id = job["id"].as_str().unwrap().to_string();
    let done = d.wait_status(&id, "failed", Duration::from_secs(30));
    assert!(
        done["error"].as_str().unwrap_or("").contains("[redacted]"),
        "{done}"
    );
    for (what, text) in [
        ("job", d.get(&format!("/api/v1/jobs/{id}")).text),
        ("jobs", d.get("/api/v1/jobs?status=failed").text),
        ("plugins", d.get("/api/v1/plugins").text),
        ("metrics", d.get("/metrics").text),
        ("daemon log", d.logs()),
    ] {
        assert!(
            !text.contains(KEY),
            "the secret leaked into the {what}: {text}"
        );
    }
}

#[test]
fn an_allowed_request_works_from_javascript_and_is_cached() {
    let page = "<html><head><title>Spool &amp; friends</title></head>\
                <body><p>one two three</p></body></html>";
    let s = serve(vec![Reply::Status(
        200,
        vec![("content-type", "text/html".into())],
        page.into(),
    )]);
    let base = format!("http://127.0.0.1:{}", s.port);
    // `echo` is a contract 0.1.0 component: it keeps running beside the 0.2.0 one.
    let d = Daemon::builder(&["echo"]).start();
    std::fs::write(
        d.plugins.join("fetch-title.toml"),
        format!("memory = \"64MiB\"\nallowed_hosts = [\"{base}\"]\n[retry]\nmax_attempts = 1\n"),
    )
    .unwrap();
    let tmp = d.plugins.join(".fetch-title.wasm.tmp");
    std::fs::copy(plugins_src().join("fetch-title.wasm"), &tmp).unwrap();
    std::fs::rename(&tmp, d.plugins.join("fetch-title.wasm")).unwrap();
    eventually_blocking("fetch-title loaded", Duration::from_secs(60), || {
        d.get("/api/v1/plugins").text.contains("fetch-title")
    });
    let url = format!("{base}/page");
    let run = |payload: Value, status: &str| {
        let job = d.submit(&json!({"type": "fetch-title", "payload": payload}));
        d.wait_status(job["id"].as_str().unwrap(), status, Duration::from_secs(60))
    };
    let done = run(json!({"url": url}), "completed");
    assert_eq!(done["result"]["title"], "Spool & friends", "{done}");
    assert_eq!(done["result"]["words"], 3, "{done}");
    assert_eq!(done["result"]["cached"], false, "{done}");
    let again = run(json!({"url": url}), "completed");
    assert_eq!(again["result"]["cached"], true, "{again}");
    assert_eq!(
        s.seen.lock().unwrap().len(),
        1,
        "the repeat came from the cache"
    );
    let echo = d.submit(&json!({"type": "echo", "payload": {"old": true}}));
    let echo = d.wait_status(
        echo["id"].as_str().unwrap(),
        "completed",
        Duration::from_secs(60),
    );
    assert_eq!(echo["result"], json!({"old": true}), "{echo}");
    // A host off the list fails inside `fetch`, and the job's log says why.
    let refused = run(json!({"url": "http://127.0.0.2:9/"}), "failed");
    let logs = logs(&refused);
    assert!(
        logs.contains("refused") && logs.contains("allowed_hosts"),
        "{logs}"
    );
}

#[test]
fn a_redirect_is_not_followed() {
    // The receiver redirects to a host the plugin may not reach: the host hands the 302 to the
    // plugin (webhook fails a 3xx for good) and nothing goes to the other host.
    let other = serve(vec![Reply::Status(200, vec![], "ok".into())]);
    let s = serve(vec![Reply::Status(
        302,
        vec![(
            "location",
            format!("http://127.0.0.1:{}/elsewhere", other.port),
        )],
        String::new(),
    )]);
    let base = format!("http://127.0.0.1:{}", s.port);
    let d = daemon_with_webhook(&manifest(&format!("{base}/hook"), &base, ""));
    let job = d.submit(&json!({"type": "webhook", "payload": {}}));
    let done = d.wait_status(
        job["id"].as_str().unwrap(),
        "failed",
        Duration::from_secs(30),
    );
    assert!(
        done["error"].as_str().unwrap_or("").contains("302"),
        "{done}"
    );
    assert_eq!(s.seen.lock().unwrap().len(), 1);
    assert!(
        other.seen.lock().unwrap().is_empty(),
        "the redirect was followed"
    );
}

#[test]
fn a_trickling_server_fails_the_request_at_the_idle_limit() {
    let s = serve(vec![Reply::Trickle(Duration::from_millis(400))]);
    let base = format!("http://127.0.0.1:{}", s.port);
    let d = daemon_with_webhook(&manifest(
        &format!("{base}/hook"),
        &base,
        "[http]\nidle_timeout = \"150ms\"\n",
    ));
    let start = Instant::now();
    let job = d.submit(&json!({"type": "webhook", "payload": {}}));
    let done = d.wait_status(
        job["id"].as_str().unwrap(),
        "failed",
        Duration::from_secs(30),
    );
    assert!(logs(&done).contains("http.idle_timeout"), "{done}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(d.get("/health").status, 200);
}

#[test]
fn a_secret_never_reaches_the_event_stream() {
    let s = serve(vec![Reply::Status(
        400,
        vec![],
        format!("bad signature key {KEY}"),
    )]);
    let base = format!("http://127.0.0.1:{}", s.port);
    let d = daemon_with_webhook(&manifest(&format!("{base}/hook"), &base, ""));
    let job = d.submit(&json!({"type": "webhook", "payload": {}}));
    d.wait_status(
        job["id"].as_str().unwrap(),
        "failed",
        Duration::from_secs(30),
    );
    // Every stored event, replayed over SSE from the start.
    let addr = d.url.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .write_all(
            format!("GET /api/v1/events?after=0 HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
        )
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut text = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("job.failed"),
        "the stream replayed the job's events: {text}"
    );
    assert!(
        !text.contains(KEY),
        "the secret reached the event stream: {text}"
    );
}
