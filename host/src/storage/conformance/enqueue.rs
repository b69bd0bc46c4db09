//! Conformance cases: enqueue (single, batch, idempotent by id), validation, unique keys,
//! import.

use super::*;
use crate::job::DEFAULT_MAX_PAYLOAD_BYTES;
use crate::job::{self, JobState, ManualClock};
use crate::storage::{ImportEvents, ListFilter};

pub async fn enqueue_stores_a_pending_job_with_defaults(s: Backend, clock: Arc<ManualClock>) {
    let now = clock.now_ms();
    let new = NewJob {
        timeout_ms: Some(5_000),
        ..job("enq-defaults")
    };
    let id = new.id.clone();
    let out = s.enqueue(new).await.unwrap();
    assert!(out.created);
    let stored = get(&s, &id).await;
    assert_eq!(
        serde_json::to_value(&out.job).unwrap(),
        serde_json::to_value(&stored).unwrap(),
        "enqueue answers the job exactly as stored"
    );
    for j in [out.job, stored] {
        assert_eq!(j.id, id);
        assert_eq!(j.job_type, "enq-defaults");
        assert_eq!(value(&j.payload), serde_json::json!({"n": 1}));
        assert_eq!(
            (j.status, j.priority, j.attempt, j.max_attempts),
            (JobState::Pending, 5, 0, 4)
        );
        assert_eq!((j.run_at, j.created_at), (now, now));
        assert_eq!(
            (j.started_at, j.finished_at, j.lease_expires_at),
            (None, None, None)
        );
        assert_eq!(j.timeout_ms, Some(5_000));
        assert!(j.result.is_none() && j.error.is_none() && j.progress.is_none());
        assert!(j.logs.is_empty() && !j.cancel_requested);
    }
}

pub async fn enqueue_in_the_future_is_scheduled(s: Backend, clock: Arc<ManualClock>) {
    let now = clock.now_ms();
    let later = enqueue(
        &s,
        NewJob {
            run_at: Some(now + 60_000),
            ..job("enq-sched")
        },
    )
    .await;
    assert_eq!(
        (later.status, later.run_at),
        (JobState::Scheduled, now + 60_000)
    );
    let past = enqueue(
        &s,
        NewJob {
            run_at: Some(now - 60_000),
            ..job("enq-sched")
        },
    )
    .await;
    assert_eq!((past.status, past.run_at), (JobState::Pending, now));
}

pub async fn enqueue_is_idempotent_by_id(s: Backend, _clock: Arc<ManualClock>) {
    let first = job("enq-idem");
    let again = NewJob {
        priority: 1,
        ..first.clone()
    };
    let a = s.enqueue(first).await.unwrap();
    let b = s.enqueue(again).await.unwrap();
    assert!(a.created && !b.created);
    assert_eq!((b.job.id, b.job.priority), (a.job.id, 5));
    let page = s.list(ListFilter {
        job_type: Some("enq-idem".into()),
        ..Default::default()
    });
    assert_eq!(page.await.unwrap().jobs.len(), 1);
}

pub async fn invalid_jobs_are_refused_and_nothing_is_written(s: Backend, _clock: Arc<ManualClock>) {
    let big = format!("\"{}\"", "x".repeat(DEFAULT_MAX_PAYLOAD_BYTES));
    let size = big.len();
    assert_invalid(
        s.enqueue(NewJob {
            payload: json(&big),
            ..job("enq-bad")
        })
        .await,
        &format!("payload is {size} bytes, over the limit of {DEFAULT_MAX_PAYLOAD_BYTES} bytes"),
    );
    assert_invalid(
        s.enqueue(NewJob {
            priority: 0,
            ..job("enq-bad")
        })
        .await,
        "invalid priority",
    );
    assert_invalid(
        s.enqueue(NewJob {
            priority: 11,
            ..job("enq-bad")
        })
        .await,
        "invalid priority",
    );
    assert_invalid(
        s.enqueue(NewJob {
            max_attempts: 0,
            ..job("enq-bad")
        })
        .await,
        "max_attempts must be at least 1",
    );
    assert_invalid(s.enqueue(job("")).await, "job type must not be empty");
    assert_invalid(s.enqueue(job("no spaces")).await, "invalid job type");
    assert_invalid(
        s.enqueue(NewJob {
            unique_key: Some("k".repeat(600)),
            ..job("enq-bad")
        })
        .await,
        "unique key is 600 bytes",
    );
    // Text from outside is checked before it can become a job (payloads are `RawValue`s).
    let not_json = job::parse_payload("{not json", DEFAULT_MAX_PAYLOAD_BYTES).unwrap_err();
    assert!(
        not_json
            .to_string()
            .starts_with("payload is not valid JSON")
    );
    assert!(s.list(ListFilter::default()).await.unwrap().jobs.is_empty());
    assert!(s.stats().await.unwrap().types.is_empty());
    assert!(s.events_since(None, 10).await.unwrap().is_empty());
}

