//! SQLite-only behaviour: files that are not ours, damaged or locked, schema versions and
//! migrations, and the query plans that keep claims O(log n).

use super::connection::{self, APPLICATION_ID};
use super::{SqliteStorage, sql};
use crate::job::{Clock, JobState, SystemClock};
use crate::storage::{
    CacheKey, JobPage, ListFilter, SqliteOptions, Storage, StorageError, StorageOptions,
};
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn quick() -> StorageOptions {
    StorageOptions {
        sqlite: SqliteOptions {
            busy_timeout: Duration::from_millis(100),
            ..SqliteOptions::default()
        },
        ..StorageOptions::default()
    }
}

async fn open(path: &Path) -> Result<SqliteStorage, StorageError> {
    SqliteStorage::open(path, quick(), clock()).await
}

fn user_version(path: &Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_new_file_gets_the_latest_schema_and_our_application_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    drop(open(&path).await.unwrap());
    assert_eq!(user_version(&path), sql::MIGRATIONS.len() as i64);
    let conn = Connection::open(&path).unwrap();
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(app, APPLICATION_ID);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_file_from_a_newer_spool_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    drop(open(&path).await.unwrap());
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let err = open(&path).await.unwrap_err();
    assert!(matches!(err, StorageError::Corrupt(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains(&format!(
            "schema version 99, newer than this spool understands ({})",
            sql::MIGRATIONS.len()
        )),
        "{message}"
    );
    assert!(message.contains("upgrade spool"), "{message}");
    assert_eq!(user_version(&path), 99);
}

#[test]
fn migrations_run_in_order_and_resume_after_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let conn = Connection::open(&path).unwrap();
    let m1 = "CREATE TABLE t (a INTEGER);";
    let m2 = "ALTER TABLE t ADD COLUMN b TEXT DEFAULT 'x';";
    connection::migrate(&conn, &path, &[m1]).unwrap();
    conn.execute("INSERT INTO t (a) VALUES (7)", []).unwrap();
    assert_eq!(user_version(&path), 1);
    // A later release opens the older file: only the new migration runs.
    connection::migrate(&conn, &path, &[m1, m2]).unwrap();
    assert_eq!(user_version(&path), 2);
    let (a, b): (i64, String) = conn
        .query_row("SELECT a, b FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((a, b.as_str()), (7, "x"));
    // A failing migration is rolled back and leaves the version where it was.
    let bad = "CREATE TABLE u (a); CREATE TABLE t (a);";
    let err = connection::migrate(&conn, &path, &[m1, m2, bad]).unwrap_err();
    assert!(
        err.to_string().contains("schema migration 3 failed"),
        "{err}"
    );
    assert_eq!(user_version(&path), 2);
    let u: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'u'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(u, 0);
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
    let err = open(&path).await.unwrap_err();
    assert!(matches!(err, StorageError::Corrupt(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("`{}` is not a SQLite database", path.display())),
        "{message}"
    );
    assert!(
        message.contains("point the storage url at another file"),
        "{message}"
    );
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("these are my notes")
    );
}

#[tokio::test]
async fn a_database_of_another_application_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE invoices (id INTEGER);")
        .unwrap();
    let message = open(&path).await.unwrap_err().to_string();
    assert!(
        message.contains("is a SQLite database of another application"),
        "{message}"
    );
    assert_eq!(user_version(&path), 0);
}

#[tokio::test]
async fn a_locked_database_is_reported_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    drop(open(&path).await.unwrap());
    let holder = Connection::open(&path).unwrap();
    holder
        .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
        .unwrap();
    let err = open(&path).await.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "`{}` is locked by another process",
            path.display()
        )),
        "{message}"
    );
    holder
        .execute_batch("COMMIT; PRAGMA locking_mode = NORMAL;")
        .unwrap();
    drop(holder);
    assert!(open(&path).await.is_ok());
}

