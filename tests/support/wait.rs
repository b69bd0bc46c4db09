//! Waiting for a condition against a deadline: `eventually` in async tests, and
//! `eventually_blocking` in blocking ones (the end-to-end tests drive the daemon with a
//! blocking HTTP client) and for the Redis harness's own waits.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it returns true; panics with `what` once `limit` has passed.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 50 ms until it returns true; panics with `what` once `limit` has passed.
/// Less often than `eventually`: its callers mostly ask a daemon over HTTP, which must not
/// spend its time answering them.
pub fn eventually_blocking(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
