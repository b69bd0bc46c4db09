//! Instances kept between jobs, for plugins whose manifest says `instances = "reuse"`: a
//! JavaScript or Python component spends 1.5-3 ms starting its interpreter, far more than most
//! jobs take, so such a plugin may ask for one instance to serve many of its jobs in turn.
//!
//! The rules, in one place:
//! - An instance goes back to its plugin's idle list only after a job that returned normally
//!   (a result, a retry, a failure or a rate limit). A trap, a timeout, a cancel, memory
//!   refused, an invalid result or a result too large discards it: its state is unknown.
//! - An instance whose memory has grown past `KEEP_MEMORY_SHARE` of its limit, or past
//!   `KEEP_MEMORY_MAX`, is discarded, so one job's garbage never leaves the next one short of
//!   memory and idle instances never hold more than `KEEP_MEMORY_MAX` each; so is one that has
//!   served `MAX_JOBS` jobs, which bounds what a slow leak can pile up.
//! - An instance whose job left an outbound HTTP request, response or body open is discarded:
//!   kept, it would hold its connection and `http.max_concurrent` place while idle, and write
//!   into a later job's log.
//! - Idle instances are not running jobs: they hold no instance-semaphore permit, but they do
//!   hold pooling-allocator slots. The engines have room for `idle_budget(max_instances)` idle
//!   instances besides the running ones; an instance finishing when that budget is spent is
//!   dropped, never waited for.
//! - An instance idle for `IDLE_TIMEOUT` is dropped by the trim thread, and every idle
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

/// An instance holding more memory than this is never kept (the engines' `LARGE_MEMORY`):
/// idle instances hold at most this much each.
pub(crate) const KEEP_MEMORY_MAX: u64 = super::engine::LARGE_MEMORY;

/// Idle instances the runtime keeps at most, whatever its `max_instances`: each needs pool
/// slots, which reserve address space.
const MAX_IDLE: u32 = 256;

/// How many idle instances a runtime running at most `max_instances` at once keeps.
pub(crate) fn idle_budget(max_instances: u32) -> u32 {
    max_instances.min(MAX_IDLE)
}

/// Whether an instance that just held `used` bytes of a `limit` may serve another job.
pub(crate) fn memory_allows_reuse(used: u64, limit: u64) -> bool {
    let (num, den) = KEEP_MEMORY_SHARE;
    used <= KEEP_MEMORY_MAX && used.saturating_mul(den) <= limit.saturating_mul(num)
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
            // Dropped outside the pool's lock (giving a slot back takes a moment), and counted
            // out only once gone, so the pool never holds more than the budget says.
            let expired = pool.take_expired(now);
            let n = expired.len();
            drop(expired);
            self.release(n);
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
        let idle = std::mem::take(&mut *lock(&self.idle));
        let n = idle.len();
        drop(idle);
        self.budget.release(n);
    }
}

/// How often the trim thread looks for instances idle past `IDLE_TIMEOUT`.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// A thread that drops instances idle for too long, every `TRIM_EVERY`, until `stop` is set.
/// Its own thread: dropping many instances at once (each giving its memory back) must not
/// delay the epoch ticks that time jobs out.
pub(crate) fn spawn_trim(
    idle: Arc<IdleBudget>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("spool-idle-trim".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(TRIM_EVERY);
                if idle.held() > 0 {
                    idle.trim(Instant::now());
                }
            }
        })
        .map(|_| ())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_past_three_quarters_of_the_limit_or_64_mib_ends_reuse() {
        assert!(memory_allows_reuse(48 << 20, 64 << 20));
        assert!(!memory_allows_reuse((48 << 20) + 1, 64 << 20));
        assert!(memory_allows_reuse(0, 0));
        assert!(memory_allows_reuse(64 << 20, 1 << 30));
        assert!(!memory_allows_reuse((64 << 20) + 1, 1 << 30));
        assert_eq!(idle_budget(4), 4);
        assert_eq!(idle_budget(10_000), 256);
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
