//! The memory backend's data and its transitions. Every job change goes through `take` (which
//! drops the job from the indexes) and `put` (which files it again by its new state), so the
//! indexes cannot drift from the jobs.

use crate::job::{
    self, CancelAction, Job, JobState, LeaseToken, Millis, NewJob, Progress, new_lease_token,
};
use crate::storage::flow::{self, ClaimBatch, TypeControl};
use crate::storage::job_events;
use crate::storage::limits;
use crate::storage::transitions;
use crate::storage::{
    CacheQuota, CacheUsage, CancelOutcome, Claimed, Completion, Enqueued, Event, Failure,
    ImportEvents, LeaseStatus, NewEvent, Reaped, Result, RetentionPolicy, Settled, Stats,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

pub(super) struct Entry {
    pub(super) job: Job,
    /// The current lease while `running`.
    lease: Option<LeaseToken>,
}

#[derive(Default)]
pub(super) struct State {
    /// By id, which sorts by creation (UUIDv7): `list` walks it backwards.
    pub(super) jobs: BTreeMap<String, Entry>,
    /// `pending` jobs per type in claim order.
    ready: HashMap<String, BTreeSet<(u8, Millis, String)>>,
    /// `scheduled` and `retrying` jobs by `run_at`.
    due: BTreeSet<(Millis, String)>,
    /// `running` jobs by lease expiry.
    leases: BTreeSet<(Millis, String)>,
    /// Unique key -> id, for live jobs only.
    unique: HashMap<String, String>,
    /// Unique key -> id of the last finished job holding it with a `unique_for` window.
    unique_window: HashMap<String, String>,
    pub(super) events: VecDeque<Event>,
    pub(super) last_event_id: i64,
    cache: HashMap<(String, String), (String, Option<Millis>)>,
    /// Entries and bytes per cache namespace, kept with `cache`.
    cache_usage: HashMap<String, CacheUsage>,
    /// `running` jobs per type (global concurrency).
    running: HashMap<String, u64>,
    /// Flow control per type, only for types that have any set.
    pub(super) controls: BTreeMap<String, TypeControl>,
    /// Start times within the rate window, oldest first, per rate-limited type.
    starts: HashMap<String, VecDeque<Millis>>,
    /// Cron schedules by name.
    pub(super) schedules: BTreeMap<String, flow::ScheduleRecord>,
}

impl State {
    /// Removes a job and its index entries.
    pub(super) fn take(&mut self, id: &str) -> Option<Entry> {
        let entry = self.jobs.remove(id)?;
        let job = &entry.job;
        match job.status {
            JobState::Pending => {
                if let Some(set) = self.ready.get_mut(&job.job_type) {
                    set.remove(&(job.priority, job.run_at, job.id.clone()));
                    if set.is_empty() {
                        self.ready.remove(&job.job_type);
                    }
                }
            }
            JobState::Scheduled | JobState::Retrying => {
                self.due.remove(&(job.run_at, job.id.clone()));
            }
            JobState::Running => {
                self.leases
                    .remove(&(job.lease_expires_at.unwrap_or(Millis::MIN), job.id.clone()));
                if let Some(n) = self.running.get_mut(&job.job_type) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.running.remove(&job.job_type);
                    }
                }
            }
            _ => {}
        }
        if let Some(key) = &job.unique_key {
            if self.unique.get(key) == Some(&job.id) {
                self.unique.remove(key);
            }
            if self.unique_window.get(key) == Some(&job.id) {
                self.unique_window.remove(key);
            }
        }
        Some(entry)
    }

    /// Stores a job and files it in the indexes its state calls for.
    fn put(&mut self, entry: Entry) {
        let job = &entry.job;
        match job.status {
            JobState::Pending => {
                self.ready.entry(job.job_type.clone()).or_default().insert((
                    job.priority,
                    job.run_at,
                    job.id.clone(),
                ));
            }
            JobState::Scheduled | JobState::Retrying => {
                self.due.insert((job.run_at, job.id.clone()));
            }
            JobState::Running => {
                self.leases
                    .insert((job.lease_expires_at.unwrap_or(Millis::MIN), job.id.clone()));
                *self.running.entry(job.job_type.clone()).or_default() += 1;
            }
            _ => {}
        }
        if let Some(key) = &job.unique_key {
            if job.status.is_live() {
                self.unique.insert(key.clone(), job.id.clone());
            } else if job.unique_for_ms.is_some() && job.finished_at.is_some() {
                self.unique_window.insert(key.clone(), job.id.clone());
            }
        }
        self.jobs.insert(job.id.clone(), entry);
    }

    pub(super) fn push_event(&mut self, event: NewEvent, now: Millis) -> Event {
        self.last_event_id += 1;
        let event = Event {
            id: self.last_event_id.to_string(),
            kind: event.kind,
            job_id: event.job_id,
            job_type: event.job_type,
            at: now,
            data: event.data,
        };
        self.events.push_back(event.clone());
        event
    }

    fn live_holder(&self, unique_key: Option<&String>) -> Option<&Job> {
        let id = self.unique.get(unique_key?)?;
        self.jobs.get(id).map(|e| &e.job)
    }

    /// The job holding `unique_key` at `now`: a live one, or a finished one within its
    /// `unique_for` window.
    fn holder(&self, unique_key: Option<&String>, now: Millis) -> Option<&Job> {
        let key = unique_key?;
        if let Some(live) = self.live_holder(Some(key)) {
            return Some(live);
        }
        let job = &self.jobs.get(self.unique_window.get(key)?)?.job;
        let until = job.finished_at?.saturating_add(job.unique_for_ms? as i64);
        (until > now).then_some(job)
    }

    /// Enqueue one validated job: an existing id or a live unique key returns that job.
    pub(super) fn insert_new(&mut self, new: NewJob, now: Millis) -> Enqueued {
        if let Some(existing) = self.jobs.get(&new.id) {
            return Enqueued {
                job: existing.job.clone(),
                created: false,
            };
        }
        if let Some(holder) = self.holder(new.unique_key.as_ref(), now).cloned() {
            let waiting = matches!(holder.status, JobState::Pending | JobState::Scheduled);
            if let (Some(d), true) = (new.debounce_ms, waiting)
                && let Some(mut entry) = self.take(&holder.id)
            {
                transitions::debounce(&mut entry.job, new.payload, d, now);
                self.push_event(job_events::debounced(&entry.job), now);
                let job = entry.job.clone();
                self.put(entry);
                return Enqueued {
                    job,
                    created: false,
                };
            }
            return Enqueued {
                job: holder,
                created: false,
            };
        }
        let job = Job::from_new(new, now);
        self.push_event(job_events::created(&job), now);
        self.put(Entry {
            job: job.clone(),
            lease: None,
        });
        Enqueued { job, created: true }
    }

    /// Insert a job as given unless its id exists or its live unique key is taken.
    pub(super) fn import(&mut self, mut job: Job, events: ImportEvents, now: Millis) -> bool {
        if self.jobs.contains_key(&job.id) {
            return false;
        }
        if job.status.is_live() && self.live_holder(job.unique_key.as_ref()).is_some() {
            return false;
        }
        limits::normalize_imported(&mut job, now);
        if events == ImportEvents::Created {
            for e in job_events::announced(&job) {
                self.push_event(e, now);
            }
        }
        self.put(Entry { job, lease: None });
        true
    }

    /// How many jobs of `job_type` may start now, dropping starts that left the rate window.
    fn allowance(&mut self, job_type: &str, now: Millis) -> (u64, Option<Millis>) {
        let Some(control) = self.controls.get(job_type) else {
            return (u64::MAX, None);
        };
        let starts = self.starts.entry(job_type.to_string()).or_default();
        if let Some(rate) = control.rate() {
            while starts.front().is_some_and(|t| *t <= now - rate.window_ms()) {
                starts.pop_front();
            }
        } else {
            starts.clear();
        }
        let running = self.running.get(job_type).copied().unwrap_or(0);
        flow::allowance(control, running, starts.make_contiguous(), now)
    }

    pub(super) fn claim(
        &mut self,
        types: &[String],
        limit: usize,
        until: Millis,
        worker: &str,
        now: Millis,
    ) -> ClaimBatch {
        // The `limit` best of each type (at most what its flow control allows), then the
        // `limit` best of those.
        let mut blocked_until: Option<Millis> = None;
        let mut picked: Vec<(u8, Millis, String)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for t in types {
            if !seen.insert(t) || !self.ready.contains_key(t) {
                continue;
            }
            let (allow, reopen) = self.allowance(t, now);
            if let Some(at) = reopen {
                blocked_until = Some(blocked_until.map_or(at, |b| b.min(at)));
            }
            let take = usize::try_from(allow).unwrap_or(usize::MAX).min(limit);
            if let Some(set) = self.ready.get(t) {
                picked.extend(set.iter().take(take).cloned());
            }
        }
        picked.sort();
        picked.truncate(limit);
        let mut claimed = Vec::with_capacity(picked.len());
        for (_, _, id) in picked {
            let Some(mut entry) = self.take(&id) else {
                continue;
            };
            let token = new_lease_token();
            let job = &mut entry.job;
            job.status = JobState::Running;
            job.attempt += 1;
            job.started_at = Some(now);
            job.lease_expires_at = Some(until);
            job.cancel_requested = false;
            job.progress = None;
            entry.lease = Some(token.clone());
            if self
                .controls
                .get(&job.job_type)
                .is_some_and(|c| c.rate().is_some())
            {
                self.starts
                    .entry(job.job_type.clone())
                    .or_default()
                    .push_back(now);
            }
            self.push_event(job_events::started(&entry.job, worker), now);
            claimed.push(Claimed {
                job: entry.job.clone(),
                lease: token,
            });
            self.put(entry);
        }
        ClaimBatch::new(claimed, blocked_until, now)
    }

    /// Applies a flow-control change and writes its event; true when it changed anything.
    pub(super) fn control_type(
        &mut self,
        job_type: &str,
        change: &flow::ControlChange,
        now: Millis,
    ) -> (TypeControl, bool) {
        let before = self.controls.get(job_type).cloned().unwrap_or_default();
        let mut after = before.clone();
        after.apply(change, now);
        if let Some(event) = flow::change_event(job_type, &before, &after) {
            self.push_event(event, now);
        }
        if after.is_empty() {
            self.controls.remove(job_type);
            self.starts.remove(job_type);
        } else {
            self.controls.insert(job_type.to_string(), after.clone());
        }
        let changed = before != after;
        (after, changed)
    }

    fn take_leased(&mut self, id: &str, token: &LeaseToken) -> Option<Entry> {
        let entry = self.jobs.get(id)?;
        if entry.job.status != JobState::Running || entry.lease.as_ref() != Some(token) {
            return None;
        }
        self.take(id)
    }

    pub(super) fn renew(&mut self, id: &str, token: &LeaseToken, until: Millis) -> LeaseStatus {
        let Some(mut entry) = self.take_leased(id, token) else {
            return LeaseStatus::Lost;
        };
        entry.job.lease_expires_at = Some(until);
        let status = if entry.job.cancel_requested {
            LeaseStatus::CancelRequested
        } else {
            LeaseStatus::Held
        };
        self.put(entry);
        status
    }

    pub(super) fn set_progress(
        &mut self,
        id: &str,
        token: &LeaseToken,
        percent: u8,
        message: Option<String>,
        now: Millis,
    ) -> bool {
        let Some(entry) = self.jobs.get_mut(id) else {
            return false;
        };
        if entry.job.status != JobState::Running || entry.lease.as_ref() != Some(token) {
            return false;
        }
        entry.job.progress = Some(Progress {
            percent,
            message: message.clone(),
        });
        let job = &entry.job;
        let event = job_events::progress(
            &job.id,
            &job.job_type,
            job.attempt,
            percent,
            message.as_deref(),
        );
        self.push_event(event, now);
        true
    }

    /// Ends an attempt: clears the lease, files the job and writes its event.
    fn end_attempt(&mut self, mut entry: Entry, now: Millis, lease_expired: bool) {
        entry.lease = None;
        let job = &mut entry.job;
        job.lease_expires_at = None;
        if job.status.is_finished() {
            job.finished_at = Some(now);
        }
        if let Some(event) = job_events::attempt_ended(&entry.job, lease_expired) {
            self.push_event(event, now);
        }
        self.put(entry);
    }

    /// Returns the outcome and whether a follow-up job was created.
    pub(super) fn complete(&mut self, done: Completion, now: Millis) -> (Settled, bool) {
        let Some(mut entry) = self.take_leased(&done.id, &done.lease) else {
            return (Settled::LeaseLost, false);
        };
        let job = &mut entry.job;
        job.status = JobState::Completed;
        job.result = Some(done.result);
        job.logs = job::trim_logs(done.logs);
        job.plugin_version = done.plugin_version;
        self.end_attempt(entry, now, false);
        let mut created = false;
        for followup in done.followups {
            created |= self.insert_new(followup, now).created;
        }
        (Settled::Moved(JobState::Completed), created)
    }

    pub(super) fn fail(&mut self, failed: Failure, now: Millis) -> Settled {
        let Some(mut entry) = self.take_leased(&failed.id, &failed.lease) else {
            return Settled::LeaseLost;
        };
        transitions::apply_failure(&mut entry.job, failed, now);
        let status = entry.job.status;
        self.end_attempt(entry, now, false);
        Settled::Moved(status)
    }

    pub(super) fn release(&mut self, id: &str, token: &LeaseToken, now: Millis) -> bool {
        let Some(mut entry) = self.take_leased(id, token) else {
            return false;
        };
        transitions::apply_release(&mut entry.job);
        self.end_attempt(entry, now, false);
        true
    }

    pub(super) fn cancel(&mut self, id: &str, now: Millis) -> CancelOutcome {
        let Some(mut entry) = self.take(id) else {
            return CancelOutcome::NotFound;
        };
        let job = &mut entry.job;
        let outcome = match job::cancel_action(job.status) {
            CancelAction::CancelNow => {
                job.status = JobState::Cancelled;
                job.finished_at = Some(now);
                self.push_event(job_events::cancelled(&entry.job), now);
                CancelOutcome::Cancelled(entry.job.clone())
            }
            CancelAction::RequestStop => {
                job.cancel_requested = true;
                CancelOutcome::Requested(entry.job.clone())
            }
            CancelAction::AlreadyFinished => CancelOutcome::AlreadyFinished(entry.job.clone()),
        };
        self.put(entry);
        outcome
    }

    pub(super) fn replay(&mut self, id: &str, now: Millis) -> Result<Option<Job>> {
        let Some(entry) = self.jobs.get(id) else {
            return Ok(None);
        };
        job::check_replay(&entry.job)?;
        if let Some(holder) = self.live_holder(entry.job.unique_key.as_ref()) {
            return Err(limits::replay_conflict(id, &holder.id));
        }
        let Some(mut entry) = self.take(id) else {
            return Ok(None);
        };
        let job = &mut entry.job;
        job.status = JobState::Pending;
        job.attempt = 0;
        job.run_at = now;
        job.started_at = None;
        job.finished_at = None;
        job.result = None;
        job.progress = None;
        job.cancel_requested = false;
        job.lease_expires_at = None;
        self.push_event(job_events::replayed(&entry.job), now);
        let job = entry.job.clone();
        self.put(entry);
        Ok(Some(job))
    }

    pub(super) fn promote_due(&mut self, now: Millis) -> u64 {
        let due: Vec<String> = self
            .due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| id.clone())
            .collect();
        for id in &due {
            if let Some(mut entry) = self.take(id) {
                entry.job.status = JobState::Pending;
                self.put(entry);
            }
        }
        due.len() as u64
    }

    pub(super) fn reap_expired(&mut self, now: Millis) -> Reaped {
        let expired: Vec<String> = self
            .leases
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| id.clone())
            .collect();
        let mut reaped = Reaped::default();
        for id in expired {
            let Some(mut entry) = self.take(&id) else {
                continue;
            };
            transitions::apply_lease_expiry(&mut entry.job, now);
            match entry.job.status {
                JobState::Pending => reaped.requeued += 1,
                JobState::Failed => reaped.failed += 1,
                _ => {}
            }
            self.end_attempt(entry, now, true);
        }
        reaped
    }

    pub(super) fn sweep_retention(&mut self, policy: &RetentionPolicy, now: Millis) -> u64 {
        // Finished jobs per (type, state), newest first.
        let mut groups: BTreeMap<(String, JobState), Vec<(Millis, String)>> = BTreeMap::new();
        for entry in self.jobs.values() {
            let job = &entry.job;
            if job.status.is_finished() {
                groups
                    .entry((job.job_type.clone(), job.status))
                    .or_default()
                    .push((job.finished_at.unwrap_or(job.created_at), job.id.clone()));
            }
        }
        let mut doomed = Vec::new();
        for ((job_type, status), mut jobs) in groups {
            let rule = policy.rule_for(&job_type, status);
            jobs.sort_by(|a, b| b.cmp(a));
            for (rank, (finished_at, id)) in jobs.into_iter().enumerate() {
                let too_old = rule
                    .max_age
                    .is_some_and(|age| finished_at <= now.saturating_sub(job::millis_i64(age)));
                let too_many = rule.max_count.is_some_and(|max| rank as u64 >= max);
                if too_old || too_many {
                    doomed.push(id);
                }
            }
        }
        for id in &doomed {
            self.take(id);
        }
        doomed.len() as u64
    }

    pub(super) fn trim_events(&mut self, max_events: u64) {
        let max = usize::try_from(max_events).unwrap_or(usize::MAX);
        while self.events.len() > max {
            self.events.pop_front();
        }
    }

    pub(super) fn events_since(&self, after: i64, limit: usize) -> Vec<Event> {
        // Ids are consecutive, so the first one after `after` is found by arithmetic.
        let first_id = self
            .events
            .front()
            .map_or(0, |e| e.id.parse::<i64>().unwrap_or(0));
        // Saturating: a client's id may be anything up to i64::MAX (or below zero).
        let skip = usize::try_from(after.saturating_add(1).saturating_sub(first_id).max(0))
            .unwrap_or(usize::MAX);
        self.events.iter().skip(skip).take(limit).cloned().collect()
    }

    pub(super) fn stats(&self, now: Millis) -> Stats {
        let mut stats = Stats::default();
        for entry in self.jobs.values() {
            let job = &entry.job;
            let ts = stats.types.entry(job.job_type.clone()).or_default();
            *ts.counts.entry(job.status).or_default() += 1;
            if job.status == JobState::Pending {
                let age = u64::try_from(now - job.run_at).unwrap_or(0);
                ts.oldest_pending_age_ms = Some(ts.oldest_pending_age_ms.unwrap_or(0).max(age));
            }
        }
        stats
    }

    fn cache_entry(&self, ns: &str, key: &str, now: Millis) -> Option<&String> {
        let (value, expires) = self.cache.get(&(ns.to_owned(), key.to_owned()))?;
        if expires.is_some_and(|at| at <= now) {
            None
        } else {
            Some(value)
        }
    }

    pub(super) fn cache_get(&self, ns: &str, key: &str, now: Millis) -> Option<String> {
        self.cache_entry(ns, key, now).cloned()
    }

    /// Writes an entry unless that takes its namespace past `quota`.
    pub(super) fn cache_set(
        &mut self,
        ns: &str,
        key: &str,
        value: String,
        expires: Option<Millis>,
        quota: CacheQuota,
        now: Millis,
    ) -> Result<()> {
        let id = (ns.to_owned(), key.to_owned());
        if self
            .cache
            .get(&id)
            .is_some_and(|(_, e)| e.is_some_and(|at| at <= now))
        {
            self.cache_remove(&id);
        }
        let next = |state: &State| {
            let before = state.cache_usage.get(ns).copied().unwrap_or_default();
            let old = state.cache.get(&id).map(|(v, _)| entry_bytes(key, v));
            let after = CacheUsage {
                entries: before.entries + u64::from(old.is_none()),
                bytes: before.bytes - old.unwrap_or(0) + entry_bytes(key, &value),
            };
            (before, after)
        };
        let (mut before, mut after) = next(self);
        if limits::check_cache_quota(ns, before, after, quota).is_err() {
            self.purge_expired_cache(now);
            (before, after) = next(self);
            limits::check_cache_quota(ns, before, after, quota)?;
        }
        self.cache.insert(id, (value, expires));
        self.cache_usage.insert(ns.to_owned(), after);
        Ok(())
    }

    /// Removes an entry and its share of the namespace's usage.
    fn cache_remove(&mut self, id: &(String, String)) {
        if let Some((value, _)) = self.cache.remove(id)
            && let Some(u) = self.cache_usage.get_mut(&id.0)
        {
            u.entries -= 1;
            u.bytes -= entry_bytes(&id.1, &value);
        }
    }

    pub(super) fn cache_usage(&self, ns: &str) -> CacheUsage {
        self.cache_usage.get(ns).copied().unwrap_or_default()
    }

    pub(super) fn cache_delete(&mut self, ns: &str, key: &str, now: Millis) -> bool {
        let live = self.cache_entry(ns, key, now).is_some();
        self.cache_remove(&(ns.to_owned(), key.to_owned()));
        live
    }

    pub(super) fn cache_increment(
        &mut self,
        ns: &str,
        key: &str,
        delta: i64,
        ttl: Option<Millis>,
        quota: CacheQuota,
        now: Millis,
    ) -> Result<i64> {
        let (current, expires) = match self.cache_entry(ns, key, now) {
            Some(text) => {
                let n = text
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| limits::not_an_integer(ns, key))?;
                let expires = self.cache[&(ns.to_owned(), key.to_owned())].1;
                (n, expires)
            }
            None => (0, ttl.map(|t| now.saturating_add(t))),
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| limits::increment_overflow(ns, key))?;
        self.cache_set(ns, key, next.to_string(), expires, quota, now)?;
        Ok(next)
    }

    pub(super) fn purge_expired_cache(&mut self, now: Millis) {
        let expired: Vec<(String, String)> = self
            .cache
            .iter()
            .filter(|(_, (_, expires))| expires.is_some_and(|at| at <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.cache_remove(id);
        }
    }
}

/// What an entry counts against its namespace's quota: key and value bytes.
fn entry_bytes(key: &str, value: &str) -> u64 {
    (key.len() + value.len()) as u64
}
