//! Conformance cases: the retention sweep (by age, by count per type, per-type overrides)
//! never touches live jobs.

use super::*;
use crate::job::{JobState, ManualClock};
use crate::storage::{Retention, RetentionPolicy, TypeRetention};

/// Enqueues, claims and finishes one job of `job_type` in `state`; returns its id.
async fn finished(s: &Backend, job_type: &str, state: JobState) -> String {
    let j = enqueue(s, job(job_type)).await;
    let c = claim(s, &[job_type], 1).await.remove(0);
    assert_eq!(c.job.id, j.id);
    match state {
        JobState::Completed => {
            s.complete(vec![completion(&c)]).await.unwrap();
        }
        JobState::Failed => {
            s.fail(vec![failure(&c, None)]).await.unwrap();
        }
        _ => {
            s.cancel(&j.id).await.unwrap();
            s.release(&[(c.job.id.clone(), c.lease.clone())])
                .await
                .unwrap();
        }
    }
    assert_eq!(get(s, &j.id).await.status, state);
    j.id
}

async fn exists(s: &Backend, id: &str) -> bool {
    s.get(id).await.unwrap().is_some()
}

fn keep(max_age_secs: Option<u64>, max_count: Option<u64>) -> Retention {
    Retention {
        max_age: max_age_secs.map(secs),
        max_count,
    }
}

pub async fn retention_sweeps_finished_jobs_by_age(s: Backend, clock: Arc<ManualClock>) {
    let completed = finished(&s, "ret-age", JobState::Completed).await;
    let failed = finished(&s, "ret-age", JobState::Failed).await;
    let cancelled = finished(&s, "ret-age", JobState::Cancelled).await;
    let pending = enqueue(&s, job("ret-age-live")).await.id;
    let policy = RetentionPolicy::default();
    clock.advance(secs(23 * 3600));
    assert_eq!(s.sweep_retention(&policy).await.unwrap(), 0);
    clock.advance(secs(3600));
    // Completed and cancelled are kept 24 h by default, failed 7 days.
    assert_eq!(s.sweep_retention(&policy).await.unwrap(), 2);
    assert!(!exists(&s, &completed).await && !exists(&s, &cancelled).await);
    assert!(exists(&s, &failed).await && exists(&s, &pending).await);
    clock.advance(secs(6 * 24 * 3600));
    assert_eq!(s.sweep_retention(&policy).await.unwrap(), 1);
    assert!(!exists(&s, &failed).await && exists(&s, &pending).await);
}

pub async fn retention_keeps_the_newest_per_type(s: Backend, clock: Arc<ManualClock>) {
    let mut a = Vec::new();
    for _ in 0..5 {
        a.push(finished(&s, "ret-count-a", JobState::Completed).await);
        clock.advance(secs(1));
    }
    let b: Vec<String> = [
        finished(&s, "ret-count-b", JobState::Completed).await,
        finished(&s, "ret-count-b", JobState::Completed).await,
    ]
    .into();
    let failed = finished(&s, "ret-count-a", JobState::Failed).await;
    let policy = RetentionPolicy {
        completed: keep(None, Some(3)),
        failed: keep(None, Some(1)),
        ..RetentionPolicy::default()
    };
    assert_eq!(s.sweep_retention(&policy).await.unwrap(), 2);
    for (i, id) in a.iter().enumerate() {
        assert_eq!(exists(&s, id).await, i >= 2, "job {i} of type a");
    }
    for id in b.iter().chain([&failed]) {
        assert!(exists(&s, id).await);
    }
    assert_eq!(s.sweep_retention(&policy).await.unwrap(), 0);
}

pub async fn retention_overrides_per_type(s: Backend, clock: Arc<ManualClock>) {
    let short = finished(&s, "ret-short", JobState::Completed).await;
    let normal = finished(&s, "ret-normal", JobState::Completed).await;
    let mut policy = RetentionPolicy::default();
    policy.per_type.insert(
        "ret-short".into(),
        TypeRetention {
            completed: keep(Some(3600), None),
            failed: keep(None, None),
            cancelled: keep(None, None),
        },
    );
    clock.advance(secs(2 * 3600));
    assert_eq!(s.sweep_retention(&policy).await.unwrap(), 1);
    assert!(!exists(&s, &short).await);
    assert!(exists(&s, &normal).await);
}

pub async fn retention_never_touches_live_jobs(s: Backend, clock: Arc<ManualClock>) {
    let now = clock.now_ms();
    let mut live = vec![enqueue(&s, job("ret-live")).await.id];
    live.push(
        enqueue(
            &s,
            NewJob {
                run_at: Some(now + 1_000),
                ..job("ret-live-s")
            },
        )
        .await
        .id,
    );
    enqueue(&s, job("ret-live-r")).await;
    let c = claim_one(&s, "ret-live-r").await;
    live.push(c.job.id.clone());
    enqueue(&s, job("ret-live-f")).await;
    let f = claim_one(&s, "ret-live-f").await;
    s.fail(vec![failure(&f, Some(now + 1_000_000_000))])
        .await
        .unwrap();
    live.push(f.job.id.clone());
    let done = finished(&s, "ret-live-done", JobState::Completed).await;
    clock.advance(secs(3650 * 24 * 3600));
    let nothing = keep(Some(0), Some(0));
    let policy = RetentionPolicy {
        completed: nothing,
        failed: nothing,
        cancelled: nothing,
        per_type: Default::default(),
    };
    assert_eq!(s.sweep_retention(&policy).await.unwrap(), 1);
    assert!(!exists(&s, &done).await);
    for id in &live {
        assert!(exists(&s, id).await, "{id}");
    }
}

/// The age counts from when a job finished, not from when it was created: a job created first
/// that finished last outlives its age from creation.
pub async fn retention_never_sweeps_a_job_before_its_age(s: Backend, clock: Arc<ManualClock>) {
    let early = enqueue(&s, job("ret-late")).await;
    let c_early = claim(&s, &["ret-late"], 1).await.remove(0);
    assert_eq!(c_early.job.id, early.id);
    clock.advance(secs(60));
    let late = finished(&s, "ret-late", JobState::Completed).await;
    clock.advance(secs(2 * 3600));
    // The job created first finishes two hours after the other.
    s.complete(vec![completion(&c_early)]).await.unwrap();
    let policy = RetentionPolicy {
        completed: keep(Some(3600), None),
        ..RetentionPolicy::default()
    };
    clock.advance(secs(1800));
    s.sweep_retention(&policy).await.unwrap();
    assert!(exists(&s, &early.id).await, "finished 30 min ago, kept 1 h");
    clock.advance(secs(1800));
    s.sweep_retention(&policy).await.unwrap();
    assert!(!exists(&s, &early.id).await && !exists(&s, &late).await);
}
