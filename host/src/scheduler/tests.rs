//! Pool and maintenance tests on the memory backend with plain-closure plugins (no Wasm):
//! concurrency limits, retries, cancellation, lost leases, shutdown, and each maintenance step.

use super::*;
use crate::job::{Clock, JobState, ManualClock, NewJob, SystemClock};
use crate::runtime::{CrashKind, Outcome};
use crate::storage::memory::MemoryStorage;
use crate::storage::{ClaimRequest, StorageOptions};
use futures::future::BoxFuture;
use serde_json::value::RawValue;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

type Handler =
    Arc<dyn Fn(JobInput, Arc<dyn JobServices>) -> BoxFuture<'static, Outcome> + Send + Sync>;

struct FnRunner(Handler);

#[async_trait::async_trait]
impl Runner for FnRunner {
    async fn run(&self, input: JobInput, services: Arc<dyn JobServices>) -> Execution {
        let start = Instant::now();
        let outcome = (self.0)(input, services).await;
        Execution {
            outcome,
            logs: vec![],
            followups: vec![],
            duration: start.elapsed(),
            instantiate: Some(Duration::from_micros(5)),
            peak_memory: 0,
        }
    }
}

/// Plugins made of closures: one plugin per type, same name as the type.
struct FakePlugins {
    handlers: Mutex<HashMap<String, (Option<u32>, Handler)>>,
    events: broadcast::Sender<PluginEvent>,
}

impl FakePlugins {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            handlers: Mutex::new(HashMap::new()),
            events: broadcast::channel(16).0,
        })
    }
    fn add(&self, job_type: &str, max: Option<u32>, h: Handler) {
        self.handlers
            .lock()
            .unwrap()
            .insert(job_type.into(), (max, h));
        let _ = self.events.send(PluginEvent::Loaded {
            name: job_type.into(),
            version: "test".into(),
            types: vec![job_type.into()],
            flow: Default::default(),
            schedules: Vec::new(),
        });
    }
}

impl Plugins for FakePlugins {
    fn groups(&self) -> Vec<PluginGroup> {
        self.handlers
            .lock()
            .unwrap()
            .iter()
            .map(|(t, (max, _))| PluginGroup {
                name: t.clone(),
                types: vec![t.clone()],
                max_concurrency: *max,
            })
            .collect()
    }
    fn resolve(&self, job_type: &str) -> Option<Resolved> {
        let (max, h) = self.handlers.lock().unwrap().get(job_type).cloned()?;
        Some(Resolved {
            plugin: job_type.into(),
            version: "test".into(),
            max_concurrency: max,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            runner: Arc::new(FnRunner(h)),
        })
    }
    fn subscribe(&self) -> broadcast::Receiver<PluginEvent> {
        self.events.subscribe()
    }
}

fn ok() -> Handler {
    Arc::new(|input, _| {
        Box::pin(async move { Outcome::Success(RawValue::from_string(input.payload).unwrap()) })
    })
}

fn storage() -> Arc<dyn Storage> {
    Arc::new(MemoryStorage::new(
        StorageOptions::default(),
        Arc::new(SystemClock),
    ))
}

fn cfg(workers: usize) -> PoolConfig {
    PoolConfig {
        workers,
        lease: Duration::from_secs(1),
        retry: RetryConfig {
            backoff_base: Duration::from_millis(10),
            backoff_cap: Duration::from_millis(20),
            max_attempts: 4,
        },
        worker_id: "test".into(),
        shutdown_grace: Duration::from_millis(200),
    }
}

fn start(storage: &Arc<dyn Storage>, plugins: &Arc<FakePlugins>, cfg: PoolConfig) -> Pool {
    Pool::start(
        PoolDeps {
            storage: storage.clone(),
            plugins: plugins.clone(),
            metrics: Metrics::new(),
            clock: Arc::new(crate::job::SystemClock),
            observer: None,
        },
        cfg,
    )
}

fn job(t: &str) -> NewJob {
    NewJob::new(t, RawValue::from_string("{}".into()).unwrap())
}

