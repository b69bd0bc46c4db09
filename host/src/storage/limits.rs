//! Input checks every backend makes before writing, so that all of them refuse the same
//! things with the same messages (and write nothing).

use super::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, Result, StorageError};
use crate::job::{self, Job, JobState, Millis, NewJob};

/// Longest cache namespace or key, in bytes.
pub const MAX_CACHE_KEY_LEN: usize = 1024;

/// Validates a batch; the error names the job's position when there are several.
pub(crate) fn check_new_jobs(jobs: &[NewJob], max_payload_bytes: usize) -> Result<()> {
    for (i, job) in jobs.iter().enumerate() {
        job.validate(max_payload_bytes).map_err(|e| {
            if jobs.len() == 1 {
                StorageError::from(e)
            } else {
                StorageError::InvalidInput(format!(
                    "job {} of {} (type `{}`): {e}; nothing was enqueued",
                    i + 1,
                    jobs.len(),
                    job.job_type.escape_debug()
                ))
            }
        })?;
    }
    Ok(())
}

/// An imported job must be addressable and routable; the rest is taken as it comes (it was
/// valid where it came from).
pub(crate) fn check_imported(jobs: &[Job]) -> Result<()> {
    for job in jobs {
        job::validate_job_id(&job.id)
            .and_then(|()| job::validate_job_type(&job.job_type))
            .and_then(|()| job::validate_priority(job.priority))
            .map_err(|e| {
                StorageError::InvalidInput(format!(
                    "cannot import job `{}`: {e}; nothing was imported",
                    job.id.escape_debug()
                ))
            })?;
    }
    Ok(())
}

/// Files an imported job like any other: `finished_at` is set exactly when it is finished
/// (SQLite's indexes rely on that), and a running job's lease has already run out (nobody
/// here holds it), so the reaper returns it to the queue.
pub(crate) fn normalize_imported(job: &mut Job, now: Millis) {
    if job.status.is_finished() {
        job.finished_at.get_or_insert(job.created_at);
    } else {
        job.finished_at = None;
    }
    if job.status == JobState::Running {
        job.lease_expires_at = Some(job.lease_expires_at.unwrap_or(now).min(now));
    } else {
        job.lease_expires_at = None;
    }
}

pub(crate) fn list_limit(limit: usize) -> usize {
    if limit == 0 {
        DEFAULT_LIST_LIMIT
    } else {
        limit.min(MAX_LIST_LIMIT)
    }
}

pub(crate) fn check_cache_key(ns: &str, key: &str) -> Result<()> {
    for (what, text) in [("namespace", ns), ("key", key)] {
        if text.is_empty() || text.len() > MAX_CACHE_KEY_LEN {
            return Err(StorageError::InvalidInput(format!(
                "cache {what} must be 1 to {MAX_CACHE_KEY_LEN} bytes (got {})",
                text.len()
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_cache_value(value: &str, max_bytes: usize) -> Result<()> {
    if value.len() > max_bytes {
        return Err(StorageError::InvalidInput(format!(
            "cache value is {} bytes, over the limit of {max_bytes} bytes",
            value.len()
        )));
    }
    Ok(())
}

pub(crate) fn not_an_integer(ns: &str, key: &str) -> StorageError {
    StorageError::InvalidInput(format!(
        "cache key `{}` in `{}` does not hold an integer, so it cannot be incremented",
        key.escape_debug(),
        ns.escape_debug()
    ))
}

pub(crate) fn increment_overflow(ns: &str, key: &str) -> StorageError {
    StorageError::InvalidInput(format!(
        "incrementing cache key `{}` in `{}` would overflow a 64-bit integer",
        key.escape_debug(),
        ns.escape_debug()
    ))
}

/// Event ids are decimal integers here (SQLite, memory).
pub(crate) fn parse_event_id(after: &str) -> Result<i64> {
    after.trim().parse::<i64>().map_err(|_| {
        StorageError::InvalidInput(format!(
            "invalid event id `{}`: resume from an id this storage handed out",
            after.escape_debug()
        ))
    })
}

pub(crate) fn replay_conflict(id: &str, holder: &str) -> StorageError {
    StorageError::InvalidInput(format!(
        "cannot replay job `{id}`: live job `{holder}` holds its unique key; cancel it or wait \
         for it to finish first"
    ))
}
