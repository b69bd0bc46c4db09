//! Keeps the leases of running jobs alive: every `renew_every` (a third of the lease, at most
//! 5 s) all held leases are renewed in one storage call. The answer also carries cancel
//! requests (the job is told to stop) and lost leases (the job is stopped, its result dropped).

use super::PoolInner;
use crate::job::LeaseToken;
use crate::storage::LeaseStatus;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::watch;

/// Leases per storage call.
const CHUNK: usize = 1000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Renewed {
    pub held: usize,
    pub cancel_requested: usize,
    pub lost: usize,
}

pub(super) async fn run(inner: Arc<PoolInner>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(inner.cfg.renew_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match renew_once(&inner).await {
            Ok(_) => failing = false,
            Err(e) => {
                inner.metrics.storage_error();
                if !failing {
                    tracing::warn!(error = %e, "cannot renew job leases; retrying");
                    failing = true;
                }
            }
        }
    }
}

pub(super) async fn renew_once(inner: &PoolInner) -> crate::storage::Result<Renewed> {
    let snapshot: Vec<(String, LeaseToken, Arc<super::JobFlags>)> = inner
        .held()
        .iter()
        .map(|(id, h)| (id.clone(), h.lease.clone(), h.flags.clone()))
        .collect();
    let mut counts = Renewed::default();
    for chunk in snapshot.chunks(CHUNK) {
        let pairs: Vec<(String, LeaseToken)> = chunk
            .iter()
            .map(|(i, l, _)| (i.clone(), l.clone()))
            .collect();
        let statuses = inner.storage.renew_leases(&pairs, inner.cfg.lease).await?;
        for ((id, _, flags), status) in chunk.iter().zip(statuses) {
            match status {
                LeaseStatus::Held => counts.held += 1,
                LeaseStatus::CancelRequested => {
                    counts.cancel_requested += 1;
                    if !flags.cancel.swap(true, Ordering::Relaxed) {
                        tracing::info!(job_id = %id, "cancel requested; telling the job to stop");
                    }
                }
                LeaseStatus::Lost => {
                    counts.lost += 1;
                    flags.lost.store(true, Ordering::Relaxed);
                    flags.cancel.store(true, Ordering::Relaxed);
                }
            }
        }
    }
    Ok(counts)
}
