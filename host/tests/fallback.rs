//! The fallback spool against a real `redis-server` that this test starts, stops (kill -9 or
//! SHUTDOWN NOSAVE) and starts again on the same port with the same folder (AOF on,
//! `appendfsync always`, so what Redis acknowledged survives): jobs are accepted while Redis
//! is down, and once it is back every job is in Redis exactly once and the spool is empty.
//!
//! Run: `cargo test -p spool-host --test fallback`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::value::RawValue;
use spool_host::job::{NewJob, SystemClock};
use spool_host::storage::fallback::{self, FallbackStorage};
use spool_host::storage::{self, ListFilter, Storage, StorageError, StorageOptions};
use spool_tests::eventually;
use spool_tests::redis::{self as test_redis, Server};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A Redis with AOF and `appendfsync always`, so what it acknowledged survives a kill.
const AOF: [&str; 4] = ["--appendonly", "yes", "--appendfsync", "always"];

/// A storage URL with short timeouts: a test should notice the outage at once.
fn url(r: &Server, prefix: &str) -> String {
    format!(
        "redis://127.0.0.1:{}/?prefix={prefix}&timeout=2s&connect_timeout=1s",
        r.port
    )
}

fn job(n: usize) -> NewJob {
    NewJob::new(
        "fallback-test",
        RawValue::from_string(format!(r#"{{"n":{n}}}"#)).expect("json"),
    )
}

async fn open_fallback(url: &str, spool: &Path) -> Arc<FallbackStorage> {
    fallback::open_spooled(
        url,
        &spool.display().to_string(),
        StorageOptions::default(),
        Arc::new(SystemClock),
    )
    .await
    .expect("open the fallback storage")
}

/// Every job id in the store, failing on an id listed twice.
async fn ids_in(s: &dyn Storage) -> HashSet<String> {
    let mut ids = HashSet::new();
    for j in storage::list_all(s, ListFilter::default())
        .await
        .expect("list")
    {
        assert!(ids.insert(j.id.clone()), "job {} listed twice", j.id);
    }
    ids
}

async fn spooled_in(f: &FallbackStorage) -> u64 {
    f.spool()
        .stats()
        .await
        .expect("spool stats")
        .types
        .values()
        .flat_map(|t| t.counts.values())
        .sum()
}

/// Enqueues `n` jobs from 4 concurrent tasks, half one by one and half in batches of 10;
/// every enqueue must succeed. Returns the ids.
async fn enqueue_many(s: &Arc<FallbackStorage>, from: usize, n: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for t in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mine: Vec<usize> = (from..from + n).filter(|i| i % 4 == t).collect();
            let (singles, batched) = mine.split_at(mine.len() / 2);
            for &i in singles {
                let out = s.enqueue(job(i)).await.expect("enqueue while degraded");
                assert!(out.created);
                ids.push(out.job.id);
            }
            for chunk in batched.chunks(10) {
                let out = s
                    .enqueue_batch(chunk.iter().map(|&i| job(i)).collect())
                    .await
                    .expect("batch enqueue while degraded");
                ids.extend(out.into_iter().map(|e| e.job.id));
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("enqueue task"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_accepted_while_redis_is_down_reach_it_exactly_once() {
    if !test_redis::require_redis("fallback tests") {
        return;
    }
    let mut redis = Server::start(&AOF);
    let prefix = test_redis::fresh_prefix("fallback");
    let url = url(&redis, &prefix);
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("fallback.db");
    let fb = open_fallback(&url, &spool).await;
    assert!(!fb.is_active());

    let mut want: Vec<String> = enqueue_many(&fb, 0, 100).await;
    assert_eq!(spooled_in(&fb).await, 0, "redis was up: nothing spooled");

    // Outage 1: kill -9.
    redis.kill9();
    let t = Instant::now();
    want.extend(enqueue_many(&fb, 100, 400).await);
    println!(
        "accepted 400 jobs while redis was down in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let status = fb.status();
    assert!(status.active, "{status:?}");
    assert_eq!(spooled_in(&fb).await, 400);
    let err = fb.stats().await.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
    let info = fb.info().await.expect("info while degraded");
    assert!(
        info.warnings
            .iter()
            .any(|w| w
                .starts_with("degraded: redis unreachable, 400 jobs in the local fallback spool")),
        "{:?}",
        info.warnings
    );
    assert!(
        fb.ping().await.is_ok(),
        "health stays degraded, not unhealthy"
    );

    redis.restart();
    let t = Instant::now();
    eventually(
        "the spool replayed into redis",
        Duration::from_secs(30),
        || async {
            let s = fb.status();
            !s.active && s.spooled == 0
        },
    )
    .await;
    println!(
        "redis back: spool replayed within {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // Outage 2: a clean SHUTDOWN NOSAVE, then the same again.
    redis.shutdown_nosave();
    want.extend(enqueue_many(&fb, 500, 200).await);
    assert!(fb.is_active());
    redis.restart();
    eventually(
        "the second outage replayed",
        Duration::from_secs(30),
        || async {
            let s = fb.status();
            !s.active && s.spooled == 0
        },
    )
    .await;

    let plain = storage::open(&url, StorageOptions::default(), Arc::new(SystemClock))
        .await
        .expect("open redis directly");
    let got = ids_in(&*plain).await;
    let want_set: HashSet<String> = want.iter().cloned().collect();
    assert_eq!(want_set.len(), 700, "every enqueue got its own id");
    assert_eq!(got.len(), 700, "each job exactly once in redis");
    assert_eq!(got, want_set, "same ids");
    assert_eq!(spooled_in(&fb).await, 0, "spool empty");
    let stats = plain.stats().await.expect("stats");
    assert_eq!(
        stats.types["fallback-test"].counts.values().sum::<u64>(),
        700,
        "{}",
        redis.log()
    );
    // Each job has its `job.created` in Redis's event log once: the 100 written by Redis's
    // enqueue, the 600 by the replay, since the spool's own log is never read.
    let mut created: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = plain
            .events_since(after.as_deref(), 500)
            .await
            .expect("events");
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        created.extend(
            page.into_iter()
                .filter(|e| e.kind == "job.created")
                .filter_map(|e| e.job_id),
        );
    }
    assert_eq!(created.len(), 700, "one job.created per job");
    assert_eq!(created.into_iter().collect::<HashSet<_>>(), want_set);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daemon_starting_while_redis_is_down_takes_jobs_and_hands_them_over() {
    if !test_redis::require_redis("fallback tests") {
        return;
    }
    let mut redis = Server::not_started(&AOF);
    let url = url(&redis, &test_redis::fresh_prefix("fallback-start"));
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("fallback.db");
    // A plain open fails fast with a clear message (the behaviour without a fallback).
    let err = storage::open(&url, StorageOptions::default(), Arc::new(SystemClock))
        .await
        .err()
        .expect("redis is not running");
    assert!(
        matches!(&err, StorageError::Unavailable(m) if m.contains("cannot connect to redis")),
        "{err}"
    );

    let fb = open_fallback(&url, &spool).await;
    assert!(fb.is_active());
    let want = enqueue_many(&fb, 0, 120).await;
    let one = fb.get(&want[7]).await.expect("get a spooled job");
    assert_eq!(one.map(|j| j.id), Some(want[7].clone()));
    drop(fb);

    // The daemon restarts (its spool file stays) and Redis comes up meanwhile.
    redis.restart();
    let fb = open_fallback(&url, &spool).await;
    eventually(
        "the spool left by the first run replayed",
        Duration::from_secs(30),
        || async { fb.status().spooled == 0 },
    )
    .await;
    let plain = storage::open(&url, StorageOptions::default(), Arc::new(SystemClock))
        .await
        .expect("open redis directly");
    let got = ids_in(&*plain).await;
    assert_eq!(got, want.into_iter().collect::<HashSet<_>>());
    assert_eq!(spooled_in(&fb).await, 0);
}
