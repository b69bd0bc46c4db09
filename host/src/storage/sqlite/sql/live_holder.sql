-- The live job holding a unique key, if any.
SELECT * FROM jobs
WHERE unique_key = ?1 AND unique_key IS NOT NULL
  AND status IN ('scheduled', 'pending', 'running', 'retrying')
