//! Per-job limits: the memory cap (summed over every linear memory of the instance, which
//! wasmtime's `StoreLimits` does not do: it caps each memory separately) and the decision the
//! epoch callback makes every tick (keep going, or stop for a timeout or a cancel).

use std::time::{Duration, Instant};
use wasmtime::ResourceLimiter;

/// Caps the sum of all linear memories of one instance and records the peak.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: u64,
    total: u64,
    peak: u64,
    /// The growth approved by the last `memory_growing`, undone if wasmtime then fails it.
    last_approved: u64,
    /// The largest total a refused growth asked for. Set means the job ran out of memory,
    /// whatever the guest did about it afterwards.
    refused: Option<u64>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            limit,
            total: 0,
            peak: 0,
            last_approved: 0,
            refused: None,
        }
    }

    pub(crate) fn peak(&self) -> u64 {
        self.peak
    }

    /// Bytes the instance's memories hold now.
    pub(crate) fn used(&self) -> u64 {
        self.total
    }

    /// A kept instance starts another job: the peak and the verdict are per job, the memory
    /// it already holds is not given back.
    pub(crate) fn begin_job(&mut self) {
        self.peak = self.total;
        self.last_approved = 0;
        self.refused = None;
    }

    /// The total the guest asked for when it was refused, if it ever was.
    pub(crate) fn refused(&self) -> Option<u64> {
        self.refused
    }

    /// "out of memory: the plugin asked for 1025 MiB, its limit is 64 MiB".
    pub(crate) fn message(&self) -> String {
        let asked = self.refused.unwrap_or(self.peak);
        format!(
            "out of memory: the plugin asked for {}, its limit is {}",
            mib(asked, true),
            mib(self.limit, false)
        )
    }
}

/// Whole MiB (rounded up when asked, so "65 MiB" never reads as under a 64 MiB limit), or KiB
/// below one MiB.
fn mib(bytes: u64, round_up: bool) -> String {
    const MIB: u64 = 1 << 20;
    if bytes < MIB && bytes.is_multiple_of(1024) {
        return format!("{} KiB", bytes / 1024);
    }
    let n = if round_up {
        bytes.div_ceil(MIB)
    } else {
        bytes / MIB
    };
    format!("{n} MiB")
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let delta = desired.saturating_sub(current) as u64;
        let wanted = self.total.saturating_add(delta);
        if wanted > self.limit {
            self.refused = Some(self.refused.unwrap_or(0).max(wanted));
            self.last_approved = 0;
            // Ok(false): `memory.grow` returns -1 and the guest's allocator reports failure
            // (Rust aborts, C's malloc returns NULL); `execute` then reports out of memory.
            return Ok(false);
        }
        self.total = wanted;
        self.peak = self.peak.max(wanted);
        self.last_approved = delta;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.total = self.total.saturating_sub(self.last_approved);
        self.last_approved = 0;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded by the pooling allocator's slot size; nothing more to add.
        Ok(desired <= 1_000_000)
    }
}

/// Why the runtime stopped a job before it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    Timeout,
    Cancelled,
}

/// The clock side of a job: its deadline and when it was first told to stop.
#[derive(Debug)]
pub(crate) struct Deadline {
    pub(crate) deadline: Instant,
    cancel_grace: Duration,
    cancel_seen: Option<Instant>,
}

impl Deadline {
    /// A timeout too large for an `Instant` (a manifest's `timeout = "300000000000y"`, a job's
    /// `timeout_ms` near `u64::MAX`) means "no timeout" in practice: it is capped at
    /// `FOREVER` instead of panicking on the overflow.
    pub(crate) fn new(start: Instant, timeout: Duration, cancel_grace: Duration) -> Self {
        Self {
            deadline: far_add(start, timeout),
            cancel_grace,
            cancel_seen: None,
        }
    }

    /// Called every epoch tick (and by the watchdog): should the job stop now?
    pub(crate) fn check(&mut self, now: Instant, cancelled: bool) -> Option<StopReason> {
        if now >= self.deadline {
            return Some(StopReason::Timeout);
        }
        if cancelled {
            let seen = *self.cancel_seen.get_or_insert(now);
            if now >= far_add(seen, self.cancel_grace) {
                return Some(StopReason::Cancelled);
            }
        }
        None
    }
}

/// Longest wait a `Deadline` keeps: a century is "never" for a job.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + by`, capped at `FOREVER` so that it cannot overflow `Instant` (which panics).
fn far_add(at: Instant, by: Duration) -> Instant {
    at.checked_add(by.min(FOREVER)).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_caps_the_sum_of_all_memories() {
        let mut l = MemoryLimiter::new(64 << 20);
        assert!(l.memory_growing(0, 40 << 20, None).unwrap());
        assert!(l.memory_growing(0, 20 << 20, None).unwrap());
        // A second memory may not take the total past the limit.
        assert!(!l.memory_growing(20 << 20, 30 << 20, None).unwrap());
        assert_eq!(l.refused(), Some(70 << 20));
        assert_eq!(l.peak(), 60 << 20);
        assert_eq!(
            l.message(),
            "out of memory: the plugin asked for 70 MiB, its limit is 64 MiB"
        );
    }

    #[test]
    fn limiter_forgets_growth_that_wasmtime_then_failed() {
        let mut l = MemoryLimiter::new(64 << 20);
        assert!(l.memory_growing(0, 60 << 20, None).unwrap());
        l.memory_grow_failed(wasmtime::format_err!("pool slot too small"))
            .unwrap();
        assert!(l.memory_growing(0, 60 << 20, None).unwrap());
        assert_eq!(l.refused(), None);
    }

    #[test]
    fn deadline_stops_at_timeout() {
        let start = Instant::now();
        let mut d = Deadline::new(start, Duration::from_secs(2), Duration::from_secs(5));
        assert_eq!(d.check(start + Duration::from_millis(1999), false), None);
        assert_eq!(
            d.check(start + Duration::from_secs(2), false),
            Some(StopReason::Timeout)
        );
    }

    #[test]
    fn absurd_timeouts_and_grace_periods_do_not_overflow() {
        let start = Instant::now();
        let mut d = Deadline::new(start, Duration::MAX, Duration::MAX);
        let later = start + Duration::from_secs(365 * 24 * 3600);
        assert_eq!(d.check(later, false), None);
        assert_eq!(d.check(later, true), None);
        assert_eq!(d.check(later + Duration::from_secs(1), true), None);
    }

    #[test]
    fn deadline_stops_a_cancelled_job_after_the_grace_period() {
        let start = Instant::now();
        let mut d = Deadline::new(start, Duration::from_secs(60), Duration::from_secs(5));
        assert_eq!(d.check(start + Duration::from_secs(1), true), None);
        assert_eq!(
            d.check(start + Duration::from_secs(6), true),
            Some(StopReason::Cancelled)
        );
    }
}
