//! `sqlite://PATH`: the default, zero-configuration backend. One file in WAL mode; one writer
//! thread that group-commits queued changes in `BEGIN IMMEDIATE` transactions
//! (`writer.rs`); a few read connections (`reads.rs`); claims in one `UPDATE ... RETURNING`
//! over a partial index (`sql/claim.sql`); a versioned schema (`connection.rs`,
//! `schema/*.sql`). Several daemons may share one file on one host; each has its own
//! writer, and SQLite's file lock (with the busy timeout) orders them; a daemon's idle
//! `wait_for_work` is woken by its own writes only, so another daemon's enqueues are seen
//! at the caller's poll timeout.
//!
//! WAL checkpoints run on their own thread (`checkpointer.rs`), not inside the writer's
//! commits.
//!
//! Durability: `synchronous=NORMAL` in WAL mode. A change is acknowledged after `COMMIT`,
//! when it is in the WAL file; a killed process (kill -9, OOM, crash) loses nothing
//! acknowledged (tests/storage_sqlite.rs kills a child mid-stream to check), a power cut may
//! lose the last commits since the previous checkpoint.

mod checkpointer;
mod connection;
mod flow;
mod jobs;
mod maintenance;
mod reads;
mod rows;
mod sql;
#[cfg(test)]
mod tests;
mod writer;

use super::flow::{ClaimBatch, ControlChange, Schedule, ScheduleRecord, TypeControl};
use super::limits::{self, check_cache_key};
use super::{
    BackendInfo, CacheKey, CacheUsage, CancelOutcome, Capabilities, ClaimRequest, Completion,
    Enqueued, Event, Failure, ImportEvents, JobPage, LeaseStatus, ListFilter, NewEvent, Reaped,
    Result, RetentionPolicy, Settled, Stats, Storage, StorageError, StorageOptions, Wakers,
};
use crate::job::{Clock, Job, LeaseToken, Millis, NewJob, Progress, millis_i64};
use async_trait::async_trait;
use checkpointer::Checkpointer;
use reads::Readers;
use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use writer::Writer;

/// Rows changed per transaction by promotion, reaping and sweeping; other writers get a
/// turn between chunks.
const CHUNK: usize = 2_000;
/// Jobs deleted by one `sweep_retention` call at most; the next call continues.
const SWEEP_BUDGET: usize = 100_000;

pub struct SqliteStorage {
    path: PathBuf,
    opts: StorageOptions,
    clock: Arc<dyn Clock>,
    /// Declared before `writer`: stopped first, so the writer's close does the last
    /// checkpoint alone.
    _checkpointer: Checkpointer,
    writer: Writer,
    readers: Arc<Readers>,
    /// Signalled by the writer after a commit (events) that made jobs ready (work).
    wakers: Arc<Wakers>,
    /// The last counts of a large store (see `stats`).
    stats_memo: Arc<std::sync::Mutex<StatsMemo>>,
    /// Whatever the owner wants kept alive as long as the store (a temporary folder).
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

/// Counting jobs reads every row of the type/status index: about 11 ms per 100,000 jobs. At
/// and above `LARGE_STORE` jobs, `stats` answers from the last count while it is at most
/// `STATS_REUSE` old, and a new count runs in the background once it is older, so a dashboard
/// or probe over 1,000,000 jobs answers in about 2 ms instead of 110 ms, with figures up to
/// about a second old. Smaller stores are counted on every call (exact, as the conformance
/// suite checks). Counting on read costs writes nothing: triggers that kept per-type counts
/// made drains 15% slower.
const LARGE_STORE: u64 = 100_000;
const STATS_REUSE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct StatsMemo {
    /// The last count of a large store and when it was taken.
    last: Option<(Instant, Stats)>,
    /// A background count is running.
    refreshing: bool,
}

/// `stats` as read at `taken`, with its oldest-pending ages moved on to now.
fn aged(taken: Instant, stats: &Stats) -> Stats {
    let mut stats = stats.clone();
    let waited = u64::try_from(taken.elapsed().as_millis()).unwrap_or(u64::MAX);
    for ts in stats.types.values_mut() {
        if let Some(age) = ts.oldest_pending_age_ms.as_mut() {
            *age = age.saturating_add(waited);
        }
    }
    stats
}

fn total_jobs(stats: &Stats) -> u64 {
    stats.types.values().flat_map(|ts| ts.counts.values()).sum()
}

impl std::fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStorage")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStorage {
    /// Opens (creating it and its parent folders if needed) the database at `path`.
    pub async fn open(
        path: impl AsRef<Path>,
        opts: StorageOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<SqliteStorage> {
        let path = path.as_ref().to_path_buf();
        let wakers = Arc::new(Wakers::default());
        let (conn, opts, path) = {
            let opts = opts.clone();
            tokio::task::spawn_blocking(move || {
                prepare_path(&path)?;
                let conn = connection::open_writer(&path, &opts)?;
                make_private(&path);
                Ok::<_, StorageError>((conn, opts, path))
            })
            .await
            .map_err(|e| StorageError::Internal(format!("opening the database failed: {e}")))??
        };
        let writer = Writer::spawn(conn, path.clone(), wakers.clone())?;
        let checkpointer = Checkpointer::spawn(path.clone(), &opts)?;
        let readers = Arc::new(Readers::new(path.clone(), opts.clone()));
        Ok(SqliteStorage {
            path,
            opts,
            clock,
            _checkpointer: checkpointer,
            writer,
            readers,
            wakers,
            stats_memo: Arc::default(),
            _guard: None,
        })
    }

    /// Keeps `guard` alive as long as the store (for example the temporary folder a test
    /// database lives in); it is dropped after the database is closed.
    #[must_use]
    pub fn holding(mut self, guard: impl Any + Send + Sync) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn now(&self) -> Millis {
        self.clock.now_ms()
    }
}

/// Creates the parent folders (0700, see `make_private`); refuses a folder where the file
/// should be.
fn prepare_path(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Err(StorageError::InvalidInput(format!(
            "`{}` is a folder: the sqlite storage url names the database file, e.g. \
             sqlite://{}/spool.db",
            path.display(),
            path.display()
        )));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| {
                StorageError::Unavailable(format!(
                    "cannot create the folder `{}` for the database: {e}",
                    parent.display()
                ))
            })?;
    }
    Ok(())
}

