//! The `spool migrate` command: flags and help, opening the two stores, the progress line,
//! and the report printed at the end. The copy itself is `super::migrate`.

use super::{
    DEFAULT_BATCH, MigrateError, Options, Progress, Report, StderrProgress, live_leases, migrate,
    mismatch_message,
};
use crate::job::{Clock, JobState, SystemClock};
use crate::storage::{self, StorageOptions};
use anyhow::{Context, bail};
use std::process::ExitCode;
use std::sync::Arc;

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

/// `spool migrate`.
pub async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    if same_storage(&args.from, &args.to) {
        bail!(
            "--from and --to name the same storage (`{}`): give the destination as a different \
             URL",
            crate::storage::redact_url(&args.from)
        );
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (from, to) = (
        crate::storage::redact_url(&args.from),
        crate::storage::redact_url(&args.to),
    );
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
pub(super) fn sqlite_path(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    scheme.eq_ignore_ascii_case("sqlite").then_some(rest)
}

/// Same URL, or the same SQLite file under two spellings.
pub(super) fn same_storage(a: &str, b: &str) -> bool {
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
