//! `spool bench`: an in-process daemon core (storage, plugin registry, the real worker pool;
//! no HTTP) runs N jobs of one type (`echo` by default) and reports throughput and latency.
//!
//! Two modes: burst (default) enqueues every job as fast as storage takes them, in batches, and
//! measures jobs/s from the first enqueue to the last settled job; `--rate R` enqueues one job
//! at a time on a fixed schedule of R per second, which measures latency at a given load.
//! Latency is measured with the pool's observer: enqueue (the moment the enqueue call began)
//! to start (the worker began the job) and to done (the completion was committed).

use crate::app::{Core, CoreOptions};
use crate::config::{FlagOverrides, RawConfig};
use crate::job::{Job, NewJob};
use crate::scheduler::Observer;
use crate::storage::Settled;
use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Storage URL (default: a fresh SQLite file in a temporary folder)
    #[arg(long)]
    pub storage: Option<String>,
    /// Folder holding the plugin (only TYPE.wasm and TYPE.toml are loaded when present;
    /// otherwise the whole folder)
    #[arg(long, default_value = "target/plugins")]
    pub plugins: PathBuf,
    /// Jobs to run
    #[arg(long, default_value_t = 10_000)]
    pub jobs: usize,
    /// Enqueue at this many jobs per second (latency run) instead of all at once
    #[arg(long)]
    pub rate: Option<f64>,
    /// Enqueue every job before the workers start, then time the drain of that backlog
    /// (how queue benchmarks such as BullMQ's are taken); not with memory:// or --rate
    #[arg(long, conflicts_with = "rate")]
    pub drain: bool,
    /// Worker slots (default: as the daemon)
    #[arg(long)]
    pub workers: Option<usize>,
    /// Job type to run (a plugin in --plugins must handle it)
    #[arg(long = "type", default_value = "echo")]
    pub job_type: String,
    /// The payload of every job (JSON)
    #[arg(long, default_value = r#"{"bench":true}"#)]
    pub payload: String,
    /// Put this rate limit on the job type for the run (e.g. 1000000/1s, far above the load,
    /// to measure what flow control costs the claim); cleared afterwards
    #[arg(long, value_parser = super::parse_rate_arg)]
    pub rate_limit: Option<String>,
}

/// Jobs per enqueue call in burst mode.
const BATCH: usize = 1000;

#[derive(Default)]
struct Times {
    enqueued: Option<Instant>,
    started: Option<Instant>,
    done: Option<Instant>,
    ok: bool,
}

/// Records when each job started and settled: per job only when latencies are reported (not
/// with `--drain`), so that a drain's figure does not carry the recorder's own cost (a locked
/// map written twice a job was 7% of the daemon's CPU in a Redis drain, perf).
#[derive(Default)]
struct Recorder {
    per_job: bool,
    times: Mutex<HashMap<String, Times>>,
    first_start: OnceLock<Instant>,
    settled: AtomicUsize,
    failed: AtomicUsize,
    notify: Notify,
}

