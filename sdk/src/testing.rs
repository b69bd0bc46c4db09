//! An in-memory fake host for native unit tests (every target except wasm32).
//!
//! On wasm32 the SDK's calls go to the real host; anywhere else they go to a per-thread fake,
//! so a plugin's handler can be tested with a plain `cargo test`:
//!
//! ```
//! use spool_sdk::{testing::{self, FakeHost}, Job, Error, cache, log};
//!
//! fn handle(job: Job) -> Result<i64, Error> {
//!     log::info!("counting for {}", job.id());
//!     Ok(cache::increment("hits", 1, None)?)
//! }
//!
//! let host = FakeHost::install();
//! assert_eq!(testing::call(handle, Job::new("count", "{}")).unwrap(), "1");
//! assert_eq!(testing::call(handle, Job::new("count", "{}")).unwrap(), "2");
//! assert_eq!(host.logs().len(), 2);
//! ```
//!
//! State is per thread (each `#[test]` runs on its own thread) and [`FakeHost::install`]
//! starts it afresh. TTLs are kept and honoured against the real clock.
//!
//! With the `contract-0-2` feature (the default) the fake also holds secrets
//! ([`FakeHost::set_secret`]) and answers outbound HTTP with canned responses
//! ([`FakeHost::respond`], [`FakeResponse`]; every request is recorded, see
//! [`FakeHost::requests`]). Like the daemon, it denies a request to anything it was not told
//! about (`HTTP-request-denied`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::log::Level;
use crate::{Error, Job, Output};

#[cfg(feature = "contract-0-2")]
mod http;
#[cfg(feature = "contract-0-2")]
pub use http::{FakeResponse, RecordedRequest};

/// A follow-up job the handler enqueued, as the fake host recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueuedJob {
    /// The id the fake host reserved (`fake-job-1`, `fake-job-2`, ...).
    pub id: String,
    /// The job's type.
    pub job_type: String,
    /// JSON text.
    pub payload: String,
    /// As passed to [`crate::NewJob::priority`].
    pub priority: Option<u8>,
    /// As passed to [`crate::NewJob::delay`], in milliseconds.
    pub delay_ms: Option<u64>,
    /// As passed to [`crate::NewJob::max_attempts`].
    pub max_attempts: Option<u32>,
    /// As passed to [`crate::NewJob::unique_key`].
    pub unique_key: Option<String>,
}

#[derive(Default)]
struct State {
    cache: BTreeMap<String, Entry>,
    cache_failure: Option<String>,
    logs: Vec<(Level, String)>,
    progress: Vec<(u8, Option<String>)>,
    cancelled: bool,
    config: BTreeMap<String, String>,
    enqueued: Vec<EnqueuedJob>,
    #[cfg(feature = "contract-0-2")]
    http: http::State,
}

struct Entry {
    value: String,
    ttl_ms: Option<u64>,
    expires: Option<Instant>,
}

impl Entry {
    fn new(value: String, ttl_ms: Option<u64>) -> Self {
        let expires = ttl_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
        Self {
            value,
            ttl_ms,
            expires,
        }
    }

    fn live(&self) -> bool {
        self.expires.is_none_or(|at| Instant::now() < at)
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|state| f(&mut state.borrow_mut()))
}

/// A handle on this thread's fake host: set it up, then inspect what the handler did.
#[derive(Debug)]
pub struct FakeHost {
    // The state is per thread, so the handle must stay on the thread that installed it.
    _not_send: PhantomData<*const ()>,
}

impl FakeHost {
    /// Start this thread's fake host afresh (empty cache, no logs, no config, no secrets, no
    /// HTTP responses) and return it.
    pub fn install() -> Self {
        with(|state| *state = State::default());
        Self {
            _not_send: PhantomData,
        }
    }

    /// Set a manifest config value.
    pub fn set_config(&self, name: &str, value: &str) {
        with(|state| state.config.insert(name.to_owned(), value.to_owned()));
    }

    /// Make `progress::cancelled()` return true from now on.
    pub fn cancel(&self) {
        with(|state| state.cancelled = true);
    }

    /// Make every cache call fail with `message` from now on (simulates an outage).
    pub fn fail_cache(&self, message: &str) {
        with(|state| state.cache_failure = Some(message.to_owned()));
    }

    /// The live value of a cache key.
    pub fn cache_value(&self, key: &str) -> Option<String> {
        with(|state| {
            state
                .cache
                .get(key)
                .filter(|e| e.live())
                .map(|e| e.value.clone())
        })
    }

    /// The TTL (in milliseconds) a live cache key was created with.
    pub fn cache_ttl_ms(&self, key: &str) -> Option<u64> {
        with(|state| {
            state
                .cache
                .get(key)
                .filter(|e| e.live())
                .and_then(|e| e.ttl_ms)
        })
    }

    /// Every line logged so far, oldest first.
    pub fn logs(&self) -> Vec<(Level, String)> {
        with(|state| state.logs.clone())
    }

