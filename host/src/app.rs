//! Daemon wiring: startup order, background tasks, signals and shutdown.
//!
//! Startup: config -> bind the API address (fail fast when taken) -> storage -> runtime ->
//! plugin registry (initial load; watcher for hot reload) -> event hub -> worker pool ->
//! maintenance -> HTTP API, then the `listening on http://ADDR` line.
//! Shutdown (SIGTERM/SIGINT): health says `stopping`, the pool stops claiming, running jobs
//! get `shutdown_grace` to finish (a second signal cuts it short), the rest are stopped and
//! their leases released (`pending` at once), finished attempts are settled, then the HTTP
//! server stops. Exit 0.

use crate::config::Config;
use crate::events::EventHub;
use crate::job::{Clock, SystemClock};
use crate::metrics::Metrics;
use crate::plugins::{PluginEvent, PluginRegistry, WatcherHandle};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::scheduler::{
    Maintenance, MaintenanceConfig, Observer, Pool, PoolConfig, PoolDeps, RegistryPlugins,
    ShutdownReport,
};
use crate::storage::{self, NewEvent, Storage, StorageOptions};
use anyhow::Context;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// What differs between the daemon and `spool bench`.
#[derive(Default)]
pub struct CoreOptions {
    /// Watch the plugins folder for changes (hot reload).
    pub watch: bool,
    /// Run promote/reap/sweep.
    pub maintenance: bool,
    /// Tail the event log for live SSE streams.
    pub live_events: bool,
    pub observer: Option<Arc<dyn Observer>>,
}

/// Everything but the HTTP server: storage, plugins, event hub, pool, maintenance.
pub struct Core {
    pub config: Config,
    pub storage: Arc<dyn Storage>,
    pub registry: PluginRegistry,
    pub metrics: Arc<Metrics>,
    pub events: Arc<EventHub>,
    pub pool: Pool,
    /// The time every part of the core reads (the real clock; tests give storage their own).
    pub clock: Arc<dyn Clock>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _watcher: Option<WatcherHandle>,
}

impl Core {
    pub async fn start(config: Config, opts: CoreOptions) -> anyhow::Result<Core> {
        let storage_opts = StorageOptions {
            max_payload_bytes: config.max_payload,
            max_events: config.max_events,
            cache_quota: config.plugin_cache,
            ..StorageOptions::default()
        };
        private_data_dir(&config.data_dir)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let opened = match &config.fallback {
            Some(spool) => {
                storage::fallback::open(&config.storage, spool, storage_opts, clock.clone()).await
            }
            None => storage::open(&config.storage, storage_opts, clock.clone()).await,
        };
        let storage = opened.with_context(|| {
            format!(
                "cannot open storage `{}`",
                storage::redact_url(&config.storage)
            )
        })?;
        if !config.plugins.exists() {
            std::fs::create_dir_all(&config.plugins).with_context(|| {
                format!(
                    "cannot create the plugins folder `{}`",
                    config.plugins.display()
                )
            })?;
            tracing::info!(dir = %config.plugins.display(), "created the plugins folder: drop NAME.wasm files into it");
        }
        let metrics = Metrics::new();
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(config.cache_dir.clone()),
            max_instances: u32::try_from(config.workers).unwrap_or(u32::MAX),
            default_timeout: config.job_timeout,
            default_memory: config.job_memory,
            trace_guest_logs: true,
            http: config.http.clone(),
            http_observer: Some(metrics.clone()),
            max_payload: config.max_payload,
            clock: clock.clone(),
            ..RuntimeConfig::default()
        })?;
        let registry = PluginRegistry::with_max_file_size(
            runtime,
            config.plugins.clone(),
            config.max_plugin_size,
        );
        let events = EventHub::new(storage.clone());
        match events.skip_to_end().await {
            Ok(_) => {}
            // With a fallback spool the daemon starts while Redis is down; the hub skips the
            // old events on its first successful read instead.
            Err(e @ storage::StorageError::Unavailable(_)) if config.fallback.is_some() => {
                events.skip_on_first_read();
                tracing::warn!(error = %e, "cannot read the event log yet (storage unavailable); starting with the fallback spool");
            }
            Err(e) => return Err(anyhow::Error::new(e).context("cannot read the event log")),
        }
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // Subscribe before the first scan so its plugin.loaded events are published too.
        tasks.push(tokio::spawn(forward_plugin_events(
            registry.subscribe(),
            metrics.clone(),
            storage.clone(),
            stop_rx.clone(),
        )));
        registry.load_all().await;
        let watcher = if opts.watch {
            match registry.spawn_watcher() {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "hot reload is off: restart the daemon to pick up plugin changes");
                    None
                }
            }
        } else {
            None
        };
        if opts.live_events {
            tasks.push(tokio::spawn(events.clone().run(stop_rx.clone())));
        }
        let pool = Pool::start(
            PoolDeps {
                storage: storage.clone(),
                plugins: Arc::new(RegistryPlugins::new(registry.clone())),
                metrics: metrics.clone(),
                clock: clock.clone(),
                observer: opts.observer,
            },
            PoolConfig {
                workers: config.workers,
                lease: config.lease,
                retry: config.retry,
                worker_id: worker_id(),
                shutdown_grace: config.shutdown_grace,
            },
        );
        if opts.maintenance {
            let m = Maintenance::new(
                storage.clone(),
                metrics.clone(),
                MaintenanceConfig::new(
                    config.lease,
                    config.sweep_interval,
                    config.retention.clone(),
                ),
            );
            tasks.push(tokio::spawn(m.run(stop_rx.clone())));
            tasks.push(tokio::spawn(crate::cron::run(
                storage.clone(),
                clock.clone(),
                stop_rx.clone(),
            )));
        }
        Ok(Core {
            config,
            storage,
            registry,
            metrics,
            events,
            pool,
            clock,
            stop,
            tasks,
            _watcher: watcher,
        })
    }

    /// Turns true when shutdown begins.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub async fn shutdown(self, hurry: impl std::future::Future<Output = ()>) -> ShutdownReport {
        let _ = self.stop.send(true);
        let report = self.pool.shutdown(hurry).await;
        for t in self.tasks {
            let _ = t.await;
        }
        report
    }
}

