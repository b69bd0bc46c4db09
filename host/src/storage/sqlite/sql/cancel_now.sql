UPDATE jobs SET status = 'cancelled', finished_at = ?1 WHERE id = ?2 RETURNING *
