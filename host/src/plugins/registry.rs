//! The plugin registry: which plugin version serves which job type, swapped atomically.
//!
//! Readers (`for_type`, once per job) take a lock-free snapshot from an `ArcSwap`. Writers
//! (the initial scan and the watcher) go through `reconcile`, one at a time: read the files,
//! skip them if their content is unchanged, compile and check the new version off the hot
//! path, then publish a new snapshot. A job keeps the `Arc<LoadedPlugin>` it started with, so
//! it finishes on the old version; a file that fails to load leaves the old version serving.

use super::loader::{self, Stamp};
use super::secrets::{SecretStamps, read_secrets, secret_files_changed, stamp_secret_files};
use super::{
    LoadError, LoadFailure, LoadedPlugin, PluginEvent, PluginState, PluginStatus, WatcherHandle,
};
use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// What jobs see: loaded plugins by name and by job type.
#[derive(Default)]
struct Snapshot {
    by_name: BTreeMap<String, Arc<LoadedPlugin>>,
    by_type: HashMap<String, Arc<LoadedPlugin>>,
}

impl Snapshot {
    fn with(&self, name: &str, plugin: Option<Arc<LoadedPlugin>>) -> Snapshot {
        let mut by_name = self.by_name.clone();
        match plugin {
            Some(p) => by_name.insert(name.to_string(), p),
            None => by_name.remove(name),
        };
        let by_type = by_name
            .values()
            .flat_map(|p| p.types.iter().map(move |t| (t.clone(), p.clone())))
            .collect();
        Snapshot { by_name, by_type }
    }
}

struct Failure {
    error: LoadError,
    path: PathBuf,
}

/// Bookkeeping of the single writer (under `Inner::writer`).
#[derive(Default)]
struct Book {
    /// Fingerprint of the files last tried per name (loaded or failed): same content, no work.
    fingerprints: HashMap<String, [u8; 32]>,
    /// mtime/size per name at the last reconcile, for the polling fallback.
    stamps: HashMap<String, Stamp>,
    /// The plugin's secret files as last read; a change reloads the plugin.
    secret_stamps: HashMap<String, SecretStamps>,
}

struct Inner {
    runtime: Runtime,
    dir: PathBuf,
    current: ArcSwap<Snapshot>,
    /// Written by `reconcile`, read by `list`.
    failed: Mutex<BTreeMap<String, Failure>>,
    writer: tokio::sync::Mutex<Book>,
    events: broadcast::Sender<PluginEvent>,
    /// Largest plugin file read (config `max_plugin_size`).
    max_file_size: u64,
}

