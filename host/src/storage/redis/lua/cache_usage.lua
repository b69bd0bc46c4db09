-- cache_usage.lua: the entries and bytes a namespace holds, after forgetting the entries
-- that are gone (KEYS and ARGV as in cache_lib.lua; KEYS[1] is not read).
-- Returns {entries, bytes}.
reconcile()
return {redis.call('HLEN', sizes), tonumber(redis.call('GET', total) or '0')}
