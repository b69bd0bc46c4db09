//! Redis storage on a standalone server (shared by the tests, each with a fresh prefix, or
//! `SPOOL_TEST_REDIS_URL`): the storage conformance suite, then what only Redis has (key
//! hygiene next to foreign keys, Redis-clock mode, native cache TTLs, several daemons on one
//! queue, script reloads, health details, URL errors).
//!
//! Throughput: `cargo test -p spool-host --features testing --test storage_redis -- --ignored
//! --nocapture redis_throughput`.

use super::Backend;
use redis::AsyncCommands;
use spool_host::job::{Clock, ManualClock, NewJob, Progress, SystemClock, system_now_ms};
use spool_host::storage::{
    self, CacheKey, ClaimRequest, ListFilter, RetentionPolicy, StorageError, StorageOptions,
};
use spool_tests::eventually;
use spool_tests::redis as test_redis;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn open(url: &str, clock: Arc<dyn Clock>) -> Backend {
    storage::open(url, StorageOptions::default(), clock)
        .await
        .expect("open redis storage")
}

/// A fresh store (its own prefix) on the server at `base`, on the suite's ManualClock.
async fn fresh(base: &str, clock: Arc<ManualClock>) -> Backend {
    let url = format!(
        "{base}/?prefix={}&clock=local",
        test_redis::fresh_prefix("conf")
    );
    storage::open(&url, storage::conformance::options(), clock)
        .await
        .expect("open redis storage")
}

/// A fresh store on the shared server, or None when Redis is not installed.
async fn conformance_store(clock: Arc<ManualClock>) -> Option<Backend> {
    Some(fresh(&test_redis::shared_server_url()?, clock).await)
}

mod conformance {
    spool_host::conformance_tests!(super::conformance_store);
}

fn job(t: &str) -> NewJob {
    spool_host::storage::conformance::job(t)
}

async fn raw(base: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(base)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("raw redis connection")
}

