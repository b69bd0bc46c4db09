//! `spool daemon`: load the config, bind the API address (fail fast when it is taken), start
//! the daemon core (`app::Core`), serve the HTTP API, then wait for SIGTERM/SIGINT and shut
//! down in order (see `app`).

use crate::api::{self, ApiState, Catalog};
use crate::app::{Core, CoreOptions};
use crate::config::{Config, FlagOverrides};
use crate::plugins::{PluginRegistry, PluginState};
use crate::storage;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Config file (default: ./spool.toml when it exists)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Storage URL: sqlite://PATH, memory://, redis://HOST:PORT (default sqlite://./data/spool.db)
    #[arg(long)]
    pub storage: Option<String>,
    /// Plugins folder, watched for changes (default ./data/plugins)
    #[arg(long)]
    pub plugins: Option<PathBuf>,
    /// Address for the HTTP API (default 127.0.0.1:7878; port 0 picks a free one)
    #[arg(long)]
    pub listen: Option<String>,
    /// Jobs run at once (default: twice the cores, at least 4)
    #[arg(long)]
    pub workers: Option<i64>,
    /// Lease length, e.g. 30s: a crashed daemon's jobs return to the queue after it
    #[arg(long)]
    pub lease: Option<String>,
    /// How long running jobs may finish after SIGTERM/SIGINT, e.g. 10s
    #[arg(long)]
    pub shutdown_grace: Option<String>,
    /// Compiled-plugin cache folder (default <data_dir>/cache, i.e. ./data/cache)
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Local SQLite spool (PATH or sqlite://PATH) taking jobs while Redis is unreachable
    /// (redis storage only)
    #[arg(long, value_name = "PATH")]
    pub fallback: Option<String>,
}

/// `spool daemon`.
pub async fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let flags = FlagOverrides {
        storage: args.storage,
        plugins: args.plugins,
        listen: args.listen,
        workers: args.workers,
        lease: args.lease,
        shutdown_grace: args.shutdown_grace,
        cache_dir: args.cache_dir,
        fallback: args.fallback,
    };
    let config = Config::load(args.config.as_deref(), flags)?;
    let (listener, addr) = api::routes::bind(config.listen).await?;
    tracing::info!(
        storage = %storage::redact_url(&config.storage),
        plugins = %config.plugins.display(),
        workers = config.workers,
        lease = %crate::units::show(config.lease),
        "starting spool {}",
        env!("CARGO_PKG_VERSION")
    );
    let core = Core::start(
        config,
        CoreOptions {
            watch: true,
            maintenance: true,
            live_events: true,
            observer: None,
        },
    )
    .await?;
    let state = Arc::new(ApiState {
        clock: core.clock.clone(),
        storage: core.storage.clone(),
        catalog: Arc::new(RegistryCatalog(core.registry.clone())),
        metrics: core.metrics.clone(),
        events: core.events.clone(),
        max_payload: core.config.max_payload,
        default_max_attempts: core.config.retry.max_attempts,
        job_timeout: core.config.job_timeout,
        api_hosts: core.config.api_hosts.clone(),
        api: core.config.api,
        cache_quota: core.config.plugin_cache,
        event_streams: Default::default(),
        api_token: core.config.api_token.clone(),
        started: Instant::now(),
        stop: core.stopping(),
        cancel_local: core.pool.cancel_hook(),
        probe_cache: Default::default(),
    });
    let (http_stop, mut http_stop_rx) = watch::channel(false);
    let mut server = tokio::spawn(api::serve(listener, state, async move {
        let _ = http_stop_rx.changed().await;
    }));
    // Tests and scripts wait for this exact line; print it whatever the log level.
    eprintln!("listening on http://{addr}");
    let mut signals = Signals::new()?;
    // The server only ends on its own if it failed; then the daemon stops too.
    let ended = tokio::select! {
        _ = signals.next() => false,
        r = &mut server => {
            match r {
                Ok(Ok(())) => tracing::error!("the HTTP server stopped unexpectedly; shutting down"),
                Ok(Err(e)) => tracing::error!(error = %e, "the HTTP server failed; shutting down"),
                Err(e) => tracing::error!(error = %e, "the HTTP server task failed; shutting down"),
            }
            true
        }
    };
    tracing::info!(
        grace = %crate::units::show(core.config.shutdown_grace),
        // Leases held: running jobs and the claimed ones about to start (given back at once).
        leased = core.pool.running(),
        "shutting down: no new jobs are claimed; running jobs may finish (signal again to stop them now)"
    );
    let report = core.shutdown(async move { signals.next().await }).await;
    let _ = http_stop.send(true);
    if !ended {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the HTTP server stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "the HTTP server task failed"),
        }
    }
    tracing::info!(
        finished = report.finished,
        released = report.released,
        "stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM and SIGINT.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("received SIGTERM"),
            _ = self.int.recv() => tracing::info!("received SIGINT"),
        }
    }
}

/// The registry as the API sees it.
struct RegistryCatalog(PluginRegistry);

impl Catalog for RegistryCatalog {
    fn handles(&self, job_type: &str) -> bool {
        self.0.for_type(job_type).is_some()
    }
    fn max_attempts_for(&self, job_type: &str) -> Option<u32> {
        self.0
            .for_type(job_type)
            .and_then(|p| p.manifest.retry.max_attempts)
    }
    fn timeout_for(&self, job_type: &str) -> Option<std::time::Duration> {
        self.0.for_type(job_type).and_then(|p| p.manifest.timeout)
    }
    fn plugins(&self) -> serde_json::Value {
        serde_json::to_value(self.0.list()).unwrap_or_default()
    }
    fn counts(&self) -> (u64, u64) {
        let list = self.0.list();
        let loaded = list
            .iter()
            .filter(|p| p.state == PluginState::Loaded)
            .count() as u64;
        (loaded, list.len() as u64 - loaded)
    }
    fn loaded_names(&self) -> Vec<String> {
        self.0.names()
    }
    fn instances(&self) -> crate::metrics::InstanceCounts {
        let runtime = self.0.runtime();
        crate::metrics::InstanceCounts {
            running: runtime.instances_in_use(),
            idle: runtime.idle_instances(),
        }
    }
}
