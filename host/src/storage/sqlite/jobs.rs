//! Job changes, each run by the writer thread inside its transaction: enqueue, import,
//! claim, lease renewal, progress, the ends of an attempt, cancel, replay, delete. The
//! decisions come from `job::rules`; the job events are written in the same transaction.

use super::connection::{OpError, OpResult};
use super::flow;
use super::rows::{self, LEASE_TOKEN, insert_event, insert_job, job_from_row, query_job};
use super::sql;
use super::writer::TxCtx;
use crate::job::{self, CancelAction, Job, JobState, LeaseToken, Millis, NewJob, Progress};
use crate::storage::flow::ClaimBatch;
use crate::storage::job_events;
use crate::storage::limits;
use crate::storage::transitions;
use crate::storage::{
    CancelOutcome, Claimed, Completion, Enqueued, Failure, ImportEvents, LeaseStatus, Settled,
    StorageError,
};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

/// Types per claim statement: SQLite allows at most 500 arms in a compound SELECT.
const MAX_CLAIM_TYPES: usize = 400;

pub(super) fn enqueue(
    conn: &Connection,
    ctx: &mut TxCtx,
    new: NewJob,
    now: Millis,
) -> OpResult<Enqueued> {
    let debounce_ms = new.debounce_ms;
    let payload = new.payload.clone();
    let job = Job::from_new(new, now);
    // A finished job keeps its key within its `unique_for` window: the insert below would not
    // see it (the unique index covers live jobs only).
    if let Some(key) = &job.unique_key
        && let Some(holder) = query_job(conn, sql::WINDOW_HOLDER, params![key, now])?
        && query_job(conn, sql::JOB_BY_ID, [&job.id])?.is_none()
    {
        return Ok(Enqueued {
            job: holder,
            created: false,
        });
    }
    if insert_job(conn, &job)? {
        insert_event(conn, job_events::created(&job), now)?;
        ctx.wake |= job.status == JobState::Pending;
        return Ok(Enqueued { job, created: true });
    }
    // Ignored: the id exists, or a live job holds the unique key.
    if let Some(existing) = query_job(conn, sql::JOB_BY_ID, [&job.id])? {
        return Ok(Enqueued {
            job: existing,
            created: false,
        });
    }
    if let Some(key) = &job.unique_key
        && let Some(holder) = query_job(conn, sql::LIVE_HOLDER, [key])?
    {
        if let Some(d) = debounce_ms {
            let until = now.saturating_add(d as i64);
            let updated = query_job(
                conn,
                sql::DEBOUNCE,
                params![holder.id, payload.get(), until],
            )?;
            if let Some(updated) = updated {
                insert_event(conn, job_events::debounced(&updated), now)?;
                return Ok(Enqueued {
                    job: updated,
                    created: false,
                });
            }
        }
        return Ok(Enqueued {
            job: holder,
            created: false,
        });
    }
    Err(StorageError::Internal(format!(
        "the insert of job `{}` was ignored, yet no job holds its id or unique key",
        job.id
    ))
    .into())
}

pub(super) fn import(
    conn: &Connection,
    ctx: &mut TxCtx,
    jobs: Vec<Job>,
    events: ImportEvents,
    now: Millis,
) -> OpResult<u64> {
    let mut inserted = 0;
    for mut job in jobs {
        limits::normalize_imported(&mut job, now);
        if insert_job(conn, &job)? {
            if events == ImportEvents::Created {
                for e in job_events::announced(&job) {
                    insert_event(conn, e, now)?;
                }
            }
            inserted += 1;
            ctx.wake |= job.status == JobState::Pending;
        }
    }
    Ok(inserted)
}

