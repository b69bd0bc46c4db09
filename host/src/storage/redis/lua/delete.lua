-- delete.lua: delete one job in any state, with its index entries and unique key.
-- ARGV[4] job id
-- Returns 1 when deleted, 0 when it did not exist. A running job's lease is lost with it.
local removed = remove_job(ARGV[4])
return removed
