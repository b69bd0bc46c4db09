//! Conformance cases: the plugin cache (TTL by the clock, increment, namespaces), the event
//! log (one event per transition, resumable), waking idle workers, health.

use super::*;
use crate::job::Progress;
use crate::job::{JobState, ManualClock};
use crate::storage::{CacheKey, CacheUsage, Event, NewEvent};

pub async fn cache_stores_and_deletes_values(s: Backend, _clock: Arc<ManualClock>) {
    assert_eq!(s.cache_get(CacheKey::new("plug", "k")).await.unwrap(), None);
    s.cache_set(CacheKey::new("plug", "k"), "v1", None)
        .await
        .unwrap();
    assert_eq!(
        s.cache_get(CacheKey::new("plug", "k"))
            .await
            .unwrap()
            .as_deref(),
        Some("v1")
    );
    s.cache_set(CacheKey::new("plug", "k"), "v2", None)
        .await
        .unwrap();
    assert_eq!(
        s.cache_get(CacheKey::new("plug", "k"))
            .await
            .unwrap()
            .as_deref(),
        Some("v2")
    );
    s.cache_set(CacheKey::new("plug", "empty"), "", None)
        .await
        .unwrap();
    assert_eq!(
        s.cache_get(CacheKey::new("plug", "empty"))
            .await
            .unwrap()
            .as_deref(),
        Some("")
    );
    assert!(s.cache_delete(CacheKey::new("plug", "k")).await.unwrap());
    assert!(!s.cache_delete(CacheKey::new("plug", "k")).await.unwrap());
    assert_eq!(s.cache_get(CacheKey::new("plug", "k")).await.unwrap(), None);
    assert_invalid(
        s.cache_get(CacheKey::new("plug", "")).await,
        "cache key must be 1 to",
    );
    assert_invalid(
        s.cache_set(CacheKey::new("", "k"), "v", None).await,
        "cache namespace must be 1 to",
    );
}

/// Needs a store opened with `options()` (50 entries, 4096 bytes a namespace).
pub async fn cache_quota_limits_each_namespace(s: Backend, clock: Arc<ManualClock>) {
    let quota = options().cache_quota;
    let mut bytes = 0;
    for i in 0..quota.max_entries {
        let key = format!("k{i}");
        s.cache_set(CacheKey::new("quota", &key), "v", None)
            .await
            .unwrap();
        bytes += key.len() as u64 + 1;
    }
    let usage = s.cache_usage("quota").await.unwrap();
    assert_eq!(usage, CacheUsage { entries: 50, bytes });
    // One entry more is refused and writes nothing; so is a counter that would be new.
    assert_invalid(
        s.cache_set(CacheKey::new("quota", "extra"), "v", None)
            .await,
        "quota",
    );
    assert_eq!(
        s.cache_get(CacheKey::new("quota", "extra")).await.unwrap(),
        None
    );
    assert_invalid(
        s.cache_increment(CacheKey::new("quota", "n"), 1, None)
            .await,
        "quota",
    );
    assert_eq!(
        s.cache_get(CacheKey::new("quota", "n")).await.unwrap(),
        None
    );
    assert_eq!(s.cache_usage("quota").await.unwrap(), usage);
    // Overwriting takes no new entry; other namespaces have their own quota.
    s.cache_set(CacheKey::new("quota", "k0"), "w", None)
        .await
        .unwrap();
    s.cache_set(CacheKey::new("other", "extra"), "v", None)
        .await
        .unwrap();
    // A delete makes room, and so does an expiry.
    assert!(s.cache_delete(CacheKey::new("quota", "k1")).await.unwrap());
    s.cache_set(CacheKey::new("quota", "extra"), "v", None)
        .await
        .unwrap();
    s.cache_set(CacheKey::new("quota", "k2"), "v", Some(secs(1)))
        .await
        .unwrap();
    clock.advance(secs(2));
    s.cache_set(CacheKey::new("quota", "after-expiry"), "v", None)
        .await
        .unwrap();
    assert_eq!(s.cache_usage("quota").await.unwrap().entries, 50);

    // Bytes: keys and values. Growing past the quota is refused; shrinking passes.
    s.cache_set(CacheKey::new("bytes", "a"), &"x".repeat(4000), None)
        .await
        .unwrap();
    assert_invalid(
        s.cache_set(CacheKey::new("bytes", "b"), &"x".repeat(200), None)
            .await,
        "quota",
    );
    assert_invalid(
        s.cache_set(CacheKey::new("bytes", "a"), &"x".repeat(4200), None)
            .await,
        "quota",
    );
    s.cache_set(CacheKey::new("bytes", "a"), "small", None)
        .await
        .unwrap();
    s.cache_set(CacheKey::new("bytes", "b"), &"x".repeat(200), None)
        .await
        .unwrap();
    assert_eq!(
        s.cache_increment(CacheKey::new("bytes", "n"), 7, None)
            .await
            .unwrap(),
        7
    );
    assert_eq!(
        s.cache_usage("bytes").await.unwrap(),
        CacheUsage {
            entries: 3,
            bytes: (1 + 5) + (1 + 200) + (1 + 1),
        }
    );
    assert_eq!(
        s.cache_usage("never-used").await.unwrap(),
        CacheUsage::default()
    );
}

