//! Writer-side housekeeping: promotion of due jobs, the retention sweep, trimming the event
//! log, purging expired cache entries, and the cache writes. Each works in bounded chunks so
//! one call never holds the write lock for long.

use super::connection::OpResult;
use super::sql;
use super::writer::TxCtx;
use crate::job::{JobState, Millis, millis_i64};
use crate::storage::limits;
use crate::storage::{CacheQuota, CacheUsage, RetentionPolicy};
use rusqlite::{Connection, OptionalExtension, params};

pub(super) fn promote_due(
    conn: &Connection,
    ctx: &mut TxCtx,
    now: Millis,
    chunk: usize,
) -> OpResult<usize> {
    let promoted = conn
        .prepare_cached(sql::PROMOTE_DUE)?
        .execute(params![now, chunk])?;
    ctx.wake |= promoted > 0;
    Ok(promoted)
}

/// Deletes up to `budget` finished jobs that the policy no longer keeps.
pub(super) fn sweep(
    conn: &Connection,
    policy: &RetentionPolicy,
    now: Millis,
    budget: usize,
) -> OpResult<usize> {
    let types: Vec<String> = conn
        .prepare_cached(sql::FINISHED_TYPES)?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut deleted = 0;
    for job_type in &types {
        for state in [JobState::Completed, JobState::Failed, JobState::Cancelled] {
            let rule = policy.rule_for(job_type, state);
            let status = state.as_str();
            if let Some(age) = rule.max_age {
                let cutoff = now.saturating_sub(millis_i64(age));
                let left = budget - deleted;
                deleted += conn
                    .prepare_cached(sql::SWEEP_BY_AGE)?
                    .execute(params![job_type, status, cutoff, left])?;
            }
            if let Some(max_count) = rule.max_count {
                let boundary: Option<(Millis, String)> = conn
                    .prepare_cached(sql::COUNT_BOUNDARY)?
                    .query_row(params![job_type, status, max_count], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                if let Some((finished_at, id)) = boundary {
                    let left = budget - deleted;
                    deleted += conn.prepare_cached(sql::SWEEP_BY_COUNT)?.execute(params![
                        job_type,
                        status,
                        finished_at,
                        id,
                        left
                    ])?;
                }
            }
            if deleted >= budget {
                return Ok(deleted);
            }
        }
    }
    Ok(deleted)
}

pub(super) fn trim_events(conn: &Connection, keep: u64, chunk: usize) -> OpResult<usize> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    Ok(conn
        .prepare_cached(sql::TRIM_EVENTS)?
        .execute(params![keep, chunk])?)
}

pub(super) fn purge_cache(conn: &Connection, now: Millis, chunk: usize) -> OpResult<usize> {
    Ok(conn
        .prepare_cached(sql::PURGE_CACHE)?
        .execute(params![now, chunk])?)
}

pub(super) fn cache_usage(conn: &Connection, ns: &str) -> OpResult<CacheUsage> {
    let usage = conn
        .prepare_cached(sql::CACHE_USAGE)?
        .query_row(params![ns], |r| {
            Ok(CacheUsage {
                entries: r.get::<_, i64>(0)?.max(0) as u64,
                bytes: r.get::<_, i64>(1)?.max(0) as u64,
            })
        })
        .optional()?;
    Ok(usage.unwrap_or_default())
}

/// Writes an entry unless that takes the namespace past `quota`; expired entries of the
/// namespace are dropped first when it would. The `cache_usage` triggers keep the figures.
pub(super) fn cache_set(
    conn: &Connection,
    ns: &str,
    key: &str,
    value: &str,
    expires: Option<Millis>,
    quota: CacheQuota,
    now: Millis,
) -> OpResult<()> {
    let next = || -> OpResult<(CacheUsage, CacheUsage)> {
        let before = cache_usage(conn, ns)?;
        let old: Option<i64> = conn
            .prepare_cached(sql::CACHE_ENTRY_SIZE)?
            .query_row(params![ns, key], |r| r.get(0))
            .optional()?;
        let after = CacheUsage {
            entries: before.entries + u64::from(old.is_none()),
            bytes: (before.bytes + (key.len() + value.len()) as u64)
                .saturating_sub(old.unwrap_or(0).max(0) as u64),
        };
        Ok((before, after))
    };
    let (before, after) = next()?;
    if limits::check_cache_quota(ns, before, after, quota).is_err() {
        conn.prepare_cached(sql::PURGE_CACHE_NS)?
            .execute(params![ns, now])?;
        let (before, after) = next()?;
        limits::check_cache_quota(ns, before, after, quota)?;
    }
    conn.prepare_cached(sql::CACHE_SET)?
        .execute(params![ns, key, value, expires])?;
    Ok(())
}

/// Whether a live (unexpired) value was deleted.
pub(super) fn cache_delete(conn: &Connection, ns: &str, key: &str, now: Millis) -> OpResult<bool> {
    let expires: Option<Option<Millis>> = conn
        .prepare_cached(sql::CACHE_DELETE)?
        .query_row(params![ns, key], |r| r.get(0))
        .optional()?;
    Ok(matches!(expires, Some(e) if e.is_none_or(|at| at > now)))
}

/// Read, add, write, in the writer's transaction: atomic against other increments.
pub(super) fn cache_increment(
    conn: &Connection,
    ns: &str,
    key: &str,
    delta: i64,
    ttl_ms: Option<Millis>,
    quota: CacheQuota,
    now: Millis,
) -> OpResult<i64> {
    let current: Option<(String, Option<Millis>)> = conn
        .prepare_cached(sql::CACHE_GET)?
        .query_row(params![ns, key, now], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (value, expires) = match current {
        Some((text, expires)) => {
            let n = text
                .trim()
                .parse::<i64>()
                .map_err(|_| limits::not_an_integer(ns, key))?;
            (n, expires)
        }
        None => (0, ttl_ms.map(|t| now.saturating_add(t))),
    };
    let next = value
        .checked_add(delta)
        .ok_or_else(|| limits::increment_overflow(ns, key))?;
    cache_set(conn, ns, key, &next.to_string(), expires, quota, now)?;
    Ok(next)
}
