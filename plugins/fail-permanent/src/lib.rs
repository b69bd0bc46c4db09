//! `fail-permanent` (test fixture): fails permanently on the first attempt.
//!
//! Payload: `{"msg": "..."}` (optional) is appended to the error message.

use serde::Deserialize;
use spool_sdk::{Error, Job};

#[derive(Deserialize, Default)]
struct Payload {
    #[serde(default)]
    msg: Option<String>,
}

fn handle(job: Job) -> Result<(), Error> {
    // Any payload is accepted: a non-object one simply carries no message.
    let payload: Payload = job.payload().unwrap_or_default();
    Err(Error::fail(match payload.msg {
        Some(msg) => format!("fail-permanent: this fixture always fails: {msg}"),
        None => "fail-permanent: this fixture always fails".to_owned(),
    }))
}

spool_sdk::export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_without_retry_and_carries_the_message() {
        let job = Job::new("fail-permanent", r#"{"msg": "as planned"}"#);
        let error = spool_sdk::testing::call(handle, job).unwrap_err();
        assert!(!error.is_retry());
        assert_eq!(
            error.message(),
            "fail-permanent: this fixture always fails: as planned"
        );
    }
}
