DELETE FROM cache WHERE ns = ?1 AND key = ?2 RETURNING expires_at
