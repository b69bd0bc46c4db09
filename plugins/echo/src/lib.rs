//! `echo`: returns the payload unchanged (the JSON text as submitted, not re-encoded). The
//! benchmark's no-op handler, so it does nothing else: no decoding, no host calls.

use spool_sdk::{Error, Job, RawJson};

fn handle(job: Job) -> Result<RawJson, Error> {
    Ok(RawJson::new(job.into_raw_payload()))
}

spool_sdk::export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;
    use spool_sdk::testing;

    #[test]
    fn returns_the_payload_text_untouched() {
        let payload = r#"{"b": 2, "a": [1.50]}"#;
        assert_eq!(
            testing::call(handle, Job::new("echo", payload)).unwrap(),
            payload
        );
    }
}
