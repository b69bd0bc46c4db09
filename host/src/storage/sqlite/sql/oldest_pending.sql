-- min(run_at) among pending jobs of ?1 at priority ?2: one probe of jobs_ready.
SELECT min(run_at) FROM jobs WHERE status = 'pending' AND type = ?1 AND priority = ?2
