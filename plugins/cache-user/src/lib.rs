//! `cache-user` (test fixture): exercises every cache call for one key and returns what it saw.
//!
//! Payload: `{"key": "k", "ttl_ms": 60000}` (`ttl_ms` optional). Steps:
//! 1. increment `<key>:count` by 1 (the TTL applies when this creates the counter);
//! 2. get `<key>:value` (what the previous job stored, or null);
//! 3. set `<key>:value` to `"seen <count> times"` with the TTL, and get it back.
//!
//! Result: `{"key", "count", "previous", "value"}`. A cache error asks for a retry.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use spool_sdk::{Error, Job, cache};

#[derive(Deserialize)]
struct Payload {
    key: String,
    #[serde(default = "default_ttl_ms")]
    ttl_ms: u64,
}

fn default_ttl_ms() -> u64 {
    60_000
}

#[derive(Serialize)]
struct Seen {
    key: String,
    count: i64,
    previous: Option<String>,
    value: Option<String>,
}

fn handle(job: Job) -> Result<Seen, Error> {
    let Payload { key, ttl_ms } = job.payload()?;
    let ttl = Some(Duration::from_millis(ttl_ms));
    let count = cache::increment(&format!("{key}:count"), 1, ttl)?;
    let value_key = format!("{key}:value");
    let previous = cache::get(&value_key)?;
    cache::set(&value_key, &format!("seen {count} times"), ttl)?;
    let value = cache::get(&value_key)?;
    Ok(Seen {
        key,
        count,
        previous,
        value,
    })
}

spool_sdk::export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;
    use spool_sdk::testing;

    #[test]
    fn second_job_sees_what_the_first_stored() {
        let _host = testing::FakeHost::install();
        let job = || Job::new("cache-user", r#"{"key": "a"}"#);
        let first = testing::call(handle, job()).unwrap();
        assert_eq!(
            first,
            r#"{"key":"a","count":1,"previous":null,"value":"seen 1 times"}"#
        );
        let second = testing::call(handle, job()).unwrap();
        assert_eq!(
            second,
            r#"{"key":"a","count":2,"previous":"seen 1 times","value":"seen 2 times"}"#
        );
    }

    #[test]
    fn cache_outage_asks_for_a_retry() {
        let host = testing::FakeHost::install();
        host.fail_cache("storage unreachable");
        let error = testing::call(handle, Job::new("cache-user", r#"{"key": "a"}"#)).unwrap_err();
        assert!(error.is_retry());
        assert_eq!(
            error.message(),
            "cache increment of `a:count` failed: storage unreachable"
        );
    }
}
