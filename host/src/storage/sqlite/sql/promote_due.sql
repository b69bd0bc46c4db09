-- Scheduled and retrying jobs whose time has come become pending (?1 now, ?2 chunk size).
UPDATE jobs SET status = 'pending'
WHERE rowid IN (
    SELECT rowid FROM jobs
    WHERE (status = 'scheduled' OR status = 'retrying') AND run_at <= ?1
    ORDER BY run_at LIMIT ?2
)
