//! The storage conformance suite against `sqlite://`, plus what only SQLite has: URLs and
//! paths, reopening a file, the claim query plan, trimming the event log, and acknowledged
//! enqueues surviving `kill -9` (this binary re-runs itself as the child that is killed).
//! Run: `cargo test -p spool-host --features testing --test storage_sqlite`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
#![cfg(feature = "testing")]

use spool_host::job::{Clock, JobState, ManualClock, NewJob, SystemClock};
use spool_host::storage::conformance::{claim_one, completion, enqueue, job};
use spool_host::storage::sqlite::SqliteStorage;
use spool_host::storage::{self, NewEvent, RetentionPolicy, Storage, StorageError, StorageOptions};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

async fn sqlite_factory(clock: Arc<ManualClock>) -> Arc<dyn Storage> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("spool.db");
    let opts = spool_host::storage::conformance::options();
    let storage = SqliteStorage::open(&path, opts, clock).await;
    Arc::new(storage.expect("open sqlite").holding(dir))
}

spool_host::conformance_tests!(sqlite_factory);

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[tokio::test]
async fn open_creates_parent_folders_for_absolute_and_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    let abs = dir.path().join("a/b/spool.db");
    let url = format!("sqlite://{}", abs.display());
    let s = storage::open(&url, StorageOptions::default(), clock())
        .await
        .unwrap();
    assert_eq!(s.backend(), "sqlite");
    drop(s);
    assert!(abs.is_file());

    // Relative to the working directory, as `sqlite://./data/spool.db` is.
    let cwd = std::env::current_dir().unwrap();
    let ups = "../".repeat(cwd.components().count());
    let rel = format!("{ups}{}", dir.path().join("rel/x/spool.db").display());
    let s = storage::open(
        &format!("sqlite://{rel}"),
        StorageOptions::default(),
        clock(),
    )
    .await;
    assert_eq!(s.unwrap().backend(), "sqlite");
    assert!(dir.path().join("rel/x/spool.db").is_file());
}

#[tokio::test]
async fn open_explains_bad_urls_without_echoing_secrets() {
    let err = storage::open(
        "ftp://user:hunter2@host/x",
        StorageOptions::default(),
        clock(),
    )
    .await;
    let message = err.err().unwrap().to_string();
    assert!(
        message.contains("unsupported storage url scheme `ftp`"),
        "{message}"
    );
    assert!(
        message.contains("sqlite://PATH") && message.contains("memory://"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    let err = storage::open("sqlite://", StorageOptions::default(), clock()).await;
    assert!(err.err().unwrap().to_string().contains("names no file"));
    let err = storage::open("./spool.db", StorageOptions::default(), clock()).await;
    assert!(err.err().unwrap().to_string().contains("scheme `(none)`"));
    let mem = storage::open("memory://", StorageOptions::default(), clock())
        .await
        .unwrap();
    assert_eq!(mem.backend(), "memory");
}

#[tokio::test]
async fn a_folder_is_not_a_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStorage::open(dir.path(), StorageOptions::default(), clock()).await;
    let message = err.err().unwrap().to_string();
    assert!(message.contains("is a folder"), "{message}");
}

#[tokio::test]
async fn jobs_survive_closing_and_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let s: Arc<dyn Storage> = Arc::new(
        SqliteStorage::open(&path, StorageOptions::default(), clock())
            .await
            .unwrap(),
    );
    let a = enqueue(&s, job("reopen")).await;
    let b = enqueue(
        &s,
        NewJob {
            priority: 1,
            ..job("reopen")
        },
    )
    .await;
    drop(s);
    let s: Arc<dyn Storage> = Arc::new(
        SqliteStorage::open(&path, StorageOptions::default(), clock())
            .await
            .unwrap(),
    );
    assert_eq!(claim_one(&s, "reopen").await.job.id, b.id);
    let c = claim_one(&s, "reopen").await;
    assert_eq!(c.job.id, a.id);
    s.complete(vec![completion(&c)]).await.unwrap();
    assert_eq!(
        s.get(&a.id).await.unwrap().unwrap().status,
        JobState::Completed
    );
}

#[tokio::test]
async fn sweep_trims_the_event_log_to_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StorageOptions {
        max_events: 10,
        ..StorageOptions::default()
    };
    let s = SqliteStorage::open(dir.path().join("e.db"), opts, clock())
        .await
        .unwrap();
    for i in 0..25 {
        let event = NewEvent {
            kind: "plugin.loaded".into(),
            job_id: None,
            job_type: None,
            data: serde_json::json!({ "i": i }),
        };
        s.publish_event(event).await.unwrap();
    }
    s.sweep_retention(&RetentionPolicy::default())
        .await
        .unwrap();
    let kept = s.events_since(None, 100).await.unwrap();
    assert_eq!(kept.len(), 10);
    assert_eq!(kept[0].data["i"], 15);
    // Ids are not reused after trimming: a reader resuming from an old id sees the rest.
    let next = s
        .publish_event(NewEvent {
            kind: "plugin.loaded".into(),
            job_id: None,
            job_type: None,
            data: serde_json::json!({}),
        })
        .await
        .unwrap();
    assert_eq!(next.id, "26");
    assert_eq!(s.events_since(Some("3"), 100).await.unwrap().len(), 11);
}

#[tokio::test]
async fn payload_limit_comes_from_the_options() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StorageOptions {
        max_payload_bytes: 16,
        ..StorageOptions::default()
    };
    let s = SqliteStorage::open(dir.path().join("p.db"), opts, clock())
        .await
        .unwrap();
    let big = spool_host::job::parse_payload(r#"{"text":"far too long"}"#, 1 << 20).unwrap();
    match s
        .enqueue(NewJob {
            payload: big,
            ..job("limit")
        })
        .await
    {
        Err(StorageError::InvalidInput(m)) => {
            assert!(m.contains("23 bytes, over the limit of 16 bytes"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

/// Set in the child process: the database it enqueues into.
const CHILD_DB: &str = "SPOOL_KILL_TEST_DB";

/// The child half of `acknowledged_enqueues_survive_kill_9`: enqueues jobs one at a time
/// and prints each id once the store acknowledged it, until it is killed. Run on its own
/// (without the variable) it does nothing.
#[tokio::test]
async fn kill_9_child_enqueues_until_killed() {
    let Some(db) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let s = SqliteStorage::open(db, StorageOptions::default(), clock())
        .await
        .unwrap();
    let mut out = std::io::stdout();
    for _ in 0..1_000_000 {
        let j = s.enqueue(job("durable")).await.unwrap();
        use std::io::Write;
        writeln!(out, "acked {}", j.job.id).unwrap();
        out.flush().unwrap();
    }
}

#[tokio::test]
async fn acknowledged_enqueues_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("durable.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_9_child_enqueues_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 500 {
        let line = lines.next().expect("child output ended early").unwrap();
        if let Some(id) = line.strip_prefix("acked ") {
            acked.push(id.to_owned());
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no checkpoint, no clean close
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed");

    let s = SqliteStorage::open(&db, StorageOptions::default(), clock())
        .await
        .unwrap();
    for id in &acked {
        let j = s.get(id).await.unwrap();
        assert!(j.is_some(), "acknowledged job {id} was lost by kill -9");
    }
    let stats = s.stats().await.unwrap();
    let pending = stats.types["durable"].counts[&JobState::Pending];
    assert!(pending >= acked.len() as u64, "{pending} < {}", acked.len());
}
