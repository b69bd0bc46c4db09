-- progress.lua: record the progress of a running job, fenced by its lease.
-- ARGV[4] job id, ARGV[5] lease token, ARGV[6] progress as JSON ({"percent", "message"}),
-- ARGV[7] percent, ARGV[8] message, ARGV[9] '1' when there is a message
-- Returns 1 when written, 0 when the lease is not held.
local id, token = ARGV[4], ARGV[5]
local j = load(id)
if not holds_lease(j, token) then return 0 end
redis.call('HSET', k_job(id), 'progress', ARGV[6])
local message = 'null'
if ARGV[9] == '1' then message = jstr_once(ARGV[8]) end
emit('job.progress', id, j.type,
  job_data(j, '"percent":' .. fmt(tonumber(ARGV[7]) or 0) .. ',"message":' .. message))
return 1
