//! Hot reload: watch the plugins folder and reconcile the registry with it.
//!
//! inotify events that mean "a file is complete" (close after write, rename into or out of
//! the folder, removal) mark a plugin name dirty; after 150 ms without further events for that
//! name it is reconciled (read, hash, compile off the hot path, swap). `Modify(Data)` is
//! ignored: it fires mid-copy, and compiling a half-written file is how reloads go wrong.
//! Dot files and temp names are ignored. Every 5 s a rescan by
//! mtime and size catches what inotify misses (NFS, some bind mounts, a full event queue).

use super::{LoadError, PluginRegistry, plugin_name_of};
use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Quiet time after the last event for a name before it is reloaded.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(150);
/// Polling fallback period.
pub(crate) const RESCAN_EVERY: Duration = Duration::from_secs(5);

/// Keeps the watcher running; dropping it stops watching.
pub struct WatcherHandle {
    _watcher: Option<notify::RecommendedWatcher>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for WatcherHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatcherHandle")
            .field("inotify", &self._watcher.is_some())
            .finish()
    }
}

impl Drop for WatcherHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Message {
    Changed(String),
    Rescan,
}

pub(crate) fn spawn(registry: PluginRegistry) -> Result<WatcherHandle, LoadError> {
    let dir = registry.dir().to_path_buf();
    if !dir.is_dir() {
        return Err(LoadError::Watch {
            dir,
            reason: "it is not a folder; create it or pass another `--plugins`".into(),
        });
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |event: notify::Result<Event>| match event {
        Ok(event) => {
            if event.need_rescan() {
                let _ = tx.send(Message::Rescan);
            }
            if is_complete_change(&event.kind) {
                for path in &event.paths {
                    if let Some((name, _)) = plugin_name_of(path) {
                        let _ = tx.send(Message::Changed(name));
                    }
                }
            }
        }
        Err(_) => {
            let _ = tx.send(Message::Rescan);
        }
    };
    let watcher = match notify::recommended_watcher(handler) {
        Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the plugins folder; polling every 5s instead");
                None
            }
        },
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot start a file watcher; polling every 5s instead");
            None
        }
    };
    let task = tokio::spawn(run(registry, rx));
    Ok(WatcherHandle {
        _watcher: watcher,
        task,
    })
}

fn is_complete_change(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Remove(_)
    )
}

async fn run(registry: PluginRegistry, mut rx: mpsc::UnboundedReceiver<Message>) {
    let mut pending: HashMap<String, Instant> = HashMap::new();
    let mut rescan = tokio::time::interval_at(Instant::now() + RESCAN_EVERY, RESCAN_EVERY);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next_due = pending.values().min().copied();
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Changed(name)) => {
                    pending.insert(name, Instant::now() + DEBOUNCE);
                }
                Some(Message::Rescan) => {
                    registry.rescan().await;
                }
                // The notify watcher is gone (inotify unavailable): keep polling.
                None => {
                    rescan.tick().await;
                    registry.rescan().await;
                }
            },
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                let now = Instant::now();
                let due: Vec<String> = pending.iter().filter(|(_, t)| **t <= now).map(|(n, _)| n.clone()).collect();
                for name in due {
                    pending.remove(&name);
                    registry.reconcile(&name).await;
                }
            }
            _ = rescan.tick() => {
                registry.rescan().await;
            }
        }
    }
}
