//! Redis storage on a three-master Redis Cluster (shared by the tests, each with a fresh
//! prefix): the storage conformance suite, a check that all of one Spool's keys share one hash
//! slot (so every script runs on one node, never CROSSSLOT), and, on a Cluster of its own with
//! replicas, the master of that slot killed mid-run.

use super::Backend;
use spool_host::job::{JobState, ManualClock, SystemClock};
use spool_host::storage::{self, CacheKey, ClaimRequest, StorageOptions};
use spool_tests::redis::{self as test_redis, Cluster, Reply};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The Cluster shared by the tests, or None when Redis is not installed.
fn cluster() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            test_redis::require_redis("redis cluster storage tests").then(Cluster::start)
        })
        .as_ref()
}

/// The storage URL of a store under `prefix` on `c`, in clock=local mode.
fn url(c: &Cluster, prefix: &str) -> String {
    format!("{}&clock=local", c.url(prefix))
}

/// A fresh store on the shared Cluster, or None when Redis is not installed.
async fn conformance_store(clock: Arc<ManualClock>) -> Option<Backend> {
    let url = url(cluster()?, &test_redis::fresh_prefix("cluster"));
    let s = storage::open(&url, storage::conformance::options(), clock)
        .await
        .expect("open redis cluster storage");
    Some(s)
}