impl Recorder {
    fn new(per_job: bool) -> Self {
        Self {
            per_job,
            ..Self::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Times>> {
        self.times.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enqueued(&self, ids: &[String], at: Instant) {
        if !self.per_job {
            return;
        }
        let mut t = self.lock();
        t.reserve(ids.len());
        for id in ids {
            t.entry(id.clone()).or_default().enqueued = Some(at);
        }
    }

    /// When the first job started.
    fn first_start(&self) -> Option<Instant> {
        self.first_start.get().copied()
    }
}

impl Observer for Recorder {
    fn started(&self, job: &Job) {
        let now = Instant::now();
        self.first_start.get_or_init(|| now);
        if self.per_job
            && let Some(t) = self.lock().get_mut(&job.id)
        {
            t.started = Some(now);
        }
    }

    fn settled(&self, job_id: &str, outcome: Settled) {
        let now = Instant::now();
        let ok = outcome == Settled::Moved(crate::job::JobState::Completed);
        if self.per_job
            && let Some(t) = self.lock().get_mut(job_id)
        {
            t.done = Some(now);
            t.ok = ok;
        }
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.settled.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
    }
}

#[derive(Debug, Serialize)]
struct Percentiles {
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    backend: String,
    storage: String,
    profile: &'static str,
    job_type: String,
    jobs: usize,
    workers: usize,
    mode: String,
    seconds: f64,
    jobs_per_second: f64,
    enqueue_per_second: f64,
    failed: usize,
    /// None with `--drain`: jobs wait in the backlog by design, so these say nothing.
    enqueue_to_start: Option<Percentiles>,
    enqueue_to_done: Option<Percentiles>,
}

pub async fn run(args: BenchArgs, json: bool) -> anyhow::Result<ExitCode> {
    if args.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    if let Some(r) = args.rate
        && !(r > 0.0 && r.is_finite())
    {
        bail!("--rate must be a positive number of jobs per second (got {r})");
    }
    let scratch = Scratch::new()?;
    let storage_url = args
        .storage
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", scratch.path.join("bench.db").display()));
    let plugins = select_plugin(&args.plugins, &args.job_type, &scratch.path)?;
    let payload = RawValue::from_string(args.payload.trim().to_string())
        .map_err(|e| anyhow::anyhow!("--payload is not valid JSON: {e}"))?;
    let raw = RawConfig {
        // A private cache in the run's own scratch folder: a fixed path under the shared temp
        // folder could be planted by another user.
        cache_dir: Some(scratch.path.join("cache")),
        data_dir: Some(scratch.path.clone()),
        ..RawConfig::default()
    }
    .apply_flags(FlagOverrides {
        storage: Some(storage_url.clone()),
        plugins: Some(plugins.clone()),
        workers: args.workers.map(|w| w as i64),
        ..FlagOverrides::default()
    });
    let config = raw.validate()?;
    let recorder = Arc::new(Recorder::new(!args.drain));
    let prefilled = if args.drain {
        Some(prefill(&args, &config, &storage_url, &payload, &recorder).await?)
    } else {
        None
    };
    let core = Core::start(
        config,
        CoreOptions {
            watch: false,
            maintenance: false,
            live_events: false,
            observer: Some(recorder.clone()),
        },
    )
    .await?;
    if core.registry.for_type(&args.job_type).is_none() {
        core.shutdown(std::future::ready(())).await;
        bail!(
            "no plugin in `{}` handles job type `{}`: run scripts/build-plugins.sh or pass --plugins",
            args.plugins.display(),
            args.job_type
        );
    }
    let workers = core.config.workers;
    if !json {
        eprintln!(
            "bench: {} {} jobs on {} with {} workers ({})",
            args.jobs,
            args.job_type,
            crate::storage::redact_url(&storage_url),
            workers,
            mode_name(&args)
        );
    }
    let storage = core.storage.clone();
    if prefilled.is_none() {
        set_rate_limit(storage.as_ref(), &args).await?;
    }
    let t0 = Instant::now();
    let enqueue_done = match args.rate {
        None if prefilled.is_some() => prefilled.unwrap_or_default(),
        None => {
            enqueue_all(storage.as_ref(), &args, &payload, &recorder).await?;
            t0.elapsed()
        }
        Some(rate) => {
            for i in 0..args.jobs {
                let target = t0 + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(target.into()).await;
                let job = NewJob::new(&args.job_type, payload.clone());
                let at = Instant::now();
                recorder.enqueued(std::slice::from_ref(&job.id), at);
                storage.enqueue(job).await.context("enqueue failed")?;
            }
            t0.elapsed()
        }
    };
    // Generous: a dev build on a busy machine can be 20x slower than the targets.
    let deadline =
        Instant::now() + Duration::from_secs(60) + Duration::from_millis(args.jobs as u64 * 2);
    while recorder.settled.load(Ordering::Relaxed) < args.jobs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let done = recorder.settled.load(Ordering::Relaxed);
            clear_rate_limit(storage.as_ref(), &args).await;
            core.shutdown(std::future::ready(())).await;
            bail!(
                "only {done} of {} jobs finished in time; is the plugin failing? see the log",
                args.jobs
            );
        }
        let _ = tokio::time::timeout(
            left.min(Duration::from_millis(200)),
            recorder.notify.notified(),
        )
        .await;
    }
    // A drain is timed from its first job's start (not from the core's start-up, which
    // loads plugins and reads the backlog's events) to the last settled job.
    let total = match prefilled {
        Some(_) => recorder
            .first_start()
            .map_or(t0.elapsed(), |at| at.elapsed()),
        None => t0.elapsed(),
    };
    clear_rate_limit(storage.as_ref(), &args).await;
    core.shutdown(std::future::ready(())).await;
    let (start_lat, done_lat) = latencies(&recorder);
    let report = Report {
        backend: storage.backend().to_string(),
        storage: crate::storage::redact_url(&storage_url),
        profile: if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        },
        job_type: args.job_type.clone(),
        jobs: args.jobs,
        workers,
        mode: mode_name(&args),
        seconds: total.as_secs_f64(),
        jobs_per_second: args.jobs as f64 / total.as_secs_f64(),
        enqueue_per_second: args.jobs as f64 / enqueue_done.as_secs_f64().max(1e-9),
        failed: recorder.failed.load(Ordering::Relaxed),
        enqueue_to_start: (!args.drain).then(|| percentiles(start_lat)),
        enqueue_to_done: (!args.drain).then(|| percentiles(done_lat)),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn mode_name(args: &BenchArgs) -> String {
    let mode = match (args.rate, args.drain) {
        (Some(r), _) => format!("rate {r}/s"),
        (None, true) => "drain".into(),
        (None, false) => "burst".into(),
    };
    match &args.rate_limit {
        Some(limit) => format!("{mode}, rate limit {limit}"),
        None => mode,
    }
}

/// `--drain`: enqueues every job through a storage handle of its own before the daemon core
/// starts; returns how long that took.
async fn prefill(
    args: &BenchArgs,
    config: &crate::config::Config,
    url: &str,
    payload: &RawValue,
    recorder: &Recorder,
) -> anyhow::Result<Duration> {
    if url.to_ascii_lowercase().starts_with("memory:") {
        bail!("--drain needs a storage the daemon core can open again (sqlite:// or redis://)");
    }
    let storage = crate::storage::open(
        url,
        crate::storage::StorageOptions {
            max_payload_bytes: config.max_payload,
            max_events: config.max_events,
            ..Default::default()
        },
        Arc::new(crate::job::SystemClock),
    )
    .await
    .with_context(|| format!("cannot open storage `{}`", crate::storage::redact_url(url)))?;
    set_rate_limit(storage.as_ref(), args).await?;
    let began = Instant::now();
    enqueue_all(storage.as_ref(), args, payload, recorder).await?;
    Ok(began.elapsed())
}

/// `--rate-limit`: sets the override on the job type (None: clears it, after the run).
async fn set_rate_limit(
    storage: &dyn crate::storage::Storage,
    args: &BenchArgs,
) -> anyhow::Result<()> {
    let Some(text) = &args.rate_limit else {
        return Ok(());
    };
    let rate: crate::storage::flow::RateLimit = text
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--rate-limit: {e}"))?;
    let change = crate::storage::flow::ControlChange::Override {
        rate: Some(Some(rate)),
        concurrency: None,
    };
    storage
        .control_type(&args.job_type, change)
        .await
        .context("cannot set the rate limit")?;
    Ok(())
}

async fn clear_rate_limit(storage: &dyn crate::storage::Storage, args: &BenchArgs) {
    if args.rate_limit.is_some() {
        let change = crate::storage::flow::ControlChange::Override {
            rate: Some(None),
            concurrency: None,
        };
        if let Err(e) = storage.control_type(&args.job_type, change).await {
            eprintln!(
                "bench: cannot clear the rate limit on `{}`: {e}",
                args.job_type
            );
        }
    }
}

/// Enqueues `args.jobs` jobs in batches of `BATCH`, noting when each batch went in.
async fn enqueue_all(
    storage: &dyn crate::storage::Storage,
    args: &BenchArgs,
    payload: &RawValue,
    recorder: &Recorder,
) -> anyhow::Result<()> {
    let mut left = args.jobs;
    while left > 0 {
        let n = left.min(BATCH);
        let jobs: Vec<NewJob> = (0..n)
            .map(|_| NewJob::new(&args.job_type, payload.to_owned()))
            .collect();
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        recorder.enqueued(&ids, Instant::now());
        storage
            .enqueue_batch(jobs)
            .await
            .context("enqueue failed")?;
        left -= n;
    }
    Ok(())
}

fn latencies(r: &Recorder) -> (Vec<Duration>, Vec<Duration>) {
    let t = r.lock();
    let mut start = Vec::with_capacity(t.len());
    let mut done = Vec::with_capacity(t.len());
    for times in t.values() {
        let Some(e) = times.enqueued else { continue };
        if let Some(s) = times.started {
            start.push(s.saturating_duration_since(e));
        }
        if let (Some(d), true) = (times.done, times.ok) {
            done.push(d.saturating_duration_since(e));
        }
    }
    (start, done)
}

fn percentiles(mut v: Vec<Duration>) -> Percentiles {
    v.sort_unstable();
    let at = |q: f64| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        v[i].as_secs_f64() * 1000.0
    };
    Percentiles {
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

fn print_table(r: &Report) {
    println!("backend        {} ({})", r.backend, r.storage);
    println!("build          {} profile", r.profile);
    println!(
        "jobs           {} x {} ({}), {} workers",
        r.jobs, r.job_type, r.mode, r.workers
    );
    println!(
        "throughput     {:.0} jobs/s ({:.2} s in all; enqueue {:.0} jobs/s)",
        r.jobs_per_second, r.seconds, r.enqueue_per_second
    );
    println!("failed         {}", r.failed);
    let (Some(start), Some(done)) = (&r.enqueue_to_start, &r.enqueue_to_done) else {
        println!("latency        not measured with --drain (jobs wait in the backlog by design)");
        return;
    };
    println!(
        "latency (ms)   {:>9} {:>9} {:>9} {:>9}",
        "p50", "p90", "p99", "max"
    );
    for (name, p) in [("enqueue->start", start), ("enqueue->done", done)] {
        println!(
            "{name:<14} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
        );
    }
}

/// The plugins folder to load: a scratch folder holding only `TYPE.wasm` (and `TYPE.toml`)
/// when the given folder has them, so a bench does not compile every plugin there (some take
/// many seconds); else the given folder as it is.
fn select_plugin(dir: &Path, job_type: &str, scratch: &Path) -> anyhow::Result<PathBuf> {
    let wasm = dir.join(format!("{job_type}.wasm"));
    if !wasm.exists() {
        if !dir.is_dir() {
            bail!(
                "no plugins folder `{}`: run scripts/build-plugins.sh, or pass --plugins",
                dir.display()
            );
        }
        return Ok(dir.to_path_buf());
    }
    let only = scratch.join("plugins");
    std::fs::create_dir_all(&only)?;
    std::fs::copy(&wasm, only.join(format!("{job_type}.wasm")))
        .with_context(|| format!("cannot copy `{}`", wasm.display()))?;
    let toml = dir.join(format!("{job_type}.toml"));
    if toml.exists() {
        std::fs::copy(&toml, only.join(format!("{job_type}.toml")))
            .with_context(|| format!("cannot copy `{}`", toml.display()))?;
    }
    Ok(only)
}

/// A temporary folder for the default database and cache, removed on drop.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        // An unpredictable name, created 0700 and never reused (`create` fails when it
        // exists): the scratch folder holds the bench's database and compiled-plugin cache.
        let path = std::env::temp_dir().join(format!(
            "spool-bench-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 8]>())
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create a scratch folder `{}`", path.display()))?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = percentiles(v);
        assert_eq!(
            (p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(percentiles(Vec::new()).max_ms, 0.0);
    }
}
