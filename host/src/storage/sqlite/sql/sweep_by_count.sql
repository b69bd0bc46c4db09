DELETE FROM jobs WHERE rowid IN (
    SELECT rowid FROM jobs
    WHERE type = ?1 AND status = ?2 AND finished_at IS NOT NULL
      AND (finished_at, id) <= (?3, ?4)
    LIMIT ?5
)
