-- Copy committed WAL frames into the database file without waiting for anyone (PASSIVE never
-- blocks the writer or readers). Returns (busy, frames in the WAL, frames checkpointed).
PRAGMA wal_checkpoint(PASSIVE)