pub async fn batch_enqueue_is_all_or_nothing(s: Backend, _clock: Arc<ManualClock>) {
    let bad = NewJob {
        priority: 42,
        ..job("batch")
    };
    let refused = s.enqueue_batch(vec![job("batch"), job("batch"), bad]).await;
    assert_invalid(refused, "job 3 of 3");
    assert!(s.list(ListFilter::default()).await.unwrap().jobs.is_empty());

    let jobs = vec![
        job("batch"),
        NewJob {
            priority: 1,
            ..job("batch")
        },
        job("batch"),
    ];
    let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
    let out = s.enqueue_batch(jobs).await.unwrap();
    assert_eq!(
        out.iter().map(|e| e.job.id.clone()).collect::<Vec<_>>(),
        ids
    );
    assert!(
        out.iter()
            .all(|e| e.created && e.job.status == JobState::Pending)
    );
    assert_eq!(out[1].job.priority, 1);
    assert!(s.enqueue_batch(vec![]).await.unwrap().is_empty());
}

pub async fn batch_enqueue_returns_the_live_job_for_a_repeated_unique_key(
    s: Backend,
    _clock: Arc<ManualClock>,
) {
    let a = NewJob {
        unique_key: Some("batch-key".into()),
        ..job("batch-uniq")
    };
    let b = NewJob {
        unique_key: Some("batch-key".into()),
        ..job("batch-uniq")
    };
    let out = s.enqueue_batch(vec![a.clone(), b]).await.unwrap();
    assert!(out[0].created && !out[1].created);
    assert_eq!(out[1].job.id, a.id);
}

pub async fn unique_key_returns_the_live_job(s: Backend, _clock: Arc<ManualClock>) {
    let key = Some("uniq-live".to_owned());
    let first = enqueue(
        &s,
        NewJob {
            unique_key: key.clone(),
            ..job("uniq")
        },
    )
    .await;
    let dup = s
        .enqueue(NewJob {
            unique_key: key.clone(),
            ..job("uniq")
        })
        .await
        .unwrap();
    assert!(!dup.created);
    assert_eq!(dup.job.id, first.id);
    // Still held while running.
    claim_one(&s, "uniq").await;
    let dup = s
        .enqueue(NewJob {
            unique_key: key.clone(),
            ..job("uniq")
        })
        .await
        .unwrap();
    assert!(!dup.created);
    assert_eq!((dup.job.id, dup.job.status), (first.id, JobState::Running));
    // Other keys are independent.
    enqueue(
        &s,
        NewJob {
            unique_key: Some("uniq-other".into()),
            ..job("uniq")
        },
    )
    .await;
}

pub async fn unique_key_is_free_again_once_the_job_finishes(s: Backend, clock: Arc<ManualClock>) {
    let keyed = |k: &str| NewJob {
        unique_key: Some(k.to_owned()),
        ..job("uniq-free")
    };
    // Completed.
    let done = enqueue(&s, keyed("k1")).await;
    let c = claim_one(&s, "uniq-free").await;
    s.complete(vec![completion(&c)]).await.unwrap();
    let again = enqueue(&s, keyed("k1")).await;
    assert_ne!(again.id, done.id);
    s.cancel(&again.id).await.unwrap();
    // Cancelled.
    let again2 = enqueue(&s, keyed("k1")).await;
    assert_ne!(again2.id, again.id);
    // Failed for good.
    let c = claim_one(&s, "uniq-free").await;
    s.fail(vec![failure(&c, None)]).await.unwrap();
    assert_eq!(get(&s, &again2.id).await.status, JobState::Failed);
    enqueue(&s, keyed("k1")).await;
    // Retrying still holds it.
    let r = enqueue(&s, keyed("k2")).await;
    let mut c = claim(&s, &["uniq-free"], 10).await;
    c.retain(|c| c.job.id == r.id);
    s.fail(vec![failure(&c[0], Some(clock.now_ms() + 60_000))])
        .await
        .unwrap();
    assert!(!s.enqueue(keyed("k2")).await.unwrap().created);
}

