//! The claim loop: while slots are free, claim jobs of the types loaded plugins handle (up to
//! the free slots, and for a plugin with `max_concurrency`, up to its free permits), start a
//! worker for each, and otherwise sleep until storage signals work, a slot frees, a plugin
//! comes or goes, or shutdown begins. Never busy-polls. `drain` is the end of a shutdown.
//!
//! Prefetch: when every slot is busy and jobs are short, claiming one job per freed slot
//! costs a storage round trip (a write transaction on SQLite) per job. So the poller keeps a
//! small buffer of claimed jobs ready to start: about `PREFETCH_WINDOW` worth of work at the
//! recent start rate (none at all for slow jobs), refilled in one claim when half empty.
//! Buffered jobs hold leases (the renewer renews them) and go back to the queue at once on
//! shutdown. Plugins with a concurrency limit are never prefetched.

use super::worker::{self, SlotGuard};
use super::{Held, JobFlags, PluginGroup, PoolInner, Resolved, ShutdownReport};
use crate::job::LeaseToken;
use crate::service::Next;
use crate::storage::{ClaimRequest, Claimed, StorageError};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio::task::JoinSet;

/// Most jobs asked for in one claim. The buffer is refilled when half empty, so its low mark is
/// half of this: at 40k jobs/s 128 jobs last 3 ms, less than a claim's wait behind a SQLite
/// transaction, and the slots ran dry. 512 measured 42.2k against 38.1k jobs/s drained on
/// SQLite (1024: 43.1k) and 27.3k against 26.5k on Redis (`spool bench --drain --jobs 50000`,
/// medians of 5 and 4 interleaved rounds). Claims this large only happen with a backlog,
/// which PREFETCH_WINDOW turns into 20 ms of work at most; Redis's SLOWLOG in a 50,000-job
/// drain showed claims of ~260 jobs taking 2.7 ms (4.2 ms at most), so ~5 ms for 512.
const MAX_CLAIM: usize = 512;
/// Idle pollers look again after this long even without a signal (jobs made ready by another
/// daemon's promotion only reach us through storage).
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// The shortest wait for a type held back by flow control to open again.
const MIN_REOPEN_WAIT: Duration = Duration::from_millis(2);
/// How much work (at the recent start rate) the prefetch buffer aims to hold: enough to keep
/// slots busy across a claim round trip, small enough not to hoard work other daemons could do.
/// On Redis a claim can queue behind another client's large script (a batch enqueue of 1000
/// jobs takes ~15 ms), and a larger claim costs Redis less per job: 20 ms measured 12.9k
/// jobs/s against 10.6k for 5 ms (`spool bench --storage redis://...`, 4 workers).
const PREFETCH_WINDOW: Duration = Duration::from_millis(20);
/// The start rate is measured over windows this long...
const RATE_WINDOW: Duration = Duration::from_millis(200);
/// ...or this long once more than twice as many jobs as there are slots started in the window.
/// Only jobs shorter than the window start that often (a burst of freed slots starts at most
/// one job per slot), and their backlog must get large claims quickly: with 200 ms windows
/// alone a 50,000-job SQLite drain spent its first ~600 ms claiming 4 jobs at a time, one
/// transaction per few jobs (1,589 commits for 20,000 jobs against 390, and 34.4k against
/// 38.9k jobs/s drained, 5 interleaved rounds). Slow jobs keep the long window, so a burst of
/// starts does not read as a high rate and hoard jobs other daemons could run.
const FAST_RATE_WINDOW: Duration = Duration::from_millis(20);

/// The recent rate at which jobs start, smoothed over windows (RATE_WINDOW), and from it how
/// many jobs the prefetch buffer should hold.
struct StartRate {
    /// Jobs started in the current window, and when it began.
    window_starts: u64,
    window_began: Instant,
    /// Starts past which a window may close after FAST_RATE_WINDOW: twice the slots.
    fast_after: u64,
    /// Jobs per second.
    rate: f64,
}