pub async fn cache_values_expire_with_the_clock(s: Backend, clock: Arc<ManualClock>) {
    s.cache_set(CacheKey::new("plug", "short"), "x", Some(secs(10)))
        .await
        .unwrap();
    s.cache_set(CacheKey::new("plug", "forever"), "y", None)
        .await
        .unwrap();
    clock.advance(secs(9));
    assert_eq!(
        s.cache_get(CacheKey::new("plug", "short"))
            .await
            .unwrap()
            .as_deref(),
        Some("x")
    );
    clock.advance(secs(1));
    assert_eq!(
        s.cache_get(CacheKey::new("plug", "short")).await.unwrap(),
        None
    );
    assert!(
        !s.cache_delete(CacheKey::new("plug", "short"))
            .await
            .unwrap(),
        "an expired key is gone"
    );
    // Setting again replaces the expiry; None keeps it forever.
    s.cache_set(CacheKey::new("plug", "short"), "z", Some(secs(10)))
        .await
        .unwrap();
    s.cache_set(CacheKey::new("plug", "short"), "z", None)
        .await
        .unwrap();
    clock.advance(secs(1_000 * 3600));
    assert_eq!(
        s.cache_get(CacheKey::new("plug", "short"))
            .await
            .unwrap()
            .as_deref(),
        Some("z")
    );
    assert_eq!(
        s.cache_get(CacheKey::new("plug", "forever"))
            .await
            .unwrap()
            .as_deref(),
        Some("y")
    );
}

pub async fn cache_increment_counts_from_zero(s: Backend, clock: Arc<ManualClock>) {
    assert_eq!(
        s.cache_increment(CacheKey::new("plug", "n"), 1, None)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.cache_increment(CacheKey::new("plug", "n"), 5, None)
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        s.cache_increment(CacheKey::new("plug", "n"), -8, None)
            .await
            .unwrap(),
        -2
    );
    assert_eq!(
        s.cache_get(CacheKey::new("plug", "n"))
            .await
            .unwrap()
            .as_deref(),
        Some("-2")
    );
    s.cache_set(CacheKey::new("plug", "word"), "abc", None)
        .await
        .unwrap();
    assert_invalid(
        s.cache_increment(CacheKey::new("plug", "word"), 1, None)
            .await,
        "does not hold an integer",
    );
    s.cache_set(CacheKey::new("plug", "big"), &i64::MAX.to_string(), None)
        .await
        .unwrap();
    assert_invalid(
        s.cache_increment(CacheKey::new("plug", "big"), 1, None)
            .await,
        "overflow",
    );
    // A counter keeps the window it started with: later TTLs do not extend it.
    assert_eq!(
        s.cache_increment(CacheKey::new("plug", "rate"), 1, Some(secs(10)))
            .await
            .unwrap(),
        1
    );
    clock.advance(secs(5));
    assert_eq!(
        s.cache_increment(CacheKey::new("plug", "rate"), 1, Some(secs(10)))
            .await
            .unwrap(),
        2
    );
    clock.advance(secs(5));
    assert_eq!(
        s.cache_get(CacheKey::new("plug", "rate")).await.unwrap(),
        None
    );
    assert_eq!(
        s.cache_increment(CacheKey::new("plug", "rate"), 1, Some(secs(10)))
            .await
            .unwrap(),
        1
    );
}

pub async fn cache_namespaces_do_not_mix(s: Backend, _clock: Arc<ManualClock>) {
    s.cache_set(CacheKey::new("plug-a", "k"), "a", None)
        .await
        .unwrap();
    s.cache_set(CacheKey::new("plug-b", "k"), "b", None)
        .await
        .unwrap();
    assert_eq!(
        s.cache_get(CacheKey::new("plug-a", "k"))
            .await
            .unwrap()
            .as_deref(),
        Some("a")
    );
    assert_eq!(
        s.cache_get(CacheKey::new("plug-b", "k"))
            .await
            .unwrap()
            .as_deref(),
        Some("b")
    );
    assert!(s.cache_delete(CacheKey::new("plug-a", "k")).await.unwrap());
    assert_eq!(
        s.cache_get(CacheKey::new("plug-b", "k"))
            .await
            .unwrap()
            .as_deref(),
        Some("b")
    );
    assert_eq!(
        s.cache_increment(CacheKey::new("plug-a", "k"), 2, None)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.cache_get(CacheKey::new("plug-b", "k"))
            .await
            .unwrap()
            .as_deref(),
        Some("b")
    );
}

