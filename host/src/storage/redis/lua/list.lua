-- list.lua: one page of jobs, newest id first.
-- ARGV[4] index key (P:jobs:t:<type> or P:jobs:st:<state>:<type>), or '' to list every job
--         or one state (ARGV[7]) over every type or, for `running`, over ARGV[8]
-- ARGV[5] cursor: the last id of the previous page ('' = from the newest)
-- ARGV[6] limit
-- ARGV[7] the state, when ARGV[4] is '' ('' = every state)
-- ARGV[8] for `running`: the type ('' = every type)
-- Returns {more (1/0), job fields...}.
local max = '+'
if ARGV[5] ~= '' then max = '(' .. ARGV[5] end
local limit = tonumber(ARGV[6])
local types = nil
local function all_types()
  if not types then types = redis.call('SMEMBERS', K_TYPES) end
  return types
end
local ids
if ARGV[4] ~= '' then
  ids = redis.call('ZREVRANGEBYLEX', ARGV[4], max, '-', 'LIMIT', 0, limit + 1)
elseif ARGV[7] == 'running' then
  -- Running jobs have no id index (lib.lua): their sets, ordered by lease expiry, are read
  -- whole and sorted. The worker slots of the daemons bound how many there are.
  local ts = all_types()
  if ARGV[8] ~= '' then ts = { ARGV[8] } end
  ids = {}
  for _, t in ipairs(ts) do
    for _, id in ipairs(redis.call('ZRANGE', k_running(t), 0, -1)) do
      if ARGV[5] == '' or bytes_less(id, ARGV[5]) then ids[#ids + 1] = id end
    end
  end
  table.sort(ids, function(a, b) return bytes_less(b, a) end)
  for i = #ids, limit + 2, -1 do ids[i] = nil end
else
  -- Each type's newest limit+1 ids below the cursor (each list newest first), merged:
  -- every round takes the newest head, so the work is (limit+1) x types comparisons.
  local parts, pos = {}, {}
  for _, t in ipairs(all_types()) do
    local key = k_by_type(t)
    if ARGV[7] ~= '' then key = k_by_state_type(ARGV[7], t) end
    local part = redis.call('ZREVRANGEBYLEX', key, max, '-', 'LIMIT', 0, limit + 1)
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
