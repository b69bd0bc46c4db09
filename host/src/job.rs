//! The job model: `Job`, `JobState`, what a caller asks for (`NewJob`), and the pure rules
//! that decide states, backoff and validation. Nothing here does I/O; time comes in as `now`.
//!
//! Times are `Millis` (ms since the Unix epoch) in code and in storage. In a `Job`'s (and an
//! `Event`'s) serde form, the API's job JSON, they are RFC 3339 strings in UTC with
//! milliseconds (`2026-08-01T12:00:00.123Z`): readable by people, exact to the millisecond,
//! and sortable as text. Deserialising also accepts integer milliseconds.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

mod rules;
pub mod serde_time;
#[cfg(test)]
mod tests;

pub use rules::{
    CancelAction, cancel_action, check_replay, initial_state, lease_expired_error,
    state_after_failure, state_after_lease_expiry, state_after_release,
};

/// Milliseconds since the Unix epoch. Every stored time is one of these.
pub type Millis = i64;

/// Default priority (`normal`).
pub const DEFAULT_PRIORITY: u8 = 5;
/// Priorities run from 1 (runs first) to 10.
pub const MIN_PRIORITY: u8 = 1;
pub const MAX_PRIORITY: u8 = 10;
/// One run plus three retries.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Longest job error kept (stored, in events and in log lines), in bytes; longer ones are
/// cut and say so. Results have their own limit (`max_payload`).
pub const MAX_ERROR_BYTES: usize = 16 * 1024;
/// Longest progress message kept, in bytes.
pub const MAX_PROGRESS_MESSAGE_BYTES: usize = 1024;
/// Most attempts a job (or a plugin's follow-up job) may ask for.
pub const MAX_ATTEMPTS: u32 = 1000;
/// The longest `unique_for` and `debounce` window.
pub const MAX_UNIQUE_WINDOW_MS: u64 = 30 * 24 * 3600 * 1000;
/// Default limit on a payload (and on a result), in bytes.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// How many log lines a job keeps (the last ones).
pub const MAX_LOG_LINES: usize = 200;
/// Longest job type, in bytes. Types are routing keys and plugin names, not prose.
pub const MAX_JOB_TYPE_LEN: usize = 128;
/// Longest unique key, in bytes. Keys are indexed; callers hash anything longer.
pub const MAX_UNIQUE_KEY_LEN: usize = 512;
/// Longest job id, in bytes (generated ids are 36; imported ones may differ).
pub const MAX_JOB_ID_LEN: usize = 128;
/// Deepest nesting of arrays and objects in a payload, follow-up payload or result.
/// serde_json stops at 128 levels whenever it builds a value (listings, `spool job`), so a
/// deeper document could be stored but never shown; 64 leaves room for the envelope.
pub const MAX_JSON_DEPTH: usize = 64;
/// Earliest and latest stored time: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z.
/// Every backend stores these exactly (Lua numbers are doubles: near `i64::MAX` they wrap).
pub const MIN_TIME_MS: Millis = -62_135_596_800_000;
pub const MAX_TIME_MS: Millis = 253_402_300_799_999;

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

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Scheduled,
        JobState::Pending,
        JobState::Running,
        JobState::Retrying,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// The name used in the API, in storage and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Completed, failed or cancelled: nothing more happens unless someone replays it.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }

    /// Not finished. A live job holds its unique key.
    pub fn is_live(self) -> bool {
        !self.is_finished()
    }

    /// Whether the job lifecycle allows going from `self` to `to`.
    pub fn can_transition_to(self, to: JobState) -> bool {
        use JobState::*;
        match self {
            Scheduled => matches!(to, Pending | Cancelled),
            Pending => matches!(to, Running | Cancelled),
            // Pending: lease released or expired with attempts left. Cancelled: a cancel
            // was requested and the attempt ended (failed, released or expired).
            Running => matches!(to, Completed | Retrying | Failed | Cancelled | Pending),
            Retrying => matches!(to, Pending | Cancelled),
            Completed => false,
            // Replay.
            Failed | Cancelled => to == Pending,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = JobError;
    fn from_str(s: &str) -> Result<Self, JobError> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| JobError::UnknownState(s.to_owned()))
    }
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
    #[serde(with = "serde_time")]
    pub run_at: Millis,
    #[serde(with = "serde_time")]
    pub created_at: Millis,
    #[serde(with = "serde_time::option", default)]
    pub started_at: Option<Millis>,
    #[serde(with = "serde_time::option", default)]
    pub finished_at: Option<Millis>,
    /// Per-job timeout; the plugin's manifest (or the daemon default) applies when absent.
    pub timeout_ms: Option<u64>,
    pub unique_key: Option<String>,
    /// The unique key stays taken for this long after the job finishes (a throttle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_for_ms: Option<u64>,
    pub progress: Option<Progress>,
    pub result: Option<Box<RawValue>>,
    pub error: Option<String>,
    #[serde(default)]
    pub logs: Vec<String>,
    pub plugin_version: Option<String>,
    /// Per-job backoff override; the plugin's or the daemon's policy applies when absent.
    #[serde(default)]
    pub backoff: Option<BackoffPolicy>,
    /// When the current lease ends (only while `running`).
    #[serde(with = "serde_time::option", default)]
    pub lease_expires_at: Option<Millis>,
    /// Set when a user asked to cancel a running job; the worker stops it.
    #[serde(default)]
    pub cancel_requested: bool,
}

