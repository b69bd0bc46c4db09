SELECT * FROM jobs WHERE id = ?1 AND status = 'running' AND lease_token = ?2
