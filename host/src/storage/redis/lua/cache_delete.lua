-- cache_delete.lua: delete a plugin's cache entry.
-- KEYS[1], KEYS[2], ARGV[1] as in cache_get.lua.
-- Returns 1 when a live entry was deleted, 0 when there was none (or it had expired).
local live = redis.call('EXISTS', KEYS[1]) == 1
if live and string.sub(ARGV[1], 1, 1) == '=' then
  local exp = redis.call('HGET', KEYS[2], KEYS[1])
  if exp and tonumber(exp) <= tonumber(string.sub(ARGV[1], 2)) then live = false end
end
redis.call('DEL', KEYS[1])
if string.sub(ARGV[1], 1, 1) == '=' then redis.call('HDEL', KEYS[2], KEYS[1]) end
if live then return 1 end
return 0
