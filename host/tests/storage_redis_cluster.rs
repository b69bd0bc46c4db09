//! Redis storage on a three-master Redis Cluster this test builds on free loopback ports:
//! the shared storage conformance suite, and a check that all of one Spool's keys share
//! one hash slot (so every script runs on one node, never CROSSSLOT).
//!
//! Run: `cargo test -p spool-host --features testing --test storage_redis_cluster`.

#[path = "support/redis_server.rs"]
mod redis_server;

use spool_host::job::{ManualClock, SystemClock};
use spool_host::storage::{self, Storage, StorageOptions};
use std::sync::{Arc, OnceLock};

type Backend = Arc<dyn Storage>;

/// The Cluster shared by this test binary, or None when Redis is not installed.
fn cluster() -> Option<redis_server::Cluster> {
    static CLUSTER: OnceLock<Option<redis_server::Cluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| {
            redis_server::require_redis("redis cluster storage tests")
                .then(redis_server::Cluster::start)
        })
        .clone()
}

async fn fresh(c: &redis_server::Cluster, clock: Arc<ManualClock>) -> Backend {
    let url = c.url(&redis_server::fresh_prefix("cluster"));
    storage::open(&url, StorageOptions::default(), clock)
        .await
        .expect("open redis cluster storage")
}

macro_rules! cluster_conformance {
    ($factory:ident ; $($case:ident),* $(,)?) => {
        mod conformance {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(c) = cluster() else { return };
                    let clock = Arc::new(ManualClock::new());
                    let s = $factory(&c, clock.clone()).await;
                    storage::conformance::$case(s, clock).await;
                }
            )*
        }
    };
}

spool_host::__spool_conformance_cases!([cluster_conformance] fresh);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_keys_of_one_spool_live_in_one_slot() {
    let Some(c) = cluster() else { return };
    let prefix = redis_server::fresh_prefix("slot");
    let s = storage::open(
        &c.url(&prefix),
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
    s.cache_set("plug", "k", "v", None).await.unwrap();
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
    let slot = |k: &str| redis_server::command(holders[0].0, &["CLUSTER", "KEYSLOT", k]).unwrap();
    let first = slot(&keys[0]);
    for k in keys {
        assert_eq!(slot(k), first, "{k}");
    }
}
