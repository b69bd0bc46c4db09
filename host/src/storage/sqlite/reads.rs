//! Reads, on a small pool of read-only connections (WAL lets them run beside the writer and
//! see every committed change): get, list, stats, events, cache lookups, health.

use super::connection::{OpResult, open_reader};
use super::rows::{event_from_row, query_job, query_jobs};
use super::sql;
use crate::job::{JobState, MAX_PRIORITY, MIN_PRIORITY, Millis};
use crate::storage::{
    BackendInfo, Event, JobPage, ListFilter, Result, Stats, StorageError, StorageOptions, limits,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Read connections, opened on demand and kept up to `opts.sqlite.read_connections`; at most
/// that many reads run at once. Without the cap, a flood of API reads would open a connection
/// (three file descriptors) per blocking thread, up to tokio's 512, and run out of file
/// descriptors; waiting for a permit costs a queued read little, as reads are short.
pub(super) struct Readers {
    path: PathBuf,
    opts: StorageOptions,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    pub(super) fn new(path: PathBuf, opts: StorageOptions) -> Self {
        let permits = Arc::new(Semaphore::new(opts.sqlite.read_connections.max(1)));
        Self {
            path,
            opts,
            idle: Mutex::new(Vec::new()),
            permits,
        }
    }

    /// Runs `f` on a read connection, off the async threads.
    pub(super) async fn run<R, F>(self: &Arc<Self>, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> OpResult<R> + Send + 'static,
    {
        let readers = Arc::clone(self);
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StorageError::Internal("the sqlite read pool was closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = readers.take()?;
            let out = f(&conn).map_err(|e| e.into_storage(&readers.path));
            readers.put(conn);
            out
        })
        .await
        .map_err(|e| StorageError::Internal(format!("a sqlite read task failed: {e}")))?
    }

    fn take(&self) -> Result<Connection> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path, &self.opts),
        }
    }

    fn put(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.opts.sqlite.read_connections.max(1) {
            idle.push(conn);
        }
    }
}

pub(super) fn get(conn: &Connection, id: &str) -> OpResult<Option<crate::job::Job>> {
    query_job(conn, sql::JOB_BY_ID, [id])
}

/// No job id sorts above this (it is the largest Unicode scalar); it stands in for "no
/// cursor" so one statement serves both.
const TOP: &str = "\u{10FFFF}";

pub(super) fn list(conn: &Connection, filter: &ListFilter) -> OpResult<JobPage> {
    let limit = limits::list_limit(filter.limit);
    let cursor = filter.cursor.as_deref().unwrap_or(TOP);
    let status = filter.status.map(JobState::as_str);
    let fetch = limit + 1;
    let jobs = match (status, &filter.job_type) {
        (Some(status), None) => list_by_status(conn, status, cursor, fetch)?,
        _ => {
            let sql = sql::list(filter.status.is_some(), filter.job_type.is_some());
            // Every variant numbers its parameters alike (?4 is always there), so all four
            // are bound; SQLite ignores the ones a variant leaves out.
            let params = params![cursor, status, filter.job_type, fetch];
            query_jobs(conn, &sql, params)?
        }
    };
    Ok(limits::into_page(jobs, limit))
}

/// The first `fetch` jobs in `status` below `cursor`, newest first, over every type: each
/// type's first `fetch` ids from jobs_by_type, merged, then only the jobs kept are read.
/// There is no index on the status alone: every job changes status several times, and such
/// an index cost each change two more writes, while listing by status alone is a rare read.
fn list_by_status(
    conn: &Connection,
    status: &str,
    cursor: &str,
    fetch: usize,
) -> OpResult<Vec<crate::job::Job>> {
    // One read transaction: the jobs read at the end are as they were when their ids were
    // (a job that changed status in between would otherwise show under the old one).
    let tx = conn.unchecked_transaction()?;
    let conn: &Connection = &tx;
    let types = conn
        .prepare_cached(sql::JOB_TYPES)?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut ids_of_type = conn.prepare_cached(sql::IDS_BY_TYPE_STATUS)?;
    let mut ids = Vec::new();
    for t in types {
        let rows =
            ids_of_type.query_map(params![t, status, cursor, fetch], |r| r.get::<_, String>(0))?;
        for id in rows {
            ids.push(id?);
        }
    }
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.truncate(fetch);
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(job) = get(conn, &id)? {
            jobs.push(job);
        }
    }
    drop(ids_of_type);
    tx.finish()?;
    Ok(jobs)
}

