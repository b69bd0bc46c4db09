//! Keeps the leases of running jobs alive: every `renew_every` (a third of the lease, at most
//! 5 s) all held leases are renewed in one storage call. The answer also carries cancel
//! requests (the job is told to stop) and lost leases (the job is stopped, its result dropped).

use super::PoolInner;
use crate::job::LeaseToken;
use crate::service::{Next, Service};
use crate::storage::{LeaseStatus, StorageError};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

/// Leases per storage call.
const CHUNK: usize = 1000;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Renewed {
    pub held: usize,
    pub cancel_requested: usize,
    pub lost: usize,
}

pub(super) async fn run(inner: Arc<PoolInner>, stop: watch::Receiver<bool>) {
    crate::service::run(Renewer { inner }, stop).await;
}

struct Renewer {
    inner: Arc<PoolInner>,
}

#[async_trait::async_trait]
impl Service for Renewer {
    type Error = StorageError;

    fn name(&self) -> &'static str {
        "lease renewer"
    }

    fn failure(&self) -> &'static str {
        "cannot renew job leases"
    }

    async fn run_once(&mut self) -> Result<Next, StorageError> {
        renew_once(&self.inner).await?;
        Ok(Next::Wait(self.inner.cfg.renew_every()))
    }

    fn failed(&mut self, _error: &StorageError) {
        self.inner.metrics.storage_error();
    }

    fn retry_after(&self) -> Duration {
        self.inner.cfg.renew_every()
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
