//! `memory://`: the whole store in one mutex-guarded `State` with the same indexes a real
//! backend keeps (ready jobs per type in claim order, due times, lease expiries, live unique
//! keys). Same semantics as SQLite and Redis; nothing survives a restart. For development
//! and tests.

mod state;

use super::flow::{self, ClaimBatch, ControlChange, Schedule, ScheduleRecord, TypeControl};
use super::limits::{self, check_cache_key};
use super::{
    BackendInfo, CacheKey, CacheUsage, CancelOutcome, Capabilities, ClaimRequest, Completion,
    Enqueued, Event, Failure, ImportEvents, JobPage, LeaseStatus, ListFilter, NewEvent, Reaped,
    Result, RetentionPolicy, Settled, Signal, Stats, Storage, StorageOptions, Wakers,
};
use crate::job::{Clock, Job, LeaseToken, Millis, NewJob, millis_i64};
use async_trait::async_trait;
use state::State;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub struct MemoryStorage {
    opts: StorageOptions,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Work: a job may have become ready. Events: the state's event log grew (see
    /// `StateGuard`).
    wakers: Wakers,
}

impl std::fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStorage").finish_non_exhaustive()
    }
}

impl MemoryStorage {
    pub fn new(opts: StorageOptions, clock: Arc<dyn Clock>) -> Self {
        Self {
            opts,
            clock,
            state: Mutex::new(State::default()),
            wakers: Wakers::default(),
        }
    }

    /// The state; a panic while it was held (a bug) does not make the store unusable.
    /// Events appended while it is held are signalled when it is released.
    fn lock(&self) -> StateGuard<'_> {
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        StateGuard {
            last_event: state.last_event_id,
            state,
            signal: &self.wakers.events,
        }
    }

    fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    fn signal_work(&self) {
        self.wakers.work.notify();
    }
}

