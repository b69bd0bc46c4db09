UPDATE jobs
SET status = 'completed', result = ?1, logs = ?2, plugin_version = ?3, finished_at = ?4,
    lease_token = NULL, lease_expires_at = NULL, worker = NULL
WHERE id = ?5 AND status = 'running' AND lease_token = ?6
RETURNING type, attempt
