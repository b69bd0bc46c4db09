//! Conformance cases: claim order and filters, leases (renew, expiry, reaping), fencing of
//! late results, release, progress, and many claimers at once.

use super::*;
use crate::job::{JobState, ManualClock, Progress};
use crate::storage::{LeaseStatus, Settled};
use std::collections::HashSet;

pub async fn claim_orders_by_priority_then_ready_time_then_id(s: Backend, clock: Arc<ManualClock>) {
    // Same ready time: priority, then id (creation order).
    let mut ids = Vec::new();
    for priority in [5, 1, 5, 10, 1] {
        ids.push(
            enqueue(
                &s,
                NewJob {
                    priority,
                    ..job("order")
                },
            )
            .await
            .id,
        );
    }
    let got: Vec<String> = claim(&s, &["order"], 10)
        .await
        .into_iter()
        .map(|c| c.job.id)
        .collect();
    assert_eq!(
        got,
        [
            ids[1].as_str(),
            ids[4].as_str(),
            ids[0].as_str(),
            ids[2].as_str(),
            ids[3].as_str()
        ]
    );

    // Ready time beats id: `a` is older but became ready after `b`.
    let t0 = clock.now_ms();
    let a = enqueue(
        &s,
        NewJob {
            run_at: Some(t0 + 5_000),
            ..job("order-ready")
        },
    )
    .await;
    clock.advance(secs(1));
    let b = enqueue(&s, job("order-ready")).await;
    clock.advance(secs(10));
    assert_eq!(s.promote_due().await.unwrap(), 1);
    let c = enqueue(&s, job("order-ready")).await;
    let got: Vec<String> = claim(&s, &["order-ready"], 10)
        .await
        .into_iter()
        .map(|c| c.job.id)
        .collect();
    assert_eq!(got, [b.id, a.id, c.id]);
}

pub async fn claim_takes_only_the_requested_types_up_to_the_limit(
    s: Backend,
    _clock: Arc<ManualClock>,
) {
    let a1 = enqueue(
        &s,
        NewJob {
            priority: 3,
            ..job("type-a")
        },
    )
    .await;
    let b1 = enqueue(
        &s,
        NewJob {
            priority: 1,
            ..job("type-b")
        },
    )
    .await;
    let a2 = enqueue(
        &s,
        NewJob {
            priority: 2,
            ..job("type-a")
        },
    )
    .await;
    enqueue(&s, job("type-c")).await;
    assert!(claim(&s, &[], 10).await.is_empty());
    assert!(claim(&s, &["type-a"], 0).await.is_empty());
    assert!(claim(&s, &["type-unknown"], 10).await.is_empty());
    // Across types, still in priority order, and only `limit` of them.
    let got: Vec<String> = claim(&s, &["type-a", "type-b"], 2)
        .await
        .into_iter()
        .map(|c| c.job.id)
        .collect();
    assert_eq!(got, [b1.id.as_str(), a2.id.as_str()]);
    let got: Vec<String> = claim(&s, &["type-b", "type-a"], 5)
        .await
        .into_iter()
        .map(|c| c.job.id)
        .collect();
    assert_eq!(got, [a1.id.as_str()]);
    assert_eq!(claim(&s, &["type-c"], 5).await.len(), 1);
}

pub async fn a_type_named_twice_in_one_claim_counts_once(s: Backend, _clock: Arc<ManualClock>) {
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(enqueue(&s, job("twice")).await.id);
    }
    let got: Vec<String> = claim(&s, &["twice", "twice", "twice"], 2)
        .await
        .into_iter()
        .map(|c| c.job.id)
        .collect();
    assert_eq!(got, ids[..2]);
    // The rest are still ready, in order: none was dropped from the index as taken.
    let got: Vec<String> = claim(&s, &["twice", "twice"], 10)
        .await
        .into_iter()
        .map(|c| c.job.id)
        .collect();
    assert_eq!(got, ids[2..]);
}

pub async fn claim_skips_jobs_that_are_not_pending(s: Backend, clock: Arc<ManualClock>) {
    let now = clock.now_ms();
    enqueue(
        &s,
        NewJob {
            run_at: Some(now + 60_000),
            ..job("skip")
        },
    )
    .await;
    let r = enqueue(&s, job("skip")).await;
    let c = claim_one(&s, "skip").await;
    assert_eq!(c.job.id, r.id);
    s.fail(vec![failure(&c, Some(now + 60_000))]).await.unwrap();
    enqueue(&s, job("skip")).await;
    let running = claim_one(&s, "skip").await;
    enqueue(&s, job("skip")).await;
    let done = claim_one(&s, "skip").await;
    s.complete(vec![completion(&done)]).await.unwrap();
    // Scheduled, retrying, running and completed: nothing to claim.
    assert!(claim(&s, &["skip"], 10).await.is_empty());
    assert_eq!(get(&s, &running.job.id).await.status, JobState::Running);
}

