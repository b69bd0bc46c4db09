//! The lifecycle decisions every backend shares, as plain functions of the job's fields and
//! `now`: where a job goes on enqueue, on a failed attempt, when its lease expires or is
//! released, and whether it may be cancelled or replayed. Backends apply these; the
//! conformance suite checks that they did.

use super::{Job, JobError, JobState, Millis};

/// The state and ready time of a new job: `pending` now, or `scheduled` until `run_at`.
pub fn initial_state(run_at: Option<Millis>, now: Millis) -> (JobState, Millis) {
    match run_at {
        Some(at) if at > now => (JobState::Scheduled, at),
        _ => (JobState::Pending, now),
    }
}

/// Where a running job goes when its attempt fails. `attempt` already counts this attempt.
/// A requested cancel wins (the failure is most likely the stop it asked for); then a
/// permanent failure (`retry_at` None) or the last attempt ends in `failed`; else `retrying`.
pub fn state_after_failure(
    attempt: u32,
    max_attempts: u32,
    cancel_requested: bool,
    retry_at: Option<Millis>,
) -> JobState {
    if cancel_requested {
        JobState::Cancelled
    } else if retry_at.is_none() || attempt >= max_attempts {
        JobState::Failed
    } else {
        JobState::Retrying
    }
}

/// Where a running job goes when its lease expired (its worker died or hung). The claim
/// already counted the attempt, so a job that kills its daemon every time runs out of
/// attempts and ends in `failed` instead of looping.
pub fn state_after_lease_expiry(
    attempt: u32,
    max_attempts: u32,
    cancel_requested: bool,
) -> JobState {
    if cancel_requested {
        JobState::Cancelled
    } else if attempt >= max_attempts {
        JobState::Failed
    } else {
        JobState::Pending
    }
}

/// Where a running job goes when its worker gives the lease back unfinished (graceful
/// shutdown): `pending` with the attempt not counted, unless a cancel was requested.
pub fn state_after_release(cancel_requested: bool) -> JobState {
    if cancel_requested {
        JobState::Cancelled
    } else {
        JobState::Pending
    }
}

/// What a cancel request does to a job in a given state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelAction {
    /// Not running yet: `cancelled` at once.
    CancelNow,
    /// Running: flag it; the worker sees the flag when it renews the lease and stops the job.
    RequestStop,
    /// Completed, failed or cancelled already: nothing to do.
    AlreadyFinished,
}

pub fn cancel_action(state: JobState) -> CancelAction {
    match state {
        JobState::Scheduled | JobState::Pending | JobState::Retrying => CancelAction::CancelNow,
        JobState::Running => CancelAction::RequestStop,
        JobState::Completed | JobState::Failed | JobState::Cancelled => {
            CancelAction::AlreadyFinished
        }
    }
}

/// Only `failed` and `cancelled` jobs can be replayed (put back to `pending` with their
/// attempts reset); a completed job is done and a live one is still on its way.
pub fn check_replay(job: &Job) -> Result<(), JobError> {
    match job.status {
        JobState::Failed | JobState::Cancelled => Ok(()),
        state => Err(JobError::WrongState {
            id: job.id.clone(),
            state,
            what: "only failed or cancelled jobs can be replayed".into(),
        }),
    }
}

/// The error recorded on a job whose lease expired: the worker stopped renewing it.
pub fn lease_expired_error(attempt: u32) -> String {
    format!(
        "lease expired during attempt {attempt}: the worker stopped renewing it (its daemon \
         was killed or hung)"
    )
}
