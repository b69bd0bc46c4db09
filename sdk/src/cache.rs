//! The plugin's key-value cache: shared by every job of this plugin (and every daemon on the
//! same storage), namespaced per plugin by the host, values are strings, optional TTL.
//!
//! ```
//! use std::time::Duration;
//! use spool_sdk::{cache, Error};
//!
//! fn lookup(user: &str) -> Result<String, Error> {
//!     let key = format!("user:{user}");
//!     if let Some(name) = cache::get(&key)? {
//!         return Ok(name);
//!     }
//!     let name = user.to_uppercase(); // the expensive part
//!     cache::set(&key, &name, Some(Duration::from_secs(3600)))?;
//!     Ok(name)
//! }
//! # assert_eq!(lookup("ada").unwrap(), "ADA");
//! ```
//!
//! Errors (for example the storage being unreachable) are [`CacheError`]s; `?` turns them into
//! a retry of the job.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::millis_ceil;

/// A cache call failed on the host side (for example the storage is unreachable).
///
/// Converting it into an [`crate::Error`] (with `?`) gives a retry: the cause is transient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheError {
    operation: &'static str,
    key: String,
    message: String,
}

impl CacheError {
    fn new(operation: &'static str, key: &str, message: String) -> Self {
        Self {
            operation,
            key: key.to_owned(),
            message,
        }
    }

    /// The key the failed call was about.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The host's (or the encoder's) reason.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cache {} of `{}` failed: {}",
            self.operation, self.key, self.message
        )
    }
}

impl std::error::Error for CacheError {}

/// The value of `key`, or `None` when it is missing or expired.
pub fn get(key: &str) -> Result<Option<String>, CacheError> {
    crate::sys::cache_get(key).map_err(|e| CacheError::new("get", key, e))
}

/// Store `value` under `key`; `ttl: None` keeps it until it is deleted or evicted. The TTL is
/// rounded up to whole milliseconds.
pub fn set(key: &str, value: &str, ttl: Option<Duration>) -> Result<(), CacheError> {
    crate::sys::cache_set(key, value, ttl.map(millis_ceil))
        .map_err(|e| CacheError::new("set", key, e))
}

/// Remove `key`; true when it existed.
pub fn delete(key: &str) -> Result<bool, CacheError> {
    crate::sys::cache_delete(key).map_err(|e| CacheError::new("delete", key, e))
}

/// Add `delta` to the integer stored under `key` (a missing key counts as 0) and return the
/// new value. `ttl` applies only when this call creates the key, which makes fixed-window
/// counters (rate limits) one call.
pub fn increment(key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, CacheError> {
    crate::sys::cache_increment(key, delta, ttl.map(millis_ceil))
        .map_err(|e| CacheError::new("increment", key, e))
}

/// [`get`] and decode the value as JSON. A value that does not decode into `T` (say, one
/// written by an older version of the plugin) counts as a miss.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, CacheError> {
    Ok(get(key)?.and_then(|text| serde_json::from_str(&text).ok()))
}

/// Encode `value` as JSON and [`set`] it.
pub fn set_json<T: Serialize + ?Sized>(
    key: &str,
    value: &T,
    ttl: Option<Duration>,
) -> Result<(), CacheError> {
    let text = serde_json::to_string(value).map_err(|e| {
        CacheError::new("set", key, format!("cannot encode the value as JSON: {e}"))
    })?;
    set(key, &text, ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    #[test]
    fn set_then_get_returns_the_value_and_delete_removes_it() {
        let _host = FakeHost::install();
        assert_eq!(get("k").unwrap(), None);
        set("k", "v", None).unwrap();
        assert_eq!(get("k").unwrap().as_deref(), Some("v"));
        assert!(delete("k").unwrap());
        assert!(!delete("k").unwrap());
    }

    #[test]
    fn increment_counts_from_zero_and_passes_the_ttl_in_milliseconds() {
        let host = FakeHost::install();
        assert_eq!(
            increment("n", 2, Some(Duration::from_micros(1_500))).unwrap(),
            2
        );
        assert_eq!(increment("n", -5, None).unwrap(), -3);
        assert_eq!(host.cache_ttl_ms("n"), Some(2));
    }

    #[test]
    fn json_helpers_round_trip_and_treat_undecodable_values_as_misses() {
        let _host = FakeHost::install();
        set_json("j", &vec![1, 2], None).unwrap();
        assert_eq!(get_json::<Vec<u8>>("j").unwrap(), Some(vec![1, 2]));
        assert_eq!(get_json::<String>("j").unwrap(), None);
    }

    #[test]
    fn host_failures_name_the_operation_and_key_and_retry_the_job() {
        let host = FakeHost::install();
        host.fail_cache("storage unreachable");
        let error = get("k").unwrap_err();
        assert_eq!(
            error.to_string(),
            "cache get of `k` failed: storage unreachable"
        );
        assert!(crate::Error::from(error).is_retry());
    }
}
