//! Daemon configuration: `RawConfig` is what `spool.toml`, `SPOOL_*` variables and flags say
//! (serde only, every field optional, unknown keys rejected); `Config` is the validated result
//! with defaults filled in. Layers apply in order file < environment < flags (later wins).
//! Every error names the key (or variable) and says what a good value looks like.
//!
//! The file is `--config PATH`, else `$SPOOL_CONFIG`, else `./spool.toml` when it exists.
//! Keys (environment variable, flag) and defaults:
//!
//! ```toml
//! storage = "sqlite://./data/spool.db"  # SPOOL_STORAGE, --storage; memory://, redis://...
//!                                       # (default: sqlite://<data_dir>/spool.db)
//! plugins = "./data/plugins"            # SPOOL_PLUGINS, --plugins
//! listen = "127.0.0.1:7878"             # SPOOL_LISTEN, --listen (non-loopback needs a token)
//! workers = 8                           # SPOOL_WORKERS, --workers (2 x cores, at least 4)
//! api_token = "..."                     # SPOOL_API_TOKEN (no flag: it would show in `ps`)
//! lease = "30s"                         # SPOOL_LEASE, --lease
//! shutdown_grace = "10s"                # SPOOL_SHUTDOWN_GRACE, --shutdown-grace
//! max_payload = "1MiB"                  # SPOOL_MAX_PAYLOAD (bytes or 512KB, 1MiB...)
//! data_dir = "./data"                   # SPOOL_DATA_DIR
//! cache_dir = "./data/cache"            # SPOOL_CACHE_DIR, --cache-dir (compiled plugins)
//! fallback = "./data/fallback.db"       # SPOOL_FALLBACK, --fallback (redis only; default none)
//! job_timeout = "30s"                   # SPOOL_JOB_TIMEOUT (when the plugin sets none)
//! job_memory = "64MiB"                  # SPOOL_JOB_MEMORY (when the plugin sets none)
//! api_hosts = ["spool.internal"]        # SPOOL_API_HOSTS (comma-separated): names `Host` may
//!                                       # carry besides IP literals and localhost
//! max_plugin_size = "256MiB"            # SPOOL_MAX_PLUGIN_SIZE: largest NAME.wasm loaded
//!
//! [api]
//! header_timeout = "10s"                # a request head must arrive within this
//! max_connections = 1024                # more get 503 + Retry-After, then closed
//! max_event_streams = 256               # SSE streams; more get 503 + Retry-After
//! stall_after = "30s"                   # /health: pending work, a free worker and no claim
//!                                       # for this long is "connected but not consuming"
//!
//! [plugin_cache]                        # what each plugin's cache may hold; a write past
//! max_entries = 10000                   # it fails that write (the plugin sees the error)
//! max_bytes = "64MiB"                   # keys and values
//!
//! [retry]                               # daemon defaults; manifests and jobs override
//! backoff_base = "1s"
//! backoff_cap = "1h"
//! max_attempts = 4
//!
//! [retention]                           # "off" disables a limit
//! completed_max_age = "24h"
//! completed_max_count = 1000            # per job type
//! failed_max_age = "7d"
//! failed_max_count = 5000
//! cancelled_max_age = "24h"
//! cancelled_max_count = 1000
//! sweep_interval = "1m"
//! max_events = 100000                   # newest events kept
//!
//! [retention.types.thumbnail]           # per job type; unset keys inherit [retention]
//! completed_max_age = "1h"
//!
//! [http]                                # plugins' outbound requests; manifests override
//! max_requests = 100                    # per job attempt
//! max_response_bytes = "10MiB"
//! connect_timeout = "5s"                # resolve, connect, TLS handshake
//! first_byte_timeout = "30s"            # until the status line and headers
//! idle_timeout = "30s"                  # longest pause inside a response body
//! max_concurrent = 16                   # per plugin, across the daemon
//! ca_file = "/etc/ssl/private-ca.pem"   # SPOOL_HTTP_CA_FILE (default: the system's roots)
//! ```