impl Job {
    /// A fresh job built from a request, as enqueue stores it at `now`.
    pub fn from_new(new: NewJob, now: Millis) -> Job {
        let run_at = match new.debounce_ms {
            // A debounced job waits out its window, so that a burst's last payload wins.
            Some(d) => Some(new.run_at.unwrap_or(now).max(now.saturating_add(d as i64))),
            None => new.run_at,
        };
        let (status, run_at) = initial_state(run_at, now);
        Job {
            id: new.id,
            job_type: new.job_type,
            payload: new.payload,
            priority: new.priority,
            status,
            attempt: 0,
            max_attempts: new.max_attempts,
            run_at,
            created_at: now,
            started_at: None,
            finished_at: None,
            timeout_ms: new.timeout_ms,
            unique_key: new.unique_key,
            unique_for_ms: new.unique_for_ms,
            progress: None,
            result: None,
            error: None,
            logs: Vec::new(),
            plugin_version: None,
            backoff: new.backoff,
            lease_expires_at: None,
            cancel_requested: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub percent: u8,
    pub message: Option<String>,
}

impl Progress {
    pub fn new(percent: u8, message: Option<String>) -> Self {
        Self { percent, message }
    }
}

/// How a retry delay is spread around its exponential ceiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// Uniform in `[0, ceiling]` (AWS "full jitter"): spreads a burst of failures the most.
    #[default]
    Full,
    /// `min(cap, uniform(base, 3 * previous))` (AWS "decorrelated jitter"): grows from the
    /// previous delay rather than from the attempt number.
    Decorrelated,
    /// Exactly the ceiling: predictable, for tests and fixed schedules.
    None,
}

/// Exponential backoff with jitter: attempt n waits up to `base * 2^(n-1)`, capped at `cap`.
/// `jitter` defaults to `full` when absent from stored JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffPolicy {
    pub base_ms: u64,
    pub cap_ms: u64,
    #[serde(default)]
    pub jitter: Jitter,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            base_ms: 1_000,
            cap_ms: 3_600_000,
            jitter: Jitter::Full,
        }
    }
}

