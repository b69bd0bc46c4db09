//! The fallback over an in-memory primary that can be switched off: jobs are spooled while
//! it is down (also when it was down at start-up), reads fail fast, the replay hands every
//! job over exactly once (also after a crash mid-replay), health says degraded.
//! host/tests/fallback.rs does the same against a real redis-server.

use super::*;
use crate::job::{Job, JobState, LeaseToken, ManualClock};
use crate::storage::memory::MemoryStorage;
use crate::storage::{
    BackendInfo, CacheKey, CancelOutcome, Capabilities, ClaimRequest, Claimed, Completion, Event,
    Failure, ImportEvents, JobPage, LeaseStatus, ListFilter, NewEvent, Reaped, RetentionPolicy,
    Settled, Stats,
};
use async_trait::async_trait;
use serde_json::value::RawValue;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

/// A memory store whose every call fails with `Unavailable` while `down` is set.
struct Switch {
    inner: MemoryStorage,
    down: AtomicBool,
    /// Calls that reached it while down (the fallback should not make any).
    calls_while_down: AtomicUsize,
}

impl Switch {
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            self.calls_while_down.fetch_add(1, Ordering::SeqCst);
            return Err(StorageError::Unavailable("connection refused".into()));
        }
        Ok(())
    }
    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

/// The whole `Storage` impl of `Switch`: every call checks the switch, then delegates.
/// (The impl is generated as a whole so that `async_trait` sees the expanded methods.)
macro_rules! switch_storage {
    ($( fn $m:ident(&self $(, $a:ident : $t:ty)*) -> $r:ty; )*) => {
        #[async_trait]
        impl Storage for Switch {
            fn backend(&self) -> &'static str {
                "redis"
            }
            fn capabilities(&self) -> Capabilities {
                self.inner.capabilities()
            }
            $( async fn $m(&self $(, $a: $t)*) -> $r {
                self.check()?;
                self.inner.$m($($a),*).await
            } )*
            async fn wait_for_work(&self, timeout: Duration) {
                self.inner.wait_for_work(timeout).await
            }
            async fn wait_for_events(&self, timeout: Duration) {
                self.inner.wait_for_events(timeout).await
            }
        }
    };
}

