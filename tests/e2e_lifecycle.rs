//! End to end: the daemon's life under load: `kill -9` loses nothing, SIGTERM drains within
//! the grace period and leaves no job `running`, a plugin replaced through the folder while
//! jobs run fails none of them, a plugin that reuses instances keeps one until a crash or a
//! reload.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use spool_tests::{Daemon, eventually_blocking, install_plugins};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);

fn submit_many(d: &Daemon, n: usize, job: Value) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in 0..n.div_ceil(500) {
        let count = (n - chunk * 500).min(500);
        ids.extend(d.submit_batch(&vec![job.clone(); count]));
    }
    ids
}

#[test]
fn kill_9_under_load_then_restart_completes_every_job() {
    let mut d = Daemon::builder(&["slow"]).args(&["--workers", "8"]).start();
    let ids = submit_many(
        &d,
        2000,
        json!({"type": "slow", "payload": {"ms": 10, "step_ms": 10}}),
    );
    assert_eq!(ids.len(), 2000);
    eventually_blocking("some jobs to complete", LONG, || {
        d.count("completed") >= 100
    });
    let running_before = d.count("running");
    d.kill9();
    d.restart();
    // Jobs that were running when the daemon died come back when their 5 s leases expire.
    eventually_blocking("all 2000 jobs to complete after the restart", LONG, || {
        d.count("completed") == 2000
    });
    for status in [
        "pending",
        "running",
        "retrying",
        "failed",
        "cancelled",
        "scheduled",
    ] {
        assert_eq!(d.count(status), 0, "no job may be {status}");
    }
    // The jobs the kill interrupted ran again (attempt 2); every job is there, once.
    let done = d.all_jobs("completed");
    assert_eq!(done.len(), 2000);
    let twice = done.iter().filter(|j| j["attempt"] == 2).count();
    assert!(
        twice >= 1,
        "the kill should have interrupted running jobs ({running_before} were running)"
    );
    assert!(
        done.iter().all(|j| j["attempt"].as_u64() <= Some(2)),
        "no job may run more than twice"
    );
}

#[test]
fn sigterm_under_load_drains_within_the_grace_period_and_leaves_nothing_running() {
    let mut d = Daemon::builder(&["slow"])
        .args(&["--workers", "4", "--shutdown-grace", "2s"])
        .start();
    // Long jobs outlive the grace period and must be released; short ones finish.
    let long = submit_many(
        &d,
        4,
        json!({"type": "slow", "payload": {"ms": 30000, "step_ms": 100}}),
    );
    let short = submit_many(&d, 20, json!({"type": "slow", "payload": {"ms": 20}}));
    eventually_blocking("the long jobs to run", LONG, || d.count("running") >= 4);
    let (status, took) = d.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}\n{}", d.logs());
    assert!(
        took < Duration::from_secs(6),
        "took {took:?} with a 2 s grace period"
    );
    // Restart without the plugin, so nothing is claimed: what SIGTERM left is visible.
    std::fs::remove_file(d.plugins.join("slow.wasm")).unwrap();
    d.restart();
    assert_eq!(d.count("running"), 0, "SIGTERM must leave no job running");
    for id in &long {
        let j = d.job(id);
        assert_eq!(
            j["status"], "pending",
            "a released job is ready at once: {j}"
        );
        assert_eq!(j["attempt"], 0, "a released attempt is not counted: {j}");
    }
    let total = long.len() + short.len();
    assert_eq!(d.count("pending") + d.count("completed"), total as u64);
}

#[test]
fn a_plugin_replaced_through_the_folder_under_load_fails_no_job() {
    let d = Daemon::builder(&["version", "echo"])
        .args(&["--workers", "4"])
        .start();
    let mut ids = submit_many(&d, 300, json!({"type": "version"}));
    // Deploy v2: its manifest sets the version the plugin reports (written then renamed in,
    // as a deploy tool would).
    let tmp = d.plugins.join(".version.toml.tmp");
    std::fs::write(&tmp, "[config]\nversion = \"v2\"\n").unwrap();
    std::fs::rename(&tmp, d.plugins.join("version.toml")).unwrap();
    // And swap the wasm of another plugin in place while its jobs run.
    ids.extend(submit_many(
        &d,
        200,
        json!({"type": "echo", "payload": {"x": 1}}),
    ));
    install_plugins(&d.plugins, &["echo"]);
    let mut seen_v2 = false;
    let deadline = std::time::Instant::now() + LONG;
    while !seen_v2 {
        assert!(
            std::time::Instant::now() < deadline,
            "v2 never served a job"
        );
        let more = submit_many(&d, 50, json!({"type": "version"}));
        let last = more.last().unwrap().clone();
        ids.extend(more);
        let j = d.wait_status(&last, "completed", LONG);
        seen_v2 = j["result"]["version"] == "v2";
    }
    eventually_blocking("every job to complete", LONG, || {
        d.count("completed") == ids.len() as u64
    });
    assert_eq!(d.count("failed"), 0);
    assert_eq!(d.count("retrying"), 0);
    let v = d.get("/api/v1/plugins").body;
    assert!(
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "loaded"),
        "{v}"
    );
}

