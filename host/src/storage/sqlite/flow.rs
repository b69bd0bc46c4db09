//! Flow control on SQLite: the `type_controls` rows, and the allowance a claim computes for a
//! type inside its own transaction (running jobs from the `jobs_by_type` index, starts from
//! `rate_starts`), so that every process sharing the file obeys the same limits.

use super::connection::OpResult;
use super::rows::insert_event;
use super::sql;
use super::writer::TxCtx;
use crate::job::Millis;
use crate::storage::StorageError;
use crate::storage::flow::{self, ControlChange, Schedule, ScheduleRecord, TypeControl};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;

fn decode(job_type: &str, text: &str) -> OpResult<TypeControl> {
    Ok(flow::decode_control(job_type, text)?)
}

fn encode(control: &TypeControl) -> OpResult<String> {
    serde_json::to_string(control).map_err(|e| StorageError::Internal(e.to_string()).into())
}

/// Every type's flow control.
pub(super) fn controls(conn: &Connection) -> OpResult<BTreeMap<String, TypeControl>> {
    let mut stmt = conn.prepare_cached(sql::TYPE_CONTROLS)?;
    let mut rows = stmt.query([])?;
    let mut out = BTreeMap::new();
    while let Some(row) = rows.next()? {
        let job_type: String = row.get(0)?;
        let text: String = row.get(1)?;
        let control = decode(&job_type, &text)?;
        out.insert(job_type, control);
    }
    Ok(out)
}

/// Applies a change, writes its event, and wakes claimers when it changed anything.
pub(super) fn control_type(
    conn: &Connection,
    ctx: &mut TxCtx,
    job_type: &str,
    change: &ControlChange,
    now: Millis,
) -> OpResult<TypeControl> {
    let before = match conn
        .prepare_cached(sql::TYPE_CONTROL)?
        .query_row([job_type], |r| r.get::<_, String>(0))
        .optional()?
    {
        Some(text) => decode(job_type, &text)?,
        None => TypeControl::default(),
    };
    let mut after = before.clone();
    after.apply(change, now);
    if after == before {
        return Ok(after);
    }
    if after.is_empty() {
        conn.prepare_cached(sql::DELETE_TYPE_CONTROL)?
            .execute([job_type])?;
    } else {
        conn.prepare_cached(sql::PUT_TYPE_CONTROL)?
            .execute(params![job_type, encode(&after)?])?;
    }
    if after.rate().is_none() {
        conn.prepare_cached(sql::CLEAR_RATE_STARTS)?
            .execute([job_type])?;
    }
    if let Some(event) = flow::change_event(job_type, &before, &after) {
        insert_event(conn, event, now)?;
    }
    ctx.wake = true;
    Ok(after)
}

/// How many jobs of `job_type` may start now under `control`, and when it opens again if
/// none may (only reported when it has ready jobs). Drops starts that left the window.
pub(super) fn allowance(
    conn: &Connection,
    job_type: &str,
    control: &TypeControl,
    now: Millis,
) -> OpResult<(u64, Option<Millis>)> {
    let open = control.open_at(now);
    let running: i64 = match control.concurrency() {
        Some(_) if open => conn
            .prepare_cached(sql::RUNNING_OF_TYPE)?
            .query_row([job_type], |r| r.get(0))?,
        _ => 0,
    };
    let mut starts = Vec::new();
    if let Some(rate) = control.rate().filter(|_| open) {
        conn.prepare_cached(sql::TRIM_RATE_STARTS)?
            .execute(params![job_type, now - rate.window_ms()])?;
        let mut stmt = conn.prepare_cached(sql::RATE_STARTS)?;
        let rows = stmt.query_map([job_type], |r| r.get::<_, i64>(0))?;
        for at in rows {
            starts.push(at?);
        }
    }
    let (allow, reopen) = flow::allowance(control, running.max(0) as u64, &starts, now);
    let reopen = match reopen {
        Some(at) if has_ready(conn, job_type)? => Some(at),
        _ => None,
    };
    Ok((allow, reopen))
}

/// Whether the type has pending jobs.
fn has_ready(conn: &Connection, job_type: &str) -> OpResult<bool> {
    Ok(conn
        .prepare_cached(sql::HAS_READY)?
        .query_row([job_type], |r| r.get(0))?)
}

/// Records `n` starts of a rate-limited type at `now`.
pub(super) fn record_starts(
    conn: &Connection,
    job_type: &str,
    n: usize,
    now: Millis,
) -> OpResult<()> {
    let mut stmt = conn.prepare_cached(sql::ADD_RATE_START)?;
    for _ in 0..n {
        stmt.execute(params![job_type, now])?;
    }
    Ok(())
}

fn schedule_from_row(row: &rusqlite::Row<'_>) -> OpResult<ScheduleRecord> {
    let name: String = row.get(0)?;
    let spec: String = row.get(1)?;
    Ok(ScheduleRecord {
        schedule: flow::decode_schedule(&name, &spec)?,
        last_tick: row.get(2)?,
        created_at: row.get(3)?,
    })
}

pub(super) fn schedules(conn: &Connection) -> OpResult<Vec<ScheduleRecord>> {
    let mut stmt = conn.prepare_cached(sql::SCHEDULES)?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(schedule_from_row(row)?);
    }
    Ok(out)
}

pub(super) fn put_schedule(
    conn: &Connection,
    schedule: &Schedule,
    now: Millis,
) -> OpResult<ScheduleRecord> {
    let spec =
        serde_json::to_string(schedule).map_err(|e| StorageError::Internal(e.to_string()))?;
    conn.prepare_cached(sql::PUT_SCHEDULE)?
        .execute(params![schedule.name, spec, now])?;
    let mut stmt = conn.prepare_cached(sql::SCHEDULE)?;
    let mut rows = stmt.query([&schedule.name])?;
    match rows.next()? {
        Some(row) => schedule_from_row(row),
        None => Err(StorageError::Internal(format!(
            "schedule `{}` is not there right after it was written",
            schedule.name
        ))
        .into()),
    }
}

pub(super) fn delete_schedule(conn: &Connection, name: &str) -> OpResult<bool> {
    Ok(conn.prepare_cached(sql::DELETE_SCHEDULE)?.execute([name])? > 0)
}

pub(super) fn advance_schedule(
    conn: &Connection,
    name: &str,
    from: Option<Millis>,
    to: Millis,
) -> OpResult<bool> {
    Ok(conn
        .prepare_cached(sql::ADVANCE_SCHEDULE)?
        .execute(params![name, from, to])?
        > 0)
}
