SELECT * FROM jobs
WHERE status = 'running' AND lease_expires_at <= ?1
ORDER BY lease_expires_at LIMIT ?2
