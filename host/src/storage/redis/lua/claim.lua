-- claim.lua: lease up to `limit` ready jobs among several types.
-- ARGV[4]   lease length in ms
-- ARGV[5]   worker name (diagnostics)
-- ARGV[6]   limit
-- ARGV[7]   t, the number of types; ARGV[8..7+t] the types
-- ARGV[8+t] a fresh random nonce: the k-th job claimed gets the lease token `<nonce>-<k>`
--           (unguessable and unique, at the cost of one random number per claim)
-- Returns   the claimed jobs' ids, best first, in token order. The caller
--           reads the jobs themselves afterwards (plain HGETALLs, ops.rs): a hash read
--           inside Lua costs several times more, and the jobs are ours once leased.
-- Each type's first `limit` ready jobs are read in one ZRANGE; each round takes the best
-- head among the types (lowest score, then lowest id), so a claim over several types honours
-- priority and FIFO across all of them.
batch_begin()
local lease_ms, worker = tonumber(ARGV[4]), ARGV[5]
local limit, nt = tonumber(ARGV[6]), tonumber(ARGV[7])
local types, heads, pos = {}, {}, {}
for i = 1, nt do
  types[i] = ARGV[7 + i]
  heads[i] = redis.call('ZRANGE', k_ready(types[i]), 0, limit - 1, 'WITHSCORES')
  pos[i] = 1
end
local out = {}
local lease_expires = fmt(NOW + lease_ms)
local started = fmt(NOW)
local worker_json = '"worker":' .. jstr(worker)
local nonce = ARGV[8 + nt]
while #out < limit do
  local best, best_id, best_score = nil, nil, nil
  for i = 1, nt do
    local id = heads[i][pos[i]]
    if id then
      local score = tonumber(heads[i][pos[i] + 1])
      if not best or score < best_score or (score == best_score and bytes_less(id, best_id)) then
        best, best_id, best_score = i, id, score
      end
    end
  end
  if not best then break end
  pos[best] = pos[best] + 2
  local t = types[best]
  local key = k_job(best_id)
  local f = redis.call('HMGET', key, 'status', 'attempt', 'progress')
  if f[1] == 'pending' then
    local attempt = fmt((tonumber(f[2]) or 0) + 1)
    unplace(best_id, t, 'pending')
    redis.call('HSET', key, 'status', 'running', 'attempt', attempt, 'started_at', started,
      'lease', nonce .. '-' .. (#out + 1), 'worker', worker, 'lease_expires_at', lease_expires,
      'cancel_requested', '0')
    if f[3] then redis.call('HDEL', key, 'progress') end
    place(best_id, { type = t, lease_expires_at = lease_expires }, 'running')
    emit('job.started', best_id, t,
      '{"status":"running","attempt":' .. attempt .. ',' .. worker_json .. '}')
    out[#out + 1] = best_id
  else
    zrem(k_ready(t), best_id) -- a stale entry (every state change unplaces pending jobs)
  end
end
batch_end()
return out
