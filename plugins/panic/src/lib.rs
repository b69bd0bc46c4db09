//! `panic` (test fixture): panics with `fixture panic: <msg>`. On wasm32-wasip2 a panic
//! prints its message to stderr and aborts: the host sees a trap.
//!
//! Payload: `{"msg": "..."}` (optional, default `boom`).

use serde::Deserialize;
use spool_sdk::{Error, Job};

#[derive(Deserialize, Default)]
struct Payload {
    #[serde(default)]
    msg: Option<String>,
}

fn handle(job: Job) -> Result<(), Error> {
    let payload: Payload = job.payload().unwrap_or_default();
    let msg = payload.msg.as_deref().unwrap_or("boom");
    panic!("fixture panic: {msg}");
}

spool_sdk::export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "fixture panic: on purpose")]
    fn panics_with_the_payload_message() {
        let _ = handle(Job::new("panic", r#"{"msg": "on purpose"}"#));
    }
}
