-- cache_incr.lua: add to an integer cache entry; a missing or expired entry counts from 0
-- (KEYS and ARGV[1..4] as in cache_lib.lua).
-- ARGV[5] delta; ARGV[6] ttl in ms ('' = none), applied only when this call creates the
-- entry (a counter keeps the window it started with).
-- Returns the new value; a non-integer entry or an overflow gives Redis's INCRBY error
-- (the caller maps it) and changes nothing; so does the SPOOLQUOTA error.
drop_if_expired(entry)
local existed = redis.call('EXISTS', entry) == 1
local v = redis.call('INCRBY', entry, ARGV[5])
local refused = account(tonumber(ARGV[2]) + redis.call('STRLEN', entry))
if refused then
  if existed then redis.call('DECRBY', entry, ARGV[5]) else redis.call('DEL', entry) end
  return refused
end
if not existed and ARGV[6] ~= '' then
  redis.call('PEXPIRE', entry, ARGV[6])
  if local_now then
    redis.call('HSET', expiry, entry, string.format('%.0f', local_now + tonumber(ARGV[6])))
  end
end
return v