pub async fn claim_starts_an_attempt_under_a_fresh_lease(s: Backend, clock: Arc<ManualClock>) {
    let now = clock.now_ms();
    let j = enqueue(&s, job("lease")).await;
    let c = claim_one(&s, "lease").await;
    assert!(!c.lease.0.is_empty());
    for got in [c.job.clone(), get(&s, &j.id).await] {
        assert_eq!((got.status, got.attempt), (JobState::Running, 1));
        assert_eq!(got.started_at, Some(now));
        assert_eq!(got.lease_expires_at, Some(now + 30_000));
        assert_eq!(value(&got.payload), serde_json::json!({"n": 1}));
    }
    assert!(claim(&s, &["lease"], 1).await.is_empty());
    // The next attempt gets another token.
    s.fail(vec![failure(&c, Some(now))]).await.unwrap();
    s.promote_due().await.unwrap();
    let again = claim_one(&s, "lease").await;
    assert_eq!(again.job.attempt, 2);
    assert_ne!(again.lease, c.lease);
}

pub async fn renewed_lease_outlives_its_first_expiry(s: Backend, clock: Arc<ManualClock>) {
    enqueue(&s, job("renew")).await;
    let c = claim_one(&s, "renew").await;
    clock.advance(secs(20));
    let renewed = s
        .renew_leases(&[(c.job.id.clone(), c.lease.clone())], LEASE)
        .await
        .unwrap();
    assert_eq!(renewed, [LeaseStatus::Held]);
    clock.advance(secs(20));
    assert_eq!(s.reap_expired().await.unwrap(), Default::default());
    let j = get(&s, &c.job.id).await;
    assert_eq!(j.status, JobState::Running);
    assert_eq!(j.lease_expires_at, Some(clock.now_ms() + 10_000));
    // Unknown ids are lost leases, answered in order.
    let mixed = [
        ("nope".to_owned(), c.lease.clone()),
        (c.job.id.clone(), c.lease.clone()),
    ];
    let renewed = s.renew_leases(&mixed, LEASE).await.unwrap();
    assert_eq!(renewed, [LeaseStatus::Lost, LeaseStatus::Held]);
    assert!(s.renew_leases(&[], LEASE).await.unwrap().is_empty());
}

pub async fn expired_leases_are_reaped_counting_attempts(s: Backend, clock: Arc<ManualClock>) {
    let j = enqueue(
        &s,
        NewJob {
            max_attempts: 3,
            ..job("reap")
        },
    )
    .await;
    for attempt in 1..=3u32 {
        let c = claim_one(&s, "reap").await;
        assert_eq!(c.job.attempt, attempt);
        clock.advance(secs(29));
        assert_eq!(
            s.reap_expired().await.unwrap(),
            Default::default(),
            "not expired yet"
        );
        clock.advance(secs(1));
        let reaped = s.reap_expired().await.unwrap();
        let got = get(&s, &j.id).await;
        assert!(
            got.error.as_deref().unwrap_or("").contains("lease expired"),
            "{:?}",
            got.error
        );
        assert_eq!(got.lease_expires_at, None);
        if attempt < 3 {
            assert_eq!((reaped.requeued, reaped.failed), (1, 0));
            assert_eq!(
                (got.status, got.attempt, got.run_at),
                (JobState::Pending, attempt, clock.now_ms())
            );
        } else {
            assert_eq!((reaped.requeued, reaped.failed), (0, 1));
            assert_eq!((got.status, got.attempt), (JobState::Failed, 3));
            assert_eq!(got.finished_at, Some(clock.now_ms()));
        }
    }
    assert!(claim(&s, &["reap"], 1).await.is_empty());
}

