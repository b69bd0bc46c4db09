-- claim.lua: lease up to `limit` ready jobs among several types.
-- ARGV[4]   lease length in ms
-- ARGV[5]   worker name (diagnostics)
-- ARGV[6]   limit
-- ARGV[7]   t, the number of types; ARGV[8..7+t] the types
-- ARGV[8+t..] `limit` fresh lease tokens, one per job that may be claimed
-- Returns   the claimed jobs' fields, best first.
-- Each type's first `limit` ready jobs are read in one ZRANGE; each round takes the best
-- head among the types (lowest score, then lowest id), so a claim over several types honours
-- priority and FIFO across all of them.
zbuffer()
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
local token = 7 + nt
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
  local j = load(best_id)
  if j and j.status == 'pending' then
    token = token + 1
    local attempt = (tonumber(j.attempt) or 0) + 1
    move(best_id, j, 'running', {
      attempt = tostring(attempt), started_at = started, lease = ARGV[token],
      worker = worker, lease_expires_at = lease_expires, cancel_requested = '0',
      progress = false,
    })
    emit('job.started', best_id, j.type, job_data(j, { worker = worker }))
    out[#out + 1] = flat_of(j)
  else
    zrem(k_ready(types[best]), best_id) -- a stale entry (move() unplaces pending jobs)
  end
end
zflush()
return out
