-- Newest first, after the cursor (?1); the filters marker becomes `AND status = ?2` and/or
-- `AND type = ?3`; ?4 is the limit.
SELECT * FROM jobs WHERE id < ?1 /*filters*/ ORDER BY id DESC LIMIT ?4
