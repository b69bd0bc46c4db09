-- Ids of one type's jobs in one status below the cursor, newest first: ?1 type, ?2 status,
-- ?3 cursor, ?4 limit. Read from jobs_by_type alone (it covers them).
SELECT id FROM jobs WHERE type = ?1 AND status = ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4
