//! Opening the database file: connection settings, telling apart "not a database", "damaged",
//! "locked" and "written by a newer spool", and running the schema migrations. Errors name
//! the file and say what to do.

use super::sql;
use crate::storage::{StorageError, StorageOptions};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::Path;

/// `PRAGMA application_id` of a spool database ("SPOL"), so another application's SQLite
/// file is refused rather than written into.
pub(super) const APPLICATION_ID: i32 = 0x5350_4f4c;

/// An error from a storage operation: SQLite's (mapped with the file's path once it reaches
/// the caller) or one of ours.
#[derive(Debug)]
pub(super) enum OpError {
    Sql(rusqlite::Error),
    Storage(StorageError),
}

impl From<rusqlite::Error> for OpError {
    fn from(e: rusqlite::Error) -> Self {
        OpError::Sql(e)
    }
}

impl From<StorageError> for OpError {
    fn from(e: StorageError) -> Self {
        OpError::Storage(e)
    }
}

impl From<crate::job::JobError> for OpError {
    fn from(e: crate::job::JobError) -> Self {
        OpError::Storage(e.into())
    }
}

impl OpError {
    pub(super) fn into_storage(self, path: &Path) -> StorageError {
        match self {
            OpError::Storage(e) => e,
            OpError::Sql(e) => sql_error(path, &e),
        }
    }
}

pub(super) type OpResult<T> = Result<T, OpError>;

/// What a SQLite error means for the operator of `path`.
pub(super) fn sql_error(path: &Path, e: &rusqlite::Error) -> StorageError {
    let p = path.display();
    let code = match e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    };
    match code {
        Some(ErrorCode::NotADatabase) => StorageError::Corrupt(format!(
            "`{p}` is not a SQLite database (or is encrypted): move it away or point the \
             storage url at another file"
        )),
        Some(ErrorCode::DatabaseCorrupt) => StorageError::Corrupt(format!(
            "`{p}` is damaged ({e}): restore a backup, or salvage it with \
             `sqlite3 {p} .recover | sqlite3 new.db` and point the storage url at the new file"
        )),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StorageError::Unavailable(format!(
                "`{p}` is locked by another process (another spool daemon busy writing, or a \
                 sqlite3 shell holding a transaction open) and stayed locked past the busy \
                 timeout: stop that process or use another file"
            ))
        }
        Some(ErrorCode::DiskFull) => StorageError::Unavailable(format!(
            "the disk holding `{p}` is full: free some space (the retention sweep deletes old \
             jobs)"
        )),
        Some(ErrorCode::CannotOpen) => StorageError::Unavailable(format!(
            "cannot open `{p}` ({e}): check that its folder exists and is writable"
        )),
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => StorageError::Unavailable(
            format!("`{p}` is read-only ({e}): give the daemon write access to it and its folder"),
        ),
        Some(ErrorCode::SystemIoFailure) => {
            StorageError::Unavailable(format!("I/O error on `{p}`: {e}"))
        }
        _ => StorageError::Internal(format!("sqlite error on `{p}`: {e}")),
    }
}

/// The writer connection: WAL, `synchronous=NORMAL`, schema checked and migrated.
///
/// Durability: with WAL, NORMAL syncs the WAL only at checkpoints, so a committed
/// transaction lives in the WAL file (the OS page cache) when `commit` returns. A killed
/// process (kill -9, a crash, OOM) loses nothing acknowledged; a power cut or kernel panic
/// may lose the last transactions since the previous checkpoint. `FULL` would fsync every
/// commit at several times the cost per transaction.
pub(super) fn open_writer(path: &Path, opts: &StorageOptions) -> Result<Connection, StorageError> {
    let map = |e: rusqlite::Error| sql_error(path, &e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(map)?;
    conn.busy_timeout(opts.sqlite.busy_timeout).map_err(map)?;
    conn.set_prepared_statement_cache_capacity(64);
    // The first reads of the file: a non-database fails here (NotADatabase), and a file
    // of another application or of a newer spool is refused before anything is changed.
    check_owner(&conn, path)?;
    check_version(&conn, path, sql::MIGRATIONS.len())?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(map)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError::Unavailable(format!(
            "cannot switch `{}` to WAL mode (got `{mode}`): put it on a local filesystem \
             (WAL needs shared memory, which network filesystems lack)",
            path.display()
        )));
    }
    conn.execute_batch(sql::WRITER_SETTINGS).map_err(map)?;
    migrate(&conn, path, sql::MIGRATIONS)?;
    // Take the write lock once, so a file another process keeps locked is reported now,
    // with its name, rather than on the first enqueue.
    conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")
        .map_err(map)?;
    Ok(conn)
}