use crate::storage::{Retention, RetentionPolicy, TypeRetention};
use crate::units::{parse_duration, parse_size, show};
use anyhow::{Context, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_STORAGE: &str = "sqlite://./data/spool.db";
pub const DEFAULT_PLUGINS: &str = "./data/plugins";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Renewed every third of it; a crashed daemon's jobs come back within about this long.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_JOB_MEMORY: u64 = 64 * 1024 * 1024;
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Below this a lease cannot be renewed reliably (the renewer runs every lease/3).
const MIN_LEASE: Duration = Duration::from_secs(1);
/// Largest plugin file read: the JavaScript and Python examples are about 20 MiB.
pub use crate::plugins::DEFAULT_MAX_PLUGIN_SIZE;

/// Limits of the HTTP server (`[api]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// A request head (line and headers) must arrive within this; idle keep-alive
    /// connections are closed after it too.
    pub header_timeout: Duration,
    /// Open connections; more are answered 503 with `Retry-After` and closed.
    pub max_connections: usize,
    /// Open SSE streams (`/api/v1/events`); more are answered 503 with `Retry-After`.
    pub max_event_streams: usize,
    /// `/health` says "connected but not consuming" (degraded) when a handled type has
    /// pending jobs, a worker is free and no claim returned a job for this long.
    pub stall_after: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_event_streams: 256,
            stall_after: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub header_timeout: Option<String>,
    pub max_connections: Option<i64>,
    pub max_event_streams: Option<i64>,
    pub stall_after: Option<String>,
}

/// The validated configuration of a daemon.
#[derive(Debug, Clone)]
pub struct Config {
    /// Storage URL: `sqlite://PATH`, `memory://`, `redis://...`.
    pub storage: String,
    /// The plugins folder (NAME.wasm + NAME.toml), watched for changes.
    pub plugins: PathBuf,
    pub listen: SocketAddr,
    /// Jobs run at once.
    pub workers: usize,
    /// When set, every `/api` call needs `Authorization: Bearer <token>`.
    pub api_token: Option<String>,
    pub lease: Duration,
    /// How long in-flight jobs may finish after SIGTERM before they are stopped and released.
    pub shutdown_grace: Duration,
    /// Largest accepted payload, in bytes.
    pub max_payload: usize,
    pub data_dir: PathBuf,
    /// Compiled plugin cache (`.cwasm` files).
    pub cache_dir: PathBuf,
    /// Local SQLite spool (a path or `sqlite://PATH`) that takes enqueues while Redis is
    /// unreachable; only with a redis storage URL.
    pub fallback: Option<String>,
    /// Timeout of a job whose plugin and request set none.
    pub job_timeout: Duration,
    /// Memory limit of a job whose plugin sets none.
    pub job_memory: u64,
    /// Names besides IP literals and `localhost` that a request's `Host` may carry (a
    /// rebinding page's own name is refused).
    pub api_hosts: Vec<String>,
    /// Largest `NAME.wasm` (or `NAME.toml`) the registry reads.
    pub max_plugin_size: u64,
    pub api: ApiLimits,
    /// What each plugin's cache namespace may hold.
    pub plugin_cache: crate::storage::CacheQuota,
    /// Plugins' outbound HTTP: default limits and CA roots.
    pub http: crate::runtime::HttpConfig,
    pub retry: RetryConfig,
    pub retention: RetentionPolicy,
    pub sweep_interval: Duration,
    /// Events the event log keeps (older ones are trimmed by the sweeper).
    pub max_events: u64,
}

/// Daemon-wide retry defaults; a plugin's manifest and a job's own settings override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(3600),
            max_attempts: crate::job::DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// One layer of configuration, as written. Strings are parsed during validation so that the
/// error can name the key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub storage: Option<String>,
    pub plugins: Option<PathBuf>,
    pub listen: Option<String>,
    pub workers: Option<i64>,
    pub api_token: Option<String>,
    pub lease: Option<String>,
    pub shutdown_grace: Option<String>,
    pub max_payload: Option<SizeValue>,
    pub data_dir: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub fallback: Option<String>,
    pub job_timeout: Option<String>,
    pub job_memory: Option<SizeValue>,
    pub api_hosts: Option<Vec<String>>,
    pub max_plugin_size: Option<SizeValue>,
    #[serde(default)]
    pub api: RawApi,
    #[serde(default)]
    pub plugin_cache: RawPluginCache,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub retention: RawRetention,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPluginCache {
    pub max_entries: Option<i64>,
    pub max_bytes: Option<SizeValue>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub max_requests: Option<i64>,
    pub max_response_bytes: Option<SizeValue>,
    pub connect_timeout: Option<String>,
    pub first_byte_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_concurrent: Option<i64>,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub backoff_base: Option<String>,
    pub backoff_cap: Option<String>,
    pub max_attempts: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    #[serde(flatten)]
    pub limits: RawRetentionLimits,
    pub sweep_interval: Option<String>,
    pub max_events: Option<i64>,
    /// `[retention.types.NAME]`: overrides for one job type.
    #[serde(default)]
    pub types: BTreeMap<String, RawRetentionLimits>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetentionLimits {
    pub completed_max_age: Option<String>,
    pub completed_max_count: Option<CountValue>,
    pub failed_max_age: Option<String>,
    pub failed_max_count: Option<CountValue>,
    pub cancelled_max_age: Option<String>,
    pub cancelled_max_count: Option<CountValue>,
}

/// A size: bytes as an integer, or a string such as `"1MiB"`, `"512KB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(i64),
    Text(String),
}

