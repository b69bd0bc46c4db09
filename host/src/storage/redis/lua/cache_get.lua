-- cache_get.lua: read a plugin's cache entry.
-- KEYS[1] the entry (a plain string, `{prefix}:cache:<ns>:<key>`)
-- KEYS[2] `{prefix}:cache-expiry`, a hash entry -> expiry (ms), used only with clock=local
-- ARGV[1] the time source, as lua/lib.lua's ARGV[2]
-- Returns the value, or nil when absent or expired.
-- With clock=redis (the default) entries expire by Redis's native PX TTL alone. With
-- clock=local the daemon's clock decides: the expiry is kept in KEYS[2] (the native TTL
-- still removes the entry eventually; sweep_retention drops leftover hash fields).
local v = redis.call('GET', KEYS[1])
if not v then return false end
if string.sub(ARGV[1], 1, 1) == '=' then
  local exp = redis.call('HGET', KEYS[2], KEYS[1])
  if exp and tonumber(exp) <= tonumber(string.sub(ARGV[1], 2)) then
    redis.call('DEL', KEYS[1])
    redis.call('HDEL', KEYS[2], KEYS[1])
    return false
  end
end
return v
