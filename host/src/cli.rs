//! Command-line interface: clap definitions and dispatch. Daemon and client commands are
//! filled in by the daemon work; `exec` runs one job through a plugin with no queue.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "spool", version, about = "A job queue whose handlers are WebAssembly components")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one job through a plugin, with the daemon's limits and host imports, and print the
    /// result JSON (for plugin authors; no queue, cache in memory, follow-up jobs printed)
    Exec(ExecArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The plugin component (`NAME.wasm`); `NAME.toml` beside it is read when present
    pub plugin: PathBuf,
    /// The job payload as JSON, or `-` to read it from stdin (default: `{}`)
    pub payload: Option<String>,
    /// The job type (default: the plugin's first type)
    #[arg(long = "type")]
    pub job_type: Option<String>,
    /// Override the manifest's timeout, e.g. `5s`
    #[arg(long)]
    pub timeout: Option<String>,
}

/// Entry point for `main.rs`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Exec(args) => crate::exec::run(args).await,
        }
    });
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
