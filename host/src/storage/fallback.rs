//! The fallback spool: a `Storage` over a primary (Redis) and a local SQLite file, so that a
//! daemon keeps accepting jobs while Redis is unreachable and hands them to Redis once it
//! is back.
//!
//! - Enqueues go to the primary. When it is down (it could not be reached at start-up, or a
//!   call answered `Unavailable`), `enqueue` and `enqueue_batch` write into the spool
//!   instead, with the ids the host gave the jobs, and succeed. An enqueue whose outcome
//!   is unknown (a timeout after Redis may have written it) is spooled too: the replay
//!   imports by id, so such a job still ends up in Redis once.
//! - Everything else (claims, results, reads, cache, events) goes to the primary and, while it
//!   is down, fails at once with `Unavailable` (no connection timeout per call): the daemon
//!   keeps running the jobs it holds and its completer retries their results. `get` also
//!   looks in the spool, so a job accepted during the outage can be looked up.
//! - `replay.rs`'s task probes the primary every second while it is down; once it answers,
//!   the spool is replayed with `import_jobs` (same ids, skips what exists, so a crash
//!   mid-replay followed by another replay duplicates nothing) and each replayed page is
//!   then deleted from the spool.
//! - `ping` answers for the spool while the primary is down and `info` carries the warning
//!   `degraded: redis unreachable, N jobs in the local fallback spool`, so `/health` says
//!   degraded (the daemon still takes jobs), not unhealthy.
//!
//! - `cancel` and `delete` reach spooled jobs too (a cancelled spooled job is handed over
//!   as `cancelled`). `list`, `stats` and the rest answer `Unavailable` while Redis is down:
//!   the spool holds only the jobs of this outage, and a partial answer would mislead.
//! - A spooled job whose unique key a live Redis job holds when it is handed over is not
//!   run: it is handed over as `cancelled`, its error naming the job that holds the key (an
//!   enqueue would have answered with that job), so its id still tells the client what
//!   happened.

mod replay;
mod routing;
#[cfg(test)]
mod tests;

use super::sqlite::SqliteStorage;
use super::{Enqueued, Result, Storage, StorageError, StorageOptions};
use crate::job::{Clock, Millis, NewJob};
use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use replay::{PROBE_EVERY, Replay};

/// Opens the primary; called at start-up and again by the probe until it succeeds.
pub type Opener = Box<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn Storage>>> + Send + Sync>;

/// Opens `primary_url` (a Redis URL) with a fallback spool at `spool` (a path or
/// `sqlite://PATH`), and starts the probe/replay task, which ends when the storage is
/// dropped. Starts even when Redis is down; fails only on a bad URL or an unusable spool.
pub async fn open(
    primary_url: &str,
    spool: &str,
    opts: StorageOptions,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Storage>> {
    Ok(open_spooled(primary_url, spool, opts, clock).await?)
}

/// `open`, keeping the concrete type (for `status` and `run_once`).
pub async fn open_spooled(
    primary_url: &str,
    spool: &str,
    opts: StorageOptions,
    clock: Arc<dyn Clock>,
) -> Result<Arc<FallbackStorage>> {
    let scheme = primary_url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    if !super::is_redis_url(primary_url) {
        return Err(StorageError::InvalidInput(format!(
            "a fallback spool only makes sense in front of redis (storage is `{}`): remove \
             `fallback`, or use a redis:// storage url",
            if scheme.is_empty() {
                "(no scheme)"
            } else {
                &scheme
            }
        )));
    }
    let (url, o, c) = (primary_url.to_owned(), opts.clone(), clock.clone());
    let opener: Opener = Box::new(move || {
        let (url, o, c) = (url.clone(), o.clone(), c.clone());
        Box::pin(async move { super::open(&url, o, c).await })
    });
    let storage = FallbackStorage::open_with(opener, spool, opts, clock, "redis").await?;
    replay::spawn(&storage);
    Ok(storage)
}

pub struct FallbackStorage {
    opener: Opener,
    /// The primary once opened. Written by `open_with` and the probe; read by every call.
    primary: RwLock<Option<Arc<dyn Storage>>>,
    /// True while the primary is considered unreachable. Set by any call that saw
    /// `Unavailable`; cleared by the probe once the primary answers.
    down: AtomicBool,
    /// Why it is down, and since when (for messages and health).
    outage: Mutex<Option<Outage>>,
    spool: Arc<SqliteStorage>,
    spool_path: PathBuf,
    /// Jobs in the spool: counted at open, raised by spooled enqueues, lowered by the replay.
    spooled: AtomicU64,
    /// One replay at a time (the probe task, or a test calling `run_once`).
    replaying: tokio::sync::Mutex<()>,
    clock: Arc<dyn Clock>,
    backend: &'static str,
}

#[derive(Debug, Clone)]
struct Outage {
    since: Millis,
    error: String,
}

impl std::fmt::Debug for FallbackStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackStorage")
            .field("spool", &self.spool_path)
            .field("down", &self.is_active())
            .finish_non_exhaustive()
    }
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackStatus {
    /// The primary is unreachable and new jobs go to the spool.
    pub active: bool,
    /// Jobs waiting in the spool.
    pub spooled: u64,
    pub spool_path: PathBuf,
    /// The last error seen from the primary while it is down.
    pub error: Option<String>,
    pub down_since: Option<Millis>,
}

