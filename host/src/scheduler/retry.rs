//! What a finished attempt means for its job: complete it, or fail it with a retry time (or
//! none: fail permanently). Pure: time comes in as `now`.
//!
//! Backoff precedence: the job's own policy, then the plugin manifest's `[retry]` (a missing
//! base or cap falls back to the daemon's), then the daemon's `[retry]` config. A plugin's
//! `retry-after` (`Outcome::Retry { after }`) overrides the backoff for that attempt.

use crate::config::RetryConfig;
use crate::job::{
    BackoffPolicy, Job, MAX_ERROR_BYTES, Millis, check_json_depth, clamp_time, millis_i64,
    truncate_text,
};
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
    /// The service the job calls is rate limiting (`Outcome::RateLimited`): hold the type back
    /// until `until` on every daemon, and give the lease back, the attempt not counted.
    Hold {
        error: String,
        until: Millis,
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
    let backoff =
        || clamp_time(backoff_policy(job, plugin, daemon).retry_at(now, job.attempt, None));
    let decision = match outcome {
        // The one depth check (`job::check_json_depth`) serves results too: a result that
        // could be stored but never listed fails the job instead.
        Outcome::Success(result) => match check_json_depth("the plugin's result", result.get()) {
            Ok(()) => Decision::Complete(result),
            Err(e) => Decision::Fail {
                error: e.to_string(),
                retry_at: None,
            },
        },
        // A plugin's retry-after is honoured, within the supported time range.
        Outcome::Retry {
            error,
            after: Some(after),
        } => Decision::Fail {
            error,
            retry_at: Some(clamp_time(now.saturating_add(millis_i64(after)))),
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
        Outcome::RateLimited { error, after } => {
            let after = after
                .unwrap_or(crate::storage::flow::DEFAULT_HOLD)
                .min(crate::storage::flow::MAX_HOLD);
            Decision::Hold {
                error: truncate_text(error, MAX_ERROR_BYTES),
                until: now.saturating_add(millis_i64(after).max(1)),
            }
        }
    };
    // Errors are stored, sent in events and logged: cut them like results are limited.
    match decision {
        Decision::Fail { error, retry_at } => Decision::Fail {
            error: truncate_text(error, MAX_ERROR_BYTES),
            retry_at,
        },
        d => d,
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
    fn results_nested_deeper_than_the_limit_fail_the_job() {
        let deep = format!("{}0{}", "[".repeat(65), "]".repeat(65));
        let d = decide(
            Outcome::Success(RawValue::from_string(deep).unwrap()),
            &job(1),
            &RetryPolicy::default(),
            &daemon(),
            0,
        );
        assert!(
            matches!(d, Decision::Fail { retry_at: None, ref error } if error.contains("nested")),
            "{d:?}"
        );
    }

    #[test]
    fn a_retry_after_past_year_9999_is_clamped() {
        let d = decide(
            Outcome::Retry {
                error: "later".into(),
                after: Some(Duration::MAX),
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
                    retry_at: Some(crate::job::MAX_TIME_MS),
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn job_errors_are_capped_like_results() {
        let d = decide(
            Outcome::Fail {
                error: "x".repeat(10 << 20),
            },
            &job(1),
            &RetryPolicy::default(),
            &daemon(),
            0,
        );
        let Decision::Fail { error, .. } = d else {
            panic!("{d:?}")
        };
        assert!(
            error.len() <= MAX_ERROR_BYTES && error.contains("(truncated"),
            "{}",
            error.len()
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
