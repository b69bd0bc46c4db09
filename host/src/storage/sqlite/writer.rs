//! The one writer: a thread that owns the write connection and runs every change. Requests
//! queue on a channel; the thread takes all that are waiting (up to `MAX_BATCH`) and runs
//! them in ONE `BEGIN IMMEDIATE` transaction, each inside its own savepoint so one failing
//! request rolls back alone. Replies go out only after `COMMIT` returns, so an acknowledged
//! change is committed. This is the group commit that batches enqueues and completions from
//! many callers under load, and the single writer means no `SQLITE_BUSY` between our own
//! connections (readers never block the writer in WAL mode).

use super::connection::{OpResult, sql_error};
use crate::storage::{Result, StorageError, Wakers};
use rusqlite::Connection;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Requests per transaction at most; keeps one commit's latency bounded under a flood.
const MAX_BATCH: usize = 256;

/// What a request may ask of its transaction besides its own writes.
#[derive(Debug, Default)]
pub(super) struct TxCtx {
    /// Jobs became ready: wake idle workers once the transaction commits.
    pub(super) wake: bool,
}

/// A queued request, type-erased so one channel carries all of them.
trait WriteOp: Send {
    /// Runs the request on the connection (inside the open transaction). Returns whether it
    /// succeeded and what to reply once the transaction's fate is known.
    fn run(
        self: Box<Self>,
        conn: &Connection,
        ctx: &mut TxCtx,
        path: &Path,
    ) -> (bool, Box<dyn Finish>);
    /// Replies with `err` without running (the transaction could not start).
    fn abort(self: Box<Self>, err: StorageError);
}

trait Finish: Send {
    /// `commit` is the commit's error, if it failed (then every request in it failed).
    fn finish(self: Box<Self>, commit: Option<&StorageError>);
}

type OpFn<R> = Box<dyn FnOnce(&Connection, &mut TxCtx) -> OpResult<R> + Send>;

struct Op<R> {
    f: OpFn<R>,
    reply: oneshot::Sender<Result<R>>,
}

impl<R: Send + 'static> WriteOp for Op<R> {
    fn run(
        self: Box<Self>,
        conn: &Connection,
        ctx: &mut TxCtx,
        path: &Path,
    ) -> (bool, Box<dyn Finish>) {
        let Op { f, reply } = *self;
        let result = f(conn, ctx).map_err(|e| e.into_storage(path));
        (result.is_ok(), Box::new(Done { result, reply }))
    }

    fn abort(self: Box<Self>, err: StorageError) {
        let _ = self.reply.send(Err(err));
    }
}

struct Done<R> {
    result: Result<R>,
    reply: oneshot::Sender<Result<R>>,
}

impl<R: Send> Finish for Done<R> {
    fn finish(self: Box<Self>, commit: Option<&StorageError>) {
        let out = match commit {
            Some(err) => Err(err.clone()),
            None => self.result,
        };
        // The caller may have gone away (timed out); the change stands either way.
        let _ = self.reply.send(out);
    }
}

/// Handle to the writer thread. Dropping it lets the thread finish the queued requests,
/// close the connection (checkpointing the WAL) and exit; drop waits for that.
pub(super) struct Writer {
    tx: Option<mpsc::Sender<Box<dyn WriteOp>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(super) fn spawn(conn: Connection, path: PathBuf, wakers: Arc<Wakers>) -> Result<Writer> {
        let (tx, rx) = mpsc::channel::<Box<dyn WriteOp>>();
        let thread = std::thread::Builder::new()
            .name("spool-sqlite-writer".into())
            .spawn(move || run(conn, rx, &path, &wakers))
            .map_err(|e| {
                StorageError::Internal(format!("cannot start the sqlite writer thread: {e}"))
            })?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Whether the writer thread still runs. It only stops on a bug (a panic outside a
    /// request); then every write fails, so health checks must not report the store fine.
    pub(super) fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Runs `f` in the next transaction and returns its result once committed.
    pub(super) async fn call<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection, &mut TxCtx) -> OpResult<R> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let op: Box<dyn WriteOp> = Box::new(Op {
            f: Box::new(f),
            reply,
        });
        let stopped =
            || StorageError::Internal("the sqlite writer thread stopped (see the logs)".into());
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(op)
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| {
            StorageError::Internal(
                "the sqlite writer dropped a request (a bug: see the logs)".into(),
            )
        })?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Box<dyn WriteOp>>, path: &Path, wakers: &Wakers) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let outcome = run_batch(&conn, batch, path);
        if outcome.committed {
            wakers.events.notify();
        }
        if outcome.committed && outcome.wake {
            wakers.work.notify();
        }
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(path = %path.display(), error = %e, "closing the sqlite database failed");
    }
}

