//! Conformance cases: flow control per type (pause, holds, global concurrency, rate limits,
//! manifest limits and run-time overrides), enforced by `claim_ready` itself.

use super::*;
use crate::job::ManualClock;
use crate::storage::flow::{ControlChange, Limits, RateLimit};

fn rate(text: &str) -> RateLimit {
    text.parse().expect("test rate limit")
}

async fn claim_batch(
    s: &Backend,
    types: &[&str],
    limit: usize,
) -> crate::storage::flow::ClaimBatch {
    s.claim_ready(claim_request(types, limit))
        .await
        .expect("claim")
}

async fn control(s: &Backend, job_type: &str, change: ControlChange) {
    s.control_type(job_type, change)
        .await
        .expect("control_type");
}

async fn event_kinds(s: &Backend, job_type: &str) -> Vec<String> {
    s.events_since(None, 10_000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.job_id.is_none() && e.job_type.as_deref() == Some(job_type))
        .map(|e| e.kind)
        .collect()
}

pub async fn paused_types_start_nothing_until_resumed(s: Backend, _clock: Arc<ManualClock>) {
    control(&s, "fc-paused", ControlChange::Pause).await;
    // Enqueues are still accepted while paused.
    for _ in 0..3 {
        enqueue(&s, job("fc-paused")).await;
    }
    enqueue(&s, job("fc-open")).await;
    let got = claim(&s, &["fc-paused", "fc-open"], 10).await;
    assert_eq!(got.len(), 1, "only the open type's job starts");
    assert_eq!(got[0].job.job_type, "fc-open");
    let controls = s.type_controls().await.unwrap();
    assert!(controls["fc-paused"].paused);
    assert!(!controls.contains_key("fc-open"));
    // Pausing twice changes nothing and writes no second event.
    control(&s, "fc-paused", ControlChange::Pause).await;

    control(&s, "fc-paused", ControlChange::Resume).await;
    assert_eq!(claim(&s, &["fc-paused"], 10).await.len(), 3);
    assert!(!s.type_controls().await.unwrap().contains_key("fc-paused"));
    assert_eq!(
        event_kinds(&s, "fc-paused").await,
        ["type.paused", "type.resumed"]
    );
}

pub async fn global_concurrency_caps_running_jobs_and_expired_leases_free_slots(
    s: Backend,
    clock: Arc<ManualClock>,
) {
    control(
        &s,
        "fc-cap",
        ControlChange::Override {
            rate: None,
            concurrency: Some(Some(2)),
        },
    )
    .await;
    for _ in 0..5 {
        enqueue(&s, job("fc-cap")).await;
    }
    let first = claim(&s, &["fc-cap"], 10).await;
    assert_eq!(first.len(), 2, "at most 2 running at once");
    let none = claim_batch(&s, &["fc-cap"], 10).await;
    assert!(none.jobs.is_empty());
    // Nothing but a job ending opens a slot: no reopen time.
    assert_eq!(none.reopens_in, None);
    s.complete(vec![completion(&first[0])]).await.unwrap();
    assert_eq!(claim(&s, &["fc-cap"], 10).await.len(), 1);
    // A crashed daemon's slots come back when its leases expire.
    clock.advance(LEASE + secs(1));
    s.reap_expired().await.unwrap();
    assert_eq!(claim(&s, &["fc-cap"], 10).await.len(), 2);
    assert_eq!(
        s.type_controls().await.unwrap()["fc-cap"].concurrency(),
        Some(2)
    );
}

