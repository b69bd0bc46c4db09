-- The live job holding a unique key, if any.
SELECT * FROM jobs WHERE unique_key = ?1 AND finished_at IS NULL
