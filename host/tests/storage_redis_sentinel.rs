//! Redis storage through Sentinel (a master, a replica and a Sentinel this test starts on
//! free loopback ports): the shared storage conformance suite, and a failover under way:
//! jobs written before it are there after it, and the storage follows the new master.
//!
//! Run: `cargo test -p spool-host --features testing --test storage_redis_sentinel`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "support/redis_server.rs"]
mod redis_server;

use spool_host::job::{ManualClock, SystemClock};
use spool_host::storage::{self, Storage, StorageOptions};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

type Backend = Arc<dyn Storage>;

/// The Sentinel set shared by the conformance cases, or None when Redis is not installed.
fn sentinels() -> Option<redis_server::SentinelSet> {
    static SET: OnceLock<Option<redis_server::SentinelSet>> = OnceLock::new();
    SET.get_or_init(|| {
        redis_server::require_redis("redis sentinel storage tests")
            .then(redis_server::SentinelSet::start)
    })
    .clone()
}

async fn fresh(set: &redis_server::SentinelSet, clock: Arc<ManualClock>) -> Backend {
    let url = set.url(&redis_server::fresh_prefix("sentinel"));
    storage::open(&url, storage::conformance::options(), clock)
        .await
        .expect("open redis sentinel storage")
}

macro_rules! sentinel_conformance {
    ($factory:ident ; $($case:ident),* $(,)?) => {
        mod conformance {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(set) = sentinels() else { return };
                    let clock = Arc::new(ManualClock::new());
                    let s = $factory(&set, clock.clone()).await;
                    storage::conformance::$case(s, clock).await;
                }
            )*
        }
    };
}

spool_host::__spool_conformance_cases!([sentinel_conformance] fresh);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_follows_a_sentinel_failover() {
    if !redis_server::require_redis("redis sentinel failover test") {
        return;
    }
    // A set of its own: the failover swaps its master.
    let set = redis_server::SentinelSet::start();
    let prefix = redis_server::fresh_prefix("failover");
    let s = storage::open(
        &set.url(&prefix),
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
    let acked = redis_server::command(set.master, &["WAIT", "1", "5000"]).unwrap();
    assert_eq!(acked, ":1", "the replica acknowledged the writes");

    // Right after start the Sentinel may not have heard from the replica yet
    // (NOGOODSLAVE): ask until it agrees.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = redis_server::command(
            set.sentinel,
            &["SENTINEL", "FAILOVER", redis_server::MASTER_NAME],
        )
        .unwrap();
        if reply == "+OK" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sentinel refused the failover: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while set.current_master() != Some(set.replica) {
        assert!(
            Instant::now() < deadline,
            "sentinel did not promote the replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Wait for the old master to be demoted too, so no write can land on it in the moment
    // both think they are master (a write there would be lost when it resyncs).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !redis_server::command(set.master, &["INFO", "replication"])
        .is_ok_and(|i| i.contains("role:slave"))
    {
        assert!(Instant::now() < deadline, "the old master was not demoted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let port = redis_server::command(set.replica, &["ROLE"]).unwrap();
    assert!(port.starts_with('*'), "{port}");
}