impl BackoffPolicy {
    /// Full jitter between `base` and `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base_ms: millis_u64(base),
            cap_ms: millis_u64(cap),
            jitter: Jitter::Full,
        }
    }

    #[must_use]
    pub fn with_jitter(self, jitter: Jitter) -> Self {
        Self { jitter, ..self }
    }

    pub fn validate(&self) -> Result<(), JobError> {
        if self.base_ms == 0 {
            return Err(JobError::Invalid(
                "backoff base must be at least 1 ms (got 0)".into(),
            ));
        }
        if self.cap_ms < self.base_ms {
            return Err(JobError::Invalid(format!(
                "backoff cap ({} ms) must not be below its base ({} ms)",
                self.cap_ms, self.base_ms
            )));
        }
        Ok(())
    }

    /// The largest delay for `attempt` (1 = the first run failed): `min(cap, base * 2^(n-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(63);
        let ms = self
            .base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.cap_ms);
        Duration::from_millis(ms)
    }

    /// The delay after failed attempt `attempt`, given a random `draw` in `[0, 1)`; the
    /// deterministic core of [`BackoffPolicy::delay`]. `previous` is the delay before this
    /// attempt, used by decorrelated jitter; when unknown, the previous attempt's ceiling
    /// stands in for it, which keeps the expected growth exponential.
    pub fn delay_with_draw(&self, attempt: u32, previous: Option<Duration>, draw: f64) -> Duration {
        let draw = if draw.is_finite() {
            draw.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let ceiling = millis_u64(self.ceiling(attempt));
        let ms = match self.jitter {
            Jitter::None => ceiling,
            Jitter::Full => (ceiling as f64 * draw).round() as u64,
            Jitter::Decorrelated => {
                let previous = previous.map(millis_u64).unwrap_or_else(|| {
                    if attempt <= 1 {
                        self.base_ms
                    } else {
                        millis_u64(self.ceiling(attempt - 1))
                    }
                });
                let low = self.base_ms;
                let high = previous.saturating_mul(3).max(low);
                let picked = low as f64 + (high - low) as f64 * draw;
                (picked.round() as u64).min(self.cap_ms)
            }
        };
        Duration::from_millis(ms.min(self.cap_ms))
    }

    /// The delay after failed attempt `attempt`, with a fresh random draw.
    pub fn delay(&self, attempt: u32, previous: Option<Duration>) -> Duration {
        self.delay_with_draw(attempt, previous, rand::random::<f64>())
    }

    /// When to run again after failed attempt `attempt` at `now`.
    pub fn retry_at(&self, now: Millis, attempt: u32, previous: Option<Duration>) -> Millis {
        now.saturating_add(millis_i64(self.delay(attempt, previous)))
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
    /// With `unique_key`: the key stays taken for this long after the job finishes, so that
    /// an enqueue with it in that window returns the finished job (a throttle).
    pub unique_for_ms: Option<u64>,
    /// With `unique_key`: a job holding the key that has not started yet takes this one's
    /// payload and waits this long again (the last of a burst wins); a new job waits it too.
    pub debounce_ms: Option<u64>,
}

impl NewJob {
    /// A job of `job_type` with a fresh id and the defaults (priority normal, 4 attempts,
    /// ready now).
    pub fn new(job_type: impl Into<String>, payload: Box<RawValue>) -> Self {
        Self {
            id: new_job_id(),
            job_type: job_type.into(),
            payload,
            priority: DEFAULT_PRIORITY,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            run_at: None,
            timeout_ms: None,
            unique_key: None,
            backoff: None,
            unique_for_ms: None,
            debounce_ms: None,
        }
    }

    /// Everything storage checks before writing. The payload is a `RawValue`, so it is JSON
    /// already; text from outside goes through [`parse_payload`] first.
    pub fn validate(&self, max_payload_bytes: usize) -> Result<(), JobError> {
        validate_job_id(&self.id)?;
        validate_job_type(&self.job_type)?;
        check_payload_size(self.payload.get().len(), max_payload_bytes)?;
        check_json_depth("payload", self.payload.get())?;
        validate_priority(self.priority)?;
        if let Some(at) = self.run_at {
            check_time("run_at", at)?;
        }
        if self.max_attempts > MAX_ATTEMPTS {
            return Err(JobError::Invalid(format!(
                "max_attempts must be at most {MAX_ATTEMPTS} (got {})",
                self.max_attempts
            )));
        }
        if self.max_attempts == 0 {
            return Err(JobError::Invalid(
                "max_attempts must be at least 1 (got 0): 1 runs the job once, without retries"
                    .into(),
            ));
        }
        match self.timeout_ms {
            Some(0) => {
                return Err(JobError::Invalid(
                    "timeout must be at least 1 ms (got 0)".into(),
                ));
            }
            // Stored as a signed 64-bit integer (SQLite, Lua): larger would fail in storage
            // with an internal error instead of this message.
            Some(ms) if i64::try_from(ms).is_err() => {
                return Err(JobError::Invalid(format!(
                    "timeout of {ms} ms is too large: use at most {} ms",
                    i64::MAX
                )));
            }
            _ => {}
        }
        if let Some(key) = &self.unique_key {
            validate_unique_key(key)?;
        }
        for (name, window) in [
            ("unique_for", self.unique_for_ms),
            ("debounce", self.debounce_ms),
        ] {
            let Some(ms) = window else { continue };
            if self.unique_key.is_none() {
                return Err(JobError::Invalid(format!(
                    "`{name}` needs a `unique_key`: it applies to the jobs sharing that key"
                )));
            }
            if ms == 0 || ms > MAX_UNIQUE_WINDOW_MS {
                return Err(JobError::Invalid(format!(
                    "`{name}` must be from 1 ms to 30 days (got {ms} ms)"
                )));
            }
        }
        if let Some(backoff) = &self.backoff {
            backoff.validate()?;
        }
        Ok(())
    }
}

/// Why a job request or a state change was refused. Storage wraps these as `InvalidInput`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("invalid priority `{0}`: use high, normal, low, or a number from 1 (runs first) to 10")]
    InvalidPriority(String),
    #[error(
        "payload is {size} bytes, over the limit of {limit} bytes: send a smaller payload \
         (keep large data elsewhere and pass a reference) or raise the payload limit"
    )]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("payload is not valid JSON: {0}")]
    PayloadNotJson(String),
    #[error(
        "unknown job status `{0}`: use scheduled, pending, running, retrying, completed, failed or cancelled"
    )]
    UnknownState(String),
    #[error("invalid time `{0}`: use RFC 3339 (2026-08-01T12:00:00Z) or milliseconds since 1970")]
    InvalidTime(String),
    #[error("job `{id}` is {state}: {what}")]
    WrongState {
        id: String,
        state: JobState,
        what: String,
    },
    #[error(
        "{what} is nested more than {limit} levels deep: flatten it (arrays and objects may \
         nest at most {limit} levels)"
    )]
    TooDeep { what: &'static str, limit: usize },
    #[error(
        "{what} is outside the supported time range: use a time from year 1 to year 9999 \
         (got {ms} ms since 1970)"
    )]
    TimeOutOfRange { what: &'static str, ms: Millis },
    #[error("{0}")]
    Invalid(String),
}