#[test]
fn health_is_unhealthy_when_the_sqlite_file_is_damaged_under_the_daemon() {
    let d = Daemon::start(&["echo"]);
    let pad = "x".repeat(300);
    let jobs: Vec<Value> = (0..300)
        .map(|i| json!({"type": "nobody-handles-this", "payload": {"i": i, "pad": pad}}))
        .collect();
    let r = d.post("/api/v1/jobs/batch", &json!({ "jobs": jobs }));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(d.get("/health").body["status"], "healthy");
    // Overwrite the data pages (not the header: pings still work) while the daemon runs.
    let db = d.dir.path().join("spool.db");
    let size = || std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    // The jobs reach the main file at the background WAL checkpoint.
    eventually_blocking(
        "a checkpoint into the db file",
        Duration::from_secs(20),
        || size() > 8 * 4096,
    );
    let size = size();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&db)
            .expect("open the db file");
        f.seek(SeekFrom::Start(3 * 4096)).expect("seek");
        let junk: Vec<u8> = (0..size - 4 * 4096).map(|i| (i * 7 % 251) as u8).collect();
        f.write_all(&junk).expect("overwrite");
    }
    eventually_blocking("health to see the damage", Duration::from_secs(10), || {
        let h = d.get("/health");
        h.status == 503 && h.body["status"] == "unhealthy"
    });
    let h = d.get("/health");
    let reasons = h.body["reasons"].to_string();
    assert!(
        reasons.contains("cannot be read") && reasons.contains("damaged"),
        "{}",
        h.text
    );
}

/// The plugin's version the daemon serves now.
fn served_version(d: &Daemon, name: &str) -> String {
    d.get("/api/v1/plugins").body["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["version"].as_str())
        .unwrap_or("")
        .to_string()
}

/// Reloads `SPOOL_RELOADS` times (default 10; the reliability run used 50), each a new
/// manifest renamed into the folder while jobs keep arriving: no job fails.
#[test]
fn many_hot_reloads_under_load_fail_no_job() {
    let reloads: usize = std::env::var("SPOOL_RELOADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(10);
    let d = Daemon::builder(&["version"])
        .args(&["--workers", "4"])
        .start();
    let mut ids = Vec::new();
    for i in 0..reloads {
        let before = served_version(&d, "version");
        let tmp = d.plugins.join(".version.toml.tmp");
        std::fs::write(&tmp, format!("[config]\nversion = \"v{i}\"\n")).unwrap();
        std::fs::rename(&tmp, d.plugins.join("version.toml")).unwrap();
        ids.extend(submit_many(&d, 40, json!({"type": "version"})));
        eventually_blocking(&format!("reload {i}"), LONG, || {
            served_version(&d, "version") != before
        });
    }
    eventually_blocking("every job to complete", LONG, || {
        d.count("completed") == ids.len() as u64
    });
    assert_eq!(d.count("failed"), 0);
    assert_eq!(d.count("retrying"), 0);
    eprintln!(
        "{reloads} hot reloads under load: {} jobs, all completed",
        ids.len()
    );
}

/// `served` of one `reuse-probe` job run to its end (how many jobs its instance ran).
fn probe_once(d: &Daemon, payload: Value) -> Value {
    let id = spool_tests::id_of(
        &d.submit(&json!({"type": "reuse-probe", "payload": payload, "max_attempts": 1})),
    );
    d.wait_job(&id, LONG, |j| {
        j["status"] == "completed" || j["status"] == "failed"
    })
}

/// A plugin whose manifest says `instances = "reuse"`: one daemon worker runs its jobs on one
/// kept instance (its global counter goes on), a crash and a reload both start a fresh one,
/// and the plugins API says how its instances are made.
#[test]
fn a_reusing_plugin_keeps_its_instance_until_a_crash_or_a_reload() {
    let d = Daemon::builder(&["reuse-probe"])
        .args(&["--workers", "1"])
        .start();
    let plugin = d.get("/api/v1/plugins").body["plugins"][0].clone();
    assert_eq!(plugin["manifest"]["instances"], "reuse", "{plugin}");
    for want in 1..=3 {
        let j = probe_once(&d, json!({}));
        assert_eq!(j["result"]["served"], want, "{j}");
        assert_eq!(
            j["logs"],
            json!([format!("[info] job {want} of this instance")]),
            "each job keeps its own log lines only: {j}"
        );
    }
    // The one kept instance shows in /metrics while no job runs; a crash discards it.
    let idle = |n: u32| {
        let line = format!("spool_instances_idle {n}\n");
        eventually_blocking(&format!("/metrics to show {n} idle"), LONG, || {
            let m = d.get("/metrics").text;
            m.contains(&line) && m.contains("spool_instances_running 0\n")
        });
    };
    idle(1);
    // Three jobs, one instance made: only a new instance counts as an instantiation.
    let metrics = d.get("/metrics").text;
    assert!(
        metrics.contains("spool_instantiation_seconds_count{plugin=\"reuse-probe\"} 1\n"),
        "{metrics}"
    );
    let crashed = probe_once(&d, json!({"panic": true}));
    assert_eq!(crashed["status"], "failed", "{crashed}");
    idle(0);
    assert!(
        crashed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("asked to panic on job 4"),
        "{crashed}"
    );
    assert_eq!(probe_once(&d, json!({}))["result"]["served"], 1);
    assert_eq!(probe_once(&d, json!({}))["result"]["served"], 2);

    // A new version (here a new manifest) starts from a fresh instance.
    let before = served_version(&d, "reuse-probe");
    let tmp = d.plugins.join(".reuse-probe.toml.tmp");
    std::fs::write(&tmp, "instances = \"reuse\"\ntimeout = \"3s\"\n").unwrap();
    std::fs::rename(&tmp, d.plugins.join("reuse-probe.toml")).unwrap();
    eventually_blocking("the new version to load", LONG, || {
        served_version(&d, "reuse-probe") != before
    });
    assert_eq!(probe_once(&d, json!({}))["result"]["served"], 1);
    assert_eq!(probe_once(&d, json!({}))["result"]["served"], 2);
}
