-- claim.lua: lease up to `limit` ready jobs among several types.
-- ARGV[4]   lease length in ms
-- ARGV[5]   worker name (diagnostics)
-- ARGV[6]   limit
-- ARGV[7]   t, the number of types; ARGV[8..7+t] the types
-- ARGV[8+t..] `limit` fresh lease tokens, one per job that may be claimed
-- Returns   the claimed jobs' fields, best first.
-- Each round takes the best head among the types' ready sets (lowest score, then lowest id),
-- so a claim over several types honours priority and FIFO across all of them.
local lease_ms, worker = tonumber(ARGV[4]), ARGV[5]
local limit, nt = tonumber(ARGV[6]), tonumber(ARGV[7])
local types, heads = {}, {}
-- Byte order, as Redis orders equal scores: Lua's `<` on strings follows the server's
-- locale (Redis sets LC_COLLATE from its environment).
local function bytes_less(a, b)
  local n = math.min(#a, #b)
  for k = 1, n do
    local x, y = string.byte(a, k), string.byte(b, k)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local function peek(i)
  local r = redis.call('ZRANGE', k_ready(types[i]), 0, 0, 'WITHSCORES')
  if r[1] then heads[i] = { r[1], tonumber(r[2]) } else heads[i] = false end
end
for i = 1, nt do types[i] = ARGV[7 + i]; peek(i) end
local out = {}
for n = 1, limit do
  local best = nil
  for i = 1, nt do
    local h = heads[i]
    if h then
      local b = best and heads[best]
      if not b or h[2] < b[2] or (h[2] == b[2] and bytes_less(h[1], b[1])) then best = i end
    end
  end
  if not best then break end
  local id = heads[best][1]
  redis.call('ZREM', k_ready(types[best]), id)
  peek(best)
  local j = load(id)
  if j and j.status == 'pending' then
    local attempt = (tonumber(j.attempt) or 0) + 1
    move(id, j, 'running', {
      attempt = tostring(attempt), started_at = fmt(NOW), lease = ARGV[7 + nt + n],
      worker = worker, lease_expires_at = fmt(NOW + lease_ms), cancel_requested = '0',
      progress = false,
    })
    emit('job.started', id, j.type, job_data(j, { worker = worker }))
    out[#out + 1] = dump(id)
  end
end
return out
