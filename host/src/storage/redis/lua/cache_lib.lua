-- cache_lib.lua: what every cache script starts with (cache_get, cache_set, cache_delete,
-- cache_incr, cache_usage): the calling convention, the local-clock expiry and the account
-- of each namespace's entries and bytes against its quota.
-- KEYS[1] the entry, a plain string `{prefix}:cache:<ns>:<key>`
-- KEYS[2] `{prefix}:cache-expiry`, a hash entry -> expiry (ms), used only with clock=local
-- KEYS[3] `{prefix}:cache-sizes:<ns>`, a hash entry -> bytes of its key and value
-- KEYS[4] `{prefix}:cache-bytes:<ns>`, the sum of those bytes
-- ARGV[1] the time source, as lua/lib.lua's ARGV[2]; ARGV[2] the key's length in bytes;
-- ARGV[3] most entries; ARGV[4] most bytes; each script's own arguments follow from ARGV[5].
-- With clock=redis (the default) entries expire by Redis's native PX TTL alone, which does
-- not update the sizes: `reconcile` drops sizes of entries that are gone before a quota is
-- enforced and when the usage is read. With clock=local the daemon's clock decides: the
-- expiry is kept in KEYS[2] (the native TTL still removes the entry eventually;
-- sweep_retention drops leftover hash fields).
local entry, expiry, sizes, total = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local local_now = nil
if string.sub(ARGV[1], 1, 1) == '=' then local_now = tonumber(string.sub(ARGV[1], 2)) end

-- Takes a deleted or expired entry out of the namespace's account.
local function forget(k)
  local size = redis.call('HGET', sizes, k)
  if size then
    redis.call('HDEL', sizes, k)
    redis.call('DECRBY', total, size)
  end
end

-- With clock=local, deletes `k` when it has expired; true when it did.
local function drop_if_expired(k)
  if not local_now then return false end
  local exp = redis.call('HGET', expiry, k)
  if exp and tonumber(exp) <= local_now then
    redis.call('DEL', k)
    redis.call('HDEL', expiry, k)
    forget(k)
    return true
  end
  return false
end

-- Forgets every accounted entry that is gone or expired.
local function reconcile()
  for _, k in ipairs(redis.call('HKEYS', sizes)) do
    if redis.call('EXISTS', k) == 0 then forget(k) else drop_if_expired(k) end
  end
end

-- Entries and bytes of the namespace once `entry` holds `size` bytes, and whether that is
-- within the quota (growing past it is refused; shrinking always passes).
local function after_write(size)
  local old = tonumber(redis.call('HGET', sizes, entry) or '-1')
  local n = redis.call('HLEN', sizes)
  if old < 0 then n = n + 1 end
  local bytes = tonumber(redis.call('GET', total) or '0') + size - math.max(old, 0)
  local over_n = old < 0 and n > tonumber(ARGV[3])
  local over_bytes = size > math.max(old, 0) and bytes > tonumber(ARGV[4])
  return not (over_n or over_bytes), n, bytes
end

-- Records that `entry` holds `size` bytes, or returns the error reply that refuses it:
-- `SPOOLQUOTA <entries> <bytes>` (what the namespace would hold).
local function account(size)
  local ok, n, bytes = after_write(size)
  if not ok then
    reconcile()
    ok, n, bytes = after_write(size)
  end
  if not ok then
    return redis.error_reply(string.format('SPOOLQUOTA %d %d', n, bytes))
  end
  local old = redis.call('HGET', sizes, entry)
  redis.call('HSET', sizes, entry, size)
  redis.call('INCRBY', total, size - tonumber(old or '0'))
  return nil
end
