//! `POST /api/v1/jobs/bulk` against the real daemon on every backend (SQLite, memory, Redis):
//! retry, cancel and delete by ids and by filter, `dry_run` counts without touching, per-id
//! errors, and jobs outside the selection stay as they were.
//!
//! Needs the dev binary, the plugin fixtures, and `redis-server` for the Redis case (a loud
//! skip without it; a failure under `CI=true`).
//! Run: `cargo test -p spool-tests --test e2e_bulk`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use spool_tests::{Daemon, id_of};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

fn bulk(d: &Daemon, body: Value) -> Value {
    let a = d.post("/api/v1/jobs/bulk", &body);
    assert_eq!(a.status, 200, "bulk {body}: {}", a.text);
    a.body
}

fn finished_at(d: &Daemon, id: &str) -> String {
    d.job(id)["finished_at"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn bulk_actions_touch_exactly_what_they_name(d: &Daemon) {
    let targets: Vec<String> = (0..3)
        .map(|_| id_of(&d.submit(&json!({"type": "fail-permanent"}))))
        .collect();
    let flaky = json!({"type": "flaky", "payload": {"fail_times": 5}, "max_attempts": 1});
    let others: Vec<String> = (0..2).map(|_| id_of(&d.submit(&flaky))).collect();
    let completed = id_of(&d.submit(&json!({"type": "echo"})));
    let later = id_of(&d.submit(&json!({"type": "echo", "delay": "1h"})));
    for id in targets.iter().chain(&others) {
        d.wait_status(id, "failed", LONG);
    }
    d.wait_status(&completed, "completed", LONG);
    let before: Vec<String> = targets.iter().map(|id| finished_at(d, id)).collect();
    let others_before: Vec<String> = others.iter().map(|id| finished_at(d, id)).collect();

    // A dry run counts and changes nothing.
    let failed_a = json!({"status": "failed", "type": "fail-permanent"});
    let dry = bulk(
        d,
        json!({"action": "retry", "filter": failed_a, "dry_run": true}),
    );
    assert_eq!(
        (dry["matched"].as_u64(), dry["touched"].as_u64()),
        (Some(3), Some(0)),
        "{dry}"
    );
    assert_eq!(dry["truncated"], false);
    for (id, at) in targets.iter().zip(&before) {
        assert_eq!(&finished_at(d, id), at, "a dry run touched {id}");
    }

    // Retry by filter: exactly the three run again.
    let done = bulk(d, json!({"action": "retry", "filter": failed_a}));
    assert_eq!(
        (done["matched"].as_u64(), done["touched"].as_u64()),
        (Some(3), Some(3)),
        "{done}"
    );
    assert_eq!(done["error_count"], 0, "{done}");
    for (id, at) in targets.iter().zip(&before) {
        d.wait_job(id, LONG, |j| {
            j["status"] == "failed" && j["finished_at"].as_str().unwrap_or_default() > at.as_str()
        });
    }
    for (id, at) in others.iter().zip(&others_before) {
        assert_eq!(&finished_at(d, id), at, "{id} is not of the filtered type");
    }
    assert_eq!(d.job(&completed)["status"], "completed");

    // By ids, with per-id errors: one live job cancels, a finished one and an unknown id fail.
    let done = bulk(
        d,
        json!({"action": "cancel", "ids": [later, completed, "no-such-job"]}),
    );
    assert_eq!(
        (done["matched"].as_u64(), done["touched"].as_u64()),
        (Some(1), Some(1)),
        "{done}"
    );
    assert_eq!(done["error_count"], 2, "{done}");
    let codes: Vec<&str> = done["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["code"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(codes, ["conflict", "not_found"], "{done}");
    assert_eq!(d.job(&later)["status"], "cancelled");

    // A dry run by ids counts the jobs the action applies to.
    let dry = bulk(
        d,
        json!({"action": "delete", "ids": [others[0], "no-such-job"], "dry_run": true}),
    );
    assert_eq!(
        (dry["matched"].as_u64(), dry["error_count"].as_u64()),
        (Some(1), Some(1)),
        "{dry}"
    );
    assert_eq!(d.get(&format!("/api/v1/jobs/{}", others[0])).status, 200);

    // Delete by filter: the failed flaky jobs go, nothing else.
    let done = bulk(
        d,
        json!({"action": "delete", "filter": {"status": "failed", "type": "flaky"}}),
    );
    assert_eq!(done["touched"], 2, "{done}");
    for id in &others {
        assert_eq!(d.get(&format!("/api/v1/jobs/{id}")).status, 404);
    }
    for id in &targets {
        assert_eq!(d.get(&format!("/api/v1/jobs/{id}")).status, 200);
    }

    // Requests that make no sense are refused, naming the problem.
    for (body, says) in [
        (
            json!({"action": "retry", "filter": {"status": "pending"}}),
            "cannot retry pending",
        ),
        (
            json!({"action": "delete", "filter": {"type": "echo"}}),
            "filter.status",
        ),
        (json!({"action": "retry", "ids": []}), "`ids` is empty"),
    ] {
        let a = d.post("/api/v1/jobs/bulk", &body);
        assert_eq!(a.status, 400, "{body}: {}", a.text);
        assert!(a.text.contains(says), "{body}: {}", a.text);
    }
}

const PLUGINS: [&str; 3] = ["fail-permanent", "flaky", "echo"];

#[test]
fn bulk_on_sqlite() {
    bulk_actions_touch_exactly_what_they_name(&Daemon::start(&PLUGINS));
}

#[test]
fn bulk_on_memory() {
    let d = Daemon::builder(&PLUGINS).storage("memory://").start();
    bulk_actions_touch_exactly_what_they_name(&d);
}

#[test]
fn bulk_on_redis() {
    if !spool_tests::redis::require_redis("bulk_on_redis") {
        return;
    }
    let server = spool_tests::redis::Server::start(&[]);
    let d = Daemon::builder(&PLUGINS)
        .storage(&server.url("bulk"))
        .start();
    bulk_actions_touch_exactly_what_they_name(&d);
}

#[test]
fn bulk_needs_the_token_like_every_api_call() {
    let d = Daemon::builder(&["echo"])
        .env("SPOOL_API_TOKEN", "bulk-token")
        .start();
    let a = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/jobs/bulk", d.url))
        .header("content-type", "application/json")
        .body(r#"{"action": "delete", "filter": {"status": "completed"}}"#)
        .send()
        .expect("request");
    assert_eq!(a.status().as_u16(), 401);
}
