//! End to end: the `spool migrate` binary. An operator's move from SQLite to Redis (a
//! daemon stopped mid-run, its store migrated, a daemon on Redis finishing the work with
//! nothing lost or run twice), the refusal while a daemon holds leases, `--dry-run`, a
//! second run that adds nothing, and a failed count check exiting 1.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use spool_host::job::{Job, JobState, NewJob, SystemClock};
use spool_host::storage::{self, ClaimRequest, ListFilter, Storage, StorageOptions};
use spool_tests::{Daemon, eventually_blocking, redis, spool_bin, stderr, stdout};
use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);
const KEEP_ALL: &str = "[retention]\ncompleted_max_count = \"off\"\ncompleted_max_age = \"off\"\n";

fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

async fn open(url: &str) -> Arc<dyn Storage> {
    storage::open(url, StorageOptions::default(), Arc::new(SystemClock))
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"))
}

async fn all_jobs(s: &dyn Storage) -> HashMap<String, Job> {
    let jobs = storage::list_all(s, ListFilter::default())
        .await
        .expect("list");
    jobs.into_iter().map(|j| (j.id.clone(), j)).collect()
}

fn migrate(args: &[&str]) -> Output {
    Command::new(spool_bin())
        .arg("migrate")
        .args(args)
        .env("SPOOL_LOG", "warn")
        .output()
        .expect("run spool migrate")
}

fn sqlite(path: &std::path::Path) -> String {
    format!("sqlite://{}", path.display())
}

