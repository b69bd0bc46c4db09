-- import.lua: insert jobs exactly as given (spool migrate, fallback replay), skipping ids
-- that exist and live jobs whose unique key a live job here holds, so running it twice
-- changes nothing.
-- ARGV[4]   '1': write job.created for each job inserted, and job.cancelled for a cancelled
--           one (the fallback replay: the jobs were accepted, and maybe cancelled, while Redis
--           was away); '0': no events (spool migrate: their history happened elsewhere)
-- ARGV[5..] per job: m (number of field/value pairs), then the pairs (codec.rs format)
-- Returns how many jobs were inserted.
batch_begin()
local announce = ARGV[4] == '1'
local i, inserted, wake = 5, 0, false
while i <= #ARGV do
  local m = tonumber(ARGV[i])
  local j = {}
  for k = 1, m do j[ARGV[i + 2 * k - 1]] = ARGV[i + 2 * k] end
  i = i + 1 + 2 * m
  local id = j.id
  local live = not is_finished(j.status)
  if id and redis.call('EXISTS', k_job(id)) == 0 and not (live and live_holder(j.unique_key, id)) then
    if j.status == 'running' then
      -- Nobody here holds its lease: let the reaper have it now.
      local exp = tonumber(j.lease_expires_at) or NOW
      if exp > NOW then exp = NOW end
      j.lease_expires_at = fmt(exp)
    end
    local flat = {}
    for f, v in pairs(j) do flat[#flat + 1] = f; flat[#flat + 1] = v end
    redis.call('HSET', k_job(id), unpack(flat))
    zadd(k_by_type(j.type), 0, id)
    note_type(j.type)
    place(id, j, j.status)
    if j.unique_key and (live or (j.unique_for and not live_holder(j.unique_key, id))) then
      redis.call('HSET', K_UNIQUE, j.unique_key, id)
    end
    if j.status == 'pending' then wake = true end
    if announce then
      -- job_events.rs announced: created, and cancelled for a job cancelled meanwhile.
      emit_created(id, j.type, j.status, fmt(tonumber(j.attempt) or 0), j.priority, j.run_at)
      if j.status == 'cancelled' then emit('job.cancelled', id, j.type, job_data(j)) end
    end
    inserted = inserted + 1
  end
end
batch_end()
if wake then redis.call('PUBLISH', CH_WAKE, 'import') end
return inserted
