INSERT INTO cache (ns, key, value, expires_at) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