impl FallbackStorage {
    /// Like `open` with the primary opened by `opener`, and without starting the task (tests
    /// drive `run_once` themselves; `open` calls `replay::spawn`).
    pub async fn open_with(
        opener: Opener,
        spool: &str,
        opts: StorageOptions,
        clock: Arc<dyn Clock>,
        backend: &'static str,
    ) -> Result<Arc<FallbackStorage>> {
        let path = spool_file(spool)?;
        let spool_opts = StorageOptions {
            // The spool's own event log is never read; keep it small.
            max_events: 1_000,
            ..opts
        };
        let spool = SqliteStorage::open(&path, spool_opts, clock.clone())
            .await
            .map_err(|e| {
                StorageError::Unavailable(format!(
                    "cannot open the fallback spool `{}`: {e}",
                    path.display()
                ))
            })?;
        let waiting = count_jobs(&spool).await?;
        let primary = match opener().await {
            Ok(p) => Ok(p),
            Err(StorageError::Unavailable(e)) => Err(e),
            Err(other) => return Err(other),
        };
        let storage = Arc::new(FallbackStorage {
            opener,
            primary: RwLock::new(primary.as_ref().ok().cloned()),
            down: AtomicBool::new(primary.is_err()),
            outage: Mutex::new(None),
            spool: Arc::new(spool),
            spool_path: path,
            spooled: AtomicU64::new(waiting),
            replaying: tokio::sync::Mutex::new(()),
            clock,
            backend,
        });
        match primary {
            Ok(_) if waiting > 0 => tracing::info!(
                jobs = waiting,
                spool = %storage.spool_path.display(),
                "the fallback spool holds jobs from an earlier outage; replaying them"
            ),
            Ok(_) => {}
            Err(e) => {
                storage.mark_down(e);
            }
        }
        Ok(storage)
    }

    /// True while the primary is unreachable (new jobs go to the spool).
    pub fn is_active(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    pub fn status(&self) -> FallbackStatus {
        let outage = self.outage();
        FallbackStatus {
            active: self.is_active(),
            spooled: self.spooled.load(Ordering::SeqCst),
            spool_path: self.spool_path.clone(),
            error: outage.as_ref().map(|o| o.error.clone()),
            down_since: outage.map(|o| o.since),
        }
    }

    /// The spool itself (tests look inside it).
    pub fn spool(&self) -> Arc<dyn Storage> {
        self.spool.clone()
    }

    fn outage(&self) -> Option<Outage> {
        self.outage.lock().ok().and_then(|o| o.clone())
    }

    fn primary(&self) -> Option<Arc<dyn Storage>> {
        self.primary.read().ok().and_then(|p| p.clone())
    }

    /// The primary, unless it is down: then the `Unavailable` error callers get at once.
    fn up_primary(&self) -> Result<Arc<dyn Storage>> {
        match self.primary() {
            Some(p) if !self.is_active() => Ok(p),
            _ => Err(self.unavailable()),
        }
    }

    fn unavailable(&self) -> StorageError {
        let why = self
            .outage()
            .map(|o| o.error)
            .unwrap_or_else(|| "not connected yet".into());
        StorageError::Unavailable(format!(
            "{} is unreachable ({why}); new jobs are kept in the local fallback spool ({} \
             waiting) and handed over when it is back; reads, claims and results wait for it",
            self.backend,
            self.spooled.load(Ordering::SeqCst)
        ))
    }

    /// Records an outage (the first one logs).
    fn mark_down(&self, error: String) {
        let was_down = self.down.swap(true, Ordering::SeqCst);
        if let Ok(mut o) = self.outage.lock() {
            let since = o
                .as_ref()
                .filter(|_| was_down)
                .map(|o| o.since)
                .unwrap_or_else(|| self.clock.now_ms());
            *o = Some(Outage {
                since,
                error: error.clone(),
            });
        }
        if !was_down {
            tracing::warn!(
                backend = self.backend,
                spool = %self.spool_path.display(),
                error = %error,
                "storage unreachable: new jobs go to the local fallback spool until it is back"
            );
        }
    }

    fn mark_up(&self) {
        if self.down.swap(false, Ordering::SeqCst) {
            let since = self.outage().map(|o| o.since);
            tracing::info!(
                backend = self.backend,
                down_ms = since.map(|s| self.clock.now_ms() - s).unwrap_or(0),
                spooled = self.spooled.load(Ordering::SeqCst),
                "storage reachable again: replaying the fallback spool"
            );
        }
        if let Ok(mut o) = self.outage.lock() {
            *o = None;
        }
    }

    /// Passes a primary result through, noting an outage.
    fn seen<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(StorageError::Unavailable(e)) = &r {
            self.mark_down(e.clone());
        }
        r
    }

