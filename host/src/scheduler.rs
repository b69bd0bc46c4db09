//! The worker pool: claims jobs its plugins handle, runs them, renews their leases, and
//! settles their attempts in batches; plus the maintenance tasks (promote, reap, sweep).
//!
//! ```text
//! poller ──claim──> storage            (only types a loaded plugin handles, up to free slots)
//!   └─spawn worker ─> Plugins::resolve ─> Runner::run (runtime.execute)
//!                       └─ Settlement ──> completer ──complete/fail (batched)──> storage
//! renewer ──renew_leases (all held, every lease/3)──> storage   (cancel requests, lost leases)
//! ```
//!
//! The pool sees plugins through the `Plugins` trait; `plugins.rs` implements it over the
//! registry and runtime, tests implement it with plain closures.

mod completer;
pub mod maintenance;
mod plugins;
mod poller;
mod renewer;
pub mod retry;
mod services;
mod worker;

pub use maintenance::{Maintenance, MaintenanceConfig};
pub use plugins::RegistryPlugins;

use crate::config::RetryConfig;
use crate::job::{Job, LeaseToken};
use crate::metrics::Metrics;
use crate::plugins::{PluginEvent, RetryPolicy};
use crate::runtime::{Execution, JobInput, JobServices};
use crate::storage::{Settled, Storage};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, broadcast, mpsc, watch};

/// A loaded plugin as the pool needs it for claiming: its name, types and concurrency limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginGroup {
    pub name: String,
    pub types: Vec<String>,
    pub max_concurrency: Option<u32>,
}

/// The plugin version that runs one job (pinned for the whole job).
#[derive(Clone)]
pub struct Resolved {
    pub plugin: String,
    pub version: String,
    pub max_concurrency: Option<u32>,
    pub retry: RetryPolicy,
    /// The longest a job of this plugin may run: its manifest's `timeout`, else the daemon's
    /// `job_timeout`. A job's own `timeout` may only be shorter (clamped in `worker`).
    pub timeout: Duration,
    pub runner: Arc<dyn Runner>,
}

/// Runs one attempt (the runtime's `execute` in production).
#[async_trait::async_trait]
pub trait Runner: Send + Sync {
    async fn run(&self, input: JobInput, services: Arc<dyn JobServices>) -> Execution;
}

/// What the pool reads about plugins.
pub trait Plugins: Send + Sync + 'static {
    fn groups(&self) -> Vec<PluginGroup>;
    fn resolve(&self, job_type: &str) -> Option<Resolved>;
    /// Wakes idle pollers when plugins come and go.
    fn subscribe(&self) -> broadcast::Receiver<PluginEvent>;
}

/// Sees each job start and settle (the benchmark measures latency with it).
pub trait Observer: Send + Sync + 'static {
    fn started(&self, job: &Job);
    fn settled(&self, job_id: &str, outcome: Settled);
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub workers: usize,
    pub lease: Duration,
    /// Daemon-wide retry defaults.
    pub retry: RetryConfig,
    /// This daemon's name in claims (diagnostics).
    pub worker_id: String,
    /// How long in-flight jobs may finish once shutdown begins.
    pub shutdown_grace: Duration,
}

impl PoolConfig {
    /// Renew at a third of the lease, so two renewals may fail before it expires; at most
    /// every 5 s so a cancel request reaches a running job quickly even with long leases.
    pub fn renew_every(&self) -> Duration {
        (self.lease / 3).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }
}

/// Shared state of one running job: written by the renewer, the API's cancel hook and
/// shutdown; read by the job's `JobServices` and its worker.
#[derive(Debug, Default)]
pub(crate) struct JobFlags {
    /// Stop the job (a user cancel, a lost lease or shutdown).
    cancel: AtomicBool,
    /// The lease is gone: drop the result.
    lost: AtomicBool,
    /// Shutdown released the lease: drop the result.
    released: AtomicBool,
}