/// The database of this user and its `-wal` and `-shm` files become 0600 (SQLite creates
/// them 0644, and later `-wal`/`-shm` files take the database file's mode). Jobs hold other
/// people's payloads and results. For the moment between SQLite
/// creating the file and this, the folder (0700 when spool created it, and the data folder
/// always: see `app`) keeps others out. Best effort: a file of another user (or on a
/// filesystem without modes) is left as it is.
fn make_private(path: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for p in [
        path.to_path_buf(),
        wal_path(path, "-wal"),
        wal_path(path, "-shm"),
    ] {
        if let Ok(m) = std::fs::metadata(&p)
            // SAFETY: geteuid has no preconditions and cannot fail.
            && m.uid() == unsafe { libc::geteuid() }
            && m.mode() & 0o077 != 0
        {
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
        }
    }
}

fn wal_path(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    p.into()
}

#[async_trait]
impl Storage for SqliteStorage {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            shared: false,
            parallel_reads: self.opts.sqlite.read_connections.max(1),
        }
    }

    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        limits::check_new_jobs(std::slice::from_ref(&job), self.opts.max_payload_bytes)?;
        let now = self.now();
        self.writer
            .call(move |conn, ctx| jobs::enqueue(conn, ctx, job, now))
            .await
    }

    async fn enqueue_batch(&self, batch: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        limits::check_new_jobs(&batch, self.opts.max_payload_bytes)?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        self.writer
            .call(move |conn, ctx| {
                batch
                    .into_iter()
                    .map(|job| jobs::enqueue(conn, ctx, job, now))
                    .collect()
            })
            .await
    }

    async fn import_jobs(&self, batch: Vec<Job>, events: ImportEvents) -> Result<u64> {
        limits::check_imported(&batch)?;
        let now = self.now();
        self.writer
            .call(move |conn, ctx| jobs::import(conn, ctx, batch, events, now))
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<Job>> {
        let id = id.to_owned();
        self.readers.run(move |conn| reads::get(conn, &id)).await
    }

    async fn list(&self, filter: ListFilter) -> Result<JobPage> {
        self.readers
            .run(move |conn| reads::list(conn, &filter))
            .await
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.writer
            .call(move |conn, _| jobs::delete(conn, &id))
            .await
    }

    async fn claim_ready(&self, req: ClaimRequest) -> Result<ClaimBatch> {
        if req.types.is_empty() || req.limit == 0 {
            return Ok(ClaimBatch::default());
        }
        let now = self.now();
        let until = now.saturating_add(millis_i64(req.lease));
        self.writer
            .call(move |conn, _| jobs::claim(conn, &req.types, req.limit, until, &req.worker, now))
            .await
    }

    async fn type_controls(&self) -> Result<BTreeMap<String, TypeControl>> {
        self.readers.run(flow::controls).await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>> {
        self.readers.run(flow::schedules).await
    }

    async fn put_schedule(&self, schedule: Schedule) -> Result<ScheduleRecord> {
        super::flow::check_schedule(&schedule, self.opts.max_payload_bytes)?;
        let now = self.now();
        self.writer
            .call(move |conn, _| flow::put_schedule(conn, &schedule, now))
            .await
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.writer
            .call(move |conn, _| flow::delete_schedule(conn, &name))
            .await
    }

    async fn advance_schedule(&self, name: &str, from: Option<Millis>, to: Millis) -> Result<bool> {
        let name = name.to_owned();
        self.writer
            .call(move |conn, _| flow::advance_schedule(conn, &name, from, to))
            .await
    }

    async fn control_type(&self, job_type: &str, change: ControlChange) -> Result<TypeControl> {
        super::flow::check_change(job_type, &change)?;
        let now = self.now();
        let job_type = job_type.to_owned();
        self.writer
            .call(move |conn, ctx| flow::control_type(conn, ctx, &job_type, &change, now))
            .await
    }

    async fn renew_leases(
        &self,
        leases: &[(String, LeaseToken)],
        lease: Duration,
    ) -> Result<Vec<LeaseStatus>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let until = self.now().saturating_add(millis_i64(lease));
        let leases = leases.to_vec();
        self.writer
            .call(move |conn, _| jobs::renew(conn, &leases, until))
            .await
    }

    async fn set_progress(&self, id: &str, lease: &LeaseToken, progress: Progress) -> Result<bool> {
        let (id, lease, now) = (id.to_owned(), lease.clone(), self.now());
        let progress = Progress {
            percent: progress.percent.min(100),
            ..progress
        };
        self.writer
            .call(move |conn, _| jobs::set_progress(conn, &id, &lease, progress, now))
            .await
    }

    async fn complete(&self, done: Vec<Completion>) -> Result<Vec<Settled>> {
        limits::check_followups(&done, self.opts.max_payload_bytes)?;
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        self.writer
            .call(move |conn, ctx| jobs::complete(conn, ctx, done, now))
            .await
    }

    async fn fail(&self, failed: Vec<Failure>) -> Result<Vec<Settled>> {
        if failed.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        self.writer
            .call(move |conn, _| jobs::fail(conn, failed, now))
            .await
    }

    async fn release(&self, leases: &[(String, LeaseToken)]) -> Result<u64> {
        let (leases, now) = (leases.to_vec(), self.now());
        self.writer
            .call(move |conn, ctx| jobs::release(conn, ctx, &leases, now))
            .await
    }

    async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        let (id, now) = (id.to_owned(), self.now());
        self.writer
            .call(move |conn, _| jobs::cancel(conn, &id, now))
            .await
    }

    async fn replay(&self, id: &str) -> Result<Option<Job>> {
        let (id, now) = (id.to_owned(), self.now());
        self.writer
            .call(move |conn, ctx| jobs::replay(conn, ctx, &id, now))
            .await
    }

    async fn promote_due(&self) -> Result<u64> {
        let now = self.now();
        let mut total = 0;
        loop {
            let n = self
                .writer
                .call(move |conn, ctx| maintenance::promote_due(conn, ctx, now, CHUNK))
                .await?;
            total += n as u64;
            if n < CHUNK {
                return Ok(total);
            }
        }
    }

    async fn reap_expired(&self) -> Result<Reaped> {
        let now = self.now();
        let mut reaped = Reaped::default();
        loop {
            let (requeued, failed, seen) = self
                .writer
                .call(move |conn, ctx| jobs::reap(conn, ctx, now, CHUNK))
                .await?;
            reaped.requeued += requeued;
            reaped.failed += failed;
            if seen < CHUNK {
                return Ok(reaped);
            }
        }
    }

    async fn sweep_retention(&self, policy: &RetentionPolicy) -> Result<u64> {
        let now = self.now();
        let mut total = 0;
        while total < SWEEP_BUDGET {
            let policy = policy.clone();
            let budget = CHUNK.min(SWEEP_BUDGET - total);
            let n = self
                .writer
                .call(move |conn, _| maintenance::sweep(conn, &policy, now, budget))
                .await?;
            total += n;
            if n < budget {
                break;
            }
        }
        let keep = self.opts.max_events;
        while self
            .writer
            .call(move |conn, _| maintenance::trim_events(conn, keep, CHUNK))
            .await?
            >= CHUNK
        {}
        while self
            .writer
            .call(move |conn, _| maintenance::purge_cache(conn, now, CHUNK))
            .await?
            >= CHUNK
        {}
        Ok(total as u64)
    }

    async fn stats(&self) -> Result<Stats> {
        {
            let mut memo = self.stats_memo.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((taken, last)) = &memo.last {
                let answer = aged(*taken, last);
                if taken.elapsed() >= STATS_REUSE && !memo.refreshing {
                    memo.refreshing = true;
                    let (readers, memo_slot, clock) = (
                        self.readers.clone(),
                        self.stats_memo.clone(),
                        self.clock.clone(),
                    );
                    tokio::spawn(async move {
                        let now = clock.now_ms();
                        let fresh = readers.run(move |conn| reads::stats(conn, now)).await;
                        let mut memo = memo_slot.lock().unwrap_or_else(|p| p.into_inner());
                        memo.refreshing = false;
                        match fresh {
                            Ok(stats) if total_jobs(&stats) >= LARGE_STORE => {
                                memo.last = Some((Instant::now(), stats));
                            }
                            // Small again, or unreadable: the next call counts (and reports).
                            _ => memo.last = None,
                        }
                    });
                }
                return Ok(answer);
            }
        }
        let now = self.now();
        let stats = self
            .readers
            .run(move |conn| reads::stats(conn, now))
            .await?;
        if total_jobs(&stats) >= LARGE_STORE {
            let mut memo = self.stats_memo.lock().unwrap_or_else(|p| p.into_inner());
            memo.last = Some((Instant::now(), stats.clone()));
        }
        Ok(stats)
    }

    async fn cache_get(&self, key: CacheKey<'_>) -> Result<Option<String>> {
        let CacheKey { ns, key } = key;
        check_cache_key(ns, key)?;
        let (ns, key, now) = (ns.to_owned(), key.to_owned(), self.now());
        self.readers
            .run(move |conn| reads::cache_get(conn, &ns, &key, now))
            .await
    }

    async fn cache_set(&self, key: CacheKey<'_>, value: &str, ttl: Option<Duration>) -> Result<()> {
        let CacheKey { ns, key } = key;
        let (max, quota, now) = (
            self.opts.max_payload_bytes,
            self.opts.cache_quota,
            self.now(),
        );
        let expires = limits::check_cache_set(ns, key, value, ttl, max, now)?;
        let (ns, key, value) = (ns.to_owned(), key.to_owned(), value.to_owned());
        self.writer
            .call(move |conn, _| {
                maintenance::cache_set(conn, &ns, &key, &value, expires, quota, now)
            })
            .await
    }

    async fn cache_delete(&self, key: CacheKey<'_>) -> Result<bool> {
        let CacheKey { ns, key } = key;
        check_cache_key(ns, key)?;
        let (ns, key, now) = (ns.to_owned(), key.to_owned(), self.now());
        self.writer
            .call(move |conn, _| maintenance::cache_delete(conn, &ns, &key, now))
            .await
    }

    async fn cache_increment(
        &self,
        key: CacheKey<'_>,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64> {
        let CacheKey { ns, key } = key;
        check_cache_key(ns, key)?;
        let (ns, key, now) = (ns.to_owned(), key.to_owned(), self.now());
        let (ttl, quota) = (ttl.map(millis_i64), self.opts.cache_quota);
        self.writer
            .call(move |conn, _| {
                maintenance::cache_increment(conn, &ns, &key, delta, ttl, quota, now)
            })
            .await
    }

    async fn cache_usage(&self, ns: &str) -> Result<CacheUsage> {
        check_cache_key(ns, "-")?;
        let ns = ns.to_owned();
        self.readers
            .run(move |conn| maintenance::cache_usage(conn, &ns))
            .await
    }

    async fn publish_event(&self, event: NewEvent) -> Result<Event> {
        let now = self.now();
        self.writer
            .call(move |conn, _| rows::insert_event(conn, event, now))
            .await
    }

    async fn events_since(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>> {
        let after = after
            .map(super::event_ids::parse_numbered_event_id)
            .transpose()?
            .unwrap_or(0);
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.readers
            .run(move |conn| reads::events_since(conn, after, limit))
            .await
    }

    async fn latest_event_id(&self) -> Result<Option<String>> {
        self.readers.run(reads::latest_event_id).await
    }

    async fn wait_for_work(&self, timeout: Duration) {
        self.wakers.work.wait(timeout).await;
    }

    async fn wait_for_events(&self, timeout: Duration) {
        self.wakers.events.wait(timeout).await;
    }

    async fn ping(&self) -> Result<Duration> {
        let start = Instant::now();
        if !self.writer.is_running() {
            return Err(StorageError::Internal(format!(
                "the sqlite writer thread of `{}` stopped (a bug: see the logs), so no change \
                 can be saved: restart the daemon",
                self.path.display()
            )));
        }
        self.readers
            .run(|conn| Ok(conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await?;
        Ok(start.elapsed())
    }

    async fn info(&self) -> Result<BackendInfo> {
        let path = self.path.clone();
        let mut info = self
            .readers
            .run(move |conn| reads::info(conn, &path))
            .await?;
        info.details
            .insert("synchronous".into(), "normal (WAL)".into());
        Ok(info)
    }
}
