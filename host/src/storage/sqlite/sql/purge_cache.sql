DELETE FROM cache WHERE rowid IN (
    SELECT rowid FROM cache WHERE expires_at <= ?1 LIMIT ?2
)
