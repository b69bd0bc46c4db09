-- enqueue.lua: insert new jobs (enqueue and enqueue_batch), all in one atomic call.
-- ARGV[4]   n, the number of jobs
-- ARGV[5..] NEW_JOB_ARGS (11) arguments per job, as lib.lua's insert_new reads them
-- Returns   the call's time (ms, the creation time of every job it created), then per job, in
--           input order: 1 for a created job (the caller knows the rest: job::Job::from_new
--           gives the same fields this script wrote), or the existing job's fields (the id
--           existed, or a job holds the unique key: live, or finished within its
--           `unique_for`; a debounced enqueue has updated it).
-- Publishes on the wake channel when a job became pending.
batch_begin()
local n = tonumber(ARGV[4])
local out, wake = { NOW_S }, false
for k = 0, n - 1 do
  local created, id, state = insert_new(ARGV, 5 + k * NEW_JOB_ARGS)
  if created == 1 then
    if state == 'pending' then wake = true end
    out[#out + 1] = 1
  else
    out[#out + 1] = dump(id)
  end
end
batch_end()
if wake then redis.call('PUBLISH', CH_WAKE, 'enqueue') end
return out
