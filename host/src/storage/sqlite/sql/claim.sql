-- Lease the best ready jobs: ?1 now, ?2 lease expiry, ?3 worker, ?4 limit. The ready marker is
-- replaced by the UNION ALL of one claim_ready.sql arm per type (its type and its own limit,
-- ?5 and ?6 for the first, ?7 and ?8 for the next...), so that each type is read from the
-- jobs_ready index in order: O(log n + limit) per type.
UPDATE jobs
SET status = 'running',
    attempt = attempt + 1,
    started_at = ?1,
    lease_expires_at = ?2,
    worker = ?3,
    lease_token = lower(hex(randomblob(16))),
    cancel_requested = 0,
    progress_percent = NULL,
    progress_message = NULL
WHERE rowid IN (
    SELECT rid FROM (/*ready*/) ORDER BY priority, run_at, id LIMIT ?4
)
RETURNING *