switch_storage! {
    fn enqueue(&self, job: NewJob) -> Result<Enqueued>;
    fn enqueue_batch(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>>;
    fn import_jobs(&self, jobs: Vec<Job>, events: ImportEvents) -> Result<u64>;
    fn get(&self, id: &str) -> Result<Option<Job>>;
    fn list(&self, filter: ListFilter) -> Result<JobPage>;
    fn delete(&self, id: &str) -> Result<bool>;
    fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>>;
    fn claim_ready(&self, req: ClaimRequest) -> Result<crate::storage::flow::ClaimBatch>;
    fn type_controls(&self) -> Result<std::collections::BTreeMap<String, crate::storage::flow::TypeControl>>;
    fn control_type(&self, job_type: &str, change: crate::storage::flow::ControlChange) -> Result<crate::storage::flow::TypeControl>;
    fn schedules(&self) -> Result<Vec<crate::storage::flow::ScheduleRecord>>;
    fn put_schedule(&self, schedule: crate::storage::flow::Schedule) -> Result<crate::storage::flow::ScheduleRecord>;
    fn delete_schedule(&self, name: &str) -> Result<bool>;
    fn advance_schedule(&self, name: &str, from: Option<crate::job::Millis>, to: crate::job::Millis) -> Result<bool>;
    fn renew_leases(&self, leases: &[(String, LeaseToken)], lease: Duration) -> Result<Vec<LeaseStatus>>;
    fn set_progress(&self, id: &str, lease: &LeaseToken, progress: crate::job::Progress) -> Result<bool>;
    fn complete(&self, done: Vec<Completion>) -> Result<Vec<Settled>>;
    fn fail(&self, failed: Vec<Failure>) -> Result<Vec<Settled>>;
    fn release(&self, leases: &[(String, LeaseToken)]) -> Result<u64>;
    fn cancel(&self, id: &str) -> Result<CancelOutcome>;
    fn replay(&self, id: &str) -> Result<Option<Job>>;
    fn promote_due(&self) -> Result<u64>;
    fn reap_expired(&self) -> Result<Reaped>;
    fn sweep_retention(&self, policy: &RetentionPolicy) -> Result<u64>;
    fn stats(&self) -> Result<Stats>;
    fn cache_get(&self, key: CacheKey<'_>) -> Result<Option<String>>;
    fn cache_set(&self, key: CacheKey<'_>, value: &str, ttl: Option<Duration>) -> Result<()>;
    fn cache_delete(&self, key: CacheKey<'_>) -> Result<bool>;
    fn cache_increment(&self, key: CacheKey<'_>, delta: i64, ttl: Option<Duration>) -> Result<i64>;
    fn cache_usage(&self, ns: &str) -> Result<crate::storage::CacheUsage>;
    fn publish_event(&self, event: NewEvent) -> Result<Event>;
    fn events_since(&self, after: Option<&str>, limit: usize) -> Result<Vec<Event>>;
    fn latest_event_id(&self) -> Result<Option<String>>;
    fn ping(&self) -> Result<Duration>;
    fn info(&self) -> Result<BackendInfo>;
}

struct Setup {
    primary: Arc<Switch>,
    fallback: Arc<FallbackStorage>,
    /// Whether the opener may reach the primary (false: start-up outage).
    reachable: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

async fn setup(up_at_start: bool) -> Setup {
    let clock = Arc::new(ManualClock::new());
    let primary = Arc::new(Switch {
        inner: MemoryStorage::new(StorageOptions::default(), clock.clone()),
        down: AtomicBool::new(!up_at_start),
        calls_while_down: AtomicUsize::new(0),
    });
    let reachable = Arc::new(AtomicBool::new(up_at_start));
    let (p, r) = (primary.clone(), reachable.clone());
    let opener: Opener = Box::new(move || {
        let (p, r) = (p.clone(), r.clone());
        Box::pin(async move {
            if r.load(Ordering::SeqCst) {
                Ok(p as Arc<dyn Storage>)
            } else {
                Err(StorageError::Unavailable("connection refused".into()))
            }
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.db").display().to_string();
    let fallback =
        FallbackStorage::open_with(opener, &spool, StorageOptions::default(), clock, "redis")
            .await
            .unwrap();
    Setup {
        primary,
        fallback,
        reachable,
        _dir: dir,
    }
}

fn job(n: usize) -> NewJob {
    NewJob::new(
        "fb",
        RawValue::from_string(format!(r#"{{"n":{n}}}"#)).unwrap(),
    )
}

async fn primary_ids(p: &Switch) -> Vec<String> {
    let page = p
        .inner
        .list(ListFilter {
            limit: 1000,
            ..ListFilter::default()
        })
        .await
        .unwrap();
    page.jobs.into_iter().map(|j| j.id).collect()
}

#[tokio::test]
async fn jobs_go_to_the_primary_while_it_is_up() {
    let s = setup(true).await;
    let out = s.fallback.enqueue(job(1)).await.unwrap();
    assert!(out.created);
    assert!(!s.fallback.is_active());
    assert_eq!(primary_ids(&s.primary).await, vec![out.job.id.clone()]);
    assert_eq!(s.fallback.status().spooled, 0);
    let r = s.fallback.run_once().await.unwrap();
    assert_eq!(r, Replay::default());
}

#[tokio::test]
async fn jobs_are_spooled_while_the_primary_is_down_and_replayed_once_it_is_back() {
    let s = setup(true).await;
    s.fallback.enqueue(job(0)).await.unwrap();
    s.primary.set_down(true);

    let mut ids = Vec::new();
    let first = s.fallback.enqueue(job(1)).await.unwrap();
    assert!(first.created && s.fallback.is_active());
    ids.push(first.job.id);
    let batch: Vec<NewJob> = (2..50).map(job).collect();
    for e in s.fallback.enqueue_batch(batch).await.unwrap() {
        assert!(e.created);
        ids.push(e.job.id);
    }
    let st = s.fallback.status();
    assert_eq!((st.active, st.spooled), (true, 49));
    assert!(
        st.error
            .as_deref()
            .unwrap_or("")
            .contains("connection refused")
    );

    // Only the first enqueue tried the primary; the rest failed over at once.
    let tried = s.primary.calls_while_down.load(Ordering::SeqCst);
    assert_eq!(tried, 1);
    // Reads fail fast with a message saying what happens, without calling the primary.
    let err = s.fallback.list(ListFilter::default()).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::Unavailable(m) if m.contains("fallback spool (49 waiting)")),
        "{err}"
    );
    assert_eq!(s.primary.calls_while_down.load(Ordering::SeqCst), tried);
    // ... but a spooled job can be looked up.
    let got = s
        .fallback
        .get(&ids[5])
        .await
        .unwrap()
        .expect("in the spool");
    assert_eq!(got.id, ids[5]);
    // Health: degraded, not unhealthy.
    assert!(s.fallback.ping().await.is_ok());
    let info = s.fallback.info().await.unwrap();
    let spool = info.fallback.as_ref().expect("fallback facts");
    assert!(spool.active);
    assert_eq!(spool.jobs, 49);
    assert!(
        info.warnings[0]
            .starts_with("degraded: redis unreachable, 49 jobs in the local fallback spool"),
        "{:?}",
        info.warnings
    );

    // Still down: the probe fails, nothing moves.
    let r = s.fallback.run_once().await.unwrap();
    assert_eq!((r.probed, r.recovered, r.remaining), (true, false, 49));

    s.primary.set_down(false);
    let r = s.fallback.run_once().await.unwrap();
    assert_eq!((r.recovered, r.replayed, r.remaining), (true, 49, 0));
    assert!(!s.fallback.is_active());
    let mut in_primary = primary_ids(&s.primary).await;
    assert_eq!(in_primary.len(), 50, "each job once");
    in_primary.sort();
    in_primary.dedup();
    assert_eq!(in_primary.len(), 50);
    for id in &ids {
        assert!(in_primary.contains(id), "job {id} kept its id");
    }
    assert_eq!(
        crate::storage::fallback::count_jobs(&*s.fallback.spool())
            .await
            .unwrap(),
        0
    );
    let info = s.fallback.info().await.unwrap();
    assert!(!info.fallback.expect("fallback facts").active, "standby");
}

#[tokio::test]
async fn a_primary_down_at_start_up_is_opened_once_it_answers() {
    let s = setup(false).await;
    assert!(s.fallback.is_active());
    let out = s.fallback.enqueue(job(1)).await.unwrap();
    assert!(out.created);
    assert!(
        s.fallback
            .claim(ClaimRequest {
                types: vec!["fb".into()],
                limit: 1,
                lease: Duration::from_secs(30),
                worker: "w".into(),
            })
            .await
            .is_err()
    );
    let r = s.fallback.run_once().await.unwrap();
    assert_eq!((r.probed, r.recovered), (true, false));

    s.reachable.store(true, Ordering::SeqCst);
    s.primary.set_down(false);
    let r = s.fallback.run_once().await.unwrap();
    assert_eq!((r.recovered, r.replayed, r.remaining), (true, 1, 0));
    assert_eq!(primary_ids(&s.primary).await, vec![out.job.id]);
}

#[tokio::test]
async fn a_replay_interrupted_after_the_import_duplicates_nothing() {
    let s = setup(true).await;
    s.primary.set_down(true);
    let ids: Vec<String> = s
        .fallback
        .enqueue_batch((0..30).map(job).collect())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.job.id)
        .collect();
    // A crash after the import and before the delete: the primary has the jobs already.
    s.primary.set_down(false);
    let spooled = s
        .fallback
        .spool()
        .list(ListFilter {
            limit: 1000,
            ..ListFilter::default()
        })
        .await
        .unwrap()
        .jobs;
    s.primary
        .inner
        .import_jobs(spooled[..20].to_vec(), ImportEvents::None)
        .await
        .unwrap();

    let r = s.fallback.run_once().await.unwrap();
    assert_eq!(
        (r.replayed, r.already_there, r.unique_taken, r.remaining),
        (10, 20, 0, 0)
    );
    let in_primary = primary_ids(&s.primary).await;
    assert_eq!(in_primary.len(), 30);
    for id in &ids {
        assert!(in_primary.contains(id));
    }
    // A second replay finds nothing to do.
    assert_eq!(s.fallback.run_once().await.unwrap().replayed, 0);
}

#[tokio::test]
async fn a_spooled_job_whose_unique_key_is_taken_is_handed_over_cancelled() {
    let s = setup(true).await;
    let mut held = job(1);
    held.unique_key = Some("k".into());
    let live = s.fallback.enqueue(held.clone()).await.unwrap().job;
    s.primary.set_down(true);
    held.id = crate::job::new_job_id();
    let spooled = s.fallback.enqueue(held).await.unwrap();
    assert!(
        spooled.created,
        "the spool cannot see the primary's unique keys"
    );
    s.primary.set_down(false);
    let r = s.fallback.run_once().await.unwrap();
    assert_eq!((r.replayed, r.unique_taken, r.remaining), (0, 1, 0));
    let mut ids = vec![live.id.clone(), spooled.job.id.clone()];
    ids.sort();
    let mut in_primary = primary_ids(&s.primary).await;
    in_primary.sort();
    assert_eq!(in_primary, ids);
    let dup = s.fallback.get(&spooled.job.id).await.unwrap().unwrap();
    assert_eq!(dup.status, JobState::Cancelled);
    let why = dup.error.unwrap_or_default();
    assert!(why.contains("unique key `k`"), "{why}");
    assert_eq!(
        s.fallback.get(&live.id).await.unwrap().unwrap().status,
        JobState::Pending,
        "the live job is untouched"
    );
    // A second replay finds nothing.
    assert_eq!(s.fallback.run_once().await.unwrap().unique_taken, 0);
}

#[tokio::test]
async fn spooled_jobs_can_be_cancelled_and_deleted_while_the_primary_is_down() {
    let s = setup(true).await;
    let before = s.fallback.enqueue(job(1)).await.unwrap().job;
    s.primary.set_down(true);
    let a = s.fallback.enqueue(job(2)).await.unwrap().job;
    let b = s.fallback.enqueue(job(3)).await.unwrap().job;
    assert_eq!(s.fallback.status().spooled, 2);
    match s.fallback.cancel(&a.id).await.unwrap() {
        CancelOutcome::Cancelled(j) => assert_eq!(j.status, JobState::Cancelled),
        other => panic!("{other:?}"),
    }
    assert!(s.fallback.delete(&b.id).await.unwrap());
    assert_eq!(s.fallback.status().spooled, 1);
    // A job in the primary cannot be reached while it is down: say so, do not claim 404.
    let err = s.fallback.cancel(&before.id).await.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
    let err = s.fallback.delete(&before.id).await.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
    s.primary.set_down(false);
    let r = s.fallback.run_once().await.unwrap();
    assert_eq!((r.replayed, r.remaining), (1, 0));
    assert_eq!(
        s.primary.inner.get(&a.id).await.unwrap().unwrap().status,
        JobState::Cancelled,
        "handed over as cancelled"
    );
    assert!(s.primary.inner.get(&b.id).await.unwrap().is_none());
}

#[tokio::test]
async fn invalid_jobs_are_refused_not_spooled() {
    let s = setup(false).await;
    let mut bad = job(1);
    bad.priority = 0;
    let err = s.fallback.enqueue(bad).await.unwrap_err();
    assert!(matches!(err, StorageError::InvalidInput(_)), "{err}");
    assert_eq!(s.fallback.status().spooled, 0);
}

#[tokio::test]
async fn a_spool_left_by_an_earlier_run_is_replayed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
    {
        let spool = SqliteStorage::open(&path, StorageOptions::default(), clock.clone())
            .await
            .unwrap();
        spool.enqueue(job(7)).await.unwrap();
    }
    let primary: Arc<dyn Storage> =
        Arc::new(MemoryStorage::new(StorageOptions::default(), clock.clone()));
    let p = primary.clone();
    let opener: Opener = Box::new(move || {
        let p = p.clone();
        Box::pin(async move { Ok(p) })
    });
    let fb = FallbackStorage::open_with(
        opener,
        &format!("sqlite://{}", path.display()),
        StorageOptions::default(),
        clock,
        "redis",
    )
    .await
    .unwrap();
    assert_eq!(fb.status().spooled, 1);
    let r = fb.run_once().await.unwrap();
    assert_eq!((r.probed, r.replayed, r.remaining), (false, 1, 0));
    assert_eq!(
        primary.stats().await.unwrap().types["fb"]
            .counts
            .values()
            .sum::<u64>(),
        1
    );
}

#[tokio::test]
async fn open_refuses_a_primary_that_is_not_redis() {
    let err = open(
        "sqlite://./x.db",
        "./spool.db",
        StorageOptions::default(),
        Arc::new(ManualClock::new()),
    )
    .await
    .err()
    .expect("a sqlite primary is refused");
    assert!(
        err.to_string()
            .contains("only makes sense in front of redis"),
        "{err}"
    );
    assert!(spool_file("redis://x").is_err());
    assert_eq!(
        spool_file("sqlite://a/b.db").unwrap(),
        PathBuf::from("a/b.db")
    );
}

#[tokio::test]
async fn a_delete_removes_both_copies_of_a_job_whose_enqueue_outcome_was_unknown() {
    // An enqueue that timed out after Redis wrote it leaves the job in both places.
    let s = setup(true).await;
    let new = job(1);
    let id = s.fallback.enqueue(new.clone()).await.unwrap().job.id;
    s.fallback.spool().enqueue(new).await.unwrap();
    s.fallback.spooled.fetch_add(1, Ordering::SeqCst);
    assert!(s.fallback.delete(&id).await.unwrap());
    assert!(s.primary.inner.get(&id).await.unwrap().is_none());
    assert!(s.fallback.spool().get(&id).await.unwrap().is_none());
    // Nothing comes back at the next replay.
    let r = s.fallback.run_once().await.unwrap();
    assert_eq!((r.replayed, r.remaining), (0, 0));
    assert!(s.fallback.get(&id).await.unwrap().is_none());
}
