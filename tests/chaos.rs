//! The chaos suite: the real daemon under load while things break, checking that no job is
//! lost and that jobs run twice only when they were in flight at a crash.
//!
//! - `kill -9` of the daemon at random moments over rounds of thousands of jobs, with
//!   hostile plugins (loop-forever, memory-hog, panic) mixed in: SQLite, then Redis.
//! - Redis itself killed (`kill -9`, AOF with `appendfsync always`) and restarted mid-run.
//! - Redis stopped with the fallback spool on: jobs are still accepted, and run once Redis
//!   is back.
//! - SIGTERM under load: the daemon drains within its grace period; nothing runs twice.
//!
//! Every scenario asserts: every submitted job ends `completed` (or `failed`, for hostile
//! ones); duplicate runs (attempts beyond the first, counted from the jobs' `attempt`) are
//! at most the number of jobs in flight at the kills (read from storage while the daemon
//! is dead); the daemon serves afterwards. Each prints a `chaos summary:` line.
//!
//! Randomness comes from one seed, printed (`SPOOL_CHAOS_SEED=N` replays a run);
//! `SPOOL_CHAOS_ROUNDS` and `SPOOL_CHAOS_JOBS` set the kill -9 rounds and jobs per round. Waits
//! poll against deadlines. Scenarios run one at a time (they share two cores).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{Value, json};
use spool_host::job::{Job, JobState, SystemClock};
use spool_host::storage::{self, ListFilter, Storage, StorageOptions};
use spool_tests::redis;
use spool_tests::{Daemon, eventually_blocking};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Longest wait for any one condition.
const LIMIT: Duration = Duration::from_secs(60);
/// Short leases: a killed daemon's jobs come back within about this long.
const LEASE: &str = "2s";
const WORKERS: &str = "8";
const DEFAULT_SEED: u64 = 0x5EED_C0FF_EE00_0007;
const HOSTILE: [&str; 3] = ["loop-forever", "memory-hog", "panic"];
/// Keep every finished job: the final accounting reads them all (the default retention
/// keeps the last 1000 completed per type).
const KEEP_ALL: &str = "[retention]\ncompleted_max_count = \"off\"\ncompleted_max_age = \"off\"\n\
                        failed_max_count = \"off\"\nfailed_max_age = \"off\"\n";

/// One scenario at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// xorshift64*: small, seedable, good enough to pick kill moments.
struct Rng(u64);

