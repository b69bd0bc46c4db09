//! The storage trait every backend implements (SQLite, memory, Redis), the types it speaks,
//! and `open` which picks a backend from a URL. The rules below are the semantics;
//! `conformance.rs` is their executable form.
//!
//! Rules every backend follows (the conformance suite checks each):
//! - Enqueue is idempotent by id: an existing id returns that job with `created: false`, as
//!   does a live job holding the unique key. Live = scheduled, pending, running, retrying.
//! - A job that was asked to cancel while running ends `cancelled` when its attempt ends by
//!   `fail`, `release` or lease expiry (`Settled::Moved(Cancelled)`); `complete` still wins.
//! - `fail` with `retry_at` always goes to `retrying` (even when `retry_at <= now`) while
//!   attempts remain; `promote_due` makes it `pending`.
//! - Released jobs keep their ready time (they go back to the front of their priority);
//!   reaped jobs become ready at the reap time.
//! - Job events: `job.created` (enqueue), `job.started` (claim), `job.progress`,
//!   `job.completed`, `job.retrying` (failed attempt with attempts left, expired lease
//!   requeued, or replay with `"replay": true`), `job.failed`, `job.cancelled`. Each carries
//!   `status` and `attempt` in `data`. Imports write no events.
//! - Cache: `ttl` on `cache_set` replaces the expiry (None: never expires); on
//!   `cache_increment` it applies only when the call creates the key (a counter keeps the
//!   window it started with). A missing or expired key counts from 0; a value that is not
//!   an integer is `InvalidInput`. A namespace holds at most `cache_quota` entries and bytes
//!   (key plus value): a set or increment that would add an entry or bytes past it is
//!   `InvalidInput` and changes nothing; expired entries are dropped before that is decided.
//! - `stats` counts exactly, except that SQLite stores of 100,000 jobs or more answer from a
//!   count about a second old (counting reads every job: 110 ms at 1,000,000).
//! - Event ids are decimal integers that increase (SQLite's rowid, a counter in memory);
//!   treat them as opaque strings elsewhere (Redis stream ids differ).

use crate::job::{Clock, Job, JobError, JobState, LeaseToken, Millis, NewJob, Progress};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod event_ids;
pub mod fallback;
pub mod flow;
mod job_events;
pub mod limits;
#[cfg(any(test, feature = "testing"))]
pub mod loadgen;
pub mod memory;
pub mod redis;
pub mod sqlite;
mod transitions;

pub use event_ids::{compare_event_ids, event_position};

/// A wake-up for the tasks of this process waiting on a store: every current waiter wakes,
/// and one permit stays for a waiter that is between its read and its wait (without it, that
/// waiter would sleep out its whole timeout).
#[derive(Debug, Default)]
pub struct Signal(tokio::sync::Notify);

impl Signal {
    pub fn notify(&self) {
        self.0.notify_waiters();
        self.0.notify_one();
    }

    /// Until the next `notify` (or a permit left by one), or `timeout`.
    pub async fn wait(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.0.notified()).await;
    }
}

/// What a backend signals to waiters in this process: work that may be ready, and events
/// written.
#[derive(Debug, Default)]
pub struct Wakers {
    pub work: Signal,
    pub events: Signal,
}

/// Errors callers branch on. Messages say what failed, why, and what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The caller's input is wrong (payload too large or not JSON, bad priority...). Nothing
    /// was written.
    #[error("{0}")]
    InvalidInput(String),
    /// The backend cannot be reached or refused the operation; it may work later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The stored data cannot be read (corrupt file, unknown schema version...).
    #[error("storage corrupt: {0}")]
    Corrupt(String),
    #[error("storage error: {0}")]
    Internal(String),
}

