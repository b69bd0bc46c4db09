//! `always-retry` (test fixture): every attempt asks for a retry, so the job ends in `failed`
//! once its attempts are used up.

use spool_sdk::{Error, Job};

fn handle(job: Job) -> Result<(), Error> {
    Err(Error::retry(format!(
        "always-retry: attempt {} of {} asks for a retry, as this fixture always does",
        job.attempt(),
        job.max_attempts()
    )))
}

spool_sdk::export_handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attempt_is_a_retry() {
        let error = spool_sdk::testing::call(handle, Job::new("always-retry", "{}")).unwrap_err();
        assert!(error.is_retry());
        assert_eq!(
            error.message(),
            "always-retry: attempt 1 of 4 asks for a retry, as this fixture always does"
        );
    }
}
