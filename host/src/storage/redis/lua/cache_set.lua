-- cache_set.lua: write a plugin's cache entry, replacing its value and expiry.
-- KEYS[1], KEYS[2], ARGV[1] as in cache_get.lua; ARGV[2] the value; ARGV[3] ttl in ms
-- ('' = never expires).
-- Returns 1.
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
if string.sub(ARGV[1], 1, 1) == '=' then
  if ARGV[3] == '' then
    redis.call('HDEL', KEYS[2], KEYS[1])
  else
    local at = tonumber(string.sub(ARGV[1], 2)) + tonumber(ARGV[3])
    redis.call('HSET', KEYS[2], KEYS[1], string.format('%.0f', at))
  end
end
return 1
