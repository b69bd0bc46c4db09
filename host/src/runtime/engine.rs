//! The process-wide wasmtime pieces: the `Engine` (pooling allocator, epoch interruption),
//! the epoch ticker thread, the `Linker` with WASI p2, `wasi:http` and the Spool imports of
//! both contract versions, and loading a component into a pre-linked `Pre` of its version
//! (compile off the async workers, cached on disk).

use super::bindings::{v1, v2};
use super::cache::ArtifactCache;
use super::host_api::JobState;
use super::http::{HttpPolicy, TlsRoots};
use super::reuse::{self, IdleBudget};
use super::{
    CodeSettings, CompileError, CompileInfo, CompileSource, Compiled, Instances, MAX_MEMORY,
    PluginCode, RuntimeConfig, RuntimeError,
};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Epoch tick: the resolution of timeouts and how often a spinning guest yields to tokio.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A component pre-linked against the contract version it was built for.
#[derive(Clone)]
pub(crate) enum Pre {
    V1(v1::HandlerPre<JobState>),
    V2(v2::HandlerPre<JobState>),
}

impl Pre {
    pub(crate) fn contract(&self) -> &'static str {
        match self {
            Pre::V1(_) => "0.1.0",
            Pre::V2(_) => "0.2.0",
        }
    }
}

/// Plugins whose memory limit is above this run on the engine that gives a finished
/// instance's memory back to the system at once. The other engine batches those decommits
/// (64 regions a thread shard), which keeps two threads creating instances from fighting over
/// the address space, but left the memory of finished jobs resident until a batch filled:
/// six jobs that each grew to a 512 MiB limit kept 3.3 GiB after the daemon went idle.
/// Below this limit a batch holds at most a few dozen finished instances of at most this
/// size each.
pub(crate) const LARGE_MEMORY: u64 = 64 << 20;

/// One engine with the linker and compiled-code cache that go with it.
pub(crate) struct EngineSet {
    pub(crate) engine: Engine,
    linker: Linker<JobState>,
    cache: Option<ArtifactCache>,
}

impl EngineSet {
    fn new(cfg: &RuntimeConfig, max: u32, decommit_batch: usize) -> Result<Self, RuntimeError> {
        let engine = build_engine(max, decommit_batch)?;
        let linker = build_linker(&engine)?;
        let cache = match &cfg.cache_dir {
            Some(dir) => Some(ArtifactCache::open(dir, &engine)?),
            None => None,
        };
        Ok(Self {
            engine,
            linker,
            cache,
        })
    }
}

pub(crate) struct RuntimeInner {
    /// For plugins with a memory limit up to `LARGE_MEMORY`: batched decommits.
    normal: EngineSet,
    /// For plugins allowed more: each finished instance's memory is released at once.
    large: EngineSet,
    pub(crate) cfg: RuntimeConfig,
    /// One permit per pooling-allocator instance slot: `execute` waits here instead of
    /// failing when the pool is full.
    pub(crate) slots: Arc<Semaphore>,
    /// Instances kept between jobs (plugins with `Instances::Reuse`), at most
    /// `reuse::idle_budget(max_instances)`: the pool has room for them besides the running ones.
    pub(crate) idle: Arc<IdleBudget>,
    tls: Arc<TlsRoots>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The linker: WASI p2, `wasi:http` and the Spool imports of both contract versions.
fn build_linker(engine: &Engine) -> Result<Linker<JobState>, RuntimeError> {
    let mut linker = Linker::<JobState>::new(engine);
    let link_error = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_error)?;
    // Every component may import wasi:http; what it may reach is decided per plugin
    // (`allowed_hosts`, empty by default) when a request is sent.
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link_error)?;
    v1::Handler::add_to_linker::<JobState, HasSelf<JobState>>(&mut linker, |s| s)
        .map_err(link_error)?;
    // The 0.2.0 world's WASI imports are linked above; only its own interfaces here.
    {
        use v2::spool::plugin::{cache, config, enqueue, log, progress, secrets, types};
        let l = &mut linker;
        types::add_to_linker::<JobState, HasSelf<JobState>>(l, |s| s).map_err(link_error)?;
        log::add_to_linker::<JobState, HasSelf<JobState>>(l, |s| s).map_err(link_error)?;
        progress::add_to_linker::<JobState, HasSelf<JobState>>(l, |s| s).map_err(link_error)?;
        cache::add_to_linker::<JobState, HasSelf<JobState>>(l, |s| s).map_err(link_error)?;
        enqueue::add_to_linker::<JobState, HasSelf<JobState>>(l, |s| s).map_err(link_error)?;
        config::add_to_linker::<JobState, HasSelf<JobState>>(l, |s| s).map_err(link_error)?;
        secrets::add_to_linker::<JobState, HasSelf<JobState>>(l, |s| s).map_err(link_error)?;
    }
    Ok(linker)
}

