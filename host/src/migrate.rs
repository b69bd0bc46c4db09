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

mod progress;
#[cfg(test)]
mod tests;

use crate::job::{Clock, Job, JobState, Millis, SystemClock, serde_time::format_rfc3339};
use crate::storage::{self, ListFilter, Storage, StorageError, StorageOptions};
use anyhow::{Context, bail};
use futures::{StreamExt, stream};
use serde::Serialize;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

pub use progress::{Progress, StderrProgress};

/// Jobs per page read and per import call.
pub const DEFAULT_BATCH: u32 = 500;
/// Reads in flight while checking a page in the destination (see `copy_page`).
const SQLITE_READS: usize = 4;
const REMOTE_READS: usize = 128;
/// Examples of missing or differing jobs named in a failed count check.
const EXAMPLES: usize = 5;

const LONG_ABOUT: &str = "\
Copy every job from one storage to another: all states (pending, scheduled, running, retrying,
completed, failed, cancelled) with their ids, payloads, results, errors, logs, unique keys,
attempts and times. The source is not changed.

Safe to run twice: jobs whose id the destination already has are skipped, so a second run (or
a run after an interrupted one) copies only what is missing and never duplicates a job. The
run ends with a count check per state for the ids it read; a mismatch exits with status 1.

Steps for moving a daemon from SQLite to Redis:
  1. stop the daemons (SIGTERM: they finish or release their running jobs)
  2. spool migrate --from sqlite://./data/spool.db --to redis://HOST:6379 --dry-run
  3. spool migrate --from sqlite://./data/spool.db --to redis://HOST:6379
  4. start the daemons with --storage redis://HOST:6379 (keep the old file until satisfied)

While a daemon holds live leases on running jobs in the source, migrate refuses: stop the
daemons, or wait for the leases to expire, or pass --force (running jobs then arrive in the
destination with an expired lease, and its reaper runs them again, as after a crash).

Not copied: the plugin cache (scratch values with TTLs that plugins rebuild on their own) and
the event log (history; the destination starts its own).";

const SHORT_NOTE: &str = "\
Ids are kept; jobs the destination has are skipped, so running it twice is safe. Not copied: the
plugin cache and the event log. More (steps for moving to Redis): spool migrate --help";

#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = LONG_ABOUT, after_help = SHORT_NOTE)]
pub struct MigrateArgs {
    /// Storage to copy from: sqlite://PATH, redis://HOST[:PORT][/DB], redis+sentinel://...
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// Storage to copy into (a new SQLite file is created)
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Read the source and report what would be copied; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Copy even while daemons hold live leases on running jobs in the source
    #[arg(long)]
    pub force: bool,
    /// Jobs per read and per write (1-1000)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch: u32,
}

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
    let (mut count, mut until) = (0u64, now);
    let mut cursor = None;
    loop {
        let page = src
            .list(ListFilter {
                status: Some(JobState::Running),
                limit: storage::MAX_LIST_LIMIT,
                cursor,
                ..ListFilter::default()
            })
            .await?;
        for end in page.jobs.iter().filter_map(|j| j.lease_expires_at) {
            if end > now {
                count += 1;
                until = until.max(end);
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok((count, until)),
        }
    }
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
            .import_jobs(jobs.to_vec())
            .await
            .map_err(MigrateError::Destination)?;
    }
    // One round trip per id, many in flight: Redis multiplexes them on one connection.
    // SQLite serves reads from a few pooled connections and opens a new one for every read
    // beyond them, so it gets only as many at once as it keeps.
    let in_flight = if dst.backend() == "sqlite" {
        SQLITE_READS
    } else {
        REMOTE_READS
    };
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

