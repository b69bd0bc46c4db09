//! Periodic storage upkeep, each step a `*_once` returning counts (tested on its own):
//! - promote: `scheduled`/`retrying` jobs whose time has come become `pending` (every 250 ms);
//! - reap: jobs whose lease expired (their daemon died) return to `pending` or, on their last
//!   attempt, `failed` (every quarter lease, between 250 ms and 15 s);
//! - sweep: finished jobs past the retention policy, and old events, are deleted (every
//!   `retention.sweep_interval`, and once at startup).
//!
//! Every daemon sharing a storage runs these; each step is atomic in storage, so running them
//! twice is harmless.
//!
//! After an outage (a step answered `Unavailable`) the reaper waits one lease length before
//! it reaps again: leases ran out while nobody could renew them, yet their daemons are alive
//! and about to renew them and store their results (the renewer and the completer retry).
//! Reaping at once would run those jobs a second time for nothing; a daemon that really died
//! during the outage costs one extra lease of delay.

use crate::metrics::Metrics;
use crate::service::{Next, Service};
use crate::storage::{Reaped, RetentionPolicy, Storage, StorageError};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// How long the reaper holds off after storage was unreachable (the lease length).
    pub reap_grace: Duration,
}

impl MaintenanceConfig {
    pub fn new(lease: Duration, sweep_every: Duration, retention: RetentionPolicy) -> Self {
        Self {
            promote_every: Duration::from_millis(250),
            reap_every: (lease / 4).clamp(Duration::from_millis(250), Duration::from_secs(15)),
            sweep_every,
            retention,
            reap_grace: lease,
        }
    }
}

pub struct Maintenance {
    storage: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
    cfg: MaintenanceConfig,
}

impl Maintenance {
    pub fn new(storage: Arc<dyn Storage>, metrics: Arc<Metrics>, cfg: MaintenanceConfig) -> Self {
        Self {
            storage,
            metrics,
            cfg,
        }
    }

    /// Make due jobs ready; returns how many.
    pub async fn promote_once(&self) -> Result<u64, StorageError> {
        let n = self.storage.promote_due().await?;
        self.metrics.promoted(n);
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
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let now = Instant::now();
        let upkeep = Upkeep {
            gate: ReapGate::new(self.cfg.reap_grace),
            due: [now; 3],
            m: self,
        };
        crate::service::run(upkeep, stop).await;
    }
}

/// The maintenance loop: each round runs the steps that are due (promote, reap, sweep, in
/// that order), then waits until the next one is.
struct Upkeep {
    m: Maintenance,
    gate: ReapGate,
    /// When promote, reap and sweep are next due.
    due: [Instant; 3],
}

impl Upkeep {
    async fn step(&mut self, step: usize) -> Result<(), StorageError> {
        match step {
            0 => self.m.promote_once().await.map(drop),
            // Held off after an outage: says nothing about storage.
            1 if !self.gate.open(Instant::now()) => Ok(()),
            1 => self.m.reap_once().await.map(drop),
            _ => self.m.sweep_once().await.map(drop),
        }
    }
}

#[async_trait::async_trait]
impl Service for Upkeep {
    type Error = StorageError;

    fn name(&self) -> &'static str {
        "storage maintenance"
    }

    fn failure(&self) -> &'static str {
        "storage maintenance failed"
    }

    async fn run_once(&mut self) -> Result<Next, StorageError> {
        let every = [
            self.m.cfg.promote_every,
            self.m.cfg.reap_every,
            self.m.cfg.sweep_every,
        ];
        // Each due step runs even when an earlier one failed (a failing promote must not
        // starve the reaper); the first error is the round's.
        let mut failed = None;
        for (step, every) in every.into_iter().enumerate() {
            let now = Instant::now();
            if self.due[step] > now {
                continue;
            }
            self.due[step] = now + every;
            if let Err(e) = self.step(step).await {
                failed.get_or_insert(e);
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let next = self.due.iter().min().copied().unwrap_or_else(Instant::now);
        Ok(Next::Wait(next.saturating_duration_since(Instant::now())))
    }

    fn failed(&mut self, e: &StorageError) {
        if matches!(e, StorageError::Unavailable(_)) && self.gate.outage(Instant::now()) {
            tracing::info!(
                grace = ?self.m.cfg.reap_grace,
                "storage unreachable: expired leases will not be reaped until a lease after it is back, so live daemons can renew them and store their results"
            );
        }
        self.m.metrics.storage_error();
    }

    fn retry_after(&self) -> Duration {
        self.m.cfg.promote_every
    }
}

/// Holds the reaper off for `grace` after the last time storage was unreachable.
#[derive(Debug)]
pub(crate) struct ReapGate {
    grace: Duration,
    last_outage: Option<Instant>,
}

impl ReapGate {
    pub(crate) fn new(grace: Duration) -> Self {
        Self {
            grace,
            last_outage: None,
        }
    }

    /// Storage answered `Unavailable` at `now`; true when this starts a new hold-off.
    pub(crate) fn outage(&mut self, now: Instant) -> bool {
        let new = self.open(now);
        self.last_outage = Some(now);
        new
    }

    /// May the reaper run at `now`?
    pub(crate) fn open(&self, now: Instant) -> bool {
        self.last_outage
            .is_none_or(|at| now.saturating_duration_since(at) >= self.grace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reaper_waits_one_grace_after_the_last_outage() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut g = ReapGate::new(30 * s);
        assert!(g.open(t0), "no outage yet");
        assert!(g.outage(t0), "a new hold-off");
        assert!(!g.outage(t0 + 5 * s), "the same outage goes on");
        assert!(!g.open(t0 + 20 * s), "20 s after the last error < grace");
        assert!(!g.open(t0 + 34 * s));
        assert!(g.open(t0 + 35 * s), "a whole grace after the last error");
        assert!(
            g.outage(t0 + 100 * s),
            "a later outage starts a new hold-off"
        );
        assert!(!g.open(t0 + 101 * s));
    }
}