pub async fn rate_limits_count_starts_in_a_sliding_window(s: Backend, clock: Arc<ManualClock>) {
    control(
        &s,
        "fc-rate",
        ControlChange::Override {
            rate: Some(Some(rate("3/10s"))),
            concurrency: None,
        },
    )
    .await;
    for _ in 0..10 {
        enqueue(&s, job("fc-rate")).await;
    }
    enqueue(&s, job("fc-free")).await;
    let got = claim(&s, &["fc-rate", "fc-free"], 10).await;
    assert_eq!(
        got.iter().filter(|c| c.job.job_type == "fc-rate").count(),
        3
    );
    assert_eq!(got.len(), 4, "the other type is not held back");
    // Starts, not running jobs, count: finishing them frees nothing.
    for c in &got {
        s.complete(vec![completion(c)]).await.unwrap();
    }
    let held = claim_batch(&s, &["fc-rate"], 10).await;
    assert!(held.jobs.is_empty());
    assert_eq!(held.reopens_in, Some(secs(10)));
    clock.advance(secs(4));
    clock.advance(Duration::from_millis(999));
    let held = claim_batch(&s, &["fc-rate"], 10).await;
    assert!(held.jobs.is_empty());
    assert_eq!(held.reopens_in, Some(Duration::from_millis(5_001)));
    clock.advance(Duration::from_millis(5_001));
    assert_eq!(claim(&s, &["fc-rate"], 10).await.len(), 3);
    // Starts one at a time: each leaves the window `window` after it began.
    clock.advance(secs(10));
    assert_eq!(claim(&s, &["fc-rate"], 1).await.len(), 1);
    clock.advance(secs(1));
    assert_eq!(claim(&s, &["fc-rate"], 10).await.len(), 2);
    clock.advance(secs(9));
    assert_eq!(
        claim(&s, &["fc-rate"], 10).await.len(),
        1,
        "the first start left"
    );
    // Clearing the limit lets the rest start at once.
    control(
        &s,
        "fc-rate",
        ControlChange::Override {
            rate: Some(None),
            concurrency: None,
        },
    )
    .await;
    assert_eq!(claim(&s, &["fc-rate"], 10).await.len(), 0, "all 10 started");
}

pub async fn holds_keep_a_type_back_and_only_extend(s: Backend, clock: Arc<ManualClock>) {
    enqueue(&s, job("fc-held")).await;
    let now = clock.now_ms();
    control(&s, "fc-held", ControlChange::Hold { until: now + 2_000 }).await;
    // An earlier hold does not shorten it.
    control(&s, "fc-held", ControlChange::Hold { until: now + 1_000 }).await;
    let held = claim_batch(&s, &["fc-held"], 10).await;
    assert!(held.jobs.is_empty());
    assert_eq!(held.reopens_in, Some(secs(2)));
    assert_eq!(
        s.type_controls().await.unwrap()["fc-held"].held_until,
        Some(now + 2_000)
    );
    // A type held with nothing ready reports no reopen time.
    control(
        &s,
        "fc-held-empty",
        ControlChange::Hold { until: now + 2_000 },
    )
    .await;
    assert_eq!(
        claim_batch(&s, &["fc-held-empty"], 10).await.reopens_in,
        None
    );
    clock.advance(secs(2));
    assert_eq!(claim(&s, &["fc-held"], 10).await.len(), 1);
    assert_eq!(event_kinds(&s, "fc-held").await, ["type.limited"]);
}

pub async fn overrides_win_over_manifest_limits_until_cleared(
    s: Backend,
    _clock: Arc<ManualClock>,
) {
    let manifest = Limits {
        rate: None,
        concurrency: Some(1),
    };
    control(&s, "fc-layers", ControlChange::Manifest(manifest)).await;
    // The same manifest again (another daemon loading the plugin) changes nothing.
    control(&s, "fc-layers", ControlChange::Manifest(manifest)).await;
    for _ in 0..4 {
        enqueue(&s, job("fc-layers")).await;
    }
    assert_eq!(claim(&s, &["fc-layers"], 10).await.len(), 1);
    control(
        &s,
        "fc-layers",
        ControlChange::Override {
            rate: None,
            concurrency: Some(Some(3)),
        },
    )
    .await;
    assert_eq!(claim(&s, &["fc-layers"], 10).await.len(), 2);
    let c = &s.type_controls().await.unwrap()["fc-layers"];
    assert_eq!(
        (c.manifest.concurrency, c.concurrency()),
        (Some(1), Some(3))
    );
    control(
        &s,
        "fc-layers",
        ControlChange::Override {
            rate: None,
            concurrency: Some(None),
        },
    )
    .await;
    assert_eq!(
        s.type_controls().await.unwrap()["fc-layers"].concurrency(),
        Some(1)
    );
    // A plugin without limits leaves nothing behind.
    control(&s, "fc-layers", ControlChange::Manifest(Limits::default())).await;
    assert!(!s.type_controls().await.unwrap().contains_key("fc-layers"));
    assert_eq!(
        event_kinds(&s, "fc-layers").await,
        ["type.limits", "type.limits", "type.limits", "type.limits"]
    );
}

