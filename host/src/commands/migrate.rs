//! `spool migrate --from URL --to URL`: copies every job (every state, with its result, logs,
//! unique key, attempts and times) from one storage to another, ids kept.
//!
//! How: the source is read page by page with `Storage::list` (all states, newest id first,
//! cursor-paginated, so jobs created meanwhile never shift a page), each page is written with
//! `Storage::import_jobs` (which skips ids the destination already has, so a second run adds
//! nothing and an interrupted run can simply be run again) and then read back from the
//! destination by id. The read-back feeds the count check at the end: for the ids read from
//! the source, the count per state must be the same on both sides. The next page is read
//! while the current one is written.
//!
//! Before copying, running jobs whose leases are still live mean a daemon is using the source:
//! refused unless `--force` (copied running jobs arrive with their lease expired, so the
//! destination's reaper runs them again, as after a crash). The plugin cache and the event log
//! are not copied (see `LONG_ABOUT`).

mod cli;
mod progress;
#[cfg(test)]
mod tests;

use crate::job::{Job, JobState, Millis, serde_time::format_rfc3339};
use crate::storage::{self, ImportEvents, ListFilter, Storage, StorageError};
use futures::{StreamExt, stream};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

pub use cli::{MigrateArgs, render, run};
pub use progress::{Progress, StderrProgress};

/// Jobs per page read and per import call.
pub const DEFAULT_BATCH: u32 = 500;
/// Examples of missing or differing jobs named in a failed count check.
const EXAMPLES: usize = 5;

/// What `migrate` does.
#[derive(Debug, Clone)]
pub struct Options {
    /// Read and count only.
    pub dry_run: bool,
    /// Copy despite live leases.
    pub force: bool,
    /// Jobs per page (1 to `storage::MAX_LIST_LIMIT`).
    pub batch: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dry_run: false,
            force: false,
            batch: DEFAULT_BATCH as usize,
        }
    }
}

/// What a run did, and the count check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    /// Jobs read from the source.
    pub read: u64,
    /// Jobs written to the destination (dry run: that would be written).
    pub copied: u64,
    /// Jobs skipped because the destination had them (or, for a live job, because a live job
    /// there holds the same unique key).
    pub skipped: u64,
    /// Jobs per state as read from the source.
    pub source: BTreeMap<JobState, u64>,
    /// The same ids' states in the destination (empty in a dry run).
    pub destination: BTreeMap<JobState, u64>,
    /// Source ids the destination does not have after the copy.
    pub missing: u64,
    pub missing_examples: Vec<String>,
    /// Source ids the destination has in another state.
    pub differing: u64,
    pub differing_examples: Vec<String>,
    /// Running jobs in the source whose lease was live at the start.
    pub live_leases: u64,
    pub elapsed_ms: u64,
}

impl Report {
    /// The count check: every id read is in the destination, in the state it was read in.
    pub fn counts_match(&self) -> bool {
        self.dry_run
            || (self.missing == 0 && self.differing == 0 && self.source == self.destination)
    }

    pub fn jobs_per_second(&self) -> f64 {
        self.read as f64 / (self.elapsed_ms.max(1) as f64 / 1000.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the source has {count} running job(s) whose lease is still live (the last one ends at \
         {}): a daemon is probably still using it; stop the daemons first (SIGTERM: they finish \
         or release their jobs), or wait until the leases expire, or pass --force to copy anyway \
         (running jobs then arrive with an expired lease and run again)", format_rfc3339(*.until)
    )]
    LiveLeases { count: u64, until: Millis },
    #[error("cannot read the source: {0}")]
    Source(StorageError),
    #[error(
        "cannot write to the destination: {0}; jobs already copied stay there: run the same \
         command again to continue (it skips them)"
    )]
    Destination(StorageError),
    #[error("{}", mismatch_message(.0))]
    Mismatch(Box<Report>),
}