pub(super) fn claim(
    conn: &Connection,
    types: &[String],
    limit: usize,
    until: Millis,
    worker: &str,
    now: Millis,
) -> OpResult<ClaimBatch> {
    let mut types: Vec<&String> = types.iter().collect();
    types.sort();
    types.dedup();
    let controls = flow::controls(conn)?;
    let mut blocked_until: Option<Millis> = None;
    // Each type with the most of its jobs this claim may take.
    let mut arms: Vec<(&String, i64)> = Vec::with_capacity(types.len());
    for t in types {
        let Some(control) = controls.get(t) else {
            arms.push((t, limit as i64));
            continue;
        };
        let (allow, reopen) = flow::allowance(conn, t, control, now)?;
        if let Some(at) = reopen {
            blocked_until = Some(blocked_until.map_or(at, |b| b.min(at)));
        }
        if allow > 0 {
            arms.push((t, allow.min(limit as u64) as i64));
        }
    }
    let mut claimed = Vec::new();
    // Past MAX_CLAIM_TYPES types, order holds within each chunk only (hundreds of plugins).
    for chunk in arms.chunks(MAX_CLAIM_TYPES) {
        let want = limit - claimed.len();
        if want == 0 {
            break;
        }
        let mut stmt = conn.prepare_cached(&sql::claim(chunk.len()))?;
        let head: [&dyn rusqlite::ToSql; 4] = [&now, &until, &worker, &want];
        let args = head.into_iter().chain(
            chunk
                .iter()
                .flat_map(|(t, n)| [*t as &dyn rusqlite::ToSql, n as &dyn rusqlite::ToSql]),
        );
        let mut rows = stmt.query(params_from_iter(args))?;
        let mut batch = Vec::new();
        while let Some(row) = rows.next()? {
            let token: String = row.get(LEASE_TOKEN)?;
            batch.push(Claimed {
                job: job_from_row(row)?,
                lease: LeaseToken(token),
            });
        }
        drop(rows);
        // RETURNING gives no order: put them in claim order.
        batch.sort_by(|a, b| {
            (a.job.priority, a.job.run_at, &a.job.id).cmp(&(
                b.job.priority,
                b.job.run_at,
                &b.job.id,
            ))
        });
        for c in &batch {
            insert_event(conn, job_events::started(&c.job, worker), now)?;
        }
        claimed.extend(batch);
    }
    for (t, control) in &controls {
        if control.rate().is_some() {
            let n = claimed.iter().filter(|c| &c.job.job_type == t).count();
            if n > 0 {
                flow::record_starts(conn, t, n, now)?;
            }
        }
    }
    Ok(ClaimBatch::new(claimed, blocked_until, now))
}

pub(super) fn renew(
    conn: &Connection,
    leases: &[(String, LeaseToken)],
    until: Millis,
) -> OpResult<Vec<LeaseStatus>> {
    let mut stmt = conn.prepare_cached(sql::RENEW)?;
    let mut out = Vec::with_capacity(leases.len());
    for (id, token) in leases {
        let mut rows = stmt.query(params![until, id, token.0])?;
        out.push(match rows.next()? {
            Some(row) if row.get::<_, bool>(0)? => LeaseStatus::CancelRequested,
            Some(_) => LeaseStatus::Held,
            None => LeaseStatus::Lost,
        });
    }
    Ok(out)
}

pub(super) fn set_progress(
    conn: &Connection,
    id: &str,
    token: &LeaseToken,
    progress: Progress,
    now: Millis,
) -> OpResult<bool> {
    let params = params![progress.percent, progress.message, id, token.0];
    let read_back: Option<(String, u32)> = conn
        .prepare_cached(sql::PROGRESS)?
        .query_row(params, |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((job_type, attempt)) = read_back else {
        return Ok(false);
    };
    let message = progress.message.as_deref();
    let event = job_events::progress(id, &job_type, attempt, progress.percent, message);
    insert_event(conn, event, now)?;
    Ok(true)
}

/// Completions with their follow-ups (validated by the caller). A lost lease writes
/// nothing, follow-ups included.
pub(super) fn complete(
    conn: &Connection,
    ctx: &mut TxCtx,
    done: Vec<Completion>,
    now: Millis,
) -> OpResult<Vec<Settled>> {
    let mut out = Vec::with_capacity(done.len());
    for c in done {
        let logs = rows::logs_text(&job::trim_logs(c.logs));
        let leased = conn
            .prepare_cached(sql::COMPLETED_LEASE)?
            .query_row(params![c.id, c.lease.0], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, u32>(2)?,
                ))
            })
            .optional()?;
        let Some((rowid, job_type, attempt)) = leased else {
            out.push(Settled::LeaseLost);
            continue;
        };
        let params = params![c.result.get(), logs, c.plugin_version, now, rowid];
        conn.prepare_cached(sql::COMPLETE)?.execute(params)?;
        insert_event(conn, job_events::completed(&c.id, &job_type, attempt), now)?;
        for followup in c.followups {
            enqueue(conn, ctx, followup, now)?;
        }
        out.push(Settled::Moved(JobState::Completed));
    }
    Ok(out)
}