pub async fn every_job_transition_writes_an_event(s: Backend, clock: Arc<ManualClock>) {
    let now = clock.now_ms();
    let ok = enqueue(&s, job("ev")).await;
    let c = claim_one(&s, "ev").await;
    s.set_progress(
        &c.job.id,
        &c.lease,
        Progress::new(40, Some("reading".into())),
    )
    .await
    .unwrap();
    s.complete(vec![completion(&c)]).await.unwrap();
    let bad = enqueue(
        &s,
        NewJob {
            max_attempts: 2,
            ..job("ev")
        },
    )
    .await;
    let c = claim_one(&s, "ev").await;
    s.fail(vec![failure(&c, Some(now))]).await.unwrap();
    s.promote_due().await.unwrap();
    let c = claim_one(&s, "ev").await;
    s.fail(vec![failure(&c, Some(now))]).await.unwrap();
    let gone = enqueue(&s, job("ev")).await;
    s.cancel(&gone.id).await.unwrap();
    s.replay(&gone.id).await.unwrap();

    let events = s.events_since(None, 100).await.unwrap();
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            assert_eq!(e.job_type.as_deref(), Some("ev"));
            assert_eq!(e.at, now);
            (
                e.kind.as_str(),
                e.job_id.as_deref().unwrap(),
                e.data["status"].as_str().unwrap(),
            )
        })
        .collect();
    let want = [
        ("job.created", ok.id.as_str(), "pending"),
        ("job.started", ok.id.as_str(), "running"),
        ("job.progress", ok.id.as_str(), "running"),
        ("job.completed", ok.id.as_str(), "completed"),
        ("job.created", bad.id.as_str(), "pending"),
        ("job.started", bad.id.as_str(), "running"),
        ("job.retrying", bad.id.as_str(), "retrying"),
        ("job.started", bad.id.as_str(), "running"),
        ("job.failed", bad.id.as_str(), "failed"),
        ("job.created", gone.id.as_str(), "pending"),
        ("job.cancelled", gone.id.as_str(), "cancelled"),
        ("job.retrying", gone.id.as_str(), "pending"),
    ];
    assert_eq!(seen, want);
    assert_eq!(events[2].data["percent"], 40);
    assert_eq!(events[6].data["error"], "boom");
    assert_eq!(events[8].data["attempt"], 2);
    assert_eq!(events[11].data["replay"], true);
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "event ids are distinct");
    // Expired leases write events too.
    let lost = enqueue(&s, job("ev-lease")).await;
    claim_one(&s, "ev-lease").await;
    clock.advance(secs(31));
    s.reap_expired().await.unwrap();
    let last = events.last().unwrap().id.clone();
    let more = s.events_since(Some(&last), 100).await.unwrap();
    let kinds: Vec<&str> = more.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["job.created", "job.started", "job.retrying"]);
    assert_eq!(more[2].job_id.as_deref(), Some(lost.id.as_str()));
    assert_eq!(more[2].data["reason"], "lease_expired");
    assert_eq!(more[2].data["status"], JobState::Pending.as_str());
}

pub async fn events_resume_after_an_id(s: Backend, clock: Arc<ManualClock>) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let e = s
            .publish_event(NewEvent {
                kind: "plugin.loaded".into(),
                job_id: None,
                job_type: None,
                data: serde_json::json!({ "name": format!("p{i}") }),
            })
            .await
            .unwrap();
        assert_eq!(
            (e.kind.as_str(), e.at, e.job_id.as_deref()),
            ("plugin.loaded", clock.now_ms(), None)
        );
        ids.push(e.id);
    }
    let all = s.events_since(None, 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids);
    assert_eq!(all[3].data["name"], "p3");
    let some = s.events_since(Some(&ids[1]), 2).await.unwrap();
    assert_eq!(
        some.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        &ids[2..4]
    );
    assert!(s.events_since(Some(&ids[4]), 10).await.unwrap().is_empty());
    assert!(s.events_since(None, 0).await.unwrap().is_empty());
    assert_invalid(
        s.events_since(Some("not-an-id"), 10).await,
        "invalid event id",
    );
}