impl StartRate {
    fn new(now: Instant, slots: usize) -> StartRate {
        StartRate {
            window_starts: 0,
            window_began: now,
            fast_after: 2 * slots as u64,
            rate: 0.0,
        }
    }

    fn started(&mut self) {
        self.window_starts += 1;
    }

    /// How many jobs the buffer should hold at `now` (0 for slow jobs or a quiet queue).
    fn prefetch_target(&mut self, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.window_began);
        let fast = self.window_starts > self.fast_after && elapsed >= FAST_RATE_WINDOW;
        if fast || elapsed >= RATE_WINDOW {
            let rate = self.window_starts as f64 / elapsed.as_secs_f64();
            self.rate = 0.5 * self.rate + 0.5 * rate;
            self.window_starts = 0;
            self.window_began = now;
        }
        ((self.rate * PREFETCH_WINDOW.as_secs_f64()) as usize).min(MAX_CLAIM)
    }
}

/// A claimed job waiting for a free slot.
struct Ready {
    claimed: Claimed,
    resolved: Resolved,
    flags: Arc<JobFlags>,
}

struct Poller {
    inner: Arc<PoolInner>,
    tasks: JoinSet<()>,
    buffer: VecDeque<Ready>,
    starts: StartRate,
    /// True once shutdown began: a claim in flight then starts no buffered jobs.
    stop: watch::Receiver<bool>,
    /// The soonest a type held back by flow control (a hold, a full rate window) opens
    /// again, from this round's claims: an idle poller looks again then, not a second later.
    reopens_in: Option<Duration>,
    /// When the plugins with a concurrency limit last claimed (LIMITED_EVERY).
    limited_at: Instant,
}

/// Runs until `stop`; returns the still-running workers for `drain`.
pub(super) async fn run(inner: Arc<PoolInner>, stop: watch::Receiver<bool>) -> JoinSet<()> {
    let slots = inner.cfg.workers;
    let claims = ClaimLoop {
        plugin_events: Some(inner.plugins.subscribe()),
        p: Poller {
            inner,
            tasks: JoinSet::new(),
            buffer: VecDeque::new(),
            starts: StartRate::new(Instant::now(), slots),
            stop: stop.clone(),
            reopens_in: None,
            limited_at: Instant::now(),
        },
        wake: Wake::Freed,
    };
    let mut claims = crate::service::run(claims, stop).await;
    claims.p.reap_finished();
    claims.p.give_back_buffer().await;
    claims.p.tasks
}

/// Plugins with a concurrency limit claim at least this often while a slot is free, besides
/// at each refill of the buffer: a fast backlog's refills may all fall on rounds without a free
/// slot, which kept them waiting ~100 ms a job. One empty claim per round at most otherwise.
const LIMITED_EVERY: Duration = Duration::from_millis(5);
/// A wait with nothing but a signal to end it.
const UNTIL_SIGNALLED: Duration = Duration::from_secs(3600);

/// What ends the poller's next wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// Only a freed slot helps: every slot is busy.
    Freed,
    /// New work, a freed slot or a plugin change: slots are free but nothing was claimable.
    Any,
}

struct ClaimLoop {
    p: Poller,
    plugin_events: Option<broadcast::Receiver<crate::plugins::PluginEvent>>,
    wake: Wake,
}

#[async_trait::async_trait]
impl crate::service::Service for ClaimLoop {
    type Error = StorageError;

