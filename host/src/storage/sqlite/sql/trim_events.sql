-- Keep the newest ?1 events; delete at most ?2 per call.
DELETE FROM events
WHERE id <= (SELECT max(id) FROM events) - ?1
  AND id < (SELECT min(id) FROM events) + ?2
