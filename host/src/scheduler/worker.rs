//! One job attempt: build the runtime's input and services, run it, turn the outcome into a
//! settlement for the completer. The `SlotGuard` frees the slot, the plugin permit and the
//! lease registration however the worker ends (done, aborted at shutdown, or panicked).

use super::retry::{self, Decision};
use super::services::DaemonServices;
use super::{JobFlags, PoolInner, Resolved, Settlement};
use crate::metrics::AttemptEnd;
use crate::runtime::{CrashKind, Execution, JobInput, Outcome};
use crate::storage::{Claimed, Completion, Failure};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

pub(super) struct SlotGuard {
    inner: Arc<PoolInner>,
    job_id: String,
    /// Taken in `drop`, before the poller is told: see there.
    permits: Option<(OwnedSemaphorePermit, Option<OwnedSemaphorePermit>)>,
}

impl SlotGuard {
    pub(super) fn new(
        inner: Arc<PoolInner>,
        job_id: String,
        permits: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
    ) -> Self {
        inner.metrics.worker_busy(true);
        Self {
            inner,
            job_id,
            permits: Some(permits),
        }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.inner.held().remove(&self.job_id);
        self.inner.metrics.worker_busy(false);
        // The permits go back before the poller is woken: a poller that woke first would
        // count no free slot, wait for the next `freed`, and with one slot never claim again
        // (seen: a job given back stayed pending for good).
        drop(self.permits.take());
        self.inner.freed.notify_one();
    }
}

/// A job's own timeout, never over its plugin's ceiling: the API refuses a longer one at
/// submit, but a job stored earlier, imported, or submitted before its plugin was loaded may
/// still ask for more.
fn job_timeout(requested_ms: Option<u64>, ceiling: Duration) -> Option<Duration> {
    requested_ms.map(|ms| Duration::from_millis(ms).min(ceiling))
}

pub(super) async fn run(
    inner: Arc<PoolInner>,
    claimed: Claimed,
    resolved: Resolved,
    flags: Arc<JobFlags>,
    guard: SlotGuard,
) {
    let job = claimed.job;
    let span =
        tracing::info_span!("job", job_id = %job.id, r#type = %job.job_type, attempt = job.attempt);
    async move {
        inner.metrics.started(&job.job_type);
        if let Some(o) = &inner.observer {
            o.started(&job);
        }
        let services = Arc::new(DaemonServices::new(
            inner.storage.clone(),
            resolved.plugin.clone(),
            job.id.clone(),
            claimed.lease.clone(),
            flags.clone(),
        ));
        let input = JobInput {
            id: job.id.clone(),
            job_type: job.job_type.clone(),
            payload: job.payload.get().to_string(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            priority: job.priority,
            created_at_ms: u64::try_from(job.created_at).unwrap_or(0),
            unique_key: job.unique_key.clone(),
            timeout: job_timeout(job.timeout_ms, resolved.timeout),
        };
        // A buffered job cancelled before it started never reaches the plugin.
        let exec = if flags.cancelled() {
            Execution {
                outcome: Outcome::Crashed {
                    error: "cancelled before it started".into(),
                    kind: CrashKind::Cancelled,
                },
                logs: Vec::new(),
                followups: Vec::new(),
                duration: Duration::ZERO,
                instantiate: None,
                peak_memory: 0,
            }
        } else {
            let exec = resolved.runner.run(input, services.clone()).await;
            services.flush_progress().await;
            exec
        };
        drop(guard);
        if let Some(d) = exec.instantiate {
            inner.metrics.instantiated(&resolved.plugin, d);
        }
        if flags.lost.load(Ordering::Relaxed) {
            inner.metrics.attempt_ended(&job.job_type, AttemptEnd::LeaseLost, exec.duration);
            tracing::warn!("lease lost while the job ran (another daemon may have taken it over); result dropped");
            return;
        }
        if flags.released.load(Ordering::Relaxed) {
            return;
        }
        let now = inner.clock.now_ms();
        let plugin_version = Some(resolved.version.clone());
        let ran = exec.duration;
        let settlement = match retry::decide(exec.outcome, &job, &resolved.retry, &inner.cfg.retry, now) {
            Decision::Complete(result) => {
                tracing::debug!(ran = ?ran, "job completed");
                Settlement::Complete {
                    c: Completion {
                        id: job.id.clone(),
                        lease: claimed.lease,
                        result,
                        logs: exec.logs,
                        plugin_version,
                        followups: exec.followups,
                    },
                    job_type: job.job_type.clone(),
                    ran,
                }
            }
            Decision::Release { error } => {
                // Straight back to `pending`, not through the completer: nothing ran, so
                // there is nothing to record. If storage is away, the lease expires and the
                // reaper returns the job (then counting the attempt).
                tracing::warn!(error = %error, "job given back to the queue, its attempt not counted");
                inner.metrics.attempt_ended(&job.job_type, AttemptEnd::Released, ran);
                let lease = [(job.id.clone(), claimed.lease)];
                if let Err(e) = inner.storage.release(&lease).await {
                    tracing::warn!(error = %e, "cannot give the job back; it returns when its lease expires");
                }
                return;
            }
            Decision::Hold { error, until } => {
                // Hold the type first, so that no daemon starts another job of it, then give
                // this one back: it runs again once the hold ends, its attempt not counted.
                let held = crate::storage::flow::ControlChange::Hold { until };
                match inner.storage.control_type(&job.job_type, held).await {
                    Ok(_) => tracing::warn!(error = %error, until = %crate::job::serde_time::format_rfc3339(until),
                        "the service is rate limiting: every job of this type waits; this one runs again then"),
                    Err(e) => tracing::warn!(error = %e, "cannot hold the type back; the job is given back anyway"),
                }
                inner.metrics.attempt_ended(&job.job_type, AttemptEnd::Released, ran);
                let lease = [(job.id.clone(), claimed.lease)];
                if let Err(e) = inner.storage.release(&lease).await {
                    tracing::warn!(error = %e, "cannot give the job back; it returns when its lease expires");
                }
                return;
            }
            Decision::Fail { error, retry_at } => {
                if flags.cancelled() {
                    tracing::info!(error = %error, "job stopped after a cancel request");
                } else if retry_at.is_some() && job.attempt < job.max_attempts {
                    tracing::info!(error = %error, "attempt failed; will retry");
                } else {
                    tracing::info!(error = %error, "job failed");
                }
                Settlement::Fail {
                    f: Failure {
                        id: job.id.clone(),
                        lease: claimed.lease,
                        error,
                        retry_at,
                        logs: exec.logs,
                        plugin_version,
                    },
                    job_type: job.job_type.clone(),
                    ran,
                }
            }
        };
        if inner.settle_tx.send(settlement).await.is_err() {
            tracing::warn!("the completer stopped before this job settled; its lease will expire");
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_timeout_over_the_plugin_limit_is_clamped_at_run_time() {
        let ceiling = Duration::from_secs(2);
        assert_eq!(job_timeout(Some(15_000), ceiling), Some(ceiling));
        assert_eq!(
            job_timeout(Some(500), ceiling),
            Some(Duration::from_millis(500))
        );
        assert_eq!(job_timeout(None, ceiling), None);
    }
}
