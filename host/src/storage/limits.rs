//! Input checks every backend makes before writing, so that all of them refuse the same
//! things with the same messages (and write nothing).

use super::{Completion, DEFAULT_LIST_LIMIT, JobPage, MAX_LIST_LIMIT, Result, StorageError};
use crate::job::{self, Job, JobState, Millis, NewJob, millis_i64};
use std::time::Duration;

/// Longest cache namespace or key, in bytes.
pub const MAX_CACHE_KEY_LEN: usize = 1024;

/// Validates a batch; the error names the job's position when there are several.
pub(crate) fn check_new_jobs(jobs: &[NewJob], max_payload_bytes: usize) -> Result<()> {
    check_each(jobs.iter(), jobs.len(), max_payload_bytes)
}

/// Validates the follow-ups of a batch of completions (all of them, before anything is
/// written: one bad follow-up refuses the whole call), without copying them.
pub(crate) fn check_followups(done: &[Completion], max_payload_bytes: usize) -> Result<()> {
    let count = done.iter().map(|c| c.followups.len()).sum();
    check_each(
        done.iter().flat_map(|c| c.followups.iter()),
        count,
        max_payload_bytes,
    )
}

fn check_each<'a>(
    jobs: impl Iterator<Item = &'a NewJob>,
    count: usize,
    max_payload_bytes: usize,
) -> Result<()> {
    for (i, job) in jobs.enumerate() {
        job.validate(max_payload_bytes).map_err(|e| {
            if count == 1 {
                StorageError::from(e)
            } else {
                StorageError::InvalidInput(format!(
                    "job {} of {count} (type `{}`): {e}; nothing was enqueued",
                    i + 1,
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

/// A page from up to `limit + 1` jobs read newest first: the extra one only says that more
/// follow, and the cursor is the last id kept.
pub(crate) fn into_page(mut jobs: Vec<Job>, limit: usize) -> JobPage {
    let next_cursor = if jobs.len() > limit {
        jobs.truncate(limit);
        jobs.last().map(|j| j.id.clone())
    } else {
        None
    };
    JobPage { jobs, next_cursor }
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

/// Checks a `cache_set` and returns when the value expires (None: never).
pub(crate) fn check_cache_set(
    ns: &str,
    key: &str,
    value: &str,
    ttl: Option<Duration>,
    max_bytes: usize,
    now: Millis,
) -> Result<Option<Millis>> {
    check_cache_key(ns, key)?;
    check_cache_value(value, max_bytes)?;
    Ok(ttl.map(|t| now.saturating_add(millis_i64(t))))
}

/// Whether a write that takes a namespace from `before` to `after` stays within `quota`.
/// Shrinking is always allowed (an overwrite with a smaller value), even past the quota.
pub(crate) fn check_cache_quota(
    ns: &str,
    before: super::CacheUsage,
    after: super::CacheUsage,
    quota: super::CacheQuota,
) -> Result<()> {
    let grows_entries = after.entries > before.entries && after.entries > quota.max_entries;
    let grows_bytes = after.bytes > before.bytes && after.bytes > quota.max_bytes;
    if grows_entries || grows_bytes {
        return Err(cache_full(ns, after, quota));
    }
    Ok(())
}

pub(crate) fn cache_full(
    ns: &str,
    after: super::CacheUsage,
    quota: super::CacheQuota,
) -> StorageError {
    StorageError::InvalidInput(format!(
        "the cache of `{}` is full: this write would make it {} entries and {} bytes, over its \
         quota of {} entries and {} bytes (daemon setting `plugin_cache`); delete entries, give \
         them a ttl, or raise the quota",
        ns.escape_debug(),
        after.entries,
        after.bytes,
        quota.max_entries,
        quota.max_bytes
    ))
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

pub(crate) fn replay_conflict(id: &str, holder: &str) -> StorageError {
    StorageError::InvalidInput(format!(
        "cannot replay job `{id}`: live job `{holder}` holds its unique key; cancel it or wait \
         for it to finish first"
    ))
}