impl Rng {
    fn from_env(scenario: &str) -> Rng {
        let seed = std::env::var("SPOOL_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(DEFAULT_SEED);
        println!("chaos {scenario}: seed {seed} (replay with SPOOL_CHAOS_SEED={seed})");
        // Each scenario draws its own stream from the one seed (FNV-1a of its name).
        let salt = scenario.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Rng((seed ^ salt).max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// What a scenario saw; printed as the summary line.
#[derive(Default)]
struct Tally {
    rounds: u64,
    jobs: u64,
    kills: u64,
    /// Echo jobs running in storage at the kills (the bound on duplicates).
    in_flight: u64,
    lost: u64,
    duplicates: u64,
    hostile_failed: u64,
}

impl Tally {
    fn print(&self, scenario: &str, started: Instant) {
        println!(
            "chaos summary: {scenario}: rounds={} jobs={} kills={} lost={} duplicates={} \
             (in flight at kills: {}) hostile_failed={} time={:.1}s",
            self.rounds,
            self.jobs,
            self.kills,
            self.lost,
            self.duplicates,
            self.in_flight,
            self.hostile_failed,
            started.elapsed().as_secs_f64()
        );
    }
}

/// Opens the daemon's storage from the test process (while the daemon is dead, or
/// alongside it for reads).
fn with_store<T>(url: &str, f: impl AsyncFnOnce(Arc<dyn Storage>) -> T) -> T {
    runtime().block_on(async {
        let s = storage::open(url, StorageOptions::default(), Arc::new(SystemClock))
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        f(s).await
    })
}

async fn list_all(s: &dyn Storage, status: Option<JobState>) -> Vec<Job> {
    let filter = ListFilter {
        status,
        ..ListFilter::default()
    };
    storage::list_all(s, filter).await.expect("list jobs")
}

/// Echo jobs `running` in storage: held by the daemon that just died.
fn echo_in_flight(url: &str) -> u64 {
    with_store(url, async |s| {
        list_all(&*s, Some(JobState::Running))
            .await
            .iter()
            .filter(|j| j.job_type == "echo")
            .count() as u64
    })
}

fn echo_job(i: u64) -> Value {
    json!({"type": "echo", "payload": {"i": i}, "max_attempts": 10})
}

/// `n` echo jobs plus `hostile` of each hostile type, in batches of 500. Returns the ids of
/// each kind.
fn submit_round(d: &Daemon, first: u64, n: u64, hostile: u64) -> (Vec<String>, Vec<String>) {
    let mut echo = Vec::new();
    let mut jobs: Vec<Value> = (first..first + n).map(echo_job).collect();
    for h in 0..hostile {
        for t in HOSTILE {
            // Hostile jobs go in the middle of the load, two attempts each.
            let at = ((h as usize + 1) * jobs.len()) / (hostile as usize + 1);
            jobs.insert(
                at,
                json!({"type": t, "payload": {"hostile": h}, "max_attempts": 2}),
            );
        }
    }
    let mut bad = Vec::new();
    for chunk in jobs.chunks(500) {
        let ids = d.submit_batch(chunk);
        for (job, id) in chunk.iter().zip(ids) {
            if job["type"] == "echo" {
                echo.push(id);
            } else {
                bad.push(id);
            }
        }
    }
    (echo, bad)
}

fn totals(d: &Daemon) -> Value {
    let a = d.get("/api/v1/stats");
    assert_eq!(a.status, 200, "stats: {}", a.text);
    a.body["totals"].clone()
}

/// The totals, or Null while storage is unavailable (503: Redis down, or the fallback has not
/// noticed yet that it is back).
fn totals_if_up(d: &Daemon) -> Value {
    let a = d.get("/api/v1/stats");
    match a.status {
        200 => a.body["totals"].clone(),
        503 => Value::Null,
        _ => panic!("stats: {}", a.text),
    }
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// Waits until `total` jobs are finished and none is live.
fn wait_all_finished(d: &Daemon, total: u64) {
    let deadline = Instant::now() + LIMIT * 2;
    loop {
        let t = totals_if_up(d);
        let finished = n(&t, "completed") + n(&t, "failed") + n(&t, "cancelled");
        let live = n(&t, "pending") + n(&t, "running") + n(&t, "retrying") + n(&t, "scheduled");
        if !t.is_null() && finished >= total && live == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not all {total} jobs finished within {:?}: {t}",
            LIMIT * 2
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the daemon once `completed` has grown by a random amount (possibly at once),
/// counts what was in flight, and starts it again.
fn kill_at_random_moment(d: &mut Daemon, url: &str, rng: &mut Rng, round_jobs: u64, t: &mut Tally) {
    let start = n(&totals(d), "completed");
    let step = rng.range(0, round_jobs / 3);
    let target = start + step;
    eventually_blocking("progress before a kill", LIMIT, || {
        let t = totals(d);
        n(&t, "completed") >= target || n(&t, "pending") + n(&t, "running") == 0
    });
    d.kill9();
    let in_flight = echo_in_flight(url);
    t.kills += 1;
    t.in_flight += in_flight;
    println!("  kill -9 after {step} more completions: {in_flight} echo jobs in flight");
    d.restart();
}

/// Final accounting from storage: every echo job completed, every hostile one failed.
fn account(url: &str, echo: &[String], hostile: &[String], t: &mut Tally) {
    let jobs: HashMap<String, Job> = with_store(url, async |s| {
        list_all(&*s, None)
            .await
            .into_iter()
            .map(|j| (j.id.clone(), j))
            .collect()
    });
    for id in echo {
        match jobs.get(id) {
            Some(j) if j.status == JobState::Completed => {
                t.duplicates += u64::from(j.attempt.saturating_sub(1));
            }
            Some(j) => panic!(
                "echo job {id} ended {} (attempt {}): {:?}",
                j.status, j.attempt, j.error
            ),
            None => t.lost += 1,
        }
    }
    for id in hostile {
        match jobs.get(id) {
            Some(j) if j.status == JobState::Failed => t.hostile_failed += 1,
            Some(j) => panic!("hostile job {id} ended {}, want failed", j.status),
            None => t.lost += 1,
        }
    }
}

/// After the storm: healthy, and a new job still runs.
fn assert_serving(d: &Daemon) {
    let h = d.get("/health");
    assert_eq!(h.status, 200, "health after chaos: {}", h.text);
    let job = d.submit(&json!({"type": "echo", "payload": {"after": "chaos"}}));
    let id = job["id"].as_str().expect("id").to_string();
    let done = d.wait_status(&id, "completed", LIMIT);
    assert_eq!(done["result"], json!({"after": "chaos"}));
}

/// Rounds of `round_jobs` echo jobs (plus hostile ones), each with 1-3 kills at random
/// moments, on the storage at `url` (None: the daemon's own SQLite file).
fn kill9_rounds(scenario: &str, storage_url: Option<String>, rounds: u64, round_jobs: u64) {
    let started = Instant::now();
    let mut rng = Rng::from_env(scenario);
    let plugins = ["echo", "loop-forever", "memory-hog", "panic"];
    let mut b = Daemon::builder(&plugins)
        .config(KEEP_ALL)
        .args(&["--workers", WORKERS])
        .env("SPOOL_LEASE", LEASE);
    if let Some(u) = &storage_url {
        b = b.storage(u);
    }
    let mut d = b.start();
    let url = storage_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", d.dir.path().join("spool.db").display()));
    let (mut echo, mut hostile) = (Vec::new(), Vec::new());
    let mut t = Tally::default();
    for round in 0..rounds {
        let (e, h) = submit_round(&d, round * round_jobs, round_jobs, 1);
        echo.extend(e);
        hostile.extend(h);
        t.rounds += 1;
        for _ in 0..rng.range(1, 3) {
            kill_at_random_moment(&mut d, &url, &mut rng, round_jobs, &mut t);
        }
        wait_all_finished(&d, (echo.len() + hostile.len()) as u64);
        println!(
            "  round {round}: done at {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    t.jobs = (echo.len() + hostile.len()) as u64;
    let (status, took) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM exit: {status:?}");
    println!("  SIGTERM: exited in {took:?}");
    account(&url, &echo, &hostile, &mut t);
    d.restart();
    assert_serving(&d);
    t.print(scenario, started);
    assert_eq!(t.lost, 0, "jobs were lost");
    assert!(
        t.duplicates <= t.in_flight,
        "{} duplicate runs, but only {} jobs were in flight at the kills",
        t.duplicates,
        t.in_flight
    );
}

/// A Redis with AOF and `appendfsync always`: every write it acknowledged survives a
/// `kill -9` of Redis itself.
fn redis_aof() -> redis::Server {
    redis::Server::start(&["--appendonly", "yes", "--appendfsync", "always"])
}

/// A storage URL with its own key prefix and short timeouts (outages show quickly).
fn chaos_url(r: &redis::Server, prefix: &str) -> String {
    format!("{}&timeout=2s&connect_timeout=1s", r.url(prefix))
}

/// `SPOOL_CHAOS_ROUNDS` and `SPOOL_CHAOS_JOBS` (per round) override a scenario's defaults,
/// for long runs: `SPOOL_CHAOS_ROUNDS=20 cargo test -p spool-tests --test chaos kill_9`.
fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

fn rounds_or(default: u64) -> u64 {
    env_or("SPOOL_CHAOS_ROUNDS", default)
}

fn round_jobs_or(default: u64) -> u64 {
    env_or("SPOOL_CHAOS_JOBS", default)
}

#[test]
fn kill_9_at_random_moments_loses_no_job_sqlite() {
    let _one = serial();
    kill9_rounds("sqlite kill -9", None, rounds_or(4), round_jobs_or(2500));
}

#[test]
fn kill_9_at_random_moments_loses_no_job_redis() {
    let _one = serial();
    if !redis::require_redis("chaos on redis") {
        return;
    }
    let r = redis_aof();
    kill9_rounds(
        "redis kill -9",
        Some(chaos_url(&r, "chaos-kill")),
        rounds_or(3),
        round_jobs_or(2000),
    );
}

#[test]
fn redis_killed_and_restarted_mid_run_loses_no_job() {
    let _one = serial();
    if !redis::require_redis("chaos on redis") {
        return;
    }
    let started = Instant::now();
    let mut rng = Rng::from_env("redis restart");
    let mut r = redis_aof();
    let url = chaos_url(&r, "chaos-restart");
    let d = Daemon::builder(&["echo"])
        .config(KEEP_ALL)
        .args(&["--workers", WORKERS])
        .env("SPOOL_LEASE", LEASE)
        .storage(&url)
        .start();
    let mut t = Tally {
        rounds: 1,
        ..Tally::default()
    };
    let (echo, _) = submit_round(&d, 0, 3000, 0);
    t.jobs = echo.len() as u64;
    let target = rng.range(300, 1500);
    eventually_blocking("progress before killing redis", LIMIT, || {
        n(&totals(&d), "completed") >= target
    });
    // What the daemon holds when Redis dies (running, or claimed ahead into its buffer) is
    // the bound on re-runs: read it with the daemon standing still.
    d.pause();
    t.in_flight = echo_in_flight(&url);
    r.kill9();
    d.resume();
    t.kills += 1;
    // Degraded (not unhealthy: restarting the daemon would not help) within seconds.
    let gone = Instant::now();
    eventually_blocking(
        "health to notice redis is gone",
        Duration::from_secs(10),
        || {
            let h = d.get("/health");
            h.status == 200
                && h.body["status"] == "degraded"
                && h.body["storage"]["connected"] == false
        },
    );
    eprintln!(
        "health said degraded {} ms after redis died",
        gone.elapsed().as_millis()
    );
    let h = d.get("/health");
    let reasons = h.body["reasons"].to_string();
    assert!(reasons.contains("storage unreachable"), "{}", h.text);
    // Without a fallback, a submit fails fast with a message that says why.
    let refused = d.post("/api/v1/jobs", &echo_job(99_999));
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(
        refused.body["error"]["code"], "storage_unavailable",
        "{}",
        refused.text
    );
    let msg = refused.body["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("check that it is running"), "{msg}");
    // /metrics still answers: the daemon's own counters, storage marked down, no queue gauges.
    let m = d.get("/metrics");
    assert_eq!(m.status, 200, "{}", m.text);
    assert!(m.text.contains("\nspool_storage_up 0\n"), "{}", m.text);
    assert!(
        m.text.contains("spool_jobs_completed_total{type=\"echo\"}"),
        "{}",
        m.text
    );
    assert!(!m.text.contains("spool_queue_depth{"), "{}", m.text);
    r.restart();
    let back = Instant::now();
    eventually_blocking(
        "health to be healthy again",
        Duration::from_secs(10),
        || d.get("/health").body["status"] == "healthy",
    );
    eprintln!(
        "health said healthy {} ms after redis came back",
        back.elapsed().as_millis()
    );
    // The queue gauges come back once the 1 s probe cache holds an answer from the new Redis.
    eventually_blocking(
        "/metrics to show storage up with queue gauges",
        Duration::from_secs(5),
        || {
            let m = d.get("/metrics");
            m.text.contains("\nspool_storage_up 1\n") && m.text.contains("spool_queue_depth{")
        },
    );
    wait_all_finished(&d, t.jobs);
    account(&url, &echo, &[], &mut t);
    assert_serving(&d);
    t.print("redis kill -9 + restart", started);
    assert_eq!(t.lost, 0, "jobs were lost");
    assert!(t.duplicates <= t.in_flight, "{} duplicates", t.duplicates);
}

#[test]
fn redis_down_with_the_fallback_on_accepts_jobs_and_runs_them_later() {
    let _one = serial();
    if !redis::require_redis("chaos on redis") {
        return;
    }
    let started = Instant::now();
    let mut r = redis_aof();
    let url = chaos_url(&r, "chaos-fallback");
    let spool_dir = tempfile::tempdir().expect("temp dir");
    let spool = spool_dir.path().join("fallback.db");
    let mut d = Daemon::builder(&["echo"])
        .config(KEEP_ALL)
        .args(&[
            "--workers",
            WORKERS,
            "--fallback",
            &spool.display().to_string(),
        ])
        .env("SPOOL_LEASE", LEASE)
        .storage(&url)
        .start();
    let mut t = Tally {
        rounds: 1,
        ..Tally::default()
    };
    let (mut echo, _) = submit_round(&d, 0, 1000, 0);
    d.pause();
    t.in_flight = echo_in_flight(&url);
    r.shutdown_nosave();
    d.resume();
    t.kills += 1;
    // Accepted while Redis is down: one by one and in batches.
    for i in 0..100 {
        echo.push(
            d.submit(&echo_job(10_000 + i))["id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }
    let (more, _) = submit_round(&d, 20_000, 400, 0);
    echo.extend(more);
    let h = d.get("/health");
    assert_eq!(h.status, 200, "degraded, not unhealthy: {}", h.text);
    assert_eq!(h.body["status"], "degraded", "{}", h.text);
    assert!(h.text.contains("fallback spool"), "{}", h.text);
    // Spooled jobs can be cancelled and deleted while Redis is down; a job that is in Redis
    // cannot be reached, and the answer says so (not 404).
    let deleted = echo.pop().expect("a spooled job");
    let cancelled = echo.pop().expect("a spooled job");
    let c = d.post(&format!("/api/v1/jobs/{cancelled}/cancel"), &json!({}));
    assert_eq!(c.status, 200, "cancel a spooled job: {}", c.text);
    assert_eq!(c.body["status"], "cancelled", "{}", c.text);
    let del = d.delete(&format!("/api/v1/jobs/{deleted}"));
    assert_eq!(del.status, 204, "delete a spooled job: {}", del.text);
    let in_redis = d.delete(&format!("/api/v1/jobs/{}", echo[0]));
    assert_eq!(in_redis.status, 503, "{}", in_redis.text);
    assert_eq!(
        in_redis.body["error"]["code"], "storage_unavailable",
        "{}",
        in_redis.text
    );
    r.restart();
    t.jobs = echo.len() as u64;
    wait_all_finished(&d, t.jobs);
    let spool_empty = |d: &Daemon| {
        eventually_blocking("the spool to be empty", LIMIT, || {
            let h = d.get("/health");
            h.body["fallback"]["jobs"] == 0
        })
    };
    spool_empty(&d);
    // Handed over as the user left them, and health is back to healthy.
    let c = d.get(&format!("/api/v1/jobs/{cancelled}"));
    assert_eq!(c.body["status"], "cancelled", "{}", c.text);
    assert_eq!(d.get(&format!("/api/v1/jobs/{deleted}")).status, 404);
    eventually_blocking("health to be healthy after the replay", LIMIT, || {
        let h = d.get("/health");
        h.body["status"] == "healthy" && h.body["fallback"]["active"] == false
    });

    // Second outage: the daemon dies and starts again while Redis is still down.
    d.pause();
    t.in_flight += echo_in_flight(&url);
    r.shutdown_nosave();
    d.kill9();
    t.kills += 2;
    d.restart();
    let (more, _) = submit_round(&d, 30_000, 300, 0);
    echo.extend(more);
    let h = d.get("/health");
    assert_eq!(h.body["status"], "degraded", "{}", h.text);
    r.restart();
    t.rounds += 1;
    t.jobs = echo.len() as u64;
    wait_all_finished(&d, t.jobs);
    spool_empty(&d);
    account(&url, &echo, &[], &mut t);
    assert_serving(&d);
    t.print("redis down with fallback", started);
    assert_eq!(t.lost, 0, "jobs were lost");
    assert!(t.duplicates <= t.in_flight, "{} duplicates", t.duplicates);
}

#[test]
fn sigterm_under_load_drains_and_runs_nothing_twice() {
    let _one = serial();
    let started = Instant::now();
    let mut rng = Rng::from_env("sigterm drain");
    let mut d = Daemon::builder(&["slow", "echo"])
        .config(KEEP_ALL)
        .args(&["--workers", WORKERS, "--shutdown-grace", "1s"])
        .env("SPOOL_LEASE", LEASE)
        .start();
    let url = format!("sqlite://{}", d.dir.path().join("spool.db").display());
    let mut jobs: Vec<Value> = (0..400)
        .map(|i| json!({"type": "slow", "payload": {"ms": 50, "step_ms": 10, "i": i}}))
        .collect();
    // A few that cannot finish within the grace period: stopped and released.
    for i in 0..4 {
        jobs.insert(
            i * 100,
            json!({"type": "slow", "payload": {"ms": 3000, "step_ms": 50}}),
        );
    }
    let ids = d.submit_batch(&jobs);
    let target = rng.range(50, 200);
    eventually_blocking("some progress before SIGTERM", LIMIT, || {
        n(&totals(&d), "completed") >= target
    });
    let (status, took) = d.terminate(Duration::from_secs(15));
    assert!(status.success(), "SIGTERM exit: {status:?}");
    assert!(
        took < Duration::from_secs(6),
        "drain took {took:?} with a 1s grace"
    );
    let running = with_store(&url, async |s| {
        list_all(&*s, Some(JobState::Running)).await.len()
    });
    assert_eq!(running, 0, "a drained daemon leaves no job running");
    d.restart();
    wait_all_finished(&d, ids.len() as u64);
    let mut t = Tally {
        rounds: 1,
        jobs: ids.len() as u64,
        ..Tally::default()
    };
    let jobs: HashMap<String, Job> = with_store(&url, async |s| {
        list_all(&*s, None)
            .await
            .into_iter()
            .map(|j| (j.id.clone(), j))
            .collect()
    });
    for id in &ids {
        match jobs.get(id) {
            Some(j) if j.status == JobState::Completed => {
                t.duplicates += u64::from(j.attempt.saturating_sub(1))
            }
            Some(j) => panic!("job {id} ended {}", j.status),
            None => t.lost += 1,
        }
    }
    assert_serving(&d);
    println!("  SIGTERM: exited in {took:?}");
    t.print("sigterm drain", started);
    assert_eq!(
        (t.lost, t.duplicates),
        (0, 0),
        "a graceful stop loses nothing and re-runs nothing"
    );
}
