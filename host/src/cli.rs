//! Command-line interface: clap definitions and dispatch. `daemon` runs the host (`app`),
//! client commands talk to a daemon's HTTP API (`cli/client_cmds.rs`), `exec` runs one job
//! through a plugin with no queue, `bench` measures an in-process daemon core.

mod client;
mod client_cmds;
mod flow_cmds;
mod table;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error (daemon unreachable, request refused, job or daemon unhealthy)
  2  usage error (bad flags or values)
  3  `submit --wait`: the job ended failed or cancelled

Client commands talk to SPOOL_URL (default http://127.0.0.1:7878) and send SPOOL_TOKEN as a
bearer token when it is set.";

#[derive(Debug, Parser)]
#[command(
    name = "spool",
    version,
    about = "A job queue whose handlers are WebAssembly components",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Print JSON instead of tables (client commands and bench)
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: worker pool, maintenance, HTTP API (config: spool.toml, SPOOL_*, flags)
    Daemon(crate::commands::daemon::DaemonArgs),
    /// Submit a job
    #[command(after_help = EXIT_CODES)]
    Submit(SubmitArgs),
    /// Show one job
    Job(IdArg),
    /// List jobs, newest first
    Jobs(JobsArgs),
    /// Replay a failed or cancelled job (attempts reset)
    Retry(IdArg),
    /// Cancel a job (a running one is told to stop)
    Cancel(IdArg),
    /// Delete a job
    Delete(IdArg),
    /// Job counts per type and status
    Stats,
    /// The daemon's health (exit 1 when not healthy or degraded)
    Health,
    /// Loaded plugins and plugin files that failed to load
    Plugins,
    /// Stop starting jobs of a type on every daemon (enqueues are still accepted; running
    /// jobs finish)
    Pause(TypeArg),
    /// Start jobs of a paused type again
    Resume(TypeArg),
    /// Show or change rate limits and global concurrency per job type (held in storage, so
    /// every daemon obeys them)
    Limits(LimitsArgs),
    /// List cron schedules with their next fire times, or add, remove, pause or resume one
    Schedules(SchedulesArgs),
    /// Follow job and plugin events live (Ctrl-C to stop)
    Events(EventsArgs),
    /// Run one job through a plugin, with the daemon's limits and host imports, and print the
    /// result JSON (for plugin authors; no queue, cache in memory, follow-up jobs printed)
    Exec(crate::commands::exec::ExecArgs),
    /// Copy every job (all states, results, ids) from one storage to another; safe to run twice
    Migrate(crate::commands::migrate::MigrateArgs),
    /// Create a plugin project in Rust, JavaScript, Python or C (builds with ./build.sh)
    New(crate::commands::new::NewArgs),
    /// Measure throughput and latency of an in-process daemon core (storage, plugins and the
    /// real worker pool; no HTTP) running `echo` jobs
    Bench(crate::commands::bench::BenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The job type (selects the plugin)
    #[arg(value_name = "TYPE")]
    pub job_type: String,
    /// The payload as JSON, or `-` to read it from stdin (default: {})
    pub payload: Option<String>,
    /// 1 (runs first) to 10, or high, normal, low
    #[arg(long, value_parser = parse_priority_arg)]
    pub priority: Option<u8>,
    /// Run no sooner than this from now, e.g. 30s, 5m
    #[arg(long, value_parser = parse_duration_arg, conflicts_with = "at")]
    pub delay: Option<std::time::Duration>,
    /// Run no sooner than this time (RFC 3339, e.g. 2026-08-01T12:00:00Z)
    #[arg(long, value_parser = parse_time_arg)]
    pub at: Option<String>,
    /// Attempts in all (1 = no retries)
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_attempts: Option<u32>,
    /// Idempotency key: while a job with this key is live, it is returned instead
    #[arg(long)]
    pub unique_key: Option<String>,
    /// With --unique-key: the key stays taken this long after the job finishes (a throttle:
    /// submits in that window return the finished job), e.g. 10m
    #[arg(long, value_parser = parse_duration_arg, requires = "unique_key")]
    pub unique_for: Option<std::time::Duration>,
    /// With --unique-key: a job holding the key that has not started takes this payload and
    /// waits this long again (the last of a burst wins), e.g. 5s
    #[arg(long, value_parser = parse_duration_arg, requires = "unique_key")]
    pub debounce: Option<std::time::Duration>,
    /// Timeout of each attempt, e.g. 10s (default: the plugin's)
    #[arg(long, value_parser = parse_duration_arg)]
    pub timeout: Option<std::time::Duration>,
    /// Wait until the job finishes and print its result (exit 3 if it failed or was cancelled)
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct TypeArg {
    /// The job type
    #[arg(value_name = "TYPE")]
    pub job_type: String,
}

#[derive(Debug, clap::Args)]
pub struct LimitsArgs {
    #[command(subcommand)]
    pub action: Option<LimitsAction>,
}

#[derive(Debug, Subcommand)]
pub enum LimitsAction {
    /// Set a type's rate limit and/or global concurrency (overrides the plugin manifest's)
    Set {
        /// The job type
        #[arg(value_name = "TYPE")]
        job_type: String,
        /// Starts per window across every daemon, e.g. 100/1m or 5/1s
        #[arg(long, value_parser = crate::commands::parse_rate_arg)]
        rate: Option<String>,
        /// Jobs of the type running at once across every daemon
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        concurrency: Option<u32>,
    },
    /// Drop run-time overrides (the plugin manifest's values apply again); both by default
    Clear {
        /// The job type
        #[arg(value_name = "TYPE")]
        job_type: String,
        /// Only the rate limit
        #[arg(long)]
        rate: bool,
        /// Only the global concurrency
        #[arg(long)]
        concurrency: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct SchedulesArgs {
    #[command(subcommand)]
    pub action: Option<ScheduleAction>,
}

#[derive(Debug, Subcommand)]
pub enum ScheduleAction {
    /// Add a schedule, or replace the one with this name (its last tick is kept)
    Add {
        /// The schedule's name (letters, digits, `-`, `_`, `.`, `:`)
        name: String,
        /// 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first)
        #[arg(long)]
        cron: String,
        /// The job type each tick enqueues
        #[arg(long = "type")]
        job_type: String,
        /// The payload of each job, as JSON (default: {})
        #[arg(long, default_value = "{}")]
        payload: String,
        /// The time zone the expression is read in (an IANA name)
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// After downtime: `run_once` enqueues the latest missed tick once, `skip` none
        #[arg(long, default_value = "run_once", value_parser = ["run_once", "skip"])]
        missed: String,
        /// 1 (runs first) to 10, or high, normal, low
        #[arg(long, value_parser = parse_priority_arg)]
        priority: Option<u8>,
        /// Attempts in all for each job
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        max_attempts: Option<u32>,
    },
    /// Remove a schedule (jobs it enqueued stay)
    Remove { name: String },
    /// Stop a schedule's ticks (none fire while paused, none afterwards for the pause)
    Pause { name: String },
    /// Start a paused schedule's ticks again
    Resume { name: String },
}

#[derive(Debug, clap::Args)]
pub struct IdArg {
    /// The job id
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    /// scheduled, pending, running, retrying, completed, failed or cancelled
    #[arg(long, value_parser = parse_status_arg)]
    pub status: Option<String>,
    /// Only jobs of this type
    #[arg(long = "type")]
    pub job_type: Option<String>,
    /// At most this many (1-1000)
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Continue after a previous page (its `next` cursor)
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Only events of this job
    #[arg(long)]
    pub job: Option<String>,
    /// Only events of jobs of this type
    #[arg(long = "type")]
    pub job_type: Option<String>,
    /// Only this kind of event, or a prefix such as `job` or `plugin`
    #[arg(long)]
    pub kind: Option<String>,
    /// Start after this event id (replays stored events first)
    #[arg(long)]
    pub after: Option<String>,
}

impl Command {
    /// Commands that talk to a daemon over HTTP.
    pub fn is_client(&self) -> bool {
        !matches!(
            self,
            Command::Daemon(_)
                | Command::Exec(_)
                | Command::New(_)
                | Command::Migrate(_)
                | Command::Bench(_)
        )
    }
}

fn parse_priority_arg(s: &str) -> Result<u8, String> {
    crate::job::parse_priority(s).map_err(|e| e.to_string())
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::units::parse_duration(s)
}

fn parse_time_arg(s: &str) -> Result<String, String> {
    crate::job::serde_time::parse_time(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

fn parse_status_arg(s: &str) -> Result<String, String> {
    s.parse::<crate::job::JobState>()
        .map(|st| st.as_str().to_string())
        .map_err(|e| e.to_string())
}

/// Entry point for `main.rs`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    if cli.command.is_client() {
        // Like other Unix tools, stop quietly when the reader goes away (`spool events | head`).
        // Rust ignores SIGPIPE by default; the daemon keeps that (a closed socket must not
        // kill it), client commands get the default back.
        // SAFETY: setting a signal disposition before any thread that could race it starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let json = cli.json;
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Daemon(args) => crate::commands::daemon::run(args).await,
            Command::Exec(args) => crate::commands::exec::run(args).await,
            Command::New(args) => crate::commands::new::run(args),
            Command::Migrate(args) => crate::commands::migrate::run(args).await,
            Command::Bench(args) => crate::commands::bench::run(args, json).await,
            client => client_cmds::run(client, json).await,
        }
    });
    // Background tasks (a stuck plugin, an SSE stream) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPOOL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: a log file or journal gets plain text (and each job's span
    // is formatted once per job, so the escapes were a measurable part of a busy daemon).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_priority_is_a_usage_error() {
        let e =
            Cli::try_parse_from(["spool", "submit", "echo", "--priority", "urgent"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("invalid priority `urgent`"), "{e}");
    }

    #[test]
    fn delay_and_at_conflict() {
        let e = Cli::try_parse_from([
            "spool",
            "submit",
            "echo",
            "--delay",
            "1s",
            "--at",
            "2030-01-01T00:00:00Z",
        ])
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn json_flag_works_after_the_command() {
        let cli = Cli::try_parse_from(["spool", "stats", "--json"]).unwrap();
        assert!(cli.json);
    }

    #[test]
    fn help_says_what_is_not_copied() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        let migrate = cli
            .find_subcommand_mut("migrate")
            .expect("the migrate command is wired");
        let long = migrate.render_long_help().to_string();
        assert!(long.contains("Not copied: the plugin cache"), "{long}");
        assert!(
            long.contains("Steps for moving a daemon from SQLite to Redis"),
            "{long}"
        );
        let short = migrate.render_help().to_string();
        assert!(short.contains("Not copied: the"), "{short}");
        assert!(
            short.contains("--dry-run") && short.contains("--force"),
            "{short}"
        );
    }
}
