//! `spool exec PLUGIN.wasm [PAYLOAD|-]`: run one job through one plugin with the daemon's
//! runtime, limits and host imports, but no queue: the cache lives in memory, follow-up jobs
//! and log lines go to stderr, the result JSON goes to stdout. For plugin authors.
//!
//! Compiled plugins are cached in `$SPOOL_CACHE_DIR`, else `$XDG_CACHE_HOME/spool`, else
//! `~/.cache/spool` (a rebuilt plugin has a new hash, so a stale entry is never used);
//! `SPOOL_CACHE_DIR=off` compiles every time. Without a usable folder it just compiles.
//!
//! Exit codes: 0 the job succeeded; 1 it could not run (missing or invalid plugin, bad
//! payload); 2 the job did not succeed (retry, fail, trap, timeout, out of memory). Every
//! error is one line.

use crate::job;
use crate::plugins::{LoadedPlugin, Manifest};
use crate::runtime::{JobInput, JobServices, LogLevel, Outcome, Runtime, RuntimeConfig};
use anyhow::{Context, anyhow, bail};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

pub async fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let payload = read_payload(args.payload.as_deref())?;
    let timeout = match &args.timeout {
        Some(t) => Some(parse_timeout(t)?),
        None => None,
    };
    let wasm = args.plugin.as_path();
    let name = plugin_name(wasm)?;
    let manifest = read_manifest(wasm, &name)?;

    let config = |cache_dir| RuntimeConfig {
        cache_dir,
        // One job: a small pool reserves less address space.
        max_instances: 4,
        trace_guest_logs: false,
        ..RuntimeConfig::default()
    };
    // A cache folder we cannot create is no reason to fail: compile instead.
    let runtime = match Runtime::new(config(cache_dir())) {
        Ok(rt) => rt,
        Err(_) => Runtime::new(config(None))?,
    };
    let plugin = LoadedPlugin::load(&runtime, &name, wasm, manifest).await?;
    let job_type = args
        .job_type
        .clone()
        .unwrap_or_else(|| plugin.types[0].clone());
    let input = JobInput {
        id: job::new_job_id(),
        job_type,
        payload,
        attempt: 1,
        max_attempts: plugin
            .manifest
            .retry
            .max_attempts
            .unwrap_or(job::DEFAULT_MAX_ATTEMPTS),
        priority: job::DEFAULT_PRIORITY,
        created_at_ms: job::system_now_ms().max(0) as u64,
        unique_key: None,
        timeout,
    };
    let execution = runtime
        .execute(&plugin.code, input, Arc::new(ExecServices::default()))
        .await;

    let mut stderr = std::io::stderr().lock();
    for f in &execution.followups {
        let delay = f
            .run_at
            .map(|at| format!(", runs at {at} ms"))
            .unwrap_or_default();
        let _ = writeln!(
            stderr,
            "follow-up job {} (type `{}`, priority {}{delay}): {}",
            f.id,
            f.job_type,
            f.priority,
            f.payload.get()
        );
    }
    match execution.outcome {
        Outcome::Success(result) => {
            if !execution.followups.is_empty() {
                let n = execution.followups.len();
                let _ = writeln!(
                    stderr,
                    "(a daemon would now enqueue {n} follow-up job{})",
                    if n == 1 { "" } else { "s" }
                );
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", result.get()).context("cannot write the result to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Retry {
            error,
            after: Some(after),
        } => job_failed(
            &mut stderr,
            &format!("retry after {}", humantime::format_duration(after)),
            &error,
        ),
        Outcome::Retry { error, after: None } => job_failed(&mut stderr, "retry", &error),
        Outcome::Fail { error } => job_failed(&mut stderr, "fail, no retry", &error),
        Outcome::RateLimited { error, after } => job_failed(
            &mut stderr,
            &format!(
                "rate limited: the type would be held for {}",
                humantime::format_duration(after.unwrap_or(crate::storage::flow::DEFAULT_HOLD))
            ),
            &error,
        ),
        Outcome::Crashed { error, kind } => job_failed(&mut stderr, kind.as_str(), &error),
        Outcome::NoCapacity { error } => job_failed(&mut stderr, "host out of capacity", &error),
    }
}

/// The one error line for a job that did not succeed, and its exit code.
fn job_failed(stderr: &mut impl Write, how: &str, error: &str) -> anyhow::Result<ExitCode> {
    let _ = writeln!(
        stderr,
        "error: job failed ({how}): {}",
        error.replace('\n', " ")
    );
    Ok(ExitCode::from(2))
}

/// See the module docs.
fn cache_dir() -> Option<PathBuf> {
    let from_env = |key: &str| {
        std::env::var_os(key)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    match from_env("SPOOL_CACHE_DIR") {
        Some(dir) if dir.as_os_str() == "off" => None,
        Some(dir) => Some(dir),
        None => from_env("XDG_CACHE_HOME")
            .or_else(|| from_env("HOME").map(|h| h.join(".cache")))
            .map(|d| d.join("spool")),
    }
}

fn plugin_name(wasm: &Path) -> anyhow::Result<String> {
    wasm.file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow!(
                "`{}` is not a plugin file name; pass a path such as `plugins/echo.wasm`",
                wasm.display()
            )
        })
}

