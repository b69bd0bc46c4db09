//! What a finished attempt means for its job: complete it, or fail it with a retry time (or
//! none: fail permanently). Pure: time comes in as `now`.
//!
//! Backoff precedence: the job's own policy, then the plugin manifest's `[retry]` (a missing
//! base or cap falls back to the daemon's), then the daemon's `[retry]` config. A plugin's
//! `retry-after` (`Outcome::Retry { after }`) overrides the backoff for that attempt.

use crate::config::RetryConfig;
use crate::job::{BackoffPolicy, Job, Millis, millis_i64};
use crate::plugins::RetryPolicy;
use crate::runtime::Outcome;
use serde_json::value::RawValue;

#[derive(Debug)]
pub enum Decision {
    Complete(Box<RawValue>),
    /// `retry_at` None: do not retry (storage moves the job to `failed`; a requested cancel
    /// makes it `cancelled` instead).
    Fail {
        error: String,
        retry_at: Option<Millis>,
    },
    /// The plugin never ran (`Outcome::NoCapacity`): give the lease back, the attempt not
    /// counted.
    Release {
        error: String,
    },
}

pub fn backoff_policy(job: &Job, plugin: &RetryPolicy, daemon: &RetryConfig) -> BackoffPolicy {
    if let Some(p) = job.backoff {
        return p;
    }
    let base = plugin.backoff_base.unwrap_or(daemon.backoff_base);
    let cap = plugin.backoff_cap.unwrap_or(daemon.backoff_cap).max(base);
    BackoffPolicy::new(base, cap)
}

pub fn decide(
    outcome: Outcome,
    job: &Job,
    plugin: &RetryPolicy,
    daemon: &RetryConfig,
    now: Millis,
) -> Decision {
    let backoff = || backoff_policy(job, plugin, daemon).retry_at(now, job.attempt, None);
    match outcome {
        Outcome::Success(result) => Decision::Complete(result),
        Outcome::Retry {
            error,
            after: Some(after),
        } => Decision::Fail {
            error,
            retry_at: Some(now.saturating_add(millis_i64(after))),
        },
        Outcome::Retry { error, after: None } => Decision::Fail {
            error,
            retry_at: Some(backoff()),
        },
        Outcome::Fail { error } => Decision::Fail {
            error,
            retry_at: None,
        },
        // Traps, timeouts, out of memory: the retry policy applies. A cancelled attempt of a
        // job a user cancelled ends `cancelled` in storage (the request wins over the retry).
        Outcome::Crashed { error, .. } => Decision::Fail {
            error,
            retry_at: Some(backoff()),
        },
        Outcome::NoCapacity { error } => Decision::Release { error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Jitter, NewJob};
    use crate::runtime::CrashKind;
    use std::time::Duration;

    fn job(attempt: u32) -> Job {
        let new = NewJob::new("t", RawValue::from_string("{}".into()).unwrap());
        let mut j = Job::from_new(new, 0);
        j.attempt = attempt;
        j
    }

    fn daemon() -> RetryConfig {
        RetryConfig {
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            max_attempts: 4,
        }
    }

    #[test]
    fn retry_after_from_the_plugin_wins_over_backoff() {
        let d = decide(
            Outcome::Retry {
                error: "busy".into(),
                after: Some(Duration::from_millis(1500)),
            },
            &job(1),
            &RetryPolicy::default(),
            &daemon(),
            10_000,
        );
        assert!(
            matches!(
                d,
                Decision::Fail {
                    retry_at: Some(11_500),
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn permanent_failure_has_no_retry_time() {
        let d = decide(
            Outcome::Fail {
                error: "bad".into(),
            },
            &job(1),
            &RetryPolicy::default(),
            &daemon(),
            0,
        );
        assert!(matches!(d, Decision::Fail { retry_at: None, .. }), "{d:?}");
    }

    #[test]
    fn crashes_back_off_within_the_ceiling() {
        for _ in 0..50 {
            let d = decide(
                Outcome::Crashed {
                    error: "trap".into(),
                    kind: CrashKind::Trap,
                },
                &job(3),
                &RetryPolicy::default(),
                &daemon(),
                0,
            );
            let Decision::Fail {
                retry_at: Some(at), ..
            } = d
            else {
                panic!("{d:?}")
            };
            assert!(
                (0..=4_000).contains(&at),
                "attempt 3 waits at most base*4 = 4s, got {at}"
            );
        }
    }

    #[test]
    fn job_policy_then_plugin_then_daemon() {
        let plugin = RetryPolicy {
            max_attempts: None,
            backoff_base: Some(Duration::from_millis(10)),
            backoff_cap: None,
        };
        let p = backoff_policy(&job(1), &plugin, &daemon());
        assert_eq!((p.base_ms, p.cap_ms), (10, 60_000));
        let mut j = job(1);
        j.backoff = Some(
            BackoffPolicy::new(Duration::from_millis(5), Duration::from_millis(5))
                .with_jitter(Jitter::None),
        );
        assert_eq!(backoff_policy(&j, &plugin, &daemon()).base_ms, 5);
        let p = backoff_policy(&job(1), &RetryPolicy::default(), &daemon());
        assert_eq!((p.base_ms, p.cap_ms), (1000, 60_000));
    }
}
