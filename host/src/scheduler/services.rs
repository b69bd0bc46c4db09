//! `JobServices` for a job run by the daemon: the plugin's cache namespace in storage,
//! throttled progress writes (each also a `job.progress` event), and cancellation through
//! the job's flags (set by the renewer, the API's cancel hook and shutdown).

use super::JobFlags;
use crate::job::{LeaseToken, Progress};
use crate::runtime::JobServices;
use crate::storage::{CacheKey, Storage};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most one progress write per job per this long; the latest value is written when the
/// window ends, so the last report is never lost.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

pub(super) struct DaemonServices {
    storage: Arc<dyn Storage>,
    /// Cache namespace: the plugin's name.
    ns: String,
    job_id: String,
    lease: LeaseToken,
    flags: Arc<JobFlags>,
    progress: Arc<Mutex<ProgressState>>,
}

#[derive(Default)]
struct ProgressState {
    last_write: Option<Instant>,
    /// A report held back by the throttle, and whether a delayed write is scheduled for it.
    pending: Option<(u8, Option<String>)>,
    flush_scheduled: bool,
}

impl DaemonServices {
    pub(super) fn new(
        storage: Arc<dyn Storage>,
        ns: String,
        job_id: String,
        lease: LeaseToken,
        flags: Arc<JobFlags>,
    ) -> Self {
        Self {
            storage,
            ns,
            job_id,
            lease,
            flags,
            progress: Arc::default(),
        }
    }

    /// Writes a report the throttle still holds back, now: called when the attempt ends, so
    /// that a job's last report (often 100%) is recorded while its lease still holds.
    pub(crate) async fn flush_progress(&self) {
        let pending = {
            let mut st = self.progress.lock().unwrap_or_else(|p| p.into_inner());
            st.last_write = Some(Instant::now());
            st.pending.take()
        };
        if let Some((percent, message)) = pending {
            self.write_progress(percent, message).await;
        }
    }

    async fn write_progress(&self, percent: u8, message: Option<String>) {
        write_progress(&self.storage, &self.job_id, &self.lease, percent, message).await;
    }
}

async fn write_progress(
    storage: &Arc<dyn Storage>,
    job_id: &str,
    lease: &LeaseToken,
    percent: u8,
    message: Option<String>,
) {
    if let Err(e) = storage
        .set_progress(job_id, lease, Progress::new(percent, message))
        .await
    {
        tracing::debug!(job_id, error = %e, "cannot record progress");
    }
}

fn err(e: crate::storage::StorageError) -> String {
    e.to_string()
}

/// A cache TTL must end within the supported time range (year 9999), checked before any
/// backend sees it: on Redis, `cache_increment`'s `INCRBY` ran before a `PEXPIRE` that
/// failed on a huge TTL would leave the counter without an expiry.
fn check_ttl(ttl: Option<Duration>) -> Result<(), String> {
    let Some(ttl) = ttl else { return Ok(()) };
    let until = crate::job::system_now_ms().saturating_add(crate::job::millis_i64(ttl));
    crate::job::check_time("the cache entry's expiry", until)
        .map(|_| ())
        .map_err(|e| format!("{e}; use a shorter ttl"))
}

#[async_trait::async_trait]
impl JobServices for DaemonServices {
    async fn cache_get(&self, key: &str) -> Result<Option<String>, String> {
        self.storage
            .cache_get(CacheKey::new(&self.ns, key))
            .await
            .map_err(err)
    }

    async fn cache_set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), String> {
        check_ttl(ttl)?;
        self.storage
            .cache_set(CacheKey::new(&self.ns, key), value, ttl)
            .await
            .map_err(err)
    }

    async fn cache_delete(&self, key: &str) -> Result<bool, String> {
        self.storage
            .cache_delete(CacheKey::new(&self.ns, key))
            .await
            .map_err(err)
    }

    async fn cache_increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, String> {
        check_ttl(ttl)?;
        self.storage
            .cache_increment(CacheKey::new(&self.ns, key), delta, ttl)
            .await
            .map_err(err)
    }

    async fn progress(&self, percent: u8, message: Option<String>) {
        let percent = percent.min(100);
        let message =
            message.map(|m| crate::job::truncate_text(m, crate::job::MAX_PROGRESS_MESSAGE_BYTES));
        let wait = {
            let mut st = self.progress.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            match st.last_write {
                // 100% is throttled like the rest (a loop of 100% reports would flood the
                // event log); the held-back report is still written when the window ends.
                Some(t) if now.duration_since(t) < PROGRESS_EVERY => {
                    st.pending = Some((percent, message.clone()));
                    if st.flush_scheduled {
                        return;
                    }
                    st.flush_scheduled = true;
                    Some(PROGRESS_EVERY - now.duration_since(t))
                }
                _ => {
                    st.last_write = Some(now);
                    st.pending = None;
                    None
                }
            }
        };
        match wait {
            None => self.write_progress(percent, message).await,
            Some(wait) => {
                // Write the latest held-back report when the window ends, off the guest's path.
                let (storage, job_id, lease, state) = (
                    self.storage.clone(),
                    self.job_id.clone(),
                    self.lease.clone(),
                    self.progress.clone(),
                );
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let pending = {
                        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                        st.flush_scheduled = false;
                        st.last_write = Some(Instant::now());
                        st.pending.take()
                    };
                    if let Some((p, m)) = pending {
                        write_progress(&storage, &job_id, &lease, p, m).await;
                    }
                });
            }
        }
    }

    fn cancelled(&self) -> bool {
        self.flags.cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{NewJob, SystemClock};
    use crate::storage::memory::MemoryStorage;
    use crate::storage::{ClaimRequest, StorageOptions};

    #[test]
    fn cache_ttls_past_year_9999_are_refused_before_storage() {
        assert!(check_ttl(None).is_ok());
        assert!(check_ttl(Some(Duration::from_secs(3600))).is_ok());
        let e = check_ttl(Some(Duration::from_millis(u64::MAX))).unwrap_err();
        assert!(e.contains("year 9999"), "{e}");
    }

    #[tokio::test]
    async fn progress_at_100_percent_is_throttled_like_the_rest() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new(
            StorageOptions::default(),
            Arc::new(SystemClock),
        ));
        let payload = serde_json::value::RawValue::from_string("{}".into()).unwrap();
        storage.enqueue(NewJob::new("t", payload)).await.unwrap();
        let claimed = storage
            .claim(ClaimRequest {
                types: vec!["t".into()],
                limit: 1,
                lease: Duration::from_secs(30),
                worker: "test".into(),
            })
            .await
            .unwrap()
            .remove(0);
        let before = storage.events_since(None, 10_000).await.unwrap().len();
        let services = DaemonServices::new(
            storage.clone(),
            "t".into(),
            claimed.job.id.clone(),
            claimed.lease,
            Arc::new(JobFlags::default()),
        );
        for _ in 0..100 {
            services.progress(100, Some("x".repeat(10_000))).await;
        }
        let written = storage.events_since(None, 10_000).await.unwrap().len() - before;
        assert_eq!(
            written, 1,
            "one write now, the rest held back for the window"
        );
        let job = storage.get(&claimed.job.id).await.unwrap().unwrap();
        let message = job.progress.unwrap().message.unwrap();
        assert!(
            message.len() <= crate::job::MAX_PROGRESS_MESSAGE_BYTES,
            "{}",
            message.len()
        );
    }
}
