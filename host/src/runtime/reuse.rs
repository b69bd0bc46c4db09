//! Instances kept between jobs, for plugins whose manifest says `instances = "reuse"`: a
//! JavaScript or Python component spends 1.5-3 ms starting its interpreter, far more than most
//! jobs take, so such a plugin may ask for one instance to serve many of its jobs in turn.
//!
//! The rules, in one place:
//! - An instance goes back to its plugin's idle list only after a job that returned normally
//!   (a result, a retry, a failure or a rate limit). A trap, a timeout, a cancel, memory
//!   refused, an invalid result or a result too large discards it: its state is unknown.
//! - An instance whose memory has grown past `KEEP_MEMORY_SHARE` of its limit is discarded, so
//!   one job's garbage never leaves the next one short of memory; so is one that has served
//!   `MAX_JOBS` jobs, which bounds what a slow leak can pile up.
//! - Idle instances are not running jobs: they hold no instance-semaphore permit, but they do
//!   hold pooling-allocator slots. The engine has room for as many idle instances as running
//!   ones (`IdleBudget::max` is the runtime's `max_instances`); an instance finishing when the
//!   budget is spent is dropped, never waited for.
//! - An instance idle for `IDLE_TIMEOUT` is dropped by the epoch ticker's trim, and every idle
//!   instance of a plugin version goes when that version is unloaded (its `PluginCode` drops).

use super::execute::Instance;
use super::host_api::JobState;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use wasmtime::Store;

/// An instance idle this long is dropped (its memory given back).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Jobs one instance serves before it is replaced by a fresh one.
pub(crate) const MAX_JOBS: u32 = 1000;

/// An instance holding more than this share of its memory limit after a job is discarded.
pub(crate) const KEEP_MEMORY_SHARE: (u64, u64) = (3, 4);

/// Whether an instance that just held `used` bytes of a `limit` may serve another job.
pub(crate) fn memory_allows_reuse(used: u64, limit: u64) -> bool {
    let (num, den) = KEEP_MEMORY_SHARE;
    used.saturating_mul(den) <= limit.saturating_mul(num)
}

/// A live instance with its store, between jobs or lent to one.
pub(crate) struct Warm {
    pub(crate) store: Store<JobState>,
    pub(crate) instance: Instance,
    /// Jobs it has served so far.
    pub(crate) jobs: u32,
    idle_since: Instant,
}

impl Warm {
    pub(crate) fn new(store: Store<JobState>, instance: Instance, jobs: u32) -> Warm {
        Warm {
            store,
            instance,
            jobs,
            idle_since: Instant::now(),
        }
    }
}

/// How many idle instances the whole runtime may keep, and the pools that hold them (for the
/// trim).
pub(crate) struct IdleBudget {
    max: usize,
    held: AtomicUsize,
    pools: Mutex<Vec<Weak<WarmPool>>>,
}

impl IdleBudget {
    pub(crate) fn new(max: usize) -> Arc<IdleBudget> {
        Arc::new(IdleBudget {
            max,
            held: AtomicUsize::new(0),
            pools: Mutex::new(Vec::new()),
        })
    }

    /// Idle instances held now, over every plugin.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// A pool for one plugin version, registered for the trim.
    pub(crate) fn pool(self: &Arc<Self>) -> Arc<WarmPool> {
        let pool = Arc::new(WarmPool {
            idle: Mutex::new(Vec::new()),
            budget: self.clone(),
        });
        let mut pools = lock(&self.pools);
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(&pool));
        pool
    }

    fn reserve(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }

    /// Drops every instance idle for longer than `IDLE_TIMEOUT` at `now`.
    pub(crate) fn trim(&self, now: Instant) {
        let pools: Vec<Arc<WarmPool>> = {
            let mut pools = lock(&self.pools);
            pools.retain(|p| p.strong_count() > 0);
            pools.iter().filter_map(Weak::upgrade).collect()
        };
        for pool in pools {
            // Dropped outside the pool's lock: giving a slot back takes a moment.
            let expired = pool.take_expired(now);
            drop(expired);
        }
    }
}

/// The idle instances of one plugin version, most recently used last.
pub(crate) struct WarmPool {
    idle: Mutex<Vec<Warm>>,
    budget: Arc<IdleBudget>,
}

impl WarmPool {
    /// The most recently used idle instance (its memory is the likeliest to be resident).
    pub(crate) fn take(&self) -> Option<Warm> {
        let warm = lock(&self.idle).pop()?;
        self.budget.release(1);
        Some(warm)
    }

    /// Keeps `warm` for the next job when the runtime's idle budget allows; drops it otherwise.
    pub(crate) fn put(&self, mut warm: Warm) {
        if !self.budget.reserve() {
            return;
        }
        warm.idle_since = Instant::now();
        lock(&self.idle).push(warm);
    }

    fn take_expired(&self, now: Instant) -> Vec<Warm> {
        let mut idle = lock(&self.idle);
        let (expired, kept): (Vec<Warm>, Vec<Warm>) = idle
            .drain(..)
            .partition(|w| now.saturating_duration_since(w.idle_since) >= IDLE_TIMEOUT);
        *idle = kept;
        self.budget.release(expired.len());
        expired
    }

    /// Idle instances of this plugin version now.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        lock(&self.idle).len()
    }
}

impl Drop for WarmPool {
    fn drop(&mut self) {
        let n = lock(&self.idle).len();
        self.budget.release(n);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_past_three_quarters_of_the_limit_ends_reuse() {
        assert!(memory_allows_reuse(48 << 20, 64 << 20));
        assert!(!memory_allows_reuse((48 << 20) + 1, 64 << 20));
        assert!(memory_allows_reuse(0, 0));
        assert!(memory_allows_reuse(u64::MAX / 2, u64::MAX));
    }

    #[test]
    fn the_budget_counts_reservations_and_releases() {
        let budget = IdleBudget::new(2);
        assert!(budget.reserve());
        assert!(budget.reserve());
        assert!(!budget.reserve());
        budget.release(1);
        assert_eq!(budget.held(), 1);
        assert!(budget.reserve());
        let pool = budget.pool();
        assert_eq!(pool.idle(), 0);
        assert!(pool.take().is_none());
        drop(pool);
        budget.trim(Instant::now());
        assert!(lock(&budget.pools).is_empty());
    }
}
