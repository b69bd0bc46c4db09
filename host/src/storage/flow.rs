//! Flow control kept in storage, so that every daemon sharing a store obeys the same values:
//! per-type pause, holds (a handler's "rate limited, retry after"), rate limits and global
//! concurrency, all enforced by `claim` inside its own atomic step; and cron schedules, whose
//! ticks are claimed with a compare-and-set so that each fires once however many daemons run.

use crate::job::{Millis, NewJob};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Longest rate-limit window. Starts are remembered for one window, so a longer one would
/// keep that many start times per type.
pub const MAX_RATE_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Most starts a rate limit may allow per window (each start is remembered for the window).
pub const MAX_RATE_COUNT: u32 = 100_000;
/// Most jobs of one type a global concurrency limit may allow.
pub const MAX_GLOBAL_CONCURRENCY: u32 = 1_000_000;
/// How long a type is held when a handler reports a rate limit without a delay.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(1);
/// The longest hold a handler may ask for (a longer one is cut to it).
pub const MAX_HOLD: Duration = Duration::from_secs(3600);
/// Longest schedule name, in bytes.
pub const MAX_SCHEDULE_NAME_LEN: usize = 128;

/// At most `count` jobs of a type start in any window of `window` (a sliding window: the
/// starts of the last `window` are counted at each claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub window: Duration,
}

impl RateLimit {
    /// The window in whole milliseconds (at least 1).
    pub fn window_ms(&self) -> i64 {
        (self.window.as_millis() as i64).max(1)
    }

    /// The stored form, `count/window_ms`, which the Redis scripts parse too.
    pub fn encode(&self) -> String {
        format!("{}/{}", self.count, self.window_ms())
    }

    /// Reads `encode`'s form back.
    pub fn decode(text: &str) -> Option<Self> {
        let (count, ms) = text.split_once('/')?;
        Some(Self {
            count: count.parse().ok()?,
            window: Duration::from_millis(ms.parse().ok()?),
        })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.count,
            humantime::format_duration(self.window)
        )
    }
}

impl std::str::FromStr for RateLimit {
    type Err = String;

    /// `100/1m`, `5/1s`, `1000/1h`: a count of starts per window.
    fn from_str(text: &str) -> Result<Self, String> {
        let hint = "write COUNT/WINDOW, for example \"100/1m\" or \"5/1s\"";
        let (count, window) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("rate limit {text:?} has no `/`: {hint}"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("rate limit {text:?} does not start with a count: {hint}"))?;
        if count == 0 || count > MAX_RATE_COUNT {
            return Err(format!(
                "rate limit {text:?} must allow 1 to {MAX_RATE_COUNT} starts per window \
                 (pause the type to stop it)"
            ));
        }
        let window = crate::units::parse_duration(window)
            .map_err(|why| format!("rate limit {text:?} has a bad window ({why}): {hint}"))?;
        if window < Duration::from_millis(1) || window > MAX_RATE_WINDOW {
            return Err(format!(
                "rate limit {text:?} needs a window from 1ms to 24h"
            ));
        }
        Ok(Self { count, window })
    }
}

impl Serialize for RateLimit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks a global concurrency value.
pub fn validate_concurrency(n: u32) -> Result<u32, String> {
    if n == 0 || n > MAX_GLOBAL_CONCURRENCY {
        return Err(format!(
            "global concurrency must be 1 to {MAX_GLOBAL_CONCURRENCY} (got {n}; pause the \
             type to stop it)"
        ));
    }
    Ok(n)
}

/// The limits one source sets on a type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateLimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

impl Limits {
    pub fn is_unset(&self) -> bool {
        *self == Limits::default()
    }
}

/// The flow-control state of one job type. Limits come in two layers: the loaded plugin's
/// manifest, and overrides set at run time (API, CLI), which win field by field until cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeControl {
    pub paused: bool,
    /// No job of the type starts before this time (a handler reported a rate limit).
    #[serde(
        with = "crate::job::serde_time::option",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub held_until: Option<Millis>,
    pub manifest: Limits,
    pub overrides: Limits,
}

impl TypeControl {
    /// The rate limit in force.
    pub fn rate(&self) -> Option<RateLimit> {
        self.overrides.rate.or(self.manifest.rate)
    }

    /// The global concurrency limit in force.
    pub fn concurrency(&self) -> Option<u32> {
        self.overrides.concurrency.or(self.manifest.concurrency)
    }

