-- complete.lua: finish attempts successfully, with their follow-up jobs, atomically.
-- ARGV[4]   n, the number of completions; then per completion:
--           id, lease token, result JSON, logs JSON array, plugin_version ('' = none),
--           f (number of follow-ups), then 9 arguments per follow-up (lib.lua insert_new)
-- Returns   one code per completion: 1 completed, 0 lease lost (nothing written, follow-ups
--           dropped). A requested cancel does not stop a completion: the work is done.
zbuffer()
local n = tonumber(ARGV[4])
local i, out, wake = 5, {}, false
for _ = 1, n do
  local id, token = ARGV[i], ARGV[i + 1]
  local nf = tonumber(ARGV[i + 5])
  local j = load_meta(id)
  if holds_lease(j, token) then
    local pv = ARGV[i + 4]
    if pv == '' then pv = false end
    end_attempt(id, j, 'completed',
      { result = ARGV[i + 2], logs = ARGV[i + 3], plugin_version = pv }, false)
    for k = 0, nf - 1 do
      local created, _, state = insert_new(ARGV, i + 6 + k * 9)
      if created == 1 and state == 'pending' then wake = true end
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  i = i + 6 + nf * 9
end
zflush()
if wake then redis.call('PUBLISH', CH_WAKE, 'followup') end
return out