pub async fn late_results_are_fenced_after_reap_and_reclaim(s: Backend, clock: Arc<ManualClock>) {
    let j = enqueue(&s, job("fence")).await;
    let old = claim_one(&s, "fence").await;
    clock.advance(secs(31));
    assert_eq!(s.reap_expired().await.unwrap().requeued, 1);
    let new = claim_one(&s, "fence").await;
    assert_eq!(new.job.attempt, 2);
    let old_lease = [(old.job.id.clone(), old.lease.clone())];

    assert_eq!(
        s.complete(vec![completion(&old)]).await.unwrap(),
        [Settled::LeaseLost]
    );
    assert_eq!(
        s.fail(vec![failure(&old, None)]).await.unwrap(),
        [Settled::LeaseLost]
    );
    assert!(
        !s.set_progress(&j.id, &old.lease, Progress::new(10, None))
            .await
            .unwrap()
    );
    assert_eq!(
        s.renew_leases(&old_lease, LEASE).await.unwrap(),
        [LeaseStatus::Lost]
    );
    assert_eq!(s.release(&old_lease).await.unwrap(), 0);
    let got = get(&s, &j.id).await;
    assert_eq!(
        (got.status, got.attempt, got.progress),
        (JobState::Running, 2, None)
    );
    assert!(got.result.is_none());

    // The current holder is unaffected, and a finished job fences everyone.
    let done = s.complete(vec![completion(&new)]).await.unwrap();
    assert_eq!(done, [Settled::Moved(JobState::Completed)]);
    assert_eq!(
        s.complete(vec![completion(&new)]).await.unwrap(),
        [Settled::LeaseLost]
    );
    assert_eq!(
        s.fail(vec![failure(&new, None)]).await.unwrap(),
        [Settled::LeaseLost]
    );
    assert_eq!(get(&s, j.id.as_str()).await.status, JobState::Completed);
}

pub async fn release_returns_jobs_without_counting_the_attempt(
    s: Backend,
    _clock: Arc<ManualClock>,
) {
    let a = enqueue(&s, job("release")).await;
    let b = enqueue(&s, job("release")).await;
    let first = claim_one(&s, "release").await;
    assert_eq!(first.job.id, a.id);
    let lease = [(first.job.id.clone(), first.lease.clone())];
    assert_eq!(s.release(&lease).await.unwrap(), 1);
    assert_eq!(
        s.release(&lease).await.unwrap(),
        0,
        "a released lease is gone"
    );
    let got = get(&s, &a.id).await;
    assert_eq!(
        (got.status, got.attempt, got.lease_expires_at),
        (JobState::Pending, 0, None)
    );
    // It keeps its place at the front.
    let order: Vec<String> = claim(&s, &["release"], 5)
        .await
        .into_iter()
        .map(|c| c.job.id)
        .collect();
    assert_eq!(order, [a.id.clone(), b.id.clone()]);
    assert_eq!(get(&s, a.id.as_str()).await.attempt, 1);
}

pub async fn progress_is_recorded_for_the_lease_holder_only(s: Backend, _clock: Arc<ManualClock>) {
    enqueue(&s, job("progress")).await;
    let c = claim_one(&s, "progress").await;
    let id = &c.job.id;
    assert!(
        s.set_progress(id, &c.lease, Progress::new(50, Some("half".into())))
            .await
            .unwrap()
    );
    let p = get(&s, id).await.progress.unwrap();
    assert_eq!((p.percent, p.message.as_deref()), (50, Some("half")));
    assert!(
        s.set_progress(id, &c.lease, Progress::new(150, None))
            .await
            .unwrap()
    );
    assert_eq!(get(&s, id).await.progress.unwrap().percent, 100, "clamped");
    let stranger = crate::job::new_lease_token();
    assert!(
        !s.set_progress(id, &stranger, Progress::new(70, None))
            .await
            .unwrap()
    );
    assert!(
        !s.set_progress("nope", &c.lease, Progress::new(70, None))
            .await
            .unwrap()
    );
    s.complete(vec![completion(&c)]).await.unwrap();
    assert!(
        !s.set_progress(id, &c.lease, Progress::new(70, None))
            .await
            .unwrap()
    );
}

pub async fn many_claimers_take_each_job_exactly_once(s: Backend, _clock: Arc<ManualClock>) {
    const JOBS: usize = 10_000;
    const CLAIMERS: usize = 16;
    for _ in 0..JOBS / 500 {
        let batch: Vec<NewJob> = (0..500).map(|_| job("swarm")).collect();
        s.enqueue_batch(batch).await.unwrap();
    }
    let mut tasks = Vec::new();
    for worker in 0..CLAIMERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let req = ClaimRequest {
                    worker: format!("w{worker}"),
                    ..claim_request(&["swarm"], 25)
                };
                let claimed = s.claim(req).await.unwrap();
                if claimed.is_empty() {
                    return seen;
                }
                let done: Vec<Completion> = claimed.iter().map(completion).collect();
                let settled = s.complete(done).await.unwrap();
                assert!(
                    settled
                        .iter()
                        .all(|s| *s == Settled::Moved(JobState::Completed))
                );
                seen.extend(claimed.into_iter().map(|c| c.job.id));
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), JOBS, "claimed {} times in all", all.len());
    assert_eq!(unique.len(), JOBS);
    let stats = s.stats().await.unwrap();
    assert_eq!(
        stats.types["swarm"].counts[&JobState::Completed],
        JOBS as u64
    );
}
