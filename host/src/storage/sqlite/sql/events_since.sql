SELECT id, kind, job_id, job_type, at, data FROM events WHERE id > ?1 ORDER BY id LIMIT ?2
