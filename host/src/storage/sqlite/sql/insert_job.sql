-- Insert a job unless its id exists or a live job holds its unique key.
INSERT INTO jobs (
    id, type, payload, priority, status, attempt, max_attempts, run_at, created_at,
    started_at, finished_at, timeout_ms, unique_key, progress_percent, progress_message,
    result, error, logs, plugin_version, backoff, lease_token, lease_expires_at, worker,
    cancel_requested, unique_for_ms
)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
        ?20, NULL, ?21, NULL, ?22, ?23)
ON CONFLICT DO NOTHING
