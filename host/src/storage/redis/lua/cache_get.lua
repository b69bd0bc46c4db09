-- cache_get.lua: read a plugin's cache entry (KEYS and ARGV as in cache_lib.lua).
-- Returns the value, or nil when absent or expired.
if drop_if_expired(entry) then return false end
local v = redis.call('GET', entry)
if not v then return false end
return v
