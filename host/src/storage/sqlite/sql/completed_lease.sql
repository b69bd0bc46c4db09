-- The running job ?1 under lease ?2, as complete.sql needs it: its rowid, type and attempt.
SELECT rowid, type, attempt FROM jobs WHERE id = ?1 AND status = 'running' AND lease_token = ?2
