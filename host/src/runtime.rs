//! The Wasm runtime: one wasmtime `Engine` (pooling allocator, epoch interruption), a linker
//! with WASI p2 (no files, no sockets), `wasi:http` behind each plugin's allow-list, and the
//! Spool host imports of both contract versions; compiled-component caching; and `execute`,
//! which runs one job in a fresh instance (or, for plugins that ask, a kept one: `reuse`) with
//! the plugin's time and memory limits and turns
//! whatever happens (result, error, trap, timeout, out of memory) into an `Outcome`. A guest
//! can never take the host down.

mod bindings;
mod cache;
mod engine;
mod execute;
mod host_api;
pub mod http;
mod limits;
mod reuse;
mod secrets;

use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use engine::pagemap_scan_available;
pub use host_api::LogLevel;
pub use http::{HttpConfig, HttpLimits, HttpObserver};
pub use secrets::{REDACTED, Secrets};

/// The world new plugins target (wit/spool-plugin@0.2.0); components built for the released
/// `spool:plugin/handler@0.1.0` load too.
pub const WORLD: &str = "spool:plugin/handler@0.2.0";

/// The largest memory limit a plugin may have: the pooling allocator reserves this much
/// address space per memory slot (see `engine`).
pub const MAX_MEMORY: u64 = 4 << 30;

/// Default per-attempt timeout when neither the job nor the manifest sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default memory cap, summed over all linear memories of one instance.
pub const DEFAULT_MEMORY: u64 = 64 << 20;
/// Default time a job told to stop (`cancelled()` true) may keep running before it is
/// interrupted.
pub const CANCEL_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct RuntimeConfig {
    /// Where compiled components (`.cwasm`) are cached, keyed by content hash and engine;
    /// None compiles every load.
    pub cache_dir: Option<PathBuf>,
    /// Pooling allocator size = the most jobs that run at once; `execute` waits for a free
    /// slot beyond that.
    pub max_instances: u32,
    pub default_timeout: Duration,
    pub default_memory: u64,
    /// Send guest log lines and stdout/stderr to `tracing` (target `spool::plugin`) as well
    /// as to `JobServices::log`. `spool exec` turns this off and prints them itself.
    pub trace_guest_logs: bool,
    /// How long a job told to stop may keep running before it is interrupted.
    pub cancel_grace: Duration,
    /// Outbound HTTP: default limits (manifests override them) and the CA roots.
    pub http: HttpConfig,
    /// Where outbound requests are reported (the daemon's metrics).
    pub http_observer: Option<Arc<dyn HttpObserver>>,
    /// Largest result and follow-up payload, in bytes (the daemon's `max_payload`): what
    /// storage accepts, so a finished job never loses its result to the check after it.
    pub max_payload: usize,
    /// Time for follow-up jobs' run-at times.
    pub clock: Arc<dyn crate::job::Clock>,
}

impl std::fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("cache_dir", &self.cache_dir)
            .field("max_instances", &self.max_instances)
            .field("default_timeout", &self.default_timeout)
            .field("default_memory", &self.default_memory)
            .field("trace_guest_logs", &self.trace_guest_logs)
            .field("cancel_grace", &self.cancel_grace)
            .field("http", &self.http)
            .field("max_payload", &self.max_payload)
            .finish_non_exhaustive()
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_instances: 256,
            default_timeout: DEFAULT_TIMEOUT,
            default_memory: DEFAULT_MEMORY,
            trace_guest_logs: true,
            cancel_grace: CANCEL_GRACE,
            http: HttpConfig::default(),
            http_observer: None,
            max_payload: crate::job::DEFAULT_MAX_PAYLOAD_BYTES,
            clock: Arc::new(crate::job::SystemClock),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    #[error("cannot create the compiled-plugin cache folder `{}`: {reason}", dir.display())]
    CacheDir { dir: PathBuf, reason: String },
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(String),
    #[error("{0}")]
    Tls(String),
}

/// Cheap to clone: everything lives behind one `Arc`.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<engine::RuntimeInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