impl From<JobError> for StorageError {
    fn from(e: JobError) -> Self {
        StorageError::InvalidInput(e.to_string())
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// `list` returns this many jobs when the filter's limit is 0.
pub const DEFAULT_LIST_LIMIT: usize = 100;
/// `list` never returns more than this many jobs in one page.
pub const MAX_LIST_LIMIT: usize = 1000;
/// Events kept by default; `sweep_retention` trims older ones.
pub const DEFAULT_MAX_EVENTS: u64 = 100_000;

/// Settings every backend reads. Build with `..Default::default()`: backends add fields.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Largest accepted payload (and follow-up payload, and cache value), in bytes.
    pub max_payload_bytes: usize,
    /// How many events the event log keeps; `sweep_retention` trims the oldest beyond it.
    pub max_events: u64,
    /// What one cache namespace (one plugin) may hold.
    pub cache_quota: CacheQuota,
    /// Options only the SQLite backend reads.
    pub sqlite: SqliteOptions,
}

/// Options only the SQLite backend reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How long a statement waits for another process's lock before giving up.
    pub busy_timeout: Duration,
    /// Read connections kept open, and the most reads that run at once (in WAL mode reads
    /// never wait for the writer).
    pub read_connections: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            read_connections: 4,
        }
    }
}

/// The most one cache namespace may hold: a write that would go past it fails (the write,
/// not the job's daemon); overwriting or deleting entries and expiries make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheQuota {
    pub max_entries: u64,
    /// Keys and values, in bytes.
    pub max_bytes: u64,
}

impl Default for CacheQuota {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 64 << 20,
        }
    }
}

/// One entry of the plugin cache: the namespace (one per plugin) and the key in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheKey<'a> {
    pub ns: &'a str,
    pub key: &'a str,
}

impl<'a> CacheKey<'a> {
    pub fn new(ns: &'a str, key: &'a str) -> Self {
        Self { ns, key }
    }
}

/// What one cache namespace holds. Expired entries not yet swept may still count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheUsage {
    pub entries: u64,
    /// Keys and values, in bytes.
    pub bytes: u64,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            max_payload_bytes: crate::job::DEFAULT_MAX_PAYLOAD_BYTES,
            max_events: DEFAULT_MAX_EVENTS,
            sqlite: SqliteOptions::default(),
            cache_quota: CacheQuota::default(),
        }
    }
}

/// The URL forms `open` understands, for error messages.
const SUPPORTED_URLS: &str = "sqlite://PATH (e.g. sqlite://./data/spool.db), memory://, \
     redis://HOST[:PORT][/DB], rediss://..., redis+sentinel://..., rediss+sentinel://..., \
     redis+cluster://... or rediss+cluster://...";

/// The URL schemes of Redis storage (`storage::redis` parses them).
pub const REDIS_SCHEMES: [&str; 6] = [
    "redis",
    "rediss",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
];

/// Whether `url` names Redis storage (by its scheme, in any case).
pub fn is_redis_url(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(scheme, _)| REDIS_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme)))
}

/// A storage URL fit for logs and messages: the password in its user info and every query
/// parameter whose name contains `password` (`sentinel_password`) become `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    // User info ends at the last `@` before the first `/` (a path may hold an `@`).
    let authority_end = before_query.find('/').unwrap_or(before_query.len());
    let mut out = match before_query[..authority_end].rfind('@') {
        Some(at) => {
            let (userinfo, after) = (&before_query[..at], &before_query[at..]);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***{after}"),
                None => format!("{scheme}://{before_query}"),
            }
        }
        None => format!("{scheme}://{before_query}"),
    };
    if let Some(q) = query {
        let q: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&q.join("&"));
    }
    out
}

/// Every job `filter` selects (its `limit` and `cursor` are ignored), newest first, read in
/// pages of `MAX_LIST_LIMIT`. For bounded sets (running jobs, tests); `spool migrate` pages
/// by itself so that it never holds a whole store.
pub async fn list_all(s: &dyn Storage, filter: ListFilter) -> Result<Vec<Job>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = s
            .list(ListFilter {
                limit: MAX_LIST_LIMIT,
                cursor,
                ..filter.clone()
            })
            .await?;
        out.extend(page.jobs);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// Open the backend a URL names: `sqlite://PATH` (relative or absolute; parent folders are
