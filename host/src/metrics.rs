//! Prometheus metrics: every metric name lives in this file. Counters and histograms are
//! plain atomics keyed by job type (written by the API handlers, the pool's completer and the
//! maintenance tasks); gauges that describe the queue are read from storage at scrape time.
//! `render` writes the text exposition format (version 0.0.4).

use crate::storage::Stats;
use crate::throughput::{Minute, MinuteRing, Outcome};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Most job types with series of their own in `/metrics` (and rows in `/api/v1/stats`);
/// the others are summed under [`OTHER_TYPES`], so that a flood of distinct types cannot
/// grow `/metrics` without end (2,000 types would add some 58,000 lines).
pub const MAX_TYPE_SERIES: usize = 200;
/// The label of the types past [`MAX_TYPE_SERIES`]; no job type can be named this (types
/// start with a letter or digit).
pub const OTHER_TYPES: &str = "(other)";

/// `stats` with at most `max` types: the ones with the most jobs (ties by name), and the
/// rest summed under [`OTHER_TYPES`] (counts added, the oldest pending age kept).
pub fn cap_types(stats: &Stats, max: usize) -> Stats {
    if stats.types.len() <= max {
        return stats.clone();
    }
    let total = |t: &crate::storage::TypeStats| t.counts.values().sum::<u64>();
    let mut by_size: Vec<(&String, &crate::storage::TypeStats)> = stats.types.iter().collect();
    by_size.sort_by(|a, b| total(b.1).cmp(&total(a.1)).then_with(|| a.0.cmp(b.0)));
    let mut out = Stats::default();
    let mut other = crate::storage::TypeStats::default();
    for (i, (name, ts)) in by_size.into_iter().enumerate() {
        if i < max {
            out.types.insert(name.clone(), ts.clone());
            continue;
        }
        for (state, n) in &ts.counts {
            *other.counts.entry(*state).or_default() += n;
        }
        other.oldest_pending_age_ms = other.oldest_pending_age_ms.max(ts.oldest_pending_age_ms);
    }
    out.types.insert(OTHER_TYPES.to_string(), other);
    out
}

pub const JOBS_ENQUEUED: &str = "spool_jobs_enqueued_total";
pub const JOBS_STARTED: &str = "spool_jobs_started_total";
pub const JOBS_COMPLETED: &str = "spool_jobs_completed_total";
pub const JOBS_FAILED: &str = "spool_jobs_failed_total";
pub const JOBS_RETRIED: &str = "spool_jobs_retried_total";
pub const JOBS_CANCELLED: &str = "spool_jobs_cancelled_total";
pub const JOBS_LEASE_LOST: &str = "spool_jobs_lease_lost_total";
pub const JOBS_RELEASED: &str = "spool_jobs_released_total";
pub const JOB_DURATION: &str = "spool_job_duration_seconds";
pub const QUEUE_DEPTH: &str = "spool_queue_depth";
pub const OLDEST_PENDING_AGE: &str = "spool_oldest_pending_age_seconds";
pub const WORKERS: &str = "spool_workers";
pub const WORKERS_BUSY: &str = "spool_workers_busy";
pub const LEASES_REAPED: &str = "spool_leases_reaped_total";
pub const JOBS_PROMOTED: &str = "spool_jobs_promoted_total";
pub const JOBS_SWEPT: &str = "spool_jobs_swept_total";
pub const PLUGINS_LOADED: &str = "spool_plugins_loaded";
pub const PLUGIN_CACHE_ENTRIES: &str = "spool_plugin_cache_entries";
pub const PLUGIN_CACHE_BYTES: &str = "spool_plugin_cache_bytes";
pub const PLUGINS_FAILED: &str = "spool_plugins_failed";
pub const INSTANCES_RUNNING: &str = "spool_instances_running";
pub const INSTANCES_IDLE: &str = "spool_instances_idle";
pub const STORAGE_ERRORS: &str = "spool_storage_errors_total";
pub const STORAGE_UP: &str = "spool_storage_up";
pub const STORAGE_LATENCY: &str = "spool_storage_latency_seconds";
pub const PLUGIN_LOADS: &str = "spool_plugin_loads_total";
pub const PLUGIN_LOAD_FAILURES: &str = "spool_plugin_load_failures_total";
pub const LAST_CLAIM_AGE: &str = "spool_last_claim_age_seconds";
pub const INSTANTIATION: &str = "spool_instantiation_seconds";
pub const HTTP_REQUESTS: &str = "spool_http_requests_total";
pub const HTTP_DURATION: &str = "spool_http_request_duration_seconds";
pub const HTTP_DENIED: &str = "spool_http_denied_total";

