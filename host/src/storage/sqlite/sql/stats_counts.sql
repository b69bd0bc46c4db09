SELECT type, status, count(*) FROM jobs GROUP BY type, status
