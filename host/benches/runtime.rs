//! Runtime benchmarks (criterion, `harness = false`): the cost of one job for `echo` (fresh
//! store + instance from the pre-linked component, call, drop), where that time goes, loading
//! each example plugin cold (compile) versus from the on-disk `.cwasm` cache, and what the host
//! adds to one outbound HTTP request (`http-probe` against a native client, same server).
//!
//! Run in the dev profile (dependencies are optimised; a release wasmtime build takes 20 min):
//!   scripts/build-plugins.sh && cargo test -p spool-host --bench runtime -- --bench
//! Big interpreted plugins (js-*, py-*) take 10-20 s per cold compile: they are skipped unless
//! `SPOOL_BENCH_BIG=1`. `SPOOL_TEST_PLUGINS` points at another plugins folder.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

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
    rt.block_on(LoadedPlugin::load(
        runtime,
        name,
        &path,
        Manifest::default(),
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn echo_job(c: &mut Criterion) {
    let rt = tokio_rt();
    let runtime = runtime(None);
    let echo = load(&rt, &runtime, "echo");
    let services: Arc<NoServices> = Arc::new(NoServices);

    // Where the time goes, printed once before criterion's figures (after a warm-up, so pool
    // slots and page tables are in the state a busy daemon keeps them in).
    rt.block_on(runtime.phase_times(&echo.code, &echo_input(), 2000))
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
        .block_on(runtime.phase_times(&echo.code, &echo_input(), n))
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
                let ex = runtime.execute(&echo.code, echo_input(), services).await;
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
                                    .execute(&echo.code, echo_input(), Arc::new(NoServices))
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
                    LoadedPlugin::from_bytes(
                        cold,
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
        rt.block_on(LoadedPlugin::from_bytes(
            &cached,
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
                    LoadedPlugin::from_bytes(
                        cached,
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

/// A loopback HTTP server that answers every request `200 ok` and closes the connection.
fn loopback_server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_nodelay(true);
            let mut buf = [0u8; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    port
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `http-probe` makes `n` GETs in one job; a native client (reqwest, a new connection per
/// request, as the host's outbound client opens one per request) makes the same `n` against
/// the same server. Rounds interleave the two; the medians per request are printed, and their
/// difference is what the host adds (the sandbox, the allow-list and address checks, limits,
/// metrics). Instantiating the plugin is in its figure too, spread over the `n` requests.
fn http_overhead(c: &mut Criterion) {
    let rt = tokio_rt();
    let port = loopback_server();
    let url = format!("http://127.0.0.1:{port}/");
    let runtime = runtime(None);
    let manifest = Manifest {
        allowed_hosts: vec![format!("http://127.0.0.1:{port}")],
        http: spool_host::runtime::http::HttpLimitsOverride {
            max_requests: Some(100_000),
            ..Default::default()
        },
        ..Manifest::default()
    };
    let path = plugins_dir().join("http-probe.wasm");
    let probe = rt
        .block_on(LoadedPlugin::load(&runtime, "http-probe", &path, manifest))
        .unwrap_or_else(|e| panic!("{e}"));
    let services: Arc<NoServices> = Arc::new(NoServices);
    let n: u32 = 200;
    let input = JobInput {
        id: "01a2017057-probe".into(),
        job_type: "http-probe".into(),
        payload: serde_json::json!({ "url": url, "n": n }).to_string(),
        attempt: 1,
        max_attempts: 1,
        priority: 5,
        ..JobInput::default()
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let (mut host_us, mut direct_us, mut raw_us) = (Vec::new(), Vec::new(), Vec::new());
    let raw_get = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
            .expect("write");
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("read");
        assert!(answer.starts_with(b"HTTP/1.1 200"));
    };
    for _ in 0..7 {
        let t = Instant::now();
        let ex = rt.block_on(runtime.execute(&probe.code, input.clone(), services.clone()));
        match &ex.outcome {
            Outcome::Success(r) => assert_eq!(r.get(), format!("{{\"ok\":{n}}}")),
            other => panic!("http-probe failed: {other:?}"),
        }
        host_us.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(n));
        let t = Instant::now();
        rt.block_on(async {
            for _ in 0..n {
                let r = client.get(&url).send().await.expect("direct request");
                assert!(r.status().is_success());
                r.bytes().await.expect("direct body");
            }
        });
        direct_us.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(n));
        let t = Instant::now();
        for _ in 0..n {
            raw_get();
        }
        raw_us.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    }
    let (host, direct, raw) = (median(host_us), median(direct_us), median(raw_us));
    eprintln!(
        "outbound HTTP, {n} sequential GETs per round to a loopback server, medians of 7 \
         interleaved rounds: through the http-probe plugin {host:.0} us per request, direct \
         from Rust with reqwest {direct:.0} us ({:+.0} us), with a bare TcpStream {raw:.0} us \
         ({:+.0} us)",
        host - direct,
        host - raw
    );
    let mut group = c.benchmark_group("http");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(n)));
    group.bench_function("probe_200_gets", |b| {
        b.to_async(&rt).iter(|| {
            let runtime = &runtime;
            let probe = &probe;
            let services = services.clone();
            let input = input.clone();
            async move {
                let ex = runtime.execute(&probe.code, input, services).await;
                assert!(matches!(ex.outcome, Outcome::Success(_)));
            }
        })
    });
    group.finish();
}

/// Job services whose cache always misses (and stores nothing): every job does the whole
/// analysis, as the first job on a document does.
struct MissingCache;

#[async_trait::async_trait]
impl spool_host::runtime::JobServices for MissingCache {
    async fn cache_get(&self, _key: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
    async fn cache_set(&self, _k: &str, _v: &str, _ttl: Option<Duration>) -> Result<(), String> {
        Ok(())
    }
    async fn cache_delete(&self, _key: &str) -> Result<bool, String> {
        Ok(false)
    }
    async fn cache_increment(
        &self,
        _key: &str,
        delta: i64,
        _ttl: Option<Duration>,
    ) -> Result<i64, String> {
        Ok(delta)
    }
    async fn progress(&self, _percent: u8, _message: Option<String>) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// One job of each Markdown example on the same short document, the JavaScript and Python ones
/// with a fresh instance per job and with `instances = "reuse"`: rounds interleave the
/// variants; the median time per job of each and its ratio to the Rust `markdown` plugin are
/// printed. Needs the big components: runs with `SPOOL_BENCH_BIG=1` (compiled once into
/// target/spool-test-cache, which the language tests share).
fn language_jobs(_c: &mut Criterion) {
    if std::env::var_os("SPOOL_BENCH_BIG").is_none() {
        eprintln!("language jobs: skipped (set SPOOL_BENCH_BIG=1)");
        return;
    }
    use spool_host::runtime::Instances;
    let rt = tokio_rt();
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/spool-test-cache");
    std::fs::create_dir_all(&cache).expect("cache folder");
    let runtime = runtime(Some(cache));
    let doc = "# Title\n\nSome *emph*asis and `code`, a [link](https://example.com/x) and \
               **bold** words.\n\n## Second {#two}\n\n- item one\n- [x] done\n\n> quoted\n";
    let variants: Vec<(String, &str, Instances, u32)> = vec![
        ("markdown".into(), "markdown", Instances::Fresh, 2000),
        ("c-mdstats".into(), "c-mdstats", Instances::Fresh, 2000),
        (
            "js-mdstats fresh".into(),
            "js-mdstats",
            Instances::Fresh,
            200,
        ),
        (
            "js-mdstats reuse".into(),
            "js-mdstats",
            Instances::Reuse,
            2000,
        ),
        (
            "py-mdstats fresh".into(),
            "py-mdstats",
            Instances::Fresh,
            200,
        ),
        (
            "py-mdstats reuse".into(),
            "py-mdstats",
            Instances::Reuse,
            2000,
        ),
    ];
    let loaded: Vec<_> = variants
        .iter()
        .map(|(label, name, instances, jobs)| {
            let path = plugins_dir().join(format!("{name}.wasm"));
            let manifest = Manifest {
                instances: *instances,
                ..Manifest::default()
            };
            let plugin = rt
                .block_on(LoadedPlugin::load(&runtime, name, &path, manifest))
                .unwrap_or_else(|e| panic!("{e}"));
            (label.clone(), *name, plugin, *jobs)
        })
        .collect();
    let services: Arc<MissingCache> = Arc::new(MissingCache);
    let run = |name: &str, plugin: &LoadedPlugin, jobs: u32| -> f64 {
        rt.block_on(async {
            let started = Instant::now();
            for _ in 0..jobs {
                let input = JobInput {
                    id: "01a2017057-lang".into(),
                    job_type: name.into(),
                    payload: serde_json::json!({ "markdown": doc }).to_string(),
                    attempt: 1,
                    max_attempts: 1,
                    priority: 5,
                    ..JobInput::default()
                };
                let ex = runtime.execute(&plugin.code, input, services.clone()).await;
                assert!(
                    matches!(ex.outcome, Outcome::Success(_)),
                    "{name}: {:?}",
                    ex.outcome
                );
            }
            started.elapsed().as_secs_f64() * 1e6 / f64::from(jobs)
        })
    };
    // Warm-up: the first jobs fault in code and pool slots.
    for (_, name, plugin, jobs) in &loaded {
        run(name, plugin, (*jobs / 10).max(20));
    }
    let rounds = 5;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); loaded.len()];
    for _ in 0..rounds {
        for (i, (_, name, plugin, jobs)) in loaded.iter().enumerate() {
            times[i].push(run(name, plugin, *jobs));
        }
    }
    let medians: Vec<f64> = times.iter().map(|t| median(t.clone())).collect();
    eprintln!(
        "language jobs: one job on the same document, cache always missing, median of {rounds} interleaved rounds"
    );
    for (i, (label, ..)) in loaded.iter().enumerate() {
        let all: Vec<String> = times[i].iter().map(|t| format!("{t:.0}")).collect();
        eprintln!(
            "  {label:<18} {:>8.1} us/job  {:>5.1}x markdown  (rounds: {})",
            medians[i],
            medians[i] / medians[0],
            all.join(" ")
        );
    }
}

criterion_group!(
    benches,
    echo_job,
    load_plugins,
    http_overhead,
    language_jobs
);
criterion_main!(benches);