    /// Every progress report so far, oldest first.
    pub fn progress(&self) -> Vec<(u8, Option<String>)> {
        with(|state| state.progress.clone())
    }

    /// Every follow-up job enqueued so far, oldest first.
    pub fn enqueued(&self) -> Vec<EnqueuedJob> {
        with(|state| state.enqueued.clone())
    }
}

/// Run `handler` on `job` the way the real host glue does and return the result as the JSON
/// text the host would receive, or the handler's error.
pub fn call<F, T, E>(handler: F, job: Job) -> Result<String, Error>
where
    F: FnOnce(Job) -> Result<T, E>,
    T: Output,
    E: Into<Error>,
{
    crate::run_handler(handler, job)
}

/// The sys-layer calls, answered from this thread's state.
pub(crate) mod calls {
    use super::*;
    use crate::sys::FollowUp;

    #[cfg(feature = "contract-0-2")]
    pub(crate) use super::http::{http_send, secrets_get};

    pub(crate) fn log(level: Level, message: &str) {
        with(|state| state.logs.push((level, message.to_owned())));
    }

    pub(crate) fn progress_report(percent: u8, message: Option<&str>) {
        with(|state| state.progress.push((percent, message.map(str::to_owned))));
    }

    pub(crate) fn cancelled() -> bool {
        with(|state| state.cancelled)
    }

    fn cache<R>(f: impl FnOnce(&mut BTreeMap<String, Entry>) -> R) -> Result<R, String> {
        with(|state| match &state.cache_failure {
            Some(message) => Err(message.clone()),
            None => {
                state.cache.retain(|_, entry| entry.live());
                Ok(f(&mut state.cache))
            }
        })
    }

    pub(crate) fn cache_get(key: &str) -> Result<Option<String>, String> {
        cache(|map| map.get(key).map(|e| e.value.clone()))
    }

    pub(crate) fn cache_set(key: &str, value: &str, ttl_ms: Option<u64>) -> Result<(), String> {
        cache(|map| {
            map.insert(key.to_owned(), Entry::new(value.to_owned(), ttl_ms));
        })
    }

    pub(crate) fn cache_delete(key: &str) -> Result<bool, String> {
        cache(|map| map.remove(key).is_some())
    }

    pub(crate) fn cache_increment(
        key: &str,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, String> {
        cache(|map| {
            let entry = map
                .entry(key.to_owned())
                .or_insert_with(|| Entry::new("0".into(), ttl_ms));
            let current: i64 = entry
                .value
                .parse()
                .map_err(|_| format!("the value of `{key}` is not an integer"))?;
            let next = current
                .checked_add(delta)
                .ok_or_else(|| format!("incrementing `{key}` would overflow"))?;
            entry.value = next.to_string();
            Ok(next)
        })?
    }

    pub(crate) fn enqueue(job: FollowUp) -> Result<String, String> {
        serde_json::from_str::<serde::de::IgnoredAny>(&job.payload)
            .map_err(|e| format!("the payload is not valid JSON: {e}"))?;
        if let Some(priority) = job.priority.filter(|p| !(1..=10).contains(p)) {
            return Err(format!(
                "priority must be between 1 and 10 (got {priority})"
            ));
        }
        with(|state| {
            if let Some(key) = &job.unique_key
                && let Some(held) = state
                    .enqueued
                    .iter()
                    .find(|j| j.unique_key.as_ref() == Some(key))
            {
                return Ok(held.id.clone());
            }
            let id = format!("fake-job-{}", state.enqueued.len() + 1);
            state.enqueued.push(EnqueuedJob {
                id: id.clone(),
                job_type: job.job_type,
                payload: job.payload,
                priority: job.priority,
                delay_ms: job.delay_ms,
                max_attempts: job.max_attempts,
                unique_key: job.unique_key,
            });
            Ok(id)
        })
    }

    pub(crate) fn config_get(name: &str) -> Option<String> {
        with(|state| state.config.get(name).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::FollowUp;

    #[test]
    fn install_starts_afresh() {
        let host = FakeHost::install();
        calls::log(Level::Info, "x");
        host.set_config("a", "b");
        let host = FakeHost::install();
        assert!(host.logs().is_empty());
        assert_eq!(calls::config_get("a"), None);
    }

    #[test]
    fn expired_cache_entries_are_misses() {
        let _host = FakeHost::install();
        calls::cache_set("k", "v", Some(0)).unwrap();
        assert_eq!(calls::cache_get("k").unwrap(), None);
    }

    #[test]
    fn a_live_unique_key_returns_the_existing_id() {
        let host = FakeHost::install();
        let job = |key: &str| FollowUp {
            job_type: "t".into(),
            payload: "{}".into(),
            priority: None,
            delay_ms: None,
            max_attempts: None,
            unique_key: Some(key.into()),
        };
        let first = calls::enqueue(job("a")).unwrap();
        assert_eq!(calls::enqueue(job("a")).unwrap(), first);
        assert_ne!(calls::enqueue(job("b")).unwrap(), first);
        assert_eq!(host.enqueued().len(), 2);
    }
}
