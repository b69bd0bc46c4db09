//! `[secrets]` in a manifest: where the daemon reads each secret (`env:VAR` or `file:PATH`),
//! and reading them when the plugin loads. A secret that cannot be read stops the plugin from
//! loading, with a message that names the secret and its source (never a value). Secret files
//! are re-read by the hot reload: the registry re-checks their size and time every rescan.

use crate::runtime::Secrets;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Largest secret file read, in bytes: keys and tokens are small, and a path pointing at a
/// large or endless file must not take the daemon's memory.
const MAX_SECRET_BYTES: u64 = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The daemon's environment variable.
    Env(String),
    /// A file's contents, without one trailing newline.
    File(PathBuf),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(var) => write!(f, "env:{var}"),
            SecretSource::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

impl SecretSource {
    pub fn parse(text: &str) -> Result<SecretSource, String> {
        if let Some(var) = text.strip_prefix("env:") {
            let ok = !var.is_empty()
                && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !var.as_bytes()[0].is_ascii_digit();
            if !ok {
                return Err(format!(
                    "`{var}` is not an environment variable name (letters, digits and `_`)"
                ));
            }
            return Ok(SecretSource::Env(var.to_string()));
        }
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err("`file:` needs a path, such as \"file:/run/secrets/api_key\"".into());
            }
            return Ok(SecretSource::File(PathBuf::from(path)));
        }
        Err(format!(
            "{text:?} is not a secret source; write \"env:VAR\" or \"file:PATH\""
        ))
    }

    /// The file to watch, for `File` sources.
    pub(crate) fn file(&self) -> Option<&Path> {
        match self {
            SecretSource::File(p) => Some(p),
            SecretSource::Env(_) => None,
        }
    }

    /// The value now; the error is the reason only (the caller names the secret).
    fn read(&self) -> Result<String, String> {
        let value = match self {
            SecretSource::Env(var) => match std::env::var(var) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    return Err(format!(
                        "the environment variable `{var}` is not set; set it for the daemon or \
                         change the source in the manifest"
                    ));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(format!(
                        "the environment variable `{var}` is not UTF-8 text"
                    ));
                }
            },
            SecretSource::File(path) => read_file(path)?,
        };
        if value.is_empty() {
            return Err("it is empty; a secret needs a value".into());
        }
        Ok(value)
    }
}

fn read_file(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(format!(
            "it is larger than {} KiB; a secret file holds one value",
            MAX_SECRET_BYTES >> 10
        ));
    }
    let mut text = String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// A secret that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretError {
    pub name: String,
    pub source: SecretSource,
    pub reason: String,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot read secret `{}` from `{}`: {}",
            self.name, self.source, self.reason
        )
    }
}

/// Read every secret of a manifest.
pub(crate) fn read_secrets(
    sources: &BTreeMap<String, SecretSource>,
) -> Result<Secrets, SecretError> {
    let mut values = BTreeMap::new();
    for (name, source) in sources {
        let value = source.read().map_err(|reason| SecretError {
            name: name.clone(),
            source: source.clone(),
            reason,
        })?;
        values.insert(name.clone(), value);
    }
    Ok(Secrets::new(values))
}

/// What the rescan compares for secret files: size and modification time of each.
pub(crate) type SecretStamps = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

pub(crate) fn stamp_secret_files(sources: &BTreeMap<String, SecretSource>) -> SecretStamps {
    sources
        .values()
        .filter_map(SecretSource::file)
        .map(|p| {
            let stamp = std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
            (p.to_path_buf(), stamp)
        })
        .collect()
}

/// True when a secret file changed since `stamps` were taken.
pub(crate) fn secret_files_changed(stamps: &SecretStamps) -> bool {
    stamps.iter().any(|(path, before)| {
        let now = std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        now != *before
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_print_back() {
        for text in ["env:API_KEY", "file:/run/secrets/key"] {
            assert_eq!(SecretSource::parse(text).unwrap().to_string(), text);
        }
        assert!(SecretSource::parse("env:").is_err());
        assert!(SecretSource::parse("env:1X").is_err());
        assert!(SecretSource::parse("file:").is_err());
        let e = SecretSource::parse("vault:x").unwrap_err();
        assert!(e.contains("\"env:VAR\" or \"file:PATH\""), "{e}");
    }

    #[test]
    fn a_secret_file_is_read_without_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "s3cr3t\n").unwrap();
        let sources = BTreeMap::from([("key".to_string(), SecretSource::File(path.clone()))]);
        let secrets = read_secrets(&sources).unwrap();
        assert_eq!(secrets.get("key"), Some("s3cr3t"));
        let stamps = stamp_secret_files(&sources);
        assert!(!secret_files_changed(&stamps));
        std::fs::write(&path, "rotated-value\n").unwrap();
        assert!(secret_files_changed(&stamps));
    }

    #[test]
    fn a_missing_source_names_the_secret_and_the_source() {
        let sources = BTreeMap::from([(
            "token".to_string(),
            SecretSource::Env("SPOOL_TEST_SURELY_UNSET_VAR".into()),
        )]);
        let e = read_secrets(&sources).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read secret `token` from `env:SPOOL_TEST_SURELY_UNSET_VAR`"),
            "{e}"
        );
        let sources = BTreeMap::from([(
            "key".to_string(),
            SecretSource::File("/nonexistent/spool/key".into()),
        )]);
        let e = read_secrets(&sources).unwrap_err().to_string();
        assert!(
            e.contains("`file:/nonexistent/spool/key`: cannot open it"),
            "{e}"
        );
    }
}