#[test]
fn a_stopped_sqlite_daemon_moves_to_redis_and_finishes_its_work() {
    if !redis::require_redis("migrate to redis") {
        return;
    }
    let r = redis::Server::start(&[]);
    let redis_url = r.url("migrate-e2e");
    let mut a = Daemon::builder(&["slow"])
        .config(KEEP_ALL)
        .args(&["--workers", "4", "--shutdown-grace", "1s"])
        .start();
    let jobs: Vec<Value> = (0..600)
        .map(|i| json!({"type": "slow", "payload": {"ms": 5, "step_ms": 5, "i": i}}))
        .collect();
    let mut ids = Vec::new();
    for chunk in jobs.chunks(300) {
        ids.extend(a.submit_batch(chunk));
    }
    // Some in the future, one with a unique key: every state travels.
    let later =
        a.submit(&json!({"type": "slow", "payload": {}, "delay": "1h", "unique_key": "nightly"}));
    eventually_blocking("some jobs to complete", LIMIT, || {
        a.count("completed") >= 100
    });
    let (status, _) = a.terminate(Duration::from_secs(20));
    assert!(status.success());
    let source = sqlite(&a.dir.path().join("spool.db"));
    let before = block_on(async { all_jobs(&*open(&source).await).await });
    let done_before = before
        .values()
        .filter(|j| j.status == JobState::Completed)
        .count();
    assert!(
        (100..600).contains(&done_before),
        "{done_before} completed before the stop"
    );

    let dry = migrate(&["--from", &source, "--to", &redis_url, "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stdout(&dry).starts_with("dry run: read 601 jobs"),
        "{}",
        stdout(&dry)
    );
    assert!(block_on(async { all_jobs(&*open(&redis_url).await).await }).is_empty());

    let out = migrate(&["--from", &source, "--to", &redis_url, "--batch", "100"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.starts_with("copied 601 of 601 jobs"), "{text}");
    assert!(text.contains("count check: ok"), "{text}");
    assert!(
        text.contains("not copied: the plugin cache and the event log"),
        "{text}"
    );
    assert!(
        stderr(&out).contains("migrate: 100%  601/601 jobs"),
        "{}",
        stderr(&out)
    );

    let again = migrate(&["--from", &source, "--to", &redis_url]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).starts_with("copied 0 of 601 jobs"),
        "{}",
        stdout(&again)
    );
    assert!(
        stdout(&again).contains("601 were there already"),
        "{}",
        stdout(&again)
    );

    let b = Daemon::builder(&["slow"])
        .config(KEEP_ALL)
        .storage(&redis_url)
        .start();
    eventually_blocking("every job to complete on redis", LIMIT, || {
        b.count("completed") == 600
    });
    let j = b.job(later["id"].as_str().expect("id"));
    assert_eq!(
        (j["status"].as_str(), j["unique_key"].as_str()),
        (Some("scheduled"), Some("nightly"))
    );
    let after = block_on(async { all_jobs(&*open(&redis_url).await).await });
    assert_eq!(after.len(), 601, "nothing lost, nothing duplicated");
    for id in &ids {
        let (was, now) = (&before[id], &after[id]);
        assert_eq!(now.status, JobState::Completed, "{id}");
        if was.status == JobState::Completed {
            assert_eq!(
                now.result.as_ref().map(|r| r.get()),
                was.result.as_ref().map(|r| r.get())
            );
            assert_eq!(
                (now.attempt, now.finished_at),
                (was.attempt, was.finished_at),
                "{id}"
            );
        }
        // The stop released its running jobs (attempt not counted): nothing ran twice.
        assert_eq!(now.attempt, 1, "job {id} ran more than once");
    }
}

#[test]
fn migrate_refuses_live_leases_and_checks_counts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (src, dst) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let (src_url, dst_url) = (sqlite(&src), sqlite(&dst));
    let held = block_on(async {
        let s = open(&src_url).await;
        let raw = |t: &str| serde_json::value::RawValue::from_string(t.into()).expect("json");
        for i in 0..50 {
            s.enqueue(NewJob::new("mig", raw(&format!(r#"{{"i":{i}}}"#))))
                .await
                .expect("enqueue");
        }
        let claimed = s
            .claim(ClaimRequest {
                types: vec!["mig".into()],
                limit: 2,
                lease: Duration::from_secs(600),
                worker: "a-live-daemon".into(),
            })
            .await
            .expect("claim");
        claimed[0].job.id.clone()
    });

    let refused = migrate(&["--from", &src_url, "--to", &dst_url]);
    assert_eq!(refused.status.code(), Some(1));
    let why = stderr(&refused);
    assert!(
        why.contains("2 running job(s) whose lease is still live"),
        "{why}"
    );
    for hint in [
        "stop the daemons",
        "wait until the leases expire",
        "--force",
    ] {
        assert!(why.contains(hint), "{why}");
    }
    let dry = migrate(&["--from", &src_url, "--to", &dst_url, "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains("a real run refuses without --force"),
        "{}",
        stdout(&dry)
    );
    assert!(!dst.exists(), "a dry run creates nothing");

    let forced = migrate(&["--from", &src_url, "--to", &dst_url, "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(
        stdout(&forced).contains("copied 50 of 50 jobs"),
        "{}",
        stdout(&forced)
    );
    let copy =
        block_on(async { open(&dst_url).await.get(&held).await.expect("get") }).expect("copied");
    assert_eq!(copy.status, JobState::Running);

    // The destination's copy moves on (here: cancelled by hand); a new run flags it.
    block_on(async {
        let d = open(&dst_url).await;
        let pending = all_jobs(&*d)
            .await
            .into_values()
            .find(|j| j.status == JobState::Pending)
            .expect("a pending job");
        d.cancel(&pending.id).await.expect("cancel");
    });
    let mismatch = migrate(&["--from", &src_url, "--to", &dst_url, "--force"]);
    assert_eq!(mismatch.status.code(), Some(1), "{}", stdout(&mismatch));
    assert!(
        stdout(&mismatch).contains("count check: FAILED"),
        "{}",
        stdout(&mismatch)
    );
    let why = stderr(&mismatch);
    assert!(
        why.contains("pending: 48 in the source, 47 in the destination"),
        "{why}"
    );

    let same = migrate(&["--from", &src_url, "--to", &src_url]);
    assert_eq!(same.status.code(), Some(1));
    assert!(
        stderr(&same).contains("name the same storage"),
        "{}",
        stderr(&same)
    );
    let missing = migrate(&["--from", "sqlite:///nonexistent/x.db", "--to", &dst_url]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("does not exist"),
        "{}",
        stderr(&missing)
    );
}