/// One attempt of one job, as the runtime needs it.
#[derive(Debug, Clone, Default)]
pub struct JobInput {
    pub id: String,
    pub job_type: String,
    /// JSON text (already validated when the job was accepted).
    pub payload: String,
    pub attempt: u32,
    pub max_attempts: u32,
    pub priority: u8,
    pub created_at_ms: u64,
    pub unique_key: Option<String>,
    /// Per-job override of the manifest's (or the default) timeout.
    pub timeout: Option<Duration>,
}

/// What the daemon (or `spool exec`) offers one job: cache (already namespaced to the plugin
/// by the implementor), progress, cancellation, and where log lines go.
#[async_trait::async_trait]
pub trait JobServices: Send + Sync {
    async fn cache_get(&self, key: &str) -> Result<Option<String>, String>;
    async fn cache_set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), String>;
    async fn cache_delete(&self, key: &str) -> Result<bool, String>;
    async fn cache_increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, String>;
    async fn progress(&self, percent: u8, message: Option<String>);
    /// Polled by the guest's `cancelled()` and by the runtime: once true, the runtime stops the
    /// job after `RuntimeConfig::cancel_grace` (Outcome::Crashed{kind: Cancelled}).
    fn cancelled(&self) -> bool;
    /// Called for every line the job logs (guest `log` calls and stdout/stderr lines), as it
    /// happens. The same lines end up in `Execution::logs`. Default: nothing.
    fn log(&self, _level: LogLevel, _line: &str) {}
}

/// Services for a job that needs none: no cache (errors), progress dropped, never cancelled.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoServices;

#[async_trait::async_trait]
impl JobServices for NoServices {
    async fn cache_get(&self, _key: &str) -> Result<Option<String>, String> {
        Err("no cache is available here".into())
    }
    async fn cache_set(
        &self,
        _key: &str,
        _value: &str,
        _ttl: Option<Duration>,
    ) -> Result<(), String> {
        Err("no cache is available here".into())
    }
    async fn cache_delete(&self, _key: &str) -> Result<bool, String> {
        Err("no cache is available here".into())
    }
    async fn cache_increment(
        &self,
        _key: &str,
        _delta: i64,
        _ttl: Option<Duration>,
    ) -> Result<i64, String> {
        Err("no cache is available here".into())
    }
    async fn progress(&self, _percent: u8, _message: Option<String>) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// The result of one attempt.
#[derive(Debug)]
pub struct Execution {
    pub outcome: Outcome,
    /// Guest `log()` lines and captured stdout/stderr lines, the last `job::MAX_LOG_LINES`.
    pub logs: Vec<String>,
    /// From the `enqueue` import; ids already assigned. Commit only on `Success`.
    pub followups: Vec<crate::job::NewJob>,
    /// Wall time from instantiation to the end of the call.
    pub duration: Duration,
    /// Store setup plus instantiation, when a new instance was created for this job (part of
    /// `duration`); `None` for a job on a kept instance (`instances = "reuse"`).
    pub instantiate: Option<Duration>,
    /// The largest total linear memory the instance had, in bytes.
    pub peak_memory: u64,
}

#[derive(Debug)]
pub enum Outcome {
    /// Validated JSON.
    Success(Box<RawValue>),
    /// The plugin asked to be retried.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// The plugin failed permanently.
    Fail { error: String },
    /// The service the plugin calls is rate limiting: hold back the job's type for `after`
    /// (None: the default) on every daemon, and run the job again without counting the
    /// attempt.
    RateLimited {
        error: String,
        after: Option<Duration>,
    },
    /// Host-detected failure; the retry policy applies.
    Crashed { error: String, kind: CrashKind },
    /// The plugin never ran: the instance pool stayed full through every retry. A capacity
    /// problem of the host, not the plugin's: the scheduler gives the job back to the queue
    /// without counting the attempt.
    NoCapacity { error: String },
}

impl Outcome {
    /// The error message, when this is not a success.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Success(_) => None,
            Outcome::Retry { error, .. }
            | Outcome::RateLimited { error, .. }
            | Outcome::Fail { error }
            | Outcome::Crashed { error, .. }
            | Outcome::NoCapacity { error } => Some(error),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashKind {
    Trap,
    Timeout,
    OutOfMemory,
    Cancelled,
    InvalidResult,
}

impl CrashKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CrashKind::Trap => "trap",
            CrashKind::Timeout => "timeout",
            CrashKind::OutOfMemory => "out_of_memory",
            CrashKind::Cancelled => "cancelled",
            CrashKind::InvalidResult => "invalid_result",
        }
    }
}

