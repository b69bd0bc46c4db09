-- promote.lua: move scheduled and retrying jobs whose run_at has come to `pending`.
-- ARGV[4] batch size (bounded work per call; the caller loops while a batch comes back full)
-- Returns how many jobs were promoted.
batch_begin()
local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', fmt(NOW), 'LIMIT', 0, tonumber(ARGV[4]))
local moved = 0
for _, id in ipairs(due) do
  local j = load(id)
  if j and (j.status == 'scheduled' or j.status == 'retrying') then
    move(id, j, 'pending', {})
    moved = moved + 1
  else
    zrem(K_DELAYED, id) -- a stale entry; never expected
  end
end
batch_end()
if moved > 0 then redis.call('PUBLISH', CH_WAKE, 'promote') end
return moved