/// created), `memory://`, or Redis (`REDIS_SCHEMES`, handled by `storage::redis`).
pub async fn open(
    url: &str,
    opts: StorageOptions,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Storage>> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => {
            if rest.is_empty() {
                return Err(StorageError::InvalidInput(format!(
                    "storage url `{url}` names no file: use sqlite://PATH, e.g. \
                     sqlite://./data/spool.db"
                )));
            }
            let storage = sqlite::SqliteStorage::open(rest, opts, clock).await?;
            Ok(Arc::new(storage))
        }
        "memory" => Ok(Arc::new(memory::MemoryStorage::new(opts, clock))),
        // Every Redis flavour goes to `redis::open`.
        _ if is_redis_url(url) => redis::open(url, opts, clock).await,
        // Only the scheme is echoed: the rest of a URL may hold a password.
        _ => Err(StorageError::InvalidInput(format!(
            "unsupported storage url scheme `{}`: use {SUPPORTED_URLS}",
            if scheme.is_empty() { "(none)" } else { scheme }
        ))),
    }
}

/// The result of an enqueue: the job, and whether it was made now (false when a live job
/// already held the unique key and that job is returned instead).
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub job: Job,
    pub created: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<JobState>,
    pub job_type: Option<String>,
    /// At most this many (0: `DEFAULT_LIST_LIMIT`; capped at `MAX_LIST_LIMIT`).
    pub limit: usize,
    /// Opaque: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// Only jobs of these types (the ones this daemon has plugins for).
    pub types: Vec<String>,
    pub limit: usize,
    /// Lease length; the job returns to `pending` if not renewed within it.
    pub lease: Duration,
    /// Who claims (daemon id), for diagnostics.
    pub worker: String,
}

/// A job handed to a worker, `running`, with its attempt already counted.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub job: Job,
    pub lease: LeaseToken,
}

/// The state of a lease as seen by `renew_leases`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Renewed.
    Held,
    /// Renewed, but a user asked to cancel the job: stop it.
    CancelRequested,
    /// The lease is gone (expired and reclaimed, or the job was deleted): drop the result.
    Lost,
}

/// A successful attempt.
#[derive(Debug, Clone)]
pub struct Completion {
    pub id: String,
    pub lease: LeaseToken,
    pub result: Box<serde_json::value::RawValue>,
    pub logs: Vec<String>,
    pub plugin_version: Option<String>,
    /// Follow-up jobs the handler enqueued: committed with the completion, or not at all.
    pub followups: Vec<NewJob>,
}

/// A failed attempt.
#[derive(Debug, Clone)]
pub struct Failure {
    pub id: String,
    pub lease: LeaseToken,
    pub error: String,
    /// Some(t): retry at `t` if attempts remain (else `failed`). None: fail permanently.
    pub retry_at: Option<Millis>,
    pub logs: Vec<String>,
    pub plugin_version: Option<String>,
}

/// What `complete` and `fail` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The job moved to this state.
    Moved(JobState),
    /// The lease did not match (late result of a reclaimed job, or the job was deleted or
    /// cancelled): nothing was written.
    LeaseLost,
}

#[derive(Debug, Clone)]
pub enum CancelOutcome {
    /// It was pending, scheduled or retrying and is now `cancelled`.
    Cancelled(Job),
    /// It is running; the worker was told and will stop it.
    Requested(Job),
    /// It already finished (completed, failed or cancelled).
    AlreadyFinished(Job),
    NotFound,
}

/// What the reaper did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Expired leases whose job had attempts left: back to `pending`.
    pub requeued: u64,
    /// Expired leases on the last attempt: `failed`.
    pub failed: u64,
}

/// Keep finished jobs for at most `max_age`, and at most `max_count` per type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_count: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub completed: Retention,
    pub failed: Retention,
    pub cancelled: Retention,
    /// Overrides per job type.
    pub per_type: BTreeMap<String, TypeRetention>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeRetention {
    pub completed: Retention,
    pub failed: Retention,
    pub cancelled: Retention,
}

