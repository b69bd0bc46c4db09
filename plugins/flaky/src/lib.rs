//! `flaky` (test fixture): asks for a retry while `attempt <= fail_times`, then succeeds with
//! `{"attempt": n}`.
//!
//! Payload: `{"fail_times": 2, "retry_after_ms": null}` (both optional; `retry_after_ms` asks
//! for that delay instead of the job's backoff).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use spool_sdk::{Error, Job, log};

#[derive(Deserialize)]
struct Payload {
    #[serde(default = "default_fail_times")]
    fail_times: u32,
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

fn default_fail_times() -> u32 {
    2
}

#[derive(Serialize)]
struct Succeeded {
    attempt: u32,
}

fn handle(job: Job) -> Result<Succeeded, Error> {
    let payload: Payload = job.payload()?;
    let attempt = job.attempt();
    if attempt <= payload.fail_times {
        log::warn!(
            "attempt {attempt} fails on purpose ({} planned)",
            payload.fail_times
        );
        let message = format!(
            "flaky: attempt {attempt} of {} planned failures",
            payload.fail_times
        );
        return Err(match payload.retry_after_ms {
            Some(ms) => Error::retry_after(message, Duration::from_millis(ms)),
            None => Error::retry(message),
        });
    }
    Ok(Succeeded { attempt })
}

spool_sdk::export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;
    use spool_sdk::{ErrorKind, testing};

    #[test]
    fn retries_until_the_planned_failures_are_used_up() {
        let _host = testing::FakeHost::install();
        let job = |attempt| Job::new("flaky", r#"{"fail_times": 2}"#).with_attempt(attempt);
        assert!(testing::call(handle, job(1)).unwrap_err().is_retry());
        assert!(testing::call(handle, job(2)).unwrap_err().is_retry());
        assert_eq!(testing::call(handle, job(3)).unwrap(), r#"{"attempt":3}"#);
    }

    #[test]
    fn defaults_to_two_failures_and_honours_retry_after() {
        let _host = testing::FakeHost::install();
        let job = Job::new("flaky", r#"{"retry_after_ms": 20}"#).with_attempt(2);
        let error = testing::call(handle, job).unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::Retry {
                after: Some(Duration::from_millis(20))
            }
        );
    }
}
