-- cache_incr.lua: add to an integer cache entry; a missing or expired entry counts from 0.
-- KEYS[1], KEYS[2], ARGV[1] as in cache_get.lua; ARGV[2] delta; ARGV[3] ttl in ms ('' =
-- none), applied only when this call creates the entry (a counter keeps the window it
-- started with).
-- Returns the new value; a non-integer entry or an overflow gives Redis's INCRBY error
-- (the caller maps it) and changes nothing.
local key, exp_key = KEYS[1], KEYS[2]
local local_now = nil
if string.sub(ARGV[1], 1, 1) == '=' then
  local_now = tonumber(string.sub(ARGV[1], 2))
  local exp = redis.call('HGET', exp_key, key)
  if exp and tonumber(exp) <= local_now then
    redis.call('DEL', key)
    redis.call('HDEL', exp_key, key)
  end
end
local existed = redis.call('EXISTS', key) == 1
local v = redis.call('INCRBY', key, ARGV[2])
if not existed and ARGV[3] ~= '' then
  redis.call('PEXPIRE', key, ARGV[3])
  if local_now then
    redis.call('HSET', exp_key, key, string.format('%.0f', local_now + tonumber(ARGV[3])))
  end
end
return v
