-- An attempt ended by failure, release or lease expiry: the new state is decided in Rust
-- (job::rules) and written here; the lease is cleared.
UPDATE jobs
SET status = ?1, run_at = ?2, attempt = ?3, error = ?4, logs = ?5, plugin_version = ?6,
    finished_at = ?7, lease_token = NULL, lease_expires_at = NULL, worker = NULL
WHERE id = ?8
RETURNING *