/// Refuses JSON text nested deeper than [`MAX_JSON_DEPTH`]. A byte scan (no recursion, no
/// allocation), so it is safe on any input; the text is assumed to be JSON already.
pub fn check_json_depth(what: &'static str, text: &str) -> Result<(), JobError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(JobError::TooDeep {
                        what,
                        limit: MAX_JSON_DEPTH,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// `text` cut to at most `max` bytes (on a character boundary), ending with
/// "... (truncated, N bytes in all)" when it was cut.
pub fn truncate_text(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let note = format!("... (truncated, {} bytes in all)", text.len());
    let mut end = max.saturating_sub(note.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{note}", &text[..end])
}

/// Refuses a time outside [`MIN_TIME_MS`]..=[`MAX_TIME_MS`] (the one range every backend
/// stores exactly).
pub fn check_time(what: &'static str, ms: Millis) -> Result<Millis, JobError> {
    if (MIN_TIME_MS..=MAX_TIME_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(JobError::TimeOutOfRange { what, ms })
    }
}

/// `now + delay`, kept within the supported time range: for delays the host must honour
/// rather than refuse (a plugin's retry-after).
pub fn clamp_time(ms: Millis) -> Millis {
    ms.clamp(MIN_TIME_MS, MAX_TIME_MS)
}

/// `high`=1, `normal`=5, `low`=10, or a number from 1 to 10 (case and spaces ignored).
pub fn parse_priority(text: &str) -> Result<u8, JobError> {
    let trimmed = text.trim();
    match trimmed.to_ascii_lowercase().as_str() {
        "high" => return Ok(1),
        "normal" => return Ok(DEFAULT_PRIORITY),
        "low" => return Ok(10),
        _ => {}
    }
    match trimmed.parse::<u8>() {
        Ok(n) if (MIN_PRIORITY..=MAX_PRIORITY).contains(&n) => Ok(n),
        _ => Err(JobError::InvalidPriority(text.to_owned())),
    }
}

pub fn validate_priority(priority: u8) -> Result<(), JobError> {
    if (MIN_PRIORITY..=MAX_PRIORITY).contains(&priority) {
        Ok(())
    } else {
        Err(JobError::InvalidPriority(priority.to_string()))
    }
}

/// Checks a payload given as text (API body, CLI argument, plugin enqueue): size first, so a
/// huge body is refused without parsing it, then JSON.
pub fn parse_payload(text: &str, max_bytes: usize) -> Result<Box<RawValue>, JobError> {
    check_payload_size(text.len(), max_bytes)?;
    // Depth first: serde_json's own limit would call a deep payload "not valid JSON".
    check_json_depth("payload", text)?;
    RawValue::from_string(text.trim().to_owned())
        .map_err(|e| JobError::PayloadNotJson(e.to_string()))
}

fn check_payload_size(size: usize, limit: usize) -> Result<(), JobError> {
    if size > limit {
        Err(JobError::PayloadTooLarge { size, limit })
    } else {
        Ok(())
    }
}

/// A job type is a routing key (and by default a plugin name): 1-128 bytes of ASCII letters,
/// digits and `._:/-`, starting with a letter or digit.
pub fn validate_job_type(job_type: &str) -> Result<(), JobError> {
    let Some(first) = job_type.chars().next() else {
        return Err(JobError::Invalid("job type must not be empty".into()));
    };
    if job_type.len() > MAX_JOB_TYPE_LEN {
        return Err(JobError::Invalid(format!(
            "job type is {} bytes, over the limit of {MAX_JOB_TYPE_LEN}",
            job_type.len()
        )));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._:/-".contains(c);
    if !first.is_ascii_alphanumeric() || !job_type.chars().all(allowed) {
        return Err(JobError::Invalid(format!(
            "invalid job type `{}`: use ASCII letters, digits and `._:/-`, starting with a \
             letter or digit",
            job_type.escape_debug()
        )));
    }
    Ok(())
}

pub fn validate_unique_key(key: &str) -> Result<(), JobError> {
    if key.is_empty() {
        return Err(JobError::Invalid(
            "unique key must not be empty (omit it instead)".into(),
        ));
    }
    if key.len() > MAX_UNIQUE_KEY_LEN {
        return Err(JobError::Invalid(format!(
            "unique key is {} bytes, over the limit of {MAX_UNIQUE_KEY_LEN}: hash it first",
            key.len()
        )));
    }
    Ok(())
}

/// Ids are generated by the host, but imported ones come from another store: 1-128 bytes, no
/// whitespace or control characters (they appear in URLs and logs).
pub fn validate_job_id(id: &str) -> Result<(), JobError> {
    if id.is_empty() || id.len() > MAX_JOB_ID_LEN {
        return Err(JobError::Invalid(format!(
            "job id must be 1 to {MAX_JOB_ID_LEN} bytes (got {})",
            id.len()
        )));
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(JobError::Invalid(format!(
            "job id `{}` contains whitespace or control characters",
            id.escape_debug()
        )));
    }
    Ok(())
}

/// A lease handed out by `claim`; complete/fail/renew only work with the current one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseToken(pub String);

/// A new sortable job id (UUIDv7; ordered by creation within a process).
pub fn new_job_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A fresh, unguessable lease token.
pub fn new_lease_token() -> LeaseToken {
    LeaseToken(uuid::Uuid::new_v4().simple().to_string())
}

/// Keeps the last `MAX_LOG_LINES` lines.
pub fn trim_logs(mut logs: Vec<String>) -> Vec<String> {
    if logs.len() > MAX_LOG_LINES {
        logs.drain(..logs.len() - MAX_LOG_LINES);
    }
    logs
}

/// `Duration` to whole milliseconds, saturating.
pub fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `Duration` to whole milliseconds as a `Millis` offset, saturating.
pub fn millis_i64(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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
        Self {
            start_real: system_now_ms(),
            offset: std::sync::atomic::AtomicI64::new(0),
        }
    }
    pub fn advance(&self, by: Duration) {
        self.offset
            .fetch_add(millis_i64(by), std::sync::atomic::Ordering::SeqCst);
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
