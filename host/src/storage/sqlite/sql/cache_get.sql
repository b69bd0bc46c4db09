SELECT value, expires_at FROM cache
WHERE ns = ?1 AND key = ?2 AND (expires_at IS NULL OR expires_at > ?3)
