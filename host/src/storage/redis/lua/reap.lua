-- reap.lua: end the attempts of jobs whose lease expired (their daemon died or hung).
-- ARGV[4] batch size (the caller loops while a batch comes back full)
-- ARGV[5], ARGV[6] the text before and after the attempt number in the error recorded on
--         the job (job::rules::lease_expired_error, passed in so there is one wording)
-- Returns {requeued, failed, scanned}. The claim already counted the attempt
-- (job::rules::state_after_lease_expiry): a requested cancel ends `cancelled`; the last
-- attempt ends `failed`, so a job that kills its daemon every time stops; else `pending`,
-- ready at once (run_at = now).
batch_begin()
local expired = redis.call('ZRANGEBYSCORE', K_RUNNING, '-inf', fmt(NOW), 'LIMIT', 0, tonumber(ARGV[4]))
local requeued, failed = 0, 0
for _, id in ipairs(expired) do
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
  else
    redis.call('ZREM', K_RUNNING, id) -- a stale entry; never expected
  end
end
batch_end()
if requeued > 0 then redis.call('PUBLISH', CH_WAKE, 'reap') end
return { requeued, failed, #expired }