/// How a batch's transaction ended.
struct BatchOutcome {
    committed: bool,
    /// A request asked to wake idle workers.
    wake: bool,
}

const NOT_COMMITTED: BatchOutcome = BatchOutcome {
    committed: false,
    wake: false,
};

/// One transaction for the whole batch.
fn run_batch(conn: &Connection, batch: Vec<Box<dyn WriteOp>>, path: &Path) -> BatchOutcome {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let err = sql_error(path, &e);
        for op in batch {
            op.abort(err.clone());
        }
        return NOT_COMMITTED;
    }
    // A lone request needs no savepoint: if it fails, the transaction is rolled back.
    let single = batch.len() == 1;
    let mut ctx = TxCtx::default();
    let mut finishes: Vec<Box<dyn Finish>> = Vec::with_capacity(batch.len());
    let mut failed_alone = false;
    let mut broken: Option<StorageError> = None;
    for op in batch {
        if broken.is_some() {
            finishes.push(Box::new(Aborted(op)));
            continue;
        }
        if !single && let Err(e) = exec(conn, "SAVEPOINT op") {
            broken = Some(sql_error(path, &e));
            finishes.push(Box::new(Aborted(op)));
            continue;
        }
        // A panic is a bug; it fails this request (its reply is dropped), not the thread.
        let (ok, finish) = match catch_unwind(AssertUnwindSafe(|| op.run(conn, &mut ctx, path))) {
            Ok(done) => (done.0, Some(done.1)),
            Err(_) => {
                tracing::error!("a sqlite write request panicked; it was rolled back");
                (false, None)
            }
        };
        finishes.extend(finish);
        if single {
            failed_alone = !ok;
        } else {
            let end = if ok {
                exec(conn, "RELEASE op")
            } else {
                exec(conn, "ROLLBACK TO op").and_then(|()| exec(conn, "RELEASE op"))
            };
            if let Err(e) = end {
                broken = Some(sql_error(path, &e));
            }
        }
    }
    let commit = if failed_alone {
        rollback(conn, path);
        Ok(())
    } else if let Some(err) = broken {
        rollback(conn, path);
        Err(err)
    } else {
        exec(conn, "COMMIT").map_err(|e| {
            let err = sql_error(path, &e);
            rollback(conn, path);
            err
        })
    };
    let committed = commit.is_ok() && !failed_alone;
    for finish in finishes {
        finish.finish(commit.as_ref().err());
    }
    BatchOutcome {
        committed,
        wake: ctx.wake,
    }
}

/// Runs a transaction-control statement, prepared once: parsing these for every batch was
/// a measurable share of a small transaction.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn rollback(conn: &Connection, path: &Path) {
    if conn.is_autocommit() {
        return;
    }
    if let Err(e) = conn.execute_batch("ROLLBACK") {
        tracing::error!(path = %path.display(), error = %e, "sqlite rollback failed");
    }
}

/// A request that never ran because the transaction broke before its turn.
struct Aborted(Box<dyn WriteOp>);

impl Finish for Aborted {
    fn finish(self: Box<Self>, commit: Option<&StorageError>) {
        let err = commit.cloned().unwrap_or_else(|| {
            StorageError::Internal("the transaction broke before this request ran".into())
        });
        self.0.abort(err);
    }
}