    /// Whether jobs of the type may start at `now` at all (not paused, not held).
    pub fn open_at(&self, now: Millis) -> bool {
        !self.paused && self.held_until.is_none_or(|t| t <= now)
    }

    /// Whether it may keep jobs of the type waiting at `now` (paused, held or limited).
    pub fn restricts(&self, now: Millis) -> bool {
        !self.open_at(now) || self.rate().is_some() || self.concurrency().is_some()
    }

    /// True when nothing is set: backends may drop the record.
    pub fn is_empty(&self) -> bool {
        *self == TypeControl::default()
    }

    /// Applies a change (the rules every backend follows).
    pub fn apply(&mut self, change: &ControlChange, now: Millis) {
        match change {
            ControlChange::Pause => self.paused = true,
            ControlChange::Resume => self.paused = false,
            ControlChange::Hold { until } => {
                if *until > now {
                    self.held_until = Some(self.held_until.map_or(*until, |t| t.max(*until)));
                }
            }
            ControlChange::Manifest(limits) => self.manifest = *limits,
            ControlChange::Override { rate, concurrency } => {
                if let Some(r) = rate {
                    self.overrides.rate = *r;
                }
                if let Some(c) = concurrency {
                    self.overrides.concurrency = *c;
                }
            }
        }
        if self.held_until.is_some_and(|t| t <= now) {
            self.held_until = None;
        }
    }

    /// The event a change writes, if any: `type.paused` and `type.resumed` when the state
    /// flips, `type.limited` for a hold (a handler's rate limit) that moves the time later,
    /// `type.limits` when the limits
    /// in force change.
    pub fn event_for(
        before: &TypeControl,
        after: &TypeControl,
    ) -> Option<(&'static str, serde_json::Value)> {
        if before.paused != after.paused {
            let kind = if after.paused {
                "type.paused"
            } else {
                "type.resumed"
            };
            return Some((kind, serde_json::json!({ "paused": after.paused })));
        }
        if before.held_until != after.held_until
            && let Some(until) = after.held_until
        {
            return Some((
                "type.limited",
                serde_json::json!({ "until": crate::job::serde_time::format_rfc3339(until) }),
            ));
        }
        if before.rate() != after.rate() || before.concurrency() != after.concurrency() {
            return Some((
                "type.limits",
                serde_json::json!({
                    "rate_limit": after.rate().map(|r| r.to_string()),
                    "global_concurrency": after.concurrency(),
                }),
            ));
        }
        None
    }
}

/// Reads a type's control from its stored JSON (SQLite and Redis store the same form).
pub fn decode_control(job_type: &str, text: &str) -> Result<TypeControl, super::StorageError> {
    serde_json::from_str(text).map_err(|e| {
        super::StorageError::Corrupt(format!(
            "the flow control of type `{job_type}` cannot be read ({e}); set it again with \
             `spool limits set` or `spool resume`"
        ))
    })
}

/// Reads a schedule from its stored JSON.
pub fn decode_schedule(name: &str, text: &str) -> Result<Schedule, super::StorageError> {
    serde_json::from_str(text).map_err(|e| {
        super::StorageError::Corrupt(format!(
            "schedule `{name}` cannot be read ({e}); remove it with `spool schedules remove \
             {name}` and add it again"
        ))
    })
}

/// Checks a change before any backend applies it: a valid type, limits in range.
pub fn check_change(job_type: &str, change: &ControlChange) -> Result<(), super::StorageError> {
    crate::job::validate_job_type(job_type)?;
    let limits: Vec<Option<u32>> = match change {
        ControlChange::Manifest(l) => vec![l.concurrency],
        ControlChange::Override { concurrency, .. } => vec![concurrency.flatten()],
        _ => vec![],
    };
    for n in limits.into_iter().flatten() {
        validate_concurrency(n).map_err(super::StorageError::InvalidInput)?;
    }
    Ok(())
}

/// The event a change writes for `job_type` (`TypeControl::event_for`).
pub fn change_event(
    job_type: &str,
    before: &TypeControl,
    after: &TypeControl,
) -> Option<super::NewEvent> {
    TypeControl::event_for(before, after).map(|(kind, data)| super::NewEvent {
        kind: kind.to_string(),
        job_id: None,
        job_type: Some(job_type.to_string()),
        data,
    })
}