    fn name(&self) -> &'static str {
        "claim poller"
    }

    fn failure(&self) -> &'static str {
        "cannot claim jobs"
    }

    async fn run_once(&mut self) -> Result<Next, StorageError> {
        let p = &mut self.p;
        p.reap_finished();
        p.reopens_in = None;
        // Limited plugins claim before the buffer takes the freed slots: behind a busy type's
        // backlog the buffer never runs dry, and they would wait for all of it. At each
        // refill (a claim round trip happens then anyway), while the buffer is empty, and
        // every LIMITED_EVERY while a slot is free.
        let mut claimed = 0;
        let mut groups = None;
        let free_now = p.inner.slots.available_permits();
        if p.buffer.is_empty()
            || p.refill_wanted() > 0
            || (free_now > 0 && p.limited_at.elapsed() >= LIMITED_EVERY)
        {
            let groups = groups.insert(p.inner.plugins.groups());
            p.limited_at = Instant::now();
            claimed += p.claim_limited(groups, free_now).await?;
        }
        p.start_buffered();
        let free = p.inner.slots.available_permits();
        let refill = p.refill_wanted();
        if claimed == 0 && free == 0 && refill == 0 {
            self.wake = Wake::Freed;
            return Ok(Next::Wait(UNTIL_SIGNALLED));
        }
        let groups = groups.get_or_insert_with(|| p.inner.plugins.groups());
        claimed += p.claim_unlimited(groups, free, refill).await?;
        Ok(if claimed > 0 {
            Next::Now
        } else if free == 0 {
            self.wake = Wake::Freed;
            Next::Wait(UNTIL_SIGNALLED)
        } else {
            self.wake = Wake::Any;
            Next::Wait(
                p.reopens_in
                    .map_or(IDLE_WAIT, |d| d.clamp(MIN_REOPEN_WAIT, IDLE_WAIT)),
            )
        })
    }

    async fn wait(&mut self, limit: Duration) {
        let inner = self.p.inner.clone();
        match self.wake {
            Wake::Freed => {
                tokio::select! {
                    _ = inner.freed.notified() => {}
                    _ = tokio::time::sleep(limit) => {}
                }
            }
            Wake::Any => {
                tokio::select! {
                    _ = inner.storage.wait_for_work(limit) => {}
                    _ = inner.freed.notified() => {}
                    closed = plugin_change(&mut self.plugin_events) => if closed { self.plugin_events = None },
                }
            }
        }
    }

    fn failed(&mut self, _error: &StorageError) {
        self.p.inner.metrics.storage_error();
    }
}

/// Resolves when a plugin event arrives; true when the channel is closed (then never again).
async fn plugin_change(rx: &mut Option<broadcast::Receiver<crate::plugins::PluginEvent>>) -> bool {
    match rx {
        Some(rx) => matches!(rx.recv().await, Err(broadcast::error::RecvError::Closed)),
        None => std::future::pending().await,
    }
}

