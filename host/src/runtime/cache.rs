//! The on-disk cache of compiled components (`.cwasm`), so a restart loads plugins in about a
//! millisecond instead of compiling them again.
//!
//! Key: sha256 of the `.wasm` bytes plus a hash of the engine's compatibility settings
//! (wasmtime version, target, tunables), so an upgraded or reconfigured host never loads an
//! artifact it cannot run. Files are written to a temp name and renamed into place: a loaded
//! `.cwasm` is mmapped, and overwriting it in place would crash the host with SIGBUS.
//!
//! A `.cwasm` is native code the daemon runs, so a file name is not enough to trust it
//! (copying one plugin's artifact over another's would make one plugin run the other's code).
//! The folder must be the daemon user's own and not writable by others (created 0700); a
//! symlink or any other non-regular file is never followed; and each artifact has a sidecar
//! `.mac`: HMAC-SHA256, under a random key kept 0600 in the folder (`mac.key`), over the wasm
//! hash, the engine key and the artifact bytes. A file that fails any check is compiled again
//! and replaced, with a warning. Temp files are created with `O_EXCL` under random names.
//!
//! Every rebuilt plugin adds a file (a Python or JS plugin compiles to about 35 MiB), so the
//! folder is kept under `MAX_CACHE_BYTES` by deleting the least recently used files; a hit
//! refreshes the file's mtime. Deleting a file another process has mapped is safe: the
//! mapping keeps the old inode alive.

use super::CompileSource;
use super::RuntimeError;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

#[derive(Debug, Clone)]
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    /// Hex of the engine's `precompile_compatibility_hash`.
    engine_key: String,
    /// The MAC key (`mac.key`), read once at open.
    mac_key: [u8; 32],
}

/// Size cap of the cache folder.
pub(crate) const MAX_CACHE_BYTES: u64 = 2 << 30;
/// The MAC key's file in the cache folder.
const KEY_FILE: &str = "mac.key";
/// Bound into every MAC, so a tag can never be replayed for another purpose or format.
const MAC_CONTEXT: &[u8] = b"spool compiled-plugin cache v1\0";

impl ArtifactCache {
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<Self, RuntimeError> {
        let refused = |reason: String| RuntimeError::CacheDir {
            dir: dir.to_path_buf(),
            reason,
        };
        private_dir(dir).map_err(refused)?;
        let mac_key = read_or_create_key(&dir.join(KEY_FILE)).map_err(refused)?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        Ok(Self {
            dir: dir.to_path_buf(),
            engine_key,
            mac_key,
        })
    }

