//! Periodic storage upkeep, each step a `*_once` returning counts (tested on its own):
//! - promote: `scheduled`/`retrying` jobs whose time has come become `pending` (every 250 ms);
//! - reap: jobs whose lease expired (their daemon died) return to `pending` or, on their last
//!   attempt, `failed` (every quarter lease, between 250 ms and 15 s);
//! - sweep: finished jobs past the retention policy, and old events, are deleted (every
//!   `retention.sweep_interval`, and once at startup).
//!
//! Every daemon sharing a storage runs these; each step is atomic in storage, so running them
//! twice is harmless.

use crate::events::EventHub;
use crate::metrics::Metrics;
use crate::storage::{Reaped, RetentionPolicy, Storage, StorageError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A sweep call deletes a bounded number of jobs; a sweep round calls it until it finds
/// nothing, at most this many times (the next round continues).
const SWEEP_CALLS_PER_ROUND: usize = 100;

#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    pub promote_every: Duration,
    pub reap_every: Duration,
    pub sweep_every: Duration,
    pub retention: RetentionPolicy,
}

impl MaintenanceConfig {
    pub fn new(lease: Duration, sweep_every: Duration, retention: RetentionPolicy) -> Self {
        Self {
            promote_every: Duration::from_millis(250),
            reap_every: (lease / 4).clamp(Duration::from_millis(250), Duration::from_secs(15)),
            sweep_every,
            retention,
        }
    }
}

pub struct Maintenance {
    storage: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
    events: Option<Arc<EventHub>>,
    cfg: MaintenanceConfig,
}

impl Maintenance {
    pub fn new(
        storage: Arc<dyn Storage>,
        metrics: Arc<Metrics>,
        events: Option<Arc<EventHub>>,
        cfg: MaintenanceConfig,
    ) -> Self {
        Self {
            storage,
            metrics,
            events,
            cfg,
        }
    }

    fn poke(&self, changed: bool) {
        if changed && let Some(e) = &self.events {
            e.poke();
        }
    }

    /// Make due jobs ready; returns how many.
    pub async fn promote_once(&self) -> Result<u64, StorageError> {
        let n = self.storage.promote_due().await?;
        self.metrics.promoted(n);
        self.poke(n > 0);
        Ok(n)
    }

    /// Return jobs with expired leases; returns what happened to them.
    pub async fn reap_once(&self) -> Result<Reaped, StorageError> {
        let r = self.storage.reap_expired().await?;
        let n = r.requeued + r.failed;
        self.metrics.reaped(n);
        if n > 0 {
            tracing::info!(
                requeued = r.requeued,
                failed = r.failed,
                "returned jobs whose lease expired (their daemon stopped or hung)"
            );
        }
        self.poke(n > 0);
        Ok(r)
    }

    /// Delete finished jobs and events past retention; returns how many jobs.
    pub async fn sweep_once(&self) -> Result<u64, StorageError> {
        let mut total = 0;
        for _ in 0..SWEEP_CALLS_PER_ROUND {
            let n = self.storage.sweep_retention(&self.cfg.retention).await?;
            total += n;
            if n == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        self.metrics.swept(total);
        if total > 0 {
            tracing::debug!(deleted = total, "swept finished jobs past retention");
        }
        Ok(total)
    }

    /// Run every step on its own timer until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        use tokio::time::{MissedTickBehavior, interval};
        let mut promote = interval(self.cfg.promote_every);
        let mut reap = interval(self.cfg.reap_every);
        let mut sweep = interval(self.cfg.sweep_every);
        for t in [&mut promote, &mut reap, &mut sweep] {
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        let mut failing = false;
        loop {
            let result = tokio::select! {
                _ = stop.changed() => return,
                _ = promote.tick() => self.promote_once().await.map(|_| ()),
                _ = reap.tick() => self.reap_once().await.map(|_| ()),
                _ = sweep.tick() => self.sweep_once().await.map(|_| ()),
            };
            match result {
                Ok(()) => failing = false,
                Err(e) => {
                    self.metrics.storage_error();
                    if !failing {
                        tracing::warn!(error = %e, "storage maintenance failed; retrying");
                        failing = true;
                    }
                }
            }
            if *stop.borrow() {
                return;
            }
        }
    }
}
