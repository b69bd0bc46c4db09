-- Schema version 2: flow control per job type (pause, hold, rate limit, global concurrency),
-- the start log that rate limits count, and cron schedules.

-- One row per type that has any flow control set; `control` is the JSON of
-- storage::flow::TypeControl.
CREATE TABLE type_controls (
    type    TEXT PRIMARY KEY,
    control TEXT NOT NULL
) WITHOUT ROWID;

-- When jobs of a rate-limited type started (claim time, ms), for one window back.
CREATE TABLE rate_starts (
    type TEXT    NOT NULL,
    at   INTEGER NOT NULL
);
CREATE INDEX rate_starts_by_type ON rate_starts (type, at);

-- Cron schedules: `spec` is the JSON of storage::flow::Schedule; `last_tick` (ms) moves by
-- compare and set, so that each tick fires once however many daemons share the file.
CREATE TABLE schedules (
    name       TEXT PRIMARY KEY,
    spec       TEXT    NOT NULL,
    last_tick  INTEGER,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- `unique_for`: a finished job keeps its unique key taken for this many ms.
ALTER TABLE jobs ADD COLUMN unique_for_ms INTEGER;
-- The finished holders of unique keys with such a window, newest first per key.
CREATE INDEX jobs_unique_window ON jobs (unique_key, finished_at)
    WHERE unique_for_ms IS NOT NULL AND finished_at IS NOT NULL;