/// A change to a type's flow control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlChange {
    /// Stop starting jobs of the type (enqueues are still accepted; running jobs finish).
    Pause,
    Resume,
    /// Start none before `until` (a later hold extends it; an earlier one changes nothing).
    Hold {
        until: Millis,
    },
    /// The manifest's limits, replaced whole (a plugin (re)load writes them).
    Manifest(Limits),
    /// Run-time overrides: `Some(Some(v))` sets a field, `Some(None)` clears it (the
    /// manifest's value applies again), `None` leaves it.
    Override {
        rate: Option<Option<RateLimit>>,
        concurrency: Option<Option<u32>>,
    },
}

/// How many more jobs of a type a claim may start at `now`, given its control, the jobs of
/// the type running now, and the start times within the rate window (any order). Also the
/// time the type opens again when that is zero because of a hold or the rate window, for the
/// claimer's next look (`None`: it opens when something else happens, such as a job ending).
pub fn allowance(
    control: &TypeControl,
    running: u64,
    starts_in_window: &[Millis],
    now: Millis,
) -> (u64, Option<Millis>) {
    if control.paused {
        return (0, None);
    }
    if let Some(until) = control.held_until
        && until > now
    {
        return (0, Some(until));
    }
    let mut allow = u64::MAX;
    let mut reopen = None;
    if let Some(max) = control.concurrency() {
        allow = allow.min(u64::from(max).saturating_sub(running));
    }
    if let Some(rate) = control.rate() {
        let used = starts_in_window.len() as u64;
        let left = u64::from(rate.count).saturating_sub(used);
        if left == 0 {
            // The oldest start leaves the window first.
            reopen = starts_in_window.iter().min().map(|t| t + rate.window_ms());
        }
        allow = allow.min(left);
    }
    (allow, if allow == 0 { reopen } else { None })
}

/// What a claim hands back: the jobs, and how soon a type that has ready jobs but was held
/// back by a hold or its rate window opens again (the claimer's next look; measured on the
/// storage's own clock, so daemons need not agree on the time).
#[derive(Debug, Clone, Default)]
pub struct ClaimBatch {
    pub jobs: Vec<super::Claimed>,
    pub reopens_in: Option<Duration>,
}

impl ClaimBatch {
    pub fn new(jobs: Vec<super::Claimed>, blocked_until: Option<Millis>, now: Millis) -> Self {
        Self {
            jobs,
            reopens_in: blocked_until.map(|t| Duration::from_millis((t - now).max(0) as u64)),
        }
    }
}

/// What a schedule does with ticks that passed while no daemon ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Enqueue one job for the latest missed tick (never one per missed tick).
    #[default]
    RunOnce,
    /// Enqueue nothing for ticks missed by more than a short grace.
    Skip,
}

/// A cron schedule: each tick enqueues one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub name: String,
    /// 5 fields (minute granularity) or 6 (seconds first).
    pub cron: String,
    /// An IANA time zone name, such as `UTC` or `Europe/Paris`.
    #[serde(default = "utc")]
    pub timezone: String,
    /// The type of the jobs it enqueues.
    #[serde(rename = "type")]
    pub job_type: String,
    #[serde(default = "empty_object")]
    pub payload: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub missed: Missed,
    #[serde(default)]
    pub paused: bool,
    /// The plugin whose manifest declares it; None when made through the API or CLI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
}

fn utc() -> String {
    "UTC".into()
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// A stored schedule and where its ticks stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    #[serde(flatten)]
    pub schedule: Schedule,
    /// The last tick that fired (or was skipped); None before the first.
    #[serde(
        with = "crate::job::serde_time::option",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub last_tick: Option<Millis>,
    /// When the schedule was first stored: ticks before it never fire.
    #[serde(with = "crate::job::serde_time")]
    pub created_at: Millis,
}

