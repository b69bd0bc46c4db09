//! The job model: `Job`, `JobState`, what a caller asks for (`NewJob`), and the pure rules
//! that decide states, backoff and validation. Nothing here does I/O; time comes in as `now`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::Duration;

/// Milliseconds since the Unix epoch. Every stored time is one of these.
pub type Millis = i64;

/// Default priority (`normal`).
pub const DEFAULT_PRIORITY: u8 = 5;
/// One run plus three retries.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Default limit on a payload (and on a result), in bytes.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// How many log lines a job keeps (the last ones).
pub const MAX_LOG_LINES: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waits for `run_at`.
    Scheduled,
    /// Ready to be claimed.
    Pending,
    /// Leased by a worker.
    Running,
    /// Failed an attempt; waits out its backoff until `run_at`.
    Retrying,
    Completed,
    /// Out of attempts or failed permanently: the dead-letter queue.
    Failed,
    Cancelled,
}

/// A job as stored and as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    #[serde(rename = "type")]
    pub job_type: String,
    pub payload: Box<RawValue>,
    pub priority: u8,
    pub status: JobState,
    /// Attempts started so far (a claim counts one).
    pub attempt: u32,
    pub max_attempts: u32,
    pub run_at: Millis,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// Per-job timeout; the plugin's manifest (or the daemon default) applies when absent.
    pub timeout_ms: Option<u64>,
    pub unique_key: Option<String>,
    pub progress: Option<Progress>,
    pub result: Option<Box<RawValue>>,
    pub error: Option<String>,
    pub logs: Vec<String>,
    pub plugin_version: Option<String>,
    /// Per-job backoff override; the plugin's or the daemon's policy applies when absent.
    pub backoff: Option<BackoffPolicy>,
    /// When the current lease ends (only while `running`).
    pub lease_expires_at: Option<Millis>,
    /// Set when a user asked to cancel a running job; the worker stops it.
    pub cancel_requested: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub percent: u8,
    pub message: Option<String>,
}

/// Exponential backoff with jitter: attempt n waits about `base * 2^(n-1)`, capped at `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffPolicy {
    pub base_ms: u64,
    pub cap_ms: u64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self { base_ms: 1_000, cap_ms: 3_600_000 }
    }
}

/// What a caller asks for when enqueueing.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Set by the host (`new_job_id`) before the job reaches storage, so a follow-up job's id
    /// can be handed out before it is committed and a migrated job keeps its id.
    pub id: String,
    pub job_type: String,
    pub payload: Box<RawValue>,
    pub priority: u8,
    pub max_attempts: u32,
    /// None: ready now. Some(t) in the future: `scheduled`.
    pub run_at: Option<Millis>,
    pub timeout_ms: Option<u64>,
    pub unique_key: Option<String>,
    pub backoff: Option<BackoffPolicy>,
}

/// A lease handed out by `claim`; complete/fail/renew only work with the current one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseToken(pub String);

/// A new sortable job id (UUIDv7).
pub fn new_job_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A fresh, unguessable lease token.
pub fn new_lease_token() -> LeaseToken {
    LeaseToken(uuid::Uuid::new_v4().simple().to_string())
}

/// The time source. Storage and maintenance read time only through this, so tests can move it.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> Millis;
    /// How far this clock is ahead of the system clock. Backends that keep time themselves
    /// (Redis uses its own `TIME` so that host clocks may differ) add this to their own time,
    /// which lets the conformance suite move time on every backend alike. Zero in production.
    fn skew_ms(&self) -> i64 {
        0
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        system_now_ms()
    }
}

pub fn system_now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// A clock for tests: starts at the system time and moves only when told.
#[derive(Debug)]
pub struct ManualClock {
    start_real: Millis,
    offset: std::sync::atomic::AtomicI64,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    pub fn new() -> Self {
        Self { start_real: system_now_ms(), offset: std::sync::atomic::AtomicI64::new(0) }
    }
    pub fn advance(&self, by: Duration) {
        self.offset.fetch_add(by.as_millis() as i64, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.start_real + self.offset.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn skew_ms(&self) -> i64 {
        self.now_ms() - system_now_ms()
    }
}
