-- ?1 type, ?2 status, ?3 cutoff (finished at or before), ?4 chunk size.
DELETE FROM jobs WHERE rowid IN (
    SELECT rowid FROM jobs
    WHERE type = ?1 AND status = ?2 AND finished_at IS NOT NULL AND finished_at <= ?3
    LIMIT ?4
)
