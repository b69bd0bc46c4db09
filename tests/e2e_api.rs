//! End to end: the HTTP API's edges: bad requests get a 4xx with a clear message and the
//! daemon keeps serving; the token; health and metrics; the SSE event stream and its resume.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use spool_tests::{Daemon, id_of, stderr, stdout};
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

fn error_of(a: &spool_tests::Answer) -> (String, String) {
    let e = &a.body["error"];
    (
        e["code"].as_str().unwrap_or("").into(),
        e["message"].as_str().unwrap_or("").into(),
    )
}

#[test]
fn bad_requests_get_a_clear_4xx_and_the_daemon_keeps_serving() {
    let d = Daemon::builder(&["echo"])
        .config("max_payload = \"1KiB\"\n")
        .start();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "malformed JSON",
            r#"{"type": "echo", "#.into(),
            400,
            "malformed JSON",
        ),
        (
            "not an object",
            "[1, 2]".into(),
            400,
            "must be a JSON object",
        ),
        (
            "type not a string",
            r#"{"type": 7}"#.into(),
            400,
            "`type` must be a string",
        ),
        (
            "missing type",
            r#"{"payload": {}}"#.into(),
            400,
            "`type` is required",
        ),
        (
            "attempts wrong type",
            r#"{"type": "echo", "max_attempts": "3"}"#.into(),
            400,
            "`max_attempts`",
        ),
        (
            "unknown priority",
            r#"{"type": "echo", "priority": "urgent"}"#.into(),
            400,
            "invalid priority `urgent`",
        ),
        (
            "priority out of range",
            r#"{"type": "echo", "priority": 0}"#.into(),
            400,
            "invalid priority",
        ),
        (
            "bad delay",
            r#"{"type": "echo", "delay": "soon"}"#.into(),
            400,
            "`delay`",
        ),
        (
            "unknown field",
            r#"{"type": "echo", "prio": 1}"#.into(),
            400,
            "unknown field `prio`",
        ),
        (
            "oversized payload",
            format!(r#"{{"type": "echo", "payload": "{}"}}"#, "x".repeat(2000)),
            413,
            "over the limit of 1024 bytes",
        ),
        (
            "oversized body",
            format!(
                r#"{{"type": "echo", "payload": "{}"}}"#,
                "x".repeat(200_000)
            ),
            413,
            "limit",
        ),
    ];
    for (what, body, status, needle) in cases {
        let a = d.post_raw("/api/v1/jobs", body);
        let (code, message) = error_of(&a);
        assert_eq!(a.status, status, "{what}: {}", a.text);
        assert!(!code.is_empty(), "{what}: error code missing: {}", a.text);
        assert!(
            message.contains(needle),
            "{what}: {message:?} should mention {needle:?}"
        );
    }
    assert_eq!(d.get("/api/v1/jobs/no-such-job").status, 404);
    assert_eq!(d.get("/api/v1/jobs?status=weird").status, 400);
    assert_eq!(d.get("/api/v1/nothing-here").status, 404);
    // Still serving.
    let id = id_of(&d.submit(&json!({"type": "echo", "payload": [1]})));
    d.wait_status(&id, "completed", Duration::from_secs(30));
    assert_eq!(d.get("/health").status, 200);
}

