-- ctl.lua: set one type's flow control if it is still what the caller read (compare and
-- set: the host applies the change, storage/flow.rs, and tries again on a conflict).
-- ARGV[4]   the type
-- ARGV[5]   the control JSON the caller read ('' = none)
-- ARGV[6]   the new control JSON ('' = none: the type's records go)
-- ARGV[7..11] the values in force: paused ('1'), held until (ms), rate count, rate window (ms),
--           global concurrency; '' for each one not set
-- ARGV[12]  the event kind to write ('' = none), ARGV[13] its data as JSON
-- Returns   1 when written, 0 when the control changed since the caller read it.
local t = ARGV[4]
local current = redis.call('HGET', K_CTL, t) or ''
if current ~= ARGV[5] then return 0 end
if ARGV[6] == '' then
  redis.call('HDEL', K_CTL, t)
else
  redis.call('HSET', K_CTL, t, ARGV[6])
end
local k = k_ctl(t)
redis.call('DEL', k)
local fields = {}
for i, name in ipairs({ 'paused', 'held', 'rate_n', 'rate_ms', 'conc' }) do
  if ARGV[6 + i] ~= '' then
    fields[#fields + 1] = name
    fields[#fields + 1] = ARGV[6 + i]
  end
end
if #fields > 0 then redis.call('HSET', k, unpack(fields)) end
if ARGV[9] == '' then redis.call('DEL', k_rate(t)) end
if ARGV[12] ~= '' then emit(ARGV[12], '', t, ARGV[13]) end
redis.call('PUBLISH', CH_WAKE, 'control')
return 1
