//! The `Storage` trait on Redis: each method validates its input (the same checks as every
//! backend, `storage::limits`), runs one script (or a plain single-key command) and reads
//! the reply. Maintenance methods loop over bounded script calls.

use super::codec::{self, as_array, as_int, as_string, job_from_value, required_job};
use super::health::server_warnings;
use super::{BATCH, IMPORT_BATCH, MAX_CLAIM, RedisStorage, SWEEP_BUDGET, keys, scripts};
use crate::job::{self, Job, JobState, LeaseToken, Millis, NewJob, millis_i64};
use crate::storage::flow::{
    self, ClaimBatch, ControlChange, Schedule, ScheduleRecord, TypeControl,
};
use crate::storage::limits::{self, check_cache_key, check_cache_value};
use crate::storage::{
    BackendInfo, CacheKey, CacheUsage, CancelOutcome, Capabilities, ClaimRequest, Completion,
    Enqueued, Event, Failure, ImportEvents, JobPage, LeaseStatus, ListFilter, NewEvent, Reaped,
    Result, RetentionPolicy, Settled, Stats, Storage, StorageError, TypeStats,
};
use async_trait::async_trait;
use redis::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn lease_pairs(leases: &[(String, LeaseToken)]) -> Vec<&str> {
    leases
        .iter()
        .flat_map(|(id, t)| [id.as_str(), t.0.as_str()])
        .collect()
}

/// Compare-and-set rounds `control_type` tries before giving up.
const CONTROL_TRIES: usize = 20;

fn schedule_record(
    name: &str,
    text: &str,
    last_tick: Option<Millis>,
    created_at: Millis,
) -> Result<ScheduleRecord> {
    Ok(ScheduleRecord {
        schedule: flow::decode_schedule(name, text)?,
        last_tick,
        created_at,
    })
}

/// Stream entries asked for per XRANGE by `events_since`.
const ENTRIES_PER_READ: usize = 16;

