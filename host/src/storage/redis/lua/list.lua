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
  -- Each type's newest limit+1 ids below the cursor (each list newest first), merged:
  -- every round takes the newest head, so the work is (limit+1) x types comparisons.
  local parts, pos = {}, {}
  for _, t in ipairs(redis.call('SMEMBERS', K_TYPES)) do
    local part = redis.call('ZREVRANGEBYLEX', k_by_state_type(ARGV[7], t), max, '-', 'LIMIT', 0,
      limit + 1)
    if #part > 0 then
      parts[#parts + 1] = part
      pos[#parts] = 1
    end
  end
  ids = {}
  while #ids <= limit do
    local best = nil
    for k = 1, #parts do
      local id = parts[k][pos[k]]
      if id and (not best or bytes_less(parts[best][pos[best]], id)) then best = k end
    end
    if not best then break end
    ids[#ids + 1] = parts[best][pos[best]]
    pos[best] = pos[best] + 1
  end
end
local out = { 0 }
if #ids > limit then out[1] = 1 end
for i = 1, math.min(#ids, limit) do
  local job = dump(ids[i])
  if job then out[#out + 1] = job end
end
return out
