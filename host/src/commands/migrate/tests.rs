//! `migrate` against in-memory stores: every state survives with its id, a second run adds
//! nothing, live leases are refused unless forced, dry runs write nothing, and the count
//! check catches what the import skipped.

use super::cli::{same_storage, sqlite_path};
use super::*;
use crate::job::{Clock, ManualClock, NewJob};
use crate::storage::memory::MemoryStorage;
use crate::storage::{ClaimRequest, StorageOptions};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;

fn store(clock: &Arc<ManualClock>) -> Arc<dyn Storage> {
    Arc::new(MemoryStorage::new(StorageOptions::default(), clock.clone()))
}

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).unwrap()
}

/// `n` jobs spread over every state, with results, errors, logs and unique keys.
fn mixed_jobs(n: usize, now: Millis) -> Vec<Job> {
    (0..n)
        .map(|i| {
            let mut new = NewJob::new(format!("type-{}", i % 3), raw(&format!(r#"{{"i":{i}}}"#)));
            new.priority = (i % 10) as u8 + 1;
            if i % 5 == 0 {
                new.unique_key = Some(format!("key-{i}"));
            }
            let mut j = Job::from_new(new, now - 60_000 + i as i64);
            j.status = JobState::ALL[i % JobState::ALL.len()];
            match j.status {
                JobState::Scheduled => j.run_at = now + 3_600_000,
                JobState::Running => {
                    j.attempt = 1;
                    j.started_at = Some(now - 1_000);
                    j.lease_expires_at = Some(now - 10);
                }
                JobState::Retrying => {
                    j.attempt = 2;
                    j.error = Some("try again".into());
                    j.run_at = now + 5_000;
                }
                JobState::Completed => {
                    j.attempt = 1;
                    j.result = Some(raw(&format!(r#"{{"out":{i}}}"#)));
                    j.logs = vec![format!("line {i}")];
                    j.plugin_version = Some("v1".into());
                    j.finished_at = Some(now - 5);
                }
                JobState::Failed => {
                    j.attempt = 4;
                    j.error = Some("gave up".into());
                    j.finished_at = Some(now - 6);
                }
                JobState::Cancelled => j.finished_at = Some(now - 7),
                JobState::Pending => {}
            }
            j
        })
        .collect()
}

fn as_json(j: &Job) -> serde_json::Value {
    serde_json::to_value(j).unwrap()
}

async fn run_migrate(
    src: &Arc<dyn Storage>,
    dst: &Arc<dyn Storage>,
    opts: Options,
    now: Millis,
) -> Result<Report, MigrateError> {
    migrate(&**src, Some(&**dst), &opts, now, &mut |_| {}).await
}

fn small_batches() -> Options {
    Options {
        batch: 7,
        ..Options::default()
    }
}

#[tokio::test]
async fn copies_every_state_with_ids_and_a_second_run_adds_nothing() {
    let clock = Arc::new(ManualClock::new());
    let now = clock.now_ms();
    let (src, dst) = (store(&clock), store(&clock));
    let jobs = mixed_jobs(100, now);
    assert_eq!(
        src.import_jobs(jobs.clone(), ImportEvents::None)
            .await
            .unwrap(),
        100
    );

    let mut seen = Vec::new();
    let report = migrate(&*src, Some(&*dst), &small_batches(), now, &mut |p| {
        seen.push(*p)
    })
    .await
    .unwrap();
    assert_eq!((report.read, report.copied, report.skipped), (100, 100, 0));
    assert!(report.counts_match());
    assert_eq!(report.source, report.destination);
    assert_eq!(report.source[&JobState::Completed], 14);
    assert_eq!(seen.len(), 15, "one progress call per page of 7");
    assert_eq!(seen.last().map(|p| (p.done, p.total)), Some((100, 100)));
    for want in &jobs {
        let got = dst.get(&want.id).await.unwrap().expect("copied");
        assert_eq!(as_json(&got), as_json(want), "job {}", want.id);
    }

    let again = run_migrate(&src, &dst, small_batches(), now).await.unwrap();
    assert_eq!((again.read, again.copied, again.skipped), (100, 0, 100));
    assert!(again.counts_match());
    let listed = dst
        .list(ListFilter {
            limit: 1000,
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.jobs.len(), 100, "no duplicates");
}

#[tokio::test]
async fn live_leases_are_refused_unless_forced() {
    let clock = Arc::new(ManualClock::new());
    let (src, dst) = (store(&clock), store(&clock));
    src.enqueue(NewJob::new("held", raw("{}"))).await.unwrap();
    let claimed = src
        .claim(ClaimRequest {
            types: vec!["held".into()],
            limit: 1,
            lease: Duration::from_secs(30),
            worker: "w".into(),
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let now = clock.now_ms();

    let err = run_migrate(&src, &dst, Options::default(), now)
        .await
        .unwrap_err();
    match &err {
        MigrateError::LiveLeases { count: 1, until } => assert_eq!(*until, now + 30_000),
        other => panic!("want LiveLeases, got {other:?}"),
    }
    let text = err.to_string();
    for hint in [
        "stop the daemons",
        "wait until the leases expire",
        "--force",
    ] {
        assert!(text.contains(hint), "{text}");
    }
    assert!(dst.get(&claimed[0].job.id).await.unwrap().is_none());

    // Once the lease has run out, no force is needed.
    let later = now + 30_001;
    let report = run_migrate(&src, &dst, Options::default(), later)
        .await
        .unwrap();
    assert_eq!((report.copied, report.live_leases), (1, 0));

    let forced_dst = store(&clock);
    let forced = Options {
        force: true,
        ..Options::default()
    };
    let report = run_migrate(&src, &forced_dst, forced, now).await.unwrap();
    assert_eq!((report.copied, report.live_leases), (1, 1));
    let copy = forced_dst.get(&claimed[0].job.id).await.unwrap().unwrap();
    assert_eq!(copy.status, JobState::Running);
    assert!(
        copy.lease_expires_at.is_some_and(|t| t <= now),
        "a copied running job's lease has run out, so the destination reaps it"
    );
}

#[tokio::test]
async fn dry_run_counts_and_writes_nothing() {
    let clock = Arc::new(ManualClock::new());
    let now = clock.now_ms();
    let (src, dst) = (store(&clock), store(&clock));
    let jobs = mixed_jobs(30, now);
    src.import_jobs(jobs.clone(), ImportEvents::None)
        .await
        .unwrap();
    dst.import_jobs(jobs[..10].to_vec(), ImportEvents::None)
        .await
        .unwrap();
    let dry = Options {
        dry_run: true,
        ..small_batches()
    };
    let report = run_migrate(&src, &dst, dry.clone(), now).await.unwrap();
    assert_eq!((report.read, report.copied, report.skipped), (30, 20, 10));
    assert!(report.destination.is_empty());
    assert_eq!(report.source.values().sum::<u64>(), 30);
    for j in &jobs[10..] {
        assert!(dst.get(&j.id).await.unwrap().is_none(), "dry run wrote");
    }
    // Without a destination at all (a SQLite file that does not exist yet).
    let report = migrate(&*src, None, &dry, now, &mut |_| {}).await.unwrap();
    assert_eq!((report.read, report.copied), (30, 30));
    let text = render(&report, "a", "b");
    assert!(text.starts_with("dry run: read 30 jobs"), "{text}");
}

#[tokio::test]
async fn count_check_names_jobs_the_destination_holds_in_another_state() {
    let clock = Arc::new(ManualClock::new());
    let now = clock.now_ms();
    let (src, dst) = (store(&clock), store(&clock));
    let jobs = mixed_jobs(14, now);
    src.import_jobs(jobs.clone(), ImportEvents::None)
        .await
        .unwrap();
    // The destination already has job 1 (pending in the source) as cancelled.
    let pending = jobs.iter().find(|j| j.status == JobState::Pending).unwrap();
    let mut moved_on = pending.clone();
    moved_on.status = JobState::Cancelled;
    moved_on.finished_at = Some(now);
    dst.import_jobs(vec![moved_on], ImportEvents::None)
        .await
        .unwrap();

    let err = run_migrate(&src, &dst, small_batches(), now)
        .await
        .unwrap_err();
    let MigrateError::Mismatch(report) = &err else {
        panic!("want Mismatch, got {err:?}");
    };
    assert_eq!(
        (report.copied, report.differing, report.missing),
        (13, 1, 0)
    );
    let text = err.to_string();
    assert!(
        text.contains("pending: 2 in the source, 1 in the destination"),
        "{text}"
    );
    assert!(text.contains(&pending.id), "{text}");
    assert!(render(report, "a", "b").contains("count check: FAILED"));
}

#[tokio::test]
async fn count_check_names_live_jobs_skipped_for_a_unique_key() {
    let clock = Arc::new(ManualClock::new());
    let now = clock.now_ms();
    let (src, dst) = (store(&clock), store(&clock));
    let mut new = NewJob::new("uniq", raw("{}"));
    new.unique_key = Some("only-one".into());
    let ours = src.enqueue(new.clone()).await.unwrap().job;
    new.id = crate::job::new_job_id();
    dst.enqueue(new).await.unwrap();

    let err = run_migrate(&src, &dst, Options::default(), now)
        .await
        .unwrap_err();
    let MigrateError::Mismatch(report) = &err else {
        panic!("want Mismatch, got {err:?}");
    };
    assert_eq!((report.missing, report.copied), (1, 0));
    let text = err.to_string();
    assert!(
        text.contains(&ours.id) && text.contains("unique key"),
        "{text}"
    );
}

#[test]
fn same_storage_is_detected_under_two_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.db");
    std::fs::write(&file, b"").unwrap();
    let a = format!("sqlite://{}", file.display());
    let b = format!("sqlite://{}/./a.db", dir.path().display());
    assert!(same_storage(&a, &b));
    assert!(!same_storage(&a, "redis://127.0.0.1:1"));
    assert_eq!(sqlite_path("SQLITE://x.db"), Some("x.db"));
}