/// What the runtime needs of a plugin besides its bytes: its name (for logs and errors) and
/// the settings its jobs run with. The plugin layer fills it from the manifest.
#[derive(Debug, Clone, Default)]
pub struct CodeSettings {
    pub name: String,
    /// Bytes, summed over all linear memories of one instance (None: the default; capped at
    /// `MAX_MEMORY`).
    pub memory: Option<u64>,
    /// Per-attempt timeout (None: the default; a job may override it).
    pub timeout: Option<Duration>,
    /// What `config::get` returns.
    pub config: BTreeMap<String, String>,
    /// What `secrets::get` returns (never logged).
    pub secrets: Secrets,
    /// Where outbound HTTP may go (empty: nowhere).
    pub allow: http::AllowList,
    /// Outbound HTTP limits that differ from the daemon's.
    pub http: http::HttpLimitsOverride,
    /// A fresh instance per job, or instances kept to serve many jobs in turn.
    pub instances: Instances,
}

/// How a plugin's jobs get their instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Instances {
    /// A fresh instance per job: nothing one job does can be seen by the next.
    #[default]
    Fresh,
    /// An instance serves many jobs of its plugin in turn, keeping its module globals
    /// between them; a crash, a timeout, a cancel, memory past three quarters of the limit
    /// or 64 MiB, or an HTTP request left open discard it (see `reuse`).
    Reuse,
}

impl Instances {
    /// The default: a fresh instance per job.
    pub fn is_fresh(&self) -> bool {
        *self == Instances::Fresh
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Instances::Fresh => "fresh",
            Instances::Reuse => "reuse",
        }
    }
}

/// An instance idle this long is dropped; one serves at most `REUSE_MAX_JOBS` jobs.
pub const REUSE_IDLE_TIMEOUT: Duration = reuse::IDLE_TIMEOUT;
pub const REUSE_MAX_JOBS: u32 = reuse::MAX_JOBS;

/// Bytes that became runnable code.
pub struct Compiled {
    pub code: PluginCode,
    /// sha256 of the bytes (the compile cache's key).
    pub digest: [u8; 32],
    pub compile: CompileInfo,
}

/// How code was obtained: from the compiled-plugin cache (milliseconds) or compiled now
/// (seconds for a large JavaScript or Python plugin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CompileInfo {
    pub source: CompileSource,
    /// Time to compile or to load from the cache, and check.
    pub ms: u64,
}

/// Why bytes could not become runnable code. `Display` is the reason only; the plugin layer
/// says which plugin and file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error(
        "it is not a WebAssembly file; a plugin is a component targeting `{WORLD}`, built with spool-sdk 0.2"
    )]
    NotWasm,
    #[error(
        "it is a core WebAssembly module, not a component; build it for wasm32-wasip2 with spool-sdk 0.2"
    )]
    CoreModule,
    #[error(
        "it is truncated or corrupt ({0}); a file still being copied is loaded again once the copy completes"
    )]
    Corrupt(String),
    #[error(
        "it does not export `{WORLD}` (or `spool:plugin/handler@0.1.0`){0}; rebuild it with spool-sdk 0.2"
    )]
    WrongWorld(String),
    #[error(
        "it imports `{0}`, which this host does not provide (plugins get `spool:plugin/*@0.2.0` or `@0.1.0`, WASI 0.2 without files or sockets, and `wasi:http/outgoing-handler`); rebuild it with spool-sdk 0.2"
    )]
    UnknownImport(String),
    #[error("cannot compile it: {0}")]
    Compile(String),
}

