-- ?1 type, ?2 status, ?3 cutoff (finished at or before), ?4 chunk size. The IN term lets
-- SQLite use the partial jobs_finished index.
DELETE FROM jobs WHERE rowid IN (
    SELECT rowid FROM jobs
    WHERE type = ?1 AND status = ?2 AND status IN ('completed', 'failed', 'cancelled')
      AND finished_at <= ?3
    LIMIT ?4
)
