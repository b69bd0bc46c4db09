-- event.lua: append a non-job event (plugin.loaded, ...).
-- ARGV[4] kind, ARGV[5] job id (''), ARGV[6] job type (''), ARGV[7] data as JSON
-- Returns {event id, at}.
local id = emit(ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return { id, fmt(NOW) }
