-- The newest job past the first ?3 (newest first) of a type and status: it and older go.
SELECT finished_at, id FROM jobs
WHERE type = ?1 AND status = ?2 AND finished_at IS NOT NULL
ORDER BY finished_at DESC, id DESC
LIMIT 1 OFFSET ?3
