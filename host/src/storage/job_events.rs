//! The job events backends append as part of each transition (`job.created`, `job.started`,
//! ...), built in one place so every backend writes the same kinds and fields.

use super::NewEvent;
use crate::job::{Job, JobState, serde_time::format_rfc3339};
use serde_json::{Value, json};

pub(crate) const CREATED: &str = "job.created";
pub(crate) const STARTED: &str = "job.started";
pub(crate) const PROGRESS: &str = "job.progress";
pub(crate) const COMPLETED: &str = "job.completed";
pub(crate) const RETRYING: &str = "job.retrying";
pub(crate) const FAILED: &str = "job.failed";
pub(crate) const CANCELLED: &str = "job.cancelled";
pub(crate) const DEBOUNCED: &str = "job.debounced";

/// An event about `job` as it is now: `status` and `attempt`, plus `extra` fields.
pub(crate) fn job_event(kind: &str, job: &Job, extra: Value) -> NewEvent {
    event_of(kind, &job.id, &job.job_type, job.status, job.attempt, extra)
}

fn event_of(
    kind: &str,
    id: &str,
    job_type: &str,
    status: JobState,
    attempt: u32,
    extra: Value,
) -> NewEvent {
    let mut data = json!({ "status": status, "attempt": attempt });
    if let (Value::Object(data), Value::Object(extra)) = (&mut data, extra) {
        data.extend(extra);
    }
    NewEvent {
        kind: kind.to_owned(),
        job_id: Some(id.to_owned()),
        job_type: Some(job_type.to_owned()),
        data,
    }
}

/// `job.completed` from the few fields a completion reads back (the hot path skips
/// reading the whole row).
pub(crate) fn completed(id: &str, job_type: &str, attempt: u32) -> NewEvent {
    event_of(
        COMPLETED,
        id,
        job_type,
        JobState::Completed,
        attempt,
        json!({}),
    )
}

/// A debounced enqueue gave a job that had not started a new payload and start time.
pub(crate) fn debounced(job: &Job) -> NewEvent {
    job_event(
        DEBOUNCED,
        job,
        json!({ "run_at": format_rfc3339(job.run_at) }),
    )
}

pub(crate) fn created(job: &Job) -> NewEvent {
    job_event(
        CREATED,
        job,
        json!({ "priority": job.priority, "run_at": format_rfc3339(job.run_at) }),
    )
}

/// The events of a job an announced import inserts (the fallback replay hands over jobs
/// accepted, and maybe cancelled, while the primary was away): `job.created`, then
/// `job.cancelled` for a job cancelled meanwhile, as if both had happened here.
pub(crate) fn announced(job: &Job) -> Vec<NewEvent> {
    let mut out = vec![created(job)];
    if job.status == JobState::Cancelled {
        out.push(cancelled(job));
    }
    out
}

pub(crate) fn started(job: &Job, worker: &str) -> NewEvent {
    job_event(STARTED, job, json!({ "worker": worker }))
}

/// `job.progress` of a running job (from the fields a progress update reads back).
pub(crate) fn progress(
    id: &str,
    job_type: &str,
    attempt: u32,
    percent: u8,
    message: Option<&str>,
) -> NewEvent {
    let extra = json!({ "percent": percent, "message": message });
    event_of(PROGRESS, id, job_type, JobState::Running, attempt, extra)
}

/// The event for a job whose attempt just ended (complete, fail, release or lease expiry),
/// now in `job.status`; None for a released job back in `pending` (nothing happened to it).
pub(crate) fn attempt_ended(job: &Job, lease_expired: bool) -> Option<NewEvent> {
    let mut extra = json!({});
    if lease_expired {
        extra["reason"] = json!("lease_expired");
    }
    if matches!(
        job.status,
        JobState::Retrying | JobState::Failed | JobState::Pending
    ) {
        extra["error"] = json!(job.error);
    }
    if job.status == JobState::Retrying {
        extra["run_at"] = json!(format_rfc3339(job.run_at));
    }
    let kind = match job.status {
        JobState::Completed => COMPLETED,
        JobState::Failed => FAILED,
        JobState::Cancelled => CANCELLED,
        JobState::Retrying => RETRYING,
        // Requeued after its lease expired: it will run again at once.
        JobState::Pending if lease_expired => RETRYING,
        _ => return None,
    };
    Some(job_event(kind, job, extra))
}

pub(crate) fn cancelled(job: &Job) -> NewEvent {
    job_event(CANCELLED, job, json!({}))
}

pub(crate) fn replayed(job: &Job) -> NewEvent {
    job_event(RETRYING, job, json!({ "replay": true }))
}
