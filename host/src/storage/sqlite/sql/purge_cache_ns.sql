DELETE FROM cache WHERE ns = ?1 AND expires_at <= ?2
