//! The skeleton of the daemon's background loops (the claim poller, the lease renewer,
//! storage maintenance, the cron service, the live event hub). A loop says what one round
//! does and how it waits; `run` does the rest the same way for all of them: it stops on the
//! stop signal (between rounds and during any wait; a round itself always completes, so a
//! claim or a settle is never cut in half), logs the first failure of a streak once
//! (a dead storage must not write a line every second) and the recovery after it, and waits
//! before retrying a failed round.

use std::fmt::Display;
use std::time::Duration;
use tokio::sync::watch;

/// What to do after a round that worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Run the next round at once (a full page was handled; there may be more).
    Now,
    /// Call `Service::wait` with this limit, then run the next round.
    Wait(Duration),
}

#[async_trait::async_trait]
pub trait Service: Send {
    type Error: Display + Send;

    /// The loop's name, for the log: "lease renewer".
    fn name(&self) -> &'static str;

    /// What fails when a round fails, for the log: "cannot renew job leases".
    fn failure(&self) -> &'static str;

    /// One round of work.
    async fn run_once(&mut self) -> Result<Next, Self::Error>;

    /// Waits before the next round, at most `limit`; a loop with something to wake it (new
    /// work, written events, a freed worker) returns early. The stop signal is watched
    /// around it.
    async fn wait(&mut self, limit: Duration) {
        tokio::time::sleep(limit).await;
    }

    /// Called for every failed round (for metrics).
    fn failed(&mut self, _error: &Self::Error) {}

    /// How long to wait after a failed round.
    fn retry_after(&self) -> Duration {
        Duration::from_secs(1)
    }
}

/// Runs `service` until `stop` turns true (or its sender is dropped), then hands it back so
/// that the caller can finish its work (the poller gives back its buffered jobs).
pub async fn run<S: Service>(mut service: S, mut stop: watch::Receiver<bool>) -> S {
    let mut failing = false;
    loop {
        if *stop.borrow() {
            return service;
        }
        let wait = match service.run_once().await {
            Ok(next) => {
                if failing {
                    tracing::info!(service = service.name(), "working again");
                    failing = false;
                }
                match next {
                    Next::Now => continue,
                    Next::Wait(limit) => Some(limit),
                }
            }
            Err(e) => {
                service.failed(&e);
                if !failing {
                    tracing::warn!(error = %e, retry_in = ?service.retry_after(), "{}; retrying", service.failure());
                    failing = true;
                }
                None
            }
        };
        let stopped = match wait {
            Some(limit) => tokio::select! {
                _ = stop.changed() => true,
                _ = service.wait(limit) => false,
            },
            None => {
                let pause = service.retry_after();
                tokio::select! {
                    _ = stop.changed() => true,
                    _ = tokio::time::sleep(pause) => false,
                }
            }
        };
        if stopped {
            return service;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Fails `fail_first` rounds, then works; counts rounds and failures.
    struct Flaky {
        fail_first: usize,
        rounds: Arc<AtomicUsize>,
        failures: usize,
    }

    #[async_trait::async_trait]
    impl Service for Flaky {
        type Error = String;
        fn name(&self) -> &'static str {
            "test loop"
        }
        fn failure(&self) -> &'static str {
            "cannot do the test round"
        }
        async fn run_once(&mut self) -> Result<Next, String> {
            let n = self.rounds.fetch_add(1, Ordering::SeqCst);
            if n < self.fail_first {
                Err(format!("round {n} failed"))
            } else {
                Ok(Next::Wait(Duration::from_millis(1)))
            }
        }
        fn failed(&mut self, _error: &String) {
            self.failures += 1;
        }
        fn retry_after(&self) -> Duration {
            Duration::from_millis(1)
        }
    }

    #[tokio::test]
    async fn rounds_repeat_failures_are_counted_and_stop_ends_it() {
        let rounds = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = watch::channel(false);
        let flaky = Flaky {
            fail_first: 3,
            rounds: rounds.clone(),
            failures: 0,
        };
        let task = tokio::spawn(run(flaky, rx));
        while rounds.load(Ordering::SeqCst) < 10 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tx.send(true).unwrap();
        let done = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops at once")
            .unwrap();
        assert_eq!(done.failures, 3);
    }

    #[tokio::test]
    async fn a_stop_before_the_first_round_runs_nothing() {
        let rounds = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = watch::channel(false);
        tx.send(true).unwrap();
        let flaky = Flaky {
            fail_first: 0,
            rounds: rounds.clone(),
            failures: 0,
        };
        run(flaky, rx).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 0);
    }
}
