-- cache_purge.lua: with clock=local, drop expired entries found in `{prefix}:cache-expiry`
-- (and fields whose entry Redis's own TTL already removed).
-- KEYS[1] `{prefix}:cache-expiry`; ARGV[1] the time source (`=<ms>`); ARGV[2..] entry keys
-- Returns how many entries were dropped.
local now = tonumber(string.sub(ARGV[1], 2))
local dropped = 0
for i = 2, #ARGV do
  local exp = redis.call('HGET', KEYS[1], ARGV[i])
  if exp and (tonumber(exp) <= now or redis.call('EXISTS', ARGV[i]) == 0) then
    redis.call('DEL', ARGV[i])
    redis.call('HDEL', KEYS[1], ARGV[i])
    dropped = dropped + 1
  end
end
return dropped
