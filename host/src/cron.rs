//! Cron schedules: parsing (5 fields, or 6 with seconds first, in an IANA time zone), the
//! decision what a schedule's due tick means, and the service every daemon runs. Ticks fire
//! once however many daemons run: the tick's job has an id made from the schedule name and
//! tick time (a second enqueue of it is a no-op), and the schedule's `last_tick` moves by
//! compare and set.

use crate::job::{Clock, Millis};
use crate::service::{Next, Service};
use crate::storage::flow::{Missed, ScheduleRecord, tick_job};
use crate::storage::{NewEvent, Storage};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A tick missed by more than this counts as missed (for `missed = "skip"`): a daemon that
/// was busy or restarting for a moment still fires it.
pub const SKIP_GRACE_MS: i64 = 10_000;
/// The service reads the schedules at least this often (a schedule added on another daemon
/// is seen within it).
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// A parsed cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: Cron,
    tz: Tz,
}

/// Parses a schedule's cron expression and time zone; the error says what to write instead.
pub fn parse(expr: &str, timezone: &str) -> Result<CronSpec, String> {
    let expr = expr.trim();
    let fields = expr.split_whitespace().count();
    if !(expr.starts_with('@') || fields == 5 || fields == 6) {
        return Err(format!(
            "cron expression `{expr}` has {fields} fields: write 5 (minute hour day-of-month \
             month day-of-week, e.g. \"*/15 * * * *\") or 6 (seconds first, e.g. \
             \"*/10 * * * * *\")"
        ));
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| format!("cron expression `{expr}` is not valid: {e}"))?;
    let tz: Tz = timezone.trim().parse().map_err(|_| {
        format!("unknown time zone `{timezone}`: use an IANA name such as UTC or Europe/Paris")
    })?;
    Ok(CronSpec { cron, tz })
}

impl CronSpec {
    fn at(&self, ms: Millis) -> Option<DateTime<Tz>> {
        Utc.timestamp_millis_opt(ms)
            .single()
            .map(|t| t.with_timezone(&self.tz))
    }

    /// The first tick strictly after `ms`.
    pub fn next_after(&self, ms: Millis) -> Option<Millis> {
        let t = self.cron.find_next_occurrence(&self.at(ms)?, false).ok()?;
        Some(t.timestamp_millis())
    }

    /// The next `n` ticks after `ms`.
    pub fn upcoming(&self, ms: Millis, n: usize) -> Vec<Millis> {
        let mut out = Vec::with_capacity(n);
        let mut t = ms;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// The latest tick at or before `ms`.
    pub fn latest_until(&self, ms: Millis) -> Option<Millis> {
        let t = self
            .cron
            .find_previous_occurrence(&self.at(ms)?, true)
            .ok()?;
        Some(t.timestamp_millis())
    }
}

/// What a schedule's state means at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Nothing,
    /// Enqueue the job of this tick, then move `last_tick` to it.
    Fire(Millis),
    /// Move `last_tick` to this tick without a job (paused, or missed with `skip`).
    Skip(Millis),
}

/// The latest tick after the last one handled (or after the schedule was made) fires once,
/// whatever number of ticks passed while no daemon ran; with `missed = "skip"` one missed by
/// more than `SKIP_GRACE_MS` is passed over. A paused schedule passes over its ticks, so
/// resuming it does not fire one from the pause.
pub fn due(record: &ScheduleRecord, spec: &CronSpec, now: Millis) -> Due {
    let base = record.last_tick.unwrap_or(record.created_at);
    let Some(latest) = spec.latest_until(now) else {
        return Due::Nothing;
    };
    if latest <= base {
        return Due::Nothing;
    }
    if record.schedule.paused
        || (record.schedule.missed == Missed::Skip && now - latest > SKIP_GRACE_MS)
    {
        return Due::Skip(latest);
    }
    Due::Fire(latest)
}

/// Fires due ticks until `stop`. Every daemon runs one; storage makes each tick fire once.
pub async fn run(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>, stop: watch::Receiver<bool>) {
    let cron = CronService {
        storage,
        clock,
        reported: HashSet::new(),
    };
    crate::service::run(cron, stop).await;
}

struct CronService {
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    /// Schedules whose expression no longer parses, reported once each.
    reported: HashSet<String>,
}

#[async_trait::async_trait]
impl Service for CronService {
    type Error = crate::storage::StorageError;

    fn name(&self) -> &'static str {
        "cron"
    }

    fn failure(&self) -> &'static str {
        "cannot read the cron schedules"
    }

    /// Fires what is due; waits until the next tick, at most `RELOAD_EVERY` (schedules
    /// change at run time).
    async fn run_once(&mut self) -> Result<Next, Self::Error> {
        let now = self.clock.now_ms();
        let mut wake = now + RELOAD_EVERY.as_millis() as i64;
        for r in self.storage.schedules().await? {
            let name = &r.schedule.name;
            let spec = match parse(&r.schedule.cron, &r.schedule.timezone) {
                Ok(s) => s,
                Err(e) => {
                    if self.reported.insert(name.clone()) {
                        tracing::warn!(schedule = %name, error = %e,
                            "schedule cannot fire; fix it with `spool schedules add`");
                    }
                    continue;
                }
            };
            self.reported.remove(name);
            fire(self.storage.as_ref(), &r, &spec, now).await;
            if let Some(next) = spec.next_after(now) {
                wake = wake.min(next);
            }
        }
        let limit = Duration::from_millis((wake - self.clock.now_ms()).clamp(1, 1000) as u64);
        Ok(Next::Wait(limit))
    }
}

