//! Follow-up jobs: [`NewJob`] describes one, [`enqueue`] reserves its id. The host commits
//! follow-ups only when the current handler returns `Ok`; on any failure they are dropped, so
//! a retried job does not enqueue its follow-ups twice.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::millis_ceil;
use crate::sys::FollowUp;

/// A follow-up job to enqueue: its type, payload and optional settings.
///
/// ```
/// use std::time::Duration;
/// use spool_sdk::{enqueue, NewJob};
///
/// let id = enqueue(
///     NewJob::new("email.send", &serde_json::json!({"to": "ada@example.com"}))
///         .priority(1)
///         .delay(Duration::from_secs(30))
///         .unique_key("welcome:ada"),
/// )?;
/// # assert!(!id.is_empty());
/// # Ok::<(), spool_sdk::EnqueueError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a NewJob does nothing until it is passed to `enqueue`"]
pub struct NewJob {
    job_type: String,
    /// The payload as JSON text, or why it could not be encoded (reported by `enqueue`).
    payload: Result<String, String>,
    priority: Option<u8>,
    delay: Option<Duration>,
    max_attempts: Option<u32>,
    unique_key: Option<String>,
}

impl NewJob {
    /// A job of `job_type` whose payload is `payload` encoded as JSON. A plugin that handles
    /// `job_type` need not be loaded yet.
    pub fn new<T: Serialize + ?Sized>(job_type: impl Into<String>, payload: &T) -> Self {
        let payload = serde_json::to_string(payload)
            .map_err(|e| format!("cannot encode the payload as JSON: {e}"));
        Self::with_payload(job_type.into(), payload)
    }

    /// A job of `job_type` whose payload is already JSON text (the host checks it).
    pub fn from_raw(job_type: impl Into<String>, payload_json: impl Into<String>) -> Self {
        Self::with_payload(job_type.into(), Ok(payload_json.into()))
    }

    fn with_payload(job_type: String, payload: Result<String, String>) -> Self {
        Self {
            job_type,
            payload,
            priority: None,
            delay: None,
            max_attempts: None,
            unique_key: None,
        }
    }

    /// 1 (runs first) to 10; the host's default is 5.
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Do not run before `delay` has passed (rounded up to whole milliseconds).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// How many attempts the job may use in all; the host's default is 4.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = Some(max_attempts);
        self
    }

    /// At most one live job holds a unique key. The check happens when the follow-up is
    /// committed (after this handler returned `Ok`), not when [`enqueue`] is called: if a live
    /// job holds `key` then, no new job is made and that job is kept, so the id [`enqueue`]
    /// returned names no job. Use the key itself, not that id, to find the job.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// The type the job will have.
    pub fn job_type(&self) -> &str {
        &self.job_type
    }
}

/// The host (or the SDK, for a payload that cannot be encoded) refused a follow-up job.
///
/// Converting it into an [`crate::Error`] (with `?`) gives a permanent failure: the request
/// itself is wrong, so running the handler again would not help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueError {
    job_type: String,
    message: String,
}

impl EnqueueError {
    /// Why the job was refused.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for EnqueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot enqueue a `{}` job: {}",
            self.job_type, self.message
        )
    }
}

impl std::error::Error for EnqueueError {}

/// Reserve an id for a follow-up job and return it. The job is committed under that id only
/// if this handler returns `Ok`. With a [`NewJob::unique_key`] that a live job holds at commit
/// time, the existing job wins: nothing is made and the reserved id names no job.
pub fn enqueue(job: NewJob) -> Result<String, EnqueueError> {
    let NewJob {
        job_type,
        payload,
        priority,
        delay,
        max_attempts,
        unique_key,
    } = job;
    let payload = match payload {
        Ok(payload) => payload,
        Err(message) => return Err(EnqueueError { job_type, message }),
    };
    let follow_up = FollowUp {
        job_type: job_type.clone(),
        payload,
        priority,
        delay_ms: delay.map(millis_ceil),
        max_attempts,
        unique_key,
    };
    crate::sys::enqueue(follow_up).map_err(|message| EnqueueError { job_type, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;
    use std::collections::BTreeMap;

    #[test]
    fn enqueue_passes_every_setting_to_the_host() {
        let host = FakeHost::install();
        let id = enqueue(
            NewJob::new("resize", &serde_json::json!({"w": 1}))
                .priority(2)
                .delay(Duration::from_millis(1500))
                .max_attempts(7)
                .unique_key("img-1"),
        )
        .unwrap();
        let jobs = host.enqueued();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].id, id);
        assert_eq!(jobs[0].job_type, "resize");
        assert_eq!(jobs[0].payload, r#"{"w":1}"#);
        assert_eq!(jobs[0].priority, Some(2));
        assert_eq!(jobs[0].delay_ms, Some(1500));
        assert_eq!(jobs[0].max_attempts, Some(7));
        assert_eq!(jobs[0].unique_key.as_deref(), Some("img-1"));
    }

    #[test]
    fn unencodable_payload_is_reported_by_enqueue_as_a_permanent_failure() {
        let _host = FakeHost::install();
        let mut bad = BTreeMap::new();
        bad.insert(vec![1u8], 1); // JSON object keys must be strings
        let error = enqueue(NewJob::new("x", &bad)).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot enqueue a `x` job: cannot encode")
        );
        assert!(!crate::Error::from(error).is_retry());
    }

    #[test]
    fn host_refusals_name_the_job_type() {
        let _host = FakeHost::install();
        let error = enqueue(NewJob::from_raw("x", "{not json")).unwrap_err();
        assert!(
            error.to_string().starts_with("cannot enqueue a `x` job: "),
            "{error}"
        );
    }
}