/// Checks a schedule name: 1 to `MAX_SCHEDULE_NAME_LEN` bytes of letters, digits, `-`, `_`,
/// `.` and `:`.
pub fn validate_schedule_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_SCHEDULE_NAME_LEN {
        return Err(format!(
            "schedule name must be 1 to {MAX_SCHEDULE_NAME_LEN} bytes (got {})",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(format!(
            "schedule name `{}` contains {c:?}: use letters, digits, `-`, `_`, `.` and `:`",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Checks a schedule before any backend stores it: its name, job type, payload size (at
/// most `max_payload` bytes), priority and attempts. The cron expression and time zone are the
/// caller's to check (`crate::cron`): storage does not parse them.
pub fn check_schedule(schedule: &Schedule, max_payload: usize) -> Result<(), super::StorageError> {
    use super::StorageError::InvalidInput;
    validate_schedule_name(&schedule.name).map_err(InvalidInput)?;
    let job = tick_job(schedule, 0).map_err(InvalidInput)?;
    job.validate(max_payload)
        .map_err(|e| InvalidInput(format!("schedule `{}`: {e}", schedule.name)))?;
    Ok(())
}

/// The job a schedule's tick enqueues. Its id is a UUIDv7 made from the tick time and the
/// schedule name, the same on every daemon, so two daemons firing the same tick enqueue one
/// job (enqueue is idempotent by id), and ids still sort by time.
pub fn tick_job(schedule: &Schedule, tick: Millis) -> Result<NewJob, String> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{}\0{tick}", schedule.name).as_bytes());
    let mut random = [0u8; 10];
    random.copy_from_slice(&digest[..10]);
    let id = uuid::Builder::from_unix_timestamp_millis(tick.max(0) as u64, &random)
        .into_uuid()
        .to_string();
    let payload = serde_json::value::to_raw_value(&schedule.payload)
        .map_err(|e| format!("schedule `{}` payload: {e}", schedule.name))?;
    let mut job = NewJob::new(schedule.job_type.clone(), payload);
    job.id = id;
    if let Some(p) = schedule.priority {
        job.priority = p;
    }
    if let Some(a) = schedule.max_attempts {
        job.max_attempts = a;
    }
    job.timeout_ms = schedule.timeout_ms;
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_parse_and_round_trip() {
        let r: RateLimit = "100/1m".parse().unwrap();
        assert_eq!(r.count, 100);
        assert_eq!(r.window, Duration::from_secs(60));
        assert_eq!(RateLimit::decode(&r.encode()), Some(r));
        assert_eq!(r.to_string(), "100/1m");
        for bad in ["100", "0/1s", "x/1s", "5/", "5/0s", "5/2d", "5/10"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn allowance_takes_the_tightest_limit() {
        let mut c = TypeControl::default();
        assert_eq!(allowance(&c, 10, &[], 0), (u64::MAX, None));
        c.manifest.concurrency = Some(3);
        assert_eq!(allowance(&c, 1, &[], 0), (2, None));
        assert_eq!(allowance(&c, 5, &[], 0), (0, None));
        c.overrides.rate = Some("2/1s".parse().unwrap());
        assert_eq!(allowance(&c, 0, &[100], 500), (1, None));
        assert_eq!(allowance(&c, 0, &[100, 300], 500), (0, Some(1100)));
        c.apply(&ControlChange::Hold { until: 2000 }, 500);
        assert_eq!(allowance(&c, 0, &[], 500), (0, Some(2000)));
        c.apply(&ControlChange::Pause, 500);
        assert_eq!(allowance(&c, 0, &[], 3000), (0, None));
    }

    #[test]
    fn overrides_win_field_by_field_until_cleared() {
        let mut c = TypeControl::default();
        c.apply(
            &ControlChange::Manifest(Limits {
                rate: Some("10/1s".parse().unwrap()),
                concurrency: Some(4),
            }),
            0,
        );
        c.apply(
            &ControlChange::Override {
                rate: None,
                concurrency: Some(Some(2)),
            },
            0,
        );
        assert_eq!(c.concurrency(), Some(2));
        assert_eq!(c.rate().map(|r| r.count), Some(10));
        c.apply(
            &ControlChange::Override {
                rate: None,
                concurrency: Some(None),
            },
            0,
        );
        assert_eq!(c.concurrency(), Some(4));
    }

    #[test]
    fn tick_jobs_have_the_same_id_on_every_daemon() {
        let s = Schedule {
            name: "sync".into(),
            cron: "* * * * * *".into(),
            timezone: "UTC".into(),
            job_type: "echo".into(),
            payload: serde_json::json!({"a": 1}),
            priority: None,
            max_attempts: None,
            timeout_ms: None,
            missed: Missed::RunOnce,
            paused: false,
            plugin: None,
        };
        let a = tick_job(&s, 1_700_000_000_000).unwrap();
        let b = tick_job(&s, 1_700_000_000_000).unwrap();
        let c = tick_job(&s, 1_700_000_001_000).unwrap();
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert!(a.id < c.id);
    }
}