pub async fn bad_control_changes_are_refused(s: Backend, _clock: Arc<ManualClock>) {
    assert_invalid(s.control_type("", ControlChange::Pause).await, "job type");
    assert_invalid(
        s.control_type(
            "fc-bad",
            ControlChange::Override {
                rate: None,
                concurrency: Some(Some(0)),
            },
        )
        .await,
        "global concurrency",
    );
    assert!(s.type_controls().await.unwrap().is_empty());
}

fn schedule(name: &str) -> crate::storage::flow::Schedule {
    crate::storage::flow::Schedule {
        name: name.into(),
        cron: "*/15 * * * *".into(),
        timezone: "UTC".into(),
        job_type: "fc-sync".into(),
        payload: serde_json::json!({"full": false}),
        priority: None,
        max_attempts: None,
        timeout_ms: None,
        missed: Default::default(),
        paused: false,
        plugin: None,
    }
}

pub async fn schedules_are_stored_replaced_and_deleted(s: Backend, clock: Arc<ManualClock>) {
    let t0 = clock.now_ms();
    let stored = s.put_schedule(schedule("fc-sync")).await.unwrap();
    assert_eq!((stored.last_tick, stored.created_at), (None, t0));
    clock.advance(secs(5));
    // Ticks move by compare and set: exactly one of two daemons firing a tick wins.
    assert!(
        s.advance_schedule("fc-sync", None, t0 + 1_000)
            .await
            .unwrap()
    );
    assert!(
        !s.advance_schedule("fc-sync", None, t0 + 1_000)
            .await
            .unwrap()
    );
    assert!(
        !s.advance_schedule("fc-sync", Some(t0), t0 + 2_000)
            .await
            .unwrap()
    );
    assert!(
        s.advance_schedule("fc-sync", Some(t0 + 1_000), t0 + 2_000)
            .await
            .unwrap()
    );
    // Replacing keeps the tick and the creation time.
    let mut changed = schedule("fc-sync");
    changed.payload = serde_json::json!({"full": true});
    let replaced = s.put_schedule(changed.clone()).await.unwrap();
    assert_eq!(
        (replaced.last_tick, replaced.created_at),
        (Some(t0 + 2_000), t0)
    );
    s.put_schedule(schedule("fc-other")).await.unwrap();
    let all = s.schedules().await.unwrap();
    assert_eq!(all.len(), 2);
    let got = all.iter().find(|r| r.schedule.name == "fc-sync").unwrap();
    assert_eq!(got.schedule, changed);
    assert_eq!(got.last_tick, Some(t0 + 2_000));
    assert!(s.delete_schedule("fc-sync").await.unwrap());
    assert!(!s.delete_schedule("fc-sync").await.unwrap());
    assert!(
        !s.advance_schedule("fc-sync", Some(t0 + 2_000), t0 + 3_000)
            .await
            .unwrap()
    );
    assert_eq!(s.schedules().await.unwrap().len(), 1);
    assert_invalid(s.put_schedule(schedule("bad name")).await, "schedule name");
    let mut bad = schedule("fc-bad");
    bad.priority = Some(0);
    assert_invalid(s.put_schedule(bad).await, "priority");
}

