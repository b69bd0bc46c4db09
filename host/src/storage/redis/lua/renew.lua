-- renew.lua: extend leases the caller holds.
-- ARGV[4]   lease length in ms
-- ARGV[5..] pairs of (job id, lease token)
-- Returns   one code per pair: 0 lost, 1 held, 2 held but a user asked to cancel the job.
local lease_ms = tonumber(ARGV[4])
local out = {}
for i = 5, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local v = redis.call('HMGET', k_job(id), 'status', 'lease', 'cancel_requested', 'type')
  if v[1] == 'running' and v[2] == token then
    local exp = fmt(NOW + lease_ms)
    redis.call('HSET', k_job(id), 'lease_expires_at', exp)
    redis.call('ZADD', k_running(v[4]), exp, id)
    if v[3] == '1' then out[#out + 1] = 2 else out[#out + 1] = 1 end
  else
    out[#out + 1] = 0
  end
end
return out