impl RuntimeInner {
    pub(crate) fn new(cfg: RuntimeConfig) -> Result<Self, RuntimeError> {
        let max = cfg.max_instances.max(1);
        // Running instances (the semaphore) plus the idle ones kept for reuse.
        let idle_max = reuse::idle_budget(max);
        let slots = max.saturating_add(idle_max);
        let normal = EngineSet::new(&cfg, slots, DECOMMIT_BATCH)?;
        let large = EngineSet::new(&cfg, slots, 1)?;
        let tls = Arc::new(TlsRoots::new(cfg.http.ca_file.clone()).map_err(RuntimeError::Tls)?);
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let idle = IdleBudget::new(idle_max as usize);
        spawn_ticker(
            [normal.engine.clone(), large.engine.clone()],
            ticker_stop.clone(),
        )?;
        reuse::spawn_trim(idle.clone(), ticker_stop.clone())
            .map_err(|e| RuntimeError::Ticker(e.to_string()))?;
        Ok(Self {
            normal,
            large,
            idle,
            slots: Arc::new(Semaphore::new(max as usize)),
            cfg,
            tls,
            ticker_stop,
        })
    }

    pub(crate) fn instances_in_use(&self) -> u32 {
        (self.cfg.max_instances.max(1) as usize).saturating_sub(self.slots.available_permits())
            as u32
    }

    /// Check the header, compile (or load from cache) on a blocking thread, pre-link, and
    /// type-check the export.
    pub(crate) async fn compile(
        &self,
        bytes: Vec<u8>,
        settings: CodeSettings,
    ) -> Result<Compiled, CompileError> {
        check_header(&bytes)?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let memory = settings
            .memory
            .unwrap_or(self.cfg.default_memory)
            .min(MAX_MEMORY);
        let set = if memory > LARGE_MEMORY {
            &self.large
        } else {
            &self.normal
        };
        let engine = set.engine.clone();
        let cache = set.cache.clone();
        let started = std::time::Instant::now();
        let compiled = tokio::task::spawn_blocking(move || match &cache {
            Some(cache) => cache.load_or_compile(&engine, &digest, &bytes),
            None => Component::new(&engine, &bytes).map(|c| (c, CompileSource::Compiled)),
        })
        .await
        .map_err(|e| CompileError::Compile(format!("the compiler thread failed: {e}")))?;
        let (component, source) = compiled.map_err(|e| compile_failure(&e))?;
        let compile = CompileInfo {
            source,
            ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };

        let pre = set
            .linker
            .instantiate_pre(&component)
            .map_err(|e| link_failure(&set.engine, &component, &e))?;
        let export_error = |e: wasmtime::Error| export_failure(&set.engine, &component, &e);
        // The version its imports name first; the other when its `handle` fits only that one
        // (a component that imports nothing of ours).
        let as_v1 = |p| v1::HandlerPre::new(p).map(Pre::V1);
        let as_v2 = |p| v2::HandlerPre::new(p).map(Pre::V2);
        let pre = if imports_contract_v2(&set.engine, &component) {
            as_v2(pre.clone()).or_else(|e| as_v1(pre).map_err(|_| e))
        } else {
            as_v1(pre.clone()).or_else(|e| as_v2(pre).map_err(|_| e))
        }
        .map_err(export_error)?;

        let http = HttpPolicy::new(
            &settings.name,
            settings.allow,
            settings.http.over(self.cfg.http.limits),
            self.tls.clone(),
            self.cfg.http_observer.clone(),
        );
        tracing::debug!(plugin = %settings.name, ?source, "plugin compiled and linked");
        let code = PluginCode {
            name: Arc::from(settings.name.as_str()),
            pre,
            secrets: Arc::new(settings.secrets),
            http: Arc::new(http),
            config: Arc::new(settings.config),
            timeout: settings.timeout.unwrap_or(self.cfg.default_timeout),
            memory,
            engine: set.engine.clone(),
            warm: (settings.instances == Instances::Reuse).then(|| self.idle.pool()),
        };
        Ok(Compiled {
            code,
            digest,
            compile,
        })
    }
}

/// Freed pool slots are decommitted this many regions at a time (see `build_engine`).
const DECOMMIT_BATCH: usize = 64;

