-- claim.lua: lease up to `limit` ready jobs among several types.
-- ARGV[4]   lease length in ms
-- ARGV[5]   worker name (diagnostics)
-- ARGV[6]   limit
-- ARGV[7]   t, the number of types; ARGV[8..7+t] the types
-- ARGV[8+t] a fresh random nonce: the k-th job claimed gets the lease token `<nonce>-<k>`
--           (unguessable and unique, at the cost of one random number per claim)
-- Returns   {ids, blocked}: the claimed jobs' ids, best first, in token order, and when a
--           type with ready jobs that its hold or rate window kept back opens again (ms
--           from now, '' for none). The caller reads the jobs themselves afterwards (plain HGETALLs,
--           ops.rs): a hash read inside Lua costs several times more, and the jobs are ours
--           once leased.
-- Flow control (P:ctl:<type>, lib.lua) is applied per type before its heads are read: none
-- of a paused or held type, at most `conc` minus its running jobs, at most what its rate
-- window has left; each job claimed of a rate-limited type is logged in P:rate:<type>.
-- Each type's first `limit` ready jobs are read in one ZRANGE; each round takes the best
-- head among the types (lowest score, then lowest id), so a claim over several types honours
-- priority and FIFO across all of them. A claim of one type takes its heads in order and
-- needs no scores (Redis formats each score as text: 4k instructions a job, callgrind).
-- The jobs taken of a type are always the first ranks of its ready set (stale entries
-- included), so one ZREMRANGEBYRANK per type drops them; the other index writes go out as
-- one variadic command per type (a claim writes no index it reads).
batch_begin()
local lease_ms, worker = tonumber(ARGV[4]), ARGV[5]
local limit, nt = tonumber(ARGV[6]), tonumber(ARGV[7])
local types, heads, pos, windows = {}, {}, {}, {}
local blocked = nil

-- How many jobs of type `t` this claim may take, and when it opens again if none (nil when
-- something else must happen first, such as a running job ending). Sets windows[i] for a
-- rate-limited type.
local function allowance(i, t)
  local c = redis.call('HMGET', k_ctl(t), 'paused', 'held', 'rate_n', 'rate_ms', 'conc')
  if not (c[1] or c[2] or c[3] or c[5]) then return limit, nil end
  if c[1] then return 0, nil end
  local held = tonumber(c[2])
  if held and held > NOW then return 0, held end
  local allow, reopen = limit, nil
  if c[5] then
    allow = math.min(allow, tonumber(c[5]) - redis.call('ZCARD', k_running(t)))
  end
  if c[3] then
    local window = tonumber(c[4])
    local rk = k_rate(t)
    redis.call('ZREMRANGEBYSCORE', rk, '-inf', NOW - window)
    local left = tonumber(c[3]) - redis.call('ZCARD', rk)
    if left <= 0 then
      local oldest = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
      if oldest[2] then reopen = tonumber(oldest[2]) + window end
    end
    allow = math.min(allow, left)
    windows[i] = window
  end
  if allow <= 0 then return 0, reopen end
  return allow, nil
end

-- Each type once: a type passed twice would have its taken heads dropped twice over below.
local seen = {}
for i = 1, nt do
  local t = ARGV[7 + i]
  if not seen[t] then
    seen[t] = true
    types[#types + 1] = t
  end
end
nt = #types
-- Entries per head: an id, or with several types an id and its score.
local step = 1
if nt > 1 then step = 2 end
for i = 1, nt do
  local allow, reopen = allowance(i, types[i])
  if allow > 0 then
    if step == 2 then
      heads[i] = redis.call('ZRANGE', k_ready(types[i]), 0, allow - 1, 'WITHSCORES')
    else
      heads[i] = redis.call('ZRANGE', k_ready(types[i]), 0, allow - 1)
    end
  else
    heads[i] = {}
    if reopen and redis.call('ZCARD', k_ready(types[i])) > 0 then
      if not blocked or reopen < blocked then blocked = reopen end
    end
  end
  pos[i] = 1
end
local started_of = {}
local taken_of = {} -- type index -> ids claimed, in order
local out = {}
local lease_expires = fmt(NOW + lease_ms)
local started = fmt(NOW)
local nonce = ARGV[8 + tonumber(ARGV[7])] .. '-'
local event_tail = ',"worker":' .. jstr(worker) .. '}'
local started_head = ev_head('job.started')
while #out < limit do
  local best, best_id = nil, nil
  if step == 1 then
    best_id = heads[1][pos[1]]
    if best_id then best = 1 end
  else
    local best_score = nil
    for i = 1, nt do
      local id = heads[i][pos[i]]
      if id then
        local score = tonumber(heads[i][pos[i] + 1])
        if not best or score < best_score or (score == best_score and bytes_less(id, best_id)) then
          best, best_id, best_score = i, id, score
        end
      end
    end
  end
  if not best then break end
  pos[best] = pos[best] + step
  local key = k_job(best_id)
  local f = redis.call('HMGET', key, 'status', 'attempt', 'progress', 'cancel_requested')
  -- Anything else is a stale entry (every state change unplaces pending jobs): the
  -- ZREMRANGEBYRANK below drops it with the rest.
  if f[1] == 'pending' then
    local attempt = '1' -- a job's first attempt, the common case, needs no formatting
    if f[2] then attempt = fmt((tonumber(f[2]) or 0) + 1) end
    local k = #out + 1
    local token = nonce .. fmt(k)
    redis.call('HSET', key, 'status', 'running', 'attempt', attempt, 'started_at', started,
      'lease', token, 'worker', worker, 'lease_expires_at', lease_expires)
    if f[3] then redis.call('HDEL', key, 'progress') end
    if f[4] then redis.call('HDEL', key, 'cancel_requested') end
    out[k] = best_id
    local taken = taken_of[best]
    if not taken then taken = {}; taken_of[best] = taken end
    taken[#taken + 1] = best_id
    push_event(started_head, best_id, types[best], '{"status":"running","attempt":',
      attempt, event_tail)
    if windows[best] then
      local s = started_of[best]
      if not s then s = {}; started_of[best] = s end
      s[#s + 1] = started
      s[#s + 1] = token
    end
  end
end
for i = 1, nt do
  local used = (pos[i] - 1) / step
  if used > 0 then redis.call('ZREMRANGEBYRANK', k_ready(types[i]), 0, used - 1) end
end
for i, ids in pairs(taken_of) do
  move_ids(k_by_state_type('pending', types[i]), k_running(types[i]), lease_expires, ids)
end
for i, starts in pairs(started_of) do
  local rk = k_rate(types[i])
  redis.call('ZADD', rk, unpack(starts))
  redis.call('PEXPIRE', rk, windows[i])
end
batch_end()
if blocked then blocked = fmt(math.max(0, blocked - NOW)) else blocked = '' end
return { out, blocked }