/// Upper bounds (seconds) of the outbound request histogram (request sent to response
/// headers, or to the failure).
const HTTP_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// Upper bounds (seconds) of the storage latency histogram (one call: ping, claim, complete,
/// fail).
const STORAGE_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0,
];
/// Upper bounds (seconds) of the instantiation histogram: a pooled instance of a small plugin
/// takes microseconds, a large interpreter-based one (JS, Python) milliseconds.
const INSTANTIATION_BUCKETS: [f64; 12] = [
    0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.1,
];
/// `spool stats` rates cover this window (in slots of `RATE_SLOT`).
pub const RATE_WINDOW: Duration = Duration::from_secs(300);
const RATE_SLOT_SECS: u64 = 5;
const RATE_SLOTS: usize = (300 / RATE_SLOT_SECS) as usize;

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
    released: AtomicU64,
    duration: Histogram,
    recent: std::sync::Mutex<RateRing>,
}

struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new(&DURATION_BUCKETS)
    }
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// `NAME_bucket{LABELS,le=..}`, `NAME_sum`, `NAME_count`; `labels` is `k="v"` text.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Adds `d` to the histogram of `key` in `map`, created with `bounds` on first use (a read
/// lock only, after that).
fn observe_keyed(
    map: &RwLock<BTreeMap<String, Arc<Histogram>>>,
    key: &str,
    bounds: &'static [f64],
    d: Duration,
) {
    if let Ok(m) = map.read()
        && let Some(h) = m.get(key)
    {
        h.observe(d);
        return;
    }
    map.write()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key.to_string())
        .or_insert_with(|| Arc::new(Histogram::new(bounds)))
        .observe(d);
}

/// Buckets of the recent-duration histogram behind `p95_duration_ms`: four per doubling of
/// microseconds (each about 19% wide), from 1 µs to beyond an hour.
const P95_BUCKETS: usize = 4 * 42;

fn duration_bucket(us: u64) -> usize {
    let i = ((us.max(1) as f64).log2() * 4.0) as usize;
    i.min(P95_BUCKETS - 1)
}

/// The upper bound of a bucket, in microseconds.
fn bucket_upper_us(i: usize) -> f64 {
    2f64.powf((i + 1) as f64 / 4.0)
}

/// One slot of a `RateRing`.
#[derive(Clone)]
struct RateSlot {
    /// Slot number since the epoch.
    slot: u64,
    attempts: u64,
    /// Summed run time, in microseconds.
    total_us: u64,
    max_us: u64,
    buckets: Box<[u32; P95_BUCKETS]>,
}

impl RateSlot {
    fn empty(slot: u64) -> RateSlot {
        RateSlot {
            slot,
            attempts: 0,
            total_us: 0,
            max_us: 0,
            buckets: Box::new([0; P95_BUCKETS]),
        }
    }
}

/// Attempts that ended in the last `RATE_WINDOW`, in slots of `RATE_SLOT_SECS`, for
/// jobs per minute, average and 95th-percentile duration.
struct RateRing {
    slots: Vec<RateSlot>,
}

impl Default for RateRing {
    fn default() -> Self {
        RateRing {
            slots: vec![RateSlot::empty(0); RATE_SLOTS],
        }
    }
}

/// What a `RateRing` holds for a window.
struct RateSum {
    attempts: u64,
    total_us: u64,
    /// The 95th percentile, in microseconds: the upper bound of its bucket, at most the
    /// longest attempt.
    p95_us: Option<f64>,
}

