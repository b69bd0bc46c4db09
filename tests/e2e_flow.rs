//! End to end: flow control across real daemons. Three `spool` daemons share one
//! `redis-server` the tests start: a rate limit of 50 starts/s holds over every 1 s window, a
//! global concurrency of 3 is never exceeded and a `kill -9`ed daemon's slots come back when
//! its leases expire, pause stops every daemon's starts within a second and resume restarts
//! them, a handler's "rate limited for 2 s" holds the type on every daemon. On SQLite, a
//! plugin manifest's `global_concurrency` reaches storage and is obeyed.
//!
//! Times compared here all come from one clock: Redis's (job times are written by the
//! scripts) or the one machine's.
//!
//! Run: `cargo test -p spool-tests --test e2e_flow` (after `scripts/build-plugins.sh` and
//! `cargo build -p spool-host`).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use spool_tests::redis::{self, Server};
use spool_tests::{Daemon, eventually_blocking, millis, stderr, stdout};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LONG: Duration = Duration::from_secs(180);

fn daemons(url: &str, n: usize, plugins: &[&str], lease: &str) -> Vec<Daemon> {
    (0..n)
        .map(|_| {
            Daemon::builder(plugins)
                .storage(url)
                .args(&["--workers", "4"])
                .env("SPOOL_LEASE", lease)
                .start()
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn cli_ok(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert!(
        out.status.success(),
        "spool {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Submits `jobs` in batches of 1000, round-robin over the daemons.
fn submit_spread(ds: &[Daemon], jobs: &[Value]) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, chunk) in jobs.chunks(1000).enumerate() {
        ids.extend(ds[i % ds.len()].submit_batch(chunk));
    }
    ids
}

fn wait_completed(d: &Daemon, n: u64, limit: Duration) {
    eventually_blocking(&format!("{n} completed jobs"), limit, || {
        let a = d.get("/api/v1/stats");
        assert_eq!(
            a.body["totals"]["failed"].as_u64().unwrap_or(0),
            0,
            "{}",
            a.text
        );
        a.body["totals"]["completed"].as_u64() == Some(n)
    });
}

/// (started_at, finished_at) of every completed job, in ms.
fn run_times(d: &Daemon) -> Vec<(i64, i64)> {
    d.all_jobs("completed")
        .iter()
        .map(|j| {
            (
                millis(&j["started_at"]).expect("started_at"),
                millis(&j["finished_at"]).expect("finished_at"),
            )
        })
        .collect()
}

/// The most intervals open at once.
fn max_overlap(runs: &[(i64, i64)]) -> usize {
    let mut edges: Vec<(i64, i32)> = runs.iter().flat_map(|(s, f)| [(*s, 1), (*f, -1)]).collect();
    // At equal times an end comes before a start: storage counted the slot free then.
    edges.sort();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        most = most.max(open);
    }
    most as usize
}

#[test]
fn a_rate_limit_holds_over_every_second_across_three_daemons() {
    if !redis::require_redis("flow e2e: rate limit") {
        return;
    }
    let server = Server::start(&[]);
    let ds = daemons(&server.url("flow-rate"), 3, &["echo"], "30s");
    let out = cli_ok(&ds[0], &["limits", "set", "echo", "--rate", "50/1s"]);
    assert!(out.contains("rate limit 50/1s"), "{out}");
    // Every daemon reads the same limit from storage.
    let types = ds[2].get("/api/v1/types");
    assert_eq!(
        types.body["types"]["echo"]["rate_limit"], "50/1s",
        "{}",
        types.text
    );
    let listing = cli_ok(&ds[1], &["limits"]);
    assert!(listing.contains("50/1s (override)"), "{listing}");

    let jobs = vec![json!({"type": "echo", "payload": {"n": 1}}); 2000];
    let t0 = Instant::now();
    submit_spread(&ds, &jobs);
    wait_completed(&ds[0], 2000, LONG);
    let took = t0.elapsed();
    let mut starts: Vec<i64> = run_times(&ds[1]).iter().map(|(s, _)| *s).collect();
    starts.sort();
    assert_eq!(starts.len(), 2000);
    // No 1 s window holds more than the limit (10% allowed by the issue; the sliding log
    // should give exactly 50).
    let count_in = |from: i64| {
        starts
            .iter()
            .filter(|s| **s >= from && **s < from + 1000)
            .count()
    };
    let most = starts.iter().map(|s| count_in(*s)).max().unwrap_or(0);
    assert!(most <= 55, "a 1 s window held {most} starts (limit 50/s)");
    // And once started, every full window inside the run is within 10% of the limit.
    let (first, last) = (starts[0], starts[starts.len() - 1]);
    let mut fewest = usize::MAX;
    let mut from = first + 1000;
    while from + 2000 <= last {
        fewest = fewest.min(count_in(from));
        from += 100;
    }
    eprintln!(
        "2000 jobs at 50/s over three daemons: {took:?}, busiest 1 s window {most}, quietest {fewest}"
    );
    assert!(
        fewest >= 45,
        "a 1 s window inside the run held only {fewest} starts"
    );
}

#[test]
fn global_concurrency_holds_across_daemons_and_a_killed_daemons_slots_come_back() {
    if !redis::require_redis("flow e2e: global concurrency") {
        return;
    }
    let server = Server::start(&[]);
    let url = server.url("flow-cap");
    let mut first = daemons(&url, 1, &["slow"], "2s");
    cli_ok(&first[0], &["limits", "set", "slow", "--concurrency", "3"]);

    // A daemon takes all three slots with long jobs, then dies.
    let long = vec![json!({"type": "slow", "payload": {"ms": 3000, "step_ms": 100}}); 3];
    let long_ids = first[0].submit_batch(&long);
    eventually_blocking("three running jobs", LONG, || {
        first[0].count("running") == 3
    });
    let ds = daemons(&url, 2, &["slow"], "2s");
    let short = vec![json!({"type": "slow", "payload": {"ms": 200, "step_ms": 50}}); 24];
    let short_ids = submit_spread(&ds, &short);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ds[0].count("running"), 3, "the cap holds the others back");
    let killed_at = now_ms();
    first[0].kill9();
    drop(first.pop());

    wait_completed(&ds[0], 27, LONG);
    for id in &long_ids {
        let j = ds[1].job(id);
        assert_eq!(j["attempt"], 2, "the killed daemon's job ran again: {j}");
    }
    let starts: Vec<i64> = short_ids
        .iter()
        .map(|id| millis(&ds[0].job(id)["started_at"]).expect("started_at"))
        .collect();
    let earliest = starts.iter().min().copied().unwrap_or(0);
    assert!(
        earliest >= killed_at + 500,
        "a short job started {} ms after the kill, before the dead daemon's leases expired",
        earliest - killed_at
    );
    let runs = run_times(&ds[1]);
    let most = max_overlap(&runs);
    eprintln!(
        "global concurrency 3: at most {most} running at once over {} jobs",
        runs.len()
    );
    assert_eq!(
        most, 3,
        "never more than 3 at once, and the cap was reached"
    );
}

#[test]
fn pause_stops_every_daemon_within_a_second_and_resume_restarts_them() {
    if !redis::require_redis("flow e2e: pause") {
        return;
    }
    let server = Server::start(&[]);
    let ds = daemons(&server.url("flow-pause"), 3, &["slow"], "30s");
    let jobs = vec![json!({"type": "slow", "payload": {"ms": 100, "step_ms": 50}}); 600];
    submit_spread(&ds, &jobs);
    eventually_blocking("some jobs to complete", LONG, || {
        ds[0].count("completed") >= 30
    });
    let paused_at = now_ms();
    let out = cli_ok(&ds[0], &["pause", "slow"]);
    assert!(out.contains("paused slow"), "{out}");
    std::thread::sleep(Duration::from_millis(2500));
    let pending = ds[1].count("pending");
    assert!(
        pending > 0,
        "the pause came too late to test: every job already started"
    );
    let latest = ds[1]
        .all_jobs("completed")
        .iter()
        .chain(ds[1].all_jobs("running").iter())
        .map(|j| millis(&j["started_at"]).expect("started_at"))
        .max()
        .unwrap_or(0);
    assert!(
        latest <= paused_at + 1000,
        "a job started {} ms after the pause",
        latest - paused_at
    );
    // Enqueues are still accepted; the pause shows in stats and health on every daemon.
    ds[2].submit(&json!({"type": "slow", "payload": {"ms": 1}}));
    let health = ds[2].get("/health");
    assert_eq!(
        health.body["paused_types"],
        json!(["slow"]),
        "{}",
        health.text
    );
    assert_eq!(
        health.body["consuming"]["stalled"], false,
        "{}",
        health.text
    );
    let stats = cli_ok(&ds[1], &["stats"]);
    assert!(stats.contains("paused"), "{stats}");
    let a = ds[2].post_raw("/api/v1/types/slow/resume", "");
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["paused"], false);
    wait_completed(&ds[0], 601, LONG);
}

