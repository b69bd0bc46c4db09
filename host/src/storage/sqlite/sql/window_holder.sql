-- The finished job holding a unique key within its `unique_for` window at ?2, if any.
SELECT * FROM jobs
WHERE unique_key = ?1 AND unique_for_ms IS NOT NULL AND finished_at IS NOT NULL
  AND finished_at + unique_for_ms > ?2
ORDER BY finished_at DESC
LIMIT 1
