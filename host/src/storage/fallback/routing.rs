//! Which call goes where: the `Storage` impl of `FallbackStorage`. Enqueues fail over to
//! the spool; `get`, `cancel` and `delete` also reach jobs in the spool; `ping` and `info`
//! report the fallback; everything else goes to the primary and fails at once while it is
//! down.

use super::FallbackStorage;
use crate::job::Millis;
use crate::job::{Job, LeaseToken, NewJob};
use crate::storage::flow::{ClaimBatch, ControlChange, Schedule, ScheduleRecord, TypeControl};
use crate::storage::{
    BackendInfo, CacheKey, CacheUsage, CancelOutcome, Capabilities, ClaimRequest, Completion,
    Enqueued, Event, Failure, FallbackInfo, ImportEvents, JobPage, LeaseStatus, ListFilter,
    NewEvent, Reaped, Result, RetentionPolicy, Settled, Stats, Storage, StorageError,
};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Forwards a call to the primary: fails at once while it is down, notes new outages.
macro_rules! to_primary {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {{
        let p = $self.up_primary()?;
        $self.seen(p.$method($($arg),*).await)
    }};
}

#[async_trait]
impl Storage for FallbackStorage {
    fn backend(&self) -> &'static str {
        self.backend
    }

    /// A fallback spool stands in only for a shared storage; its facts are the primary's,
    /// known even before the primary first answers.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            shared: true,
            parallel_reads: 128,
        }
    }

    async fn enqueue_batch(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        if let Ok(p) = self.up_primary() {
            // A copy, so the jobs can still be spooled if the primary fails (payloads are
            // bounded by the payload limit, so this costs little next to the round trip).
            match p.enqueue_batch(jobs.clone()).await {
                Err(StorageError::Unavailable(e)) => self.mark_down(e),
                other => return other,
            }
        }
        self.spool_jobs(jobs).await
    }

    async fn import_jobs(&self, jobs: Vec<Job>, events: ImportEvents) -> Result<u64> {
        to_primary!(self.import_jobs(jobs, events))
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        let primary = match self.up_primary() {
            Ok(p) => self.seen(p.get(id).await),
            Err(e) => Err(e),
        };
        match primary {
            Ok(Some(job)) => Ok(Some(job)),
            // Spooled and not replayed yet (or being replayed right now).
            Ok(None) => self.spool.get(id).await,
            Err(e @ StorageError::Unavailable(_)) => match self.spool.get(id).await {
                Ok(Some(job)) => Ok(Some(job)),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn list(&self, filter: ListFilter) -> Result<JobPage> {
        to_primary!(self.list(filter))
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        self.delete_anywhere(id).await
    }

    async fn claim_ready(&self, req: ClaimRequest) -> Result<ClaimBatch> {
        to_primary!(self.claim_ready(req))
    }

    async fn type_controls(&self) -> Result<BTreeMap<String, TypeControl>> {
        to_primary!(self.type_controls())
    }

    async fn control_type(&self, job_type: &str, change: ControlChange) -> Result<TypeControl> {
        to_primary!(self.control_type(job_type, change))
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>> {
        to_primary!(self.schedules())
    }

    async fn put_schedule(&self, schedule: Schedule) -> Result<ScheduleRecord> {
        to_primary!(self.put_schedule(schedule))
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool> {
        to_primary!(self.delete_schedule(name))
    }

    async fn advance_schedule(&self, name: &str, from: Option<Millis>, to: Millis) -> Result<bool> {
        to_primary!(self.advance_schedule(name, from, to))
    }

    async fn renew_leases(
        &self,
        leases: &[(String, LeaseToken)],
        lease: Duration,
    ) -> Result<Vec<LeaseStatus>> {
        to_primary!(self.renew_leases(leases, lease))
    }

    async fn set_progress(
        &self,
        id: &str,
        lease: &LeaseToken,
        progress: crate::job::Progress,
    ) -> Result<bool> {
        to_primary!(self.set_progress(id, lease, progress))
    }

    async fn complete(&self, done: Vec<Completion>) -> Result<Vec<Settled>> {
        to_primary!(self.complete(done))
    }

    async fn fail(&self, failed: Vec<Failure>) -> Result<Vec<Settled>> {
        to_primary!(self.fail(failed))
    }

    async fn release(&self, leases: &[(String, LeaseToken)]) -> Result<u64> {
        to_primary!(self.release(leases))
    }

    async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        self.cancel_anywhere(id).await
    }

    async fn replay(&self, id: &str) -> Result<Option<Job>> {
        to_primary!(self.replay(id))
    }

    async fn promote_due(&self) -> Result<u64> {
        to_primary!(self.promote_due())
    }

    async fn reap_expired(&self) -> Result<Reaped> {
        to_primary!(self.reap_expired())
    }

    async fn sweep_retention(&self, policy: &RetentionPolicy) -> Result<u64> {
        to_primary!(self.sweep_retention(policy))
    }

    async fn stats(&self) -> Result<Stats> {
        to_primary!(self.stats())
    }

    async fn cache_get(&self, key: CacheKey<'_>) -> Result<Option<String>> {
        to_primary!(self.cache_get(key))
    }

    async fn cache_set(&self, key: CacheKey<'_>, value: &str, ttl: Option<Duration>) -> Result<()> {
        to_primary!(self.cache_set(key, value, ttl))
    }

    async fn cache_delete(&self, key: CacheKey<'_>) -> Result<bool> {
        to_primary!(self.cache_delete(key))
    }

    async fn cache_increment(
        &self,
        key: CacheKey<'_>,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64> {
        to_primary!(self.cache_increment(key, delta, ttl))
    }

    async fn cache_usage(&self, ns: &str) -> Result<CacheUsage> {
        to_primary!(self.cache_usage(ns))
    }

    async fn publish_event(&self, event: NewEvent) -> Result<Event> {
        to_primary!(self.publish_event(event))
    }

    async fn events_since(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        to_primary!(self.events_since(after, limit))
    }

    async fn latest_event_id(&self) -> Result<Option<String>> {
        to_primary!(self.latest_event_id())
    }

    async fn wait_for_work(&self, timeout: Duration) {
        match self.up_primary() {
            Ok(p) => p.wait_for_work(timeout).await,
            Err(_) => tokio::time::sleep(timeout).await,
        }
    }

    /// Events live in the primary (the spool's own are replayed into it with their jobs).
    async fn wait_for_events(&self, timeout: Duration) {
        match self.up_primary() {
            Ok(p) => p.wait_for_events(timeout).await,
            Err(_) => tokio::time::sleep(timeout).await,
        }
    }

    /// The primary's round trip; while it is down, the spool's (the daemon still accepts
    /// jobs, so health is degraded rather than unhealthy: `info` says why).
    async fn ping(&self) -> Result<Duration> {
        if let Ok(p) = self.up_primary() {
            match self.seen(p.ping().await) {
                Err(StorageError::Unavailable(_)) => {}
                other => return other,
            }
        }
        self.spool.ping().await
    }

    async fn info(&self) -> Result<BackendInfo> {
        let spooled = self.spooled.load(Ordering::SeqCst);
        let mut info = match self.up_primary() {
            Ok(p) => match self.seen(p.info().await) {
                Ok(info) => info,
                Err(StorageError::Unavailable(_)) => BackendInfo::default(),
                Err(e) => return Err(e),
            },
            Err(_) => BackendInfo::default(),
        };
        info.backend = self.backend.into();
        let mut fallback = FallbackInfo {
            active: self.is_active(),
            jobs: spooled,
            spool: self.spool_path.clone(),
            since: None,
        };
        if self.is_active() {
            let outage = self.outage();
            if let Some(o) = &outage {
                fallback.since = Some(crate::job::serde_time::format_rfc3339(o.since));
            }
            info.warnings.push(format!(
                "degraded: {} unreachable, {spooled} jobs in the local fallback spool (they go \
                 to {} when it is back){}",
                self.backend,
                self.backend,
                outage.map(|o| format!(": {}", o.error)).unwrap_or_default()
            ));
        } else if spooled > 0 {
            info.warnings.push(format!(
                "{spooled} jobs in the local fallback spool are being handed over to {}",
                self.backend
            ));
        }
        info.fallback = Some(fallback);
        Ok(info)
    }
}
