//! Progress reports (which double as a heartbeat) and cooperative cancellation.

/// Record how far the job has got. `percent` above 100 counts as 100; an empty `message`
/// reports the percentage alone.
///
/// ```
/// spool_sdk::progress::report(50, "halfway");
/// ```
pub fn report(percent: u8, message: impl AsRef<str>) {
    let message = message.as_ref();
    crate::sys::progress_report(percent.min(100), (!message.is_empty()).then_some(message));
}

/// True once the host wants this job to stop: a user cancelled it or the daemon is shutting
/// down. Check it between steps of long work and return soon (for example with
/// `Err(Error::fail("cancelled"))`); the host stops the job itself after a grace period.
pub fn cancelled() -> bool {
    crate::sys::cancelled()
}

#[cfg(test)]
mod tests {
    use crate::testing::FakeHost;

    #[test]
    fn report_clamps_percent_and_drops_empty_messages() {
        let host = FakeHost::install();
        super::report(250, "");
        super::report(10, "started");
        assert_eq!(
            host.progress(),
            vec![(100, None), (10, Some("started".to_owned()))]
        );
    }

    #[test]
    fn cancelled_follows_the_host() {
        let host = FakeHost::install();
        assert!(!super::cancelled());
        host.cancel();
        assert!(super::cancelled());
    }
}
