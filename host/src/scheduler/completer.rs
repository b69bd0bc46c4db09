//! Settles finished attempts in batches: whatever has queued up since the last write goes to
//! storage in one `complete` and one `fail` call (one transaction each on SQLite). A storage
//! outage (`Unavailable`) is retried until storage answers, or until shutdown's settle
//! deadline (shutdown is never blocked): a backend may accept a completion after the lease
//! time as long as no reaper reclaimed the job, so retrying saves a re-run. `Internal` errors
//! are retried for up to a lease length; after that the reaper returns the jobs to the queue,
//! so nothing is lost. A batch refused as invalid (say, one
//! result over the size limit) is settled one by one so only the bad attempt fails.

use super::{PoolInner, Settlement};
use crate::job::JobState;
use crate::metrics::AttemptEnd;
use crate::storage::{Completion, Failure, Settled, StorageError};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Most attempts settled in one storage call.
const BATCH: usize = 512;

struct Meta {
    id: String,
    job_type: String,
    ran: Duration,
}

pub(super) async fn run(inner: Arc<PoolInner>, mut rx: mpsc::Receiver<Settlement>) {
    let mut buf = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut buf, BATCH).await == 0 {
            return;
        }
        let mut close = None;
        let (mut done, mut done_meta, mut failed, mut failed_meta) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for s in buf.drain(..) {
            match s {
                Settlement::Complete { c, job_type, ran } => {
                    done_meta.push(Meta {
                        id: c.id.clone(),
                        job_type,
                        ran,
                    });
                    done.push(c);
                }
                Settlement::Fail { f, job_type, ran } => {
                    failed_meta.push(Meta {
                        id: f.id.clone(),
                        job_type,
                        ran,
                    });
                    failed.push(f);
                }
                Settlement::Close(tx) => close = Some(tx),
            }
        }
        if !done.is_empty() {
            complete(&inner, done, done_meta).await;
        }
        if !failed.is_empty() {
            fail(&inner, failed, failed_meta).await;
        }
        if let Some(tx) = close {
            let _ = tx.send(());
            return;
        }
    }
}

async fn complete(inner: &PoolInner, batch: Vec<Completion>, meta: Vec<Meta>) {
    match with_retries(inner, || {
        timed(inner, "complete", inner.storage.complete(batch.clone()))
    })
    .await
    {
        Ok(settled) => record(inner, &meta, &settled),
        Err(StorageError::InvalidInput(_)) if batch.len() > 1 => {
            for (c, m) in batch.into_iter().zip(meta) {
                Box::pin(complete(inner, vec![c], vec![m])).await;
            }
        }
        Err(StorageError::InvalidInput(why)) => {
            // The result itself was refused (too large, say): the attempt fails for good.
            let Some(c) = batch.into_iter().next() else {
                return;
            };
            let f = Failure {
                id: c.id,
                lease: c.lease,
                error: format!("the job's result was refused: {why}"),
                retry_at: None,
                logs: c.logs,
                plugin_version: c.plugin_version,
            };
            Box::pin(fail(inner, vec![f], meta)).await;
        }
        Err(e) => give_up(inner, &meta, &e),
    }
}

async fn fail(inner: &PoolInner, batch: Vec<Failure>, meta: Vec<Meta>) {
    match with_retries(inner, || {
        timed(inner, "fail", inner.storage.fail(batch.clone()))
    })
    .await
    {
        Ok(settled) => record(inner, &meta, &settled),
        Err(StorageError::InvalidInput(_)) if batch.len() > 1 => {
            for (f, m) in batch.into_iter().zip(meta) {
                Box::pin(fail(inner, vec![f], vec![m])).await;
            }
        }
        Err(e) => give_up(inner, &meta, &e),
    }
}

/// Retry `Unavailable` until storage answers or shutdown's settle deadline passes; retry
/// `Internal` for up to a lease length (after that the lease is gone anyway).
async fn with_retries<T, F, Fut>(inner: &PoolInner, mut call: F) -> Result<T, StorageError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StorageError>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        let deadline = *inner
            .settle_deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let before_deadline = deadline.is_none_or(|d| Instant::now() + pause < d);
        match call().await {
            Err(e @ StorageError::Unavailable(_)) if before_deadline => {
                inner.metrics.storage_error();
                tracing::warn!(error = %e, "storage unavailable: cannot settle finished jobs yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e @ StorageError::Internal(_))
                if start.elapsed() + pause < inner.cfg.lease && before_deadline =>
            {
                inner.metrics.storage_error();
                tracing::warn!(error = %e, "cannot settle finished jobs; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// A storage call, its latency recorded in the metrics.
async fn timed<T>(
    inner: &PoolInner,
    op: &'static str,
    call: impl Future<Output = Result<T, StorageError>>,
) -> Result<T, StorageError> {
    let began = Instant::now();
    let out = call.await;
    inner.metrics.storage_call(op, began.elapsed());
    out
}

fn give_up(inner: &PoolInner, meta: &[Meta], e: &StorageError) {
    inner.metrics.storage_error();
    tracing::error!(error = %e, jobs = meta.len(), "cannot settle finished jobs; they will run again when their leases expire");
}

fn record(inner: &PoolInner, meta: &[Meta], settled: &[Settled]) {
    for (m, s) in meta.iter().zip(settled) {
        let end = match s {
            Settled::Moved(JobState::Completed) => AttemptEnd::Completed,
            Settled::Moved(JobState::Retrying) => AttemptEnd::Retried,
            Settled::Moved(JobState::Cancelled) => AttemptEnd::Cancelled,
            Settled::Moved(_) => AttemptEnd::Failed,
            Settled::LeaseLost => {
                tracing::warn!(job_id = %m.id, "lease lost before the result was stored (the job was reclaimed, cancelled or deleted); result dropped");
                AttemptEnd::LeaseLost
            }
        };
        inner.metrics.attempt_ended(&m.job_type, end, m.ran);
        if let Some(o) = &inner.observer {
            o.settled(&m.id, *s);
        }
    }
}