/// `spool migrate`.
pub async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    if same_storage(&args.from, &args.to) {
        bail!(
            "--from and --to name the same storage (`{}`): give the destination as a different \
             URL",
            crate::app::redact(&args.from)
        );
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (from, to) = (crate::app::redact(&args.from), crate::app::redact(&args.to));
    if let Some(path) = sqlite_path(&args.from)
        && !std::path::Path::new(path).exists()
    {
        bail!(
            "the source `{from}` does not exist: check the path (relative paths start in the current folder)"
        );
    }
    let src = storage::open(&args.from, StorageOptions::default(), clock.clone())
        .await
        .with_context(|| format!("cannot open the source `{from}`"))?;
    // Refuse before opening the destination, so that a refusal creates no file.
    if !args.dry_run && !args.force {
        let (count, until) = live_leases(&*src, clock.now_ms())
            .await
            .map_err(MigrateError::Source)?;
        if count > 0 {
            return Err(MigrateError::LiveLeases { count, until }.into());
        }
    }
    let new_sqlite = sqlite_path(&args.to).is_some_and(|p| !std::path::Path::new(p).exists());
    let dst = if args.dry_run && new_sqlite {
        None
    } else {
        Some(
            storage::open(&args.to, StorageOptions::default(), clock.clone())
                .await
                .with_context(|| format!("cannot open the destination `{to}`"))?,
        )
    };
    let opts = Options {
        dry_run: args.dry_run,
        force: args.force,
        batch: args.batch as usize,
    };
    eprintln!(
        "{} jobs from {from} ({}) to {to}{}",
        if args.dry_run {
            "dry run: counting"
        } else {
            "copying"
        },
        src.backend(),
        dst.as_ref()
            .map(|d| format!(" ({})", d.backend()))
            .unwrap_or_else(|| " (a new file, not created in a dry run)".into())
    );
    let mut bar = StderrProgress::new();
    let outcome = migrate(
        &*src,
        dst.as_deref(),
        &opts,
        clock.now_ms(),
        &mut |p: &Progress| bar.update(p),
    )
    .await;
    bar.finish();
    let report = match outcome {
        Ok(r) => r,
        Err(MigrateError::Mismatch(r)) => {
            print!("{}", render(&r, &from, &to));
            bail!("{}", mismatch_message(&r));
        }
        Err(e) => return Err(e.into()),
    };
    print!("{}", render(&report, &from, &to));
    Ok(ExitCode::SUCCESS)
}

/// The report as text for people.
pub fn render(r: &Report, from: &str, to: &str) -> String {
    let secs = r.elapsed_ms as f64 / 1000.0;
    let mut out = if r.dry_run {
        format!(
            "dry run: read {} jobs from {from} in {secs:.1} s; {} would be copied to {to}, {} \
             are there already\n",
            r.read, r.copied, r.skipped
        )
    } else {
        format!(
            "copied {} of {} jobs from {from} to {to} in {secs:.1} s ({:.0} jobs/s); {} were \
             there already\n",
            r.copied,
            r.read,
            r.jobs_per_second(),
            r.skipped
        )
    };
    if r.live_leases > 0 {
        out.push_str(&format!(
            "warning: {} running job(s) had live leases in the source{}\n",
            r.live_leases,
            if r.dry_run {
                " (a real run refuses without --force)"
            } else {
                " (copied with --force: they run again in the destination)"
            }
        ));
    }
    out.push_str(&format!(
        "{:<10} {:>12} {:>12}\n",
        "state", "source", "destination"
    ));
    for state in JobState::ALL {
        let a = r.source.get(&state).copied().unwrap_or(0);
        let b = r.destination.get(&state).copied().unwrap_or(0);
        if r.dry_run {
            out.push_str(&format!("{:<10} {a:>12} {:>12}\n", state.as_str(), "-"));
        } else {
            out.push_str(&format!("{:<10} {a:>12} {b:>12}\n", state.as_str()));
        }
    }
    if !r.dry_run {
        out.push_str(if r.counts_match() {
            "count check: ok (every job read is in the destination, in the same state)\n"
        } else {
            "count check: FAILED\n"
        });
    }
    out.push_str("not copied: the plugin cache and the event log (see spool migrate --help)\n");
    out
}

/// The file of a `sqlite://PATH` URL.
fn sqlite_path(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    scheme.eq_ignore_ascii_case("sqlite").then_some(rest)
}

/// Same URL, or the same SQLite file under two spellings.
fn same_storage(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (sqlite_path(a), sqlite_path(b)) {
        (Some(x), Some(y)) => match (std::fs::canonicalize(x), std::fs::canonicalize(y)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        },
        _ => false,
    }
}
