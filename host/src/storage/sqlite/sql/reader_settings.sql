-- A read connection: it can never write, and keeps a 16 MiB page cache.
PRAGMA query_only = ON;
PRAGMA cache_size = -16384;
