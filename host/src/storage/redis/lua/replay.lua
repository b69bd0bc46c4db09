-- replay.lua: put a failed or cancelled job back to `pending` with its attempts reset.
-- ARGV[4] job id
-- Returns {code, job fields or holder id}: code 0 not found, 1 replayed, 2 in another state
-- (unchanged), 3 a live job (its id is returned) holds the job's unique key (unchanged).
-- The last error stays on the job for reference.
local id = ARGV[4]
local j = load(id)
if not j then return { 0, false } end
if j.status ~= 'failed' and j.status ~= 'cancelled' then return { 2, dump(id) } end
local holder = live_holder(j.unique_key, id)
if holder then return { 3, holder } end
move(id, j, 'pending', {
  attempt = '0', run_at = fmt(NOW), cancel_requested = '0', finished_at = false,
  started_at = false, result = false, progress = false, lease_expires_at = false,
})
if j.unique_key then redis.call('HSET', K_UNIQUE, j.unique_key, id) end
emit('job.retrying', id, j.type, job_data(j, '"replay":true'))
redis.call('PUBLISH', CH_WAKE, 'replay')
return { 1, dump(id) }
