-- list.lua: one page of jobs, newest id first, from one of the lexicographic id indexes.
-- ARGV[4] index key (P:jobs, P:jobs:s:<state>, P:jobs:t:<type> or P:jobs:st:<state>:<type>)
-- ARGV[5] cursor: the last id of the previous page ('' = from the newest)
-- ARGV[6] limit
-- Returns {more (1/0), job fields...}.
local max = '+'
if ARGV[5] ~= '' then max = '(' .. ARGV[5] end
local limit = tonumber(ARGV[6])
local ids = redis.call('ZREVRANGEBYLEX', ARGV[4], max, '-', 'LIMIT', 0, limit + 1)
local out = { 0 }
if #ids > limit then out[1] = 1 end
for i = 1, math.min(#ids, limit) do
  local job = dump(ids[i])
  if job then out[#out + 1] = job end
end
return out
