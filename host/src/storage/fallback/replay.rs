//! The fallback's background task: while the primary is down, probe it (open it if it was
//! never reached, else ping it) every `PROBE_EVERY`; once it answers (and at start-up, when
//! an earlier run left jobs behind), replay the spool into it.
//!
//! A replay takes one page of the spool, imports it into the primary with `import_jobs`
//! (same ids; ids the primary has are skipped), then deletes that page from the spool, and
//! repeats until the spool is empty. A crash between the import and the delete leaves the
//! page in the spool; the next replay imports it again, the primary skips every id, and the
//! page is deleted: nothing is duplicated and nothing is lost.

use super::{FallbackStorage, count_jobs};
use crate::storage::{ImportEvents, ListFilter, RetentionPolicy, Storage, StorageError};
use futures::future::join_all;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often an unreachable primary is probed (and a non-empty spool retried).
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Jobs per import call and per round of deletes.
const PAGE: usize = 500;

/// What one `run_once` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replay {
    /// The primary was down and was probed.
    pub probed: bool,
    /// It answered, so the outage is over.
    pub recovered: bool,
    /// Spooled jobs now in the primary (imported by this run).
    pub replayed: u64,
    /// Spooled jobs the primary already had (an earlier, interrupted replay; or an enqueue
    /// that reached it before the error), removed from the spool without importing.
    pub already_there: u64,
    /// Spooled jobs a live job in the primary stands for (it holds their unique key): handed
    /// over as `cancelled`, not run.
    pub unique_taken: u64,
    /// Jobs still in the spool afterwards.
    pub remaining: u64,
}

