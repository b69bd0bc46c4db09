INSERT INTO events (kind, job_id, job_type, at, data) VALUES (?1, ?2, ?3, ?4, ?5)