pub async fn wait_for_work_wakes_on_new_work(s: Backend, _clock: Arc<ManualClock>) {
    // Nothing to do: it returns once the timeout is up.
    tokio::time::timeout(
        secs(10),
        s.wait_for_work(std::time::Duration::from_millis(20)),
    )
    .await
    .expect("wait_for_work returns after its timeout");
    // A waiter sleeping for an hour wakes when a job is enqueued.
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move { s.wait_for_work(secs(3600)).await })
    };
    tokio::task::yield_now().await;
    enqueue(&s, job("wake")).await;
    tokio::time::timeout(secs(10), waiter)
        .await
        .expect("wait_for_work woke on enqueue")
        .unwrap();
}

/// Consumes wake-ups already signalled (or still in flight: Redis delivers them over
/// pub/sub) until 300 ms pass without one, so that a wake-up seen afterwards was caused by
/// what the test does next.
pub async fn drain_wake_ups(s: &Backend) {
    for _ in 0..20 {
        let quiet = std::time::Duration::from_millis(300);
        if tokio::time::timeout(quiet, s.wait_for_work(secs(3600)))
            .await
            .is_err()
        {
            return;
        }
    }
    panic!("wait_for_work keeps waking with nothing to do");
}

/// Waits (in a task started before `act`) until `wait_for_work` returns; fails after 10 s.
async fn wakes_on<F: std::future::Future<Output = ()>>(s: &Backend, what: &str, act: F) {
    // Only `act` may end the wait below.
    drain_wake_ups(s).await;
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move { s.wait_for_work(secs(3600)).await })
    };
    tokio::task::yield_now().await;
    act.await;
    tokio::time::timeout(secs(10), waiter)
        .await
        .unwrap_or_else(|_| panic!("wait_for_work did not wake on {what}"))
        .expect("the waiting task panicked");
}

pub async fn wait_for_work_wakes_on_promotion_release_and_replay(
    s: Backend,
    clock: Arc<ManualClock>,
) {
    let due = clock.now_ms() + 1_000;
    enqueue(
        &s,
        NewJob {
            run_at: Some(due),
            ..job("wake-sched")
        },
    )
    .await;
    enqueue(&s, job("wake-dead")).await;
    let dead = claim_one(&s, "wake-dead").await;
    s.fail(vec![failure(&dead, None)]).await.unwrap();
    enqueue(&s, job("wake-held")).await;
    let held = claim_one(&s, "wake-held").await;

    wakes_on(&s, "promotion", async {
        clock.advance(secs(1));
        assert_eq!(s.promote_due().await.unwrap(), 1);
    })
    .await;
    wakes_on(&s, "release", async {
        let lease = [(held.job.id.clone(), held.lease.clone())];
        assert_eq!(s.release(&lease).await.unwrap(), 1);
    })
    .await;
    wakes_on(&s, "replay", async {
        assert!(s.replay(&dead.job.id).await.unwrap().is_some());
    })
    .await;
}

pub async fn ping_and_info_describe_the_backend(s: Backend, _clock: Arc<ManualClock>) {
    let rtt = s.ping().await.unwrap();
    assert!(rtt < secs(5), "{rtt:?}");
    let info = s.info().await.unwrap();
    assert_eq!(info.backend, s.backend());
}

