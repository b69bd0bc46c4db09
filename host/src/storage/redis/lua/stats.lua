-- stats.lua: counts per type and state, and the age of the oldest pending job per type.
-- No arguments of its own.
-- Returns per type with jobs: {type, {7 counts in codec.rs STATES order}, oldest age ms or -1}.
-- Counts are ZCARDs of the per-(state, type) indexes (lib.lua): O(types) work, no scan of jobs.
local states = { 'scheduled', 'pending', 'running', 'retrying', 'completed', 'failed', 'cancelled' }
local out = {}
for _, t in ipairs(redis.call('SMEMBERS', K_TYPES)) do
  local counts, total = {}, 0
  for i, s in ipairs(states) do
    local key = k_by_state_type(s, t)
    if s == 'running' then key = k_running(t) end
    counts[i] = redis.call('ZCARD', key)
    total = total + counts[i]
  end
  if total > 0 then
    -- The ready set is ordered by priority first; the oldest ready time is the smallest
    -- head among the ten priority bands.
    local oldest = -1
    if counts[2] > 0 then
      for p = 1, 10 do
        local r = redis.call('ZRANGEBYSCORE', k_ready(t), fmt(p * PRIO_SHIFT),
          '(' .. fmt((p + 1) * PRIO_SHIFT), 'WITHSCORES', 'LIMIT', 0, 1)
        if r[1] then
          local age = NOW - (tonumber(r[2]) - p * PRIO_SHIFT)
          if age < 0 then age = 0 end
          if age > oldest then oldest = age end
        end
      end
    end
    out[#out + 1] = { t, counts, oldest }
  end
end
return out
