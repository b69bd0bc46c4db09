UPDATE jobs SET lease_expires_at = ?1
WHERE id = ?2 AND status = 'running' AND lease_token = ?3
RETURNING cancel_requested