pub async fn events_of_one_batch_page_like_any_others(s: Backend, _clock: Arc<ManualClock>) {
    // One batch writes its events in one step (on Redis, stream entries of up to 50 events,
    // all written by one script call): resuming in the middle of it, a page at a time, must
    // see each event once and in order. 120 jobs make each batch span several entries.
    const N: usize = 120;
    let before = s.events_since(None, 1000).await.unwrap();
    let jobs: Vec<NewJob> = (0..N).map(|_| job("evbatch")).collect();
    let created = s.enqueue_batch(jobs).await.unwrap();
    let c = s
        .claim(ClaimRequest {
            types: vec!["evbatch".into()],
            limit: N,
            lease: secs(30),
            worker: "w".into(),
        })
        .await
        .unwrap();
    assert_eq!(c.len(), N);
    let done = s
        .complete(c.iter().map(completion).collect())
        .await
        .unwrap();
    assert_eq!(done.len(), N);
    let mut cursor = before.last().map(|e| e.id.clone());
    let mut seen = Vec::new();
    loop {
        let page = s.events_since(cursor.as_deref(), 7).await.unwrap();
        assert!(page.len() <= 7, "a page holds at most its limit");
        let Some(last) = page.last() else { break };
        cursor = Some(last.id.clone());
        seen.extend(page);
    }
    let ids: Vec<&str> = seen.iter().map(|e| e.id.as_str()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no event twice: {ids:?}");
    for pair in ids.windows(2) {
        assert_eq!(
            crate::storage::compare_event_ids(pair[0], pair[1]),
            Some(std::cmp::Ordering::Less),
            "ids increase: {ids:?}"
        );
    }
    let kinds: Vec<(&str, &str)> = seen
        .iter()
        .map(|e| (e.kind.as_str(), e.job_id.as_deref().unwrap_or("")))
        .collect();
    let mut want: Vec<(&str, &str)> = created
        .iter()
        .map(|e| ("job.created", e.job.id.as_str()))
        .collect();
    want.extend(c.iter().map(|c| ("job.started", c.job.id.as_str())));
    want.extend(c.iter().map(|c| ("job.completed", c.job.id.as_str())));
    assert_eq!(kinds, want);
    assert_eq!(seen[0].data["status"], "pending");
    assert_eq!(seen[N].data["attempt"], 1);
    assert_eq!(seen[N].data["worker"], "w");
    assert_eq!(seen[2 * N - 1].data["status"], "running");
    assert_eq!(seen[2 * N].data["status"], "completed");
    assert_eq!(seen[3 * N - 1].data["attempt"], 1);
    // Every event resumes from its own id: the one after it, whichever entry holds it.
    for k in [0, 49, 50, 51, N - 1, N, 2 * N + 49] {
        let next = s.events_since(Some(&seen[k].id), 1).await.unwrap();
        assert_eq!(next[0].id, seen[k + 1].id, "after event {k}");
    }
}

pub async fn events_carry_ids_that_need_escaping(s: Backend, _clock: Arc<ManualClock>) {
    // A job id may hold any text but whitespace and control characters: quotes, backslashes
    // and non-ASCII letters must come back in its events exactly.
    let before = s.events_since(None, 1000).await.unwrap();
    let ids = [r#"quo"te"#, r"back\slash", "plain-é-id", r#"both"\"#];
    let jobs: Vec<NewJob> = ids
        .iter()
        .map(|id| {
            let mut j = job("evids");
            j.id = (*id).to_owned();
            j
        })
        .collect();
    s.enqueue_batch(jobs).await.unwrap();
    let c = s
        .claim(ClaimRequest {
            types: vec!["evids".into()],
            limit: ids.len(),
            lease: secs(30),
            worker: "w".into(),
        })
        .await
        .unwrap();
    assert_eq!(c.len(), ids.len());
    s.complete(c.iter().map(completion).collect())
        .await
        .unwrap();
    let after = before.last().map(|e| e.id.clone());
    let seen = s.events_since(after.as_deref(), 1000).await.unwrap();
    let mut by_kind: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for e in &seen {
        by_kind
            .entry(e.kind.as_str())
            .or_default()
            .push(e.job_id.as_deref().unwrap_or(""));
    }
    let mut want: Vec<&str> = ids.to_vec();
    want.sort_unstable();
    for kind in ["job.created", "job.started", "job.completed"] {
        let mut got = by_kind.get(kind).cloned().unwrap_or_default();
        got.sort_unstable();
        assert_eq!(got, want, "{kind}");
    }
}

pub async fn latest_event_id_names_the_newest_event(s: Backend, _clock: Arc<ManualClock>) {
    // Readers that want only what comes next (the live hub while nobody listens) start there
    // without reading the log; nothing may come after it, and the next write must.
    let mut all = Vec::new();
    loop {
        let page = s
            .events_since(all.last().map(|e: &Event| e.id.as_str()), 1000)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    assert_eq!(
        s.latest_event_id().await.unwrap(),
        all.last().map(|e| e.id.clone())
    );
    // 120 events: on Redis several stream entries, the newest of them partly filled.
    let created = s
        .enqueue_batch((0..120).map(|_| job("latest")).collect())
        .await
        .unwrap();
    let latest = s.latest_event_id().await.unwrap().expect("events exist");
    assert!(s.events_since(Some(&latest), 10).await.unwrap().is_empty());
    let before = s
        .events_since(all.last().map(|e| e.id.as_str()), 1000)
        .await
        .unwrap();
    assert_eq!(before.last().map(|e| e.id.as_str()), Some(latest.as_str()));
    assert_eq!(
        before.last().and_then(|e| e.job_id.as_deref()),
        Some(created[119].job.id.as_str())
    );
    s.cancel(&created[0].job.id).await.unwrap();
    let next = s.events_since(Some(&latest), 10).await.unwrap();
    assert_eq!(next.len(), 1, "{next:?}");
    assert_eq!(next[0].kind, "job.cancelled");
}
