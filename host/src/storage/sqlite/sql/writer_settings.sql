-- The writer connection, after `journal_mode = WAL` (connection.rs says why NORMAL is durable
-- enough in WAL mode): temporary tables in memory, a 32 MiB page cache, and a WAL file that is
-- truncated back to 64 MiB after checkpoints. The checkpoint thread copies WAL frames
-- (checkpointer.rs); the writer checkpoints itself (inside a COMMIT, stalling the requests
-- behind it) only past 10000 pages (~40 MiB), which lets the WAL start over and bounds it.
PRAGMA synchronous = NORMAL;
PRAGMA wal_autocheckpoint = 10000;
PRAGMA temp_store = MEMORY;
PRAGMA cache_size = -32768;
PRAGMA journal_size_limit = 67108864;
