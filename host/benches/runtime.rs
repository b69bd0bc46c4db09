//! Runtime benchmarks (criterion, `harness = false`): the cost of one job for `echo` (fresh
//! store + instance from the pre-linked component, call, drop), where that time goes, and
//! loading each example plugin cold (compile) versus from the on-disk `.cwasm` cache.
//!
//! Run in the dev profile (dependencies are optimised; a release wasmtime build takes 20 min):
//!   scripts/build-plugins.sh && cargo test -p spool-host --bench runtime -- --bench
//! Big interpreted plugins (js-*, py-*) take 10-20 s per cold compile: they are skipped unless
//! `SPOOL_BENCH_BIG=1`. `SPOOL_TEST_PLUGINS` points at another plugins folder.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use spool_host::plugins::{LoadedPlugin, Manifest};
use spool_host::runtime::{JobInput, NoServices, Outcome, Runtime, RuntimeConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn plugins_dir() -> PathBuf {
    let dir = match std::env::var_os("SPOOL_TEST_PLUGINS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"),
    };
    assert!(
        dir.join("echo.wasm").is_file(),
        "the plugins are missing from `{}`: run scripts/build-plugins.sh first",
        dir.display()
    );
    dir
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio")
}

fn runtime(cache_dir: Option<PathBuf>) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir,
        max_instances: 64,
        trace_guest_logs: false,
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

fn echo_input() -> JobInput {
    JobInput {
        id: "01a2017057-bench".into(),
        job_type: "echo".into(),
        payload: r#"{"hello":"world"}"#.into(),
        attempt: 1,
        max_attempts: 4,
        priority: 5,
        ..JobInput::default()
    }
}

fn load(rt: &tokio::runtime::Runtime, runtime: &Runtime, name: &str) -> Arc<LoadedPlugin> {
    let path = plugins_dir().join(format!("{name}.wasm"));
    rt.block_on(runtime.load(name, &path, Manifest::default()))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn echo_job(c: &mut Criterion) {
    let rt = tokio_rt();
    let runtime = runtime(None);
    let echo = load(&rt, &runtime, "echo");
    let services: Arc<NoServices> = Arc::new(NoServices);

    // Where the time goes, printed once before criterion's figures (after a warm-up, so pool
    // slots and page tables are in the state a busy daemon keeps them in).
    rt.block_on(runtime.phase_times(&echo, &echo_input(), 2000))
        .expect("warm-up");
    let n = 5000;
    eprintln!(
        "pooling allocator: PAGEMAP_SCAN {}",
        if spool_host::runtime::pagemap_scan_available() {
            "available (used)"
        } else {
            "unavailable (madvise fallback)"
        }
    );
    let phases = rt
        .block_on(runtime.phase_times(&echo, &echo_input(), n))
        .expect("phases");
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    eprintln!(
        "echo job phases (mean of {n}, µs): store+wasi setup {:.1}, instantiate {:.1}, call {:.1}, drop {:.1}",
        per(phases[0]),
        per(phases[1]),
        per(phases[2]),
        per(phases[3])
    );

    let mut group = c.benchmark_group("job");
    group.throughput(Throughput::Elements(1));
    group.bench_function("echo", |b| {
        b.to_async(&rt).iter(|| {
            let runtime = &runtime;
            let echo = &echo;
            let services = services.clone();
            async move {
                let ex = runtime.execute(echo, echo_input(), services).await;
                assert!(matches!(ex.outcome, Outcome::Success(_)));
            }
        })
    });
    // Two jobs at a time, one per tokio worker: what the daemon's pool does on 2 cores.
    group.throughput(Throughput::Elements(2));
    group.bench_function("echo_2_concurrent", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let runtime = runtime.clone();
            let echo = echo.clone();
            async move {
                let start = Instant::now();
                let tasks: Vec<_> = (0..2)
                    .map(|_| {
                        let runtime = runtime.clone();
                        let echo = echo.clone();
                        tokio::spawn(async move {
                            for _ in 0..iters {
                                runtime
                                    .execute(&echo, echo_input(), Arc::new(NoServices))
                                    .await;
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("task");
                }
                start.elapsed()
            }
        })
    });
    group.finish();
}

/// Every plugin in the folder, small ones only unless SPOOL_BENCH_BIG=1.
fn example_plugins() -> Vec<(String, Vec<u8>)> {
    let big = std::env::var_os("SPOOL_BENCH_BIG").is_some();
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(plugins_dir())
        .expect("plugins dir")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read plugin");
        if bytes.len() > 4 << 20 && !big {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        out.push((name, bytes));
    }
    out
}

fn load_plugins(c: &mut Criterion) {
    let rt = tokio_rt();
    let plugins = example_plugins();
    let cache = tempfile::tempdir().expect("tempdir");
    let cold = runtime(None);
    let cached = runtime(Some(cache.path().to_path_buf()));

    let mut group = c.benchmark_group("load");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, bytes) in &plugins {
        let path = PathBuf::from(format!("{name}.wasm"));
        group.bench_with_input(BenchmarkId::new("compile", name), bytes, |b, bytes| {
            b.to_async(&rt).iter(|| {
                let cold = &cold;
                let path = &path;
                async move {
                    cold.load_bytes(
                        name,
                        path,
                        bytes.clone(),
                        Manifest::default(),
                        Default::default(),
                    )
                    .await
                    .expect("load")
                }
            })
        });
        // Fill the cache once, then measure loads that only map the `.cwasm` and pre-link.
        rt.block_on(cached.load_bytes(
            name,
            &path,
            bytes.clone(),
            Manifest::default(),
            Default::default(),
        ))
        .expect("load");
        group.bench_with_input(BenchmarkId::new("cached", name), bytes, |b, bytes| {
            b.to_async(&rt).iter(|| {
                let cached = &cached;
                let path = &path;
                async move {
                    cached
                        .load_bytes(
                            name,
                            path,
                            bytes.clone(),
                            Manifest::default(),
                            Default::default(),
                        )
                        .await
                        .expect("load")
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, echo_job, load_plugins);
criterion_main!(benches);