impl JobFlags {
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// A lease this daemon holds.
pub(crate) struct Held {
    lease: LeaseToken,
    flags: Arc<JobFlags>,
}

/// One finished attempt on its way to storage.
pub(crate) enum Settlement {
    Complete {
        c: crate::storage::Completion,
        job_type: String,
        ran: Duration,
    },
    Fail {
        f: crate::storage::Failure,
        job_type: String,
        ran: Duration,
    },
    /// Everything sent before this is settled: reply and stop.
    Close(tokio::sync::oneshot::Sender<()>),
}

pub(crate) struct PoolInner {
    storage: Arc<dyn Storage>,
    plugins: Arc<dyn Plugins>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn crate::job::Clock>,
    observer: Option<Arc<dyn Observer>>,
    cfg: PoolConfig,
    /// One permit per worker slot; only the poller acquires.
    slots: Arc<Semaphore>,
    /// Per plugin name: (limit, permits). Only the poller acquires.
    limits: Mutex<HashMap<String, (u32, Arc<Semaphore>)>>,
    /// Leases held, by job id (renewer reads; workers insert and remove).
    held: Mutex<HashMap<String, Held>>,
    /// A worker finished (slot and plugin permits freed).
    freed: Notify,
    settle_tx: mpsc::Sender<Settlement>,
    /// Set when shutdown has drained the workers: the completer stops retrying a storage
    /// outage at this instant (so an outage never blocks shutdown).
    settle_deadline: Mutex<Option<std::time::Instant>>,
}

impl PoolInner {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running pool.
pub struct Pool {
    inner: Arc<PoolInner>,
    stop: watch::Sender<bool>,
    poller: tokio::task::JoinHandle<tokio::task::JoinSet<()>>,
    renewer: tokio::task::JoinHandle<()>,
    completer: tokio::task::JoinHandle<()>,
    renewer_stop: watch::Sender<bool>,
}

/// Dependencies of a pool.
pub struct PoolDeps {
    pub storage: Arc<dyn Storage>,
    pub plugins: Arc<dyn Plugins>,
    pub metrics: Arc<Metrics>,
    /// Time for retry decisions and lease ends.
    pub clock: Arc<dyn crate::job::Clock>,
    pub observer: Option<Arc<dyn Observer>>,
}

/// What shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Jobs that finished during the grace period.
    pub finished: usize,
    /// Jobs still running after it: stopped, their leases released (back to `pending`).
    pub released: usize,
}

impl Pool {
    pub fn start(deps: PoolDeps, cfg: PoolConfig) -> Pool {
        let (settle_tx, settle_rx) = mpsc::channel(4 * cfg.workers.max(256));
        deps.metrics.set_workers(cfg.workers);
        let inner = Arc::new(PoolInner {
            storage: deps.storage,
            plugins: deps.plugins,
            metrics: deps.metrics,
            clock: deps.clock,
            observer: deps.observer,
            slots: Arc::new(Semaphore::new(cfg.workers)),
            limits: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            freed: Notify::new(),
            settle_tx,
            settle_deadline: Mutex::new(None),
            cfg,
        });
        let (stop, stop_rx) = watch::channel(false);
        let (renewer_stop, renewer_rx) = watch::channel(false);
        let completer = tokio::spawn(completer::run(inner.clone(), settle_rx));
        let renewer = tokio::spawn(renewer::run(inner.clone(), renewer_rx));
        let poller = tokio::spawn(poller::run(inner.clone(), stop_rx));
        Pool {
            inner,
            stop,
            poller,
            renewer,
            completer,
            renewer_stop,
        }
    }

    /// Tell a job running here to stop (a user cancelled it). False when it is not here.
    pub fn cancel_local(&self, job_id: &str) -> bool {
        cancel_local(&self.inner, job_id)
    }

    /// A handle the API can call to reach running jobs at once.
    pub fn cancel_hook(&self) -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
        let inner = self.inner.clone();
        Arc::new(move |id| cancel_local(&inner, id))
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.inner.held().len()
    }

    /// Stop claiming, let running jobs finish within the grace period, then stop the rest and
    /// release their leases (`pending` at once, attempt not counted); settle everything
    /// finished. `hurry` resolving cuts the grace period short (a second signal).
    pub async fn shutdown(self, hurry: impl std::future::Future<Output = ()>) -> ShutdownReport {
        let _ = self.stop.send(true);
        let report = match self.poller.await {
            Ok(tasks) => poller::drain(&self.inner, tasks, hurry).await,
            Err(e) => {
                tracing::error!(error = %e, "the job poller crashed");
                ShutdownReport::default()
            }
        };
        // Settling may wait for a storage outage to end, but not for longer than this.
        let settle_for = self.inner.cfg.shutdown_grace.max(Duration::from_secs(2));
        *self
            .inner
            .settle_deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now() + settle_for);
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self
            .inner
            .settle_tx
            .send(Settlement::Close(tx))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        let _ = self.completer.await;
        let _ = self.renewer_stop.send(true);
        let _ = self.renewer.await;
        report
    }
}

fn cancel_local(inner: &PoolInner, job_id: &str) -> bool {
    match inner.held().get(job_id) {
        Some(h) => {
            h.flags.cancel.store(true, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests;
