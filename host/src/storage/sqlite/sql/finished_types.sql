-- The distinct types of finished jobs, one index probe per type (a skip-scan by hand).
WITH RECURSIVE t(type) AS (
    SELECT min(type) FROM jobs WHERE finished_at IS NOT NULL
    UNION ALL
    SELECT (SELECT min(type) FROM jobs
            WHERE finished_at IS NOT NULL AND type > t.type)
    FROM t WHERE t.type IS NOT NULL
)
SELECT type FROM t WHERE type IS NOT NULL
