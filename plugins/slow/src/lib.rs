//! `slow` (test fixture): sleeps `ms` milliseconds in steps of `step_ms`, reporting progress
//! after each step and stopping early with `Error::fail("cancelled")` once the host cancels.
//! `std::thread::sleep` becomes a WASI poll, so the host's worker thread is not blocked.
//!
//! Payload (all optional): `{"ms": 1000, "step_ms": 100}`; result `{"slept_ms": n, "steps": n}`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use spool_sdk::{Error, Job, log, progress};

#[derive(Deserialize)]
struct Payload {
    #[serde(default = "default_ms")]
    ms: u64,
    #[serde(default = "default_step_ms")]
    step_ms: u64,
}

fn default_ms() -> u64 {
    1000
}

fn default_step_ms() -> u64 {
    100
}

#[derive(Serialize)]
struct Slept {
    slept_ms: u64,
    steps: u64,
}

fn handle(job: Job) -> Result<Slept, Error> {
    let payload: Payload = job.payload()?;
    let step_ms = payload.step_ms.max(1);
    let steps = payload.ms.div_ceil(step_ms);
    let mut slept_ms = 0;
    for step in 1..=steps {
        if progress::cancelled() {
            log::info!("cancelled after {slept_ms} ms");
            return Err(Error::fail("cancelled"));
        }
        let this_step = step_ms.min(payload.ms - slept_ms);
        std::thread::sleep(Duration::from_millis(this_step));
        slept_ms += this_step;
        let percent = (step * 100 / steps) as u8;
        progress::report(percent, format!("slept {slept_ms} of {} ms", payload.ms));
    }
    Ok(Slept { slept_ms, steps })
}

spool_sdk::export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;
    use spool_sdk::testing;

    #[test]
    fn sleeps_in_steps_and_reports_each() {
        let host = testing::FakeHost::install();
        let out = testing::call(handle, Job::new("slow", r#"{"ms": 25, "step_ms": 10}"#));
        assert_eq!(out.unwrap(), r#"{"slept_ms":25,"steps":3}"#);
        let percents: Vec<u8> = host.progress().iter().map(|(p, _)| *p).collect();
        assert_eq!(percents, vec![33, 66, 100]);
    }

    #[test]
    fn stops_when_cancelled() {
        let host = testing::FakeHost::install();
        host.cancel();
        let error = testing::call(handle, Job::new("slow", "{}")).unwrap_err();
        assert_eq!(error.message(), "cancelled");
        assert!(!error.is_retry());
    }
}