/// A count limit: an integer, or `"off"` for no limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CountValue {
    Count(i64),
    Text(String),
}

/// Values given as `spool daemon` flags (the last layer).
#[derive(Debug, Clone, Default)]
pub struct FlagOverrides {
    pub storage: Option<String>,
    pub plugins: Option<PathBuf>,
    pub listen: Option<String>,
    pub workers: Option<i64>,
    pub lease: Option<String>,
    pub shutdown_grace: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub fallback: Option<String>,
}

impl RawConfig {
    /// Parse a `spool.toml` text. `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> anyhow::Result<RawConfig> {
        toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "config: cannot use `{origin}`: {}",
                e.to_string().trim_end()
            )
        })
    }

    /// The `SPOOL_*` variables, read through `var` (the process environment in production).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<RawConfig> {
        let mut raw = RawConfig {
            storage: var("SPOOL_STORAGE"),
            plugins: var("SPOOL_PLUGINS").map(PathBuf::from),
            listen: var("SPOOL_LISTEN"),
            api_token: var("SPOOL_API_TOKEN"),
            lease: var("SPOOL_LEASE"),
            shutdown_grace: var("SPOOL_SHUTDOWN_GRACE"),
            max_payload: var("SPOOL_MAX_PAYLOAD").map(SizeValue::Text),
            data_dir: var("SPOOL_DATA_DIR").map(PathBuf::from),
            cache_dir: var("SPOOL_CACHE_DIR").map(PathBuf::from),
            fallback: var("SPOOL_FALLBACK"),
            job_timeout: var("SPOOL_JOB_TIMEOUT"),
            job_memory: var("SPOOL_JOB_MEMORY").map(SizeValue::Text),
            api_hosts: var("SPOOL_API_HOSTS").map(|v| {
                v.split(',')
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .collect()
            }),
            max_plugin_size: var("SPOOL_MAX_PLUGIN_SIZE").map(SizeValue::Text),
            http: RawHttp {
                ca_file: var("SPOOL_HTTP_CA_FILE").map(PathBuf::from),
                ..RawHttp::default()
            },
            ..RawConfig::default()
        };
        if let Some(w) = var("SPOOL_WORKERS") {
            raw.workers = Some(w.trim().parse().map_err(|_| {
                anyhow::anyhow!("config: `SPOOL_WORKERS` must be a whole number (got {w:?})")
            })?);
        }
        // An empty token is a mistake, not "no auth": treat it as unset only if explicitly empty
        // so that `SPOOL_API_TOKEN=` in a shell does not silently open the API.
        if raw.api_token.as_deref() == Some("") {
            bail!("config: `SPOOL_API_TOKEN` is set but empty; unset it or give a token");
        }
        Ok(raw)
    }

    /// `other` wins wherever it says something.
    pub fn merge(mut self, other: RawConfig) -> RawConfig {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        take!(
            storage,
            plugins,
            listen,
            workers,
            api_token,
            lease,
            shutdown_grace,
            max_payload,
            data_dir,
            cache_dir,
            fallback,
            job_timeout,
            job_memory,
            api_hosts,
            max_plugin_size
        );
        let (h, o) = (&mut self.api, other.api);
        if o.header_timeout.is_some() {
            h.header_timeout = o.header_timeout;
        }
        if o.max_connections.is_some() {
            h.max_connections = o.max_connections;
        }
        if o.max_event_streams.is_some() {
            h.max_event_streams = o.max_event_streams;
        }
        if o.stall_after.is_some() {
            h.stall_after = o.stall_after;
        }
        let (c, o) = (&mut self.plugin_cache, other.plugin_cache);
        if o.max_entries.is_some() {
            c.max_entries = o.max_entries;
        }
        if o.max_bytes.is_some() {
            c.max_bytes = o.max_bytes;
        }
        let (h, o) = (&mut self.http, other.http);
        macro_rules! take_http {
            ($($f:ident),*) => { $( if o.$f.is_some() { h.$f = o.$f; } )* };
        }
        take_http!(
            max_requests,
            max_response_bytes,
            connect_timeout,
            first_byte_timeout,
            idle_timeout,
            max_concurrent,
            ca_file
        );
        let (r, o) = (&mut self.retry, other.retry);
        if o.backoff_base.is_some() {
            r.backoff_base = o.backoff_base;
        }
        if o.backoff_cap.is_some() {
            r.backoff_cap = o.backoff_cap;
        }
        if o.max_attempts.is_some() {
            r.max_attempts = o.max_attempts;
        }
        let t = &mut self.retention;
        t.limits = merge_limits(std::mem::take(&mut t.limits), other.retention.limits);
        if other.retention.sweep_interval.is_some() {
            t.sweep_interval = other.retention.sweep_interval;
        }
        if other.retention.max_events.is_some() {
            t.max_events = other.retention.max_events;
        }
        for (name, limits) in other.retention.types {
            let mine = t.types.remove(&name).unwrap_or_default();
            t.types.insert(name, merge_limits(mine, limits));
        }
        self
    }

    pub fn apply_flags(self, flags: FlagOverrides) -> RawConfig {
        self.merge(RawConfig {
            storage: flags.storage,
            plugins: flags.plugins,
            listen: flags.listen,
            workers: flags.workers,
            lease: flags.lease,
            shutdown_grace: flags.shutdown_grace,
            cache_dir: flags.cache_dir,
            fallback: flags.fallback,
            ..RawConfig::default()
        })
    }

    /// Check every value and fill in defaults.
    pub fn validate(self) -> anyhow::Result<Config> {
        let storage = match (&self.storage, &self.data_dir) {
            (Some(s), _) => s.clone(),
            // A data folder without a storage URL keeps the database in it.
            (None, Some(dir)) => format!("sqlite://{}", dir.join("spool.db").display()),
            (None, None) => DEFAULT_STORAGE.to_string(),
        };
        let known = ["sqlite://", "memory://"];
        if !known.iter().any(|p| storage.starts_with(p))
            && !crate::storage::is_redis_url(&storage)
            && storage != "memory"
        {
            bail!(
                "config: `storage` must be a URL such as sqlite://./data/spool.db, memory:// \
                 or redis://host:6379 (got {storage:?})"
            );
        }
        let fallback = self.fallback.filter(|f| !f.trim().is_empty());
        if fallback.is_some() && !crate::storage::is_redis_url(&storage) {
            bail!(
                "config: `fallback` (a local spool for when Redis is unreachable) needs a redis \
                 storage URL (storage is {storage:?}); remove `fallback` or use redis://host:6379"
            );
        }
        let listen_text = self.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            anyhow::anyhow!(
                "config: `listen` must be IP:PORT such as 127.0.0.1:7878 (got {listen_text:?})"
            )
        })?;
        let api_token = self.api_token.filter(|t| !t.is_empty());
        if !listen.ip().is_loopback() && api_token.is_none() {
            bail!(
                "config: refusing to listen on {listen} without an API token: anyone who can \
                 reach it could run jobs; set SPOOL_API_TOKEN (or `api_token`), or listen on \
                 127.0.0.1"
            );
        }
        let workers = match self.workers {
            None => default_workers(),
            Some(n) if n < 1 => bail!("config: `workers` must be at least 1 (got {n})"),
            Some(n) if n > 10_000 => bail!("config: `workers` must be at most 10000 (got {n})"),
            Some(n) => n as usize,
        };
        let lease = duration("lease", self.lease.as_deref())?.unwrap_or(DEFAULT_LEASE);
        if lease < MIN_LEASE {
            bail!("config: `lease` must be at least 1s (got {})", show(lease));
        }
        let shutdown_grace = duration("shutdown_grace", self.shutdown_grace.as_deref())?
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE);
        let max_payload = match &self.max_payload {
            None => crate::job::DEFAULT_MAX_PAYLOAD_BYTES,
            Some(v) => size("max_payload", v)? as usize,
        };
        if max_payload < 2 {
            bail!("config: `max_payload` must be at least 2 bytes (got {max_payload})");
        }
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let cache_dir = self.cache_dir.unwrap_or_else(|| data_dir.join("cache"));
        let plugins = self
            .plugins
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PLUGINS));
        let job_timeout =
            duration("job_timeout", self.job_timeout.as_deref())?.unwrap_or(DEFAULT_JOB_TIMEOUT);
        if job_timeout.is_zero() {
            bail!("config: `job_timeout` must be longer than 0s");
        }
        let job_memory = match &self.job_memory {
            None => DEFAULT_JOB_MEMORY,
            Some(v) => size("job_memory", v)?,
        };
        if job_memory < 1024 * 1024 {
            bail!("config: `job_memory` must be at least 1MiB (got {job_memory} bytes)");
        }
        let api_hosts = self
            .api_hosts
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let max_plugin_size = match &self.max_plugin_size {
            None => DEFAULT_MAX_PLUGIN_SIZE,
            Some(v) => size("max_plugin_size", v)?,
        };
        if max_plugin_size < 1024 {
            bail!("config: `max_plugin_size` must be at least 1KiB (got {max_plugin_size} bytes)");
        }
        let api = validate_api(self.api)?;
        let plugin_cache = validate_plugin_cache(self.plugin_cache)?;
        let http = validate_http(self.http)?;
        let retry = validate_retry(self.retry)?;
        let sweep_interval = duration(
            "retention.sweep_interval",
            self.retention.sweep_interval.as_deref(),
        )?
        .unwrap_or(DEFAULT_SWEEP_INTERVAL);
        if sweep_interval.is_zero() {
            bail!("config: `retention.sweep_interval` must be longer than 0s");
        }
        let max_events = match self.retention.max_events {
            None => crate::storage::DEFAULT_MAX_EVENTS,
            Some(n) if n < 1000 => {
                bail!("config: `retention.max_events` must be at least 1000 (got {n})")
            }
            Some(n) => n as u64,
        };
        let retention = validate_retention(self.retention.limits, self.retention.types)?;
        Ok(Config {
            storage,
            plugins,
            listen,
            workers,
            api_token,
            lease,
            shutdown_grace,
            max_payload,
            data_dir,
            cache_dir,
            fallback,
            job_timeout,
            job_memory,
            api_hosts,
            max_plugin_size,
            api,
            plugin_cache,
            http,
            retry,
            retention,
            sweep_interval,
            max_events,
        })
    }
}