/// Writes the end of an attempt decided in Rust (`job` carries the new state) and its event.
fn end_attempt(conn: &Connection, job: &Job, now: Millis, lease_expired: bool) -> OpResult<Job> {
    let finished_at = if job.status.is_finished() {
        Some(now)
    } else {
        None
    };
    let params = params![
        job.status.as_str(),
        job.run_at,
        job.attempt,
        job.error,
        rows::logs_text(&job.logs),
        job.plugin_version,
        finished_at,
        job.id,
    ];
    let stored = query_job(conn, sql::END_ATTEMPT, params)?.ok_or_else(|| {
        OpError::Storage(StorageError::Internal(format!(
            "job `{}` vanished mid-transaction",
            job.id
        )))
    })?;
    if let Some(event) = job_events::attempt_ended(&stored, lease_expired) {
        insert_event(conn, event, now)?;
    }
    Ok(stored)
}

fn leased(conn: &Connection, id: &str, token: &LeaseToken) -> OpResult<Option<Job>> {
    query_job(conn, sql::LEASED_JOB, params![id, token.0])
}

pub(super) fn fail(conn: &Connection, failed: Vec<Failure>, now: Millis) -> OpResult<Vec<Settled>> {
    let mut out = Vec::with_capacity(failed.len());
    for f in failed {
        let Some(mut job) = leased(conn, &f.id, &f.lease)? else {
            out.push(Settled::LeaseLost);
            continue;
        };
        transitions::apply_failure(&mut job, f, now);
        end_attempt(conn, &job, now, false)?;
        out.push(Settled::Moved(job.status));
    }
    Ok(out)
}

pub(super) fn release(
    conn: &Connection,
    ctx: &mut TxCtx,
    leases: &[(String, LeaseToken)],
    now: Millis,
) -> OpResult<u64> {
    let mut released = 0;
    for (id, token) in leases {
        let Some(mut job) = leased(conn, id, token)? else {
            continue;
        };
        transitions::apply_release(&mut job);
        ctx.wake |= job.status == JobState::Pending;
        end_attempt(conn, &job, now, false)?;
        released += 1;
    }
    Ok(released)
}

/// Expired leases, up to `chunk`: back to `pending` (attempt counted), `failed` on the
/// last attempt, or `cancelled` when a cancel was requested.
pub(super) fn reap(
    conn: &Connection,
    ctx: &mut TxCtx,
    now: Millis,
    chunk: usize,
) -> OpResult<(u64, u64, usize)> {
    let expired = rows::query_jobs(conn, sql::EXPIRED_LEASES, params![now, chunk])?;
    let (mut requeued, mut failed) = (0, 0);
    let seen = expired.len();
    for mut job in expired {
        transitions::apply_lease_expiry(&mut job, now);
        match job.status {
            JobState::Pending => {
                requeued += 1;
                ctx.wake = true;
            }
            JobState::Failed => failed += 1,
            _ => {}
        }
        end_attempt(conn, &job, now, true)?;
    }
    Ok((requeued, failed, seen))
}

pub(super) fn cancel(conn: &Connection, id: &str, now: Millis) -> OpResult<CancelOutcome> {
    let Some(job) = query_job(conn, sql::JOB_BY_ID, [id])? else {
        return Ok(CancelOutcome::NotFound);
    };
    Ok(match job::cancel_action(job.status) {
        CancelAction::CancelNow => {
            let job = query_job(conn, sql::CANCEL_NOW, params![now, id])?.unwrap_or(job);
            insert_event(conn, job_events::cancelled(&job), now)?;
            CancelOutcome::Cancelled(job)
        }
        CancelAction::RequestStop => {
            CancelOutcome::Requested(query_job(conn, sql::REQUEST_CANCEL, [id])?.unwrap_or(job))
        }
        CancelAction::AlreadyFinished => CancelOutcome::AlreadyFinished(job),
    })
}

pub(super) fn replay(
    conn: &Connection,
    ctx: &mut TxCtx,
    id: &str,
    now: Millis,
) -> OpResult<Option<Job>> {
    let Some(job) = query_job(conn, sql::JOB_BY_ID, [id])? else {
        return Ok(None);
    };
    job::check_replay(&job)?;
    if let Some(key) = &job.unique_key
        && let Some(holder) = query_job(conn, sql::LIVE_HOLDER, [key])?
    {
        return Err(limits::replay_conflict(id, &holder.id).into());
    }
    let Some(job) = query_job(conn, sql::REPLAY, params![now, id])? else {
        return Ok(None);
    };
    insert_event(conn, job_events::replayed(&job), now)?;
    ctx.wake = true;
    Ok(Some(job))
}

pub(super) fn delete(conn: &Connection, id: &str) -> OpResult<bool> {
    Ok(conn.prepare_cached(sql::DELETE_JOB)?.execute([id])? > 0)
}