#[test]
fn a_handlers_rate_limit_holds_the_type_on_every_daemon() {
    if !redis::require_redis("flow e2e: handler rate limit") {
        return;
    }
    let server = Server::start(&[]);
    let ds = daemons(&server.url("flow-hold"), 3, &["throttled"], "30s");
    let x = ds[0].submit(&json!({"type": "throttled", "payload": {"hold_ms": 2000}}));
    let x_id = x["id"].as_str().expect("id").to_string();
    eventually_blocking("the type to be held", LONG, || {
        ds[1].get("/api/v1/types").body["types"]["throttled"]["held_until"].is_string()
    });
    let types = ds[2].get("/api/v1/types");
    let held_until = millis(&types.body["types"]["throttled"]["held_until"]).expect("held_until");
    let others = submit_spread(&ds, &vec![json!({"type": "throttled", "payload": {}}); 6]);
    wait_completed(&ds[0], 7, LONG);
    for id in &others {
        let started = millis(&ds[1].job(id)["started_at"]).expect("started_at");
        assert!(
            started >= held_until - 20,
            "job {id} started {} ms before the hold ended",
            held_until - started
        );
    }
    let x = ds[2].job(&x_id);
    assert_eq!(
        x["attempt"], 1,
        "the rate-limited run spent no attempt: {x}"
    );
    assert_eq!(x["result"]["runs"], 2, "{x}");
}