impl Config {
    /// The whole chain for `spool daemon`: the file (`--config`, else `./spool.toml` when it
    /// exists), the environment, then the flags.
    pub fn load(config_path: Option<&Path>, flags: FlagOverrides) -> anyhow::Result<Config> {
        let env_path = std::env::var_os("SPOOL_CONFIG").map(PathBuf::from);
        let path = config_path.map(Path::to_path_buf).or(env_path);
        let file = match path {
            Some(p) => Some(read_file(&p)?),
            None => {
                let default = Path::new("spool.toml");
                if default.exists() {
                    Some(read_file(default)?)
                } else {
                    None
                }
            }
        };
        let env = RawConfig::from_env(|k| std::env::var(k).ok())?;
        file.unwrap_or_default()
            .merge(env)
            .apply_flags(flags)
            .validate()
    }
}

fn read_file(path: &Path) -> anyhow::Result<RawConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("config: cannot read `{}`", path.display()))?;
    RawConfig::from_toml(&text, &path.display().to_string())
}

/// Twice the cores, at least 4: jobs often wait on host calls, and the pool is cheap.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    (cores * 2).max(4)
}

fn merge_limits(mut a: RawRetentionLimits, b: RawRetentionLimits) -> RawRetentionLimits {
    macro_rules! take {
        ($($f:ident),*) => { $( if b.$f.is_some() { a.$f = b.$f; } )* };
    }
    take!(
        completed_max_age,
        completed_max_count,
        failed_max_age,
        failed_max_count,
        cancelled_max_age,
        cancelled_max_count
    );
    a
}