impl RetentionPolicy {
    /// The rule for finished jobs of `job_type` in `state` (a per-type override wins).
    /// Live states have no rule: they are never swept.
    pub fn rule_for(&self, job_type: &str, state: JobState) -> Retention {
        let none = Retention {
            max_age: None,
            max_count: None,
        };
        let (completed, failed, cancelled) = match self.per_type.get(job_type) {
            Some(t) => (t.completed, t.failed, t.cancelled),
            None => (self.completed, self.failed, self.cancelled),
        };
        match state {
            JobState::Completed => completed,
            JobState::Failed => failed,
            JobState::Cancelled => cancelled,
            _ => none,
        }
    }
}

impl Default for RetentionPolicy {
    /// Completed and cancelled: 24 h or the last 1000 per type; failed: 7 days or the last
    /// 5000 per type.
    fn default() -> Self {
        Self {
            completed: Retention {
                max_age: Some(Duration::from_secs(24 * 3600)),
                max_count: Some(1000),
            },
            failed: Retention {
                max_age: Some(Duration::from_secs(7 * 24 * 3600)),
                max_count: Some(5000),
            },
            cancelled: Retention {
                max_age: Some(Duration::from_secs(24 * 3600)),
                max_count: Some(1000),
            },
            per_type: BTreeMap::new(),
        }
    }
}

/// Counts per type and state, and the age of the oldest ready job per type.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub types: BTreeMap<String, TypeStats>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TypeStats {
    pub counts: BTreeMap<JobState, u64>,
    /// Age in ms of the oldest `pending` job (by ready time), if any.
    pub oldest_pending_age_ms: Option<u64>,
}

/// One entry of the event log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// Increasing within one storage; readers resume after it. Opaque to clients.
    pub id: String,
    /// `job.created`, `job.started`, ... (the rules at the top of this module list them).
    pub kind: String,
    pub job_id: Option<String>,
    pub job_type: Option<String>,
    #[serde(with = "crate::job::serde_time")]
    pub at: Millis,
    /// Extra fields (status, attempt, error, progress, plugin name...).
    pub data: serde_json::Value,
}

/// Whether `import_jobs` writes `job.created` for the jobs it inserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportEvents {
    /// No events: the jobs' history happened elsewhere (`spool migrate`).
    None,
    /// `job.created` for each job inserted, with its status as imported: jobs the daemon
    /// accepted while it could not store them here (the fallback spool's replay), whose
    /// creation this storage's event log has not seen.
    Created,
}

/// An event to append (the storage gives it an id and time).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: String,
    pub job_id: Option<String>,
    pub job_type: Option<String>,
    pub data: serde_json::Value,
}

/// What a backend reports for health checks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackendInfo {
    pub backend: String,
    /// Free-form details (Redis version, role, used memory, maxmemory-policy...).
    pub details: BTreeMap<String, String>,
    /// Problems an operator should see (for example an eviction policy that can lose jobs).
    pub warnings: Vec<String>,
    /// The local fallback spool, when the storage has one (Redis with `fallback`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackInfo>,
}

/// The state of a local fallback spool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FallbackInfo {
    /// The primary is unreachable and new jobs go to the spool.
    pub active: bool,
    /// Jobs in the spool, waiting to be replayed into the primary.
    pub jobs: u64,
    /// The spool's file.
    pub spool: std::path::PathBuf,
    /// When the outage began (RFC 3339), while active.
    pub since: Option<String>,
}

/// What a backend is like, for callers that must treat backends differently: they read
/// these facts, never the backend's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Several daemons can share the storage over the network (Redis); a local fallback
    /// spool can take enqueues while it is unreachable.
    pub shared: bool,
    /// Reads worth having in flight at once (SQLite serves reads from a small pool of
    /// connections and opens one more for every read beyond it).
    pub parallel_reads: usize,
}