#[test]
fn a_manifests_global_concurrency_reaches_storage_on_sqlite() {
    let mut d = Daemon::builder(&["slow"]).args(&["--workers", "4"]).start();
    std::fs::write(d.plugins.join("slow.toml"), "global_concurrency = 2\n").expect("manifest");
    eventually_blocking("the manifest's limit in storage", LONG, || {
        d.get("/api/v1/types").body["types"]["slow"]["global_concurrency"] == 2
    });
    let listing = cli_ok(&d, &["limits"]);
    assert!(listing.contains("2 (manifest)"), "{listing}");
    d.submit_batch(&vec![
        json!({"type": "slow", "payload": {"ms": 200, "step_ms": 50}});
        8
    ]);
    wait_completed(&d, 8, LONG);
    assert_eq!(max_overlap(&run_times(&d)), 2);
    // A run-time override wins; clearing it brings the manifest's value back.
    let out = cli_ok(&d, &["limits", "set", "slow", "--concurrency", "3"]);
    assert!(out.contains("global concurrency 3"), "{out}");
    let out = cli_ok(&d, &["limits", "clear", "slow"]);
    assert!(out.contains("global concurrency 2"), "{out}");
    let bad = d.cli(&["limits", "set", "slow", "--rate", "fast"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let a = d.put("/api/v1/types/slow", &json!({"global_concurrency": 0}));
    assert_eq!(a.status, 400, "{}", a.text);
    let a = d.put(
        "/api/v1/types/slow",
        &json!({"paused": true, "rate_limit": "10/1s"}),
    );
    assert_eq!(a.status, 200, "{}", a.text);
    let got = d.get("/api/v1/types/slow");
    assert_eq!(got.body["paused"], true, "{}", got.text);
    assert_eq!(got.body["rate_limit"], "10/1s", "{}", got.text);
    assert_eq!(got.body["global_concurrency"], 2, "{}", got.text);
    // The state is in the file: a restarted daemon keeps the type paused.
    d.kill9();
    d.restart();
    let got = d.get("/api/v1/types/slow");
    assert_eq!(got.body["paused"], true, "{}", got.text);
    let job = d.submit(&json!({"type": "slow", "payload": {"ms": 1}}));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.job(job["id"].as_str().unwrap_or(""))["status"], "pending");
}

/// The tick a schedule's job was made for: its id is a UUIDv7 of the tick time.
fn tick_of(id: &str) -> i64 {
    i64::from_str_radix(&id.replace('-', "")[..12], 16).expect("a UUIDv7 id")
}

#[test]
fn a_cron_schedule_fires_each_tick_once_across_three_daemons() {
    if !redis::require_redis("flow e2e: cron") {
        return;
    }
    let server = Server::start(&[]);
    let ds = daemons(&server.url("flow-cron"), 3, &["echo"], "30s");
    let out = cli_ok(
        &ds[0],
        &[
            "schedules",
            "add",
            "every-second",
            "--cron",
            "* * * * * *",
            "--type",
            "echo",
            "--payload",
            r#"{"from":"cron"}"#,
        ],
    );
    assert!(out.contains("every-second"), "{out}");
    let added = Instant::now();
    // Every daemon lists it with its next three fire times.
    let listed = ds[2].get("/api/v1/schedules");
    let next = listed.body["schedules"][0]["next"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(next.len(), 3, "{}", listed.text);
    std::thread::sleep(Duration::from_secs(20).saturating_sub(added.elapsed()));
    cli_ok(&ds[1], &["schedules", "remove", "every-second"]);
    let ran = added.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    let ids: Vec<String> = ["pending", "running", "completed"]
        .iter()
        .flat_map(|s| ds[0].all_jobs(s))
        .map(|j| j["id"].as_str().unwrap_or("").to_string())
        .collect();
    let mut ticks: Vec<i64> = ids.iter().map(|id| tick_of(id)).collect();
    ticks.sort();
    let before = ticks.len();
    ticks.dedup();
    assert_eq!(ticks.len(), before, "no tick fired twice");
    let expected = ran.as_secs() as usize;
    eprintln!(
        "cron every second for {ran:?} on three daemons: {} jobs",
        ticks.len()
    );
    assert!(
        ticks.len() + 1 >= expected && ticks.len() <= expected + 1,
        "{} jobs for {ran:?} of ticks every second",
        ticks.len()
    );
    for w in ticks.windows(2) {
        assert_eq!(w[1] - w[0], 1000, "ticks are one second apart: {ticks:?}");
    }
    let job = ds[1].job(&ids[0]);
    assert_eq!(job["payload"], json!({"from": "cron"}), "{job}");
    let bad = ds[0].cli(&[
        "schedules",
        "add",
        "bad",
        "--cron",
        "* * *",
        "--type",
        "echo",
    ]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("has 3 fields"), "{}", stderr(&bad));
}

#[test]
fn debounce_and_unique_windows_through_the_cli() {
    let d = Daemon::start(&["echo"]);
    let id_of_out = |out: &std::process::Output| -> String {
        let v: Value = serde_json::from_str(&stdout(out)).expect("--json output");
        v["id"].as_str().expect("id").to_string()
    };
    // A burst of debounced submits: one job, which runs once with the last payload.
    let mut ids = Vec::new();
    for n in 1..=3 {
        let payload = format!("{{\"n\": {n}}}");
        let out = d.cli(&[
            "--json",
            "submit",
            "echo",
            &payload,
            "--unique-key",
            "burst",
            "--debounce",
            "1s",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        ids.push(id_of_out(&out));
    }
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one job for the burst: {ids:?}"
    );
    let job = d.wait_status(&ids[0], "completed", LONG);
    assert_eq!(job["result"], json!({"n": 3}), "{job}");
    assert_eq!(job["attempt"], 1);
    // A unique window: a submit after the job finished returns it, for the window.
    let out = d.cli(&[
        "--json",
        "submit",
        "echo",
        "{}",
        "--unique-key",
        "hourly",
        "--unique-for",
        "1h",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = id_of_out(&out);
    d.wait_status(&first, "completed", LONG);
    let again = d.post(
        "/api/v1/jobs",
        &json!({"type": "echo", "payload": {}, "unique_key": "hourly"}),
    );
    assert_eq!(again.status, 200, "an existing job: {}", again.text);
    assert_eq!(again.body["id"], first.as_str(), "{}", again.text);
    assert_eq!(again.body["status"], "completed");
    let bad = d.post(
        "/api/v1/jobs",
        &json!({"type": "echo", "payload": {}, "debounce": "5s"}),
    );
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.text.contains("needs a `unique_key`"), "{}", bad.text);
}

#[test]
fn a_plugins_manifest_schedule_is_stored_fires_and_goes_with_it() {
    let d = Daemon::builder(&["echo"]).start();
    let manifest = "[[schedules]]\nname = \"echo-tick\"\ncron = \"* * * * * *\"\n\
                    payload = { from = \"manifest\" }\n";
    std::fs::write(d.plugins.join("echo.toml"), manifest).expect("manifest");
    eventually_blocking("the manifest's schedule to be stored", LONG, || {
        d.get("/api/v1/schedules").body["schedules"][0]["name"] == "echo-tick"
    });
    let listed = d.get("/api/v1/schedules");
    let s = &listed.body["schedules"][0];
    assert_eq!(
        (s["plugin"].as_str(), s["type"].as_str()),
        (Some("echo"), Some("echo")),
        "{s}"
    );
    eventually_blocking("a job from the schedule", LONG, || {
        d.count("completed") >= 1
    });
    let job = &d.all_jobs("completed")[0];
    assert_eq!(job["payload"], json!({"from": "manifest"}), "{job}");
    // The manifest drops it: the schedule goes.
    std::fs::write(d.plugins.join("echo.toml"), "timeout = \"10s\"\n").expect("manifest");
    eventually_blocking("the schedule to be removed", LONG, || {
        d.get("/api/v1/schedules").body["schedules"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    });
}