    pub(crate) fn path_for(&self, digest: &[u8; 32]) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", hex::encode(digest), self.engine_key))
    }

    /// Blocking: load the cached artifact, or compile and cache it. A cached file that fails
    /// its checks or fails to load (truncated, foreign, altered) is replaced.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &[u8; 32],
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, CompileSource)> {
        let path = self.path_for(digest);
        match self.verify(&path, digest) {
            Ok(true) => {
                // SAFETY: `verify` has just checked that this regular file carries a MAC that
                // only this cache's key makes, over these bytes and this wasm's hash: `store`
                // wrote it from `precompile_component` on an engine with the same
                // compatibility hash (part of the name and of the MAC), and wasmtime checks
                // the header again. Between the check and the mapping only the daemon's own
                // user can change the file (the folder is 0700 and theirs, see `open`).
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
            Ok(false) => {}
            Err(why) => {
                tracing::warn!(path = %path.display(), reason = %why, "compiled-plugin cache file failed its integrity check; compiling again and replacing it")
            }
        }
        let artifact = engine.precompile_component(wasm)?;
        match self.store(&path, digest, &artifact) {
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

    /// `Ok(true)`: the artifact at `path` is a regular file whose MAC matches. `Ok(false)`:
    /// there is none (a plain miss). `Err(why)`: something is there but must not be trusted.
    fn verify(&self, path: &Path, digest: &[u8; 32]) -> Result<bool, String> {
        let mut file = match open_regular(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        let expected = {
            let mac_path = path.with_extension("mac");
            let mut text = String::new();
            match open_regular(&mac_path) {
                Ok(f) => f
                    .take(128)
                    .read_to_string(&mut text)
                    .map_err(|e| format!("cannot read its MAC file: {e}"))?,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err("it has no MAC file (written by an older spool, or planted)".into());
                }
                Err(e) => return Err(format!("its MAC file: {e}")),
            };
            hex::decode(text.trim()).map_err(|_| "its MAC file is not hex".to_string())?
        };
        let mut mac = self.mac(digest);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| format!("cannot read it: {e}"))?;
            if n == 0 {
                break;
            }
            mac.update(&buf[..n]);
        }
        if constant_time_eq(&mac.finalize(), &expected) {
            Ok(true)
        } else {
            Err("its MAC does not match (altered, or copied from another entry)".into())
        }
    }

    /// A MAC over the artifact bytes that follow, bound to the wasm's hash and this engine.
    fn mac(&self, digest: &[u8; 32]) -> HmacSha256 {
        let mut mac = HmacSha256::new(&self.mac_key);
        mac.update(MAC_CONTEXT);
        mac.update(digest);
        mac.update(self.engine_key.as_bytes());
        mac
    }

    /// Write the artifact and its MAC via private temp files and `rename`, never in place
    /// (see the module docs). The artifact goes first: a reader between the two renames sees
    /// a MAC that does not match yet and compiles again, never an unchecked file.
    fn store(&self, path: &Path, digest: &[u8; 32], bytes: &[u8]) -> std::io::Result<()> {
        let mut mac = self.mac(digest);
        mac.update(bytes);
        let tag = hex::encode(mac.finalize());
        write_atomically(&self.dir, path, bytes)?;
        write_atomically(&self.dir, &path.with_extension("mac"), tag.as_bytes())
    }
}

impl ArtifactCache {
    /// Delete the least recently used `.cwasm` files (never `keep`) and their MACs until the
    /// folder holds at most `max_bytes`. Best effort: errors only mean the folder stays bigger.
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
                let _ = std::fs::remove_file(path.with_extension("mac"));
                tracing::debug!(path = %path.display(), "removed a least recently used compiled plugin");
                total = total.saturating_sub(len);
            }
        }
    }
}

/// Create `dir` (and missing parents) 0700, or check an existing one: it must belong to this
/// user and not be writable by others (anyone who can write it could plant native code);
/// other bits are tightened to 0700.
fn private_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| e.to_string())?;
    let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
    let me = euid();
    if meta.uid() != me {
        return Err(format!(
            "it belongs to user {} and this daemon runs as {me}; give the daemon its own \
             cache_dir",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "it is writable by other users (mode {mode:o}), who could plant code the daemon \
             would run; `chmod 700` it or set cache_dir to a private folder"
        ));
    }
    if mode != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make it private (chmod 700): {e}"))?;
    }
    Ok(())
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The MAC key: 32 random bytes in a 0600 file of this user, created on first use.
fn read_or_create_key(path: &Path) -> Result<[u8; 32], String> {
    for _ in 0..3 {
        match open_regular(path) {
            Ok(f) => {
                let meta = f.metadata().map_err(|e| e.to_string())?;
                if meta.uid() != euid() || meta.mode() & 0o077 != 0 {
                    return Err(format!(
                        "its MAC key `{}` must belong to this user with mode 600 (it has \
                         user {}, mode {:o}); delete it to make a new one",
                        path.display(),
                        meta.uid(),
                        meta.mode() & 0o777
                    ));
                }
                let mut key = [0u8; 32];
                let mut rest = Vec::new();
                let mut f = f;
                f.read_exact(&mut key)
                    .and_then(|()| f.read_to_end(&mut rest))
                    .map_err(|e| format!("cannot read its MAC key `{}`: {e}", path.display()))?;
                if !rest.is_empty() {
                    return Err(format!(
                        "its MAC key `{}` is not 32 bytes; delete it to make a new one",
                        path.display()
                    ));
                }
                return Ok(key);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                // Written whole under a temp name, then linked into place: a daemon starting
                // at the same moment reads either no key or the whole key, never half of one.
                let dir = path.parent().unwrap_or(Path::new("."));
                let (tmp, mut f) = create_temp(dir).map_err(|e| e.to_string())?;
                let written = f
                    .write_all(&key)
                    .and_then(|()| f.sync_all())
                    .and_then(|()| std::fs::hard_link(&tmp, path));
                let _ = std::fs::remove_file(&tmp);
                match written {
                    Ok(()) => return Ok(key),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                    Err(e) => {
                        return Err(format!(
                            "cannot write its MAC key `{}`: {e}",
                            path.display()
                        ));
                    }
                }
            }
            Err(e) => return Err(format!("its MAC key `{}`: {e}", path.display())),
        }
    }
    Err(format!(
        "its MAC key `{}` keeps changing; is another process rewriting it?",
        path.display()
    ))
}

