UPDATE jobs
SET status = 'pending', attempt = 0, run_at = ?1, started_at = NULL, finished_at = NULL,
    result = NULL, progress_percent = NULL, progress_message = NULL, cancel_requested = 0,
    lease_token = NULL, lease_expires_at = NULL, worker = NULL
WHERE id = ?2
RETURNING *
