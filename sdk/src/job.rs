//! `Job`: the attempt a handler is running, with its payload decoded on request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use crate::Error;

/// One run (attempt) of a job, as the handler sees it.
///
/// The payload stays JSON text until the handler asks for it with [`Job::payload`], so a
/// handler that ignores it (or forwards it) pays nothing to decode it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    id: String,
    job_type: String,
    payload: String,
    attempt: u32,
    max_attempts: u32,
    priority: u8,
    created_at_ms: u64,
    unique_key: Option<String>,
}

impl Job {
    /// A job for tests: attempt 1 of 4, priority 5, id `test-job`, created at the Unix epoch.
    /// `payload` is JSON text; the `with_*` methods change the other fields.
    ///
    /// ```
    /// let job = spool_sdk::Job::new("resize", r#"{"width": 64}"#).with_attempt(2);
    /// assert_eq!(job.attempt(), 2);
    /// ```
    pub fn new(job_type: impl Into<String>, payload: impl Into<String>) -> Self {
        Self {
            id: "test-job".to_owned(),
            job_type: job_type.into(),
            payload: payload.into(),
            attempt: 1,
            max_attempts: 4,
            priority: 5,
            created_at_ms: 0,
            unique_key: None,
        }
    }

    /// Set the id (tests).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Set which attempt this is, starting at 1 (tests).
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Set how many attempts the job may use in all (tests).
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Set the priority, 1 (first) to 10 (tests).
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.priority = priority;
        self
    }

    /// Set the creation time in milliseconds since the Unix epoch (tests).
    pub fn with_created_at_ms(mut self, created_at_ms: u64) -> Self {
        self.created_at_ms = created_at_ms;
        self
    }

    /// Set the unique (idempotency) key (tests).
    pub fn with_unique_key(mut self, unique_key: impl Into<String>) -> Self {
        self.unique_key = Some(unique_key.into());
        self
    }

    /// The job's id: unique, sortable by creation (a UUIDv7 string), the same across retries.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The routing key that chose this plugin, for example `thumbnail` or `email.send`.
    pub fn job_type(&self) -> &str {
        &self.job_type
    }

    /// Which attempt this is, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How many attempts the job may use in all (1 run + retries).
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// True when a retry would not be granted: the next failure moves the job to `failed`.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// 1 (runs first) to 10.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// When the job was created, in milliseconds since the Unix epoch.
    pub fn created_at_ms(&self) -> u64 {
        self.created_at_ms
    }

    /// When the job was created.
    pub fn created_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.created_at_ms)
    }

    /// The job's unique (idempotency) key, when it was given one.
    pub fn unique_key(&self) -> Option<&str> {
        self.unique_key.as_deref()
    }

    /// The payload as the JSON text it was submitted with.
    pub fn raw_payload(&self) -> &str {
        &self.payload
    }

    /// The payload text, moved out of the job (to return it as a [`crate::RawJson`] or hand it
    /// on without a copy).
    pub fn into_raw_payload(self) -> String {
        self.payload
    }

    /// Decode the payload into `T`.
    ///
    /// A payload that does not match `T` is a permanent [`Error::fail`]: running the same
    /// payload again cannot fix it. The message names the job type and serde's reason (with
    /// line and column), so it reads well as the job's `error`.
    ///
    /// ```
    /// #[derive(Debug, serde::Deserialize)]
    /// struct Resize { width: u32 }
    ///
    /// let job = spool_sdk::Job::new("resize", r#"{"width": "wide"}"#);
    /// let error = job.payload::<Resize>().unwrap_err();
    /// assert!(!error.is_retry());
    /// assert!(error.message().starts_with("invalid payload for a `resize` job: invalid type"));
    /// ```
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(&self.payload).map_err(|e| {
            Error::fail(format!(
                "invalid payload for a `{}` job: {e}; submit a new job with a corrected payload",
                self.job_type
            ))
        })
    }

    /// Turn the host's record into a `Job` (moves every string, copies nothing).
    pub(crate) fn from_wit(job: crate::bindings::Job) -> Self {
        Self {
            id: job.id,
            job_type: job.job_type,
            payload: job.payload,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            priority: job.priority,
            created_at_ms: job.created_at_ms,
            unique_key: job.unique_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Payload {
        name: String,
        #[serde(default)]
        loud: bool,
    }

    #[test]
    fn payload_decodes_into_the_requested_type() {
        let job = Job::new("greet", r#"{"name": "ada"}"#);
        assert_eq!(
            job.payload::<Payload>().unwrap(),
            Payload {
                name: "ada".into(),
                loud: false
            }
        );
    }

    #[test]
    fn mismatched_payload_is_a_permanent_failure_naming_the_field() {
        let job = Job::new("greet", r#"{"loud": true}"#);
        let error = job.payload::<Payload>().unwrap_err();
        assert!(!error.is_retry());
        assert!(
            error.message().contains("missing field `name`"),
            "{}",
            error.message()
        );
        assert!(error.message().contains("`greet`"), "{}", error.message());
    }

    #[test]
    fn last_attempt_is_known() {
        let job = Job::new("x", "null").with_attempt(4).with_max_attempts(4);
        assert!(job.is_last_attempt());
        assert!(!job.with_attempt(3).is_last_attempt());
    }

    #[test]
    fn created_at_converts_milliseconds() {
        let job = Job::new("x", "null").with_created_at_ms(1_500);
        assert_eq!(job.created_at(), UNIX_EPOCH + Duration::from_millis(1_500));
    }
}
