-- sweep.lua: delete finished jobs of one type and state past a retention policy.
-- ARGV[4] batch: at most this many deletions per call (the caller loops while it is reached)
-- ARGV[5] job type, ARGV[6] state (completed, failed or cancelled)
-- ARGV[7] max age in ms ('' = no limit): jobs that finished this long ago or more go
-- ARGV[8] max count ('' = no limit): only the newest this many (by finished_at) stay
-- Returns how many jobs were deleted, oldest first. Forgets the type once it has no jobs.
local budget = tonumber(ARGV[4])
local t, s = ARGV[5], ARGV[6]
local key = k_finished(s, t)
local deleted = 0
if ARGV[7] ~= '' then
  local cutoff = NOW - tonumber(ARGV[7])
  local old = redis.call('ZRANGEBYSCORE', key, '-inf', fmt(cutoff), 'LIMIT', 0, budget)
  for _, id in ipairs(old) do deleted = deleted + remove_job(id) end
  -- remove_job drops the index entry; a stale entry (job already gone) goes here.
  if #old > 0 then redis.call('ZREM', key, unpack(old)) end
end
if ARGV[8] ~= '' and deleted < budget then
  local over = redis.call('ZCARD', key) - tonumber(ARGV[8])
  if over > budget - deleted then over = budget - deleted end
  if over > 0 then
    local oldest = redis.call('ZRANGE', key, 0, over - 1)
    for _, id in ipairs(oldest) do deleted = deleted + remove_job(id) end
    redis.call('ZREM', key, unpack(oldest))
  end
end
if redis.call('EXISTS', k_by_type(t)) == 0 then redis.call('SREM', K_TYPES, t) end
return deleted
