//! `spool migrate` end to end through real stores: jobs in every state go SQLite -> Redis ->
//! SQLite (a `redis-server` this test starts) and come back identical (full job JSON, ids
//! kept); running it twice adds nothing. Prints jobs/s for each leg.
//!
//! Default: 20,000 jobs. The 100,000-job figure: `SPOOL_MIGRATE_JOBS=100000 cargo test -p
//! spool-host --test migrate -- --nocapture`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::value::RawValue;
use spool_host::commands::migrate::{self, Options, Report};
use spool_host::job::{Clock, Job, JobState, Millis, NewJob, SystemClock};
use spool_host::storage::{self, ImportEvents, ListFilter, Storage, StorageOptions};
use spool_tests::redis as test_redis;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

const DEFAULT_JOBS: usize = 20_000;

fn raw(text: String) -> Box<RawValue> {
    RawValue::from_string(text).expect("valid JSON")
}

/// `n` jobs over every state and three types, with results, errors, logs, progress, unique
/// keys and backoff overrides, created over the last hour.
fn mixed_jobs(n: usize, now: Millis) -> Vec<Job> {
    (0..n)
        .map(|i| {
            let mut new = NewJob::new(
                ["resize", "mail", "report"][i % 3],
                raw(format!(r#"{{"i":{i},"name":"job {i}","tags":["a","b"]}}"#)),
            );
            new.priority = (i % 10) as u8 + 1;
            new.max_attempts = (i % 5) as u32 + 1;
            if i % 11 == 0 {
                new.unique_key = Some(format!("key-{i}"));
            }
            if i % 13 == 0 {
                new.timeout_ms = Some(5_000);
                new.backoff = Some(spool_host::job::BackoffPolicy::default());
            }
            let created = now - 3_600_000 + (i as i64 % 3_600_000);
            let mut j = Job::from_new(new, created);
            j.status = JobState::ALL[(i / 3) % JobState::ALL.len()];
            match j.status {
                JobState::Scheduled => j.run_at = now + 3_600_000 + i as i64,
                JobState::Pending => {}
                JobState::Running => {
                    j.attempt = 1;
                    j.started_at = Some(created + 10);
                    j.lease_expires_at = Some(now - 1_000);
                    j.progress = Some(spool_host::job::Progress {
                        percent: (i % 100) as u8,
                        message: Some(format!("step {i}")),
                    });
                }
                JobState::Retrying => {
                    j.attempt = 1;
                    j.error = Some(format!("attempt failed: {i}"));
                    j.run_at = now + 60_000;
                }
                JobState::Completed => {
                    j.attempt = 1;
                    j.started_at = Some(created + 10);
                    j.finished_at = Some(created + 20);
                    j.result = Some(raw(format!(r#"{{"ok":true,"n":{i}}}"#)));
                    j.logs = vec![format!("started {i}"), "done".into()];
                    j.plugin_version = Some("sha256:abc".into());
                }
                JobState::Failed => {
                    j.attempt = j.max_attempts;
                    j.started_at = Some(created + 10);
                    j.finished_at = Some(created + 30);
                    j.error = Some(format!("gave up on {i}"));
                    j.logs = vec!["boom".into()];
                }
                JobState::Cancelled => j.finished_at = Some(created + 40),
            }
            j
        })
        .collect()
}

async fn all_jobs(s: &dyn Storage) -> HashMap<String, serde_json::Value> {
    let mut out = HashMap::new();
    for j in storage::list_all(s, ListFilter::default())
        .await
        .expect("list")
    {
        let v = serde_json::to_value(&j).expect("job JSON");
        assert!(out.insert(j.id, v).is_none(), "a job was listed twice");
    }
    out
}

async fn leg(name: &str, from: &dyn Storage, to: &dyn Storage) -> Report {
    let t = Instant::now();
    let report = migrate::migrate(
        from,
        Some(to),
        &Options::default(),
        SystemClock.now_ms(),
        &mut |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    println!(
        "migrate {name}: {} jobs read, {} copied in {:.2} s = {:.0} jobs/s (dev profile, \
         count check included)",
        report.read,
        report.copied,
        t.elapsed().as_secs_f64(),
        report.jobs_per_second()
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_in_every_state_survive_sqlite_to_redis_to_sqlite() {
    let Some(base) = test_redis::shared_server_url() else {
        return;
    };
    let n: usize = std::env::var("SPOOL_MIGRATE_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_JOBS);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let dir = tempfile::tempdir().expect("temp dir");
    let open = |url: String| {
        let clock = clock.clone();
        async move {
            storage::open(&url, StorageOptions::default(), clock)
                .await
                .unwrap_or_else(|e| panic!("open {url}: {e}"))
        }
    };
    let first = open(format!("sqlite://{}", dir.path().join("a.db").display())).await;
    let redis = open(format!(
        "{base}/?prefix={}",
        test_redis::fresh_prefix("migrate")
    ))
    .await;
    let last = open(format!("sqlite://{}", dir.path().join("b.db").display())).await;

    let jobs = mixed_jobs(n, clock.now_ms());
    let t = Instant::now();
    for chunk in jobs.chunks(1000) {
        first
            .import_jobs(chunk.to_vec(), ImportEvents::None)
            .await
            .expect("seed");
    }
    println!(
        "seeded {n} jobs into SQLite in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let want: HashMap<String, serde_json::Value> = jobs
        .iter()
        .map(|j| (j.id.clone(), serde_json::to_value(j).expect("job JSON")))
        .collect();
    let mut per_state: HashMap<JobState, u64> = HashMap::new();
    for j in &jobs {
        *per_state.entry(j.status).or_default() += 1;
    }
    assert_eq!(per_state.len(), 7, "every state is represented");

    let to_redis = leg("sqlite -> redis", &*first, &*redis).await;
    assert_eq!((to_redis.read, to_redis.copied), (n as u64, n as u64));
    let back = leg("redis -> sqlite", &*redis, &*last).await;
    assert_eq!((back.read, back.copied), (n as u64, n as u64));
    for (state, count) in &per_state {
        assert_eq!(back.destination.get(state), Some(count), "{state}");
    }

    for (name, store) in [("redis", &redis), ("final sqlite", &last)] {
        let t = Instant::now();
        let got = all_jobs(&**store).await;
        println!(
            "listing every job of {name}: {:.2} s",
            t.elapsed().as_secs_f64()
        );
        assert_eq!(got.len(), n, "{name} holds every job exactly once");
        for (id, w) in &want {
            let g = got
                .get(id)
                .unwrap_or_else(|| panic!("{name} lost job {id}"));
            assert_eq!(g, w, "{name}: job {id} changed");
        }
    }

    // Twice: nothing new, nothing duplicated.
    let again = leg("sqlite -> redis, second run", &*first, &*redis).await;
    assert_eq!(
        (again.read, again.copied, again.skipped),
        (n as u64, 0, n as u64)
    );
    let again = leg("redis -> sqlite, second run", &*redis, &*last).await;
    assert_eq!(again.copied, 0);
    assert_eq!(all_jobs(&*redis).await.len(), n);
    assert_eq!(all_jobs(&*last).await.len(), n);
}
