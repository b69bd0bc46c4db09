//! Reading one plugin (`NAME.wasm` + optional `NAME.toml`) from the plugins folder: the
//! bytes, the parsed manifest, a fingerprint of both (to skip reloading identical content),
//! and a cheap stamp (mtime + size) for the polling fallback.

use super::{FileKind, LoadError, LoadFailure, Manifest, plugin_name_of};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A plugin's files as read at one moment.
pub(crate) struct PluginFiles {
    pub(crate) wasm_path: PathBuf,
    pub(crate) toml_path: PathBuf,
    pub(crate) wasm: Vec<u8>,
    pub(crate) manifest_text: Option<String>,
    /// sha256 over the wasm bytes and the manifest text: equal means nothing to reload.
    pub(crate) fingerprint: [u8; 32],
}

pub(crate) fn wasm_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.wasm"))
}

pub(crate) fn toml_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.toml"))
}

/// Read a regular file of at most `max` bytes, off the async workers. Symlinks are followed
/// (a deploy may link a build output), but what they lead to must be a regular file: a FIFO
/// would block the read for good and `/dev/zero` would fill memory.
/// Opened non-blocking, so even a FIFO swapped in after a check cannot stall the open.
async fn read_regular(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let path = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::other(
                "it is not a regular file (a FIFO, device or folder); plugins must be regular files",
            ));
        }
        let too_big = |size: u64| {
            std::io::Error::other(format!(
                "it is {size} bytes, over the limit of {max} bytes; raise `max_plugin_size` \
                 if the plugin is meant to be this big"
            ))
        };
        if meta.len() > max {
            return Err(too_big(meta.len()));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        f.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > max {
            return Err(too_big(bytes.len() as u64));
        }
        Ok(bytes)
    });
    read.await
        .map_err(|e| std::io::Error::other(format!("the read task failed: {e}")))?
}

/// Read a plugin's files; `Ok(None)` when `NAME.wasm` is gone.
pub(crate) async fn read_plugin(
    dir: &Path,
    name: &str,
    max_bytes: u64,
) -> Result<Option<PluginFiles>, LoadError> {
    let wasm_path = wasm_path(dir, name);
    let toml_path = toml_path(dir, name);
    let wasm = match read_regular(&wasm_path, max_bytes).await {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(LoadError::plugin(
                name,
                &wasm_path,
                LoadFailure::Read(e.to_string()),
            ));
        }
    };
    let manifest_text = match read_regular(&toml_path, max_bytes).await {
        Ok(b) => Some(String::from_utf8(b).map_err(|_| {
            LoadError::plugin(
                name,
                &toml_path,
                LoadFailure::Manifest("it is not UTF-8 text".into()),
            )
        })?),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => {
            return Err(LoadError::plugin(
                name,
                &toml_path,
                LoadFailure::Read(e.to_string()),
            ));
        }
    };
    let mut h = Sha256::new();
    h.update((wasm.len() as u64).to_le_bytes());
    h.update(&wasm);
    if let Some(t) = &manifest_text {
        h.update(t.as_bytes());
    }
    Ok(Some(PluginFiles {
        wasm_path,
        toml_path,
        wasm,
        manifest_text,
        fingerprint: h.finalize().into(),
    }))
}

impl PluginFiles {
    pub(crate) fn manifest(&self, name: &str) -> Result<Manifest, LoadError> {
        match &self.manifest_text {
            None => Ok(Manifest::default()),
            Some(text) => Manifest::parse(text).map_err(|msg| {
                LoadError::plugin(name, &self.toml_path, LoadFailure::Manifest(msg))
            }),
        }
    }
}

/// Names of the plugins in the folder (every `NAME.wasm`, skipping dot and temp files).
pub(crate) fn list_names(dir: &Path) -> std::io::Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some((name, FileKind::Wasm)) = plugin_name_of(&entry.path()) {
            names.insert(name);
        }
    }
    Ok(names)
}

/// What the polling fallback compares: mtime and size of both files.
pub(crate) type Stamp = (Option<(SystemTime, u64)>, Option<(SystemTime, u64)>);

pub(crate) fn stamp(dir: &Path, name: &str) -> Stamp {
    let one = |p: PathBuf| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
    };
    (one(wasm_path(dir, name)), one(toml_path(dir, name)))
}
