//! `spool bench` as a user runs it: every mode finishes its jobs and reports sane figures, on
//! SQLite and on Redis. Small job counts: this checks the tool, it does not measure.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::Value;
use spool_tests::{plugins_src, redis, spool_bin};
use std::process::Command;

fn bench(args: &[&str]) -> Value {
    let out = Command::new(spool_bin())
        .arg("bench")
        .arg("--json")
        .arg("--plugins")
        .arg(plugins_src())
        .args(args)
        .output()
        .expect("run spool bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "spool bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bench printed no JSON ({e}): {stdout}"))
}

fn check(report: &Value, mode: &str, backend: &str, jobs: u64) {
    assert_eq!(report["mode"], mode, "{report}");
    assert_eq!(report["backend"], backend, "{report}");
    assert_eq!(report["jobs"], jobs, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert!(
        report["jobs_per_second"].as_f64().unwrap_or(0.0) > 0.0,
        "{report}"
    );
    let p = &report["enqueue_to_start"];
    if mode == "drain" {
        assert!(p.is_null(), "no latency for a drain: {report}");
        return;
    }
    let (p50, p99) = (p["p50_ms"].as_f64(), p["p99_ms"].as_f64());
    assert!(
        matches!((p50, p99), (Some(a), Some(b)) if a > 0.0 && a <= b),
        "latency percentiles are ordered: {report}"
    );
}

#[test]
fn bench_runs_every_mode_on_sqlite() {
    check(&bench(&["--jobs", "500"]), "burst", "sqlite", 500);
    check(
        &bench(&["--jobs", "500", "--drain"]),
        "drain",
        "sqlite",
        500,
    );
    check(
        &bench(&["--jobs", "50", "--rate", "200"]),
        "rate 200/s",
        "sqlite",
        50,
    );
}

#[test]
fn bench_drains_a_backlog_on_redis() {
    if !redis::require_redis("bench on redis") {
        return;
    }
    let server = redis::Server::start(&[]);
    let url = server.url("bench-e2e");
    check(
        &bench(&["--jobs", "500", "--storage", &url, "--drain"]),
        "drain",
        "redis",
        500,
    );
    check(
        &bench(&["--jobs", "500", "--storage", &url]),
        "burst",
        "redis",
        500,
    );
}

#[test]
fn bench_refuses_drain_on_memory_with_a_reason() {
    let out = Command::new(spool_bin())
        .args([
            "bench",
            "--storage",
            "memory://",
            "--drain",
            "--jobs",
            "10",
            "--plugins",
        ])
        .arg(plugins_src())
        .output()
        .expect("run spool bench");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--drain needs a storage"), "{err}");
}
