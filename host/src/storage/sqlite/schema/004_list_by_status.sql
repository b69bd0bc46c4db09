-- Listing by status alone merges the per-type listings of jobs_by_type (reads.rs), so the
-- status-only index goes: it cost every state change of every job two more index writes.
DROP INDEX IF EXISTS jobs_by_status;