pub(super) fn stats(conn: &Connection, now: Millis) -> OpResult<Stats> {
    let mut stats = Stats::default();
    let mut stmt = conn.prepare_cached(sql::STATS_COUNTS)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let job_type: String = row.get(0)?;
        let status: String = row.get(1)?;
        let count: u64 = row.get(2)?;
        let Ok(state) = status.parse::<JobState>() else {
            continue;
        };
        *stats
            .types
            .entry(job_type)
            .or_default()
            .counts
            .entry(state)
            .or_default() += count;
    }
    drop(rows);
    let mut oldest = conn.prepare_cached(sql::OLDEST_PENDING)?;
    for (job_type, ts) in &mut stats.types {
        if !ts.counts.contains_key(&JobState::Pending) {
            continue;
        }
        // One index probe per priority beats scanning every pending job.
        let mut min: Option<Millis> = None;
        for priority in MIN_PRIORITY..=MAX_PRIORITY {
            let at: Option<Millis> = oldest.query_row(params![job_type, priority], |r| r.get(0))?;
            min = match (min, at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        ts.oldest_pending_age_ms = min.map(|at| u64::try_from(now - at).unwrap_or(0));
    }
    Ok(stats)
}

pub(super) fn events_since(conn: &Connection, after: i64, limit: usize) -> OpResult<Vec<Event>> {
    let mut stmt = conn.prepare_cached(sql::EVENTS_SINCE)?;
    let events = stmt
        .query_map(params![after, limit.min(i64::MAX as usize)], event_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(events)
}

pub(super) fn latest_event_id(conn: &Connection) -> OpResult<Option<String>> {
    let id: Option<i64> = conn
        .prepare_cached("SELECT max(id) FROM events")?
        .query_row([], |r| r.get(0))?;
    Ok(id.map(|id| id.to_string()))
}

pub(super) fn cache_get(
    conn: &Connection,
    ns: &str,
    key: &str,
    now: Millis,
) -> OpResult<Option<String>> {
    Ok(conn
        .prepare_cached(sql::CACHE_GET)?
        .query_row(params![ns, key, now], |r| r.get(0))
        .optional()?)
}

pub(super) fn info(conn: &Connection, path: &std::path::Path) -> OpResult<BackendInfo> {
    let mut info = BackendInfo {
        backend: "sqlite".into(),
        ..BackendInfo::default()
    };
    let pragma = |name: &str| -> OpResult<String> {
        let value: rusqlite::types::Value =
            conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
        Ok(match value {
            rusqlite::types::Value::Integer(n) => n.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
    };
    info.details
        .insert("path".into(), path.display().to_string());
    info.details
        .insert("sqlite_version".into(), rusqlite::version().to_owned());
    info.details
        .insert("schema_version".into(), pragma("user_version")?);
    info.details
        .insert("journal_mode".into(), pragma("journal_mode")?);
    let pages: i64 = pragma("page_count")?.parse().unwrap_or(0);
    let page_size: i64 = pragma("page_size")?.parse().unwrap_or(0);
    info.details
        .insert("size_bytes".into(), (pages * page_size).to_string());
    let free: i64 = pragma("freelist_count")?.parse().unwrap_or(0);
    info.details
        .insert("free_bytes".into(), (free * page_size).to_string());
    Ok(info)
}
