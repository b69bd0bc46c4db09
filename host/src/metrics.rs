//! Prometheus metrics: every metric name lives in this file. Counters and histograms are
//! plain atomics keyed by job type (written by the API handlers, the pool's completer and the
//! maintenance tasks); gauges that describe the queue are read from storage at scrape time.
//! `render` writes the text exposition format (version 0.0.4).

use crate::storage::Stats;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub const JOBS_ENQUEUED: &str = "spool_jobs_enqueued_total";
pub const JOBS_STARTED: &str = "spool_jobs_started_total";
pub const JOBS_COMPLETED: &str = "spool_jobs_completed_total";
pub const JOBS_FAILED: &str = "spool_jobs_failed_total";
pub const JOBS_RETRIED: &str = "spool_jobs_retried_total";
pub const JOBS_CANCELLED: &str = "spool_jobs_cancelled_total";
pub const JOBS_LEASE_LOST: &str = "spool_jobs_lease_lost_total";
pub const JOB_DURATION: &str = "spool_job_duration_seconds";
pub const QUEUE_DEPTH: &str = "spool_queue_depth";
pub const OLDEST_PENDING_AGE: &str = "spool_oldest_pending_age_seconds";
pub const WORKERS: &str = "spool_workers";
pub const WORKERS_BUSY: &str = "spool_workers_busy";
pub const LEASES_REAPED: &str = "spool_leases_reaped_total";
pub const JOBS_PROMOTED: &str = "spool_jobs_promoted_total";
pub const JOBS_SWEPT: &str = "spool_jobs_swept_total";
pub const PLUGINS_LOADED: &str = "spool_plugins_loaded";
pub const PLUGINS_FAILED: &str = "spool_plugins_failed";
pub const STORAGE_ERRORS: &str = "spool_storage_errors_total";

/// Upper bounds (seconds) of the job duration histogram: wasm jobs take from tens of
/// microseconds (no-op) to the default 30 s timeout.
const DURATION_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Picks one counter of a type's counters (for rendering them in a loop).
type CounterField = fn(&TypeCounters) -> &AtomicU64;

#[derive(Default)]
struct TypeCounters {
    enqueued: AtomicU64,
    started: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    cancelled: AtomicU64,
    lease_lost: AtomicU64,
    duration: Histogram,
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// What happened to a finished attempt, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    Completed,
    Retried,
    Failed,
    /// A running job a user cancelled stopped.
    Cancelled,
    LeaseLost,
}

/// The daemon's metrics. Cheap to share (`Arc`); every method is lock-free after a type's
/// first use.
#[derive(Default)]
pub struct Metrics {
    types: RwLock<BTreeMap<String, Arc<TypeCounters>>>,
    workers: AtomicU64,
    workers_busy: AtomicU64,
    reaped: AtomicU64,
    promoted: AtomicU64,
    swept: AtomicU64,
    storage_errors: AtomicU64,
}

