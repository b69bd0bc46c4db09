//! Rows to `Job`s and back. Columns are read by position in the order of schema v1
//! (`SELECT *` and `RETURNING *`); later migrations may only append columns, so these
//! positions hold. Named lookups cost a string scan per column on the hot path.

use super::connection::OpResult;
use super::sql;
use crate::job::{BackoffPolicy, Job, JobState, Progress};
use crate::storage::{Event, NewEvent};
use rusqlite::types::Type;
use rusqlite::{Connection, Row, params};
use serde_json::value::RawValue;

const ID: usize = 0;
const TYPE: usize = 1;
const PAYLOAD: usize = 2;
const PRIORITY: usize = 3;
const STATUS: usize = 4;
const ATTEMPT: usize = 5;
const MAX_ATTEMPTS: usize = 6;
const RUN_AT: usize = 7;
const CREATED_AT: usize = 8;
const STARTED_AT: usize = 9;
const FINISHED_AT: usize = 10;
const TIMEOUT_MS: usize = 11;
const UNIQUE_KEY: usize = 12;
const PROGRESS_PERCENT: usize = 13;
const PROGRESS_MESSAGE: usize = 14;
const RESULT: usize = 15;
const ERROR: usize = 16;
const LOGS: usize = 17;
const PLUGIN_VERSION: usize = 18;
const BACKOFF: usize = 19;
pub(super) const LEASE_TOKEN: usize = 20;
const LEASE_EXPIRES_AT: usize = 21;
const CANCEL_REQUESTED: usize = 23;
/// Schema v2.
const UNIQUE_FOR_MS: usize = 24;

fn bad(col: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Text, Box::new(e))
}

fn raw(col: usize, text: String) -> rusqlite::Result<Box<RawValue>> {
    RawValue::from_string(text).map_err(|e| bad(col, e))
}

/// A full `jobs` row as a `Job`.
pub(super) fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = row.get(STATUS)?;
    let logs: Option<String> = row.get(LOGS)?;
    let backoff: Option<String> = row.get(BACKOFF)?;
    let percent: Option<u8> = row.get(PROGRESS_PERCENT)?;
    let result: Option<String> = row.get(RESULT)?;
    Ok(Job {
        id: row.get(ID)?,
        job_type: row.get(TYPE)?,
        payload: raw(PAYLOAD, row.get(PAYLOAD)?)?,
        priority: row.get(PRIORITY)?,
        status: status.parse::<JobState>().map_err(|e| bad(STATUS, e))?,
        attempt: row.get(ATTEMPT)?,
        max_attempts: row.get(MAX_ATTEMPTS)?,
        run_at: row.get(RUN_AT)?,
        created_at: row.get(CREATED_AT)?,
        started_at: row.get(STARTED_AT)?,
        finished_at: row.get(FINISHED_AT)?,
        timeout_ms: row.get(TIMEOUT_MS)?,
        unique_key: row.get(UNIQUE_KEY)?,
        unique_for_ms: row.get(UNIQUE_FOR_MS)?,
        progress: match percent {
            Some(percent) => Some(Progress {
                percent,
                message: row.get(PROGRESS_MESSAGE)?,
            }),
            None => None,
        },
        result: result.map(|r| raw(RESULT, r)).transpose()?,
        error: row.get(ERROR)?,
        logs: match logs {
            Some(text) => serde_json::from_str(&text).map_err(|e| bad(LOGS, e))?,
            None => Vec::new(),
        },
        plugin_version: row.get(PLUGIN_VERSION)?,
        backoff: match backoff {
            Some(text) => {
                Some(serde_json::from_str::<BackoffPolicy>(&text).map_err(|e| bad(BACKOFF, e))?)
            }
            None => None,
        },
        lease_expires_at: row.get(LEASE_EXPIRES_AT)?,
        cancel_requested: row.get(CANCEL_REQUESTED)?,
    })
}

/// `[]` is stored as NULL.
pub(super) fn logs_text(logs: &[String]) -> Option<String> {
    if logs.is_empty() {
        None
    } else {
        serde_json::to_string(logs).ok()
    }
}

/// Inserts `job` as given unless its id exists or a live job holds its unique key.
/// Returns whether it was inserted.
pub(super) fn insert_job(conn: &Connection, job: &Job) -> OpResult<bool> {
    let backoff = job
        .backoff
        .as_ref()
        .and_then(|b| serde_json::to_string(b).ok());
    let mut stmt = conn.prepare_cached(sql::INSERT_JOB)?;
    let inserted = stmt.execute(params![
        job.id,
        job.job_type,
        job.payload.get(),
        job.priority,
        job.status.as_str(),
        job.attempt,
        job.max_attempts,
        job.run_at,
        job.created_at,
        job.started_at,
        job.finished_at,
        job.timeout_ms,
        job.unique_key,
        job.progress.as_ref().map(|p| p.percent),
        job.progress.as_ref().and_then(|p| p.message.clone()),
        job.result.as_ref().map(|r| r.get()),
        job.error,
        logs_text(&job.logs),
        job.plugin_version,
        backoff,
        job.lease_expires_at,
        job.cancel_requested,
        job.unique_for_ms,
    ])?;
    Ok(inserted == 1)
}

/// Runs a statement returning job rows.
pub(super) fn query_jobs(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> OpResult<Vec<Job>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let jobs = stmt
        .query_map(params, job_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(jobs)
}

/// The first job row a statement returns, if any.
pub(super) fn query_job(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> OpResult<Option<Job>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    Ok(match rows.next()? {
        Some(row) => Some(job_from_row(row)?),
        None => None,
    })
}

pub(super) fn insert_event(conn: &Connection, event: NewEvent, at: i64) -> OpResult<Event> {
    let data = event.data.to_string();
    conn.prepare_cached(sql::INSERT_EVENT)?.execute(params![
        event.kind,
        event.job_id,
        event.job_type,
        at,
        data
    ])?;
    Ok(Event {
        id: conn.last_insert_rowid().to_string(),
        kind: event.kind,
        job_id: event.job_id,
        job_type: event.job_type,
        at,
        data: event.data,
    })
}

pub(super) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    let id: i64 = row.get(0)?;
    let data: String = row.get(5)?;
    Ok(Event {
        id: id.to_string(),
        kind: row.get(1)?,
        job_id: row.get(2)?,
        job_type: row.get(3)?,
        at: row.get(4)?,
        data: serde_json::from_str(&data).map_err(|e| bad(5, e))?,
    })
}