fn validate_retry(raw: RawRetry) -> anyhow::Result<RetryConfig> {
    let d = RetryConfig::default();
    let backoff_base =
        duration("retry.backoff_base", raw.backoff_base.as_deref())?.unwrap_or(d.backoff_base);
    let backoff_cap =
        duration("retry.backoff_cap", raw.backoff_cap.as_deref())?.unwrap_or(d.backoff_cap);
    if backoff_cap < backoff_base {
        bail!(
            "config: `retry.backoff_cap` ({}) must not be below `retry.backoff_base` ({})",
            show(backoff_cap),
            show(backoff_base)
        );
    }
    let max_attempts = match raw.max_attempts {
        None => d.max_attempts,
        Some(n) if !(1..=1000).contains(&n) => {
            bail!("config: `retry.max_attempts` must be between 1 and 1000 (got {n})")
        }
        Some(n) => n as u32,
    };
    Ok(RetryConfig {
        backoff_base,
        backoff_cap,
        max_attempts,
    })
}

fn validate_retention(
    global: RawRetentionLimits,
    types: BTreeMap<String, RawRetentionLimits>,
) -> anyhow::Result<RetentionPolicy> {
    let defaults = RetentionPolicy::default();
    let base = TypeRetention {
        completed: defaults.completed,
        failed: defaults.failed,
        cancelled: defaults.cancelled,
    };
    let global = apply_limits("retention", &global, &base)?;
    let mut per_type = BTreeMap::new();
    for (name, raw) in types {
        let t = apply_limits(&format!("retention.types.{name}"), &raw, &global)?;
        per_type.insert(name, t);
    }
    Ok(RetentionPolicy {
        completed: global.completed,
        failed: global.failed,
        cancelled: global.cancelled,
        per_type,
    })
}

