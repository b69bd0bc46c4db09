//! `throttled` (test fixture): plays a job whose remote service answers 429 Too Many Requests.
//!
//! Payload (all optional): `{"hold_ms": 2000}`. A job with `hold_ms` ends its first run with
//! the contract's "rate limited" outcome, asking the host to hold every job of its type for
//! that long; every later run (and every job without `hold_ms`) succeeds. Runs are counted in
//! the cache under the job's id. Result: `{"runs": n, "attempt": n}`.

use serde::{Deserialize, Serialize};
use spool_sdk::{Error, Job, cache};
use std::time::Duration;

#[derive(Deserialize)]
struct Payload {
    hold_ms: Option<u64>,
}

#[derive(Serialize)]
struct Ran {
    runs: i64,
    attempt: u32,
}

fn handle(job: Job) -> Result<Ran, Error> {
    let Payload { hold_ms } = job.payload()?;
    let runs = cache::increment(
        &format!("runs:{}", job.id()),
        1,
        Some(Duration::from_secs(3600)),
    )?;
    if let Some(ms) = hold_ms
        && runs == 1
    {
        return Err(Error::rate_limited(
            "429 Too Many Requests from the test service",
            Some(Duration::from_millis(ms)),
        ));
    }
    Ok(Ran {
        runs,
        attempt: job.attempt(),
    })
}

spool_sdk::export_handler!(handle);