fn reap(tasks: &mut JoinSet<()>) {
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

impl Poller {
    fn reap_finished(&mut self) {
        reap(&mut self.tasks);
    }

    /// Jobs to claim for the buffer: refill it to the target once it is half empty.
    fn refill_wanted(&mut self) -> usize {
        let target = self.starts.prefetch_target(Instant::now());
        if self.buffer.len() <= target / 2 {
            target - self.buffer.len()
        } else {
            0
        }
    }

    /// Claims for the plugins with a concurrency limit, at most `free` jobs in all and each
    /// plugin's free permits; returns how many started. They take at most their own permits,
    /// so they cannot starve the rest, while the rest could take every slot from them.
    async fn claim_limited(
        &mut self,
        groups: &[PluginGroup],
        mut free: usize,
    ) -> Result<usize, StorageError> {
        let mut got_total = 0;
        for g in groups {
            let Some(max) = g.max_concurrency else {
                continue;
            };
            let n = plugin_permits(&self.inner, &g.name, max)
                .available_permits()
                .min(free);
            if n == 0 {
                continue;
            }
            let got = self.claim(g.types.clone(), n, false).await?;
            free -= got.len().min(free);
            got_total += got.len();
            self.start_or_buffer(got).await;
        }
        Ok(got_total)
    }

    /// One claim for every plugin without a limit: jobs for the `free` slots and `refill` more
    /// for the buffer; returns how many started or were buffered.
    async fn claim_unlimited(
        &mut self,
        groups: &[PluginGroup],
        free: usize,
        refill: usize,
    ) -> Result<usize, StorageError> {
        if free + refill == 0 {
            return Ok(0);
        }
        let unlimited: Vec<String> = groups
            .iter()
            .filter(|g| g.max_concurrency.is_none())
            .flat_map(|g| g.types.iter().cloned())
            .collect();
        if unlimited.is_empty() {
            return Ok(0);
        }
        let got = self.claim(unlimited, free + refill, true).await?;
        let n = got.len();
        self.start_or_buffer(got).await;
        Ok(n)
    }

    /// One claim. With `feed`, slots that free up while it is in flight are fed from the
    /// buffer: a claim is a round trip (more on a busy Redis), and short jobs would otherwise
    /// leave their slots idle for all of it (measured: Redis drains stalled at ~12k jobs/s
    /// with Redis and the daemon both part idle). Only for claims whose jobs may wait in the
    /// buffer: a limited plugin's jobs were claimed for slots counted free, and must find them.
    async fn claim(
        &mut self,
        types: Vec<String>,
        n: usize,
        feed: bool,
    ) -> Result<Vec<Claimed>, StorageError> {
        let req = ClaimRequest {
            types,
            limit: n.min(MAX_CLAIM),
            lease: self.inner.cfg.lease,
            worker: self.inner.cfg.worker_id.clone(),
        };
        let began = std::time::Instant::now();
        let inner = self.inner.clone();
        let claim = inner.storage.claim_ready(req);
        tokio::pin!(claim);
        let batch = loop {
            tokio::select! {
                r = &mut claim => break r?,
                _ = inner.freed.notified(), if feed && !self.buffer.is_empty() && !*self.stop.borrow() => {
                    self.reap_finished();
                    self.start_buffered();
                }
            }
        };
        self.inner.metrics.storage_call("claim", began.elapsed());
        if let Some(d) = batch.reopens_in {
            self.reopens_in = Some(self.reopens_in.map_or(d, |r| r.min(d)));
        }
        let claimed = batch.jobs;
        self.inner.metrics.claimed(claimed.len());
        Ok(claimed)
    }

    /// Start each claimed job if a slot (and plugin permit) is free, else buffer it. A job
    /// whose plugin vanished since the claim is given back at once.
    async fn start_or_buffer(&mut self, claimed: Vec<Claimed>) {
        let mut give_back: Vec<(String, LeaseToken)> = Vec::new();
        for c in claimed {
            let Some(resolved) = self.inner.plugins.resolve(&c.job.job_type) else {
                give_back.push((c.job.id.clone(), c.lease.clone()));
                continue;
            };
            let flags = Arc::new(JobFlags::default());
            let held = Held {
                lease: c.lease.clone(),
                flags: flags.clone(),
            };
            self.inner.held().insert(c.job.id.clone(), held);
            let ready = Ready {
                claimed: c,
                resolved,
                flags,
            };
            match take_permits(&self.inner, &ready.resolved) {
                Some(permits) => self.start(ready, permits),
                None if ready.resolved.max_concurrency.is_none() => self.buffer.push_back(ready),
                // A reload lowered the plugin's limit since the claim.
                None => {
                    self.inner.held().remove(&ready.claimed.job.id);
                    give_back.push((ready.claimed.job.id.clone(), ready.claimed.lease.clone()));
                }
            }
        }
        release(&self.inner, &give_back, "their plugin is gone").await;
    }

    /// Start buffered jobs while slots are free; drop those whose lease was lost meanwhile.
    fn start_buffered(&mut self) {
        while let Some(ready) = self.buffer.pop_front() {
            if ready.flags.lost.load(Ordering::Relaxed) {
                self.inner.held().remove(&ready.claimed.job.id);
                continue;
            }
            match take_permits(&self.inner, &ready.resolved) {
                Some(permits) => self.start(ready, permits),
                None => {
                    self.buffer.push_front(ready);
                    return;
                }
            }
        }
    }

    fn start(
        &mut self,
        ready: Ready,
        permits: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
    ) {
        self.starts.started();
        let guard = SlotGuard::new(self.inner.clone(), ready.claimed.job.id.clone(), permits);
        self.tasks.spawn(worker::run(
            self.inner.clone(),
            ready.claimed,
            ready.resolved,
            ready.flags,
            guard,
        ));
    }

    /// Shutdown: buffered jobs never started; they go back to the queue at once.
    async fn give_back_buffer(&mut self) {
        let leases: Vec<(String, LeaseToken)> = self
            .buffer
            .drain(..)
            .map(|r| {
                self.inner.held().remove(&r.claimed.job.id);
                (r.claimed.job.id.clone(), r.claimed.lease.clone())
            })
            .collect();
        release(&self.inner, &leases, "shutdown began before they started").await;
    }
}

async fn release(inner: &PoolInner, leases: &[(String, LeaseToken)], why: &str) {
    if leases.is_empty() {
        return;
    }
    if let Err(e) = inner.storage.release(leases).await {
        tracing::warn!(error = %e, jobs = leases.len(), "cannot give back jobs ({why}); they return when their leases expire");
    }
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
    reap(&mut tasks);
    let running = tasks.len();
    if running == 0 {
        return ShutdownReport::default();
    }
    tracing::info!(running, grace = ?inner.cfg.shutdown_grace, "waiting for running jobs to finish");
    let deadline = tokio::time::sleep(inner.cfg.shutdown_grace);
    tokio::pin!(deadline);
    tokio::pin!(hurry);
    loop {
        tokio::select! {
            biased;
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
    ShutdownReport {
        finished: running.saturating_sub(released),
        released,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOTS: usize = 4;

    /// Starts `per_ms` jobs every millisecond for `ms` milliseconds, asking for the target
    /// each millisecond as the claim loop does; returns the last target.
    fn feed(rate: &mut StartRate, t0: Instant, from_ms: u64, ms: u64, per_ms: u64) -> usize {
        let mut target = 0;
        for m in from_ms..from_ms + ms {
            for _ in 0..per_ms {
                rate.started();
            }
            target = rate.prefetch_target(t0 + Duration::from_millis(m + 1));
        }
        target
    }

    #[test]
    fn a_backlog_of_fast_jobs_gets_full_claims_within_a_tenth_of_a_second() {
        let t0 = Instant::now();
        let mut rate = StartRate::new(t0, SLOTS);
        // 30,000 jobs/s, as a SQLite drain of short jobs runs.
        assert_eq!(feed(&mut rate, t0, 0, 100, 30), MAX_CLAIM);
    }

    #[test]
    fn slow_jobs_are_not_prefetched() {
        let t0 = Instant::now();
        let mut rate = StartRate::new(t0, SLOTS);
        // Every slot runs one-second jobs: four starts at once, each second.
        let mut target = 0;
        for s in 0..10u64 {
            for _ in 0..4 {
                rate.started();
            }
            for m in 0..1000u64 {
                target = target.max(rate.prefetch_target(t0 + Duration::from_millis(s * 1000 + m)));
            }
        }
        assert_eq!(
            target, 0,
            "a burst of one start per slot is not a fast rate"
        );
    }

    #[test]
    fn the_target_falls_when_the_queue_goes_quiet() {
        let t0 = Instant::now();
        let mut rate = StartRate::new(t0, SLOTS);
        assert_eq!(feed(&mut rate, t0, 0, 100, 30), MAX_CLAIM);
        // Halved every 200 ms without starts.
        assert!(feed(&mut rate, t0, 100, 1000, 0) < MAX_CLAIM / 8);
    }
}
