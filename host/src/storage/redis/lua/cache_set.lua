-- cache_set.lua: write a plugin's cache entry, replacing its value and expiry, within the
-- namespace's quota (KEYS and ARGV[1..4] as in cache_lib.lua).
-- ARGV[5] the value; ARGV[6] ttl in ms ('' = never expires).
-- Returns 1, or the SPOOLQUOTA error (nothing written).
drop_if_expired(entry)
local refused = account(tonumber(ARGV[2]) + string.len(ARGV[5]))
if refused then return refused end
if ARGV[6] == '' then
  redis.call('SET', entry, ARGV[5])
else
  redis.call('SET', entry, ARGV[5], 'PX', ARGV[6])
end
if local_now then
  if ARGV[6] == '' then
    redis.call('HDEL', expiry, entry)
  else
    redis.call('HSET', expiry, entry, string.format('%.0f', local_now + tonumber(ARGV[6])))
  end
end
return 1
