//! Conformance cases: how attempts end (complete with follow-ups, fail, retry, permanent
//! failure), scheduling, cancel in each state, replay and delete.

use super::*;
use crate::job::{JobState, ManualClock};
use crate::storage::{CancelOutcome, LeaseStatus, Settled};

pub async fn completion_records_result_logs_and_version(s: Backend, clock: Arc<ManualClock>) {
    enqueue(&s, job("complete")).await;
    let c = claim_one(&s, "complete").await;
    clock.advance(secs(2));
    let logs: Vec<String> = (0..250).map(|i| format!("line {i}")).collect();
    let done = Completion {
        result: json(r#"{"ok":1,"list":[1,2]}"#),
        logs,
        plugin_version: Some("v7".into()),
        ..completion(&c)
    };
    assert_eq!(
        s.complete(vec![done]).await.unwrap(),
        [Settled::Moved(JobState::Completed)]
    );
    let j = get(&s, &c.job.id).await;
    assert_eq!((j.status, j.attempt), (JobState::Completed, 1));
    assert_eq!(j.finished_at, Some(clock.now_ms()));
    assert_eq!(
        value(j.result.as_deref().unwrap()),
        serde_json::json!({"ok": 1, "list": [1, 2]})
    );
    assert_eq!(j.logs.len(), crate::job::MAX_LOG_LINES);
    assert_eq!(
        (j.logs[0].as_str(), j.logs[199].as_str()),
        ("line 50", "line 249")
    );
    assert_eq!(j.plugin_version.as_deref(), Some("v7"));
    assert_eq!(j.lease_expires_at, None);
    assert!(s.complete(vec![]).await.unwrap().is_empty());
}

pub async fn completion_commits_followups_with_it(s: Backend, _clock: Arc<ManualClock>) {
    enqueue(&s, job("parent")).await;
    let c = claim_one(&s, "parent").await;
    let f1 = job("child");
    let f2 = NewJob {
        unique_key: Some("child-key".into()),
        priority: 1,
        ..job("child")
    };
    let done = Completion {
        followups: vec![f1.clone(), f2.clone()],
        ..completion(&c)
    };
    assert_eq!(
        s.complete(vec![done]).await.unwrap(),
        [Settled::Moved(JobState::Completed)]
    );
    assert_eq!(get(&s, &f1.id).await.status, JobState::Pending);
    assert_eq!(get(&s, &f2.id).await.priority, 1);

    // A late completion commits none of its follow-ups.
    enqueue(&s, job("parent")).await;
    let c = claim_one(&s, "parent").await;
    s.release(&[(c.job.id.clone(), c.lease.clone())])
        .await
        .unwrap();
    let f3 = job("child");
    let late = Completion {
        followups: vec![f3.clone()],
        ..completion(&c)
    };
    assert_eq!(s.complete(vec![late]).await.unwrap(), [Settled::LeaseLost]);
    assert!(s.get(&f3.id).await.unwrap().is_none());
}

pub async fn invalid_followup_refuses_the_completion(s: Backend, _clock: Arc<ManualClock>) {
    enqueue(&s, job("parent-bad")).await;
    let c = claim_one(&s, "parent-bad").await;
    let good = job("child-ok");
    let bad = NewJob {
        max_attempts: 0,
        ..job("child-bad")
    };
    let done = Completion {
        followups: vec![good.clone(), bad],
        ..completion(&c)
    };
    assert_invalid(
        s.complete(vec![done]).await,
        "max_attempts must be at least 1",
    );
    assert_eq!(get(&s, &c.job.id).await.status, JobState::Running);
    assert!(s.get(&good.id).await.unwrap().is_none());
}

pub async fn failed_attempt_retries_after_promotion(s: Backend, clock: Arc<ManualClock>) {
    enqueue(&s, job("retry")).await;
    let c = claim_one(&s, "retry").await;
    let at = clock.now_ms() + 10_000;
    assert_eq!(
        s.fail(vec![failure(&c, Some(at))]).await.unwrap(),
        [Settled::Moved(JobState::Retrying)]
    );
    let j = get(&s, &c.job.id).await;
    assert_eq!((j.status, j.run_at, j.attempt), (JobState::Retrying, at, 1));
    assert_eq!(
        (j.error.as_deref(), j.finished_at, j.lease_expires_at),
        (Some("boom"), None, None)
    );
    assert_eq!(j.logs, ["trying"]);
    assert!(claim(&s, &["retry"], 1).await.is_empty());
    clock.advance(secs(9));
    assert_eq!(s.promote_due().await.unwrap(), 0);
    clock.advance(secs(1));
    assert_eq!(s.promote_due().await.unwrap(), 1);
    assert_eq!(get(&s, &c.job.id).await.status, JobState::Pending);
    assert_eq!(claim_one(&s, "retry").await.job.attempt, 2);
}

pub async fn failure_on_the_last_attempt_is_final(s: Backend, clock: Arc<ManualClock>) {
    enqueue(
        &s,
        NewJob {
            max_attempts: 2,
            ..job("last")
        },
    )
    .await;
    let c = claim_one(&s, "last").await;
    s.fail(vec![failure(&c, Some(clock.now_ms()))])
        .await
        .unwrap();
    s.promote_due().await.unwrap();
    let c = claim_one(&s, "last").await;
    clock.advance(secs(1));
    let settled = s
        .fail(vec![failure(&c, Some(clock.now_ms() + 1_000))])
        .await
        .unwrap();
    assert_eq!(settled, [Settled::Moved(JobState::Failed)]);
    let j = get(&s, &c.job.id).await;
    assert_eq!(
        (j.status, j.attempt, j.finished_at),
        (JobState::Failed, 2, Some(clock.now_ms()))
    );
    assert_eq!(j.error.as_deref(), Some("boom"));
}

pub async fn permanent_failure_skips_retries(s: Backend, _clock: Arc<ManualClock>) {
    enqueue(&s, job("permanent")).await;
    let c = claim_one(&s, "permanent").await;
    assert_eq!(
        s.fail(vec![failure(&c, None)]).await.unwrap(),
        [Settled::Moved(JobState::Failed)]
    );
    let j = get(&s, &c.job.id).await;
    assert_eq!(
        (j.status, j.attempt, j.max_attempts),
        (JobState::Failed, 1, 4)
    );
    assert!(s.fail(vec![]).await.unwrap().is_empty());
}

pub async fn scheduled_jobs_become_pending_when_due(s: Backend, clock: Arc<ManualClock>) {
    let at = clock.now_ms() + 60_000;
    let j = enqueue(
        &s,
        NewJob {
            run_at: Some(at),
            ..job("sched")
        },
    )
    .await;
    assert_eq!(s.promote_due().await.unwrap(), 0);
    clock.advance(secs(59));
    assert_eq!(s.promote_due().await.unwrap(), 0);
    assert!(claim(&s, &["sched"], 1).await.is_empty());
    clock.advance(secs(1));
    assert_eq!(s.promote_due().await.unwrap(), 1);
    let got = get(&s, &j.id).await;
    assert_eq!((got.status, got.run_at), (JobState::Pending, at));
    assert_eq!(claim_one(&s, "sched").await.job.id, j.id);
}

pub async fn cancel_acts_on_each_state(s: Backend, clock: Arc<ManualClock>) {
    let now = clock.now_ms();
    let scheduled = enqueue(
        &s,
        NewJob {
            run_at: Some(now + 60_000),
            ..job("cancel")
        },
    )
    .await;
    let retrying = enqueue(&s, job("cancel")).await;
    let c = claim_one(&s, "cancel").await;
    s.fail(vec![failure(&c, Some(now + 60_000))]).await.unwrap();
    let running = enqueue(&s, job("cancel")).await;
    let held = claim_one(&s, "cancel").await;
    let pending = enqueue(&s, job("cancel")).await;

    for j in [&scheduled, &retrying, &pending] {
        match s.cancel(&j.id).await.unwrap() {
            CancelOutcome::Cancelled(got) => {
                assert_eq!(
                    (got.status, got.finished_at),
                    (JobState::Cancelled, Some(now))
                );
            }
            other => panic!("{}: {other:?}", j.id),
        }
        assert_eq!(get(&s, &j.id).await.status, JobState::Cancelled);
    }
    assert_eq!(s.promote_due().await.unwrap(), 0);
    assert!(claim(&s, &["cancel"], 10).await.is_empty());

    match s.cancel(&running.id).await.unwrap() {
        CancelOutcome::Requested(got) => {
            assert!(got.cancel_requested && got.status == JobState::Running)
        }
        other => panic!("{other:?}"),
    }
    let lease = [(held.job.id.clone(), held.lease.clone())];
    assert_eq!(
        s.renew_leases(&lease, LEASE).await.unwrap(),
        [LeaseStatus::CancelRequested]
    );
    assert!(matches!(
        s.cancel(&running.id).await.unwrap(),
        CancelOutcome::Requested(_)
    ));
    // The worker stops it; the failed attempt ends the job as cancelled, not retried.
    let settled = s
        .fail(vec![failure(&held, Some(now + 1_000))])
        .await
        .unwrap();
    assert_eq!(settled, [Settled::Moved(JobState::Cancelled)]);
    assert_eq!(get(&s, &running.id).await.finished_at, Some(now));

    match s.cancel(&running.id).await.unwrap() {
        CancelOutcome::AlreadyFinished(got) => assert_eq!(got.status, JobState::Cancelled),
        other => panic!("{other:?}"),
    }
    enqueue(&s, job("cancel-done")).await;
    let c = claim_one(&s, "cancel-done").await;
    s.complete(vec![completion(&c)]).await.unwrap();
    assert!(matches!(
        s.cancel(&c.job.id).await.unwrap(),
        CancelOutcome::AlreadyFinished(_)
    ));
    enqueue(&s, job("cancel-done")).await;
    let c = claim_one(&s, "cancel-done").await;
    s.fail(vec![failure(&c, None)]).await.unwrap();
    assert!(matches!(
        s.cancel(&c.job.id).await.unwrap(),
        CancelOutcome::AlreadyFinished(_)
    ));
    assert!(matches!(
        s.cancel("nope").await.unwrap(),
        CancelOutcome::NotFound
    ));
}

pub async fn cancel_requested_job_ends_cancelled_unless_it_completes(
    s: Backend,
    clock: Arc<ManualClock>,
) {
    for _ in 0..3 {
        enqueue(&s, job("cancel-end")).await;
    }
    let held = claim(&s, &["cancel-end"], 3).await;
    for c in &held {
        assert!(matches!(
            s.cancel(&c.job.id).await.unwrap(),
            CancelOutcome::Requested(_)
        ));
    }
    // Released: cancelled, not back to pending.
    assert_eq!(
        s.release(&[(held[0].job.id.clone(), held[0].lease.clone())])
            .await
            .unwrap(),
        1
    );
    assert_eq!(get(&s, &held[0].job.id).await.status, JobState::Cancelled);
    // Completed before it could stop: the result stands.
    let done = s.complete(vec![completion(&held[1])]).await.unwrap();
    assert_eq!(done, [Settled::Moved(JobState::Completed)]);
    // Lease expired: cancelled, and not counted as a failure.
    clock.advance(secs(31));
    let reaped = s.reap_expired().await.unwrap();
    assert_eq!((reaped.requeued, reaped.failed), (0, 0));
    let j = get(&s, &held[2].job.id).await;
    assert_eq!(
        (j.status, j.finished_at),
        (JobState::Cancelled, Some(clock.now_ms()))
    );
    assert!(claim(&s, &["cancel-end"], 3).await.is_empty());
}

pub async fn replay_puts_failed_and_cancelled_jobs_back(s: Backend, clock: Arc<ManualClock>) {
    enqueue(&s, job("replay")).await;
    let c = claim_one(&s, "replay").await;
    s.fail(vec![failure(&c, None)]).await.unwrap();
    clock.advance(secs(5));
    let j = s.replay(&c.job.id).await.unwrap().expect("exists");
    assert_eq!(
        (j.status, j.attempt, j.run_at),
        (JobState::Pending, 0, clock.now_ms())
    );
    assert_eq!(
        (j.finished_at, j.started_at, j.lease_expires_at),
        (None, None, None)
    );
    assert_eq!(get(&s, &j.id).await.status, JobState::Pending);
    let again = claim_one(&s, "replay").await;
    assert_eq!(
        (again.job.id.as_str(), again.job.attempt),
        (j.id.as_str(), 1)
    );

    let cancelled = enqueue(&s, job("replay")).await;
    s.cancel(&cancelled.id).await.unwrap();
    let back = s.replay(&cancelled.id).await.unwrap().expect("exists");
    assert_eq!(back.status, JobState::Pending);

    s.complete(vec![completion(&again)]).await.unwrap();
    assert_invalid(
        s.replay(&again.job.id).await,
        "only failed or cancelled jobs can be replayed",
    );
    assert_invalid(s.replay(&cancelled.id).await, "is pending");
    assert!(s.replay("nope").await.unwrap().is_none());
}

pub async fn replay_refuses_while_another_job_holds_the_unique_key(
    s: Backend,
    _clock: Arc<ManualClock>,
) {
    let keyed = || NewJob {
        unique_key: Some("replay-key".into()),
        ..job("replay-uniq")
    };
    let first = enqueue(&s, keyed()).await;
    let c = claim_one(&s, "replay-uniq").await;
    s.fail(vec![failure(&c, None)]).await.unwrap();
    let second = enqueue(&s, keyed()).await;
    assert_invalid(
        s.replay(&first.id).await,
        &format!("live job `{}` holds", second.id),
    );
    assert_eq!(get(&s, &first.id).await.status, JobState::Failed);
    s.cancel(&second.id).await.unwrap();
    assert_eq!(
        s.replay(&first.id).await.unwrap().unwrap().status,
        JobState::Pending
    );
}

pub async fn delete_removes_a_job_in_any_state(s: Backend, _clock: Arc<ManualClock>) {
    let pending = enqueue(
        &s,
        NewJob {
            unique_key: Some("del-key".into()),
            ..job("delete")
        },
    )
    .await;
    assert!(s.delete(&pending.id).await.unwrap());
    assert!(s.get(&pending.id).await.unwrap().is_none());
    assert!(!s.delete(&pending.id).await.unwrap());
    // Its unique key is free again.
    enqueue(
        &s,
        NewJob {
            unique_key: Some("del-key".into()),
            ..job("delete")
        },
    )
    .await;
    // A running job's worker loses its lease.
    let c = claim_one(&s, "delete").await;
    assert!(s.delete(&c.job.id).await.unwrap());
    let lease = [(c.job.id.clone(), c.lease.clone())];
    assert_eq!(
        s.renew_leases(&lease, LEASE).await.unwrap(),
        [LeaseStatus::Lost]
    );
    assert_eq!(
        s.complete(vec![completion(&c)]).await.unwrap(),
        [Settled::LeaseLost]
    );
    assert!(s.get(&c.job.id).await.unwrap().is_none());
}
