-- Tables other than SQLite's own: a file with some but no spool application_id belongs to
-- another application.
SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'
