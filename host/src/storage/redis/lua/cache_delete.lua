-- cache_delete.lua: delete a plugin's cache entry (KEYS and ARGV as in cache_lib.lua).
-- Returns 1 when a live entry was deleted, 0 when there was none (or it had expired).
local live = not drop_if_expired(entry) and redis.call('EXISTS', entry) == 1
redis.call('DEL', entry)
if local_now then redis.call('HDEL', expiry, entry) end
forget(entry)
if live then return 1 end
return 0