#[derive(Clone)]
pub struct PluginRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRegistry")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl PluginRegistry {
    pub fn new(runtime: Runtime, dir: PathBuf) -> Self {
        Self::with_max_file_size(runtime, dir, super::DEFAULT_MAX_PLUGIN_SIZE)
    }

    /// A registry that refuses plugin files over `max_file_size` bytes.
    pub fn with_max_file_size(runtime: Runtime, dir: PathBuf, max_file_size: u64) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                runtime,
                dir,
                current: ArcSwap::from_pointee(Snapshot::default()),
                failed: Mutex::new(BTreeMap::new()),
                writer: tokio::sync::Mutex::new(Book::default()),
                events,
                max_file_size,
            }),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Initial scan of the folder: load every plugin (sorted by name, so when two claim the
    /// same type the first name wins and the second is reported), unload vanished ones.
    pub async fn load_all(&self) -> Vec<PluginEvent> {
        let mut names = match loader::list_names(&self.inner.dir) {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(dir = %self.inner.dir.display(), error = %e, "cannot list the plugins folder");
                BTreeSet::new()
            }
        };
        names.extend(self.inner.current.load().by_name.keys().cloned());
        let mut events = Vec::new();
        for name in names {
            events.extend(self.reconcile(&name).await);
        }
        events
    }

    /// Start the hot-reload watcher (inotify plus a slow polling fallback). Needs a tokio
    /// runtime; stops when the handle is dropped.
    pub fn spawn_watcher(&self) -> Result<WatcherHandle, LoadError> {
        super::watcher::spawn(self.clone())
    }

    /// The plugin for a job type. Keep the `Arc` for the whole job.
    pub fn for_type(&self, job_type: &str) -> Option<Arc<LoadedPlugin>> {
        self.inner.current.load().by_type.get(job_type).cloned()
    }

    /// A loaded plugin by name.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.inner.current.load().by_name.get(name).cloned()
    }

    /// Every job type some loaded plugin handles, sorted.
    pub fn types(&self) -> Vec<String> {
        let mut t: Vec<String> = self.inner.current.load().by_type.keys().cloned().collect();
        t.sort();
        t
    }

    /// Names of the loaded plugins.
    pub fn names(&self) -> Vec<String> {
        self.inner.current.load().by_name.keys().cloned().collect()
    }

    /// Loaded plugins and failed files, by name.
    pub fn list(&self) -> Vec<PluginStatus> {
        let snapshot = self.inner.current.load();
        let failed = lock(&self.inner.failed);
        let names: BTreeSet<&String> = snapshot.by_name.keys().chain(failed.keys()).collect();
        names
            .into_iter()
            .map(|name| {
                let error = failed.get(name).map(|f| f.error.to_string());
                match snapshot.by_name.get(name) {
                    Some(p) => PluginStatus {
                        name: name.clone(),
                        version: Some(p.version.clone()),
                        types: p.types.clone(),
                        state: PluginState::Loaded,
                        error,
                        loaded_at_ms: Some(p.loaded_at_ms),
                        compile: Some(p.compile),
                        path: p.path.clone(),
                        manifest: Some(p.manifest.view()),
                    },
                    None => PluginStatus {
                        name: name.clone(),
                        version: None,
                        types: Vec::new(),
                        state: PluginState::Failed,
                        error,
                        loaded_at_ms: None,
                        compile: None,
                        path: failed.get(name).map(|f| f.path.clone()).unwrap_or_default(),
                        manifest: None,
                    },
                }
            })
            .collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PluginEvent> {
        self.inner.events.subscribe()
    }

    /// Bring one plugin in line with its files: load, reload, unload or report. Returns the
    /// events it caused (also broadcast). Plugins that failed only because another plugin
    /// held their job type are tried again once that changes.
    pub async fn reconcile(&self, name: &str) -> Vec<PluginEvent> {
        // Read the files before taking the writer lock, so that a slow read holds up no other
        // plugin. Under the lock they are used only while their stamp (mtime and size of both
        // files) is the one taken before the read; else they are read again there, so an
        // older read can never replace a newer version loaded meanwhile.
        let dir = &self.inner.dir;
        let before = loader::stamp(dir, name);
        let read = loader::read_plugin(dir, name, self.inner.max_file_size).await;
        let mut prefetched = Some((before, read));
        let mut book = self.inner.writer.lock().await;
        let mut events = Vec::new();
        let mut work = vec![name.to_string()];
        let mut retried = BTreeSet::new();
        while let Some(name) = work.pop() {
            let files = prefetched
                .take()
                .filter(|(stamp, _)| *stamp == loader::stamp(dir, &name))
                .map(|(_, read)| read);
            let Some(event) = self.reconcile_one(&mut book, &name, files).await else {
                continue;
            };
            if matches!(
                event,
                PluginEvent::Loaded { .. } | PluginEvent::Unloaded { .. }
            ) {
                for blocked in self.conflicted() {
                    if blocked != name && retried.insert(blocked.clone()) {
                        book.fingerprints.remove(&blocked);
                        work.push(blocked);
                    }
                }
            }
            events.push(event);
        }
        events
    }

    fn conflicted(&self) -> Vec<String> {
        lock(&self.inner.failed)
            .iter()
            .filter(|(_, f)| matches!(f.error.failure(), Some(LoadFailure::TypeConflict { .. })))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// `read`: the files as read before the lock (see `reconcile`), when still current.
    async fn reconcile_one(
        &self,
        book: &mut Book,
        name: &str,
        read: Option<Result<Option<loader::PluginFiles>, LoadError>>,
    ) -> Option<PluginEvent> {
        let dir = &self.inner.dir;
        book.stamps
            .insert(name.to_string(), loader::stamp(dir, name));
        // A read here, under the lock, is bounded: only regular files are read (a FIFO or
        // device is refused without blocking), up to `max_file_size`.
        let read = match read {
            Some(r) => r,
            None => loader::read_plugin(dir, name, self.inner.max_file_size).await,
        };
        let files = match read {
            Ok(Some(files)) => files,
            Ok(None) => {
                book.fingerprints.remove(name);
                book.stamps.remove(name);
                book.secret_stamps.remove(name);
                lock(&self.inner.failed).remove(name);
                return self.unload(name);
            }
            Err(e) => return Some(self.failed(name, e)),
        };
        // The manifest's secrets are part of what is loaded: a rotated secret file reloads
        // the plugin like a changed manifest. Only a digest of the values is kept.
        let manifest = files.manifest(name);
        let secrets = manifest.as_ref().ok().map(|m| {
            book.secret_stamps
                .insert(name.to_string(), stamp_secret_files(&m.secrets));
            read_secrets(&m.secrets)
        });
        let fingerprint = {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(files.fingerprint);
            match &secrets {
                Some(Ok(s)) => {
                    for name in s.names() {
                        h.update(name.as_bytes());
                        h.update([0]);
                        h.update(s.get(name).unwrap_or_default().as_bytes());
                        h.update([0]);
                    }
                }
                Some(Err(e)) => h.update(e.to_string().as_bytes()),
                None => {}
            }
            let digest: [u8; 32] = h.finalize().into();
            digest
        };
        if book.fingerprints.get(name) == Some(&fingerprint) {
            return None;
        }
        book.fingerprints.insert(name.to_string(), fingerprint);
        let manifest = match manifest {
            Ok(m) => m,
            Err(e) => return Some(self.failed(name, e)),
        };
        let secrets = match secrets {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                let path = files.toml_path.clone();
                return Some(self.failed(
                    name,
                    LoadError::plugin(name, path, LoadFailure::Secret(e.to_string())),
                ));
            }
            None => Default::default(),
        };
        let loaded = LoadedPlugin::from_bytes(
            &self.inner.runtime,
            name,
            &files.wasm_path,
            files.wasm,
            manifest,
            secrets,
        )
        .await;
        let (plugin, _) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => return Some(self.failed(name, e)),
        };
        let current = self.inner.current.load();
        for t in &plugin.types {
            if let Some(other) = current.by_type.get(t)
                && other.name != name
            {
                let reason = LoadFailure::TypeConflict {
                    job_type: t.clone(),
                    other: other.name.clone(),
                };
                // The types come from the manifest when there is one.
                let path = if files.manifest_text.is_some() {
                    &files.toml_path
                } else {
                    &files.wasm_path
                };
                return Some(self.failed(name, LoadError::plugin(name, path, reason)));
            }
        }
        // Single writer (the `writer` lock), so load + store cannot lose an update.
        self.inner
            .current
            .store(Arc::new(current.with(name, Some(plugin.clone()))));
        lock(&self.inner.failed).remove(name);
        tracing::info!(plugin = name, version = %plugin.version, types = ?plugin.types, "plugin loaded");
        Some(
            self.emit(PluginEvent::Loaded {
                name: name.to_string(),
                version: plugin.version.clone(),
                types: plugin.types.clone(),
                flow: plugin.manifest.flow,
                schedules: plugin
                    .manifest
                    .schedules
                    .iter()
                    .map(|s| crate::storage::flow::Schedule {
                        job_type: if s.job_type.is_empty() {
                            plugin
                                .types
                                .first()
                                .cloned()
                                .unwrap_or_else(|| name.to_string())
                        } else {
                            s.job_type.clone()
                        },
                        plugin: Some(name.to_string()),
                        ..s.clone()
                    })
                    .collect(),
            }),
        )
    }

    fn unload(&self, name: &str) -> Option<PluginEvent> {
        let current = self.inner.current.load();
        current.by_name.get(name)?;
        self.inner.current.store(Arc::new(current.with(name, None)));
        tracing::info!(plugin = name, "plugin unloaded");
        Some(self.emit(PluginEvent::Unloaded {
            name: name.to_string(),
        }))
    }

    fn failed(&self, name: &str, error: LoadError) -> PluginEvent {
        let path = match &error {
            LoadError::Plugin { path, .. } => path.clone(),
            LoadError::Watch { dir, .. } => dir.clone(),
        };
        let message = error.to_string();
        tracing::warn!(plugin = name, "{message}");
        lock(&self.inner.failed).insert(
            name.to_string(),
            Failure {
                error,
                path: path.clone(),
            },
        );
        self.emit(PluginEvent::Failed {
            name: name.to_string(),
            path,
            error: message,
        })
    }

    fn emit(&self, event: PluginEvent) -> PluginEvent {
        // No subscribers is fine.
        let _ = self.inner.events.send(event.clone());
        event
    }

    /// The polling fallback: reconcile every plugin whose files' mtime or size changed since
    /// it was last looked at (and new or vanished ones). Returns how many it reconciled.
    pub async fn rescan(&self) -> usize {
        let dir = self.inner.dir.clone();
        let (known, secrets): (BTreeMap<String, Stamp>, Vec<(String, SecretStamps)>) = {
            let book = self.inner.writer.lock().await;
            (
                book.stamps.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                book.secret_stamps
                    .iter()
                    .filter(|(_, s)| !s.is_empty())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        };
        let mut names: BTreeSet<String> = known.keys().cloned().collect();
        names.extend(self.inner.current.load().by_name.keys().cloned());
        // Listing and stat-ing every file is blocking I/O (slow on the network filesystems
        // this fallback exists for): off the async workers.
        let (stamped, rotated) = tokio::task::spawn_blocking(move || {
            names.extend(loader::list_names(&dir).unwrap_or_default());
            let stamped = names
                .into_iter()
                .map(|name| {
                    let stamp = loader::stamp(&dir, &name);
                    (name, stamp)
                })
                .collect::<Vec<_>>();
            let rotated: BTreeSet<String> = secrets
                .into_iter()
                .filter(|(_, s)| secret_files_changed(s))
                .map(|(name, _)| name)
                .collect();
            (stamped, rotated)
        })
        .await
        .unwrap_or_default();
        let mut count = 0;
        for (name, stamp) in stamped {
            if known.get(&name) != Some(&stamp) || rotated.contains(&name) {
                count += 1;
                self.reconcile(&name).await;
            }
        }
        count
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
