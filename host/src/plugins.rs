//! Plugins as the daemon sees them: the manifest (`NAME.toml`), a loaded plugin version, the
//! registry that maps job types to loaded plugins, and the hot-reload watcher.
//!
//! Data flows one way: `watcher -> registry`; the scheduler reads the registry (`for_type`) and
//! hands the pinned `Arc<LoadedPlugin>` to the runtime. The runtime never reads the disk.

mod loader;
pub mod manifest;
mod registry;
pub mod secrets;
mod watcher;

use crate::runtime::{CodeSettings, CompileSource, PluginCode, Runtime, Secrets};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use manifest::{Manifest, ManifestView, RetryPolicy};
pub use registry::PluginRegistry;
pub use secrets::SecretSource;
pub use watcher::WatcherHandle;

pub use crate::runtime::{CompileError, CompileInfo, WORLD};

/// The largest plugin file the loader reads, unless `max_plugin_size` says otherwise.
pub const DEFAULT_MAX_PLUGIN_SIZE: u64 = 256 * 1024 * 1024;

/// One version of one plugin, compiled and pre-linked, ready to run jobs. Jobs hold the `Arc`
/// for their whole run, so a hot reload never pulls code out from under a running job.
pub struct LoadedPlugin {
    pub name: String,
    /// First 12 hex digits of the sha256 of the `.wasm` file, and of the manifest's settings
    /// when it sets any (a config or limit change is a new version; see
    /// `runtime::engine::plugin_version`).
    pub version: String,
    pub types: Vec<String>,
    pub manifest: Manifest,
    pub path: PathBuf,
    pub loaded_at_ms: i64,
    /// Whether the compiled-plugin cache served this load, and how long it took.
    pub compile: CompileInfo,
    /// The compiled, pre-linked component with the manifest's settings: what
    /// `Runtime::execute` runs.
    pub code: PluginCode,
}

impl LoadedPlugin {
    /// Read `wasm` and the manifest's secrets, then compile: a plugin version ready to run.
    pub async fn load(
        runtime: &Runtime,
        name: &str,
        wasm: &Path,
        manifest: Manifest,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        let bytes = tokio::fs::read(wasm)
            .await
            .map_err(|e| LoadError::plugin(name, wasm, LoadFailure::Read(e.to_string())))?;
        let secrets = secrets::read_secrets(&manifest.secrets)
            .map_err(|e| LoadError::plugin(name, wasm, LoadFailure::Secret(e.to_string())))?;
        Self::from_bytes(runtime, name, wasm, bytes, manifest, secrets)
            .await
            .map(|(p, _)| p)
    }

    /// `load` for bytes and secrets already read (the registry hashes them first, so it must
    /// compile exactly what it hashed). Also says whether the compile cache was used.
    pub async fn from_bytes(
        runtime: &Runtime,
        name: &str,
        path: &Path,
        bytes: Vec<u8>,
        manifest: Manifest,
        secrets: Secrets,
    ) -> Result<(Arc<LoadedPlugin>, CompileSource), LoadError> {
        let fail = |reason| LoadError::plugin(name, path, reason);
        let types = manifest.types_or(name);
        for t in &types {
            crate::job::validate_job_type(t).map_err(|e| {
                fail(LoadFailure::Manifest(format!(
                    "{e}; jobs of this type could never be enqueued: rename the plugin file or \
                     set `types` in its manifest"
                )))
            })?;
        }
        let settings = CodeSettings {
            name: name.to_string(),
            memory: manifest.memory,
            timeout: manifest.timeout,
            config: manifest.config.clone(),
            secrets,
            allow: manifest.allow_list(),
            http: manifest.http,
            instances: manifest.instances,
        };
        let compiled = runtime
            .compile(bytes, settings)
            .await
            .map_err(|e| fail(LoadFailure::Code(e)))?;
        let source = compiled.compile.source;
        let plugin = LoadedPlugin {
            name: name.to_string(),
            version: plugin_version(&compiled.digest, &manifest),
            types,
            manifest,
            path: path.to_path_buf(),
            loaded_at_ms: crate::job::system_now_ms(),
            compile: compiled.compile,
            code: compiled.code,
        };
        Ok((Arc::new(plugin), source))
    }

    /// The contract version the component was built for: "0.1.0" or "0.2.0".
    pub fn contract(&self) -> &'static str {
        self.code.contract()
    }
}

/// First 12 hex digits of sha256 over the `.wasm` bytes and, when the plugin has settings,
/// their canonical text: a job records the code and the settings (config values, limits) it
/// ran with, so a manifest-only change is a new version too. The compile cache stays keyed by
/// the `.wasm` bytes alone (`digest`): a manifest change never recompiles.
fn plugin_version(digest: &[u8; 32], manifest: &Manifest) -> String {
    match manifest.canonical() {
        None => hex::encode(&digest[..6]),
        Some(settings) => {
            let both = Sha256::new()
                .chain_update(digest)
                .chain_update(b"\nmanifest\n")
                .chain_update(settings.as_bytes())
                .finalize();
            hex::encode(&both[..6])
        }
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("types", &self.types)
            .field("path", &self.path)
            .field("loaded_at_ms", &self.loaded_at_ms)
            .field("contract", &self.contract())
            .finish_non_exhaustive()
    }
}

