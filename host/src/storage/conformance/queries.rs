//! Conformance cases: get, list (order, cursor, filters) and stats.

use super::*;
use crate::job::{JobState, ManualClock};
use crate::storage::{JobPage, ListFilter};

pub async fn get_returns_none_for_an_unknown_id(s: Backend, _clock: Arc<ManualClock>) {
    assert!(s.get("no-such-job").await.unwrap().is_none());
}

pub async fn list_pages_newest_first_with_a_cursor(s: Backend, _clock: Arc<ManualClock>) {
    let mut ids = Vec::new();
    for _ in 0..25 {
        ids.push(enqueue(&s, job("page")).await.id);
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let filter = ListFilter {
            limit: 10,
            cursor: cursor.clone(),
            ..Default::default()
        };
        let page = s.list(filter).await.unwrap();
        pages += 1;
        assert!(page.jobs.len() <= 10);
        seen.extend(page.jobs.into_iter().map(|j| j.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);
    // Limit 0 means the default page size.
    assert_eq!(s.list(ListFilter::default()).await.unwrap().jobs.len(), 25);
}

pub async fn list_by_status_pages_across_types(s: Backend, _clock: Arc<ManualClock>) {
    // Pending jobs of three types, interleaved, and one running job that must not show.
    let mut ids = Vec::new();
    for i in 0..21 {
        let t = ["across-a", "across-b", "across-c"][i % 3];
        ids.push(enqueue(&s, job(t)).await.id);
    }
    let running = claim_one(&s, "across-b").await.job.id;
    ids.retain(|id| *id != running);
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let page = s
            .list(ListFilter {
                status: Some(JobState::Pending),
                limit: 4,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.jobs.len() <= 4);
        seen.extend(page.jobs.into_iter().map(|j| j.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen, ids,
        "every pending job once, newest first, over all types"
    );
}

pub async fn list_filters_by_status_and_type(s: Backend, _clock: Arc<ManualClock>) {
    let a1 = enqueue(&s, job("list-a")).await;
    let a2 = enqueue(&s, job("list-a")).await;
    let b1 = enqueue(&s, job("list-b")).await;
    let c = claim_one(&s, "list-a").await;
    assert_eq!(c.job.id, a1.id);
    let list = |status: Option<JobState>, job_type: Option<&str>| {
        let filter = ListFilter {
            status,
            job_type: job_type.map(str::to_owned),
            ..Default::default()
        };
        let s = s.clone();
        async move {
            s.list(filter)
                .await
                .unwrap()
                .jobs
                .into_iter()
                .map(|j| j.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(None, Some("list-a")).await,
        [a2.id.as_str(), a1.id.as_str()]
    );
    assert_eq!(
        list(Some(JobState::Pending), None).await,
        [b1.id.as_str(), a2.id.as_str()]
    );
    assert_eq!(
        list(Some(JobState::Pending), Some("list-a")).await,
        [a2.id.as_str()]
    );
    assert_eq!(
        list(Some(JobState::Running), Some("list-a")).await,
        [a1.id.as_str()]
    );
    assert!(list(Some(JobState::Failed), None).await.is_empty());
    assert!(list(None, Some("list-z")).await.is_empty());
}

pub async fn stats_count_states_per_type(s: Backend, clock: Arc<ManualClock>) {
    let now = clock.now_ms();
    enqueue(&s, job("stats-a")).await;
    clock.advance(secs(3));
    enqueue(&s, job("stats-a")).await;
    enqueue(&s, job("stats-a")).await;
    enqueue(
        &s,
        NewJob {
            run_at: Some(now + 600_000),
            ..job("stats-a")
        },
    )
    .await;
    enqueue(&s, job("stats-b")).await;
    let c = claim_one(&s, "stats-b").await;
    s.complete(vec![completion(&c)]).await.unwrap();
    clock.advance(secs(2));

    let stats = s.stats().await.unwrap();
    let a = &stats.types["stats-a"];
    assert_eq!(a.counts.get(&JobState::Pending), Some(&3));
    assert_eq!(a.counts.get(&JobState::Scheduled), Some(&1));
    assert_eq!(a.counts.get(&JobState::Running).copied().unwrap_or(0), 0);
    assert_eq!(a.oldest_pending_age_ms, Some(5_000));
    let b = &stats.types["stats-b"];
    assert_eq!(b.counts.get(&JobState::Completed), Some(&1));
    assert_eq!(b.counts.get(&JobState::Pending).copied().unwrap_or(0), 0);
    assert_eq!(b.oldest_pending_age_ms, None);
    assert_eq!(stats.types.len(), 2);
}

/// Running jobs page newest first with a cursor, by type and across types, and are counted
/// per type (Redis keeps them by lease expiry, not by id: the listing sorts them).
pub async fn running_jobs_page_newest_first_and_are_counted(s: Backend, clock: Arc<ManualClock>) {
    let mut ids = Vec::new();
    for t in ["run-a", "run-b", "run-a", "run-b", "run-a"] {
        ids.push(enqueue(&s, job(t)).await.id);
        clock.advance(secs(1));
    }
    // Claimed in an order unlike the ids', with leases of different lengths.
    for (t, lease) in [("run-b", 50), ("run-a", 5), ("run-a", 500), ("run-b", 5)] {
        let c = s
            .claim(ClaimRequest {
                types: vec![t.into()],
                limit: 1,
                lease: secs(lease),
                worker: "w".into(),
            })
            .await
            .unwrap();
        assert_eq!(c.len(), 1);
    }
    // ids[4] (run-a) stays pending.
    let page = |status: JobState, job_type: Option<&str>, cursor: Option<String>| {
        let filter = ListFilter {
            status: Some(status),
            job_type: job_type.map(str::to_owned),
            limit: 2,
            cursor,
        };
        let s = s.clone();
        async move { s.list(filter).await.unwrap() }
    };
    let first = page(JobState::Running, None, None).await;
    let ids_of = |p: &JobPage| p.jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids_of(&first), [ids[3].clone(), ids[2].clone()]);
    let second = page(JobState::Running, None, first.next_cursor.clone()).await;
    assert_eq!(ids_of(&second), [ids[1].clone(), ids[0].clone()]);
    assert_eq!(second.next_cursor, None);
    let a = page(JobState::Running, Some("run-a"), None).await;
    assert_eq!(ids_of(&a), [ids[2].clone(), ids[0].clone()]);
    assert_eq!(a.next_cursor, None);
    assert!(a.jobs.iter().all(|j| j.status == JobState::Running));
    let stats = s.stats().await.unwrap();
    for t in ["run-a", "run-b"] {
        assert_eq!(
            stats.types[t].counts.get(&JobState::Running),
            Some(&2),
            "{t}"
        );
    }
    assert_eq!(
        stats.types["run-a"].counts.get(&JobState::Pending),
        Some(&1)
    );
}