/// A read connection: never writes (`query_only`), waits for locks like the writer.
pub(super) fn open_reader(path: &Path, opts: &StorageOptions) -> Result<Connection, StorageError> {
    let map = |e: rusqlite::Error| sql_error(path, &e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(map)?;
    conn.busy_timeout(opts.sqlite.busy_timeout).map_err(map)?;
    conn.set_prepared_statement_cache_capacity(32);
    conn.execute_batch(sql::READER_SETTINGS).map_err(map)?;
    Ok(conn)
}

/// The checkpoint thread's connection: read-write (a checkpoint writes the database file),
/// but it runs nothing except `PRAGMA wal_checkpoint`.
pub(super) fn open_checkpointer(
    path: &Path,
    opts: &StorageOptions,
) -> Result<Connection, StorageError> {
    let map = |e: rusqlite::Error| sql_error(path, &e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(map)?;
    conn.busy_timeout(opts.sqlite.busy_timeout).map_err(map)?;
    Ok(conn)
}

/// Refuses a SQLite file that belongs to another application.
fn check_owner(conn: &Connection, path: &Path) -> Result<(), StorageError> {
    let map = |e: rusqlite::Error| sql_error(path, &e);
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(map)?;
    if app_id == APPLICATION_ID {
        return Ok(());
    }
    let tables: i64 = conn
        .query_row(sql::USER_TABLES, [], |r| r.get(0))
        .map_err(map)?;
    if app_id == 0 && tables == 0 {
        return Ok(()); // a new, empty file
    }
    Err(StorageError::Corrupt(format!(
        "`{}` is a SQLite database of another application (application_id {app_id:#x}, {tables} \
         tables), not a spool database: point the storage url at another file",
        path.display()
    )))
}

/// The file's schema version, refused when newer than `latest`.
fn check_version(conn: &Connection, path: &Path, latest: usize) -> Result<i64, StorageError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| sql_error(path, &e))?;
    if version > latest as i64 || version < 0 {
        return Err(StorageError::Corrupt(format!(
            "`{}` has schema version {version}, newer than this spool understands ({latest}): \
             it was written by a newer release; upgrade spool, or point the storage url at \
             another file",
            path.display()
        )));
    }
    Ok(version)
}

/// Brings the schema to the newest version: each migration in its own `BEGIN IMMEDIATE`
/// transaction with its `user_version`, so an interrupted upgrade resumes where it stopped.
/// A file from a newer spool (a version past the last migration) is refused untouched.
pub(super) fn migrate(
    conn: &Connection,
    path: &Path,
    migrations: &[&str],
) -> Result<(), StorageError> {
    let version = check_version(conn, path, migrations.len())?;
    for (i, migration) in migrations.iter().enumerate().skip(version as usize) {
        let next = i as i64 + 1;
        let script = format!(
            "BEGIN IMMEDIATE;\n{migration}\nPRAGMA application_id = {APPLICATION_ID};\n\
             PRAGMA user_version = {next};\nCOMMIT;"
        );
        if let Err(e) = conn.execute_batch(&script) {
            let _ = conn.execute_batch("ROLLBACK");
            let err = sql_error(path, &e);
            return Err(match err {
                StorageError::Internal(m) => {
                    StorageError::Internal(format!("schema migration {next} failed: {m}"))
                }
                other => other,
            });
        }
    }
    Ok(())
}
