-- Newest first, after the cursor (?1); /*filters*/ adds `AND status = ?2` and/or
-- `AND type = ?3`; ?4 is the limit.
SELECT * FROM jobs WHERE id < ?1 /*filters*/ ORDER BY id DESC LIMIT ?4
