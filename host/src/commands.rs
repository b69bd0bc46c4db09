//! The commands of the `spool` binary that do more than talk to a daemon over HTTP. Each owns
//! its arguments (clap structs) and its `run`; `cli` parses the command line and dispatches.
//!
//! - `daemon`: the daemon (config, the core from `app`, the HTTP API, shutdown).
//! - `exec`: one job through a plugin, no queue.
//! - `bench`: throughput and latency of an in-process daemon core.
//! - `migrate`: copy every job from one storage to another.
//! - `new`: a plugin project from a template.

pub mod bench;
pub mod daemon;
pub mod exec;
pub mod migrate;
pub mod new;

/// A rate limit argument (`100/1m`): checked here, kept as written.
pub(crate) fn parse_rate_arg(s: &str) -> Result<String, String> {
    s.parse::<crate::storage::flow::RateLimit>()?;
    Ok(s.to_string())
}