/// The one storage interface. Every method that changes a job is atomic, and the ones that
/// touch a running job are fenced by its lease token. Job events (`job.created`,
/// `job.started`, `job.completed`, ...) are appended by the backend as part of the change.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// `sqlite`, `memory` or `redis`: for messages and metrics labels. Code that must treat
    /// backends differently reads `capabilities`.
    fn backend(&self) -> &'static str;

    fn capabilities(&self) -> Capabilities;

    /// Insert a job, or return the live job holding its unique key. Validates the payload
    /// size, priority and attempts first; invalid input writes nothing. By default a batch
    /// of one; a backend with a cheaper single insert overrides it.
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        self.enqueue_batch(vec![job]).await?.pop().ok_or_else(|| {
            StorageError::Internal(format!("{} answered no job for an enqueue", self.backend()))
        })
    }
    /// The same for many jobs; all-or-nothing when any is invalid. Order of results follows
    /// the input.
    async fn enqueue_batch(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>>;
    /// Insert jobs exactly as given (ids, states, results, attempts), skipping ids that
    /// exist. For `spool migrate` and the fallback replay. Returns how many were inserted.
    async fn import_jobs(&self, jobs: Vec<Job>, events: ImportEvents) -> Result<u64>;

    async fn get(&self, id: &str) -> Result<Option<Job>>;
    /// Jobs ordered by id (creation order), newest first, filtered, paginated.
    async fn list(&self, filter: ListFilter) -> Result<JobPage>;
    async fn delete(&self, id: &str) -> Result<bool>;

    /// Lease up to `limit` ready jobs among `types`: highest priority (lowest number) first,
    /// FIFO (by ready time, then id) within a priority. Each claimed job is `running`, its
    /// attempt counted, with a fresh lease token and `lease_expires_at = now + lease`.
    /// Flow control is applied in the same atomic step: no job of a paused or held type, at
    /// most `global_concurrency − running` of a capped type, and at most what its rate
    /// limit's window has left (each claimed job is a start); see `flow::allowance`.
    async fn claim_ready(&self, req: ClaimRequest) -> Result<flow::ClaimBatch>;
    /// `claim_ready`'s jobs alone.
    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>> {
        Ok(self.claim_ready(req).await?.jobs)
    }
    /// The flow control of every type that has any set (pause, hold, limits).
    async fn type_controls(&self) -> Result<BTreeMap<String, flow::TypeControl>>;
    /// Changes one type's flow control atomically (`TypeControl::apply`), writes the event
    /// `TypeControl::event_for` names in the same step, wakes claimers when it may let jobs
    /// start, and returns the control as it is now.
    async fn control_type(
        &self,
        job_type: &str,
        change: flow::ControlChange,
    ) -> Result<flow::TypeControl>;

    /// Every cron schedule, by name.
    async fn schedules(&self) -> Result<Vec<flow::ScheduleRecord>>;
    /// Creates or replaces a schedule by name (`flow::check_schedule` first). A replaced
    /// schedule keeps its `created_at` and `last_tick`, so that changing its payload neither
    /// fires a tick again nor replays missed ones.
    async fn put_schedule(&self, schedule: flow::Schedule) -> Result<flow::ScheduleRecord>;
    async fn delete_schedule(&self, name: &str) -> Result<bool>;
    /// Moves a schedule's `last_tick` from `from` to `to` if it is still `from` (compare and
    /// set: of the daemons that fire the same tick, exactly one wins). False when it moved
    /// already or the schedule is gone.
    async fn advance_schedule(&self, name: &str, from: Option<Millis>, to: Millis) -> Result<bool>;
    /// Extend leases the caller holds; one status per input, in order.
    async fn renew_leases(
        &self,
        leases: &[(String, LeaseToken)],
        lease: Duration,
    ) -> Result<Vec<LeaseStatus>>;
    /// Record progress of a running job (fenced; also renews nothing: see `renew_leases`).
    async fn set_progress(&self, id: &str, lease: &LeaseToken, progress: Progress) -> Result<bool>;
    /// Finish attempts successfully, in one transaction where the backend has them. The
    /// follow-ups of all completions are validated first: one invalid follow-up is
    /// `InvalidInput` and nothing is written (the caller should fail that job instead).
    async fn complete(&self, done: Vec<Completion>) -> Result<Vec<Settled>>;
    /// Record failed attempts: `retrying` (with `run_at = retry_at`) while attempts remain,
    /// else `failed`.
    async fn fail(&self, failed: Vec<Failure>) -> Result<Vec<Settled>>;
    /// Give leases back without counting the attempt (graceful shutdown): `pending` at once.
    async fn release(&self, leases: &[(String, LeaseToken)]) -> Result<u64>;

    /// Cancel: at once unless running (then `cancel_requested` is set).
    async fn cancel(&self, id: &str) -> Result<CancelOutcome>;
    /// Put a `failed` or `cancelled` job back to `pending` with its attempts reset.
    /// Returns None when the job does not exist; `InvalidInput` when it is in another state.
    async fn replay(&self, id: &str) -> Result<Option<Job>>;

    /// Move `scheduled` and `retrying` jobs whose `run_at` has come to `pending`.
    async fn promote_due(&self) -> Result<u64>;
    /// Return jobs whose lease expired to `pending`, counting the attempt (the claim already
    /// counted it); a job on its last attempt goes to `failed`.
    async fn reap_expired(&self) -> Result<Reaped>;
    /// Delete finished jobs past the policy (a job finished exactly `max_age` ago goes);
    /// bounded work per call. Also trims the event log to `StorageOptions::max_events` and
    /// drops expired cache entries. Returns how many jobs were deleted.
    async fn sweep_retention(&self, policy: &RetentionPolicy) -> Result<u64>;
    async fn stats(&self) -> Result<Stats>;

    /// The plugin-facing cache, namespaced by `ns` (the plugin name).
    async fn cache_get(&self, key: CacheKey<'_>) -> Result<Option<String>>;
    async fn cache_set(&self, key: CacheKey<'_>, value: &str, ttl: Option<Duration>) -> Result<()>;
    async fn cache_delete(&self, key: CacheKey<'_>) -> Result<bool>;
    async fn cache_increment(
        &self,
        key: CacheKey<'_>,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64>;
    /// What the namespace holds, against `StorageOptions::cache_quota`.
    async fn cache_usage(&self, ns: &str) -> Result<CacheUsage>;

    /// Append a non-job event (`plugin.loaded`, ...).
    async fn publish_event(&self, event: NewEvent) -> Result<Event>;
    /// Events after `after` (or from the oldest kept), oldest first, at most `limit`.
    async fn events_since(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>>;
    /// The id of the newest event kept, None while the log is empty: where a reader that wants
    /// only what comes next starts, without reading what is there.
    async fn latest_event_id(&self) -> Result<Option<String>>;

    /// Resolve when work may be ready (an enqueue, a promotion, a release) or after
    /// `timeout`, whichever is first. Lets idle workers sleep without polling.
    async fn wait_for_work(&self, timeout: Duration);
    /// Resolve when this process wrote events through this store (any job change, a
    /// published event) or after `timeout`, whichever is first. Events other daemons write
    /// to a shared storage are not signalled: their readers poll. Lets the live event hub
    /// send events the moment they are written without being told by each writer.
    async fn wait_for_events(&self, timeout: Duration);

    /// A cheap round trip, for health.
    async fn ping(&self) -> Result<Duration>;
    async fn info(&self) -> Result<BackendInfo>;
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn urls_lose_every_password_and_keep_the_rest() {
        assert_eq!(
            redact_url("redis://:s3cret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(redact_url("redis://user:pw@host"), "redis://user:***@host");
        assert_eq!(redact_url("redis://user@host"), "redis://user@host");
        assert_eq!(
            redact_url("redis+sentinel://u:hunter2@h:1,h:2/0?service=m&sentinel_password=z"),
            "redis+sentinel://u:***@h:1,h:2/0?service=m&sentinel_password=***"
        );
        assert_eq!(
            redact_url("sqlite://./data/spool.db"),
            "sqlite://./data/spool.db"
        );
        assert_eq!(
            redact_url("sqlite:///srv/a@b:c/x.db"),
            "sqlite:///srv/a@b:c/x.db"
        );
        assert_eq!(redact_url("memory://"), "memory://");
    }
}
