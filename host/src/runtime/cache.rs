//! The on-disk cache of compiled components (`.cwasm`), so a restart loads plugins in about a
//! millisecond instead of compiling them again.
//!
//! Key: sha256 of the `.wasm` bytes plus a hash of the engine's compatibility settings
//! (wasmtime version, target, tunables), so an upgraded or reconfigured host never loads an
//! artifact it cannot run. Files are written to a temp name and renamed into place: a loaded
//! `.cwasm` is mmapped, and overwriting it in place would crash the host with SIGBUS
//! (research/toolchains.md §8.3).
//!
//! Every rebuilt plugin adds a file (a Python or JS plugin compiles to about 35 MiB), so the
//! folder is kept under `MAX_CACHE_BYTES` by deleting the least recently used files; a hit
//! refreshes the file's mtime. Deleting a file another process has mapped is safe: the
//! mapping keeps the old inode alive.

use super::CompileSource;
use super::RuntimeError;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::Engine;
use wasmtime::component::Component;

#[derive(Debug, Clone)]
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    /// Hex of the engine's `precompile_compatibility_hash`.
    engine_key: String,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Size cap of the cache folder.
pub(crate) const MAX_CACHE_BYTES: u64 = 2 << 30;

impl ArtifactCache {
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(dir).map_err(|e| RuntimeError::CacheDir {
            dir: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine_key,
        })
    }

    pub(crate) fn path_for(&self, digest: &[u8; 32]) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", hex::encode(digest), self.engine_key))
    }

    /// Blocking: load the cached artifact, or compile and cache it. A cached file that fails
    /// to load (truncated, foreign) is replaced.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &[u8; 32],
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, CompileSource)> {
        let path = self.path_for(digest);
        if path.is_file() {
            // SAFETY: files in the cache folder are written only by `store` below (temp name,
            // then rename), from artifacts this engine produced; the name carries the engine's
            // compatibility hash, and wasmtime checks the header again.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => {
                    touch(&path);
                    return Ok((c, CompileSource::Cache));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "ignoring a broken compiled-plugin cache file; compiling again")
                }
            }
        }
        let artifact = engine.precompile_component(wasm)?;
        match self.store(&path, &artifact) {
            // SAFETY: we wrote this file from `precompile_component` a moment ago.
            Ok(()) => match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => {
                    self.prune(&path, MAX_CACHE_BYTES);
                    return Ok((c, CompileSource::CompiledAndCached));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "cannot map the compiled plugin just written")
                }
            },
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the compiled-plugin cache; continuing without it")
            }
        }
        // SAFETY: `artifact` comes from `precompile_component` on this engine.
        let c = unsafe { Component::deserialize(engine, &artifact)? };
        Ok((c, CompileSource::Compiled))
    }

    /// Write via a unique temp file and `rename`, never in place (see the module docs).
    fn store(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("artifact"),
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

impl ArtifactCache {
    /// Delete the least recently used `.cwasm` files (never `keep`) until the folder holds
    /// at most `max_bytes`. Best effort: errors only mean the folder stays bigger.
    pub(crate) fn prune(&self, keep: &Path, max_bytes: u64) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= max_bytes {
                break;
            }
            if path != keep && std::fs::remove_file(&path).is_ok() {
                tracing::debug!(path = %path.display(), "removed a least recently used compiled plugin");
                total = total.saturating_sub(len);
            }
        }
    }
}

/// Mark a cache file as just used (for the LRU prune).
fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// Feeds `Hash` output into sha256, so the engine key is stable across processes (std's
/// `DefaultHasher` makes no such promise).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_deletes_the_least_recently_used_files_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache {
            dir: dir.path().to_path_buf(),
            engine_key: "k".into(),
        };
        let now = std::time::SystemTime::now();
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            let p = dir.path().join(format!("{name}.cwasm"));
            std::fs::write(&p, [0u8; 100]).unwrap();
            let f = std::fs::File::options().append(true).open(&p).unwrap();
            f.set_modified(now - std::time::Duration::from_secs(100 - i as u64 * 10))
                .unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), [0u8; 1000]).unwrap();
        cache.prune(&dir.path().join("new.cwasm"), 200);
        assert!(!dir.path().join("old.cwasm").exists());
        assert!(dir.path().join("mid.cwasm").exists());
        assert!(dir.path().join("new.cwasm").exists());
        assert!(dir.path().join("notes.txt").exists());
        // The file just written is never removed, even when it alone is over the cap.
        cache.prune(&dir.path().join("new.cwasm"), 10);
        assert!(dir.path().join("new.cwasm").exists());
    }
}