/// What happened to a plugin; broadcast by the registry (the daemon turns these into
/// `plugin.loaded` / `plugin.unloaded` / `plugin.failed` events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum PluginEvent {
    Loaded {
        name: String,
        version: String,
        types: Vec<String>,
        /// The manifest's `rate_limit` and `global_concurrency` for each of its types.
        #[serde(skip_serializing_if = "crate::storage::flow::Limits::is_unset")]
        flow: crate::storage::flow::Limits,
        /// The manifest's `[[schedules]]`, owned by the plugin (names listed in the event).
        #[serde(skip)]
        schedules: Vec<crate::storage::flow::Schedule>,
    },
    Unloaded {
        name: String,
    },
    /// The file could not be loaded; the previous version (if any) keeps serving.
    /// `error` is one line: what failed, why, what to do.
    Failed {
        name: String,
        path: PathBuf,
        error: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    Loaded,
    Failed,
}

/// One row of `spool plugins` / `GET /api/v1/plugins`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginStatus {
    pub name: String,
    /// The version serving jobs (None when nothing is loaded).
    pub version: Option<String>,
    pub types: Vec<String>,
    pub state: PluginState,
    /// The last load failure: set for `failed`, and for `loaded` when a newer file failed and
    /// the old version keeps serving.
    pub error: Option<String>,
    pub loaded_at_ms: Option<i64>,
    /// How the loaded version was compiled (None when nothing is loaded).
    pub compile: Option<CompileInfo>,
    pub path: PathBuf,
    /// The loaded version's manifest settings (None when nothing is loaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ManifestView>,
}

/// Why a plugin (or the plugins folder) could not be loaded. `Display` is the whole one-line
/// message, e.g. "failed to load plugin `resize` from `plugins/resize.wasm`: it does not
/// export `spool:plugin/handler@0.1.0`; rebuild it with spool-sdk 0.1".
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("failed to load plugin `{name}` from `{}`: {reason}", path.display())]
    Plugin {
        name: String,
        path: PathBuf,
        reason: LoadFailure,
    },
    #[error("cannot watch the plugins folder `{}`: {reason}", dir.display())]
    Watch { dir: PathBuf, reason: String },
}

impl LoadError {
    pub(crate) fn plugin(name: &str, path: impl Into<PathBuf>, reason: LoadFailure) -> Self {
        LoadError::Plugin {
            name: name.to_string(),
            path: path.into(),
            reason,
        }
    }

    /// The failure reason, when this is about one plugin.
    pub fn failure(&self) -> Option<&LoadFailure> {
        match self {
            LoadError::Plugin { reason, .. } => Some(reason),
            LoadError::Watch { .. } => None,
        }
    }
}

/// The part of a load error after "failed to load plugin `x` from `path`: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadFailure {
    #[error("cannot read it: {0}")]
    Read(String),
    /// The code could not be compiled or linked.
    #[error(transparent)]
    Code(CompileError),
    /// A bad `NAME.toml`; the message names the key.
    #[error("{0}")]
    Manifest(String),
    /// A secret of `[secrets]` could not be read; names the secret and its source.
    #[error("{0}")]
    Secret(String),
    #[error(
        "job type `{job_type}` is already handled by plugin `{other}`; remove it from one of the manifests"
    )]
    TypeConflict { job_type: String, other: String },
}

/// Is this file name something the plugin folder ignores (dot files, editor and copy temp
/// files)? Only `NAME.wasm` and `NAME.toml` with a plain NAME count.
pub(crate) fn plugin_name_of(path: &std::path::Path) -> Option<(String, FileKind)> {
    let file = path.file_name()?.to_str()?;
    if file.starts_with('.') || file.starts_with('#') || file.ends_with('~') {
        return None;
    }
    let (stem, ext) = file.rsplit_once('.')?;
    let kind = match ext {
        "wasm" => FileKind::Wasm,
        "toml" => FileKind::Manifest,
        _ => return None,
    };
    if stem.is_empty()
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return None;
    }
    Some((stem.to_string(), kind))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Wasm,
    Manifest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_version_covers_the_settings_but_not_an_empty_manifest() {
        let digest: [u8; 32] = Sha256::digest(b"wasm").into();
        let plain = plugin_version(&digest, &Manifest::default());
        assert_eq!(plain, hex::encode(&digest[..6]));
        let with_config = Manifest::parse("[config]\nversion = \"v2\"").unwrap();
        let v2 = plugin_version(&digest, &with_config);
        assert_eq!(v2.len(), 12);
        assert_ne!(v2, plain);
        assert_eq!(plugin_version(&digest, &with_config), v2);
    }

    #[test]
    fn plugin_names_come_from_wasm_and_toml_files_only() {
        assert_eq!(
            plugin_name_of(Path::new("p/resize.wasm")),
            Some(("resize".into(), FileKind::Wasm))
        );
        assert_eq!(
            plugin_name_of(Path::new("p/resize.toml")),
            Some(("resize".into(), FileKind::Manifest))
        );
        assert_eq!(plugin_name_of(Path::new("p/.resize.wasm")), None);
        assert_eq!(plugin_name_of(Path::new("p/resize.wasm.tmp")), None);
        assert_eq!(plugin_name_of(Path::new("p/resize.wasm~")), None);
        assert_eq!(plugin_name_of(Path::new("p/resize.wasm.part")), None);
        assert_eq!(plugin_name_of(Path::new("p/.wasm")), None);
        assert_eq!(plugin_name_of(Path::new("p/notes.txt")), None);
    }
}
