-- schedule.lua: cron schedules (storage/flow.rs Schedule). Three hashes by schedule name:
-- P:schedules (the spec as JSON), P:schedules:tick (the last tick fired, ms) and
-- P:schedules:created (when it was first stored, ms).
-- ARGV[4]   the operation: 'put', 'delete' or 'advance'
-- ARGV[5]   the schedule name
-- put:      ARGV[6] the spec JSON. Keeps the tick and creation time of a replaced schedule.
--           Returns {spec, last tick ('' = none), created}.
-- delete:   Returns 1 when it existed, else 0.
-- advance:  ARGV[6] the tick the caller read ('' = none), ARGV[7] the new tick. Sets it only
--           if it is still the one read (compare and set). Returns 1 when set, else 0.
local K_SPEC, K_TICK, K_CREATED = P .. ':schedules', P .. ':schedules:tick', P .. ':schedules:created'
local op, name = ARGV[4], ARGV[5]
if op == 'put' then
  redis.call('HSET', K_SPEC, name, ARGV[6])
  redis.call('HSETNX', K_CREATED, name, fmt(NOW))
  return { ARGV[6], redis.call('HGET', K_TICK, name) or '', redis.call('HGET', K_CREATED, name) }
elseif op == 'delete' then
  redis.call('HDEL', K_TICK, name)
  redis.call('HDEL', K_CREATED, name)
  return redis.call('HDEL', K_SPEC, name)
elseif op == 'advance' then
  if redis.call('HEXISTS', K_SPEC, name) == 0 then return 0 end
  local current = redis.call('HGET', K_TICK, name) or ''
  if current ~= ARGV[6] then return 0 end
  redis.call('HSET', K_TICK, name, ARGV[7])
  return 1
end
return redis.error_reply('schedule.lua: unknown operation ' .. tostring(op))