/// The locked state; signals on release when events were appended meanwhile.
struct StateGuard<'a> {
    state: MutexGuard<'a, State>,
    last_event: i64,
    signal: &'a Signal,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        if self.state.last_event_id != self.last_event {
            self.signal.notify();
        }
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            shared: false,
            parallel_reads: 128,
        }
    }

    async fn enqueue_batch(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        limits::check_new_jobs(&jobs, self.opts.max_payload_bytes)?;
        let now = self.now();
        let out: Vec<Enqueued> = {
            let mut state = self.lock();
            jobs.into_iter()
                .map(|job| state.insert_new(job, now))
                .collect()
        };
        if out.iter().any(|e| e.created) {
            self.signal_work();
        }
        Ok(out)
    }

    async fn import_jobs(&self, jobs: Vec<Job>, events: ImportEvents) -> Result<u64> {
        limits::check_imported(&jobs)?;
        let now = self.now();
        let inserted = {
            let mut state = self.lock();
            jobs.into_iter()
                .filter(|job| state.import(job.clone(), events, now))
                .count() as u64
        };
        if inserted > 0 {
            self.signal_work();
        }
        Ok(inserted)
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        Ok(self.lock().jobs.get(id).map(|e| e.job.clone()))
    }

    async fn list(&self, filter: ListFilter) -> Result<JobPage> {
        let limit = limits::list_limit(filter.limit);
        let state = self.lock();
        let upper = match &filter.cursor {
            Some(c) => std::ops::Bound::Excluded(c.clone()),
            None => std::ops::Bound::Unbounded,
        };
        let jobs: Vec<Job> = state
            .jobs
            .range((std::ops::Bound::Unbounded, upper))
            .rev()
            .map(|(_, e)| &e.job)
            .filter(|j| filter.status.is_none_or(|s| j.status == s))
            .filter(|j| filter.job_type.as_ref().is_none_or(|t| &j.job_type == t))
            .take(limit + 1)
            .cloned()
            .collect();
        Ok(limits::into_page(jobs, limit))
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        Ok(self.lock().take(id).is_some())
    }

    async fn claim_ready(&self, req: ClaimRequest) -> Result<ClaimBatch> {
        let now = self.now();
        let until = now.saturating_add(millis_i64(req.lease));
        Ok(self
            .lock()
            .claim(&req.types, req.limit, until, &req.worker, now))
    }

    async fn type_controls(&self) -> Result<BTreeMap<String, TypeControl>> {
        Ok(self.lock().controls.clone())
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>> {
        Ok(self.lock().schedules.values().cloned().collect())
    }

    async fn put_schedule(&self, schedule: Schedule) -> Result<ScheduleRecord> {
        flow::check_schedule(&schedule, self.opts.max_payload_bytes)?;
        let now = self.now();
        let mut state = self.lock();
        let record = match state.schedules.get(&schedule.name) {
            Some(old) => ScheduleRecord {
                schedule,
                ..old.clone()
            },
            None => ScheduleRecord {
                schedule,
                last_tick: None,
                created_at: now,
            },
        };
        state
            .schedules
            .insert(record.schedule.name.clone(), record.clone());
        Ok(record)
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool> {
        Ok(self.lock().schedules.remove(name).is_some())
    }

    async fn advance_schedule(&self, name: &str, from: Option<Millis>, to: Millis) -> Result<bool> {
        let mut state = self.lock();
        match state.schedules.get_mut(name) {
            Some(r) if r.last_tick == from => {
                r.last_tick = Some(to);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn control_type(&self, job_type: &str, change: ControlChange) -> Result<TypeControl> {
        flow::check_change(job_type, &change)?;
        let now = self.now();
        let (control, changed) = self.lock().control_type(job_type, &change, now);
        if changed {
            self.signal_work();
        }
        Ok(control)
    }

    async fn renew_leases(
        &self,
        leases: &[(String, LeaseToken)],
        lease: Duration,
    ) -> Result<Vec<LeaseStatus>> {
        let until = self.now().saturating_add(millis_i64(lease));
        let mut state = self.lock();
        Ok(leases
            .iter()
            .map(|(id, token)| state.renew(id, token, until))
            .collect())
    }

    async fn set_progress(
        &self,
        id: &str,
        lease: &LeaseToken,
        progress: crate::job::Progress,
    ) -> Result<bool> {
        let crate::job::Progress { percent, message } = progress;
        let now = self.now();
        Ok(self
            .lock()
            .set_progress(id, lease, percent.min(100), message, now))
    }

    async fn complete(&self, done: Vec<Completion>) -> Result<Vec<Settled>> {
        limits::check_followups(&done, self.opts.max_payload_bytes)?;
        let now = self.now();
        let (settled, woke) = {
            let mut state = self.lock();
            let mut woke = false;
            let settled = done
                .into_iter()
                .map(|c| {
                    let (s, created) = state.complete(c, now);
                    woke |= created;
                    s
                })
                .collect();
            (settled, woke)
        };
        if woke {
            self.signal_work();
        }
        Ok(settled)
    }

    async fn fail(&self, failed: Vec<Failure>) -> Result<Vec<Settled>> {
        let now = self.now();
        let mut state = self.lock();
        Ok(failed.into_iter().map(|f| state.fail(f, now)).collect())
    }

    async fn release(&self, leases: &[(String, LeaseToken)]) -> Result<u64> {
        let now = self.now();
        let released = {
            let mut state = self.lock();
            leases
                .iter()
                .filter(|(id, token)| state.release(id, token, now))
                .count() as u64
        };
        if released > 0 {
            self.signal_work();
        }
        Ok(released)
    }

    async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        let now = self.now();
        Ok(self.lock().cancel(id, now))
    }

    async fn replay(&self, id: &str) -> Result<Option<Job>> {
        let now = self.now();
        let job = self.lock().replay(id, now)?;
        if job.is_some() {
            self.signal_work();
        }
        Ok(job)
    }

    async fn promote_due(&self) -> Result<u64> {
        let now = self.now();
        let promoted = self.lock().promote_due(now);
        if promoted > 0 {
            self.signal_work();
        }
        Ok(promoted)
    }

    async fn reap_expired(&self) -> Result<Reaped> {
        let now = self.now();
        let reaped = self.lock().reap_expired(now);
        if reaped.requeued > 0 {
            self.signal_work();
        }
        Ok(reaped)
    }

    async fn sweep_retention(&self, policy: &RetentionPolicy) -> Result<u64> {
        let now = self.now();
        let mut state = self.lock();
        state.trim_events(self.opts.max_events);
        state.purge_expired_cache(now);
        Ok(state.sweep_retention(policy, now))
    }

    async fn stats(&self) -> Result<Stats> {
        let now = self.now();
        Ok(self.lock().stats(now))
    }

    async fn cache_get(&self, key: CacheKey<'_>) -> Result<Option<String>> {
        let CacheKey { ns, key } = key;
        check_cache_key(ns, key)?;
        let now = self.now();
        Ok(self.lock().cache_get(ns, key, now))
    }

    async fn cache_set(&self, key: CacheKey<'_>, value: &str, ttl: Option<Duration>) -> Result<()> {
        let CacheKey { ns, key } = key;
        let max = self.opts.max_payload_bytes;
        let now = self.now();
        let expires = limits::check_cache_set(ns, key, value, ttl, max, now)?;
        let quota = self.opts.cache_quota;
        self.lock()
            .cache_set(ns, key, value.to_owned(), expires, quota, now)
    }

    async fn cache_delete(&self, key: CacheKey<'_>) -> Result<bool> {
        let CacheKey { ns, key } = key;
        check_cache_key(ns, key)?;
        let now = self.now();
        Ok(self.lock().cache_delete(ns, key, now))
    }

    async fn cache_increment(
        &self,
        key: CacheKey<'_>,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64> {
        let CacheKey { ns, key } = key;
        check_cache_key(ns, key)?;
        let now = self.now();
        let quota = self.opts.cache_quota;
        self.lock()
            .cache_increment(ns, key, delta, ttl.map(millis_i64), quota, now)
    }

    async fn cache_usage(&self, ns: &str) -> Result<CacheUsage> {
        check_cache_key(ns, "-")?;
        Ok(self.lock().cache_usage(ns))
    }

    async fn publish_event(&self, event: NewEvent) -> Result<Event> {
        let now = self.now();
        Ok(self.lock().push_event(event, now))
    }

    async fn events_since(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        let after = after
            .map(super::event_ids::parse_numbered_event_id)
            .transpose()?
            .unwrap_or(0);
        Ok(self.lock().events_since(after, limit))
    }

    async fn latest_event_id(&self) -> Result<Option<String>> {
        Ok(self.lock().events.back().map(|e| e.id.clone()))
    }

    async fn wait_for_work(&self, timeout: Duration) {
        self.wakers.work.wait(timeout).await;
    }

    async fn wait_for_events(&self, timeout: Duration) {
        self.wakers.events.wait(timeout).await;
    }

    async fn ping(&self) -> Result<Duration> {
        let start = Instant::now();
        drop(self.lock());
        Ok(start.elapsed())
    }

    async fn info(&self) -> Result<BackendInfo> {
        let state = self.lock();
        let mut info = BackendInfo {
            backend: "memory".into(),
            ..BackendInfo::default()
        };
        info.details
            .insert("jobs".into(), state.jobs.len().to_string());
        info.details
            .insert("events".into(), state.events.len().to_string());
        info.warnings
            .push("memory storage: jobs are lost when the daemon stops".into());
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::SystemClock;

    #[tokio::test]
    async fn a_last_event_id_past_the_end_reads_nothing_instead_of_overflowing() {
        let s = MemoryStorage::new(StorageOptions::default(), Arc::new(SystemClock));
        let max = i64::MAX.to_string();
        let min = i64::MIN.to_string();
        assert!(s.events_since(Some(&max), 10).await.unwrap().is_empty());
        assert!(s.events_since(Some(&min), 10).await.is_ok());
        let bad = s.events_since(Some("nope"), 10).await.unwrap_err();
        assert!(
            matches!(bad, crate::storage::StorageError::InvalidInput(_)),
            "{bad}"
        );
    }
}