/// Copies (or, dry, counts) every job of `src` into `dst`. `dst` may be None only in a dry
/// run. `now` is the time leases are judged by. `progress` is called after every page.
pub async fn migrate(
    src: &dyn Storage,
    dst: Option<&dyn Storage>,
    opts: &Options,
    now: Millis,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Report, MigrateError> {
    let started = Instant::now();
    let batch = opts.batch.clamp(1, storage::MAX_LIST_LIMIT);
    let (live, until) = live_leases(src, now).await.map_err(MigrateError::Source)?;
    if live > 0 && !opts.force && !opts.dry_run {
        return Err(MigrateError::LiveLeases { count: live, until });
    }
    let total = src
        .stats()
        .await
        .map_err(MigrateError::Source)?
        .types
        .values()
        .flat_map(|t| t.counts.values())
        .sum::<u64>();
    let mut report = Report {
        dry_run: opts.dry_run,
        live_leases: live,
        ..Report::default()
    };
    let page_filter = |cursor: Option<String>| ListFilter {
        limit: batch,
        cursor,
        ..ListFilter::default()
    };
    let mut page = src
        .list(page_filter(None))
        .await
        .map_err(MigrateError::Source)?;
    loop {
        let next_cursor = page.next_cursor.take();
        let fetch = async {
            match next_cursor {
                Some(c) => Some(src.list(page_filter(Some(c))).await),
                None => None,
            }
        };
        let (next, outcome) = tokio::join!(fetch, copy_page(dst, &page.jobs, opts.dry_run));
        outcome?.add_to(&mut report);
        for job in &page.jobs {
            *report.source.entry(job.status).or_default() += 1;
        }
        report.read += page.jobs.len() as u64;
        report.skipped = report.read - report.copied;
        report.elapsed_ms = elapsed_ms(started);
        progress(&Progress {
            done: report.read,
            total: total.max(report.read),
            copied: report.copied,
            skipped: report.skipped,
            elapsed: started.elapsed(),
        });
        match next {
            Some(p) => page = p.map_err(MigrateError::Source)?,
            None => break,
        }
    }
    report.elapsed_ms = elapsed_ms(started);
    if !report.counts_match() {
        return Err(MigrateError::Mismatch(Box::new(report)));
    }
    Ok(report)
}

/// Running jobs whose lease ends after `now`, and the latest such end.
pub async fn live_leases(src: &dyn Storage, now: Millis) -> storage::Result<(u64, Millis)> {
    let running = storage::list_all(
        src,
        ListFilter {
            status: Some(JobState::Running),
            ..ListFilter::default()
        },
    )
    .await?;
    let ends: Vec<Millis> = running
        .iter()
        .filter_map(|j| j.lease_expires_at)
        .filter(|end| *end > now)
        .collect();
    Ok((ends.len() as u64, ends.into_iter().fold(now, Millis::max)))
}

/// One page's share of the report.
#[derive(Default)]
struct PageOutcome {
    copied: u64,
    destination: BTreeMap<JobState, u64>,
    missing: Vec<String>,
    differing: Vec<String>,
}

impl PageOutcome {
    fn add_to(self, r: &mut Report) {
        r.copied += self.copied;
        for (state, n) in self.destination {
            *r.destination.entry(state).or_default() += n;
        }
        r.missing += self.missing.len() as u64;
        r.differing += self.differing.len() as u64;
        let room = |v: &Vec<String>| EXAMPLES.saturating_sub(v.len());
        let take = room(&r.missing_examples);
        r.missing_examples
            .extend(self.missing.into_iter().take(take));
        let take = room(&r.differing_examples);
        r.differing_examples
            .extend(self.differing.into_iter().take(take));
    }
}

/// Writes one page (unless dry) and reads its ids back from the destination.
async fn copy_page(
    dst: Option<&dyn Storage>,
    jobs: &[Job],
    dry_run: bool,
) -> Result<PageOutcome, MigrateError> {
    let mut out = PageOutcome::default();
    let Some(dst) = dst else {
        out.copied = jobs.len() as u64;
        return Ok(out);
    };
    if !dry_run && !jobs.is_empty() {
        out.copied = dst
            .import_jobs(jobs.to_vec(), ImportEvents::None)
            .await
            .map_err(MigrateError::Destination)?;
    }
    // One round trip per id, as many in flight as the destination serves at once.
    let in_flight = dst.capabilities().parallel_reads;
    let found: Vec<_> = stream::iter(jobs.iter().map(|j| dst.get(&j.id)))
        .buffered(in_flight)
        .collect()
        .await;
    for (job, got) in jobs.iter().zip(found) {
        match got.map_err(MigrateError::Destination)? {
            None if dry_run => out.copied += 1,
            None => out.missing.push(job.id.clone()),
            Some(_) if dry_run => {}
            Some(there) => {
                *out.destination.entry(there.status).or_default() += 1;
                if there.status != job.status {
                    out.differing.push(format!(
                        "`{}`: {} in the source, {} in the destination",
                        job.id, job.status, there.status
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn mismatch_message(r: &Report) -> String {
    let mut parts = Vec::new();
    for state in JobState::ALL {
        let (a, b) = (
            r.source.get(&state).copied().unwrap_or(0),
            r.destination.get(&state).copied().unwrap_or(0),
        );
        if a != b {
            parts.push(format!(
                "{state}: {a} in the source, {b} in the destination"
            ));
        }
    }
    let mut msg = format!(
        "count check failed for the {} job(s) read from the source ({})",
        r.read,
        parts.join("; ")
    );
    if r.missing > 0 {
        msg.push_str(&format!(
            "; {} job(s) are missing from the destination (e.g. {}): a live job there holds \
             the same unique key, so the import skipped them; finish or cancel that job and run \
             migrate again",
            r.missing,
            r.missing_examples.join(", ")
        ));
    }
    if r.differing > 0 {
        msg.push_str(&format!(
            "; {} job(s) are in another state in the destination (e.g. {}): the destination \
             already had them (from an earlier run) and a daemon has moved them on since, or \
             the source changed during the copy; check those jobs",
            r.differing,
            r.differing_examples.join("; ")
        ));
    }
    msg
}