/// Every key in the db (SCAN, as an operator would; KEYS is never used by spool itself).
async fn all_keys(c: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(c)
            .await
            .unwrap();
        out.extend(keys);
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

/// Runs most of the trait once, so that every script has written its keys.
async fn workload(s: &Backend, clock: &ManualClock) {
    let a = s
        .enqueue(NewJob {
            unique_key: Some("u".into()),
            ..job("hyg")
        })
        .await
        .unwrap()
        .job;
    s.enqueue(NewJob {
        run_at: Some(clock.now_ms() + 1_000),
        ..job("hyg")
    })
    .await
    .unwrap();
    let c = s
        .claim(ClaimRequest {
            types: vec!["hyg".into()],
            limit: 1,
            lease: Duration::from_secs(5),
            worker: "w".into(),
        })
        .await
        .unwrap();
    assert_eq!(c[0].job.id, a.id);
    s.set_progress(&a.id, &c[0].lease, Progress::new(5, None))
        .await
        .unwrap();
    s.complete(vec![storage::conformance::completion(&c[0])])
        .await
        .unwrap();
    clock.advance(Duration::from_secs(2));
    s.promote_due().await.unwrap();
    let c = storage::conformance::claim_one(s, "hyg").await;
    s.fail(vec![storage::conformance::failure(&c, None)])
        .await
        .unwrap();
    s.replay(&c.job.id).await.unwrap();
    s.cancel(&c.job.id).await.unwrap();
    s.cache_set(
        CacheKey::new("plug", "k"),
        "v",
        Some(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    s.cache_increment(CacheKey::new("plug", "n"), 2, None)
        .await
        .unwrap();
    s.stats().await.unwrap();
    s.list(ListFilter::default()).await.unwrap();
    s.events_since(None, 10).await.unwrap();
    clock.advance(Duration::from_secs(3 * 24 * 3600));
    s.sweep_retention(&RetentionPolicy::default())
        .await
        .unwrap();
    s.reap_expired().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_stay_under_the_prefix_and_foreign_keys_are_untouched() {
    let Some(base) = test_redis::shared_server_url() else {
        return;
    };
    // A server of our own, so that SCAN sees only this test's keys.
    let own_server = std::env::var("SPOOL_TEST_REDIS_URL")
        .is_err()
        .then(|| test_redis::Server::start(&[]));
    let own = match &own_server {
        Some(server) => format!("redis://127.0.0.1:{}", server.port),
        None => base.clone(),
    };
    let mut c = raw(&own).await;
    // Foreign data of every type, including names that look like ours.
    let _: () = c.set("spool:jobs", "not ours").await.unwrap();
    let _: () = c
        .rpush("{spool}", "a list named like our tag")
        .await
        .unwrap();
    let _: () = c.hset("{other}:jobs", "f", "v").await.unwrap();
    let _: () = c.sadd("spool", "x").await.unwrap();
    let _: () = c.zadd("{spool}jobs", "m", 1).await.unwrap();
    let foreign = [
        "spool:jobs",
        "{spool}",
        "{other}:jobs",
        "spool",
        "{spool}jobs",
    ];
    let before: Vec<String> = {
        let mut v = Vec::new();
        for k in foreign {
            let dump: Vec<u8> = redis::cmd("DUMP").arg(k).query_async(&mut c).await.unwrap();
            v.push(format!("{dump:?}"));
        }
        v
    };

    let clock = Arc::new(ManualClock::new());
    let s = open(&format!("{own}/?prefix=spool&clock=local"), clock.clone()).await;
    workload(&s, &clock).await;

    for k in all_keys(&mut c).await {
        assert!(
            k.starts_with("{spool}:") || foreign.contains(&k.as_str()),
            "stray key `{k}`"
        );
    }
    for (k, want) in foreign.iter().zip(before) {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(*k)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(format!("{dump:?}"), want, "foreign key `{k}` changed");
    }
}

/// A clock a fixed distance ahead of the system clock, as a skewed host would be.
struct Skewed(i64);
impl Clock for Skewed {
    fn now_ms(&self) -> i64 {
        system_now_ms() + self.0
    }
    fn skew_ms(&self) -> i64 {
        self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_clock_mode_times_jobs_and_leases_by_redis_time() {
    let Some(base) = test_redis::shared_server_url() else {
        return;
    };
    let url = format!("{base}/?prefix={}", test_redis::fresh_prefix("time"));
    let s = open(&url, Arc::new(SystemClock)).await;
    let before = system_now_ms();
    let j = s.enqueue(job("t")).await.unwrap().job;
    assert!(
        (j.created_at - before).abs() < 2_000,
        "created_at from Redis TIME: {j:?}"
    );
    let req = ClaimRequest {
        types: vec!["t".into()],
        limit: 1,
        lease: Duration::from_millis(300),
        worker: "w".into(),
    };
    let c = s.claim(req).await.unwrap();
    let expires = c[0].job.lease_expires_at.unwrap();
    assert_eq!(expires - c[0].job.started_at.unwrap(), 300);
    assert_eq!(
        s.reap_expired().await.unwrap().requeued,
        0,
        "lease still live"
    );
    eventually(
        "the 300 ms lease expires by Redis time",
        Duration::from_secs(10),
        || {
            let s = s.clone();
            async move { s.reap_expired().await.unwrap().requeued == 1 }
        },
    )
    .await;

    // The skew moves Redis time too (how the suite's clock moves time in this mode).
    let hour = 3_600_000;
    let skewed = open(&url, Arc::new(Skewed(hour))).await;
    let j = skewed.enqueue(job("t")).await.unwrap().job;
    assert!(
        (j.created_at - system_now_ms() - hour).abs() < 2_000,
        "{j:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_entries_are_plain_strings_with_native_ttls() {
    let Some(base) = test_redis::shared_server_url() else {
        return;
    };
    let prefix = test_redis::fresh_prefix("cache");
    let s = open(&format!("{base}/?prefix={prefix}"), Arc::new(SystemClock)).await;
    s.cache_set(
        CacheKey::new("img", "k"),
        "v",
        Some(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    s.cache_increment(CacheKey::new("img", "n"), 3, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let mut c = raw(&base).await;
    let key = format!("{{{prefix}}}:cache:img:k");
    let v: String = c.get(&key).await.unwrap();
    let ttl: i64 = c.pttl(&key).await.unwrap();
    assert_eq!(v, "v");
    assert!(ttl > 0 && ttl <= 300, "{ttl}");
    let n: i64 = c.get(format!("{{{prefix}}}:cache:img:n")).await.unwrap();
    assert_eq!(n, 3);
    eventually(
        "the entry expires natively",
        Duration::from_secs(10),
        || {
            let s = s.clone();
            async move {
                s.cache_get(CacheKey::new("img", "k"))
                    .await
                    .unwrap()
                    .is_none()
            }
        },
    )
    .await;
    let exists: bool = c.exists(&key).await.unwrap();
    assert!(!exists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_daemons_share_one_queue_and_all_wake() {
    let Some(base) = test_redis::shared_server_url() else {
        return;
    };
    let url = format!("{base}/?prefix={}", test_redis::fresh_prefix("share"));
    let daemons: Vec<Backend> =
        futures::future::join_all((0..3).map(|_| open(&url, Arc::new(SystemClock)))).await;
    // Let every subscription come up before anything is published.
    for d in &daemons {
        let d = d.clone();
        eventually("wake subscription up", Duration::from_secs(10), || {
            let d = d.clone();
            async move {
                d.info()
                    .await
                    .unwrap()
                    .details
                    .get("wake_subscription")
                    .map(String::as_str)
                    == Some("up")
            }
        })
        .await;
    }
    for d in &daemons[1..] {
        storage::conformance::drain_wake_ups(d).await;
    }
    // No need to wait for the waiters to start: a signal that finds no waiter leaves a permit.
    let waiters: Vec<_> = daemons[1..]
        .iter()
        .map(|d| {
            let d = d.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                d.wait_for_work(Duration::from_secs(3600)).await;
                start.elapsed()
            })
        })
        .collect();
    daemons[0].enqueue(job("shared")).await.unwrap();
    for w in waiters {
        let waited = tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("woken")
            .unwrap();
        assert!(waited < Duration::from_secs(10));
    }
    // The work is split: each job is claimed once, whoever claims it.
    for _ in 0..20 {
        daemons[0].enqueue(job("shared")).await.unwrap();
    }
    let mut claimed = 0;
    for d in daemons.iter().cycle().take(30) {
        let got = d
            .claim(ClaimRequest {
                types: vec!["shared".into()],
                limit: 2,
                lease: Duration::from_secs(30),
                worker: "w".into(),
            })
            .await
            .unwrap();
        claimed += got.len();
    }
    assert_eq!(claimed, 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_crash_and_restart_is_survived_by_calls_and_wake_ups() {
    if !test_redis::require_redis("redis restart test") {
        return;
    }
    let mut server = test_redis::Server::start(&[]);
    let url = format!("redis://127.0.0.1:{}/?prefix=spool&timeout=2s", server.port);
    let a = open(&url, Arc::new(SystemClock)).await;
    let b = open(&url, Arc::new(SystemClock)).await;
    let subscribed = |s: &Backend| {
        let s = s.clone();
        async move {
            s.info()
                .await
                .is_ok_and(|i| i.details.get("wake_subscription").map(String::as_str) == Some("up"))
        }
    };
    eventually("b subscribed", Duration::from_secs(10), || subscribed(&b)).await;

    server.crash_and_restart();
    // Calls fail while it is down and work again once it is back, without reopening.
    eventually(
        "a enqueues again after the restart",
        Duration::from_secs(20),
        || {
            let a = a.clone();
            async move { a.enqueue(job("restart")).await.is_ok() }
        },
    )
    .await;
    eventually(
        "b's wake-up subscription restored",
        Duration::from_secs(20),
        || subscribed(&b),
    )
    .await;
    // b wakes for work that a enqueued: only the restored subscription can tell it.
    storage::conformance::drain_wake_ups(&b).await;
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.wait_for_work(Duration::from_secs(3600)).await })
    };
    a.enqueue(job("restart")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("b woke")
        .unwrap();
    assert_eq!(
        storage::conformance::claim(&b, &["restart"], 10)
            .await
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_reloaded_after_a_script_flush() {
    let Some(base) = test_redis::shared_server_url() else {
        return;
    };
    let clock = Arc::new(ManualClock::new());
    let s = fresh(&base, clock).await;
    s.enqueue(job("flush")).await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw(&base).await)
        .await
        .unwrap();
    s.enqueue(job("flush")).await.unwrap();
    assert_eq!(
        storage::conformance::claim(&s, &["flush"], 10).await.len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_reports_the_server_and_warns_about_eviction() {
    if !test_redis::require_redis("redis info test") {
        return;
    }
    let lru =
        test_redis::Server::start(&["--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"]);
    let s = open(
        &format!("{}&clock=local", lru.url("spool")),
        Arc::new(SystemClock),
    )
    .await;
    let info = s.info().await.unwrap();
    assert_eq!(info.backend, "redis");
    for key in [
        "version",
        "role",
        "used_memory",
        "maxmemory_policy",
        "connected_clients",
        "mode",
        "prefix",
    ] {
        assert!(info.details.contains_key(key), "no `{key}` in {info:?}");
    }
    assert_eq!(info.details["maxmemory_policy"], "allkeys-lru");
    assert_eq!(info.details["role"], "master");
    assert!(
        info.warnings.iter().any(|w| w.contains("noeviction")),
        "{:?}",
        info.warnings
    );
    assert!(s.ping().await.unwrap() < Duration::from_secs(1));

    let Some(base) = test_redis::shared_server_url() else {
        return;
    };
    let ok = open(
        &format!("{base}/?prefix={}", test_redis::fresh_prefix("info")),
        Arc::new(SystemClock),
    )
    .await;
    let info = ok.info().await.unwrap();
    assert!(
        !info.warnings.iter().any(|w| w.contains("noeviction")),
        "{:?}",
        info.warnings
    );
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_say_what_to_do() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let err = |r: Result<Backend, StorageError>| match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    };
    let port = test_redis::free_port();
    let e = err(storage::open(
        &format!("redis://127.0.0.1:{port}/?connect_timeout=1s"),
        StorageOptions::default(),
        clock.clone(),
    )
    .await);
    assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains("cannot connect to redis"), "{e}");
    let e = err(storage::open(
        "redis://u:hunter2@127.0.0.1:1/?colour=red",
        StorageOptions::default(),
        clock.clone(),
    )
    .await);
    assert!(
        e.to_string().contains("unknown option `colour`") && !e.to_string().contains("hunter2"),
        "{e}"
    );
    let e = err(storage::open(
        "rediss://127.0.0.1:1",
        StorageOptions::default(),
        clock.clone(),
    )
    .await);
    assert!(e.to_string().contains("TLS"), "{e}");
}

/// The figure for the report: claim+complete through the trait, dev profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
async fn redis_throughput() {
    let Some(base) = test_redis::shared_server_url() else {
        return;
    };
    let s = open(
        &format!("{base}/?prefix={}", test_redis::fresh_prefix("bench")),
        Arc::new(SystemClock),
    )
    .await;
    let n = 20_000;
    let start = Instant::now();
    for chunk in 0..n / 500 {
        let batch: Vec<NewJob> = (0..500)
            .map(|i| storage::loadgen::bench_job("bench", chunk * 500 + i))
            .collect();
        s.enqueue_batch(batch).await.unwrap();
    }
    let enq = start.elapsed();
    println!(
        "enqueue_batch(500): {:.0} jobs/s ({n} in {enq:.2?})",
        n as f64 / enq.as_secs_f64()
    );
    for (batch, workers) in [(1usize, 1usize), (1, 8), (10, 4), (50, 8)] {
        let figure = storage::loadgen::claim_complete(&s, "bench", n / 4, batch, workers).await;
        println!("{figure}");
    }
}

/// A store written by an earlier version: its indexes that this version never reads go at the
/// first retention sweep (never at connect), and a job leased under the old layout (in the
/// all-types running set) is still reaped when its lease runs out, and runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_an_earlier_version_is_reaped_and_cleaned_up() {
    let Some(base) = test_redis::shared_server_url() else {
        return;
    };
    let prefix = test_redis::fresh_prefix("legacy");
    let tag = format!("{{{prefix}}}");
    let clock = Arc::new(ManualClock::new());
    let s = open(
        &format!("{base}/?prefix={prefix}&clock=local"),
        clock.clone(),
    )
    .await;
    let mut c = raw(&base).await;
    // A job running under the old layout: in `{p}:running` and the old id index of running
    // jobs, not in the type's running set.
    let old = s.enqueue(job("legacy")).await.unwrap().job;
    let claimed = storage::conformance::claim_one(&s, "legacy").await;
    assert_eq!(claimed.job.id, old.id);
    let expires = claimed.job.lease_expires_at.expect("a running job's lease");
    let _: () = c
        .zrem(format!("{tag}:running:legacy"), &old.id)
        .await
        .unwrap();
    let _: () = c
        .zadd(format!("{tag}:running"), &old.id, expires)
        .await
        .unwrap();
    let stale = [
        format!("{tag}:jobs:s:pending"),
        format!("{tag}:jobs"),
        format!("{tag}:jobs:st:running:legacy"),
        format!("{tag}:finished:completed:legacy"),
    ];
    for key in &stale {
        let _: () = c.zadd(key, &old.id, 0).await.unwrap();
    }
    // Connecting again writes nothing.
    let s = open(
        &format!("{base}/?prefix={prefix}&clock=local"),
        clock.clone(),
    )
    .await;
    for key in &stale {
        let exists: bool = c.exists(key).await.unwrap();
        assert!(exists, "connecting writes nothing ({key})");
    }
    clock.advance(Duration::from_millis(
        u64::try_from(expires - clock.now_ms()).unwrap() + 1,
    ));
    let reaped = s.reap_expired().await.unwrap();
    assert_eq!(reaped.requeued, 1, "the old lease is reaped");
    let exists: bool = c.exists(format!("{tag}:running")).await.unwrap();
    assert!(!exists, "the reaper drains the old running set");
    let again = storage::conformance::claim_one(&s, "legacy").await;
    assert_eq!(again.job.id, old.id);
    assert_eq!(again.job.attempt, 2);
    s.sweep_retention(&RetentionPolicy::default())
        .await
        .unwrap();
    for key in &stale {
        let exists: bool = c.exists(key).await.unwrap();
        assert!(!exists, "the first sweep removes {key}");
    }
    let running = s
        .list(ListFilter {
            status: Some(spool_host::job::JobState::Running),
            job_type: Some("legacy".into()),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(running.jobs.len(), 1);
    assert_eq!(running.jobs[0].id, old.id);
}

/// Job hashes leave out the fields that only say the default (`attempt` 0, no logs, no
/// cancel request); a job written by an earlier version, which stored them, still runs:
/// claimed as its first attempt, its `cancel_requested` "0" dropped at the claim (a cancel
/// asked for later still reaches the worker), and completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_hash_with_the_earlier_default_fields_still_runs() {
    let Some(base) = test_redis::shared_server_url() else {
        return;
    };
    let prefix = test_redis::fresh_prefix("defaults");
    let tag = format!("{{{prefix}}}");
    let s = open(&format!("{base}/?prefix={prefix}"), Arc::new(SystemClock)).await;
    let mut c = raw(&base).await;
    let new = s.enqueue(job("defaults")).await.unwrap().job;
    let fields: Vec<String> = c.hkeys(format!("{tag}:job:{}", new.id)).await.unwrap();
    for f in ["attempt", "logs", "cancel_requested"] {
        assert!(!fields.contains(&f.to_string()), "{f} in {fields:?}");
    }
    let old = s.enqueue(job("defaults")).await.unwrap().job;
    let key = format!("{tag}:job:{}", old.id);
    let _: () = c
        .hset_multiple(
            &key,
            &[("attempt", "0"), ("logs", "[]"), ("cancel_requested", "0")],
        )
        .await
        .unwrap();
    let fresh = s.get(&new.id).await.unwrap().unwrap();
    assert_eq!(
        (fresh.attempt, fresh.logs.len(), fresh.cancel_requested),
        (0, 0, false)
    );
    for id in [&new.id, &old.id] {
        let claimed = storage::conformance::claim_one(&s, "defaults").await;
        assert_eq!(&claimed.job.id, id);
        assert_eq!(claimed.job.attempt, 1);
        assert!(!claimed.job.cancel_requested);
        let stale: bool = c
            .hexists(format!("{tag}:job:{id}"), "cancel_requested")
            .await
            .unwrap();
        assert!(!stale, "the claim drops a cancel_requested of 0");
        let lease = [(id.clone(), claimed.lease.clone())];
        assert_eq!(
            s.renew_leases(&lease, Duration::from_secs(30))
                .await
                .unwrap(),
            [storage::LeaseStatus::Held]
        );
        assert!(matches!(
            s.cancel(id).await.unwrap(),
            storage::CancelOutcome::Requested(_)
        ));
        assert_eq!(
            s.renew_leases(&lease, Duration::from_secs(30))
                .await
                .unwrap(),
            [storage::LeaseStatus::CancelRequested]
        );
        let done = s
            .complete(vec![storage::Completion {
                id: id.clone(),
                lease: claimed.lease,
                result: serde_json::value::to_raw_value(&serde_json::json!({"ok": true})).unwrap(),
                logs: vec!["one line".into()],
                plugin_version: None,
                followups: Vec::new(),
            }])
            .await
            .unwrap();
        assert_eq!(
            done,
            [storage::Settled::Moved(
                spool_host::job::JobState::Completed
            )]
        );
        let finished = s.get(id).await.unwrap().unwrap();
        assert_eq!(finished.status, spool_host::job::JobState::Completed);
        assert_eq!((finished.attempt, finished.logs.len()), (1, 1));
    }
}

async fn all_events(s: &Backend) -> Vec<spool_host::storage::Event> {
    let mut out: Vec<spool_host::storage::Event> = Vec::new();
    loop {
        let after = out.last().map(|e| e.id.clone());
        let page = s.events_since(after.as_deref(), 100).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// The event log holds about `max_events` events however they were batched: one enqueue of
/// many jobs is one stream entry, and the cap counts events, not entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_is_capped_by_events_not_entries() {
    let Some(base) = test_redis::shared_server_url() else {
        return;
    };
    let prefix = test_redis::fresh_prefix("evcap");
    let opts = StorageOptions {
        max_events: 300,
        ..StorageOptions::default()
    };
    let clock = Arc::new(ManualClock::new());
    let s = storage::open(&format!("{base}/?prefix={prefix}&clock=local"), opts, clock)
        .await
        .expect("open redis storage");
    // Batches of 50 (one entry each) and single jobs (one entry each), mixed.
    let mut last_ids = Vec::new();
    for round in 0..20 {
        let n = if round % 2 == 1 { 50 } else { 1 };
        let made = s
            .enqueue_batch((0..n).map(|_| job("evcap")).collect())
            .await
            .unwrap();
        last_ids = made.into_iter().map(|e| e.job.id).collect();
    }
    // 20 rounds wrote 510 events; the log keeps at least the newest 300 and never more
    // than the cap plus the entry that crossed it.
    let all = all_events(&s).await;
    // A page is its limit, read across many entries and from inside batches.
    assert_eq!(s.events_since(None, 120).await.unwrap().len(), 120);
    let mid = &all[all.len() - 60].id;
    let tail = s.events_since(Some(mid), 100).await.unwrap();
    assert_eq!(tail.len(), 59);
    assert_eq!(tail[0].id, all[all.len() - 59].id);
    assert!(
        (300..=300 + 50).contains(&all.len()),
        "kept {} events",
        all.len()
    );
    let newest: Vec<&str> = all
        .iter()
        .rev()
        .take(last_ids.len())
        .filter_map(|e| e.job_id.as_deref())
        .collect();
    assert_eq!(
        newest,
        last_ids
            .iter()
            .rev()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    // The sweep's own trim (a backstop, by entries) cuts no more.
    s.sweep_retention(&RetentionPolicy::default())
        .await
        .unwrap();
    assert_eq!(all_events(&s).await.len(), all.len());
    // The marks that time the cap stay bounded too.
    let mut c = raw(&base).await;
    let marks: i64 = c.llen(format!("{{{prefix}}}:events:marks")).await.unwrap();
    let entries: i64 = c.xlen(format!("{{{prefix}}}:events")).await.unwrap();
    assert_eq!(marks, entries, "one mark per entry kept");
}