fn read_manifest(wasm: &Path, name: &str) -> anyhow::Result<Manifest> {
    let toml = wasm.with_extension("toml");
    match std::fs::read_to_string(&toml) {
        Ok(text) => Manifest::parse(&text).map_err(|e| {
            anyhow!(
                "failed to load plugin `{name}` from `{}`: {e}",
                toml.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(e) => bail!(
            "failed to load plugin `{name}` from `{}`: cannot read it: {e}",
            toml.display()
        ),
    }
}

/// The payload argument, `-` for stdin, `{}` when absent; it must be JSON.
fn read_payload(arg: Option<&str>) -> anyhow::Result<String> {
    let text = match arg {
        None => "{}".to_string(),
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the payload from stdin")?;
            s
        }
        Some(s) => s.to_string(),
    };
    // The daemon's limit, so that what runs here can also be submitted.
    if text.len() > job::DEFAULT_MAX_PAYLOAD_BYTES {
        bail!(
            "the payload is {} bytes, over the limit of {} bytes that a daemon accepts; pass \
             a smaller payload (keep large data elsewhere and pass a reference)",
            text.len(),
            job::DEFAULT_MAX_PAYLOAD_BYTES
        );
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
        bail!(
            "the payload is not valid JSON: {e}; pass JSON such as '{{\"name\": \"x\"}}' or `-` to read stdin"
        );
    }
    Ok(text)
}

fn parse_timeout(s: &str) -> anyhow::Result<Duration> {
    match humantime::parse_duration(s.trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => bail!("`--timeout` must be a duration such as \"5s\" or \"500ms\" (got {s:?})"),
    }
}

/// When a value set now with `ttl` expires; None (never) for a TTL past what an `Instant`
/// can hold (a guest's `ttl-ms` may be any u64).
fn expiry(ttl: Duration) -> Option<Instant> {
    Instant::now().checked_add(ttl)
}

/// Most entries in the in-memory cache of one `spool exec` run.
const MAX_EXEC_CACHE_ENTRIES: usize = 10_000;

/// Host services for one local job: an in-memory cache, progress and logs on stderr.
#[derive(Default)]
struct ExecServices {
    cache: Mutex<HashMap<String, (String, Option<Instant>)>>,
}

impl ExecServices {
    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Option<Instant>)>> {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        c.retain(|_, (_, exp)| exp.is_none_or(|e| e > now));
        c
    }
}

#[async_trait::async_trait]
impl JobServices for ExecServices {
    async fn cache_get(&self, key: &str) -> Result<Option<String>, String> {
        Ok(self.cache().get(key).map(|(v, _)| v.clone()))
    }
    async fn cache_set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), String> {
        // The daemon's checks (key and value sizes), and a bound on entries: `spool exec`
        // keeps its cache in memory, which must not grow without end.
        crate::storage::limits::check_cache_key("exec", key).map_err(|e| e.to_string())?;
        crate::storage::limits::check_cache_value(value, job::DEFAULT_MAX_PAYLOAD_BYTES)
            .map_err(|e| e.to_string())?;
        let mut c = self.cache();
        if c.len() >= MAX_EXEC_CACHE_ENTRIES && !c.contains_key(key) {
            return Err(format!(
                "the cache of `spool exec` holds at most {MAX_EXEC_CACHE_ENTRIES} entries"
            ));
        }
        c.insert(key.to_string(), (value.to_string(), ttl.and_then(expiry)));
        Ok(())
    }
    async fn cache_delete(&self, key: &str) -> Result<bool, String> {
        Ok(self.cache().remove(key).is_some())
    }
    async fn cache_increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, String> {
        let mut c = self.cache();
        let (old, expiry) = match c.get(key) {
            Some((v, exp)) => {
                let n = v
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| format!("cache key `{key}` does not hold an integer"))?;
                (n, *exp)
            }
            None if c.len() >= MAX_EXEC_CACHE_ENTRIES => {
                return Err(format!(
                    "the cache of `spool exec` holds at most {MAX_EXEC_CACHE_ENTRIES} entries"
                ));
            }
            None => (0, ttl.and_then(expiry)),
        };
        let new = old
            .checked_add(delta)
            .ok_or_else(|| format!("cache key `{key}` would overflow"))?;
        c.insert(key.to_string(), (new.to_string(), expiry));
        Ok(new)
    }
    async fn progress(&self, percent: u8, message: Option<String>) {
        match message {
            Some(m) => eprintln!("progress {percent}%: {}", crate::text::escape_control(&m)),
            None => eprintln!("progress {percent}%"),
        }
    }
    fn cancelled(&self) -> bool {
        false
    }
    fn log(&self, _level: LogLevel, line: &str) {
        eprintln!("{}", crate::text::escape_control(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_exec_cache_checks_values_like_the_daemon_and_bounds_its_entries() {
        let s = ExecServices::default();
        let big = "x".repeat(job::DEFAULT_MAX_PAYLOAD_BYTES + 1);
        let e = s.cache_set("k", &big, None).await.unwrap_err();
        assert!(e.contains("over the limit"), "{e}");
        for i in 0..MAX_EXEC_CACHE_ENTRIES {
            s.cache_set(&i.to_string(), "v", None).await.unwrap();
        }
        assert!(s.cache_set("one-more", "v", None).await.is_err());
        assert!(s.cache_increment("another", 1, None).await.is_err());
        s.cache_set("0", "w", None).await.unwrap();
    }
}