    async fn spool_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        let out = self.spool.enqueue_batch(jobs).await.map_err(|e| match e {
            StorageError::InvalidInput(m) => StorageError::InvalidInput(m),
            other => StorageError::Unavailable(format!(
                "{} is unreachable and the local fallback spool `{}` refused the job(s): \
                 {other}",
                self.backend,
                self.spool_path.display()
            )),
        })?;
        let created = out.iter().filter(|e| e.created).count() as u64;
        self.spooled.fetch_add(created, Ordering::SeqCst);
        Ok(out)
    }
}

impl FallbackStorage {
    /// Cancels `id` wherever it is. With jobs in the spool, the replay lock is held for the
    /// whole call and the spool is looked at first: a replay can then neither hand over the
    /// job as it was before the cancel nor move it out of the spool between the two looks.
    pub(super) async fn cancel_anywhere(&self, id: &str) -> Result<super::CancelOutcome> {
        let replay_lock = self.lock_if_spooled().await;
        if replay_lock.is_some() {
            match self.spool.cancel(id).await? {
                super::CancelOutcome::NotFound => {}
                found => return Ok(found),
            }
        }
        let p = self.up_primary()?;
        self.seen(p.cancel(id).await)
    }

    /// Deletes `id` wherever it is, under the same rules as `cancel_anywhere`. Both copies go:
    /// an enqueue whose outcome was unknown can leave a job in the spool and in the primary.
    pub(super) async fn delete_anywhere(&self, id: &str) -> Result<bool> {
        let replay_lock = self.lock_if_spooled().await;
        let mut gone = false;
        if replay_lock.is_some() && self.spool.delete(id).await? {
            gone = true;
            let _ = self
                .spooled
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
        let primary = match self.up_primary() {
            Ok(p) => self.seen(p.delete(id).await),
            Err(e) => Err(e),
        };
        match primary {
            Ok(in_primary) => Ok(gone || in_primary),
            Err(StorageError::Unavailable(_)) if gone => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The replay lock, when the spool holds jobs (else nothing to race with).
    async fn lock_if_spooled(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if self.spooled.load(Ordering::SeqCst) == 0 {
            return None;
        }
        Some(self.replaying.lock().await)
    }
}

/// The spool file named by a path or a `sqlite://PATH` URL.
fn spool_file(spool: &str) -> Result<PathBuf> {
    let path = match spool.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sqlite") => rest,
        Some(_) => {
            return Err(StorageError::InvalidInput(format!(
                "the fallback spool must be a file path or sqlite://PATH (got `{spool}`)"
            )));
        }
        None => spool,
    };
    if path.trim().is_empty() {
        return Err(StorageError::InvalidInput(
            "the fallback spool path is empty: give a file, e.g. ./data/fallback.db".into(),
        ));
    }
    Ok(Path::new(path).to_path_buf())
}

async fn count_jobs(s: &dyn Storage) -> Result<u64> {
    Ok(s.stats()
        .await?
        .types
        .values()
        .flat_map(|t| t.counts.values())
        .sum())
}
