SELECT * FROM (
    SELECT rowid AS rid, priority, run_at, id FROM jobs
    WHERE status = 'pending' AND type = ?TYPE
    ORDER BY priority, run_at, id LIMIT ?ARM_LIMIT
)
