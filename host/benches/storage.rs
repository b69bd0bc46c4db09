//! Criterion benchmark of the SQLite storage through the `Storage` trait: enqueue (single,
//! batched), claim+complete (single, batched) and claim latency with 10^3 and 10^6 jobs
//! queued. The timed loops are `storage::loadgen`'s, shared with the dev-profile figures
//! test (`tests/storage_bench.rs`), which is the cheap way to get the same numbers:
//! `cargo bench` builds wasmtime in release first.
//!
//! `cargo bench -p spool-host --features testing --bench storage`
//! Run as a test (`cargo test --benches`), criterion runs each once with 10^4 instead of
//! 10^6 queued jobs.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[cfg(not(feature = "testing"))]
fn main() {
    eprintln!("the storage benchmark needs `--features testing` (it uses storage::loadgen)");
}

#[cfg(feature = "testing")]
criterion::criterion_main!(bench::benches);

#[cfg(feature = "testing")]
mod bench {
    use criterion::{Criterion, Throughput, criterion_group};
    use spool_host::job::SystemClock;
    use spool_host::storage::loadgen;
    use spool_host::storage::sqlite::SqliteStorage;
    use spool_host::storage::{Storage, StorageOptions};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::runtime::Runtime;

    fn runtime() -> Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("tokio runtime")
    }

    fn open(rt: &Runtime, dir: &tempfile::TempDir, name: &str) -> Arc<dyn Storage> {
        let path = dir.path().join(name);
        let s = rt.block_on(SqliteStorage::open(
            path,
            StorageOptions::default(),
            Arc::new(SystemClock),
        ));
        Arc::new(s.expect("open sqlite"))
    }

    /// `cargo bench` passes `--bench`; `cargo test --benches` does not (criterion's test mode).
    fn measuring() -> bool {
        std::env::args().any(|a| a == "--bench")
    }

    fn enqueue(c: &mut Criterion) {
        let rt = runtime();
        let dir = tempfile::tempdir().expect("temp dir");
        let s = open(&rt, &dir, "enqueue.db");
        let mut group = c.benchmark_group("sqlite/enqueue");
        group.throughput(Throughput::Elements(1));
        group.bench_function("single", |b| {
            b.iter_custom(|iters| {
                rt.block_on(loadgen::enqueue_one_by_one(&s, "single", iters))
                    .elapsed
            })
        });
        group.throughput(Throughput::Elements(100));
        group.bench_function("batch_100", |b| {
            b.iter_custom(|iters| {
                rt.block_on(loadgen::enqueue_batches(&s, "batched", iters * 100, 100))
                    .elapsed
            })
        });
        group.finish();
    }

    fn claim_complete(c: &mut Criterion) {
        let rt = runtime();
        let dir = tempfile::tempdir().expect("temp dir");
        let s = open(&rt, &dir, "claim.db");
        let mut group = c.benchmark_group("sqlite/claim_complete");
        group.throughput(Throughput::Elements(1));
        group.bench_function("single", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    loadgen::fill(&s, "one", iters).await;
                    loadgen::claim_complete(&s, "one", iters, 1, 1)
                        .await
                        .elapsed
                })
            })
        });
        group.throughput(Throughput::Elements(100));
        group.bench_function("batch_100", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    loadgen::fill(&s, "hundred", iters * 100).await;
                    loadgen::claim_complete(&s, "hundred", iters * 100, 100, 4)
                        .await
                        .elapsed
                })
            })
        });
        group.finish();
    }

    fn claim_latency(c: &mut Criterion) {
        let rt = runtime();
        let dir = tempfile::tempdir().expect("temp dir");
        let deep = if measuring() { 1_000_000 } else { 10_000 };
        let mut group = c.benchmark_group("sqlite/claim_latency");
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(5));
        for (label, queued) in [("1e3", 1_000u64), ("1e6", deep)] {
            let s = open(&rt, &dir, &format!("latency-{label}.db"));
            rt.block_on(loadgen::fill(&s, "lat", queued));
            group.bench_function(label, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        // Keep the depth: add what the timed claims will take, untimed.
                        loadgen::fill(&s, "lat", iters).await;
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let l = loadgen::claim_latency(&s, "lat", 1, label).await;
                            total += l.max;
                        }
                        total
                    })
                })
            });
        }
        group.finish();
    }

    criterion_group!(benches, enqueue, claim_complete, claim_latency);
}