pub async fn import_keeps_ids_and_states_and_is_idempotent(s: Backend, clock: Arc<ManualClock>) {
    let now = clock.now_ms();
    let base = |id: &str, status: JobState| {
        let mut j = Job::from_new(
            NewJob {
                id: id.to_owned(),
                ..job("imported")
            },
            now - 5_000,
        );
        j.status = status;
        j
    };
    let mut jobs = vec![
        base("imp-pending", JobState::Pending),
        base("imp-scheduled", JobState::Scheduled),
        base("imp-retrying", JobState::Retrying),
        base("imp-running", JobState::Running),
        base("imp-completed", JobState::Completed),
        base("imp-failed", JobState::Failed),
        base("imp-cancelled", JobState::Cancelled),
    ];
    jobs[1].run_at = now + 60_000;
    jobs[2].run_at = now + 30_000;
    jobs[2].attempt = 1;
    jobs[2].error = Some("first try failed".into());
    jobs[3].attempt = 1;
    jobs[3].started_at = Some(now - 1_000);
    jobs[3].lease_expires_at = Some(now - 1);
    jobs[4].attempt = 1;
    jobs[4].result = Some(json(r#"{"answer":42}"#));
    jobs[4].finished_at = Some(now - 100);
    jobs[4].logs = vec!["a".into(), "b".into()];
    jobs[4].plugin_version = Some("abc".into());
    jobs[5].attempt = 4;
    jobs[5].error = Some("gave up".into());
    jobs[5].finished_at = Some(now - 200);
    jobs[6].unique_key = Some("imp-key".into());
    jobs[6].finished_at = Some(now - 300);

    assert_eq!(
        s.import_jobs(jobs.clone(), ImportEvents::None)
            .await
            .unwrap(),
        7
    );
    assert_eq!(
        s.import_jobs(jobs.clone(), ImportEvents::None)
            .await
            .unwrap(),
        0
    );
    for want in &jobs {
        let got = get(&s, &want.id).await;
        assert_eq!(got.status, want.status, "{}", want.id);
        assert_eq!(
            (got.attempt, got.run_at, got.created_at),
            (want.attempt, want.run_at, want.created_at)
        );
        assert_eq!(
            (got.started_at, got.finished_at),
            (want.started_at, want.finished_at)
        );
        assert_eq!(
            (&got.error, &got.logs, &got.plugin_version),
            (&want.error, &want.logs, &want.plugin_version)
        );
        assert_eq!(
            got.result.as_deref().map(value),
            want.result.as_deref().map(value)
        );
        assert_eq!(got.unique_key, want.unique_key);
    }
    // No events for imported jobs.
    let events = s.events_since(None, 100).await.unwrap();
    assert!(
        events
            .iter()
            .all(|e| e.job_type.as_deref() != Some("imported")),
        "{events:?}"
    );
    // The imported running job has no live lease: the reaper returns it.
    let reaped = s.reap_expired().await.unwrap();
    assert_eq!((reaped.requeued, reaped.failed), (1, 0));
    let mut ids: Vec<String> = claim(&s, &["imported"], 10)
        .await
        .into_iter()
        .map(|c| c.job.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["imp-pending", "imp-running"]);
    // An invalid job refuses the whole import.
    let bad = vec![
        base("imp-ok", JobState::Pending),
        base("bad id", JobState::Pending),
    ];
    assert_invalid(
        s.import_jobs(bad, ImportEvents::None).await,
        "cannot import job `bad id`",
    );
    assert!(s.get("imp-ok").await.unwrap().is_none());
}

/// The fallback replay's import: a `job.created` per job inserted, as an enqueue writes it
/// (status as imported), then `job.cancelled` for a job cancelled while spooled; none for the
/// ids the storage had.
pub async fn announced_import_writes_job_created_for_what_it_inserts(
    s: Backend,
    clock: Arc<ManualClock>,
) {
    let now = clock.now_ms();
    let spooled = |id: &str, status: JobState| {
        let mut j = Job::from_new(
            NewJob {
                id: id.to_owned(),
                priority: 3,
                ..job("announced")
            },
            now - 1_000,
        );
        j.status = status;
        j
    };
    let there = s
        .enqueue(NewJob {
            id: "ann-there".into(),
            ..job("announced")
        })
        .await
        .unwrap();
    assert!(there.created);
    let mut later = spooled("ann-later", JobState::Scheduled);
    later.run_at = now + 60_000;
    let jobs = vec![
        spooled("ann-pending", JobState::Pending),
        later,
        spooled("ann-cancelled", JobState::Cancelled),
        spooled("ann-there", JobState::Pending),
    ];
    assert_eq!(
        s.import_jobs(jobs.clone(), ImportEvents::Created)
            .await
            .unwrap(),
        3
    );
    assert_eq!(s.import_jobs(jobs, ImportEvents::Created).await.unwrap(), 0);
    let created: Vec<(String, serde_json::Value)> = s
        .events_since(None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "job.created")
        .map(|e| (e.job_id.unwrap_or_default(), e.data))
        .collect();
    let ids: Vec<&str> = created.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["ann-there", "ann-pending", "ann-later", "ann-cancelled"]
    );
    let data = |id: &str| {
        created
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, d)| d.clone())
            .unwrap()
    };
    let pending = data("ann-pending");
    assert_eq!(
        (
            &pending["status"],
            &pending["attempt"],
            &pending["priority"]
        ),
        (
            &serde_json::json!("pending"),
            &serde_json::json!(0),
            &serde_json::json!(3)
        ),
        "{pending}"
    );
    assert_eq!(
        data("ann-later")["run_at"],
        serde_json::json!(crate::job::serde_time::format_rfc3339(now + 60_000))
    );
    assert_eq!(data("ann-cancelled")["status"], "cancelled");
    // A job cancelled before the hand-over also says so, after its creation.
    let job_events: Vec<(String, String)> = s
        .events_since(None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.job_id.as_deref() == Some("ann-cancelled"))
        .map(|e| {
            (
                e.kind,
                e.data["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        job_events,
        [
            ("job.created".to_owned(), "cancelled".to_owned()),
            ("job.cancelled".to_owned(), "cancelled".to_owned())
        ]
    );
}
