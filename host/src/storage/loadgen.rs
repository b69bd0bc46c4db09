//! Load generators for the storage figures, shared by the criterion benchmark
//! (`benches/storage.rs`) and the dev-profile figures test (`tests/storage_bench.rs`). Each
//! drives a store through the `Storage` trait, as the daemon does, and times it.

use super::{ClaimRequest, Completion, Storage};
use crate::job::NewJob;
use serde_json::value::RawValue;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Jobs done in a time.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub jobs: u64,
    pub elapsed: Duration,
}

impl Figure {
    pub fn per_sec(&self) -> f64 {
        self.jobs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<48} {:>9.0} jobs/s  ({} jobs in {:.2?})",
            self.name,
            self.per_sec(),
            self.jobs,
            self.elapsed
        )
    }
}

/// Percentiles of a latency sample.
#[derive(Debug, Clone)]
pub struct Latency {
    pub name: String,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<48} p50 {:>9.2?}  p99 {:>9.2?}  max {:>9.2?}",
            self.name, self.p50, self.p99, self.max
        )
    }
}

/// A small job like the ones the daemon sees most.
pub fn bench_job(job_type: &str, n: u64) -> NewJob {
    let payload = RawValue::from_string(format!(r#"{{"n":{n},"to":"user@example.com"}}"#))
        .expect("bench payload is JSON");
    NewJob::new(job_type, payload)
}

fn completion(c: &super::Claimed) -> Completion {
    Completion {
        id: c.job.id.clone(),
        lease: c.lease.clone(),
        result: RawValue::from_string(r#"{"ok":true}"#.to_owned()).expect("JSON"),
        logs: Vec::new(),
        plugin_version: Some("bench".into()),
        followups: Vec::new(),
    }
}

fn request(job_type: &str, limit: usize) -> ClaimRequest {
    ClaimRequest {
        types: vec![job_type.to_owned()],
        limit,
        lease: Duration::from_secs(60),
        worker: "bench".into(),
    }
}

/// `n` enqueues, one after the other (each its own transaction).
pub async fn enqueue_one_by_one(s: &Arc<dyn Storage>, job_type: &str, n: u64) -> Figure {
    let start = Instant::now();
    for i in 0..n {
        s.enqueue(bench_job(job_type, i)).await.expect("enqueue");
    }
    Figure {
        name: "enqueue, single, sequential".into(),
        jobs: n,
        elapsed: start.elapsed(),
    }
}

/// `n` single enqueues from `tasks` concurrent callers (the API under load: the SQLite
/// writer group-commits them).
pub async fn enqueue_concurrently(
    s: &Arc<dyn Storage>,
    job_type: &str,
    n: u64,
    tasks: u64,
) -> Figure {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (s, job_type) = (s.clone(), job_type.to_owned());
            tokio::spawn(async move {
                for i in (t..n).step_by(tasks as usize) {
                    s.enqueue(bench_job(&job_type, i)).await.expect("enqueue");
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("enqueue task");
    }
    let name = format!("enqueue, single, {tasks} concurrent callers");
    Figure {
        name,
        jobs: n,
        elapsed: start.elapsed(),
    }
}

/// `n` jobs in batches of `batch`.
pub async fn enqueue_batches(s: &Arc<dyn Storage>, job_type: &str, n: u64, batch: u64) -> Figure {
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let size = batch.min(n - done);
        let jobs = (done..done + size)
            .map(|i| bench_job(job_type, i))
            .collect();
        s.enqueue_batch(jobs).await.expect("enqueue_batch");
        done += size;
    }
    Figure {
        name: format!("enqueue, batches of {batch}"),
        jobs: n,
        elapsed: start.elapsed(),
    }
}

/// Queues `n` jobs quickly (setup, untimed).
pub async fn fill(s: &Arc<dyn Storage>, job_type: &str, n: u64) {
    enqueue_batches(s, job_type, n, 1_000).await;
}

/// Claims and completes `n` queued jobs with `workers` concurrent workers, each claiming up
/// to `batch` at a time and completing them in one call (the daemon's completer batches).
pub async fn claim_complete(
    s: &Arc<dyn Storage>,
    job_type: &str,
    n: u64,
    batch: usize,
    workers: usize,
) -> Figure {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (s, job_type, done) = (s.clone(), job_type.to_owned(), done.clone());
            tokio::spawn(async move {
                while done.load(Ordering::Relaxed) < n {
                    let claimed = s.claim(request(&job_type, batch)).await.expect("claim");
                    if claimed.is_empty() {
                        break;
                    }
                    let count = claimed.len() as u64;
                    s.complete(claimed.iter().map(completion).collect())
                        .await
                        .expect("complete");
                    done.fetch_add(count, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("worker task");
    }
    let name = format!("claim+complete, batches of {batch}, {workers} workers");
    Figure {
        name,
        jobs: done.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    }
}

/// Time of `claim(limit 1)` with the queue as it is, over `samples` claims (each claimed
/// job is completed, untimed, so the queue shrinks by `samples`).
pub async fn claim_latency(
    s: &Arc<dyn Storage>,
    job_type: &str,
    samples: usize,
    label: &str,
) -> Latency {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        let claimed = s.claim(request(job_type, 1)).await.expect("claim");
        times.push(start.elapsed());
        assert_eq!(claimed.len(), 1, "the queue ran dry");
        s.complete(claimed.iter().map(completion).collect())
            .await
            .expect("complete");
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    Latency {
        name: format!("claim latency, {label}"),
        p50: at(0.5),
        p99: at(0.99),
        max: at(1.0),
    }
}
