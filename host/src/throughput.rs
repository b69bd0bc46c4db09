//! Completed, failed and retried attempts per minute over the last hour, for the dashboard's
//! throughput chart (`GET /api/v1/stats/throughput`). Written by `Metrics::attempt_ended`
//! (the pool's completer), read by the API. Like the other counters it counts what *this*
//! daemon ran: daemons sharing a storage each chart their own work.

use serde::Serialize;

/// Minutes kept (the chart's hour).
pub const MINUTES: usize = 60;

/// How an attempt ended, as the chart counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// Moved its job to `failed` (dead letter).
    Failed,
    /// Failed with attempts left: the job will run again.
    Retried,
}

/// One minute of the chart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Minute {
    /// Start of the minute, in ms since 1970.
    pub at_ms: u64,
    pub completed: u64,
    pub failed: u64,
    pub retried: u64,
}

/// A ring of `MINUTES` slots, each tagged with its minute number so stale slots read as 0.
#[derive(Debug, Clone)]
pub struct MinuteRing {
    slots: [(u64, Minute); MINUTES],
}

impl Default for MinuteRing {
    fn default() -> Self {
        MinuteRing {
            slots: [(u64::MAX, Minute::default()); MINUTES],
        }
    }
}

impl MinuteRing {
    /// Count one attempt that ended at `now_ms`.
    pub fn add(&mut self, now_ms: u64, outcome: Outcome) {
        let minute = now_ms / 60_000;
        let (tag, slot) = &mut self.slots[(minute % MINUTES as u64) as usize];
        if *tag != minute {
            *tag = minute;
            *slot = Minute {
                at_ms: minute * 60_000,
                ..Minute::default()
            };
        }
        match outcome {
            Outcome::Completed => slot.completed += 1,
            Outcome::Failed => slot.failed += 1,
            Outcome::Retried => slot.retried += 1,
        }
    }

    /// The hour ending with the minute of `now_ms`, oldest minute first, one entry a minute
    /// (zeros where nothing ended).
    pub fn series(&self, now_ms: u64) -> Vec<Minute> {
        let current = now_ms / 60_000;
        (0..MINUTES as u64)
            .rev()
            .map(|back| {
                let minute = current.saturating_sub(back);
                let (tag, slot) = &self.slots[(minute % MINUTES as u64) as usize];
                if *tag == minute {
                    *slot
                } else {
                    Minute {
                        at_ms: minute * 60_000,
                        ..Minute::default()
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_has_one_entry_a_minute_oldest_first() {
        let mut r = MinuteRing::default();
        let now = 100 * 60_000 + 5_000;
        r.add(now, Outcome::Completed);
        r.add(now, Outcome::Completed);
        r.add(now - 60_000, Outcome::Failed);
        r.add(now - 60_000, Outcome::Retried);
        let s = r.series(now);
        assert_eq!(s.len(), MINUTES);
        assert_eq!(s[MINUTES - 1].completed, 2);
        assert_eq!(s[MINUTES - 1].at_ms, 100 * 60_000);
        assert_eq!((s[MINUTES - 2].failed, s[MINUTES - 2].retried), (1, 1));
        assert_eq!(s[0].at_ms, 41 * 60_000);
    }

    #[test]
    fn minutes_older_than_an_hour_read_as_zero() {
        let mut r = MinuteRing::default();
        r.add(0, Outcome::Completed);
        let later = (MINUTES as u64) * 60_000;
        assert!(r.series(later).iter().all(|m| m.completed == 0));
        // The slot is reused by the new minute, not added to.
        r.add(later, Outcome::Failed);
        let last = r.series(later)[MINUTES - 1];
        assert_eq!((last.completed, last.failed), (0, 1));
    }
}
