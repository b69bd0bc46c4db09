//! End to end: jobs through the real daemon over HTTP and the CLI: a thousand jobs, retries
//! with backoff, the dead-letter queue and replay, priorities, delays, unique keys, cancel.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::json;
use spool_tests::{Daemon, eventually_blocking, id_of, millis, stdout};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

#[test]
fn a_thousand_jobs_submitted_over_http_all_complete_and_read_back() {
    let d = Daemon::start(&["echo"]);
    let mut ids = Vec::new();
    // Half one by one, half in batches.
    for i in 0..500 {
        ids.push(id_of(
            &d.submit(&json!({"type": "echo", "payload": {"n": i}})),
        ));
    }
    for chunk in 0..5 {
        let jobs: Vec<_> = (0..100)
            .map(|i| json!({"type": "echo", "payload": {"n": 500 + chunk * 100 + i}}))
            .collect();
        ids.extend(d.submit_batch(&jobs));
    }
    assert_eq!(ids.len(), 1000);
    eventually_blocking("1000 completed jobs", LONG, || d.count("completed") == 1000);
    for (i, id) in ids.iter().enumerate().step_by(97) {
        let j = d.job(id);
        assert_eq!(j["status"], "completed");
        assert_eq!(j["result"], json!({"n": i}), "echo returns its payload");
        assert!(j["plugin_version"].is_string());
    }
    // The CLI reads the same results.
    let out = d.cli(&["job", &ids[7], "--json"]);
    assert!(out.status.success(), "{out:?}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["result"], json!({"n": 7}));
    let out = d.cli(&["jobs", "--status", "completed", "--limit", "5"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.contains("completed"))
            .count(),
        5,
        "{}",
        stdout(&out)
    );
    let stats = d.cli(&["stats"]);
    assert!(stdout(&stats).contains("echo"), "{}", stdout(&stats));
}

#[test]
fn flaky_jobs_retry_with_backoff_then_succeed() {
    let d = Daemon::builder(&["flaky"])
        .config("[retry]\nbackoff_base = \"50ms\"\nbackoff_cap = \"200ms\"\n")
        .start();
    let id = id_of(&d.submit(&json!({"type": "flaky", "payload": {"fail_times": 2}})));
    let j = d.wait_status(&id, "completed", LONG);
    assert_eq!(j["attempt"], 3, "two planned failures then success: {j}");
    assert_eq!(j["result"], json!({"attempt": 3}));
    // retry_after from the plugin is honoured too.
    let id = id_of(
        &d.submit(&json!({"type": "flaky", "payload": {"fail_times": 1, "retry_after_ms": 300}})),
    );
    let j = d.wait_status(&id, "completed", LONG);
    let (created, finished) = (
        millis(&j["created_at"]).unwrap(),
        millis(&j["finished_at"]).unwrap(),
    );
    assert!(
        finished - created >= 300,
        "retry_after_ms 300 must delay the second attempt: {j}"
    );
}

#[test]
fn permanent_failures_land_in_failed_and_spool_retry_replays_them() {
    let d = Daemon::start(&["fail-permanent", "echo"]);
    let id = id_of(&d.submit(&json!({"type": "fail-permanent", "payload": {"msg": "as planned"}})));
    let j = d.wait_status(&id, "failed", LONG);
    assert_eq!(j["attempt"], 1, "a permanent failure is not retried: {j}");
    assert!(j["error"].as_str().unwrap().contains("as planned"), "{j}");
    let first_finish = j["finished_at"].clone();
    let out = d.cli(&["retry", &id]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("replayed"), "{}", stdout(&out));
    let j = d.wait_job(&id, LONG, |j| {
        j["status"] == "failed" && j["finished_at"] != first_finish
    });
    assert_eq!(j["attempt"], 1, "replay resets attempts: {j}");
    // Only failed or cancelled jobs can be replayed.
    let ok = id_of(&d.submit(&json!({"type": "echo"})));
    d.wait_status(&ok, "completed", LONG);
    let a = d.post(&format!("/api/v1/jobs/{ok}/retry"), &json!({}));
    assert_eq!(a.status, 409, "{}", a.text);
    let out = d.cli(&["retry", &ok]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn higher_priority_jobs_start_first_with_one_worker() {
    let d = Daemon::builder(&["slow"]).args(&["--workers", "1"]).start();
    // Occupy the only worker so the next jobs queue up together.
    let blocker = id_of(&d.submit(&json!({"type": "slow", "payload": {"ms": 700, "step_ms": 50}})));
    d.wait_status(&blocker, "running", LONG);
    let low = id_of(&d.submit(&json!({"type": "slow", "priority": "low", "payload": {"ms": 30}})));
    let normal = id_of(&d.submit(&json!({"type": "slow", "payload": {"ms": 30}})));
    let high =
        id_of(&d.submit(&json!({"type": "slow", "priority": "high", "payload": {"ms": 30}})));
    let p3 = id_of(&d.submit(&json!({"type": "slow", "priority": 3, "payload": {"ms": 30}})));
    let mut started = Vec::new();
    for id in [&low, &normal, &high, &p3] {
        let j = d.wait_status(id, "completed", LONG);
        started.push((
            millis(&j["started_at"]).unwrap(),
            j["priority"].as_u64().unwrap(),
        ));
    }
    started.sort();
    let order: Vec<u64> = started.iter().map(|(_, p)| *p).collect();
    assert_eq!(order, vec![1, 3, 5, 10], "jobs must start by priority");
}

#[test]
fn a_delayed_job_does_not_start_early() {
    let d = Daemon::start(&["echo"]);
    let j = d.submit(&json!({"type": "echo", "delay": "1500ms"}));
    assert_eq!(j["status"], "scheduled");
    let id = id_of(&j);
    let j = d.wait_status(&id, "completed", LONG);
    let waited = millis(&j["started_at"]).unwrap() - millis(&j["created_at"]).unwrap();
    assert!(
        waited >= 1500,
        "started {waited} ms after creation, before its delay"
    );
    // run_at in the past runs at once.
    let j = d.submit(&json!({"type": "echo", "run_at": "2001-01-01T00:00:00Z"}));
    assert_eq!(j["status"], "pending");
}

#[test]
fn a_unique_key_returns_the_live_job() {
    let d = Daemon::start(&["slow"]);
    let first = d.post(
        "/api/v1/jobs",
        &json!({"type": "slow", "unique_key": "report-42", "payload": {"ms": 2000}}),
    );
    assert_eq!(first.status, 201);
    let again = d.post(
        "/api/v1/jobs",
        &json!({"type": "slow", "unique_key": "report-42", "payload": {"ms": 5}}),
    );
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["created"], false);
    // The CLI says so too.
    let out = d.cli(&["submit", "slow", "{}", "--unique-key", "report-42"]);
    assert!(stdout(&out).starts_with("exists"), "{}", stdout(&out));
}

#[test]
fn cancel_stops_pending_and_running_jobs() {
    let d = Daemon::start(&["slow"]);
    let pending = id_of(&d.submit(&json!({"type": "slow", "delay": "1h"})));
    let a = d.post(&format!("/api/v1/jobs/{pending}/cancel"), &json!({}));
    assert_eq!(
        (a.status, a.body["status"].as_str()),
        (200, Some("cancelled")),
        "{}",
        a.text
    );
    let running =
        id_of(&d.submit(&json!({"type": "slow", "payload": {"ms": 60000, "step_ms": 50}})));
    d.wait_status(&running, "running", LONG);
    let out = d.cli(&["cancel", &running]);
    assert!(out.status.success(), "{out:?}");
    let j = d.wait_status(&running, "cancelled", Duration::from_secs(15));
    assert!(j["finished_at"].is_string());
    // Cancelling a finished job is a conflict; an unknown one is 404.
    let done = d.post(&format!("/api/v1/jobs/{running}/cancel"), &json!({}));
    assert_eq!(done.status, 200, "cancelled already: idempotent");
    assert_eq!(d.post("/api/v1/jobs/nope/cancel", &json!({})).status, 404);
}

#[test]
fn a_daemon_on_memory_storage_runs_jobs_end_to_end() {
    let d = Daemon::builder(&["echo", "flaky"])
        .storage("memory://")
        .start();
    let job = d.submit(&json!({"type": "echo", "payload": {"in": "memory"}}));
    let done = d.wait_status(&id_of(&job), "completed", Duration::from_secs(30));
    assert_eq!(done["result"], json!({"in": "memory"}));
    let flaky = d.submit(&json!({"type": "flaky", "payload": {"fail_times": 1}}));
    let done = d.wait_status(&id_of(&flaky), "completed", Duration::from_secs(30));
    assert_eq!(done["attempt"], 2, "{done}");
    assert_eq!(d.get("/api/v1/stats").body["backend"], "memory");
}
