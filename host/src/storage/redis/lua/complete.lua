-- complete.lua: finish attempts successfully, with their follow-up jobs, atomically.
-- ARGV[4]   n, the number of completions; then per completion:
--           id, lease token, result JSON, logs JSON array, plugin_version ('' = none),
--           f (number of follow-ups), then NEW_JOB_ARGS (11) arguments per follow-up (lib.lua insert_new)
-- Returns   one code per completion: 1 completed, 0 lease lost (nothing written, follow-ups
--           dropped). A requested cancel does not stop a completion: the work is done.
-- The hot path of every job, so written out rather than through end_attempt (lib.lua), which
-- does the same for any target state (45k instructions a job fewer, callgrind): keep the two
-- in step (but for the lease fields, which end_attempt deletes and this leaves);
-- conformance `completion_records_result_logs_and_version` checks the result.
-- The jobs' own index moves (running -> completed) go out as one variadic ZREM and ZADD
-- per type rather than through the batch's buffer: it would hash every id twice more.
batch_begin()
local n = tonumber(ARGV[4])
local i, out, wake = 5, {}, false
local finished = fmt(NOW)
local done_of = {} -- type -> ids completed
local completed_head = ev_head('job.completed')
for _ = 1, n do
  local id, token = ARGV[i], ARGV[i + 1]
  local nf = tonumber(ARGV[i + 5])
  local key = k_job(id)
  local f = redis.call('HMGET', key, 'status', 'lease', 'type', 'attempt', 'unique_key')
  if f[1] == 'running' and f[2] == token then
    local t, pv = f[3], ARGV[i + 4]
    local done = done_of[t]
    if not done then done = {}; done_of[t] = done end
    done[#done + 1] = id
    -- The lease fields stay: they mean nothing once the job is not running (codec.rs reads
    -- lease_expires_at of running jobs only), and an HDEL is one more call per job.
    if pv == '' then
      redis.call('HSET', key, 'status', 'completed', 'result', ARGV[i + 2], 'logs', ARGV[i + 3],
        'finished_at', finished)
      redis.call('HDEL', key, 'plugin_version')
    else
      redis.call('HSET', key, 'status', 'completed', 'result', ARGV[i + 2], 'logs', ARGV[i + 3],
        'finished_at', finished, 'plugin_version', pv)
    end
    if f[5] then
      local uf = redis.call('HGET', key, 'unique_for')
      release_unique(id, { unique_key = f[5], unique_for = uf }, true)
    end
    push_event(completed_head, id, t, '{"status":"completed","attempt":', f[4] or '0',
      '}')
    for k = 0, nf - 1 do
      local created, _, state = insert_new(ARGV, i + 6 + k * NEW_JOB_ARGS)
      if created == 1 and state == 'pending' then wake = true end
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  i = i + 6 + nf * NEW_JOB_ARGS
end
for t, ids in pairs(done_of) do
  move_ids(k_running(t), k_by_state_type('completed', t), '0', ids)
end
batch_end()
if wake then redis.call('PUBLISH', CH_WAKE, 'followup') end
return out
