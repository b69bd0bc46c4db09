-- release.lua: give leases back without counting the attempt (graceful shutdown).
-- ARGV[4..] pairs of (job id, lease token)
-- Returns   how many leases were given back. The job goes back to `pending` keeping its
--           ready time (front of its priority), or to `cancelled` when a cancel was requested
--           (job::rules::state_after_release).
batch_begin()
local released, wake = 0, false
for i = 4, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local j = load(id)
  if holds_lease(j, token) then
    if j.cancel_requested == '1' then
      end_attempt(id, j, 'cancelled', {}, false)
    else
      local attempt = (tonumber(j.attempt) or 1) - 1
      if attempt < 0 then attempt = 0 end
      end_attempt(id, j, 'pending', { attempt = tostring(attempt) }, false)
      wake = true
    end
    released = released + 1
  end
end
batch_end()
if wake then redis.call('PUBLISH', CH_WAKE, 'release') end
return released