impl RateRing {
    fn add(&mut self, now_s: u64, ran: Duration) {
        let slot = now_s / RATE_SLOT_SECS;
        let cell = &mut self.slots[(slot % RATE_SLOTS as u64) as usize];
        if cell.slot != slot {
            cell.slot = slot;
            cell.attempts = 0;
            cell.total_us = 0;
            cell.max_us = 0;
            cell.buckets.fill(0);
        }
        let us = u64::try_from(ran.as_micros()).unwrap_or(u64::MAX);
        cell.attempts += 1;
        cell.total_us = cell.total_us.saturating_add(us);
        cell.max_us = cell.max_us.max(us);
        let b = &mut cell.buckets[duration_bucket(us)];
        *b = b.saturating_add(1);
    }

    /// The attempts in the window ending at `now_s`.
    fn sum(&self, now_s: u64) -> RateSum {
        let current = now_s / RATE_SLOT_SECS;
        let live: Vec<&RateSlot> = self
            .slots
            .iter()
            .filter(|c| {
                c.attempts > 0 && c.slot + (RATE_SLOTS as u64) > current && c.slot <= current
            })
            .collect();
        let attempts: u64 = live.iter().map(|c| c.attempts).sum();
        let total_us = live.iter().fold(0u64, |t, c| t.saturating_add(c.total_us));
        let max_us = live.iter().map(|c| c.max_us).max().unwrap_or(0);
        let mut p95_us = None;
        if attempts > 0 {
            let rank = (attempts as f64 * 0.95).ceil() as u64;
            let mut seen = 0u64;
            for i in 0..P95_BUCKETS {
                seen += live.iter().map(|c| u64::from(c.buckets[i])).sum::<u64>();
                if seen >= rank {
                    p95_us = Some(bucket_upper_us(i).min(max_us as f64));
                    break;
                }
            }
        }
        RateSum {
            attempts,
            total_us,
            p95_us,
        }
    }
}

/// Recent throughput of one job type in this daemon (`RATE_WINDOW`, or since start-up when
/// that is shorter).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Rate {
    /// Attempts finished (completed, failed or retried) per minute.
    pub jobs_per_minute: f64,
    /// Mean run time of those attempts, in milliseconds (None when there were none).
    pub avg_duration_ms: Option<f64>,
    /// 95th percentile of their run times, in milliseconds (within about 19%).
    pub p95_duration_ms: Option<f64>,
    /// The window the figures cover, in seconds.
    pub window_s: u64,
}

fn unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
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
    /// Given back to the queue before the plugin ran (no free instance slot); the attempt
    /// is not counted.
    Released,
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
    /// Storage call latency by operation (`ping`, `claim`, `complete`, `fail`).
    storage_latency: RwLock<BTreeMap<String, Arc<Histogram>>>,
    /// Time to set up a job's store and instantiate its plugin, by plugin.
    instantiation: RwLock<BTreeMap<String, Arc<Histogram>>>,
    /// Plugin name -> (loads, load failures).
    plugin_loads: RwLock<BTreeMap<String, (u64, u64)>>,
    /// Outbound requests by (plugin, host, status or error kind). Hosts are those a plugin's
    /// allow-list let through, so the set stays as small as the manifests make it.
    http_requests: RwLock<BTreeMap<(String, String, String), u64>>,
    /// Outbound request duration, by plugin.
    http_duration: RwLock<BTreeMap<String, Arc<Histogram>>>,
    /// Requests refused before connecting, by (plugin, reason).
    http_denied: RwLock<BTreeMap<(String, String), u64>>,
    /// Unix ms of the last claim that returned a job (0: none yet).
    last_claim_ms: AtomicU64,
    /// When these metrics were created (the daemon's start).
    created: Option<std::time::Instant>,
    /// Attempts per minute over the last hour (the dashboard's throughput chart).
    minutes: std::sync::Mutex<MinuteRing>,
}