#[async_trait]
impl Storage for RedisStorage {
    fn backend(&self) -> &'static str {
        "redis"
    }

    /// Redis multiplexes requests on one connection: many reads in flight cost little.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            shared: true,
            parallel_reads: 128,
        }
    }

    async fn enqueue_batch(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        limits::check_new_jobs(&jobs, self.opts.max_payload_bytes)?;
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.job_script(&scripts::ENQUEUE);
        inv.arg(jobs.len());
        for j in &jobs {
            inv.arg(&codec::new_job_args(j)[..]);
        }
        let mut reply = as_array(self.run(&inv).await?, "enqueue")?.into_iter();
        if reply.len() != jobs.len() + 1 {
            return Err(StorageError::Internal(format!(
                "redis answered {} of {} enqueued jobs",
                reply.len().saturating_sub(1),
                jobs.len()
            )));
        }
        // The script wrote exactly what from_new builds, at this time.
        let now = reply
            .next()
            .map(|v| as_int(&v, "enqueue time"))
            .transpose()?
            .unwrap_or_default();
        let mut out = Vec::with_capacity(jobs.len());
        for (item, new) in reply.zip(jobs) {
            out.push(match item {
                Value::Int(1) => Enqueued {
                    created: true,
                    job: Job::from_new(new, now),
                },
                existing => Enqueued {
                    created: false,
                    job: required_job(existing, "enqueue")?,
                },
            });
        }
        if out.iter().any(|e| e.created) {
            self.signal.signal();
        }
        Ok(out)
    }

    async fn import_jobs(&self, mut jobs: Vec<Job>, events: ImportEvents) -> Result<u64> {
        limits::check_imported(&jobs)?;
        // The shared rules; the lease of a running job is clamped to Redis's own time by
        // import.lua, so no host time caps it here.
        for job in &mut jobs {
            limits::normalize_imported(job, Millis::MAX);
        }
        let mut inserted = 0;
        for chunk in jobs.chunks(IMPORT_BATCH) {
            let mut inv = self.job_script(&scripts::IMPORT);
            inv.arg(u8::from(events == ImportEvents::Created));
            for job in chunk {
                let fields = codec::job_to_fields(job);
                inv.arg(fields.len());
                for (k, v) in fields {
                    inv.arg(k).arg(v);
                }
            }
            inserted += as_int(&self.run(&inv).await?, "import")? as u64;
        }
        if inserted > 0 {
            self.signal.signal();
        }
        Ok(inserted)
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        let v: Value = self
            .query(redis::cmd("HGETALL").arg(self.keys.job(id)))
            .await?;
        job_from_value(v)
    }

    async fn list(&self, filter: ListFilter) -> Result<JobPage> {
        let limit = limits::list_limit(filter.limit);
        let index = self
            .keys
            .list_index(filter.status, filter.job_type.as_deref());
        let mut inv = self.job_script(&scripts::LIST);
        inv.arg(index)
            .arg(filter.cursor.as_deref().unwrap_or(""))
            .arg(limit)
            .arg(filter.status.map(keys::state_name).unwrap_or(""))
            .arg(filter.job_type.as_deref().unwrap_or(""));
        let mut items = as_array(self.read(&inv).await?, "list")?.into_iter();
        let more = items.next().map(|v| as_int(&v, "list")).transpose()? == Some(1);
        let jobs = items
            .map(|v| required_job(v, "list"))
            .collect::<Result<Vec<_>>>()?;
        let next_cursor = if more {
            jobs.last().map(|j| j.id.clone())
        } else {
            None
        };
        Ok(JobPage { jobs, next_cursor })
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        let mut inv = self.job_script(&scripts::DELETE);
        inv.arg(id);
        Ok(as_int(&self.run(&inv).await?, "delete")? == 1)
    }

    async fn claim_ready(&self, req: ClaimRequest) -> Result<ClaimBatch> {
        // claim.lua counts a type named twice once.
        let types = &req.types;
        let limit = req.limit.min(MAX_CLAIM);
        if types.is_empty() || limit == 0 {
            return Ok(ClaimBatch::default());
        }
        let mut inv = self.job_script(&scripts::CLAIM);
        inv.arg(millis_i64(req.lease))
            .arg(&req.worker)
            .arg(limit)
            .arg(types.len())
            .arg(&types[..]);
        let nonce = job::new_lease_token().0;
        inv.arg(&nonce);
        let mut reply = as_array(self.run(&inv).await?, "claim")?.into_iter();
        let (Some(ids), Some(blocked)) = (reply.next(), reply.next()) else {
            return Err(StorageError::Internal(
                "short claim reply from redis".into(),
            ));
        };
        let blocked = as_string(&blocked, "claim's reopen time")?;
        let reopens_in = if blocked.is_empty() {
            None
        } else {
            Some(Duration::from_millis(blocked.parse::<u64>().map_err(
                |_| StorageError::Internal(format!("redis answered a bad reopen time {blocked:?}")),
            )?))
        };
        let ids = as_array(ids, "claimed ids")?
            .iter()
            .map(|v| as_string(v, "claimed id"))
            .collect::<Result<Vec<_>>>()?;
        if ids.is_empty() {
            return Ok(ClaimBatch {
                jobs: Vec::new(),
                reopens_in,
            });
        }
        // The script leased the jobs; read them now, in one round trip (retried: the read
        // changes nothing). Should it keep failing, the leases go back at once, without an
        // attempt counted, rather than wait for the reaper (which would count one).
        let token = |k: usize| format!("{nonce}-{k}");
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(self.keys.job(id));
        }
        let mut tries = 0;
        let hashes: Vec<Value> = loop {
            match self.query_pipe(&pipe).await {
                Ok(h) => break h,
                Err(e) if tries < 2 => {
                    tries += 1;
                    tracing::debug!(error = %e, "reading claimed jobs failed; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => {
                    let leases: Vec<(String, LeaseToken)> = ids
                        .iter()
                        .zip(1..)
                        .map(|(id, k)| (id.clone(), LeaseToken(token(k))))
                        .collect();
                    if let Err(re) = self.release(&leases).await {
                        tracing::warn!(error = %re, jobs = leases.len(),
                            "cannot give back claimed jobs that could not be read; they \
                             return when their leases expire");
                    }
                    return Err(e);
                }
            }
        };
        let mut out = Vec::with_capacity(ids.len());
        for (v, k) in hashes.into_iter().zip(1..) {
            let token = token(k);
            // Gone (deleted) or leased anew since (a lease shorter than this round trip):
            // not ours any more.
            if let Some(c) = self.claimed_from(v)?
                && c.lease.0 == token
            {
                out.push(c);
            }
        }
        Ok(ClaimBatch {
            jobs: out,
            reopens_in,
        })
    }

    async fn type_controls(&self) -> Result<BTreeMap<String, TypeControl>> {
        let all: BTreeMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(self.keys.controls()))
            .await?;
        all.into_iter()
            .map(|(t, text)| {
                let control = flow::decode_control(&t, &text)?;
                Ok((t, control))
            })
            .collect()
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>> {
        let [spec, tick, created] = self.keys.schedules();
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(spec);
        pipe.cmd("HGETALL").arg(tick);
        pipe.cmd("HGETALL").arg(created);
        let (specs, ticks, createds): (
            BTreeMap<String, String>,
            BTreeMap<String, i64>,
            BTreeMap<String, i64>,
        ) = self.query_pipe(&pipe).await?;
        specs
            .into_iter()
            .map(|(name, text)| {
                schedule_record(
                    &name,
                    &text,
                    ticks.get(&name).copied(),
                    createds.get(&name).copied().unwrap_or(0),
                )
            })
            .collect()
    }

    async fn put_schedule(&self, schedule: Schedule) -> Result<ScheduleRecord> {
        flow::check_schedule(&schedule, self.opts.max_payload_bytes)?;
        let spec =
            serde_json::to_string(&schedule).map_err(|e| StorageError::Internal(e.to_string()))?;
        let mut inv = self.job_script(&scripts::SCHEDULE);
        inv.arg("put").arg(&schedule.name).arg(&spec);
        let reply = as_array(self.run(&inv).await?, "schedule")?;
        let [_, tick, created] = reply.as_slice() else {
            return Err(StorageError::Internal(
                "short schedule reply from redis".into(),
            ));
        };
        let tick = as_string(tick, "schedule tick")?;
        let tick = if tick.is_empty() {
            None
        } else {
            Some(as_int(
                &Value::BulkString(tick.into_bytes()),
                "schedule tick",
            )?)
        };
        Ok(ScheduleRecord {
            schedule,
            last_tick: tick,
            created_at: as_int(created, "schedule creation time")?,
        })
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool> {
        let mut inv = self.job_script(&scripts::SCHEDULE);
        inv.arg("delete").arg(name);
        Ok(as_int(&self.run(&inv).await?, "schedule delete")? == 1)
    }

    async fn advance_schedule(&self, name: &str, from: Option<Millis>, to: Millis) -> Result<bool> {
        let mut inv = self.job_script(&scripts::SCHEDULE);
        inv.arg("advance")
            .arg(name)
            .arg(from.map(|t| t.to_string()).unwrap_or_default())
            .arg(to);
        Ok(as_int(&self.run(&inv).await?, "schedule advance")? == 1)
    }

    async fn control_type(&self, job_type: &str, change: ControlChange) -> Result<TypeControl> {
        flow::check_change(job_type, &change)?;
        // Compare and set: another daemon may change the same type between our read and
        // write; the script refuses then and we apply the change to what it wrote.
        for _ in 0..CONTROL_TRIES {
            let read: Option<String> = self
                .query(redis::cmd("HGET").arg(self.keys.controls()).arg(job_type))
                .await?;
            let before = match &read {
                Some(text) => flow::decode_control(job_type, text)?,
                None => TypeControl::default(),
            };
            let mut after = before.clone();
            after.apply(&change, self.clock.now_ms());
            if after == before {
                return Ok(after);
            }
            let new_text = if after.is_empty() {
                String::new()
            } else {
                serde_json::to_string(&after).map_err(|e| StorageError::Internal(e.to_string()))?
            };
            let opt = |v: Option<String>| v.unwrap_or_default();
            let rate = after.rate();
            let (kind, data) = match flow::TypeControl::event_for(&before, &after) {
                Some((k, d)) => (k.to_string(), d.to_string()),
                None => (String::new(), String::new()),
            };
            let mut inv = self.job_script(&scripts::CTL);
            inv.arg(job_type)
                .arg(read.unwrap_or_default())
                .arg(new_text)
                .arg(if after.paused { "1" } else { "" })
                .arg(opt(after.held_until.map(|t| t.to_string())))
                .arg(opt(rate.map(|r| r.count.to_string())))
                .arg(opt(rate.map(|r| r.window_ms().to_string())))
                .arg(opt(after.concurrency().map(|c| c.to_string())))
                .arg(kind)
                .arg(data);
            if as_int(&self.run(&inv).await?, "control")? == 1 {
                return Ok(after);
            }
        }
        Err(StorageError::Unavailable(format!(
            "the flow control of type `{job_type}` kept changing under us ({CONTROL_TRIES}              tries); try again"
        )))
    }

    async fn renew_leases(
        &self,
        leases: &[(String, LeaseToken)],
        lease: Duration,
    ) -> Result<Vec<LeaseStatus>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.job_script(&scripts::RENEW);
        inv.arg(millis_i64(lease)).arg(lease_pairs(leases));
        as_array(self.run(&inv).await?, "renew")?
            .iter()
            .map(|v| {
                Ok(match as_int(v, "renew")? {
                    1 => LeaseStatus::Held,
                    2 => LeaseStatus::CancelRequested,
                    _ => LeaseStatus::Lost,
                })
            })
            .collect()
    }

    async fn set_progress(
        &self,
        id: &str,
        lease: &LeaseToken,
        progress: crate::job::Progress,
    ) -> Result<bool> {
        let crate::job::Progress { percent, message } = progress;
        let percent = percent.min(100);
        let progress = codec::json(&job::Progress {
            percent,
            message: message.clone(),
        });
        let mut inv = self.job_script(&scripts::PROGRESS);
        inv.arg(id)
            .arg(&lease.0)
            .arg(progress)
            .arg(percent)
            .arg(message.as_deref().unwrap_or(""))
            .arg(if message.is_some() { "1" } else { "0" });
        Ok(as_int(&self.run(&inv).await?, "progress")? == 1)
    }

    async fn complete(&self, done: Vec<Completion>) -> Result<Vec<Settled>> {
        limits::check_followups(&done, self.opts.max_payload_bytes)?;
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let has_followups = done.iter().any(|c| !c.followups.is_empty());
        let mut inv = self.job_script(&scripts::COMPLETE);
        inv.arg(done.len());
        for c in done {
            inv.arg(c.id)
                .arg(c.lease.0)
                .arg(c.result.get())
                .arg(codec::json(&job::trim_logs(c.logs)))
                .arg(c.plugin_version.unwrap_or_default())
                .arg(c.followups.len());
            for f in &c.followups {
                inv.arg(&codec::new_job_args(f)[..]);
            }
        }
        let codes = as_array(self.run(&inv).await?, "complete")?;
        if has_followups {
            self.signal.signal();
        }
        codes
            .iter()
            .map(|v| {
                Ok(match as_int(v, "complete")? {
                    1 => Settled::Moved(JobState::Completed),
                    _ => Settled::LeaseLost,
                })
            })
            .collect()
    }

    async fn fail(&self, failed: Vec<Failure>) -> Result<Vec<Settled>> {
        if failed.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.job_script(&scripts::FAIL);
        inv.arg(failed.len());
        for f in failed {
            inv.arg(f.id)
                .arg(f.lease.0)
                .arg(f.error)
                .arg(f.retry_at.map(|t| t.to_string()).unwrap_or_default())
                .arg(codec::json(&job::trim_logs(f.logs)))
                .arg(f.plugin_version.unwrap_or_default());
        }
        as_array(self.run(&inv).await?, "fail")?
            .iter()
            .map(|v| {
                Ok(match as_int(v, "fail")? {
                    1 => Settled::Moved(JobState::Retrying),
                    2 => Settled::Moved(JobState::Failed),
                    3 => Settled::Moved(JobState::Cancelled),
                    _ => Settled::LeaseLost,
                })
            })
            .collect()
    }

    async fn release(&self, leases: &[(String, LeaseToken)]) -> Result<u64> {
        if leases.is_empty() {
            return Ok(0);
        }
        let mut inv = self.job_script(&scripts::RELEASE);
        inv.arg(lease_pairs(leases));
        let released = as_int(&self.run(&inv).await?, "release")? as u64;
        if released > 0 {
            self.signal.signal();
        }
        Ok(released)
    }

    async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        let mut inv = self.job_script(&scripts::CANCEL);
        inv.arg(id);
        let mut it = as_array(self.run(&inv).await?, "cancel")?.into_iter();
        let code = it
            .next()
            .map(|v| as_int(&v, "cancel"))
            .transpose()?
            .unwrap_or(0);
        let job = it.next().map(job_from_value).transpose()?.flatten();
        Ok(match (code, job) {
            (1, Some(j)) => CancelOutcome::Cancelled(j),
            (2, Some(j)) => CancelOutcome::Requested(j),
            (3, Some(j)) => CancelOutcome::AlreadyFinished(j),
            _ => CancelOutcome::NotFound,
        })
    }

    async fn replay(&self, id: &str) -> Result<Option<Job>> {
        let mut inv = self.job_script(&scripts::REPLAY);
        inv.arg(id);
        let mut it = as_array(self.run(&inv).await?, "replay")?.into_iter();
        let code = it
            .next()
            .map(|v| as_int(&v, "replay"))
            .transpose()?
            .unwrap_or(0);
        let rest = it.next().unwrap_or(Value::Nil);
        match code {
            1 => {
                self.signal.signal();
                Ok(Some(required_job(rest, "replay")?))
            }
            2 => {
                let job = required_job(rest, "replay")?;
                job::check_replay(&job)?;
                Err(StorageError::Internal(format!(
                    "redis refused to replay job `{id}`"
                )))
            }
            3 => Err(limits::replay_conflict(id, &as_string(&rest, "replay")?)),
            _ => Ok(None),
        }
    }

    async fn promote_due(&self) -> Result<u64> {
        let promoted = self
            .run_batches(&scripts::PROMOTE, &[], u64::MAX, |v| {
                let n = as_int(&v, "promote")? as u64;
                Ok((n, n >= BATCH as u64))
            })
            .await?;
        if promoted > 0 {
            self.signal.signal();
        }
        Ok(promoted)
    }

    async fn reap_expired(&self) -> Result<Reaped> {
        let mut reaped = Reaped::default();
        let extra = [self.lease_error.0.clone(), self.lease_error.1.clone()];
        self.run_batches(&scripts::REAP, &extra, u64::MAX, |v| {
            let r = as_array(v, "reap")?;
            let n = |i: usize| {
                r.get(i)
                    .map(|v| as_int(v, "reap"))
                    .transpose()
                    .map(|n| n.unwrap_or(0) as u64)
            };
            reaped.requeued += n(0)?;
            reaped.failed += n(1)?;
            let scanned = n(2)?;
            Ok((scanned, scanned >= BATCH as u64))
        })
        .await?;
        if reaped.requeued > 0 {
            self.signal.signal();
        }
        Ok(reaped)
    }

    async fn sweep_retention(&self, policy: &RetentionPolicy) -> Result<u64> {
        self.drop_legacy_indexes_once().await;
        let mut types: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.types()))
            .await?;
        types.sort();
        let mut deleted = 0u64;
        'types: for t in &types {
            for state in [JobState::Completed, JobState::Failed, JobState::Cancelled] {
                let rule = policy.rule_for(t, state);
                let age = rule
                    .max_age
                    .map(|a| millis_i64(a).to_string())
                    .unwrap_or_default();
                let count = rule.max_count.map(|c| c.to_string()).unwrap_or_default();
                let extra = [t.clone(), keys::state_name(state).to_owned(), age, count];
                deleted += self
                    .run_batches(&scripts::SWEEP, &extra, SWEEP_BUDGET - deleted, |v| {
                        let n = as_int(&v, "sweep")? as u64;
                        Ok((n, n >= BATCH as u64))
                    })
                    .await?;
                if deleted >= SWEEP_BUDGET {
                    break 'types;
                }
            }
        }
        // The scripts keep the log to `max_events` events (lua/lib.lua write_events); an
        // entry holds at least one event, so this trim never cuts below that and bounds the
        // log even if the scripts' marks were lost.
        let _: i64 = self
            .query(
                redis::cmd("XTRIM")
                    .arg(self.keys.events())
                    .arg("MAXLEN")
                    .arg(self.opts.max_events),
            )
            .await?;
        self.purge_local_cache().await?;
        Ok(deleted)
    }

    async fn stats(&self) -> Result<Stats> {
        let inv = self.job_script(&scripts::STATS);
        let mut stats = Stats::default();
        for item in as_array(self.read(&inv).await?, "stats")? {
            let mut it = as_array(item, "stats item")?.into_iter();
            let (Some(t), Some(counts), Some(oldest)) = (it.next(), it.next(), it.next()) else {
                return Err(StorageError::Internal(
                    "short stats reply from redis".into(),
                ));
            };
            let mut ts = TypeStats::default();
            for (state, n) in codec::STATES.iter().zip(as_array(counts, "stats counts")?) {
                let n = as_int(&n, "stats count")?;
                if n > 0 {
                    ts.counts.insert(*state, n as u64);
                }
            }
            let oldest = as_int(&oldest, "stats oldest")?;
            ts.oldest_pending_age_ms = u64::try_from(oldest).ok();
            stats.types.insert(as_string(&t, "stats type")?, ts);
        }
        Ok(stats)
    }

    async fn cache_get(&self, key: CacheKey<'_>) -> Result<Option<String>> {
        let CacheKey { ns, key } = key;
        check_cache_key(ns, key)?;
        let inv = self.cache_script(&scripts::CACHE_GET, ns, key);
        match self.read(&inv).await? {
            Value::Nil => Ok(None),
            v => as_string(&v, "cache get").map(Some),
        }
    }

    async fn cache_set(&self, key: CacheKey<'_>, value: &str, ttl: Option<Duration>) -> Result<()> {
        let CacheKey { ns, key } = key;
        check_cache_key(ns, key)?;
        check_cache_value(value, self.opts.max_payload_bytes)?;
        let mut inv = self.cache_script(&scripts::CACHE_SET, ns, key);
        inv.arg(value).arg(
            ttl.map(|t| millis_i64(t).max(1).to_string())
                .unwrap_or_default(),
        );
        let mut conn = self.conn.clone();
        match inv.invoke_async::<Value>(&mut conn).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.cache_error(ns, key, e)),
        }
    }

    async fn cache_delete(&self, key: CacheKey<'_>) -> Result<bool> {
        let CacheKey { ns, key } = key;
        check_cache_key(ns, key)?;
        let inv = self.cache_script(&scripts::CACHE_DELETE, ns, key);
        Ok(as_int(&self.read(&inv).await?, "cache delete")? == 1)
    }

    async fn cache_increment(
        &self,
        key: CacheKey<'_>,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64> {
        let CacheKey { ns, key } = key;
        check_cache_key(ns, key)?;
        let mut inv = self.cache_script(&scripts::CACHE_INCR, ns, key);
        inv.arg(delta)
            .arg(ttl.map(|t| millis_i64(t).to_string()).unwrap_or_default());
        let mut conn = self.conn.clone();
        inv.invoke_async::<i64>(&mut conn)
            .await
            .map_err(|e| self.cache_error(ns, key, e))
    }

    async fn cache_usage(&self, ns: &str) -> Result<CacheUsage> {
        check_cache_key(ns, "-")?;
        let inv = self.cache_script(&scripts::CACHE_USAGE, ns, "-");
        let r = as_array(self.read(&inv).await?, "cache usage")?;
        let field = |i: usize| {
            r.get(i)
                .map(|v| as_int(v, "cache usage"))
                .transpose()
                .map(|n| n.unwrap_or(0).max(0) as u64)
        };
        Ok(CacheUsage {
            entries: field(0)?,
            bytes: field(1)?,
        })
    }

    async fn publish_event(&self, event: NewEvent) -> Result<Event> {
        let data = codec::json(&event.data);
        let mut inv = self.job_script(&scripts::EVENT);
        inv.arg(&event.kind)
            .arg(event.job_id.as_deref().unwrap_or(""))
            .arg(event.job_type.as_deref().unwrap_or(""))
            .arg(data);
        let r = as_array(self.run(&inv).await?, "event")?;
        let (Some(id), Some(at)) = (r.first(), r.get(1)) else {
            return Err(StorageError::Internal(
                "short event reply from redis".into(),
            ));
        };
        Ok(Event {
            id: as_string(id, "event id")?,
            kind: event.kind,
            job_id: event.job_id,
            job_type: event.job_type,
            at: as_int(at, "event time")?,
            data: event.data,
        })
    }

    async fn events_since(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (mut start, after) = match after {
            None => ("-".to_owned(), None),
            Some(a) => {
                let (entry, at) = codec::resume_point(a)?;
                (entry, Some(at))
            }
        };
        // An entry holds up to EVENTS_PER_ENTRY events: read a few entries at a time, so a
        // small page never makes Redis send a large part of the log.
        let count = limit.clamp(1, ENTRIES_PER_READ);
        let mut out = Vec::with_capacity(limit);
        loop {
            let mut cmd = redis::cmd("XRANGE");
            cmd.arg(self.keys.events())
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(count);
            let entries = as_array(self.query::<Value>(&cmd).await?, "events")?;
            let full = entries.len() >= count;
            let mut last_entry = None;
            for entry in entries {
                let read = codec::events_from_entry(entry)?;
                last_entry = Some(read.entry);
                for (pos, e) in read.events {
                    if after.is_none_or(|at| pos > at) {
                        out.push(e);
                        if out.len() == limit {
                            return Ok(out);
                        }
                    }
                }
            }
            match last_entry {
                Some((ms, seq)) if full => start = codec::stream_id_after(ms, seq),
                _ => return Ok(out),
            }
        }
    }

    async fn wait_for_work(&self, timeout: Duration) {
        self.signal.wait(timeout).await;
    }

    async fn latest_event_id(&self) -> Result<Option<String>> {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(self.keys.events())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        let newest = as_array(self.query::<Value>(&cmd).await?, "newest event")?;
        let Some(entry) = newest.into_iter().next() else {
            return Ok(None);
        };
        Ok(codec::events_from_entry(entry)?
            .events
            .pop()
            .map(|(_, e)| e.id))
    }

    async fn wait_for_events(&self, timeout: Duration) {
        self.events.wait(timeout).await;
    }

    async fn ping(&self) -> Result<Duration> {
        let start = Instant::now();
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(start.elapsed())
    }

    async fn info(&self) -> Result<BackendInfo> {
        let info = self.server_info().await?;
        let mut out = BackendInfo {
            backend: "redis".into(),
            ..BackendInfo::default()
        };
        out.details.insert("url".into(), self.url.clone());
        out.details.insert("mode".into(), self.cfg.mode().into());
        out.details.insert("prefix".into(), self.cfg.prefix.clone());
        for (from, to) in [
            ("redis_version", "version"),
            ("role", "role"),
            ("used_memory", "used_memory"),
            ("used_memory_human", "used_memory_human"),
            ("maxmemory", "maxmemory"),
            ("maxmemory_policy", "maxmemory_policy"),
            ("connected_clients", "connected_clients"),
        ] {
            if let Some(v) = info.get(from) {
                out.details.insert(to.into(), v.clone());
            }
        }
        let subscribed = self.signal.subscribed();
        out.details.insert(
            "wake_subscription".into(),
            if subscribed { "up" } else { "down" }.into(),
        );
        out.warnings = server_warnings(&info);
        if !subscribed {
            out.warnings.push(
                "the redis wake-up subscription is down: idle workers notice new jobs only at \
                 their poll interval"
                    .into(),
            );
        }
        Ok(out)
    }
}