/// Open for reading without following a symlink and without blocking on a FIFO; anything but
/// a regular file is an error.
fn open_regular(path: &Path) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::other("it is a symbolic link, which the cache never follows")
            } else {
                e
            }
        })?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    Ok(f)
}

/// A new 0600 file with an unpredictable name, created with `O_EXCL` (never an existing file
/// or a symlink planted under a guessed name).
fn create_temp(dir: &Path) -> std::io::Result<(PathBuf, File)> {
    loop {
        let tmp = dir.join(format!(".{}.tmp", hex::encode(rand::random::<[u8; 16]>())));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Write `bytes` to `path` via a private temp file and `rename`.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (tmp, mut f) = create_temp(dir)?;
    let result = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Mark a cache file as just used (for the LRU prune).
fn touch(path: &Path) {
    if let Ok(f) = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// HMAC-SHA256 (RFC 2104) over `sha2`, streaming; the workspace has no `hmac` crate and this
/// is the whole of it. Keys are 32 bytes, under SHA-256's 64-byte block.
struct HmacSha256 {
    inner: Sha256,
    outer_key: [u8; 64],
}

impl HmacSha256 {
    fn new(key: &[u8]) -> Self {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let mut inner = Sha256::new();
        inner.update(block.map(|b| b ^ 0x36));
        Self {
            inner,
            outer_key: block.map(|b| b ^ 0x5c),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
    }

    fn finalize(self) -> [u8; 32] {
        let inner = self.inner.finalize();
        let mut outer = Sha256::new();
        outer.update(self.outer_key);
        outer.update(inner);
        outer.finalize().into()
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
    fn hmac_matches_the_rfc_4231_test_vector() {
        let mut mac = HmacSha256::new(b"Jefe");
        mac.update(b"what do ya want ");
        mac.update(b"for nothing?");
        assert_eq!(
            hex::encode(mac.finalize()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn temp_files_get_fresh_private_names() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = create_temp(dir.path()).unwrap();
        let (b, _) = create_temp(dir.path()).unwrap();
        assert_ne!(a, b);
        let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn prune_deletes_the_least_recently_used_files_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache {
            dir: dir.path().to_path_buf(),
            engine_key: "k".into(),
            mac_key: [0; 32],
        };
        let now = std::time::SystemTime::now();
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            let p = dir.path().join(format!("{name}.cwasm"));
            std::fs::write(&p, [0u8; 100]).unwrap();
            std::fs::write(p.with_extension("mac"), b"00").unwrap();
            let f = std::fs::File::options().append(true).open(&p).unwrap();
            f.set_modified(now - std::time::Duration::from_secs(100 - i as u64 * 10))
                .unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), [0u8; 1000]).unwrap();
        cache.prune(&dir.path().join("new.cwasm"), 200);
        assert!(!dir.path().join("old.cwasm").exists());
        assert!(!dir.path().join("old.mac").exists());
        assert!(dir.path().join("mid.cwasm").exists());
        assert!(dir.path().join("new.cwasm").exists());
        assert!(dir.path().join("notes.txt").exists());
        // The file just written is never removed, even when it alone is over the cap.
        cache.prune(&dir.path().join("new.cwasm"), 10);
        assert!(dir.path().join("new.cwasm").exists());
    }
}
