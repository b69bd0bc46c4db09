//! The runtime against the real plugins (built by scripts/build-plugins.sh): results and
//! errors, every host import, and the limits: a loop is stopped at its timeout, a memory hog
//! gets a clean out-of-memory error, a panic's message reaches the job's error, and the host
//! survives all of them and keeps running jobs.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod runtime_support;

use runtime_support::*;
use spool_host::plugins::{LoadFailure, LoadedPlugin};
use spool_host::runtime::{
    CompileError, CompileSource, CrashKind, Instances, NoServices, Outcome, Runtime, RuntimeConfig,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn load(rt: &Runtime, name: &str) -> Arc<spool_host::plugins::LoadedPlugin> {
    LoadedPlugin::load(rt, name, &plugin_path(name), manifest_of(name))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn success(outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Success(raw) => serde_json::from_str(raw.get()).unwrap(),
        other => panic!("expected success, got {other:?}"),
    }
}

fn crash(outcome: &Outcome) -> (CrashKind, &str) {
    match outcome {
        Outcome::Crashed { error, kind } => (*kind, error.as_str()),
        other => panic!("expected a crash, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_returns_its_payload_unchanged() {
    let rt = runtime();
    let echo = load(&rt, "echo").await;
    assert_eq!(echo.types, vec!["echo"]);
    assert_eq!(echo.version.len(), 12);
    let ex = rt
        .execute(
            &echo.code,
            input("echo", r#"{"a": [1, 2]}"#),
            Arc::new(NoServices),
        )
        .await;
    match &ex.outcome {
        Outcome::Success(raw) => assert_eq!(raw.get(), r#"{"a": [1, 2]}"#),
        other => panic!("{other:?}"),
    }
    assert!(ex.peak_memory > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_is_stopped_at_its_manifest_timeout() {
    let rt = runtime();
    let looper = load(&rt, "loop-forever").await;
    assert_eq!(looper.manifest.timeout, Some(Duration::from_secs(2)));
    let start = Instant::now();
    let ex = rt
        .execute(
            &looper.code,
            input("loop-forever", "{}"),
            Arc::new(NoServices),
        )
        .await;
    let took = start.elapsed();
    let (kind, error) = crash(&ex.outcome);
    assert_eq!(kind, CrashKind::Timeout);
    assert_eq!(error, "job timed out after 2s");
    assert!(took >= Duration::from_secs(2), "stopped early: {took:?}");
    assert!(took < Duration::from_millis(2300), "stopped late: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_timeout_overrides_the_manifest() {
    let rt = runtime();
    let looper = load(&rt, "loop-forever").await;
    let mut job = input("loop-forever", "{}");
    job.timeout = Some(Duration::from_millis(300));
    let start = Instant::now();
    let ex = rt.execute(&looper.code, job, Arc::new(NoServices)).await;
    assert_eq!(
        crash(&ex.outcome),
        (CrashKind::Timeout, "job timed out after 300ms")
    );
    assert!(
        start.elapsed() < Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_sleeping_in_a_host_call_is_stopped_at_its_timeout() {
    let rt = runtime();
    let slow = load(&rt, "slow").await;
    let mut job = input("slow", r#"{"ms": 60000, "step_ms": 60000}"#);
    job.timeout = Some(Duration::from_millis(300));
    let start = Instant::now();
    let ex = rt.execute(&slow.code, job, Arc::new(NoServices)).await;
    assert_eq!(crash(&ex.outcome).0, CrashKind::Timeout);
    assert!(
        start.elapsed() < Duration::from_millis(700),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_gets_a_clean_out_of_memory_error() {
    let rt = runtime();
    let hog = load(&rt, "memory-hog").await;
    let ex = rt
        .execute(&hog.code, input("memory-hog", "{}"), Arc::new(NoServices))
        .await;
    let (kind, error) = crash(&ex.outcome);
    assert_eq!(kind, CrashKind::OutOfMemory, "{error}");
    assert!(
        error.starts_with("out of memory: the plugin asked for "),
        "{error}"
    );
    assert!(error.ends_with(" MiB, its limit is 64 MiB"), "{error}");
    assert!(ex.peak_memory <= 64 << 20);

    // A guest that handles the failure itself and asks for a retry is still out of memory.
    let ex = rt
        .execute(
            &hog.code,
            input("memory-hog", r#"{"graceful": true}"#),
            Arc::new(NoServices),
        )
        .await;
    let (kind, error) = crash(&ex.outcome);
    assert_eq!(kind, CrashKind::OutOfMemory, "{error}");

    // Under the cap it succeeds.
    let ex = rt
        .execute(
            &hog.code,
            input("memory-hog", r#"{"max_mib": 8}"#),
            Arc::new(NoServices),
        )
        .await;
    assert_eq!(success(&ex.outcome)["allocated_mib"], 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_message_reaches_the_error() {
    let rt = runtime();
    let panic = load(&rt, "panic").await;
    let ex = rt
        .execute(
            &panic.code,
            input("panic", r#"{"msg": "kaboom 42"}"#),
            Arc::new(NoServices),
        )
        .await;
    let (kind, error) = crash(&ex.outcome);
    assert_eq!(kind, CrashKind::Trap);
    assert!(error.contains("fixture panic: kaboom 42"), "{error}");
    assert!(error.contains("wasm trap"), "{error}");
    assert!(!error.contains('\n'), "{error}");
    assert!(!error.contains("RUST_BACKTRACE"), "{error}");
    assert!(
        ex.logs
            .iter()
            .any(|l| l.starts_with("[stderr]") && l.contains("kaboom 42")),
        "{:?}",
        ex.logs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_survives_every_bad_plugin_and_then_runs_echo() {
    let rt = runtime();
    let mut bad = Vec::new();
    for (name, payload) in [
        ("loop-forever", "{}"),
        ("memory-hog", "{}"),
        ("panic", "{}"),
    ] {
        let p = load(&rt, name).await;
        let mut job = input(name, payload);
        job.timeout = Some(Duration::from_millis(500));
        bad.push(tokio::spawn({
            let rt = rt.clone();
            async move { rt.execute(&p.code, job, Arc::new(NoServices)).await }
        }));
    }
    for handle in bad {
        let ex = handle.await.expect("the runtime never panics");
        assert!(
            matches!(ex.outcome, Outcome::Crashed { .. }),
            "{:?}",
            ex.outcome
        );
    }
    let echo = load(&rt, "echo").await;
    for i in 0..20 {
        let payload = format!("{{\"i\":{i}}}");
        let ex = rt
            .execute(&echo.code, input("echo", &payload), Arc::new(NoServices))
            .await;
        assert_eq!(success(&ex.outcome)["i"], i);
    }
    assert_eq!(rt.instances_in_use(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_jobs_keep_running_while_a_loop_spins() {
    let rt = runtime();
    let looper = load(&rt, "loop-forever").await;
    let echo = load(&rt, "echo").await;
    let spinning = tokio::spawn({
        let rt = rt.clone();
        async move {
            rt.execute(
                &looper.code,
                input("loop-forever", "{}"),
                Arc::new(NoServices),
            )
            .await
        }
    });
    let start = Instant::now();
    for _ in 0..200 {
        let ex = rt
            .execute(&echo.code, input("echo", "1"), Arc::new(NoServices))
            .await;
        assert!(matches!(ex.outcome, Outcome::Success(_)));
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "echo starved: {:?}",
        start.elapsed()
    );
    assert!(!spinning.is_finished(), "the loop should still be running");
    spinning.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_fail_errors_are_passed_on() {
    let rt = runtime();
    let flaky = load(&rt, "flaky").await;
    let ex = rt
        .execute(
            &flaky.code,
            input("flaky", r#"{"fail_times": 1, "retry_after_ms": 250}"#),
            Arc::new(NoServices),
        )
        .await;
    match ex.outcome {
        Outcome::Retry { after, .. } => assert_eq!(after, Some(Duration::from_millis(250))),
        other => panic!("{other:?}"),
    }
    let mut second = input("flaky", r#"{"fail_times": 1}"#);
    second.attempt = 2;
    let ex = rt.execute(&flaky.code, second, Arc::new(NoServices)).await;
    assert_eq!(success(&ex.outcome)["attempt"], 2);

    let always = load(&rt, "always-retry").await;
    let ex = rt
        .execute(
            &always.code,
            input("always-retry", "{}"),
            Arc::new(NoServices),
        )
        .await;
    assert!(
        matches!(ex.outcome, Outcome::Retry { .. }),
        "{:?}",
        ex.outcome
    );

    let fail = load(&rt, "fail-permanent").await;
    let ex = rt
        .execute(
            &fail.code,
            input("fail-permanent", r#"{"msg": "bad input"}"#),
            Arc::new(NoServices),
        )
        .await;
    match ex.outcome {
        Outcome::Fail { error } => assert!(error.contains("bad input"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_imports_reach_the_job_services() {
    let rt = runtime();
    let services = TestServices::new();

    let cache = load(&rt, "cache-user").await;
    let first = rt
        .execute(
            &cache.code,
            input("cache-user", r#"{"key": "k"}"#),
            services.clone(),
        )
        .await;
    assert_eq!(success(&first.outcome)["count"], 1);
    let second = rt
        .execute(
            &cache.code,
            input("cache-user", r#"{"key": "k"}"#),
            services.clone(),
        )
        .await;
    let second = success(&second.outcome);
    assert_eq!(second["count"], 2);
    assert_eq!(second["previous"], "seen 1 times");

    let config = load(&rt, "config-echo").await;
    let ex = rt
        .execute(&config.code, input("config-echo", "{}"), services.clone())
        .await;
    let v = success(&ex.outcome);
    assert_eq!(v["greeting"], "hello from config-echo.toml");
    assert_eq!(v["answer"], "42");

    let slow = load(&rt, "slow").await;
    let ex = rt
        .execute(
            &slow.code,
            input("slow", r#"{"ms": 40, "step_ms": 10}"#),
            services.clone(),
        )
        .await;
    assert!(
        matches!(ex.outcome, Outcome::Success(_)),
        "{:?}",
        ex.outcome
    );
    assert!(
        !services.progress.lock().unwrap().is_empty(),
        "slow reports progress"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followups_are_collected_with_ids() {
    let rt = runtime();
    let followup = load(&rt, "followup").await;
    let ex = rt
        .execute(
            &followup.code,
            input(
                "followup",
                r#"{"type": "echo", "payload": {"x": 1}, "priority": 2}"#,
            ),
            Arc::new(NoServices),
        )
        .await;
    let v = success(&ex.outcome);
    assert_eq!(ex.followups.len(), 1);
    let f = &ex.followups[0];
    assert_eq!(v["followup_id"], f.id.as_str());
    assert_eq!(f.job_type, "echo");
    assert_eq!(f.priority, 2);
    assert_eq!(f.payload.get(), r#"{"x":1}"#);

    // A bad priority is refused by the host; the plugin sees the error.
    let ex = rt
        .execute(
            &followup.code,
            input("followup", r#"{"priority": 11}"#),
            Arc::new(NoServices),
        )
        .await;
    assert!(ex.followups.is_empty());
    let error = ex.outcome.error().unwrap_or_default().to_string();
    assert!(error.contains("invalid priority"), "{:?}", ex.outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_stops() {
    let rt = runtime();
    let slow = load(&rt, "slow").await;
    let services = TestServices::new();
    services.cancel();
    let ex = rt
        .execute(
            &slow.code,
            input("slow", r#"{"ms": 10000, "step_ms": 20}"#),
            services,
        )
        .await;
    // `slow` notices cancelled() and fails by itself.
    assert!(
        matches!(ex.outcome, Outcome::Fail { .. }),
        "{:?}",
        ex.outcome
    );
    assert!(ex.duration < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_that_ignores_it_is_stopped_after_the_grace_period() {
    let rt = Runtime::new(RuntimeConfig {
        max_instances: 8,
        cancel_grace: Duration::from_millis(200),
        trace_guest_logs: false,
        ..Default::default()
    })
    .unwrap();
    // Spinning in wasm: the epoch callback stops it.
    let looper = load(&rt, "loop-forever").await;
    let services = TestServices::new();
    services.cancel();
    let start = Instant::now();
    let ex = rt
        .execute(&looper.code, input("loop-forever", "{}"), services)
        .await;
    assert_eq!(
        crash(&ex.outcome),
        (
            CrashKind::Cancelled,
            "job was cancelled and the plugin did not stop within 200ms"
        )
    );
    assert!(
        start.elapsed() < Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );

    // Asleep in a host call, told to stop after it started: the watchdog stops it.
    let slow = load(&rt, "slow").await;
    let services = TestServices::new();
    let start = Instant::now();
    let canceller = tokio::spawn({
        let services = services.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            services.cancel();
        }
    });
    let ex = rt
        .execute(
            &slow.code,
            input("slow", r#"{"ms": 60000, "step_ms": 60000}"#),
            services,
        )
        .await;
    canceller.await.unwrap();
    assert_eq!(crash(&ex.outcome).0, CrashKind::Cancelled);
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_errors_say_what_is_wrong() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, "not wasm at all").unwrap();
    let e = LoadedPlugin::load(&rt, "junk", &junk, Default::default())
        .await
        .unwrap_err();
    assert_eq!(e.failure(), Some(&LoadFailure::Code(CompileError::NotWasm)));
    assert!(
        e.to_string()
            .starts_with("failed to load plugin `junk` from `"),
        "{e}"
    );

    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let e = LoadedPlugin::load(&rt, "core", &core, Default::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.failure(),
        Some(&LoadFailure::Code(CompileError::CoreModule)),
        "{e}"
    );

    let bytes = std::fs::read(plugin_path("echo")).unwrap();
    let cut = dir.path().join("cut.wasm");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = LoadedPlugin::load(&rt, "cut", &cut, Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.failure(),
            Some(LoadFailure::Code(CompileError::Corrupt(_)))
        ),
        "{e}"
    );

    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/runtime_support/fixtures");
    let e = LoadedPlugin::load(
        &rt,
        "other",
        &fixtures.join("other-world.wasm"),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e.failure(),
            Some(LoadFailure::Code(CompileError::WrongWorld(_)))
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains("it does not export `spool:plugin/handler@0.2.0` (or `spool:plugin/handler@0.1.0`) (it exports `hello`); rebuild it with spool-sdk 0.2"), "{msg}");

    let e = LoadedPlugin::load(
        &rt,
        "sig",
        &fixtures.join("wrong-signature.wasm"),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("its `handle` export has another signature"),
        "{e}"
    );

    let e = LoadedPlugin::load(
        &rt,
        "net",
        &fixtures.join("unknown-import.wasm"),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.failure(),
        Some(&LoadFailure::Code(CompileError::UnknownImport(
            "wasi:http/outgoing-handler@0.2.0".into()
        ))),
        "{e}"
    );

    let e = LoadedPlugin::load(
        &rt,
        "missing",
        &dir.path().join("missing.wasm"),
        Default::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e.failure(), Some(LoadFailure::Read(_))), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_plugins_are_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let cfg = || RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        max_instances: 8,
        ..Default::default()
    };
    let bytes = std::fs::read(plugin_path("echo")).unwrap();
    let path = plugin_path("echo");

    let rt = Runtime::new(cfg()).unwrap();
    let (_, source) = LoadedPlugin::from_bytes(
        &rt,
        "echo",
        &path,
        bytes.clone(),
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(source, CompileSource::CompiledAndCached);
    let files: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".cwasm"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().ends_with(".cwasm"));

    // A "restart": a new runtime loads it without compiling, and it runs.
    drop(rt);
    let rt = Runtime::new(cfg()).unwrap();
    let (echo, source) = LoadedPlugin::from_bytes(
        &rt,
        "echo",
        &path,
        bytes.clone(),
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(source, CompileSource::Cache);
    let ex = rt
        .execute(&echo.code, input("echo", "[1]"), Arc::new(NoServices))
        .await;
    assert!(matches!(ex.outcome, Outcome::Success(_)));

    // A broken cache file is replaced, not trusted.
    let file = cache.path().join(&files[0]);
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::write(cache.path().join("x.tmp"), b"").unwrap();
    std::fs::rename(cache.path().join("x.tmp"), &file).unwrap();
    let (_, source) = LoadedPlugin::from_bytes(
        &rt,
        "echo",
        &path,
        bytes,
        Default::default(),
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(source, CompileSource::CompiledAndCached);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), len);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_log_lines_are_kept_with_the_job() {
    let rt = runtime();
    let hog = load(&rt, "memory-hog").await;
    let services = TestServices::new();
    let ex = rt
        .execute(
            &hog.code,
            input("memory-hog", r#"{"max_mib": 2}"#),
            services.clone(),
        )
        .await;
    assert!(
        ex.logs.iter().any(|l| l == "[info] allocated 2 MiB"),
        "{:?}",
        ex.logs
    );
    assert_eq!(*services.lines.lock().unwrap(), ex.logs);
}

/// A small pool under churn: every job a full pool lets in finds its slots, although freed
/// slots wait in wasmtime's decommit queue. CI once failed a `slow` job with "maximum
/// concurrent limit of 16 for memory stripe 0 reached" on a daemon with 4 workers; this
/// churn did not make that race happen on demand, so it guards the sizing (engine.rs) and
/// the retry (execute.rs) only against regressions that make it common.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_pool_under_churn_never_runs_out_of_slots() {
    let rt = Arc::new(runtime_running(4));
    let echo = load(&rt, "echo").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (rt, echo) = (rt.clone(), echo.clone());
        tasks.spawn(async move {
            let mut failed = Vec::new();
            for _ in 0..2000 {
                let ex = rt
                    .execute(
                        &echo.code,
                        input("echo", r#"{"n":1}"#),
                        Arc::new(NoServices),
                    )
                    .await;
                if !matches!(ex.outcome, Outcome::Success(_)) {
                    failed.push(format!("{:?}", ex.outcome));
                }
            }
            failed
        });
    }
    let mut failed = Vec::new();
    while let Some(r) = tasks.join_next().await {
        failed.extend(r.unwrap());
    }
    assert!(
        failed.is_empty(),
        "{} jobs failed: {:?}",
        failed.len(),
        failed.first()
    );
}

/// When the pool stays full through every retry, the job is not the plugin's failure: it
/// ends `NoCapacity` (the scheduler gives it back uncounted), not a crash that uses up an
/// attempt. The pool is filled for real, by instances made outside the instance semaphore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_stays_full_is_no_capacity_and_the_next_job_runs() {
    let rt = runtime_running(1);
    let echo = load(&rt, "echo").await;
    // The pool has a slot for the running instance and one for an idle (reused) one.
    let held = rt.occupy_instances(&echo.code, 2).await.unwrap();
    let started = Instant::now();
    let ex = rt
        .execute(&echo.code, input("echo", "1"), Arc::new(NoServices))
        .await;
    match &ex.outcome {
        Outcome::NoCapacity { error } => {
            assert!(
                error.starts_with("no free instance slot after 20 tries"),
                "{error}"
            );
            assert!(error.contains("not at fault"), "{error}");
        }
        other => panic!("expected NoCapacity, got {other:?}"),
    }
    assert!(ex.instantiate.is_none(), "the plugin never ran");
    // It waited for the pool (20 tries, about 1.4 s) before giving up.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    drop(held);
    let ex = rt
        .execute(&echo.code, input("echo", "2"), Arc::new(NoServices))
        .await;
    assert_eq!(success(&ex.outcome), serde_json::json!(2));
}

/// `served` of a `reuse-probe` job: how many jobs its instance ran, this one included.
async fn served(rt: &Runtime, probe: &LoadedPlugin, payload: &str) -> (Outcome, u64, Vec<String>) {
    let ex = rt
        .execute(
            &probe.code,
            input("reuse-probe", payload),
            Arc::new(NoServices),
        )
        .await;
    let n = match &ex.outcome {
        Outcome::Success(raw) => {
            let v: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
            v["served"].as_u64().unwrap()
        }
        _ => 0,
    };
    (ex.outcome, n, ex.logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_instance_serves_jobs_in_turn_until_one_crashes() {
    let rt = runtime();
    let probe = load(&rt, "reuse-probe").await;
    assert_eq!(probe.code.instances(), Instances::Reuse);
    for want in 1..=3 {
        let (_, n, logs) = served(&rt, &probe, "{}").await;
        assert_eq!(n, want);
        // The log holds this job's line only.
        assert_eq!(logs, vec![format!("[info] job {want} of this instance")]);
    }
    assert_eq!(rt.idle_instances(), 1);

    // A failure the plugin returned keeps the instance.
    let (outcome, _, _) = served(&rt, &probe, r#"{"fail": true}"#).await;
    assert!(matches!(outcome, Outcome::Fail { .. }), "{outcome:?}");
    assert_eq!(served(&rt, &probe, "{}").await.1, 5);

    // A job's stderr stays with it: the crash of the next one quotes its own lines only.
    let (_, n, logs) = served(&rt, &probe, r#"{"stderr": "a line of job 6"}"#).await;
    assert_eq!(n, 6);
    assert!(
        logs.iter().any(|l| l.contains("a line of job 6")),
        "{logs:?}"
    );
    // A trap discards it: the next job starts on a fresh instance.
    let (outcome, _, logs) = served(&rt, &probe, r#"{"panic": true}"#).await;
    let (kind, error) = crash(&outcome);
    assert_eq!(kind, CrashKind::Trap);
    assert!(error.contains("asked to panic on job 7"), "{error}");
    assert!(!error.contains("job 6"), "{error}");
    assert!(!logs.iter().any(|l| l.contains("job 6")), "{logs:?}");
    assert_eq!(served(&rt, &probe, "{}").await.1, 1);

    // So does a timeout (the manifest's 2 s).
    let (outcome, _, _) = served(&rt, &probe, r#"{"spin": true}"#).await;
    assert_eq!(crash(&outcome).0, CrashKind::Timeout);
    assert_eq!(served(&rt, &probe, "{}").await.1, 1);

    // Memory kept in globals stays with the instance while it is under 3/4 of the limit
    // (32 MiB here); past that the instance is not kept.
    let (outcome, n, _) = served(&rt, &probe, r#"{"keep_mib": 4}"#).await;
    assert!(matches!(outcome, Outcome::Success(_)), "{outcome:?}");
    assert_eq!(n, 2);
    assert_eq!(served(&rt, &probe, "{}").await.1, 3);
    let (outcome, _, _) = served(&rt, &probe, r#"{"keep_mib": 20}"#).await;
    assert!(matches!(outcome, Outcome::Success(_)), "{outcome:?}");
    assert_eq!(rt.idle_instances(), 0);
    assert_eq!(served(&rt, &probe, "{}").await.1, 1);

    // Idle instances go after the idle timeout.
    assert_eq!(rt.idle_instances(), 1);
    rt.trim_idle_instances(Duration::ZERO);
    assert_eq!(rt.idle_instances(), 1);
    rt.trim_idle_instances(spool_host::runtime::REUSE_IDLE_TIMEOUT);
    assert_eq!(rt.idle_instances(), 0);
    assert_eq!(served(&rt, &probe, "{}").await.1, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_fresh_per_job_unless_the_manifest_asks() {
    let rt = runtime();
    let fresh = LoadedPlugin::load(
        &rt,
        "reuse-probe",
        &plugin_path("reuse-probe"),
        spool_host::plugins::Manifest::default(),
    )
    .await
    .unwrap();
    assert_eq!(fresh.code.instances(), Instances::Fresh);
    for _ in 0..3 {
        assert_eq!(served(&rt, &fresh, "{}").await.1, 1);
    }
    assert_eq!(rt.idle_instances(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_of_a_reusing_plugin_get_an_instance_each() {
    let rt = runtime();
    let probe = load(&rt, "reuse-probe").await;
    let runs = (0..4).map(|_| {
        let rt = rt.clone();
        let probe = probe.clone();
        tokio::spawn(async move { served(&rt, &probe, "{}").await.1 })
    });
    let mut counts = Vec::new();
    for r in runs {
        counts.push(r.await.unwrap());
    }
    // However the four overlapped, every job was counted once by the instance that ran it.
    let idle = rt.idle_instances() as u64;
    assert!((1..=4).contains(&idle), "{idle}");
    assert_eq!(counts.iter().filter(|&&n| n == 1).count() as u64, idle);
    // Dropping the plugin version drops its idle instances.
    drop(probe);
    assert_eq!(rt.idle_instances(), 0);
}

/// `name` loaded with its installed manifest, but reusing instances (and `memory` when given).
async fn load_reusing(rt: &Runtime, name: &str, memory: Option<u64>) -> Arc<LoadedPlugin> {
    let mut manifest = manifest_of(name);
    manifest.instances = Instances::Reuse;
    manifest.memory = memory.or(manifest.memory);
    LoadedPlugin::load(rt, name, &plugin_path(name), manifest)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_and_a_guest_stopped_in_a_host_call_discard_the_instance() {
    let rt = runtime();
    // Refused memory, which the guest noticed and turned into an error of its own.
    let hog = load_reusing(&rt, "memory-hog", None).await;
    let ex = rt
        .execute(
            &hog.code,
            input("memory-hog", r#"{"graceful": true}"#),
            Arc::new(NoServices),
        )
        .await;
    assert_eq!(crash(&ex.outcome).0, CrashKind::OutOfMemory);
    assert_eq!(rt.idle_instances(), 0);

    // Stopped by the watchdog while it sleeps in a host call.
    let mut slow = manifest_of("slow");
    slow.instances = Instances::Reuse;
    slow.timeout = Some(Duration::from_millis(300));
    let slow = LoadedPlugin::load(&rt, "slow", &plugin_path("slow"), slow)
        .await
        .unwrap();
    let ex = rt
        .execute(
            &slow.code,
            input("slow", r#"{"ms": 5000, "step_ms": 5000}"#),
            Arc::new(NoServices),
        )
        .await;
    assert_eq!(crash(&ex.outcome).0, CrashKind::Timeout);
    assert_eq!(rt.idle_instances(), 0);
    let ex = rt
        .execute(
            &slow.code,
            input("slow", r#"{"ms": 10, "step_ms": 10}"#),
            Arc::new(NoServices),
        )
        .await;
    assert!(
        matches!(ex.outcome, Outcome::Success(_)),
        "{:?}",
        ex.outcome
    );
    assert_eq!(rt.idle_instances(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_is_replaced_after_a_thousand_jobs() {
    let rt = runtime();
    let probe = load(&rt, "reuse-probe").await;
    let max = u64::from(spool_host::runtime::REUSE_MAX_JOBS);
    for want in 1..=max {
        assert_eq!(served(&rt, &probe, "{}").await.1, want);
    }
    assert_eq!(rt.idle_instances(), 0);
    assert_eq!(served(&rt, &probe, "{}").await.1, 1);
}

/// With room for one running instance, an idle one of another plugin never keeps a job from
/// starting, on either engine (memory limits up to 64 MiB and above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_instance_never_blocks_another_plugin() {
    let rt = runtime_running(1);
    for memory in [32 << 20, 128 << 20] {
        let probe = load_reusing(&rt, "reuse-probe", Some(memory)).await;
        assert_eq!(served(&rt, &probe, "{}").await.1, 1);
        assert_eq!(rt.idle_instances(), 1);
        let echo = LoadedPlugin::load(
            &rt,
            "echo",
            &plugin_path("echo"),
            spool_host::plugins::Manifest {
                memory: Some(memory),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        for n in 0..20 {
            let ex = rt
                .execute(
                    &echo.code,
                    input("echo", &n.to_string()),
                    Arc::new(NoServices),
                )
                .await;
            assert_eq!(
                success(&ex.outcome),
                serde_json::json!(n),
                "memory {memory}"
            );
        }
        assert_eq!(served(&rt, &probe, "{}").await.1, 2);
        drop(probe);
        assert_eq!(rt.idle_instances(), 0);
    }
}

/// A job that returns with an outbound request still waiting for its answer does not leave
/// its instance for the next job: kept, the request would hold its connection and its
/// `http.max_concurrent` place while the instance sits idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_left_open_discards_the_instance() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let rt = runtime();
    let mut manifest = manifest_of("reuse-probe");
    manifest.allowed_hosts = vec![format!("http://127.0.0.1:{port}")];
    let probe = LoadedPlugin::load(&rt, "reuse-probe", &plugin_path("reuse-probe"), manifest)
        .await
        .unwrap();
    assert_eq!(served(&rt, &probe, "{}").await.1, 1);
    assert_eq!(served(&rt, &probe, "{}").await.1, 2);
    let payload = serde_json::json!({ "leave_request": format!("127.0.0.1:{port}") });
    let (outcome, n, _) = served(&rt, &probe, &payload.to_string()).await;
    assert!(matches!(outcome, Outcome::Success(_)), "{outcome:?}");
    assert_eq!(n, 3);
    assert_eq!(rt.idle_instances(), 0);
    assert_eq!(served(&rt, &probe, "{}").await.1, 1);
}