/// An engine: component model, epoch interruption, and a pooling allocator sized for `max`
/// concurrent instances that decommits freed slots `decommit_batch` regions at a time. Batched
/// decommits and PAGEMAP_SCAN stop two threads from fighting over the address space, and a
/// small keep-resident keeps slot reuse cheap (1 MiB made Rust guests 2x slower).
fn build_engine(max: u32, decommit_batch: usize) -> Result<Engine, RuntimeError> {
    // Freed memory, table and stack slots wait in wasmtime's decommit queue (one per thread
    // shard, at most the CPU count and 16) until DECOMMIT_BATCH regions gathered. With 4
    // workers the queue could hold every memory slot of the pool, and a job starting while
    // another thread flushed it found none ("maximum concurrent limit of 16 for memory stripe
    // 0 reached"). So each kind gets that many slots more than its running jobs can hold;
    // `execute` still retries a full pool, for guests larger than these totals assume.
    let shards = std::thread::available_parallelism().map_or(1, |n| n.get().min(16));
    let queued = u32::try_from(shards * decommit_batch).unwrap_or(u32::MAX);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(max)
        // A Rust component has 1 memory, 2-3 tables and 3-4 core instances; interpreted
        // languages (Python, JS) and adapted C have more. The instance semaphore only bounds
        // component instances, so the per-kind totals must cover `max` of the largest guests:
        // with 2 per instance, 8 workers running `slow` ran out of tables under load and the
        // job crashed ("maximum concurrent limit of 32 for tables reached"). Table and
        // core-instance slots are small; memory slots reserve address space only.
        .total_memories(max.saturating_mul(4).saturating_add(queued))
        .total_tables(max.saturating_mul(32).saturating_add(queued))
        .total_stacks(max.saturating_add(queued))
        .total_core_instances(max.saturating_mul(32))
        .max_memories_per_component(8)
        .max_tables_per_component(32)
        .max_core_instances_per_component(64)
        .max_component_instance_size(1 << 20)
        .max_memory_size(MAX_MEMORY as usize)
        .decommit_batch_size(decommit_batch)
        .linear_memory_keep_resident(64 << 10)
        .table_keep_resident(16 << 10)
        // Linux >= 6.7 only; Auto quietly falls back to madvise elsewhere.
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        // Jobs use the fiber-based async of WASI p2, not component-model async (which this
        // build does not compile in); said explicitly so that enabling that feature later does
        // not quietly add its per-store bookkeeping to every job.
        .concurrency_support(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(|e| RuntimeError::Engine(format!("{e:#}")))
}

/// Whether PAGEMAP_SCAN (the fast slot reset) works on this kernel.
pub fn pagemap_scan_available() -> bool {
    PoolingAllocationConfig::is_pagemap_scan_available()
}

/// One thread per runtime bumps the epoch every tick; stops soon after the runtime is dropped.
fn spawn_ticker(engines: [Engine; 2], stop: Arc<AtomicBool>) -> Result<(), RuntimeError> {
    std::thread::Builder::new()
        .name("spool-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                for engine in &engines {
                    engine.increment_epoch();
                }
            }
        })
        .map(|_| ())
        .map_err(|e| RuntimeError::Ticker(e.to_string()))
}

/// Tell a component apart from other files before handing it to the compiler, so the error
/// says what the file is.
fn check_header(bytes: &[u8]) -> Result<(), CompileError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(CompileError::NotWasm);
    }
    // Core modules are version 1, layer 0; components have layer 1 (bytes 6-7).
    match bytes[6..8] {
        [1, 0] => Ok(()),
        [0, 0] => Err(CompileError::CoreModule),
        _ => Err(CompileError::Corrupt(
            "unknown WebAssembly binary version".into(),
        )),
    }
}

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn compile_failure(e: &wasmtime::Error) -> CompileError {
    let msg = one_line(&format!("{e:#}"));
    if msg.contains("end-of-file")
        || msg.contains("out of bounds")
        || msg.contains("unexpected end")
    {
        CompileError::Corrupt(msg)
    } else {
        CompileError::Compile(msg)
    }
}

/// Whether the component was built for `spool:plugin@0.2.0`: it imports one of its
/// interfaces. A component that imports none of ours is linked as 0.1.0, whose `handle`
/// export it must then match.
fn imports_contract_v2(engine: &Engine, component: &Component) -> bool {
    component
        .component_type()
        .imports(engine)
        .any(|(name, _)| name.starts_with("spool:plugin/") && name.ends_with("@0.2.0"))
}

/// `instantiate_pre` failed: name the import we do not provide.
fn link_failure(engine: &Engine, component: &Component, e: &wasmtime::Error) -> CompileError {
    let msg = one_line(&format!("{e:#}"));
    // "component imports instance `wasi:http/types@0.2.4`, but a matching implementation
    // was not found in the linker": the name is between the first backticks.
    if msg.contains("import")
        && let Some(name) = msg.split('`').nth(1)
    {
        return CompileError::UnknownImport(name.to_string());
    }
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        let ours = name.starts_with("spool:plugin/")
            && (name.ends_with("@0.1.0") || name.ends_with("@0.2.0"));
        if !ours && !name.starts_with("wasi:") {
            return CompileError::UnknownImport(name.to_string());
        }
    }
    CompileError::Compile(msg)
}

/// `HandlerPre::new` failed: the component does not export `handle` with our signature.
fn export_failure(engine: &Engine, component: &Component, e: &wasmtime::Error) -> CompileError {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| format!("`{n}`")).collect();
    let detail = if ty.get_export(engine, "handle").is_some() {
        format!(
            " (its `handle` export has another signature: {})",
            one_line(&format!("{e:#}"))
        )
    } else if exports.is_empty() {
        " (it exports nothing)".to_string()
    } else {
        format!(" (it exports {})", exports.join(", "))
    };
    CompileError::WrongWorld(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_components_from_modules_and_junk() {
        assert_eq!(check_header(b"hello world"), Err(CompileError::NotWasm));
        assert_eq!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(CompileError::CoreModule)
        );
        assert_eq!(check_header(b"\0asm\x0d\0\x01\0"), Ok(()));
        assert_eq!(check_header(b"\0asm"), Err(CompileError::NotWasm));
    }
}
