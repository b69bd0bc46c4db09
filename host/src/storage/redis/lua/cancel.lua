-- cancel.lua: cancel one job (job::rules::cancel_action).
-- ARGV[4] job id
-- Returns {code, job fields}: code 0 not found, 1 cancelled now (it was pending, scheduled or
-- retrying), 2 running (cancel_requested is set; the worker stops it), 3 already finished.
local id = ARGV[4]
local j = load(id)
if not j then return { 0, false } end
if is_finished(j.status) then return { 3, dump(id) } end
if j.status == 'running' then
  redis.call('HSET', k_job(id), 'cancel_requested', '1')
  return { 2, dump(id) }
end
move(id, j, 'cancelled', { finished_at = fmt(NOW) })
release_unique(id, j, true)
emit('job.cancelled', id, j.type, job_data(j))
return { 1, dump(id) }
