//! Storage figures in the dev profile (no release build of wasmtime needed): the same load
//! generators as `benches/storage.rs`, timed by hand and printed.
//!
//! Quick sanity run (small sizes, part of the normal test run):
//!   `cargo test -p spool-host --features testing --test storage_bench -- --nocapture`
//! Full figures (50,000 jobs per throughput figure, claim latency at 10^3 and 10^6 queued):
//!   `SPOOL_BENCH_FULL=1 cargo test -p spool-host --features testing --test storage_bench -- --nocapture`

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
#![cfg(feature = "testing")]

use spool_host::job::SystemClock;
use spool_host::storage::loadgen::{self, Figure};
use spool_host::storage::sqlite::SqliteStorage;
use spool_host::storage::{Storage, StorageOptions};
use std::path::Path;
use std::sync::Arc;

async fn sqlite(dir: &Path, name: &str) -> Arc<dyn Storage> {
    let s = SqliteStorage::open(
        dir.join(name),
        StorageOptions::default(),
        Arc::new(SystemClock),
    );
    Arc::new(s.await.expect("open sqlite"))
}

fn report(figure: &Figure) {
    println!("  {figure}");
    assert!(figure.jobs > 0, "{figure}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_storage_figures() {
    let full = std::env::var_os("SPOOL_BENCH_FULL").is_some();
    let (n, deep) = if full {
        (50_000, 1_000_000)
    } else {
        (2_000, 0)
    };
    let dir = tempfile::tempdir().unwrap();
    println!(
        "sqlite storage figures ({} profile, {n} jobs each):",
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        }
    );

    let s = sqlite(dir.path(), "enqueue.db").await;
    report(&loadgen::enqueue_one_by_one(&s, "single", n / 5).await);
    report(&loadgen::enqueue_concurrently(&s, "concurrent", n, 32).await);
    report(&loadgen::enqueue_batches(&s, "batched", n, 100).await);
    report(&loadgen::enqueue_batches(&s, "batched-1000", n, 1_000).await);
    drop(s);

    let s = sqlite(dir.path(), "claim.db").await;
    loadgen::fill(&s, "work", n / 5).await;
    report(&loadgen::claim_complete(&s, "work", n / 5, 1, 1).await);
    loadgen::fill(&s, "work", n).await;
    report(&loadgen::claim_complete(&s, "work", n, 100, 1).await);
    loadgen::fill(&s, "work", n).await;
    report(&loadgen::claim_complete(&s, "work", n, 100, 4).await);
    drop(s);

    let s = sqlite(dir.path(), "latency.db").await;
    loadgen::fill(&s, "lat", 1_000 + 200).await;
    println!(
        "  {}",
        loadgen::claim_latency(&s, "lat", 200, "10^3 queued").await
    );
    drop(s);
    if deep > 0 {
        let s = sqlite(dir.path(), "deep.db").await;
        let start = std::time::Instant::now();
        loadgen::fill(&s, "lat", deep + 200).await;
        println!("  (queued {deep} jobs in {:.1?})", start.elapsed());
        println!(
            "  {}",
            loadgen::claim_latency(&s, "lat", 200, "10^6 queued").await
        );
        let start = std::time::Instant::now();
        let stats = s.stats().await.unwrap();
        println!(
            "  stats over {} pending jobs: {:.2?}",
            stats.types["lat"].counts.values().sum::<u64>(),
            start.elapsed()
        );
    }
}