/// The data folder holds the database, fallback spool and compiled plugins: create it 0700,
/// and make an existing one of this user 0700: jobs hold other people's payloads.
fn private_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data folder `{}`", dir.display()))?;
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the data folder `{}`", dir.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if meta.uid() == unsafe { libc::geteuid() } && meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "cannot make the data folder `{}` private (chmod 700)",
                    dir.display()
                )
            },
        )?;
    }
    Ok(())
}

/// Registry events become `plugin.*` events in the storage's event log.
async fn forward_plugin_events(
    mut rx: broadcast::Receiver<PluginEvent>,
    metrics: Arc<Metrics>,
    storage: Arc<dyn Storage>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = stop.changed() => return,
        };
        match event {
            Ok(e) => {
                match &e {
                    PluginEvent::Loaded {
                        name,
                        types,
                        flow,
                        schedules,
                        ..
                    } => {
                        metrics.plugin_load(name, true);
                        sync_plugin_schedules(storage.as_ref(), name, schedules).await;
                        // Every daemon that loads the plugin writes the same limits; the
                        // write changes nothing (and records no event) when they are there.
                        for t in types {
                            let change = storage::flow::ControlChange::Manifest(*flow);
                            if let Err(err) = storage.control_type(t, change).await {
                                tracing::warn!(error = %err, r#type = %t,
                                    "cannot store the plugin's rate limit and global concurrency; \
                                     they apply once storage is back and the plugin reloads");
                            }
                        }
                    }
                    PluginEvent::Failed { name, .. } => metrics.plugin_load(name, false),
                    PluginEvent::Unloaded { .. } => {}
                }
                if let Err(err) = storage.publish_event(plugin_event(&e)).await {
                    tracing::warn!(error = %err, "cannot record a plugin event");
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "plugin events came too fast; some were not recorded"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Stores the schedules a plugin's manifest declares and drops the ones it no longer does.
/// Every daemon loading the plugin writes the same; a replaced schedule keeps its last tick.
async fn sync_plugin_schedules(
    storage: &dyn Storage,
    plugin: &str,
    schedules: &[storage::flow::Schedule],
) {
    let existing = match storage.schedules().await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, plugin, "cannot read the schedules to store the plugin's; they are stored when it next loads");
            return;
        }
    };
    for r in &existing {
        let owned = r.schedule.plugin.as_deref() == Some(plugin);
        if owned
            && !schedules.iter().any(|s| s.name == r.schedule.name)
            && let Err(e) = storage.delete_schedule(&r.schedule.name).await
        {
            tracing::warn!(error = %e, schedule = %r.schedule.name, "cannot remove a schedule the plugin dropped");
        }
    }
    for s in schedules {
        let mut s = s.clone();
        // A schedule an operator paused stays paused when the plugin reloads.
        if let Some(old) = existing.iter().find(|r| r.schedule.name == s.name) {
            s.paused = old.schedule.paused;
            if old.schedule == s {
                continue;
            }
        }
        if let Err(e) = storage.put_schedule(s.clone()).await {
            tracing::warn!(error = %e, schedule = %s.name, "cannot store the plugin's schedule");
        }
    }
}

fn plugin_event(e: &PluginEvent) -> NewEvent {
    let kind = match e {
        PluginEvent::Loaded { .. } => "plugin.loaded",
        PluginEvent::Unloaded { .. } => "plugin.unloaded",
        PluginEvent::Failed { .. } => "plugin.failed",
    };
    let mut data = serde_json::to_value(e).unwrap_or_default();
    if let Some(obj) = data.as_object_mut() {
        obj.remove("event");
    }
    NewEvent {
        kind: kind.to_string(),
        job_id: None,
        job_type: None,
        data,
    }
}

/// `host-pid`: which daemon holds a lease (diagnostics only; leases are fenced by token).
fn worker_id() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "spool".to_string()
    };
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_events_become_plugin_kinds() {
        let e = plugin_event(&PluginEvent::Unloaded {
            name: "echo".into(),
        });
        assert_eq!(e.kind, "plugin.unloaded");
        assert_eq!(e.data, serde_json::json!({ "name": "echo" }));
    }
}
