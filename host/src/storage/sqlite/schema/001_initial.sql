-- Schema version 1: jobs, the event log and the plugin cache.
-- Times are milliseconds since the Unix epoch. Statuses are the lowercase state names.
-- `finished_at IS NOT NULL` exactly when the job is finished (completed, failed, cancelled).
-- Partial indexes say "finished" and "live" that way, or with `=`/`OR`: a predicate with an
-- IN list is evaluated per updated row at a cost that made completions 6x slower.

CREATE TABLE jobs (
    id               TEXT    NOT NULL UNIQUE,
    type             TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    status           TEXT    NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,  -- when it is (or was) ready to run
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    timeout_ms       INTEGER,
    unique_key       TEXT,
    progress_percent INTEGER,
    progress_message TEXT,
    result           TEXT,
    error            TEXT,
    logs             TEXT,              -- JSON array of strings
    plugin_version   TEXT,
    backoff          TEXT,              -- JSON BackoffPolicy
    lease_token      TEXT,
    lease_expires_at INTEGER,
    worker           TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);

-- Claim: the best pending jobs of one type, in claim order, in O(log n).
CREATE INDEX jobs_ready ON jobs (type, priority, run_at, id) WHERE status = 'pending';
-- Promotion of scheduled and retrying jobs.
CREATE INDEX jobs_due ON jobs (run_at) WHERE status = 'scheduled' OR status = 'retrying';
-- The reaper: expired leases.
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE status = 'running';
-- A unique key is held by at most one live job.
CREATE UNIQUE INDEX jobs_unique_live ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND finished_at IS NULL;
-- Retention: finished jobs per type and state, oldest first.
CREATE INDEX jobs_finished ON jobs (type, status, finished_at, id)
    WHERE finished_at IS NOT NULL;
-- Listing newest first by status, or by type (and status); counting for stats.
CREATE INDEX jobs_by_status ON jobs (status, id);
CREATE INDEX jobs_by_type ON jobs (type, status, id);

-- AUTOINCREMENT: ids are never reused after trimming, so readers can resume after one.
CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    kind     TEXT    NOT NULL,
    job_id   TEXT,
    job_type TEXT,
    at       INTEGER NOT NULL,
    data     TEXT    NOT NULL
);

CREATE TABLE cache (
    ns         TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (ns, key)
);
CREATE INDEX cache_expiry ON cache (expires_at) WHERE expires_at IS NOT NULL;