#[tokio::test]
async fn a_damaged_file_says_so_and_names_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.db");
    {
        let s: Arc<dyn Storage> = Arc::new(open(&path).await.unwrap());
        let jobs = (0..2_000)
            .map(|_| crate::storage::conformance::job("damage"))
            .collect();
        s.enqueue_batch(jobs).await.unwrap();
    }
    // Fold the WAL in, then scribble over the middle half of the file (not the header, nor
    // the schema on the first pages): the jobs' table and indexes are there.
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len / 4..len * 3 / 4] {
        *b = 0xA5;
    }
    std::fs::write(&path, bytes).unwrap();
    // Stats read the per-type counts, not the jobs; a listing of every job reads them all.
    let err = match open(&path).await {
        Err(e) => e,
        Ok(s) => s
            .list(crate::storage::ListFilter {
                limit: 5_000,
                ..Default::default()
            })
            .await
            .unwrap_err(),
    };
    assert!(matches!(err, StorageError::Corrupt(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("`{}` is damaged", path.display())),
        "{message}"
    );
    assert!(message.contains(".recover"), "{message}");
}

/// `EXPLAIN QUERY PLAN` lines of a statement.
fn plan(conn: &Connection, sql: &str) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let count = stmt.parameter_count();
    let params: Vec<rusqlite::types::Value> = (0..count)
        .map(|_| rusqlite::types::Value::Integer(1))
        .collect();
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| {
            r.get::<_, String>(3)
        })
        .unwrap();
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .unwrap()
        .join("\n")
}

#[tokio::test]
async fn hot_statements_use_their_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.db");
    drop(open(&path).await.unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("ANALYZE").unwrap();
    for (sql, index) in [
        (sql::claim(1), "jobs_ready"),
        (sql::claim(3), "jobs_ready"),
        (sql::PROMOTE_DUE.to_owned(), "jobs_due"),
        (sql::EXPIRED_LEASES.to_owned(), "jobs_leased"),
        (sql::LIVE_HOLDER.to_owned(), "jobs_unique_live"),
        (sql::SWEEP_BY_AGE.to_owned(), "jobs_finished"),
        (sql::SWEEP_BY_COUNT.to_owned(), "jobs_finished"),
        (sql::COUNT_BOUNDARY.to_owned(), "jobs_finished"),
        (sql::FINISHED_TYPES.to_owned(), "jobs_finished"),
        (sql::OLDEST_PENDING.to_owned(), "jobs_ready"),
        (sql::JOB_TYPES.to_owned(), "jobs_by_type"),
        (
            sql::IDS_BY_TYPE_STATUS.to_owned(),
            "COVERING INDEX jobs_by_type",
        ),
        (sql::list(true, true), "jobs_by_type"),
    ] {
        let plan = plan(&conn, &sql);
        assert!(
            plan.contains(index),
            "want {index} in the plan of\n{sql}\n---\n{plan}"
        );
        // Claims must never sort all pending jobs or scan the table, nor may the type
        // listing that a listing by status starts with.
        if index == "jobs_ready" || sql == sql::JOB_TYPES {
            assert!(
                !plan.contains("SCAN jobs\n") && !plan.ends_with("SCAN jobs"),
                "{plan}"
            );
        }
    }
}

#[tokio::test]
async fn the_checkpoint_thread_copies_the_wal_into_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let s = open(&path).await.unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    // A few hundred pages of WAL: far below the writer's own checkpoint threshold, so only
    // the checkpoint thread can move them into the database file.
    let payload = crate::job::parse_payload(&format!("\"{}\"", "x".repeat(2000)), 1 << 20).unwrap();
    let jobs: Vec<_> = (0..500)
        .map(|_| crate::job::NewJob::new("wal", payload.clone()))
        .collect();
    s.enqueue_batch(jobs).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = std::fs::metadata(&path).unwrap().len();
        if now > before + 500 * 2000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {now} bytes (was {before}): nothing checkpointed it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A connection to a new file at `path` holding the schema of version `version`, as that
/// version of the daemon left it.
fn file_at_version(path: &Path, version: usize) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))
        .unwrap();
    connection::migrate(&conn, path, &sql::MIGRATIONS[..version]).unwrap();
    conn
}

