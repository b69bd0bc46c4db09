-- reap.lua: end the attempts of jobs whose lease expired (their daemon died or hung).
-- ARGV[4] batch size (the caller loops while a batch comes back full)
-- ARGV[5], ARGV[6] the text before and after the attempt number in the error recorded on
--         the job (job::rules::lease_expired_error, passed in so there is one wording)
-- Returns {requeued, failed, scanned}. The claim already counted the attempt
-- (job::rules::state_after_lease_expiry): a requested cancel ends `cancelled`; the last
-- attempt ends `failed`, so a job that kills its daemon every time stops; else `pending`,
-- ready at once (run_at = now).
-- The expired leases are read from each type's running set, and from the all-types running
-- set of earlier versions (lib.lua), which only drains: nothing adds to it any more.
batch_begin()
local budget = tonumber(ARGV[4])
local expired = {} -- {id, the set it was read from}
local sets = { K_RUNNING_LEGACY }
for _, t in ipairs(redis.call('SMEMBERS', K_TYPES)) do sets[#sets + 1] = k_running(t) end
for _, key in ipairs(sets) do
  if #expired >= budget then break end
  local ids = redis.call('ZRANGEBYSCORE', key, '-inf', fmt(NOW), 'LIMIT', 0, budget - #expired)
  for _, id in ipairs(ids) do expired[#expired + 1] = { id, key } end
end
local requeued, failed = 0, 0
for _, e in ipairs(expired) do
  local id, key = e[1], e[2]
  local j = load(id)
  if j and j.status == 'running' then
    local attempt, max = tonumber(j.attempt) or 0, tonumber(j.max_attempts) or 1
    local err = ARGV[5] .. tostring(attempt) .. ARGV[6]
    if j.cancel_requested == '1' then
      end_attempt(id, j, 'cancelled', {}, true)
    elseif attempt >= max then
      end_attempt(id, j, 'failed', { error = err }, true)
      failed = failed + 1
    else
      end_attempt(id, j, 'pending', { error = err, run_at = fmt(NOW) }, true)
      requeued = requeued + 1
    end
  end
  -- end_attempt left the type's set (zrem twice is harmless); an entry of the legacy set,
  -- or a stale one (never expected), goes here.
  zrem(key, id)
end
batch_end()
if requeued > 0 then redis.call('PUBLISH', CH_WAKE, 'reap') end
return { requeued, failed, #expired }
