//! The claim loop: while slots are free, claim jobs of the types loaded plugins handle (up to
//! the free slots, and for a plugin with `max_concurrency`, up to its free permits), start a
//! worker for each, and otherwise sleep until storage signals work, a slot frees, a plugin
//! comes or goes, or shutdown begins. Never busy-polls. `drain` is the end of a shutdown.

use super::worker::{self, SlotGuard};
use super::{Held, JobFlags, PoolInner, Resolved, ShutdownReport};
use crate::job::LeaseToken;
use crate::storage::{ClaimRequest, Claimed, StorageError};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio::task::JoinSet;

/// Most jobs asked for in one claim.
const MAX_CLAIM: usize = 256;
/// Idle pollers look again after this long even without a signal (jobs made ready by another
/// daemon's promotion only reach us through storage).
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// Runs until `stop`; returns the still-running workers for `drain`.
pub(super) async fn run(inner: Arc<PoolInner>, mut stop: watch::Receiver<bool>) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let mut plugin_events = Some(inner.plugins.subscribe());
    let mut failing = false;
    loop {
        reap_finished(&mut tasks);
        if *stop.borrow() {
            return tasks;
        }
        let free = inner.slots.available_permits();
        if free == 0 {
            tokio::select! {
                _ = inner.freed.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        match claim_round(&inner, free, &mut tasks).await {
            Ok(n) if n > 0 => {
                failing = false;
                continue;
            }
            Ok(_) => {
                failing = false;
                tokio::select! {
                    _ = inner.storage.wait_for_work(IDLE_WAIT) => {}
                    _ = inner.freed.notified() => {}
                    closed = plugin_change(&mut plugin_events) => if closed { plugin_events = None },
                    _ = stop.changed() => {}
                }
            }
            Err(e) => {
                inner.metrics.storage_error();
                if !failing {
                    tracing::warn!(error = %e, "cannot claim jobs; retrying every second");
                    failing = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

/// Resolves when a plugin event arrives; true when the channel is closed (then never again).
async fn plugin_change(rx: &mut Option<broadcast::Receiver<crate::plugins::PluginEvent>>) -> bool {
    match rx {
        Some(rx) => matches!(rx.recv().await, Err(broadcast::error::RecvError::Closed)),
        None => std::future::pending().await,
    }
}

fn reap_finished(tasks: &mut JoinSet<()>) {
    while let Some(done) = tasks.try_join_next() {
        if let Err(e) = done
            && e.is_panic()
        {
            tracing::error!(error = %e, "a job worker panicked; its lease will expire and the job will run again");
        }
    }
}

/// The permits of a plugin with a concurrency limit, rebuilt when the limit changes.
fn plugin_permits(inner: &PoolInner, plugin: &str, max: u32) -> Arc<Semaphore> {
    let mut limits = inner.limits.lock().unwrap_or_else(|p| p.into_inner());
    match limits.get(plugin) {
        Some((m, sem)) if *m == max => sem.clone(),
        _ => {
            let sem = Arc::new(Semaphore::new(max as usize));
            limits.insert(plugin.to_string(), (max, sem.clone()));
            sem
        }
    }
}

/// One round of claims; returns how many jobs started.
async fn claim_round(
    inner: &Arc<PoolInner>,
    mut free: usize,
    tasks: &mut JoinSet<()>,
) -> Result<usize, StorageError> {
    let groups = inner.plugins.groups();
    let mut started = 0;
    let mut unlimited = Vec::new();
    // Limited plugins first: they take at most their own permits, so they cannot starve the
    // rest, while the rest could take every slot from them.
    for g in &groups {
        match g.max_concurrency {
            None => unlimited.extend(g.types.iter().cloned()),
            Some(max) => {
                let n = plugin_permits(inner, &g.name, max)
                    .available_permits()
                    .min(free);
                if n == 0 {
                    continue;
                }
                let got = claim(inner, g.types.clone(), n).await?;
                free -= got.len().min(free);
                started += start_jobs(inner, got, tasks).await;
            }
        }
    }
    if !unlimited.is_empty() && free > 0 {
        let got = claim(inner, unlimited, free).await?;
        started += start_jobs(inner, got, tasks).await;
    }
    Ok(started)
}

async fn claim(
    inner: &PoolInner,
    types: Vec<String>,
    n: usize,
) -> Result<Vec<Claimed>, StorageError> {
    let req = ClaimRequest {
        types,
        limit: n.min(MAX_CLAIM),
        lease: inner.cfg.lease,
        worker: inner.cfg.worker_id.clone(),
    };
    let claimed = inner.storage.claim(req).await?;
    if !claimed.is_empty()
        && let Some(events) = &inner.events
    {
        events.poke();
    }
    Ok(claimed)
}

/// Start a worker per claimed job. A job whose plugin vanished since the claim (or whose
/// plugin has no permit left after a reload lowered its limit) is given back at once.
async fn start_jobs(
    inner: &Arc<PoolInner>,
    claimed: Vec<Claimed>,
    tasks: &mut JoinSet<()>,
) -> usize {
    let mut give_back: Vec<(String, LeaseToken)> = Vec::new();
    let mut started = 0;
    for c in claimed {
        let Some(resolved) = inner.plugins.resolve(&c.job.job_type) else {
            give_back.push((c.job.id.clone(), c.lease.clone()));
            continue;
        };
        let Some(permits) = take_permits(inner, &resolved) else {
            give_back.push((c.job.id.clone(), c.lease.clone()));
            continue;
        };
        let flags = Arc::new(JobFlags::default());
        inner.held().insert(
            c.job.id.clone(),
            Held {
                lease: c.lease.clone(),
                flags: flags.clone(),
            },
        );
        let guard = SlotGuard::new(inner.clone(), c.job.id.clone(), permits);
        tasks.spawn(worker::run(inner.clone(), c, resolved, flags, guard));
        started += 1;
    }
    if !give_back.is_empty()
        && let Err(e) = inner.storage.release(&give_back).await
    {
        tracing::warn!(error = %e, jobs = give_back.len(), "cannot give back jobs whose plugin is gone; their leases will expire");
    }
    started
}

fn take_permits(
    inner: &PoolInner,
    r: &Resolved,
) -> Option<(OwnedSemaphorePermit, Option<OwnedSemaphorePermit>)> {
    let slot = inner.slots.clone().try_acquire_owned().ok()?;
    let plugin = match r.max_concurrency {
        None => None,
        Some(max) => Some(
            plugin_permits(inner, &r.plugin, max)
                .try_acquire_owned()
                .ok()?,
        ),
    };
    Some((slot, plugin))
}

/// Shutdown, after the poller stopped: wait for running jobs until the grace period ends (or
/// `hurry` resolves), then stop the rest and release their leases.
pub(super) async fn drain(
    inner: &Arc<PoolInner>,
    mut tasks: JoinSet<()>,
    hurry: impl std::future::Future<Output = ()>,
) -> ShutdownReport {
    reap_finished(&mut tasks);
    let running = tasks.len();
    if running > 0 {
        tracing::info!(running, grace = ?inner.cfg.shutdown_grace, "waiting for running jobs to finish");
    }
    let deadline = tokio::time::sleep(inner.cfg.shutdown_grace);
    tokio::pin!(deadline);
    tokio::pin!(hurry);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() {
                return ShutdownReport { finished: running, released: 0 };
            },
            _ = &mut deadline => break,
            _ = &mut hurry => break,
        }
    }
    // Mark, stop, then release: once aborted, no worker of these can settle behind our back.
    let leases: Vec<(String, LeaseToken)> = inner
        .held()
        .iter()
        .map(|(id, h)| {
            h.flags.released.store(true, Ordering::Relaxed);
            h.flags.cancel.store(true, Ordering::Relaxed);
            (id.clone(), h.lease.clone())
        })
        .collect();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let released = leases.len();
    match inner.storage.release(&leases).await {
        Ok(n) => tracing::info!(
            released = n,
            "stopped unfinished jobs and gave them back to the queue"
        ),
        Err(e) => {
            tracing::warn!(error = %e, jobs = released, "cannot release unfinished jobs; they return when their leases expire")
        }
    }
    if let Some(events) = &inner.events {
        events.poke();
    }
    ShutdownReport {
        finished: running.saturating_sub(released),
        released,
    }
}