fn apply_limits(
    prefix: &str,
    raw: &RawRetentionLimits,
    inherit: &TypeRetention,
) -> anyhow::Result<TypeRetention> {
    let one = |state: &str,
               age: &Option<String>,
               count: &Option<CountValue>,
               base: Retention|
     -> anyhow::Result<Retention> {
        let age_key = format!("{prefix}.{state}_max_age");
        let max_age = match age.as_deref() {
            None => base.max_age,
            Some(s) if is_off(s) => None,
            Some(s) => duration(&age_key, Some(s))?,
        };
        let count_key = format!("{prefix}.{state}_max_count");
        let max_count = match count {
            None => base.max_count,
            Some(CountValue::Text(s)) if is_off(s) => None,
            Some(CountValue::Text(s)) => {
                bail!("config: `{count_key}` must be a number or \"off\" (got {s:?})")
            }
            Some(CountValue::Count(n)) if *n < 0 => {
                bail!("config: `{count_key}` must not be negative (got {n})")
            }
            Some(CountValue::Count(n)) => Some(*n as u64),
        };
        Ok(Retention { max_age, max_count })
    };
    Ok(TypeRetention {
        completed: one(
            "completed",
            &raw.completed_max_age,
            &raw.completed_max_count,
            inherit.completed,
        )?,
        failed: one(
            "failed",
            &raw.failed_max_age,
            &raw.failed_max_count,
            inherit.failed,
        )?,
        cancelled: one(
            "cancelled",
            &raw.cancelled_max_age,
            &raw.cancelled_max_count,
            inherit.cancelled,
        )?,
    })
}

fn is_off(s: &str) -> bool {
    matches!(s.trim(), "off" | "none" | "never")
}

fn duration(key: &str, value: Option<&str>) -> anyhow::Result<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(v) => parse_duration(v).map(Some).map_err(|why| {
            anyhow::anyhow!("config: `{key}` must be a duration like \"30s\", \"5m\" or \"24h\" (got {v:?}: {why})")
        }),
    }
}

fn size(key: &str, v: &SizeValue) -> anyhow::Result<u64> {
    match v {
        SizeValue::Bytes(n) if *n < 0 => bail!("config: `{key}` must not be negative (got {n})"),
        SizeValue::Bytes(n) => Ok(*n as u64),
        SizeValue::Text(s) => parse_size(s).map_err(|why| {
            anyhow::anyhow!(
                "config: `{key}` must be a size like 1048576 or \"1MiB\" (got {s:?}: {why})"
            )
        }),
    }
}

/// A duration the way config writes it (`30s`, `1m 30s`, `250ms`).
fn validate_http(raw: RawHttp) -> anyhow::Result<crate::runtime::HttpConfig> {
    let mut limits = crate::runtime::HttpLimits::default();
    let count = |key: &str, v: Option<i64>, default: u32| -> anyhow::Result<u32> {
        match v {
            None => Ok(default),
            Some(n) if n >= 1 && n <= i64::from(u32::MAX) => Ok(n as u32),
            Some(n) => bail!("config: `http.{key}` must be a whole number of at least 1 (got {n})"),
        }
    };
    let time = |key: &str, v: Option<&str>, default: Duration| -> anyhow::Result<Duration> {
        let d = duration(&format!("http.{key}"), v)?.unwrap_or(default);
        if d.is_zero() {
            bail!("config: `http.{key}` must be longer than 0s");
        }
        Ok(d)
    };
    limits.max_requests = count("max_requests", raw.max_requests, limits.max_requests)?;
    limits.max_concurrent = count("max_concurrent", raw.max_concurrent, limits.max_concurrent)?;
    if let Some(v) = &raw.max_response_bytes {
        limits.max_response_bytes = size("http.max_response_bytes", v)?;
        if limits.max_response_bytes == 0 {
            bail!("config: `http.max_response_bytes` must be at least 1 byte");
        }
    }
    limits.connect_timeout = time(
        "connect_timeout",
        raw.connect_timeout.as_deref(),
        limits.connect_timeout,
    )?;
    limits.first_byte_timeout = time(
        "first_byte_timeout",
        raw.first_byte_timeout.as_deref(),
        limits.first_byte_timeout,
    )?;
    limits.idle_timeout = time(
        "idle_timeout",
        raw.idle_timeout.as_deref(),
        limits.idle_timeout,
    )?;
    Ok(crate::runtime::HttpConfig {
        limits,
        ca_file: raw.ca_file,
    })
}