mod conformance {
    spool_host::conformance_tests!(super::conformance_store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_keys_of_one_spool_live_in_one_slot() {
    let Some(c) = cluster() else { return };
    let prefix = test_redis::fresh_prefix("slot");
    let s = storage::open(
        &url(c, &prefix),
        StorageOptions::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let mut jobs = Vec::new();
    for t in ["a", "b", "c:d", "e/f"] {
        jobs.push(storage::conformance::job(t));
    }
    s.enqueue_batch(jobs).await.unwrap();
    let claimed = storage::conformance::claim(&s, &["a", "b"], 5).await;
    s.complete(
        claimed
            .iter()
            .map(storage::conformance::completion)
            .collect(),
    )
    .await
    .unwrap();
    s.cache_set(CacheKey::new("plug", "k"), "v", None)
        .await
        .unwrap();
    s.stats().await.unwrap();

    // Every key of this prefix, on whichever node holds it.
    let mut holders = Vec::new();
    for &port in &c.ports {
        let mut found = Vec::new();
        let mut cursor = "0".to_owned();
        loop {
            let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let (next, keys): (String, Vec<String>) = redis::cmd("SCAN")
                .arg(&cursor)
                .arg("MATCH")
                .arg(format!("{{{prefix}}}:*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            found.extend(keys);
            if next == "0" {
                break;
            }
            cursor = next;
        }
        if !found.is_empty() {
            holders.push((port, found));
        }
    }
    assert_eq!(holders.len(), 1, "keys spread over nodes: {holders:?}");
    let keys = &holders[0].1;
    assert!(keys.len() > 10, "{keys:?}");
    let slot = |k: &str| test_redis::command(holders[0].0, &["CLUSTER", "KEYSLOT", k]).unwrap();
    let first = slot(&keys[0]);
    for k in keys {
        assert_eq!(slot(k), first, "{k}");
    }
}

/// The master holding a Spool's slot is killed (SIGKILL) mid-run in a Cluster with replicas:
/// its replica takes over, the storage finds the new master by itself, and every job is
/// completed; none is lost. Jobs whose claim or completion the dead master took with it run
/// again once their lease runs out (at least once, as documented), and nothing else does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_master_killed_mid_run_loses_no_job() {
    if !test_redis::require_redis("redis cluster failover") {
        return;
    }
    const JOBS: usize = 3000;
    let mut c = tokio::task::spawn_blocking(Cluster::start_replicated)
        .await
        .unwrap();
    let prefix = test_redis::fresh_prefix("failover");
    let s: Backend = storage::open(
        &url(&c, &prefix),
        StorageOptions::default(),
        Arc::new(SystemClock),
    )
    .await
    .expect("open redis cluster storage");
    let mut ids = Vec::new();
    for chunk in (0..JOBS).collect::<Vec<_>>().chunks(500) {
        let batch = chunk
            .iter()
            .map(|_| storage::conformance::job("fo"))
            .collect();
        for e in s.enqueue_batch(batch).await.unwrap() {
            ids.push(e.job.id);
        }
    }
    let master = c
        .master_of(&format!("{{{prefix}}}:jobs"))
        .expect("our master");
    // Every enqueue is on the replica before its master dies (replication is async).
    let acked = test_redis::command(master, &["WAIT", "1", "5000"]).unwrap();
    assert_eq!(
        acked,
        Reply::Int(1),
        "the replica acknowledged the enqueues"
    );

    // And on the master's own replica (WAIT counts any replica): the kill tests the failover,
    // not how far asynchronous replication lagged under load.
    let synced = {
        let c = &c;
        tokio::task::block_in_place(|| c.replica_caught_up(master, Duration::from_secs(30)))
    };
    assert!(synced, "the replica of {master} holds every enqueue");

    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut workers = Vec::new();
    for w in 0..4 {
        let (s, done, errors) = (s.clone(), done.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            let mut reap_at = Instant::now();
            while Instant::now() < deadline {
                if w == 0 && reap_at.elapsed() > Duration::from_millis(500) {
                    let _ = s.reap_expired().await;
                    reap_at = Instant::now();
                }
                let claimed = match s
                    .claim(ClaimRequest {
                        types: vec!["fo".into()],
                        limit: 16,
                        lease: Duration::from_secs(3),
                        worker: format!("w{w}"),
                    })
                    .await
                {
                    Ok(c) => c,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if claimed.is_empty() {
                    let stats = s.stats().await;
                    let open = stats.map(|st| {
                        st.types.get("fo").map_or(0, |t| {
                            t.counts
                                .iter()
                                .filter(|(k, _)| k.is_live())
                                .map(|(_, n)| *n)
                                .sum()
                        })
                    });
                    if open.is_ok_and(|n: u64| n == 0) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let batch: Vec<_> = claimed
                    .iter()
                    .map(storage::conformance::completion)
                    .collect();
                // A completion the outage refused is tried again (as the daemon's completer
                // does) until it lands or the lease is gone.
                loop {
                    match s.complete(batch.clone()).await {
                        Ok(settled) => {
                            done.fetch_add(settled.len(), Ordering::Relaxed);
                            break;
                        }
                        Err(_) if Instant::now() < deadline => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("completion never landed: {e}"),
                    }
                }
            }
        }));
    }
    while done.load(Ordering::Relaxed) < JOBS / 4 {
        assert!(Instant::now() < deadline, "the run got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = done.load(Ordering::Relaxed);
    assert!(before < JOBS, "the kill comes mid-run ({before} done)");
    c.kill9(master);
    let killed_at = Instant::now();
    for w in workers {
        w.await.unwrap();
    }
    eprintln!(
        "failover: {before} of {JOBS} done at the kill, finished {:.1} s after it, {} storage errors meanwhile",
        killed_at.elapsed().as_secs_f64(),
        errors.load(Ordering::Relaxed)
    );
    let new_master = c
        .master_of(&format!("{{{prefix}}}:jobs"))
        .expect("a new master");
    assert_ne!(new_master, master, "a replica took over");
    let stats = s.stats().await.unwrap();
    let fo = &stats.types["fo"];
    assert_eq!(
        fo.counts.get(&JobState::Completed).copied(),
        Some(JOBS as u64),
        "every job completed: {:?}",
        fo.counts
    );
    let mut reruns = 0;
    for id in &ids {
        let job = s.get(id).await.unwrap().expect("no job lost");
        assert_eq!(job.status, JobState::Completed);
        if job.attempt > 1 {
            reruns += 1;
        }
        assert!(job.attempt <= 2, "job {id} ran {} times", job.attempt);
    }
    eprintln!("failover: {reruns} jobs needed a second attempt");
}