/// Values read at scrape time by the caller of `render`.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub stats: Option<Stats>,
    pub plugins_loaded: u64,
    pub plugins_failed: u64,
    /// Storage answered this scrape's ping.
    pub storage_up: bool,
    /// What each loaded plugin's cache holds.
    pub plugin_caches: BTreeMap<String, crate::storage::CacheUsage>,
    /// Wasm instances running a job, and those kept between jobs for plugins with
    /// `instances = "reuse"`.
    pub instances: InstanceCounts,
}

/// WebAssembly instances of the runtime, as `/metrics` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceCounts {
    /// Running a job.
    pub running: u32,
    /// Kept between jobs of plugins with `instances = "reuse"`.
    pub idle: u32,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics {
            created: Some(std::time::Instant::now()),
            ..Metrics::default()
        })
    }

    /// A storage call took `d` (`op`: ping, claim, complete, fail).
    pub fn storage_call(&self, op: &str, d: Duration) {
        observe_keyed(&self.storage_latency, op, &STORAGE_BUCKETS, d);
    }

    /// A job's instance of `plugin` was ready after `d` (store setup plus instantiation).
    pub fn instantiated(&self, plugin: &str, d: Duration) {
        observe_keyed(&self.instantiation, plugin, &INSTANTIATION_BUCKETS, d);
    }

    /// The outbound HTTP series, in the text format.
    fn render_http(&self, out: &mut String) {
        header(
            out,
            HTTP_REQUESTS,
            "Outbound HTTP requests of plugins, by plugin, host and status (or error kind).",
            "counter",
        );
        let requests: Vec<((String, String, String), u64)> = self
            .http_requests
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        for ((plugin, host, status), n) in requests {
            let _ = writeln!(
                out,
                "{HTTP_REQUESTS}{{plugin=\"{}\",host=\"{}\",status=\"{}\"}} {n}",
                escape(&plugin),
                escape(&host),
                escape(&status)
            );
        }
        header(
            out,
            HTTP_DURATION,
            "Time from sending an outbound request to its response headers (or failure).",
            "histogram",
        );
        let durations: Vec<(String, Arc<Histogram>)> = self
            .http_duration
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (plugin, h) in durations {
            h.render(
                out,
                HTTP_DURATION,
                &format!("plugin=\"{}\"", escape(&plugin)),
            );
        }
        header(
            out,
            HTTP_DENIED,
            "Outbound requests refused before connecting, by plugin and reason.",
            "counter",
        );
        let denied: Vec<((String, String), u64)> = self
            .http_denied
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        for ((plugin, reason), n) in denied {
            let _ = writeln!(
                out,
                "{HTTP_DENIED}{{plugin=\"{}\",reason=\"{}\"}} {n}",
                escape(&plugin),
                escape(&reason)
            );
        }
    }

    /// A plugin loaded (`ok`) or its file failed to load.
    pub fn plugin_load(&self, name: &str, ok: bool) {
        let mut map = self.plugin_loads.write().unwrap_or_else(|p| p.into_inner());
        let e = map.entry(name.to_string()).or_default();
        if ok {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }

    /// A claim returned `n` jobs.
    pub fn claimed(&self, n: usize) {
        if n > 0 {
            self.last_claim_ms
                .store(unix_now().as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Time since the last claim that returned a job, or since start-up when there was none.
    pub fn since_last_claim(&self) -> Duration {
        match self.last_claim_ms.load(Ordering::Relaxed) {
            0 => self.created.map(|c| c.elapsed()).unwrap_or_default(),
            ms => unix_now().saturating_sub(Duration::from_millis(ms)),
        }
    }

    /// Time since these metrics were created.
    pub fn uptime(&self) -> Duration {
        self.created.map(|c| c.elapsed()).unwrap_or_default()
    }

    /// Jobs per minute, mean and 95th-percentile duration of each type seen by this daemon.
    pub fn rates(&self) -> BTreeMap<String, Rate> {
        let now_s = unix_now().as_secs();
        let window = self.uptime().clamp(Duration::from_secs(1), RATE_WINDOW);
        let types: Vec<(String, Arc<TypeCounters>)> = self
            .types
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        types
            .into_iter()
            .map(|(t, c)| {
                let sum = c.recent.lock().map(|r| r.sum(now_s)).ok();
                let (n, us) = sum.as_ref().map_or((0, 0), |s| (s.attempts, s.total_us));
                let rate = Rate {
                    jobs_per_minute: n as f64 * 60.0 / window.as_secs_f64(),
                    avg_duration_ms: (n > 0).then(|| us as f64 / n as f64 / 1000.0),
                    p95_duration_ms: sum.and_then(|s| s.p95_us).map(|us| us / 1000.0),
                    window_s: window.as_secs(),
                };
                (t, rate)
            })
            .collect()
    }

    fn of(&self, job_type: &str) -> Arc<TypeCounters> {
        if let Ok(map) = self.types.read()
            && let Some(c) = map.get(job_type)
        {
            return c.clone();
        }
        let mut map = self.types.write().unwrap_or_else(|p| p.into_inner());
        let key = if map.contains_key(job_type) || map.len() < MAX_TYPE_SERIES {
            job_type
        } else {
            OTHER_TYPES
        };
        map.entry(key.to_string()).or_default().clone()
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
        // A released attempt never reached its plugin: no duration, no recent rate.
        if end != AttemptEnd::Released {
            c.duration.observe(ran);
        }
        if !matches!(end, AttemptEnd::LeaseLost | AttemptEnd::Released)
            && let Ok(mut r) = c.recent.lock()
        {
            r.add(unix_now().as_secs(), ran);
        }
        let counter = match end {
            AttemptEnd::Completed => &c.completed,
            AttemptEnd::Retried => &c.retried,
            AttemptEnd::Failed => &c.failed,
            AttemptEnd::Cancelled => &c.cancelled,
            AttemptEnd::LeaseLost => &c.lease_lost,
            AttemptEnd::Released => &c.released,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let outcome = match end {
            AttemptEnd::Completed => Some(Outcome::Completed),
            AttemptEnd::Failed => Some(Outcome::Failed),
            AttemptEnd::Retried => Some(Outcome::Retried),
            _ => None,
        };
        if let Some(o) = outcome
            && let Ok(mut m) = self.minutes.lock()
        {
            m.add(unix_now().as_millis() as u64, o);
        }
    }

    /// Completed, failed and retried attempts per minute, the last hour, oldest first.
    pub fn throughput(&self) -> Vec<Minute> {
        let now = unix_now().as_millis() as u64;
        self.minutes
            .lock()
            .map(|m| m.series(now))
            .unwrap_or_default()
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
        let per_type: [(&str, &str, CounterField); 8] = [
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
            (
                JOBS_RELEASED,
                "Attempts given back to the queue before the plugin ran (no free instance slot), not counted.",
                |c| &c.released,
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
            c.duration
                .render(&mut out, JOB_DURATION, &format!("type=\"{}\"", escape(t)));
        }
        header(
            &mut out,
            STORAGE_LATENCY,
            "Latency of storage calls by operation (ping, claim, complete, fail).",
            "histogram",
        );
        let latency: Vec<(String, Arc<Histogram>)> = self
            .storage_latency
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (op, h) in latency {
            h.render(&mut out, STORAGE_LATENCY, &format!("op=\"{op}\""));
        }
        header(
            &mut out,
            INSTANTIATION,
            "Time to set up a job's sandbox and instantiate its plugin, by plugin.",
            "histogram",
        );
        let inst: Vec<(String, Arc<Histogram>)> = self
            .instantiation
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (p, h) in inst {
            h.render(
                &mut out,
                INSTANTIATION,
                &format!("plugin=\"{}\"", escape(&p)),
            );
        }
        let loads: Vec<(String, (u64, u64))> = self
            .plugin_loads
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        header(
            &mut out,
            PLUGIN_LOADS,
            "Plugin versions loaded (start-up and hot reloads).",
            "counter",
        );
        for (p, (ok, _)) in &loads {
            let _ = writeln!(out, "{PLUGIN_LOADS}{{plugin=\"{}\"}} {ok}", escape(p));
        }
        header(
            &mut out,
            PLUGIN_LOAD_FAILURES,
            "Plugin files that failed to load or reload.",
            "counter",
        );
        for (p, (_, failed)) in &loads {
            let _ = writeln!(
                out,
                "{PLUGIN_LOAD_FAILURES}{{plugin=\"{}\"}} {failed}",
                escape(p)
            );
        }
        self.render_http(&mut out);
        if let Some(stats) = &snap.stats {
            let stats = &cap_types(stats, MAX_TYPE_SERIES);
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
                LAST_CLAIM_AGE,
                "Seconds since a claim last returned a job (since start-up if none).",
                "gauge",
                self.since_last_claim().as_secs(),
            ),
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
                STORAGE_UP,
                "1 when storage answered this scrape's ping, else 0 (then no queue gauges).",
                "gauge",
                u64::from(snap.storage_up),
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
            (
                INSTANCES_RUNNING,
                "WebAssembly instances running a job.",
                "gauge",
                u64::from(snap.instances.running),
            ),
            (
                INSTANCES_IDLE,
                "WebAssembly instances kept between jobs (plugins with instances = \"reuse\").",
                "gauge",
                u64::from(snap.instances.idle),
            ),
        ];
        for (name, help, kind, value) in gauges {
            header(&mut out, name, help, kind);
            let _ = writeln!(out, "{name} {value}");
        }
        if !snap.plugin_caches.is_empty() {
            for (name, help, field) in [
                (
                    PLUGIN_CACHE_ENTRIES,
                    "Entries in each loaded plugin's cache (expired ones not yet dropped count).",
                    (|u: &crate::storage::CacheUsage| u.entries) as fn(&_) -> u64,
                ),
                (
                    PLUGIN_CACHE_BYTES,
                    "Bytes of keys and values in each loaded plugin's cache.",
                    |u: &crate::storage::CacheUsage| u.bytes,
                ),
            ] {
                header(&mut out, name, help, "gauge");
                for (plugin, u) in &snap.plugin_caches {
                    let _ = writeln!(out, "{name}{{plugin=\"{}\"}} {}", escape(plugin), field(u));
                }
            }
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

impl crate::runtime::HttpObserver for Metrics {
    fn request(&self, plugin: &str, host: &str, status: &str, duration: Duration) {
        let mut map = self
            .http_requests
            .write()
            .unwrap_or_else(|p| p.into_inner());
        *map.entry((plugin.to_string(), host.to_string(), status.to_string()))
            .or_default() += 1;
        drop(map);
        observe_keyed(&self.http_duration, plugin, &HTTP_BUCKETS, duration);
    }

    fn denied(&self, plugin: &str, reason: &str) {
        let mut map = self.http_denied.write().unwrap_or_else(|p| p.into_inner());
        *map.entry((plugin.to_string(), reason.to_string()))
            .or_default() += 1;
    }
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
    fn metric_series_per_type_are_capped_with_an_other_bucket() {
        let m = Metrics::new();
        let mut stats = Stats::default();
        for i in 0..2000 {
            let t = format!("type-{i:04}");
            m.enqueued(&t, 1);
            let mut ts = crate::storage::TypeStats::default();
            ts.counts.insert(crate::job::JobState::Pending, 1);
            stats.types.insert(t, ts);
        }
        let text = m.render(&Snapshot {
            stats: Some(stats),
            ..Snapshot::default()
        });
        let lines = |name: &str| text.lines().filter(|l| l.starts_with(name)).count();
        assert_eq!(lines("spool_jobs_enqueued_total{"), MAX_TYPE_SERIES + 1);
        assert_eq!(lines("spool_queue_depth{"), MAX_TYPE_SERIES + 1);
        assert!(
            text.contains("spool_jobs_enqueued_total{type=\"(other)\"} 1800"),
            "{text}"
        );
        assert!(
            text.contains("spool_queue_depth{type=\"(other)\",status=\"pending\"} 1800"),
            "{text}"
        );
    }

    #[test]
    fn instances_running_and_idle_are_gauges() {
        let text = Metrics::new().render(&Snapshot {
            instances: InstanceCounts {
                running: 2,
                idle: 3,
            },
            ..Snapshot::default()
        });
        for line in [
            "# TYPE spool_instances_running gauge\nspool_instances_running 2\n",
            "# TYPE spool_instances_idle gauge\nspool_instances_idle 3\n",
        ] {
            assert!(text.contains(line), "{text}");
        }
    }

    #[test]
    fn instantiation_time_is_a_histogram_per_plugin() {
        let m = Metrics::new();
        m.instantiated("echo", Duration::from_micros(7));
        m.instantiated("echo", Duration::from_millis(3));
        let text = m.render(&Snapshot::default());
        assert!(
            text.contains("spool_instantiation_seconds_bucket{plugin=\"echo\",le=\"0.00001\"} 1"),
            "{text}"
        );
        assert!(text.contains("spool_instantiation_seconds_count{plugin=\"echo\"} 2"));
        assert!(text.contains("spool_instantiation_seconds_sum{plugin=\"echo\"} 0.003007"));
    }

    #[test]
    fn rates_count_recent_attempts_and_their_mean_duration() {
        let m = Metrics::new();
        m.attempt_ended("echo", AttemptEnd::Completed, Duration::from_millis(10));
        m.attempt_ended("echo", AttemptEnd::Failed, Duration::from_millis(30));
        m.attempt_ended("echo", AttemptEnd::LeaseLost, Duration::from_millis(999));
        let r = m.rates()["echo"];
        assert_eq!(r.window_s, 1);
        assert!((r.jobs_per_minute - 120.0).abs() < 1e-9, "{r:?}");
        assert!((r.avg_duration_ms.unwrap() - 20.0).abs() < 0.01, "{r:?}");
        assert_eq!(r.p95_duration_ms, Some(30.0), "the longest of two: {r:?}");
    }

    #[test]
    fn p95_of_recent_attempts_is_within_a_bucket() {
        let m = Metrics::new();
        // 95 attempts of 1 ms, 5 of 200 ms: the 95th is 1 ms; 90 of 1 ms: it is 200 ms.
        for _ in 0..95 {
            m.attempt_ended("a", AttemptEnd::Completed, Duration::from_millis(1));
            m.attempt_ended("b", AttemptEnd::Completed, Duration::from_millis(1));
        }
        for _ in 0..5 {
            m.attempt_ended("a", AttemptEnd::Completed, Duration::from_millis(200));
            m.attempt_ended("b", AttemptEnd::Completed, Duration::from_millis(200));
        }
        for _ in 0..5 {
            m.attempt_ended("b", AttemptEnd::Completed, Duration::from_millis(200));
        }
        let rates = m.rates();
        let a = rates["a"].p95_duration_ms.unwrap();
        assert!((1.0..=1.2).contains(&a), "{a}");
        let b = rates["b"].p95_duration_ms.unwrap();
        assert!((200.0 * 0.8..=200.0).contains(&b), "{b}");
    }

    #[test]
    fn storage_latency_and_plugin_loads_are_rendered() {
        let m = Metrics::new();
        m.storage_call("ping", Duration::from_micros(300));
        m.plugin_load("echo", true);
        m.plugin_load("echo", false);
        m.claimed(1);
        let text = m.render(&Snapshot::default());
        assert!(
            text.contains("spool_storage_latency_seconds_bucket{op=\"ping\",le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("spool_plugin_loads_total{plugin=\"echo\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("spool_plugin_load_failures_total{plugin=\"echo\"} 1"),
            "{text}"
        );
        assert!(text.contains("spool_last_claim_age_seconds 0"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.enqueued("a\"b\\c", 1);
        let text = m.render(&Snapshot::default());
        assert!(text.contains(r#"{type="a\"b\\c"}"#), "{text}");
    }
}