fn validate_plugin_cache(raw: RawPluginCache) -> anyhow::Result<crate::storage::CacheQuota> {
    let d = crate::storage::CacheQuota::default();
    let max_entries = match raw.max_entries {
        None => d.max_entries,
        Some(n) if (1..=100_000_000).contains(&n) => n as u64,
        Some(n) => bail!(
            "config: `plugin_cache.max_entries` must be a whole number from 1 to 100000000 (got {n})"
        ),
    };
    let max_bytes = match &raw.max_bytes {
        None => d.max_bytes,
        Some(v) => size("plugin_cache.max_bytes", v)?,
    };
    if max_bytes < 1024 {
        bail!("config: `plugin_cache.max_bytes` must be at least 1KiB (got {max_bytes} bytes)");
    }
    Ok(crate::storage::CacheQuota {
        max_entries,
        max_bytes,
    })
}

fn validate_api(raw: RawApi) -> anyhow::Result<ApiLimits> {
    let d = ApiLimits::default();
    let header_timeout =
        duration("api.header_timeout", raw.header_timeout.as_deref())?.unwrap_or(d.header_timeout);
    if header_timeout.is_zero() {
        bail!("config: `api.header_timeout` must be longer than 0s");
    }
    let stall_after =
        duration("api.stall_after", raw.stall_after.as_deref())?.unwrap_or(d.stall_after);
    if stall_after < Duration::from_secs(1) {
        bail!(
            "config: `api.stall_after` must be at least 1s (got {})",
            show(stall_after)
        );
    }
    let count = |key: &str, v: Option<i64>, default: usize| match v {
        None => Ok(default),
        Some(n) if (1..=1_000_000).contains(&n) => Ok(n as usize),
        Some(n) => Err(anyhow::anyhow!(
            "config: `{key}` must be a whole number from 1 to 1000000 (got {n})"
        )),
    };
    Ok(ApiLimits {
        header_timeout,
        max_connections: count(
            "api.max_connections",
            raw.max_connections,
            d.max_connections,
        )?,
        max_event_streams: count(
            "api.max_event_streams",
            raw.max_event_streams,
            d.max_event_streams,
        )?,
        stall_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn validate(toml: &str) -> anyhow::Result<Config> {
        RawConfig::from_toml(toml, "spool.toml")?.validate()
    }

    #[test]
    fn empty_config_gets_the_documented_defaults() {
        let c = validate("").unwrap();
        assert_eq!(c.storage, DEFAULT_STORAGE);
        assert_eq!(c.listen.to_string(), "127.0.0.1:7878");
        assert_eq!(c.plugins, PathBuf::from("./data/plugins"));
        assert_eq!(c.cache_dir, PathBuf::from("./data/cache"));
        assert_eq!(c.lease, Duration::from_secs(30));
        assert_eq!(c.shutdown_grace, Duration::from_secs(10));
        assert!(c.workers >= 4);
        assert_eq!(c.retry, RetryConfig::default());
        assert_eq!(c.retention, RetentionPolicy::default());
        assert!(c.api_token.is_none());
    }

    #[test]
    fn later_layers_win_over_earlier_ones() {
        let file = RawConfig::from_toml(
            "workers = 3\nlease = \"10s\"\nlisten = \"127.0.0.1:1\"",
            "f",
        )
        .unwrap();
        let env =
            RawConfig::from_env(env(&[("SPOOL_WORKERS", "5"), ("SPOOL_LEASE", "7s")])).unwrap();
        let flags = FlagOverrides {
            workers: Some(9),
            ..Default::default()
        };
        let c = file.merge(env).apply_flags(flags).validate().unwrap();
        assert_eq!(c.workers, 9);
        assert_eq!(c.lease, Duration::from_secs(7));
        assert_eq!(c.listen.port(), 1);
    }

    #[test]
    fn a_data_dir_holds_the_default_database_and_cache() {
        let c = validate("data_dir = \"/srv/spool\"").unwrap();
        assert_eq!(c.storage, "sqlite:///srv/spool/spool.db");
        assert_eq!(c.cache_dir, PathBuf::from("/srv/spool/cache"));
        let c = validate("data_dir = \"/srv/spool\"\nstorage = \"memory://\"").unwrap();
        assert_eq!(c.storage, "memory://");
    }

    #[test]
    fn zero_workers_is_an_error_naming_the_key() {
        let e = validate("workers = 0").unwrap_err().to_string();
        assert_eq!(e, "config: `workers` must be at least 1 (got 0)");
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let e = validate("wrokers = 3").unwrap_err().to_string();
        assert!(e.contains("unknown field `wrokers`"), "{e}");
        let e = validate("[retry]\nbase = \"1s\"").unwrap_err().to_string();
        assert!(e.contains("unknown field `base`"), "{e}");
    }

    #[test]
    fn bad_duration_names_the_key_and_the_value() {
        let e = validate("[retry]\nbackoff_base = \"fast\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`retry.backoff_base`") && e.contains("\"fast\""),
            "{e}"
        );
        let e = validate("lease = \"30\"").unwrap_err().to_string();
        assert!(e.contains("`lease`") && e.contains("no unit"), "{e}");
    }

    #[test]
    fn non_loopback_listen_needs_a_token() {
        let e = validate("listen = \"0.0.0.0:7878\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("refusing to listen on 0.0.0.0:7878"), "{e}");
        let c = validate("listen = \"0.0.0.0:7878\"\napi_token = \"s3cret\"").unwrap();
        assert_eq!(c.api_token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn sizes_accept_integers_and_units() {
        assert_eq!(validate("max_payload = 2048").unwrap().max_payload, 2048);
        assert_eq!(
            validate("max_payload = \"2KiB\"").unwrap().max_payload,
            2048
        );
        assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
        let e = validate("max_payload = \"2 parsecs\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`max_payload`") && e.contains("unknown unit"),
            "{e}"
        );
    }

    #[test]
    fn retention_tables_inherit_and_override() {
        let c = validate(
            "[retention]\ncompleted_max_age = \"1h\"\nfailed_max_count = \"off\"\n\
             [retention.types.thumb]\ncompleted_max_count = 10\n",
        )
        .unwrap();
        assert_eq!(
            c.retention.completed.max_age,
            Some(Duration::from_secs(3600))
        );
        assert_eq!(c.retention.failed.max_count, None);
        let thumb = &c.retention.per_type["thumb"];
        assert_eq!(thumb.completed.max_count, Some(10));
        assert_eq!(thumb.completed.max_age, Some(Duration::from_secs(3600)));
        let e = validate("[retention.types.x]\nfailed_max_count = -1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`retention.types.x.failed_max_count`"), "{e}");
    }

    #[test]
    fn fallback_is_read_from_every_layer_and_needs_redis() {
        let c = validate("storage = \"redis://127.0.0.1:1\"\nfallback = \"./fb.db\"").unwrap();
        assert_eq!(c.fallback.as_deref(), Some("./fb.db"));
        let env = RawConfig::from_env(env(&[
            ("SPOOL_STORAGE", "redis://h:1"),
            ("SPOOL_FALLBACK", "a.db"),
        ]))
        .unwrap();
        let flags = FlagOverrides {
            fallback: Some("b.db".into()),
            ..Default::default()
        };
        let c = env.apply_flags(flags).validate().unwrap();
        assert_eq!(c.fallback.as_deref(), Some("b.db"));
        let e = validate("fallback = \"./fb.db\"").unwrap_err().to_string();
        assert!(e.contains("`fallback`") && e.contains("redis"), "{e}");
        assert!(validate("").unwrap().fallback.is_none());
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let e = RawConfig::from_env(env(&[("SPOOL_WORKERS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("SPOOL_WORKERS"), "{e}");
        let e = RawConfig::from_env(env(&[("SPOOL_API_TOKEN", "")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn backoff_cap_below_base_is_rejected() {
        let e = validate("[retry]\nbackoff_base = \"10s\"\nbackoff_cap = \"1s\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`retry.backoff_cap`"), "{e}");
    }
}
