//! Redis storage through Sentinel (a master, a replica and a Sentinel, shared by the tests,
//! each with a fresh prefix): the storage conformance suite, and, on a set of its own, a
//! failover under way: jobs written before it are there after it, and the storage follows the
//! new master.

use super::Backend;
use spool_host::job::{ManualClock, SystemClock};
use spool_host::storage::{self, StorageOptions};
use spool_tests::redis::{self as test_redis, Reply, SentinelSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The Sentinel set shared by the conformance cases, or None when Redis is not installed.
fn sentinels() -> Option<&'static SentinelSet> {
    static SET: OnceLock<Option<SentinelSet>> = OnceLock::new();
    SET.get_or_init(|| {
        test_redis::require_redis("redis sentinel storage tests").then(SentinelSet::start)
    })
    .as_ref()
}

/// The storage URL of a store under `prefix` on `set`, in clock=local mode.
fn url(set: &SentinelSet, prefix: &str) -> String {
    format!("{}&clock=local", set.url(prefix))
}

/// A fresh store on the shared set, or None when Redis is not installed.
async fn conformance_store(clock: Arc<ManualClock>) -> Option<Backend> {
    let url = url(sentinels()?, &test_redis::fresh_prefix("sentinel"));
    let s = storage::open(&url, storage::conformance::options(), clock)
        .await
        .expect("open redis sentinel storage");
    Some(s)
}

mod conformance {
    spool_host::conformance_tests!(super::conformance_store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_follows_a_sentinel_failover() {
    if !test_redis::require_redis("redis sentinel failover test") {
        return;
    }
    // A set of its own: the failover swaps its master.
    let set = SentinelSet::start();
    let prefix = test_redis::fresh_prefix("failover");
    let s = storage::open(
        &url(&set, &prefix),
        StorageOptions::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(
            s.enqueue(storage::conformance::job("fo"))
                .await
                .unwrap()
                .job
                .id,
        );
    }
    // Make sure the replica has it all before it is promoted.
    let acked = test_redis::command(set.master, &["WAIT", "1", "5000"]).unwrap();
    assert_eq!(acked, Reply::Int(1), "the replica acknowledged the writes");

    // Returns once the replica is master and the old master demoted, so no write can land on
    // the old one in the moment both think they are master (it would be lost when it resyncs).
    tokio::task::block_in_place(|| set.failover());
    // The storage still holds a connection to the old master (READONLY now): calls may fail
    // for a moment, then the storage finds the new master by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        match s.enqueue(storage::conformance::job("fo")).await {
            Ok(e) => break e.job.id,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no write succeeded after the failover: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let info = s.info().await.unwrap();
    assert_eq!(info.details["role"], "master");
    let claimed = storage::conformance::claim(&s, &["fo"], 100).await;
    let mut got: Vec<String> = claimed.iter().map(|c| c.job.id.clone()).collect();
    got.sort();
    ids.push(after);
    ids.sort();
    assert_eq!(got, ids, "every job survived the failover");
    let role = test_redis::command(set.replica, &["ROLE"]).unwrap();
    assert!(matches!(role, Reply::Array(Some(_))), "{role:?}");
}
