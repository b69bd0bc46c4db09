-- fail.lua: record failed attempts, fenced by their leases.
-- ARGV[4]   n; then per failure: id, lease token, error, retry_at ('' = fail permanently),
--           logs JSON array, plugin_version ('' = none)
-- Returns   one code per failure: 0 lease lost, else the state it went to: 1 retrying,
--           2 failed, 3 cancelled (job::rules::state_after_failure: a requested cancel wins,
--           then no retry_at or no attempts left fails; a retrying job waits in the delayed
--           set until run_at = retry_at, even when that is not in the future).
batch_begin()
local n = tonumber(ARGV[4])
local codes = { retrying = 1, failed = 2, cancelled = 3 }
local out = {}
for k = 0, n - 1 do
  local i = 5 + k * 6
  local id, token, err, retry_at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local j = load_meta(id)
  if holds_lease(j, token) then
    local pv = ARGV[i + 5]
    if pv == '' then pv = false end
    local to = state_after_failure(j, retry_at ~= '')
    local set = { error = err, logs = ARGV[i + 4], plugin_version = pv }
    if to == 'retrying' then set.run_at = retry_at end
    end_attempt(id, j, to, set, false)
    out[#out + 1] = codes[to]
  else
    out[#out + 1] = 0
  end
end
batch_end()
return out
