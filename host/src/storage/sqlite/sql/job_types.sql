-- Every job type with jobs, by one jobs_by_type seek per type rather than a scan of all jobs.
WITH RECURSIVE types(t) AS (
    SELECT min(type) FROM jobs
    UNION ALL
    SELECT (SELECT min(type) FROM jobs WHERE type > types.t) FROM types WHERE types.t IS NOT NULL
)
SELECT t FROM types WHERE t IS NOT NULL
