-- sweep.lua: delete finished jobs of one type and state past a retention policy.
-- ARGV[4] batch: at most this many deletions per call (the caller loops while it is reached)
-- ARGV[5] job type, ARGV[6] state (completed, failed or cancelled)
-- ARGV[7] max age in ms ('' = no limit): jobs that finished this long ago or more go
-- ARGV[8] max count ('' = no limit): only the newest this many stay
-- Returns how many jobs were deleted, oldest first. Forgets the type once it has no jobs.
-- The index is the state's id index (lib.lua), oldest id first: ids grow with creation time,
-- so "newest" means newest created, and the age walk stops at the first job younger than
-- the cutoff. A job created early that finished late thereby keeps the later-created jobs
-- that finished before it a little longer than their time (never shorter); the walk costs
-- what it deletes, whatever the size of the index.
local budget = tonumber(ARGV[4])
local t, s = ARGV[5], ARGV[6]
local key = k_by_state_type(s, t)
local deleted, scanned = 0, 0
-- Deletes an index entry and its job; an entry whose job is gone or in another state (never
-- expected) only leaves the index.
local function drop(id, status)
  if status == s then deleted = deleted + remove_job(id) end
  redis.call('ZREM', key, id)
  scanned = scanned + 1
end
if ARGV[7] ~= '' then
  local cutoff = NOW - tonumber(ARGV[7])
  local young = false
  while not young and scanned < budget do
    -- Every entry looked at leaves the index, so the oldest are always at rank 0.
    local ids = redis.call('ZRANGE', key, 0, math.min(63, budget - scanned - 1))
    if #ids == 0 then break end
    for _, id in ipairs(ids) do
      local f = redis.call('HMGET', k_job(id), 'status', 'finished_at')
      if f[1] == s and (tonumber(f[2]) or 0) > cutoff then
        young = true
        break
      end
      drop(id, f[1])
    end
  end
end
if ARGV[8] ~= '' and scanned < budget then
  local over = redis.call('ZCARD', key) - tonumber(ARGV[8])
  if over > budget - scanned then over = budget - scanned end
  if over > 0 then
    for _, id in ipairs(redis.call('ZRANGE', key, 0, over - 1)) do
      drop(id, redis.call('HGET', k_job(id), 'status'))
    end
  end
end
if redis.call('EXISTS', k_by_type(t)) == 0 then redis.call('SREM', K_TYPES, t) end
return deleted
