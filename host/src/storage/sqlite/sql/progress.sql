UPDATE jobs SET progress_percent = ?1, progress_message = ?2
WHERE id = ?3 AND status = 'running' AND lease_token = ?4
RETURNING type, attempt