fn keyed(job_type: &str, key: &str, payload: &str) -> crate::job::NewJob {
    crate::job::NewJob {
        unique_key: Some(key.into()),
        payload: json(payload),
        ..job(job_type)
    }
}

pub async fn unique_for_keeps_a_finished_jobs_key_taken_for_its_window(
    s: Backend,
    clock: Arc<ManualClock>,
) {
    let first = enqueue(
        &s,
        crate::job::NewJob {
            unique_for_ms: Some(10_000),
            ..keyed("fc-window", "w", "{}")
        },
    )
    .await;
    let c = claim_one(&s, "fc-window").await;
    s.complete(vec![completion(&c)]).await.unwrap();
    clock.advance(secs(5));
    // Within the window an enqueue with the key returns the finished job.
    let out = s.enqueue(keyed("fc-window", "w", "{}")).await.unwrap();
    assert!(!out.created);
    assert_eq!(out.job.id, first.id);
    assert_eq!(out.job.status, crate::job::JobState::Completed);
    assert_eq!(get(&s, &first.id).await.unique_for_ms, Some(10_000));
    // At its end the key is free.
    clock.advance(secs(5));
    let out = s.enqueue(keyed("fc-window", "w", "{}")).await.unwrap();
    assert!(out.created);
    // A cancelled job keeps its window too; without one the key is free at once.
    let other = enqueue(
        &s,
        crate::job::NewJob {
            unique_for_ms: Some(60_000),
            ..keyed("fc-window", "c", "{}")
        },
    )
    .await;
    s.cancel(&other.id).await.unwrap();
    let out = s.enqueue(keyed("fc-window", "c", "{}")).await.unwrap();
    assert!(
        !out.created,
        "the cancelled job holds the key for its window"
    );
    assert_invalid(
        s.enqueue(crate::job::NewJob {
            unique_for_ms: Some(1_000),
            ..job("fc-window")
        })
        .await,
        "needs a `unique_key`",
    );
}

pub async fn debounce_gives_the_waiting_job_the_newest_payload_and_pushes_it_back(
    s: Backend,
    clock: Arc<ManualClock>,
) {
    let t0 = clock.now_ms();
    let debounced = |payload: &str| crate::job::NewJob {
        debounce_ms: Some(5_000),
        ..keyed("fc-debounce", "d", payload)
    };
    let first = s.enqueue(debounced(r#"{"n":1}"#)).await.unwrap();
    assert!(first.created);
    assert_eq!(first.job.status, crate::job::JobState::Scheduled);
    assert_eq!(first.job.run_at, t0 + 5_000);
    clock.advance(secs(2));
    let second = s.enqueue(debounced(r#"{"n":2}"#)).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.job.id, first.job.id);
    assert_eq!(value(&second.job.payload), serde_json::json!({"n": 2}));
    assert_eq!(second.job.run_at, t0 + 7_000);
    assert_eq!(second.job.status, crate::job::JobState::Scheduled);
    // Not due before its new time.
    clock.advance(secs(4));
    assert_eq!(s.promote_due().await.unwrap(), 0);
    clock.advance(secs(1));
    assert_eq!(s.promote_due().await.unwrap(), 1);
    let c = claim_one(&s, "fc-debounce").await;
    assert_eq!(value(&c.job.payload), serde_json::json!({"n": 2}));
    // A running holder is left as it is.
    let third = s.enqueue(debounced(r#"{"n":3}"#)).await.unwrap();
    assert!(!third.created);
    assert_eq!(
        value(&get(&s, &c.job.id).await.payload),
        serde_json::json!({"n": 2})
    );
    let kinds: Vec<String> = s
        .events_since(None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.job_id.as_deref() == Some(first.job.id.as_str()))
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["job.created", "job.debounced", "job.started"]);
}