async fn fire(storage: &dyn Storage, r: &ScheduleRecord, spec: &CronSpec, now: Millis) {
    let name = &r.schedule.name;
    let tick = match due(r, spec, now) {
        Due::Nothing => return,
        Due::Skip(tick) => tick,
        Due::Fire(tick) => {
            let job = match tick_job(&r.schedule, tick) {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(schedule = %name, error = %e, "schedule cannot make its job");
                    return;
                }
            };
            // Enqueue first: a daemon that dies between the two leaves the tick to another,
            // whose enqueue of the same id is a no-op.
            match storage.enqueue(job).await {
                Ok(e) if e.created => {
                    let at = crate::job::serde_time::format_rfc3339(tick);
                    tracing::info!(schedule = %name, job_id = %e.job.id, tick = %at, "schedule fired");
                    let event = NewEvent {
                        kind: "schedule.fired".into(),
                        job_id: Some(e.job.id.clone()),
                        job_type: Some(e.job.job_type.clone()),
                        data: serde_json::json!({ "schedule": name, "tick": at }),
                    };
                    if let Err(err) = storage.publish_event(event).await {
                        tracing::warn!(schedule = %name, error = %err, "cannot record the schedule's event");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(schedule = %name, error = %e, "schedule cannot enqueue its job; trying again");
                    return;
                }
            }
            tick
        }
    };
    if let Err(e) = storage.advance_schedule(name, r.last_tick, tick).await {
        tracing::warn!(schedule = %name, error = %e, "cannot record the schedule's tick; trying again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::flow::Schedule;

    fn record(cron: &str, missed: Missed, last: Option<Millis>, created: Millis) -> ScheduleRecord {
        ScheduleRecord {
            schedule: Schedule {
                name: "s".into(),
                cron: cron.into(),
                timezone: "UTC".into(),
                job_type: "t".into(),
                payload: serde_json::json!({}),
                priority: None,
                max_attempts: None,
                timeout_ms: None,
                missed,
                paused: false,
                plugin: None,
            },
            last_tick: last,
            created_at: created,
        }
    }

    const MIN: Millis = 60_000;
    // 2026-01-01T00:00:00Z
    const T0: Millis = 1_767_225_600_000;

    #[test]
    fn expressions_take_five_or_six_fields_and_a_time_zone() {
        assert!(parse("*/15 * * * *", "UTC").is_ok());
        assert!(parse("*/10 * * * * *", "Europe/Paris").is_ok());
        assert!(parse("@hourly", "UTC").is_ok());
        let e = parse("* * * *", "UTC").unwrap_err();
        assert!(e.contains("has 4 fields"), "{e}");
        let e = parse("* * * * * * 2030", "UTC").unwrap_err();
        assert!(e.contains("has 7 fields"), "{e}");
        let e = parse("61 * * * *", "UTC").unwrap_err();
        assert!(e.contains("is not valid"), "{e}");
        let e = parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert!(e.contains("unknown time zone"), "{e}");
    }

    #[test]
    fn ticks_follow_the_time_zone() {
        // 09:00 in Paris is 08:00 UTC in winter.
        let spec = parse("0 9 * * *", "Europe/Paris").unwrap();
        assert_eq!(spec.next_after(T0), Some(T0 + 8 * 60 * MIN));
        let spec = parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(
            spec.upcoming(T0, 3),
            [T0 + 15 * MIN, T0 + 30 * MIN, T0 + 45 * MIN]
        );
        assert_eq!(spec.latest_until(T0 + 20 * MIN), Some(T0 + 15 * MIN));
    }

    #[test]
    fn the_latest_missed_tick_fires_once_or_is_skipped() {
        let spec = parse("* * * * *", "UTC").unwrap();
        // Nothing before the first tick after creation.
        let r = record("* * * * *", Missed::RunOnce, None, T0 + 1);
        assert_eq!(due(&r, &spec, T0 + 30_000), Due::Nothing);
        assert_eq!(due(&r, &spec, T0 + MIN), Due::Fire(T0 + MIN));
        // After an hour down: the latest tick only, once.
        let r = record("* * * * *", Missed::RunOnce, Some(T0), T0);
        assert_eq!(due(&r, &spec, T0 + 60 * MIN + 5), Due::Fire(T0 + 60 * MIN));
        let r = record("* * * * *", Missed::RunOnce, Some(T0 + 60 * MIN), T0);
        assert_eq!(due(&r, &spec, T0 + 60 * MIN + 5), Due::Nothing);
        // `skip`: a tick missed by more than the grace is passed over.
        let r = record("* * * * *", Missed::Skip, Some(T0), T0);
        assert_eq!(due(&r, &spec, T0 + MIN + 5_000), Due::Fire(T0 + MIN));
        assert_eq!(due(&r, &spec, T0 + MIN + 20_000), Due::Skip(T0 + MIN));
        // Paused: ticks pass without jobs.
        let mut r = record("* * * * *", Missed::RunOnce, Some(T0), T0);
        r.schedule.paused = true;
        assert_eq!(due(&r, &spec, T0 + MIN), Due::Skip(T0 + MIN));
    }
}
