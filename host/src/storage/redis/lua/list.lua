-- list.lua: one page of jobs, newest id first, from the lexicographic id indexes.
-- ARGV[4] index key (P:jobs, P:jobs:t:<type> or P:jobs:st:<state>:<type>), or '' to list
--         one state over every type (ARGV[7]): the per-(state, type) indexes are merged
-- ARGV[5] cursor: the last id of the previous page ('' = from the newest)
-- ARGV[6] limit
-- ARGV[7] the state, when ARGV[4] is ''
-- Returns {more (1/0), job fields...}.
local max = '+'
if ARGV[5] ~= '' then max = '(' .. ARGV[5] end
local limit = tonumber(ARGV[6])
local ids
if ARGV[4] ~= '' then
  ids = redis.call('ZREVRANGEBYLEX', ARGV[4], max, '-', 'LIMIT', 0, limit + 1)
else
  -- Each type's newest limit+1 ids below the cursor, then the newest limit+1 of all.
  ids = {}
  for _, t in ipairs(redis.call('SMEMBERS', K_TYPES)) do
    local part = redis.call('ZREVRANGEBYLEX', k_by_state_type(ARGV[7], t), max, '-', 'LIMIT', 0,
      limit + 1)
    for _, id in ipairs(part) do ids[#ids + 1] = id end
  end
  table.sort(ids, function(a, b) return bytes_less(b, a) end)
  for i = #ids, limit + 2, -1 do ids[i] = nil end
end
local out = { 0 }
if #ids > limit then out[1] = 1 end
for i = 1, math.min(#ids, limit) do
  local job = dump(ids[i])
  if job then out[#out + 1] = job end
end
return out