/// Runs `run_once` every `PROBE_EVERY` for as long as `storage` is alive.
pub(super) fn spawn(storage: &Arc<FallbackStorage>) {
    let weak: Weak<FallbackStorage> = Arc::downgrade(storage);
    tokio::spawn(async move {
        loop {
            let Some(storage) = weak.upgrade() else {
                return;
            };
            match storage.run_once().await {
                Ok(r) if r.replayed + r.already_there + r.unique_taken > 0 => tracing::info!(
                    replayed = r.replayed,
                    already_there = r.already_there,
                    unique_taken = r.unique_taken,
                    remaining = r.remaining,
                    "replayed the fallback spool"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot replay the fallback spool; retrying"),
            }
            drop(storage);
            tokio::time::sleep(PROBE_EVERY).await;
        }
    });
}

impl FallbackStorage {
    /// One probe (when down) and, when the primary is up, a replay of the whole spool.
    pub async fn run_once(&self) -> crate::storage::Result<Replay> {
        let _one_at_a_time = self.replaying.lock().await;
        let mut out = Replay::default();
        if self.is_active() || self.primary().is_none() {
            out.probed = true;
            if !self.probe().await {
                out.remaining = self.spooled.load(Ordering::SeqCst);
                return Ok(out);
            }
            out.recovered = true;
        }
        let Some(primary) = self.primary() else {
            return Ok(out);
        };
        if self.spooled.load(Ordering::SeqCst) == 0 {
            return Ok(out);
        }
        loop {
            let page = self
                .spool
                .list(ListFilter {
                    limit: PAGE,
                    ..ListFilter::default()
                })
                .await?
                .jobs;
            if page.is_empty() {
                break;
            }
            let ids: Vec<String> = page.iter().map(|j| j.id.clone()).collect();
            let imported = match primary
                .import_jobs(page.clone(), ImportEvents::Created)
                .await
            {
                Ok(n) => n,
                Err(StorageError::Unavailable(e)) => {
                    self.mark_down(e);
                    break;
                }
                Err(e) => return Err(e),
            };
            out.replayed += imported;
            // Only what the primary is known to hold leaves the spool.
            let mut handed: Vec<String> = Vec::with_capacity(ids.len());
            let mut stop = false;
            if imported == ids.len() as u64 {
                handed = ids;
            } else {
                // Either the primary had the id already, or (live jobs only) a live job
                // there holds the unique key: the second kind is handed over as cancelled.
                let found = join_all(page.iter().map(|j| primary.get(&j.id))).await;
                let mut absent = Vec::new();
                for (job, f) in page.into_iter().zip(found) {
                    match f {
                        Ok(Some(_)) => handed.push(job.id),
                        // Only a held unique key keeps a new id out; a job without one
                        // went in and was deleted since (by a user or retention).
                        Ok(None) if job.unique_key.is_none() => handed.push(job.id),
                        Ok(None) => absent.push(job),
                        // Unknown: it stays in the spool for the next replay.
                        Err(e) => {
                            if let StorageError::Unavailable(m) = e {
                                self.mark_down(m);
                            }
                            stop = true;
                        }
                    }
                }
                out.already_there += (handed.len() as u64).saturating_sub(imported);
                if !absent.is_empty() && !stop {
                    let absent_ids: Vec<String> = absent.iter().map(|j| j.id.clone()).collect();
                    match self.hand_over_as_duplicates(&*primary, absent).await {
                        Ok(()) => {
                            out.unique_taken += absent_ids.len() as u64;
                            handed.extend(absent_ids);
                        }
                        Err(StorageError::Unavailable(m)) => {
                            self.mark_down(m);
                            stop = true;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            let deleted = join_all(handed.iter().map(|id| self.spool.delete(id))).await;
            let mut gone = 0u64;
            for d in deleted {
                if d? {
                    gone += 1;
                }
            }
            let _ = self
                .spooled
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    Some(n.saturating_sub(gone))
                });
            if stop {
                break;
            }
        }
        // Recount: an enqueue may have raced with the replay (spooled while we flipped up).
        let remaining = count_jobs(&*self.spool).await?;
        self.spooled.store(remaining, Ordering::SeqCst);
        out.remaining = remaining;
        if remaining == 0 {
            // The spool's own event log (job.created of spooled jobs) is never read.
            let _ = self
                .spool
                .sweep_retention(&RetentionPolicy::default())
                .await;
        }
        Ok(out)
    }

    /// Spooled jobs the primary refused because a live job there holds their unique key:
    /// they must not run (the live job stands for them, as an enqueue would have answered),
    /// but their ids were given to clients, so they are handed over as `cancelled` with an
    /// error that says why.
    async fn hand_over_as_duplicates(
        &self,
        primary: &dyn Storage,
        jobs: Vec<crate::job::Job>,
    ) -> crate::storage::Result<()> {
        let now = self.clock.now_ms();
        let mut out = Vec::with_capacity(jobs.len());
        for mut job in jobs {
            let key = job.unique_key.clone().unwrap_or_default();
            tracing::info!(
                job_id = %job.id,
                unique_key = %key,
                "spooled job not run: a live job holds its unique key; handed over as cancelled"
            );
            job.status = crate::job::JobState::Cancelled;
            job.finished_at = Some(now);
            job.error = Some(format!(
                "not run: accepted into the fallback spool while {} was unreachable, and when \
                 it was handed over a live job held its unique key `{key}` (that job stands \
                 for this one)",
                self.backend
            ));
            out.push(job);
        }
        primary
            .import_jobs(out, ImportEvents::Created)
            .await
            .map(|_| ())
    }

    /// Tries the primary: opens it if it was never reached, else pings it. True when it
    /// answered (the outage is then over).
    async fn probe(&self) -> bool {
        let result = match self.primary() {
            Some(p) => p.ping().await.map(|_| ()),
            None => match (self.opener)().await {
                Ok(p) => {
                    if let Ok(mut slot) = self.primary.write() {
                        *slot = Some(p);
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => {
                self.mark_up();
                true
            }
            Err(e) => {
                self.mark_down(match e {
                    StorageError::Unavailable(m) => m,
                    other => other.to_string(),
                });
                false
            }
        }
    }
}
