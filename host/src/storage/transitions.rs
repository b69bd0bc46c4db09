//! The ends of an attempt (and a debounced enqueue) applied to a `Job` in Rust, for the
//! backends that decide them in Rust (memory and SQLite; Redis does the same in its Lua
//! scripts). The decisions are the pure rules of `job::rules`; this is the one place that
//! writes their outcome into the job's fields, so both backends record the same state, ready
//! time, error, logs and attempt.

use super::Failure;
use crate::job::{self, Job, JobState, Millis};

/// A failed attempt of a running job: `retrying` at `retry_at` while attempts remain (and no
/// cancel was requested), else `failed` (or `cancelled`). Records the error, logs and version.
pub(crate) fn apply_failure(job: &mut Job, failure: Failure, now: Millis) {
    job.status = job::state_after_failure(
        job.attempt,
        job.max_attempts,
        job.cancel_requested,
        failure.retry_at,
    );
    if job.status == JobState::Retrying {
        job.run_at = failure.retry_at.unwrap_or(now);
    }
    job.error = Some(failure.error);
    job.logs = job::trim_logs(failure.logs);
    job.plugin_version = failure.plugin_version;
}

/// A running job whose lease expired at `now`: `pending` (ready at once; the claim already
/// counted the attempt), `failed` on its last attempt, or `cancelled` if that was asked for.
pub(crate) fn apply_lease_expiry(job: &mut Job, now: Millis) {
    job.status = job::state_after_lease_expiry(job.attempt, job.max_attempts, job.cancel_requested);
    if job.status == JobState::Pending {
        job.run_at = now;
    }
    if job.status != JobState::Cancelled {
        job.error = Some(job::lease_expired_error(job.attempt));
    }
}

/// A running job whose worker gave the lease back: `pending` with the attempt not counted
/// (it keeps its ready time, so it goes back to the front of its priority), or `cancelled`.
pub(crate) fn apply_release(job: &mut Job) {
    job.status = job::state_after_release(job.cancel_requested);
    if job.status == JobState::Pending {
        job.attempt = job.attempt.saturating_sub(1);
    }
}

/// A debounced enqueue reaching a job that has not started (`pending` or `scheduled`): it
/// takes the new payload and waits `debounce_ms` from `now` (never less than it already
/// had to), `scheduled` until then.
pub(crate) fn debounce(
    job: &mut Job,
    payload: Box<serde_json::value::RawValue>,
    debounce_ms: u64,
    now: Millis,
) {
    job.payload = payload;
    let at = now.saturating_add(debounce_ms as i64);
    if job.status == JobState::Scheduled {
        job.run_at = job.run_at.max(at);
    } else {
        job.run_at = at;
    }
    job.status = JobState::Scheduled;
}
