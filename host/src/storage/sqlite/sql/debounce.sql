-- A debounced enqueue: the job holding the key takes the new payload (?2) and waits until ?3,
-- if it has not started (pending or scheduled).
UPDATE jobs SET payload = ?2, run_at = max(CASE WHEN status = 'scheduled' THEN run_at ELSE ?3 END, ?3),
    status = 'scheduled'
WHERE id = ?1 AND (status = 'pending' OR status = 'scheduled')
RETURNING *
