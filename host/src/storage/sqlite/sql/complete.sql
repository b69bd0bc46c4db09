-- ?5 is the rowid that completed_lease.sql found. No RETURNING: SQLite collects RETURNING
-- rows in a temporary b-tree opened and dropped for every statement, which on this hot path
-- cost more than the separate read.
UPDATE jobs
SET status = 'completed', result = ?1, logs = ?2, plugin_version = ?3, finished_at = ?4,
    lease_token = NULL, lease_expires_at = NULL, worker = NULL
WHERE rowid = ?5
