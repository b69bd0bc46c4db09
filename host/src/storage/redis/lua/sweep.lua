-- sweep.lua: delete finished jobs of one type and state past a retention policy.
-- ARGV[4] job type, ARGV[5] state (completed, failed or cancelled)
-- ARGV[6] max age in ms ('' = no limit), ARGV[7] max count ('' = no limit)
-- ARGV[8] batch: at most this many deletions per call (the caller loops while it is reached)
-- Returns how many jobs were deleted. Oldest (by finished_at) go first. Forgets the type
-- once it has no jobs left.
local t, s = ARGV[4], ARGV[5]
local budget = tonumber(ARGV[8])
local key = k_finished(s, t)
local deleted = 0
if ARGV[6] ~= '' then
  local cutoff = NOW - tonumber(ARGV[6])
  local old = redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. fmt(cutoff), 'LIMIT', 0, budget)
  for _, id in ipairs(old) do deleted = deleted + remove_job(id) end
  if #old > 0 then redis.call('ZREM', key, unpack(old)) end
end
if ARGV[7] ~= '' and deleted < budget then
  local over = redis.call('ZCARD', key) - tonumber(ARGV[7])
  if over > budget - deleted then over = budget - deleted end
  if over > 0 then
    local oldest = redis.call('ZRANGE', key, 0, over - 1)
    for _, id in ipairs(oldest) do deleted = deleted + remove_job(id) end
    redis.call('ZREM', key, unpack(oldest))
  end
end
if redis.call('EXISTS', k_by_type(t)) == 0 then redis.call('SREM', K_TYPES, t) end
return deleted