/// Values read at scrape time by the caller of `render`.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub stats: Option<Stats>,
    pub plugins_loaded: u64,
    pub plugins_failed: u64,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    fn of(&self, job_type: &str) -> Arc<TypeCounters> {
        if let Ok(map) = self.types.read()
            && let Some(c) = map.get(job_type)
        {
            return c.clone();
        }
        let mut map = self.types.write().unwrap_or_else(|p| p.into_inner());
        map.entry(job_type.to_string()).or_default().clone()
    }

    pub fn enqueued(&self, job_type: &str, n: u64) {
        self.of(job_type).enqueued.fetch_add(n, Ordering::Relaxed);
    }

    pub fn started(&self, job_type: &str) {
        self.of(job_type).started.fetch_add(1, Ordering::Relaxed);
    }

    /// One attempt ended; `ran` is how long the plugin ran.
    pub fn attempt_ended(&self, job_type: &str, end: AttemptEnd, ran: Duration) {
        let c = self.of(job_type);
        c.duration.observe(ran);
        let counter = match end {
            AttemptEnd::Completed => &c.completed,
            AttemptEnd::Retried => &c.retried,
            AttemptEnd::Failed => &c.failed,
            AttemptEnd::Cancelled => &c.cancelled,
            AttemptEnd::LeaseLost => &c.lease_lost,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_workers(&self, total: usize) {
        self.workers.store(total as u64, Ordering::Relaxed);
    }

    pub fn worker_busy(&self, busy: bool) {
        if busy {
            self.workers_busy.fetch_add(1, Ordering::Relaxed);
        } else {
            self.workers_busy.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn busy_workers(&self) -> u64 {
        self.workers_busy.load(Ordering::Relaxed)
    }

    pub fn total_workers(&self) -> u64 {
        self.workers.load(Ordering::Relaxed)
    }

    pub fn reaped(&self, n: u64) {
        self.reaped.fetch_add(n, Ordering::Relaxed);
    }

    pub fn promoted(&self, n: u64) {
        self.promoted.fetch_add(n, Ordering::Relaxed);
    }

    pub fn swept(&self, n: u64) {
        self.swept.fetch_add(n, Ordering::Relaxed);
    }

    pub fn storage_error(&self) {
        self.storage_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text format.
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut out = String::with_capacity(4096);
        let types: Vec<(String, Arc<TypeCounters>)> = self
            .types
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let per_type: [(&str, &str, CounterField); 7] = [
            (JOBS_ENQUEUED, "Jobs enqueued through this daemon.", |c| {
                &c.enqueued
            }),
            (JOBS_STARTED, "Attempts started by this daemon.", |c| {
                &c.started
            }),
            (JOBS_COMPLETED, "Attempts that completed their job.", |c| {
                &c.completed
            }),
            (
                JOBS_FAILED,
                "Attempts that moved their job to failed (dead letter).",
                |c| &c.failed,
            ),
            (
                JOBS_RETRIED,
                "Attempts that failed and scheduled a retry.",
                |c| &c.retried,
            ),
            (
                JOBS_CANCELLED,
                "Running jobs stopped because a user cancelled them.",
                |c| &c.cancelled,
            ),
            (
                JOBS_LEASE_LOST,
                "Attempts whose result was dropped: the lease was lost.",
                |c| &c.lease_lost,
            ),
        ];
        for (name, help, field) in per_type {
            header(&mut out, name, help, "counter");
            for (t, c) in &types {
                let _ = writeln!(
                    out,
                    "{name}{{type=\"{}\"}} {}",
                    escape(t),
                    field(c).load(Ordering::Relaxed)
                );
            }
        }
        header(
            &mut out,
            JOB_DURATION,
            "How long attempts ran in their plugin.",
            "histogram",
        );
        for (t, c) in &types {
            let t = escape(t);
            let mut cumulative = 0;
            for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
                cumulative += c.duration.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{JOB_DURATION}_bucket{{type=\"{t}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = c.duration.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{JOB_DURATION}_bucket{{type=\"{t}\",le=\"+Inf\"}} {count}"
            );
            let sum = c.duration.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{JOB_DURATION}_sum{{type=\"{t}\"}} {sum}");
            let _ = writeln!(out, "{JOB_DURATION}_count{{type=\"{t}\"}} {count}");
        }
        if let Some(stats) = &snap.stats {
            header(
                &mut out,
                QUEUE_DEPTH,
                "Jobs in storage by type and status.",
                "gauge",
            );
            for (t, ts) in &stats.types {
                for (state, n) in &ts.counts {
                    let status = serde_json::to_value(state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "{QUEUE_DEPTH}{{type=\"{}\",status=\"{status}\"}} {n}",
                        escape(t)
                    );
                }
            }
            header(
                &mut out,
                OLDEST_PENDING_AGE,
                "Age of the oldest ready job per type.",
                "gauge",
            );
            for (t, ts) in &stats.types {
                let age = ts.oldest_pending_age_ms.unwrap_or(0) as f64 / 1000.0;
                let _ = writeln!(out, "{OLDEST_PENDING_AGE}{{type=\"{}\"}} {age}", escape(t));
            }
        }
        let gauges = [
            (
                WORKERS,
                "Job slots of this daemon.",
                "gauge",
                self.workers.load(Ordering::Relaxed),
            ),
            (
                WORKERS_BUSY,
                "Job slots running a job.",
                "gauge",
                self.workers_busy.load(Ordering::Relaxed),
            ),
            (
                LEASES_REAPED,
                "Expired leases returned to the queue.",
                "counter",
                self.reaped.load(Ordering::Relaxed),
            ),
            (
                JOBS_PROMOTED,
                "Scheduled or retrying jobs made ready.",
                "counter",
                self.promoted.load(Ordering::Relaxed),
            ),
            (
                JOBS_SWEPT,
                "Finished jobs deleted by retention.",
                "counter",
                self.swept.load(Ordering::Relaxed),
            ),
            (
                STORAGE_ERRORS,
                "Storage calls that failed in background tasks.",
                "counter",
                self.storage_errors.load(Ordering::Relaxed),
            ),
            (
                PLUGINS_LOADED,
                "Plugins loaded.",
                "gauge",
                snap.plugins_loaded,
            ),
            (
                PLUGINS_FAILED,
                "Plugin files that failed to load.",
                "gauge",
                snap.plugins_failed,
            ),
        ];
        for (name, help, kind, value) in gauges {
            header(&mut out, name, help, kind);
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histogram_render_per_type() {
        let m = Metrics::new();
        m.enqueued("echo", 3);
        m.attempt_ended("echo", AttemptEnd::Completed, Duration::from_millis(2));
        m.attempt_ended("echo", AttemptEnd::Retried, Duration::from_millis(20));
        let text = m.render(&Snapshot::default());
        assert!(
            text.contains("spool_jobs_enqueued_total{type=\"echo\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("spool_jobs_completed_total{type=\"echo\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("spool_jobs_retried_total{type=\"echo\"} 1"),
            "{text}"
        );
        assert!(text.contains("spool_job_duration_seconds_bucket{type=\"echo\",le=\"0.0025\"} 1"));
        assert!(text.contains("spool_job_duration_seconds_bucket{type=\"echo\",le=\"+Inf\"} 2"));
        assert!(text.contains("spool_job_duration_seconds_count{type=\"echo\"} 2"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.enqueued("a\"b\\c", 1);
        let text = m.render(&Snapshot::default());
        assert!(text.contains(r#"{type="a\"b\\c"}"#), "{text}");
    }
}