#[tokio::test]
async fn a_file_of_schema_version_1_is_migrated_with_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = file_at_version(&path, 1);
        conn.execute(
            "INSERT INTO jobs (id, type, payload, priority, status, max_attempts, run_at, \
             created_at, unique_key) VALUES ('0190-old', 'echo', '{}', 5, 'pending', 4, 1, 1, 'k')",
            [],
        )
        .unwrap();
    }
    assert_eq!(user_version(&path), 1);
    let s = open(&path).await.unwrap();
    assert_eq!(user_version(&path), sql::MIGRATIONS.len() as i64);
    let job = s.get("0190-old").await.unwrap().expect("the old job");
    assert_eq!(
        (job.unique_key.as_deref(), job.unique_for_ms),
        (Some("k"), None)
    );
    assert!(s.type_controls().await.unwrap().is_empty());
    assert!(s.schedules().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_version_3_file_loses_the_status_index_and_still_lists_by_status() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    {
        let conn = file_at_version(&path, 3);
        for (id, t, status) in [
            ("0190-a", "v3-a", "failed"),
            ("0190-b", "v3-b", "failed"),
            ("0190-c", "v3-a", "pending"),
            ("0190-d", "v3-c", "failed"),
        ] {
            conn.execute(
                "INSERT INTO jobs (id, type, payload, priority, status, max_attempts, run_at, \
                 created_at, finished_at) VALUES (?1, ?2, '{}', 5, ?3, 4, 1, 1, 2)",
                [id, t, status],
            )
            .unwrap();
        }
    }
    let indexes = |path: &Path| {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs'")
            .unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap()
    };
    assert_eq!(user_version(&path), 3);
    assert!(indexes(&path).contains(&"jobs_by_status".to_string()));
    let s = open(&path).await.unwrap();
    assert_eq!(user_version(&path), sql::MIGRATIONS.len() as i64);
    assert!(!indexes(&path).contains(&"jobs_by_status".to_string()));
    let failed = |cursor: Option<String>| ListFilter {
        status: Some(JobState::Failed),
        limit: 2,
        cursor,
        ..Default::default()
    };
    let first = s.list(failed(None)).await.unwrap();
    let ids = |p: &JobPage| p.jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&first), ["0190-d", "0190-b"]);
    let second = s.list(failed(first.next_cursor.clone())).await.unwrap();
    assert_eq!(ids(&second), ["0190-a"]);
    assert_eq!(second.next_cursor, None);
}

#[tokio::test]
async fn a_version_2_file_gets_its_cache_usage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    {
        let s = open(&path).await.unwrap();
        s.cache_set(CacheKey::new("p", "a"), "1234", None)
            .await
            .unwrap();
        s.cache_set(CacheKey::new("p", "bb"), "12", None)
            .await
            .unwrap();
        s.cache_set(CacheKey::new("q", "c"), "", None)
            .await
            .unwrap();
    }
    // Back to what version 2 wrote: no usage table, no triggers.
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DROP TRIGGER cache_usage_insert; DROP TRIGGER cache_usage_delete; \
             DROP TRIGGER cache_usage_update; DROP TABLE cache_usage; PRAGMA user_version = 2;",
        )
        .unwrap();
    let s = open(&path).await.unwrap();
    assert_eq!(user_version(&path), sql::MIGRATIONS.len() as i64);
    let usage = |entries, bytes| crate::storage::CacheUsage { entries, bytes };
    assert_eq!(s.cache_usage("p").await.unwrap(), usage(2, 9));
    assert_eq!(s.cache_usage("q").await.unwrap(), usage(1, 1));
    s.cache_set(CacheKey::new("p", "a"), "1", None)
        .await
        .unwrap();
    assert!(s.cache_delete(CacheKey::new("q", "c")).await.unwrap());
    assert_eq!(s.cache_usage("p").await.unwrap(), usage(2, 6));
    assert_eq!(s.cache_usage("q").await.unwrap(), usage(0, 0));
}

#[tokio::test]
async fn stats_of_a_large_store_come_from_a_recent_count() {
    use crate::job::JobState;
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir.path().join("large.db")).await.unwrap();
    for _ in 0..(super::LARGE_STORE / 10_000) {
        let jobs = (0..10_000)
            .map(|_| crate::storage::conformance::job("big"))
            .collect();
        s.enqueue_batch(jobs).await.unwrap();
    }
    let pending = |st: &crate::storage::Stats| st.types["big"].counts[&JobState::Pending];
    assert_eq!(pending(&s.stats().await.unwrap()), super::LARGE_STORE);
    s.enqueue(crate::storage::conformance::job("big"))
        .await
        .unwrap();
    // Within a second of the count, the same figures (and no count) answer.
    assert_eq!(pending(&s.stats().await.unwrap()), super::LARGE_STORE);
    // Later calls start a count in the background and soon see the new job.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if pending(&s.stats().await.unwrap()) == super::LARGE_STORE + 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the count never caught up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
