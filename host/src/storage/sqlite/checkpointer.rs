//! WAL checkpoints mostly off the write path. A checkpoint copies committed WAL frames into
//! the database file and fsyncs both; run by SQLite's auto-checkpoint (every 1000 pages by
//! default) it happens inside the writer's `COMMIT`, so every request queued behind that
//! commit waits for the fsyncs (up to ~10 ms each on this machine: the p99/max spikes of
//! `spool bench --rate`). This thread checkpoints from its own connection every `EVERY`, in
//! PASSIVE mode, which never blocks the writer.
//!
//! What it cannot do is rewind the WAL: SQLite starts the WAL file over only when a write
//! transaction begins with every frame already copied, and under load the writer has always
//! appended more by then. So the writer keeps an auto-checkpoint, at 10000 pages
//! (`writer_settings.sql`): it finds nearly everything copied already, pays only the syncs,
//! and lets the WAL start over, 10 times less often than by default. That is also the
//! backstop that keeps the WAL bounded (about 40 MiB) should this thread fail or stop.

use super::connection::{open_checkpointer, sql_error};
use super::sql;
use crate::storage::{Result, StorageError, StorageOptions};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the WAL is checkpointed. Short enough that the WAL stays far below the
/// writer's backstop threshold at tens of thousands of writes per second.
const EVERY: Duration = Duration::from_millis(250);

/// Stops and joins the thread on drop.
pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(super) fn spawn(path: PathBuf, opts: &StorageOptions) -> Result<Checkpointer> {
        let conn = open_checkpointer(&path, opts)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("spool-sqlite-checkpoint".into())
            .spawn(move || run(&conn, &path, &stopped))
            .map_err(|e| {
                StorageError::Internal(format!("cannot start the sqlite checkpoint thread: {e}"))
            })?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, path: &Path, stopped: &mpsc::Receiver<()>) {
    // Logged once per streak of failures, not every 250 ms.
    let mut failing = false;
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
        match checkpoint(conn) {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                let e = sql_error(path, &e);
                tracing::warn!(path = %path.display(), error = %e, "sqlite WAL checkpoint failed; the writer's own checkpoints take over");
            }
            Err(_) => {}
        }
    }
}

fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached(sql::CHECKPOINT)?
        .query_row([], |r| r.get::<_, i64>(0))
        .map(|_busy| ())
}