#[test]
fn a_token_guards_the_api_but_not_health() {
    let d = Daemon::builder(&["echo"])
        .env("SPOOL_API_TOKEN", "s3cret-token")
        .start();
    let bare = reqwest::blocking::Client::new();
    let a = bare.get(format!("{}/api/v1/stats", d.url)).send().unwrap();
    assert_eq!(a.status().as_u16(), 401);
    let body: Value = a.json().unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer"),
        "{body}"
    );
    let wrong = bare
        .get(format!("{}/api/v1/stats", d.url))
        .bearer_auth("nope")
        .send()
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert_eq!(
        bare.get(format!("{}/health", d.url))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    // The harness sends the token; so does the CLI with SPOOL_TOKEN.
    assert_eq!(d.get("/api/v1/stats").status, 200);
    let out = d.cli(&["stats"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_non_loopback_listen_address_needs_a_token() {
    let out = std::process::Command::new(spool_tests::spool_bin())
        .args(["daemon", "--listen", "0.0.0.0:0", "--storage", "memory://"])
        .env_remove("SPOOL_API_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("refusing to listen on 0.0.0.0:0 without an API token"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn health_stats_plugins_and_metrics_describe_the_daemon() {
    let d = Daemon::start(&["echo"]);
    let id = id_of(&d.submit(&json!({"type": "echo"})));
    d.wait_status(&id, "completed", Duration::from_secs(30));
    let orphan = d.submit(&json!({"type": "nobody-handles-this"}));
    assert_eq!(orphan["handled"], false);
    assert!(
        orphan["note"]
            .as_str()
            .unwrap()
            .contains("no loaded plugin"),
        "{orphan}"
    );
    let h = d.get("/health");
    assert_eq!(h.status, 200);
    assert_eq!(h.body["status"], "healthy", "{}", h.text);
    assert_eq!(h.body["backend"], "sqlite");
    assert!(h.body["storage"]["latency_ms"].is_number());
    assert_eq!(h.body["storage"]["connected"], true);
    assert_eq!(h.body["reasons"], json!([]));
    assert_eq!(h.body["consuming"]["stalled"], false);
    assert!(h.body["consuming"]["last_claim_age_s"].is_number());
    assert!(h.body["redis"].is_null() && h.body["fallback"].is_null());
    assert!(h.body["queue"]["pending"].is_number());
    assert_eq!(h.body["plugins"]["loaded"], 1);
    let s = d.get("/api/v1/stats").body;
    assert_eq!(s["types"]["nobody-handles-this"]["handled"], false);
    assert_eq!(s["unhandled_types"], json!(["nobody-handles-this"]));
    let p = d.get("/api/v1/plugins").body;
    assert_eq!(p["plugins"][0]["name"], "echo");
    let m = d.get("/metrics").text;
    for name in [
        "spool_jobs_enqueued_total{type=\"echo\"} 1",
        "spool_jobs_completed_total{type=\"echo\"} 1",
        "spool_job_duration_seconds_count{type=\"echo\"} 1",
        "spool_instantiation_seconds_count{plugin=\"echo\"} 1",
        "spool_queue_depth{type=\"nobody-handles-this\",status=\"pending\"} 1",
        "spool_workers_busy 0",
        "spool_jobs_failed_total{type=\"echo\"} 0",
        "spool_jobs_retried_total{type=\"echo\"} 0",
        "spool_jobs_cancelled_total{type=\"echo\"} 0",
        "spool_storage_latency_seconds_count{op=\"claim\"}",
        "spool_storage_latency_seconds_count{op=\"complete\"}",
        "spool_storage_latency_seconds_count{op=\"ping\"}",
        "spool_plugin_loads_total{plugin=\"echo\"} 1",
        "spool_plugin_load_failures_total{plugin=\"echo\"} 0",
        "spool_last_claim_age_seconds",
        "spool_plugins_failed 0",
        "spool_instances_running 0",
        "spool_instances_idle 0",
    ] {
        assert!(m.contains(name), "metrics lack {name}:\n{m}");
    }
    let out = d.cli(&["stats", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let echo = &st["types"]["echo"];
    assert_eq!(echo["counts"]["completed"], 1, "{st}");
    assert!(echo["jobs_per_minute"].as_f64().unwrap() > 0.0, "{st}");
    assert!(echo["avg_duration_ms"].is_number(), "{st}");
    assert!(st["rate_window_s"].as_u64().unwrap() >= 1, "{st}");
    let table = d.cli(&["stats"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("JOBS/MIN"));
}

/// Read SSE messages from `url` until `stop` says enough or the time runs out.
fn read_events(
    url: &str,
    last_id: Option<&str>,
    limit: Duration,
    stop: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let client = reqwest::blocking::Client::builder()
        .timeout(limit)
        .build()
        .unwrap();
    let mut rb = client.get(url);
    if let Some(id) = last_id {
        rb = rb.header("Last-Event-ID", id);
    }
    let resp = rb.send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut events = Vec::new();
    let mut id = None;
    let deadline = Instant::now() + limit;
    for line in BufReader::new(resp).lines() {
        let Ok(line) = line else { break };
        if let Some(v) = line
            .strip_prefix("id: ")
            .or_else(|| line.strip_prefix("id:"))
        {
            id = Some(v.to_string());
        }
        if let Some(data) = line
            .strip_prefix("data: ")
            .or_else(|| line.strip_prefix("data:"))
        {
            let mut e: Value = serde_json::from_str(data).unwrap();
            e["sse_id"] = json!(id.clone());
            events.push(e);
            if stop(&events) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out reading events: {events:?}"
        );
    }
    events
}

#[test]
fn events_stream_live_and_resume_after_the_last_id() {
    let d = Daemon::start(&["echo", "fail-permanent"]);
    let url = format!("{}/api/v1/events?type=echo", d.url);
    let reader = {
        let url = url.clone();
        std::thread::spawn(move || {
            read_events(&url, None, Duration::from_secs(30), |es| {
                es.iter().any(|e| e["kind"] == "job.completed")
            })
        })
    };
    // Keep submitting until the live stream (subscribed at some point in between) has seen a
    // job complete: a live-only stream does not replay what came before it connected.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reader.is_finished() {
        assert!(Instant::now() < deadline, "no live events arrived");
        d.submit(&json!({"type": "echo"}));
        d.submit(&json!({"type": "fail-permanent"}));
        std::thread::sleep(Duration::from_millis(200));
    }
    let live = reader.join().unwrap();
    assert!(
        live.iter().all(|e| e["job_type"] == "echo"),
        "type filter: {live:?}"
    );
    let kinds: Vec<&str> = live.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"job.completed"), "{kinds:?}");
    // Resume: everything after the first event we saw, from storage, then live.
    let first_id = live[0]["sse_id"].as_str().unwrap().to_string();
    let resumed = read_events(&url, Some(&first_id), Duration::from_secs(30), |es| {
        es.iter().any(|e| e["kind"] == "job.completed")
    });
    assert!(!resumed.is_empty());
    assert_ne!(
        resumed[0]["sse_id"].as_str(),
        Some(first_id.as_str()),
        "resume starts after the id"
    );
    // The CLI follows events too.
    let mut child = std::process::Command::new(spool_tests::spool_bin())
        .args(["events", "--type", "echo", "--json", "--after", &first_id])
        .env("SPOOL_URL", &d.url)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let first_line = BufReader::new(out).lines().next().unwrap().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let e: Value = serde_json::from_str(&first_line).unwrap();
    assert_eq!(e["job_type"], "echo");
}

#[test]
fn cli_exit_codes_follow_the_help() {
    let d = Daemon::start(&["echo", "fail-permanent"]);
    let ok = d.cli(&["submit", "echo", r#"{"a": 1}"#, "--wait"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&ok)).unwrap(),
        json!({"a": 1})
    );
    let failed = d.cli(&["submit", "fail-permanent", "--wait"]);
    assert_eq!(failed.status.code(), Some(3), "{}", stderr(&failed));
    let usage = d.cli(&["submit", "echo", "--priority", "urgent"]);
    assert_eq!(usage.status.code(), Some(2));
    let missing = d.cli(&["job", "no-such-id"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no job with id `no-such-id`"),
        "{}",
        stderr(&missing)
    );
    let nobody = std::process::Command::new(spool_tests::spool_bin())
        .args(["stats"])
        .env("SPOOL_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(1));
    assert!(
        stderr(&nobody)
            .contains("no daemon answers at http://127.0.0.1:9: start one with `spool daemon`"),
        "{}",
        stderr(&nobody)
    );
    let help = d.cli(&["--help"]);
    assert!(stdout(&help).contains("Exit codes"), "{}", stdout(&help));
    let health = d.cli(&["health"]);
    assert_eq!(health.status.code(), Some(0));
    assert!(stdout(&health).contains("healthy"));
}

/// A `Last-Event-ID` this store never handed out (it was reset, or restored from a backup)
/// must not hide live events: the client gets what happens from now on.
#[test]
fn a_resume_id_beyond_the_store_still_gets_live_events() {
    let d = Daemon::start(&["echo"]);
    let url = format!("{}/api/v1/events?type=echo", d.url);
    let reader = {
        let url = url.clone();
        std::thread::spawn(move || {
            read_events(&url, Some("999999999"), Duration::from_secs(30), |es| {
                es.iter().any(|e| e["kind"] == "job.completed")
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reader.is_finished() {
        assert!(
            Instant::now() < deadline,
            "no live events arrived after a foreign resume id"
        );
        d.submit(&json!({"type": "echo"}));
        std::thread::sleep(Duration::from_millis(200));
    }
    let live = reader.join().unwrap();
    assert!(
        live.iter().any(|e| e["kind"] == "job.completed"),
        "{live:?}"
    );
}