async fn enqueue(s: &Arc<dyn Storage>, t: &str, n: usize) -> Vec<String> {
    let jobs: Vec<NewJob> = (0..n).map(|_| job(t)).collect();
    s.enqueue_batch(jobs)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.job.id)
        .collect()
}

/// Poll until every id is in `state` (promoting due retries meanwhile) or panic at 10 s.
async fn wait_for(s: &Arc<dyn Storage>, ids: &[String], state: JobState) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        s.promote_due().await.unwrap();
        let mut all = true;
        for id in ids {
            let j = s.get(id).await.unwrap().unwrap();
            if j.status != state {
                all = false;
                assert!(
                    Instant::now() < deadline,
                    "job {id} is {} (error {:?}), not {state}",
                    j.status,
                    j.error
                );
            }
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_runs_every_job_to_completion() {
    let s = storage();
    let p = FakePlugins::new();
    p.add("echo", None, ok());
    let pool = start(&s, &p, cfg(4));
    let ids = enqueue(&s, "echo", 300).await;
    wait_for(&s, &ids, JobState::Completed).await;
    let j = s.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!(j.result.unwrap().get(), "{}");
    assert_eq!(j.plugin_version.as_deref(), Some("test"));
    let report = pool.shutdown(std::future::pending()).await;
    assert_eq!(report.released, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_no_plugin_handles_stay_pending() {
    let s = storage();
    let p = FakePlugins::new();
    p.add("echo", None, ok());
    let pool = start(&s, &p, cfg(2));
    let orphan = enqueue(&s, "nobody", 1).await;
    let ids = enqueue(&s, "echo", 5).await;
    wait_for(&s, &ids, JobState::Completed).await;
    assert_eq!(
        s.get(&orphan[0]).await.unwrap().unwrap().status,
        JobState::Pending
    );
    // A plugin for it appears: the idle pool wakes up and runs it.
    p.add("nobody", None, ok());
    wait_for(&s, &orphan, JobState::Completed).await;
    pool.shutdown(std::future::pending()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_concurrency_limit_holds_while_other_types_run() {
    let s = storage();
    let p = FakePlugins::new();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n, pk) = (now.clone(), peak.clone());
    p.add(
        "limited",
        Some(2),
        Arc::new(move |_, _| {
            let (n, pk) = (n.clone(), pk.clone());
            Box::pin(async move {
                let c = n.fetch_add(1, Ordering::SeqCst) + 1;
                pk.fetch_max(c, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                Outcome::Success(RawValue::from_string("null".into()).unwrap())
            })
        }),
    );
    p.add("echo", None, ok());
    let pool = start(&s, &p, cfg(8));
    let limited = enqueue(&s, "limited", 12).await;
    let free = enqueue(&s, "echo", 50).await;
    wait_for(&s, &free, JobState::Completed).await;
    wait_for(&s, &limited, JobState::Completed).await;
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "max_concurrency 2 must cap, and be reached"
    );
    pool.shutdown(std::future::pending()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_plugin_is_served_while_a_busy_type_keeps_every_slot_and_the_buffer_full() {
    let s = storage();
    let p = FakePlugins::new();
    p.add("limited", Some(1), ok());
    p.add("echo", None, ok());
    let backlog = enqueue(&s, "echo", 30_000).await;
    let pool = start(&s, &p, cfg(4));
    // Let the pool reach full speed (slots busy, prefetch buffer refilled) first.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.get(&backlog[2_000]).await.unwrap().unwrap().status != JobState::Completed {
        assert!(Instant::now() < deadline, "the backlog does not move");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let limited = enqueue(&s, "limited", 5).await;
    wait_for(&s, &limited, JobState::Completed).await;
    let last_id = backlog.last().unwrap().clone();
    wait_for(&s, std::slice::from_ref(&last_id), JobState::Completed).await;
    // Finish times, not states polled afterwards: the backlog may drain before a poll.
    let mut limited_done = Vec::new();
    for id in &limited {
        limited_done.push(s.get(id).await.unwrap().unwrap().finished_at.unwrap());
    }
    let last = s.get(&last_id).await.unwrap().unwrap();
    assert!(
        limited_done.iter().max() < last.finished_at.as_ref(),
        "the limited plugin's jobs ({limited_done:?}) ran only once the busy type had drained ({:?})",
        last.finished_at
    );
    pool.shutdown(std::future::pending()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_then_succeed_and_permanent_failures_do_not_retry() {
    let s = storage();
    let p = FakePlugins::new();
    p.add(
        "flaky",
        None,
        Arc::new(|input, _| {
            Box::pin(async move {
                if input.attempt < 3 {
                    Outcome::Retry {
                        error: format!("attempt {}", input.attempt),
                        after: None,
                    }
                } else {
                    Outcome::Success(RawValue::from_string(format!("{}", input.attempt)).unwrap())
                }
            })
        }),
    );
    p.add(
        "bad",
        None,
        Arc::new(|_, _| Box::pin(async { Outcome::Fail { error: "no".into() } })),
    );
    let pool = start(&s, &p, cfg(2));
    let flaky = enqueue(&s, "flaky", 3).await;
    let bad = enqueue(&s, "bad", 1).await;
    wait_for(&s, &flaky, JobState::Completed).await;
    wait_for(&s, &bad, JobState::Failed).await;
    let j = s.get(&flaky[0]).await.unwrap().unwrap();
    assert_eq!((j.attempt, j.result.unwrap().get()), (3, "3"));
    let b = s.get(&bad[0]).await.unwrap().unwrap();
    assert_eq!((b.attempt, b.error.as_deref()), (1, Some("no")));
    pool.shutdown(std::future::pending()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_free_instance_slot_gives_the_job_back_without_counting_the_attempt() {
    let s = storage();
    let p = FakePlugins::new();
    let calls = Arc::new(AtomicUsize::new(0));
    p.add(
        "full",
        None,
        Arc::new({
            let calls = calls.clone();
            move |input, _| {
                let first = calls.fetch_add(1, Ordering::SeqCst) < 2;
                Box::pin(async move {
                    if first {
                        Outcome::NoCapacity {
                            error: "no free instance slot".into(),
                        }
                    } else {
                        Outcome::Success(
                            RawValue::from_string(format!("{}", input.attempt)).unwrap(),
                        )
                    }
                })
            }
        }),
    );
    let pool = start(&s, &p, cfg(1));
    let ids = enqueue(&s, "full", 1).await;
    wait_for(&s, &ids, JobState::Completed).await;
    let j = s.get(&ids[0]).await.unwrap().unwrap();
    // Given back twice, uncounted: the run that completed it was its first attempt.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!((j.attempt, j.result.unwrap().get()), (1, "1"));
    assert_eq!(j.error, None);
    pool.shutdown(std::future::pending()).await;
}

/// Runs until told to stop, then reports a cancelled crash (like the runtime does).
fn until_cancelled(started: Arc<Notify>) -> Handler {
    Arc::new(move |_, services| {
        let started = started.clone();
        Box::pin(async move {
            started.notify_one();
            while !services.cancelled() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Outcome::Crashed {
                error: "stopped".into(),
                kind: CrashKind::Cancelled,
            }
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_reaches_the_running_job_through_the_renewer() {
    let s = storage();
    let p = FakePlugins::new();
    let started = Arc::new(Notify::new());
    p.add("long", None, until_cancelled(started.clone()));
    let pool = start(&s, &p, cfg(2));
    let ids = enqueue(&s, "long", 1).await;
    started.notified().await;
    assert!(matches!(
        s.cancel(&ids[0]).await.unwrap(),
        crate::storage::CancelOutcome::Requested(_)
    ));
    // No local hook here: the renewer (every lease/3 = 333 ms) carries the request.
    wait_for(&s, &ids, JobState::Cancelled).await;
    pool.shutdown(std::future::pending()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_jobs_that_outlive_the_grace_period() {
    let s = storage();
    let p = FakePlugins::new();
    let started = Arc::new(Notify::new());
    p.add(
        "long",
        None,
        Arc::new({
            let started = started.clone();
            move |_, _| {
                let started = started.clone();
                Box::pin(async move {
                    started.notify_one();
                    std::future::pending::<Outcome>().await
                })
            }
        }),
    );
    p.add("echo", None, ok());
    let pool = start(&s, &p, cfg(2));
    let long = enqueue(&s, "long", 1).await;
    started.notified().await;
    let t0 = Instant::now();
    let report = pool.shutdown(std::future::pending()).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "grace is 200 ms");
    assert_eq!(
        report,
        ShutdownReport {
            finished: 0,
            released: 1
        }
    );
    let j = s.get(&long[0]).await.unwrap().unwrap();
    assert_eq!(
        (j.status, j.attempt),
        (JobState::Pending, 0),
        "released: pending, attempt not counted"
    );
    // Nothing new is claimed after shutdown.
    let later = enqueue(&s, "echo", 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        s.get(&later[0]).await.unwrap().unwrap().status,
        JobState::Pending
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_finishing_within_the_grace_period_is_settled() {
    let s = storage();
    let p = FakePlugins::new();
    p.add(
        "short",
        None,
        Arc::new(|_, _| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Outcome::Success(RawValue::from_string("1".into()).unwrap())
            })
        }),
    );
    let pool = start(&s, &p, cfg(2));
    let ids = enqueue(&s, "short", 1).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while pool.running() == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let report = pool.shutdown(std::future::pending()).await;
    assert_eq!(
        report,
        ShutdownReport {
            finished: 1,
            released: 0
        }
    );
    assert_eq!(
        s.get(&ids[0]).await.unwrap().unwrap().status,
        JobState::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_stops_the_job_and_drops_its_result() {
    let s = storage();
    let p = FakePlugins::new();
    let started = Arc::new(Notify::new());
    p.add("long", None, until_cancelled(started.clone()));
    let metrics = Metrics::new();
    let pool = Pool::start(
        PoolDeps {
            storage: s.clone(),
            plugins: p.clone(),
            metrics: metrics.clone(),
            clock: Arc::new(crate::job::SystemClock),
            observer: None,
        },
        cfg(2),
    );
    let ids = enqueue(&s, "long", 1).await;
    started.notified().await;
    assert!(s.delete(&ids[0]).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !metrics
        .render(&Default::default())
        .contains("spool_jobs_lease_lost_total{type=\"long\"} 1")
    {
        assert!(
            Instant::now() < deadline,
            "the renewer should report the lease lost"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s.get(&ids[0]).await.unwrap().is_none());
    pool.shutdown(std::future::pending()).await;
}

#[tokio::test]
async fn maintenance_steps_report_what_they_did() {
    let clock = Arc::new(ManualClock::new());
    let s: Arc<dyn Storage> =
        Arc::new(MemoryStorage::new(StorageOptions::default(), clock.clone()));
    let m = Maintenance::new(
        s.clone(),
        Metrics::new(),
        MaintenanceConfig::new(
            Duration::from_secs(1),
            Duration::from_secs(60),
            Default::default(),
        ),
    );
    let mut delayed = job("t");
    delayed.run_at = Some(clock.now_ms() + 5_000);
    s.enqueue(delayed).await.unwrap();
    assert_eq!(m.promote_once().await.unwrap(), 0);
    clock.advance(Duration::from_secs(6));
    assert_eq!(m.promote_once().await.unwrap(), 1);
    let claimed = s
        .claim(ClaimRequest {
            types: vec!["t".into()],
            limit: 1,
            lease: Duration::from_secs(1),
            worker: "w".into(),
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(m.reap_once().await.unwrap().requeued, 0);
    clock.advance(Duration::from_secs(2));
    assert_eq!(m.reap_once().await.unwrap().requeued, 1);
    assert_eq!(m.sweep_once().await.unwrap(), 0);
}