/// One plugin version's code, compiled and pre-linked, with the settings its jobs run with.
/// Cheap to clone.
#[derive(Clone)]
pub struct PluginCode {
    name: Arc<str>,
    pre: engine::Pre,
    config: Arc<BTreeMap<String, String>>,
    timeout: Duration,
    memory: u64,
    secrets: Arc<Secrets>,
    http: Arc<http::HttpPolicy>,
    /// The engine `pre` was compiled for (see `engine::LARGE_MEMORY`).
    engine: wasmtime::Engine,
    /// Idle instances kept for the next job (`Instances::Reuse`); None: fresh per job.
    warm: Option<Arc<reuse::WarmPool>>,
}

impl PluginCode {
    /// The contract version the component was built for: "0.1.0" or "0.2.0".
    pub fn contract(&self) -> &'static str {
        self.pre.contract()
    }

    /// The plugin's name, as given in its `CodeSettings`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn instances(&self) -> Instances {
        if self.warm.is_some() {
            Instances::Reuse
        } else {
            Instances::Fresh
        }
    }
}

impl std::fmt::Debug for PluginCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginCode")
            .field("name", &self.name)
            .field("contract", &self.contract())
            .field("timeout", &self.timeout)
            .field("memory", &self.memory)
            .finish_non_exhaustive()
    }
}

/// Where a component came from when it was loaded (for logs, the plugins page and the
/// benchmark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompileSource {
    /// Compiled now; no cache configured.
    Compiled,
    /// Compiled now and written to the cache.
    CompiledAndCached,
    /// Loaded from the on-disk cache without compiling.
    Cache,
}

impl Runtime {
    pub fn new(cfg: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        Ok(Runtime {
            inner: Arc::new(engine::RuntimeInner::new(cfg)?),
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.cfg
    }

    /// Compile (or load from the cache) and pre-link; the compile runs on `spawn_blocking`.
    pub async fn compile(
        &self,
        bytes: Vec<u8>,
        settings: CodeSettings,
    ) -> Result<Compiled, CompileError> {
        self.inner.compile(bytes, settings).await
    }

    /// One job in a fresh instance with the plugin's limits. Never panics, never fails the host.
    pub async fn execute(
        &self,
        code: &PluginCode,
        input: JobInput,
        services: Arc<dyn JobServices>,
    ) -> Execution {
        execute::execute(&self.inner, code, input, services).await
    }

    /// Where a job's time goes (store setup, instantiate, call, drop), summed over
    /// `iterations` runs of `input`. For the benchmark; not a stable API.
    #[doc(hidden)]
    pub async fn phase_times(
        &self,
        code: &PluginCode,
        input: &JobInput,
        iterations: u32,
    ) -> Result<[Duration; 4], String> {
        execute::phase_times(&self.inner, code, input, iterations)
            .await
            .map_err(|e| format!("{e:#}"))
    }

    /// Holds `n` instances of `code` outside the instance semaphore until the returned value
    /// drops, so that a test can fill the pool the way wasmtime's decommit queue does for a
    /// moment. Not a stable API.
    #[doc(hidden)]
    pub async fn occupy_instances(
        &self,
        code: &PluginCode,
        n: usize,
    ) -> Result<Box<dyn std::any::Any + Send>, String> {
        match execute::occupy(&self.inner, code, n).await {
            Ok(stores) => Ok(Box::new(stores)),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    /// Pooling allocator occupancy, for `/metrics`.
    pub fn instances_in_use(&self) -> u32 {
        self.inner.instances_in_use()
    }

    /// Instances kept between jobs of plugins that reuse them.
    pub fn idle_instances(&self) -> u32 {
        u32::try_from(self.inner.idle.held()).unwrap_or(u32::MAX)
    }

    /// Drops the kept instances that would be idle past `REUSE_IDLE_TIMEOUT` at `now + ahead`
    /// (the epoch ticker does this every second with `ahead` zero). For tests; not a stable
    /// API.
    #[doc(hidden)]
    pub fn trim_idle_instances(&self, ahead: Duration) {
        self.inner.idle.trim(std::time::Instant::now() + ahead);
    }
}
