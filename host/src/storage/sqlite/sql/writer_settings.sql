-- The writer connection, after `journal_mode = WAL` (connection.rs says why NORMAL is durable
-- enough in WAL mode): temporary tables in memory, a 32 MiB page cache, and a WAL file that is
-- truncated back to 64 MiB after checkpoints.
PRAGMA synchronous = NORMAL;
PRAGMA temp_store = MEMORY;
PRAGMA cache_size = -32768;
PRAGMA journal_size_limit = 67108864;
