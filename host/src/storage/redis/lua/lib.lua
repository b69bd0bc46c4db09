-- lib.lua: helpers shared by the job scripts; scripts.rs puts this file in front of each one.
--
-- Calling convention of every job script:
--   KEYS[1]  `{prefix}:jobs`. Declared so that EVALSHA is routed to the slot of the `{prefix}`
--            hash tag; every key a script touches carries that same tag (see keys.rs), so one
--            script always runs on one Cluster slot.
--   ARGV[1]  the tagged prefix, e.g. `{spool}`
--   ARGV[2]  the time source: a skew in ms, added to Redis's own TIME (`clock=redis`, the
--            default: every daemon agrees on lease times whatever its host clock says; the
--            skew is 0 in production), or `=<ms>`, the daemon Clock's time, taken as given
--            (`clock=local`: the conformance suite's ManualClock needs exact times)
--   ARGV[3]  the cap of the event log, in events (write_events)
--   ARGV[4..] the script's own arguments, documented at its top.
--
-- Key layout (all under the tag; the variable part always comes last, so names never collide):
--   P:job:<id>               hash: the job's fields (codec.rs is the Rust side of the format)
--   P:jobs                   no longer written (a listing of every job merges the per-type
--                            indexes below); its name is KEYS[1], for routing only
--   P:jobs:t:<type>          zset, score 0, by id: every job of one type (lexicographic =
--                            creation order)
--   P:jobs:st:<state>:<type> the same, one state and type, for every state but `running`
--                            (its ZCARD is the stats count; a listing by state alone merges
--                            these over the types). For finished states it is also the
--                            retention index: oldest id first (sweep.lua)
--   P:ready:<type>           zset of pending jobs, score = priority * 2^48 + ready time (ms);
--                            equal scores order by id: FIFO within a priority, O(log n) claim
--   P:delayed                zset of scheduled and retrying jobs by run_at
--   P:running:<type>         zset of running jobs by lease expiry: the reaper's index, the
--                            stats count and (sorted by id when read) the listing of running
--                            jobs, whose number the worker slots bound
--   P:unique                 hash unique_key -> id of the job holding it: a live one, or a
--                            finished one with a `unique_for` window (live_holder checks it)
--   P:types                  set of job types that have jobs
--   P:events                 stream, the event log: entries of up to 50 events, each written
--                            whole by one script call (write_events below says how ids and
--                            the cap work)
--   P:events:total           string: events ever written (the cap's count)
--   P:events:marks           list of `<entry id> <events before it>`, one per entry kept, oldest
--                            first
--   P:ctl                    hash type -> JSON of the type's flow control (storage/flow.rs
--                            TypeControl), for reading it back whole
--   P:ctl:<type>             hash of what claims enforce, the values in force: `paused` (1),
--                            `held` (ms), `rate_n` and `rate_ms` (starts per window), `conc`
--                            (global concurrency); absent when the type has no control
--   P:rate:<type>            zset of the starts of a rate-limited type within its window
--                            (member: the lease token, score: the start time)
--   P:schedules              hash name -> JSON of a cron schedule; P:schedules:tick and
--                            P:schedules:created hold its last tick and creation time (ms)
--   channel P:wake           published when work becomes ready (wait_for_work)
--
-- Each job is in as few indexes as a state allows, because every index write is paid at each
-- state change of every job: dropping the id index of `running` and the separate
-- by-finished_at index of finished jobs and the all-jobs index took 4 of 12 sorted-set writes
-- off a job's way through the queue (README, Moving and measuring, has the figures).
-- Earlier versions also wrote P:running (all types), P:jobs, P:jobs:st:running:<type> and
-- P:finished:<state>:<type>: reap.lua drains the first, the daemon unlinks the others
-- (drop_legacy_indexes_once in redis.rs).

local P = ARGV[1]
local EVENTS_MAX = tonumber(ARGV[3])
local PRIO_SHIFT = 281474976710656 -- 2^48: ready times below it (year 10889), priority above

-- One time for the whole call: every change a script makes shares it.
local NOW
if string.sub(ARGV[2], 1, 1) == '=' then
  NOW = tonumber(string.sub(ARGV[2], 2))
else
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
end

-- Byte order, as Redis orders equal scores and lexicographic ranges: Lua's `<` on strings
-- follows the server's locale (Redis sets LC_COLLATE from its environment).
local function bytes_less(a, b)
  local n = math.min(#a, #b)
  for k = 1, n do
    local x, y = string.byte(a, k), string.byte(b, k)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Integers as plain digits (tostring gives 1.7e+12 for big numbers). `%d` formats a 64-bit
-- integer (Lua 5.1 casts to long); it is several times cheaper than `%.0f`.
local function fmt(n) return string.format('%d', n) end
-- The call's time as digits, for the many fields and scores that take it.
local NOW_S = fmt(NOW)

-- A string as JSON. cjson's encoder is C: it costs less than checking the text in Lua first
-- (1.7k instructions against 4.2k for an id, callgrind). Kinds and types repeat in a batch:
-- their text is kept for the call.
local JSTR = {}
local function jstr(v)
  local r = JSTR[v]
  if not r then
    r = cjson.encode(v)
    JSTR[v] = r
  end
  return r
end
local function jstr_once(v) return cjson.encode(v) end

local K_DELAYED = P .. ':delayed'
local K_RUNNING_LEGACY = P .. ':running'
local K_UNIQUE = P .. ':unique'
local K_TYPES = P .. ':types'
local K_EVENTS = P .. ':events'
local K_EVENT_TOTAL = P .. ':events:total'
local K_EVENT_MARKS = P .. ':events:marks'
local CH_WAKE = P .. ':wake'
local K_CTL = P .. ':ctl'
local function k_ctl(t) return P .. ':ctl:' .. t end
local function k_rate(t) return P .. ':rate:' .. t end
local function k_job(id) return P .. ':job:' .. id end
local function k_ready(t) return P .. ':ready:' .. t end
local function k_by_type(t) return P .. ':jobs:t:' .. t end
local function k_by_state_type(s, t) return P .. ':jobs:st:' .. s .. ':' .. t end
local function k_running(t) return P .. ':running:' .. t end

local function is_finished(s) return s == 'completed' or s == 'failed' or s == 'cancelled' end

-- Scores of jobs ready now, by priority (a batch of jobs shares a few).
local READY_NOW = {}
local function ready_score(priority, ready_at)
  local t = tonumber(ready_at) or 0
  if t == NOW then
    local r = READY_NOW[priority]
    if not r then
      r = fmt(tonumber(priority) * PRIO_SHIFT + t)
      READY_NOW[priority] = r
    end
    return r
  end
  if t < 0 then t = 0 elseif t >= PRIO_SHIFT then t = PRIO_SHIFT - 1 end
  return fmt(tonumber(priority) * PRIO_SHIFT + t)
end

-- Hot scripts batch their writes: batch_begin() at the top, batch_end() at the end. Index
-- writes (sorted sets) are buffered and sent as one variadic ZADD or ZREM per key, and the
-- call's events go to the stream as one entry (write_events): a batch of N jobs then costs a
-- few commands per index and one XADD instead of one per job, which is most of a script's
-- time. Only scripts that do not read an index after writing it may batch; the others write
-- through. Redis does not roll back a script that errors half-way, and an error before
-- batch_end() would leave written hashes outside their indexes and without their events: a
-- batching script must not fail after its first write (its arguments are checked by the host
-- before the call, storage/limits.rs).
local ZBUF, EVP, EVS = nil, nil, nil
-- How many pieces and events EVP and EVS hold: Lua's `#` searches for a table's end, too
-- slow to run for every event.
local EVN, EVK = 0, 0
local function batch_begin() ZBUF, EVP, EVS, EVN, EVK = {}, {}, {}, 0, 0 end
local function zadd(key, score, id)
  if not ZBUF then return redis.call('ZADD', key, score, id) end
  local b = ZBUF[key]
  if not b then b = { add = {}, rem = {} }; ZBUF[key] = b end
  b.rem[id] = nil
  b.add[id] = score
end
local function zrem(key, id)
  if not ZBUF then return redis.call('ZREM', key, id) end
  local b = ZBUF[key]
  if not b then b = { add = {}, rem = {} }; ZBUF[key] = b end
  b.add[id] = nil
  b.rem[id] = true
end
-- Lua's unpack takes a few thousand values at most: send long lists in chunks.
local CHUNK = 2000

-- Moves `ids` (distinct, all in `from`) to the sorted set `to` with one score, as one
-- variadic ZREM and ZADD a chunk: for the hot scripts' own index moves, which the batch
-- buffer (zadd, zrem) would hash twice more an id.
local function move_ids(from, to, score, ids)
  for first = 1, #ids, CHUNK / 2 do
    local last = math.min(#ids, first + CHUNK / 2 - 1)
    redis.call('ZREM', from, unpack(ids, first, last))
    local args, m = {}, 0
    for k = first, last do
      args[m + 1], args[m + 2] = score, ids[k]
      m = m + 2
    end
    redis.call('ZADD', to, unpack(args))
  end
end
local function zflush()
  for key, b in pairs(ZBUF) do
    local args = {}
    for id in pairs(b.rem) do
      args[#args + 1] = id
      if #args >= CHUNK then redis.call('ZREM', key, unpack(args)); args = {} end
    end
    if #args > 0 then redis.call('ZREM', key, unpack(args)) end
    args = {}
    for id, score in pairs(b.add) do
      args[#args + 1] = score
      args[#args + 1] = id
      if #args >= CHUNK then redis.call('ZADD', key, unpack(args)); args = {} end
    end
    if #args > 0 then redis.call('ZADD', key, unpack(args)) end
  end
  ZBUF = nil
end

-- The event log. Each call's events (each encoded `[kind, job_id, job_type, data]`) go to the
-- stream as entries {at, n, e = JSON array of the n events}, EVENTS_PER_WRITE events at most
-- each. Event k of entry `ms-s` has the id `ms-(s * EVENTS_PER_ENTRY + k)`: ids keep the
-- stream-id form and order events as the stream does (codec.rs reads them back).
-- The cap counts events, not entries: every entry is marked with the number of events
-- written before it, and the entries that hold only events older than the newest EVENTS_MAX
-- are trimmed (the host's sweep also trims to EVENTS_MAX entries, which bounds the log
-- even if the marks were lost).
--
-- Events are kept as pieces of text until written (EVP), with EVS[k] the index in EVP of the
-- slot before event k: ',' between events, '[' or ']' where an entry's array opens or closes.
-- Redis's Lua hashes every byte of every string it makes, so text is joined once, by one
-- table.concat per entry: entries of EVENTS_PER_WRITE events fit its 8 KiB buffer (larger
-- ones are joined in rounds that hash each byte again) and an event's own text is never a
-- string of its own (claim.lua and complete.lua push their pieces directly).
local EVENTS_PER_ENTRY = 1000
local EVENTS_PER_WRITE = 50

-- Writes the events in `pieces` (event k starts after the slot pieces[starts[k]]). Returns
-- the id of the first event.
local function write_events(pieces, starts)
  local nev = #starts
  local total = redis.call('INCRBY', K_EVENT_TOTAL, nev)
  local before = total - nev
  starts[nev + 1] = #pieces + 1
  local first, marks, i = nil, {}, 1
  while i <= nev do
    local last = math.min(nev, i + EVENTS_PER_WRITE - 1)
    local a, b = starts[i], starts[last + 1]
    pieces[a], pieces[b] = '[', ']'
    local id = redis.call('XADD', K_EVENTS, '*', 'at', NOW_S, 'n', fmt(last - i + 1),
      'e', table.concat(pieces, '', a, b))
    marks[#marks + 1] = id .. ' ' .. fmt(before + i - 1)
    if not first then
      local ms, seq = string.match(id, '^(%d+)-(%d+)$')
      first = ms .. '-' .. fmt(tonumber(seq) * EVENTS_PER_ENTRY)
    end
    i = last + 1
  end
  redis.call('RPUSH', K_EVENT_MARKS, unpack(marks))
  -- Drop the oldest mark while the entries from the next one on hold the newest EVENTS_MAX
  -- events; then keep only the marked entries, the newest (one mark per entry; MAXLEN
  -- rather than MINID, which needs Redis 6.2).
  local dropped = false
  while true do
    local next_mark = redis.call('LINDEX', K_EVENT_MARKS, 1)
    if not next_mark then break end
    local mark_before = tonumber(string.match(next_mark, ' (%d+)$')) or total
    if total - mark_before < EVENTS_MAX then break end
    redis.call('LPOP', K_EVENT_MARKS)
    dropped = true
  end
  if dropped then
    redis.call('XTRIM', K_EVENTS, 'MAXLEN', redis.call('LLEN', K_EVENT_MARKS))
  end
  return first
end

-- Ends a batch (batch_begin): the buffered index writes, then the events.
local function batch_end()
  if ZBUF then zflush() end
  local pieces, starts = EVP, EVS
  EVP, EVS = nil, nil
  if starts and #starts > 0 then write_events(pieces, starts) end
end

-- Job types known to be in K_TYPES during this call (one SADD per type, not per job).
local TYPES_SEEN = {}
local function note_type(t)
  if not TYPES_SEEN[t] then
    redis.call('SADD', K_TYPES, t)
    TYPES_SEEN[t] = true
  end
end

-- Tables that hold every field of their job's hash (load), as opposed to a few (load_meta):
-- move() skips deleting a field such a table shows absent.
local FULL = setmetatable({}, { __mode = 'k' })

-- The job's hash as a table, or nil.
local function load(id)
  local flat = redis.call('HGETALL', k_job(id))
  if #flat == 0 then return nil end
  local j = {}
  for i = 1, #flat, 2 do j[flat[i]] = flat[i + 1] end
  FULL[j] = true
  return j
end

-- The fields a failed attempt needs (fail), without payload, result or logs; nil when the
-- job does not exist.
local META = { 'status', 'type', 'lease', 'attempt', 'max_attempts', 'cancel_requested',
  'unique_key', 'run_at', 'error', 'priority' }
local function load_meta(id)
  local v = redis.call('HMGET', k_job(id), unpack(META))
  if not v[1] then return nil end
  local j = {}
  for i, f in ipairs(META) do
    if v[i] then j[f] = v[i] end
  end
  return j
end

-- A loaded job as the flat field list Rust decodes (codec.rs).
local function flat_of(j)
  local flat = {}
  for f, v in pairs(j) do
    flat[#flat + 1] = f
    flat[#flat + 1] = v
  end
  return flat
end

-- The job as the flat field list Rust decodes (codec.rs), or false.
local function dump(id)
  local flat = redis.call('HGETALL', k_job(id))
  if #flat == 0 then return false end
  return flat
end

-- Adds job `id` to the sets of state `s`. `j` needs type, priority, run_at and, for
-- `running`, lease_expires_at as the digits written to the hash (claim.lua, import.lua: used
-- as the score as it is, not parsed and formatted again for every claimed job).
local function place(id, j, s)
  if s == 'running' then
    zadd(k_running(j.type), j.lease_expires_at or NOW_S, id)
    return
  end
  zadd(k_by_state_type(s, j.type), '0', id)
  if s == 'pending' then
    zadd(k_ready(j.type), ready_score(j.priority, j.run_at), id)
  elseif s == 'scheduled' or s == 'retrying' then
    zadd(K_DELAYED, fmt(tonumber(j.run_at) or NOW), id)
  end
end

-- Removes job `id` of type `t` from the sets of state `s`.
local function unplace(id, t, s)
  if s == 'running' then
    zrem(k_running(t), id)
    return
  end
  zrem(k_by_state_type(s, t), id)
  if s == 'pending' then
    zrem(k_ready(t), id)
  elseif s == 'scheduled' or s == 'retrying' then
    zrem(K_DELAYED, id)
  end
end

-- Moves a loaded job `j` to state `to`, first writing `set` (field -> value, false deletes).
local function move(id, j, to, set)
  unplace(id, j.type, j.status)
  local hset, hdel = { 'status', to }, {}
  j.status = to
  local full = FULL[j]
  for f, v in pairs(set or {}) do
    if v == false then
      if not full or j[f] ~= nil then hdel[#hdel + 1] = f end
      j[f] = nil
    else
      hset[#hset + 1] = f
      hset[#hset + 1] = v
      j[f] = v
    end
  end
  redis.call('HSET', k_job(id), unpack(hset))
  if #hdel > 0 then redis.call('HDEL', k_job(id), unpack(hdel)) end
  place(id, j, to)
end

-- Drops the unique key's entry when this job holds it. A job that just finished (`finishing`)
-- with a `unique_for` window keeps it: live_holder ends the window by the job's times.
local function release_unique(id, j, finishing)
  if finishing and j.unique_for then return end
  if j.unique_key and redis.call('HGET', K_UNIQUE, j.unique_key) == id then
    redis.call('HDEL', K_UNIQUE, j.unique_key)
  end
end

-- RFC 3339 UTC with milliseconds, as job::serde_time::format_rfc3339 writes it (the job
-- events carry times in that form). Days to civil date: H. Hinnant's `civil_from_days`.
local function rfc3339_uncached(ms)
  local secs = math.floor(ms / 1000)
  local milli = ms - secs * 1000
  local days = math.floor(secs / 86400)
  local sod = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp + 3
  if mp >= 10 then m = mp - 9 end
  if m <= 2 then y = y + 1 end
  if y < 0 or y > 9999 then return fmt(ms) end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,
    math.floor(sod / 3600), math.floor((sod % 3600) / 60), sod % 60, milli)
end

local RFC3339_LAST, RFC3339_TEXT = nil, nil
local function rfc3339(ms)
  ms = tonumber(ms)
  -- Most calls in a batch format the call's own time: remember the last one.
  if ms == RFC3339_LAST then return RFC3339_TEXT end
  RFC3339_LAST, RFC3339_TEXT = ms, rfc3339_uncached(ms)
  return RFC3339_TEXT
end

-- An event's text before its job id (`["kind",`) and between the id and its data (`,"type",`).
local EV_HEAD, EV_MID = {}, {}
local function ev_head(kind)
  local h = EV_HEAD[kind]
  if not h then h = '[' .. jstr(kind) .. ','; EV_HEAD[kind] = h end
  return h
end
local function ev_mid(t)
  local m = EV_MID[t]
  if not m then m = ',' .. jstr(t) .. ','; EV_MID[t] = m end
  return m
end

-- Pushes the JSON string of `id` as pieces onto `p` at `n`; returns the new length. Every
-- job id in the store passed job::validate_job_id (no whitespace or control characters), so
-- quotes make it JSON unless it holds `"` or `\`, which take cjson. (Plain finds: a pattern
-- with a character class costs 8k instructions an id, callgrind.)
local function push_id(p, n, id)
  if string.find(id, '"', 1, true) or string.find(id, '\\', 1, true) then
    p[n + 1] = cjson.encode(id)
    return n + 1
  end
  p[n + 1], p[n + 2], p[n + 3] = '"', id, '"'
  return n + 3
end

-- Pushes one event onto the call's pieces (EVP, EVS): `["kind",` as `head` (ev_head), the
-- id, the type, then its data as up to three pieces of JSON text (d2 and d3 may be nil), so
-- that a hot script never builds an event's text as a string of its own. The one place that
-- lays out an event.
local function push_event(head, id, t, d1, d2, d3)
  local p, n = EVP, EVN
  EVK = EVK + 1
  EVS[EVK] = n + 1
  p[n + 1], p[n + 2] = ',', head
  n = push_id(p, n + 2, id)
  p[n + 1], p[n + 2] = ev_mid(t), d1
  n = n + 2
  if d2 then n = n + 1; p[n] = d2 end
  if d3 then n = n + 1; p[n] = d3 end
  p[n + 1] = ']'
  EVN = n + 1
end

-- Appends an event (to the batch in a batching script, else to the log at once); `data` is
-- its data as JSON text. Returns the event id when written at once, nil when batched.
local function emit(kind, id, t, data)
  if EVP then
    push_event(ev_head(kind), id or '', t or '', data)
    return nil
  end
  EVP, EVS, EVN, EVK = {}, {}, 0, 0
  push_event(ev_head(kind), id or '', t or '', data)
  local p, s = EVP, EVS
  EVP, EVS = nil, nil
  return write_events(p, s)
end

-- Event data about a job as it is now, as storage/job_events.rs builds it: `status` and
-- `attempt`, plus `extra`, JSON members (`"key":value`) joined by commas. Built as text: a
-- table through cjson costs ten times as much, and events are a third of a job's writes.
local function job_data(j, extra)
  local d = '{"status":"' .. j.status .. '","attempt":' .. fmt(tonumber(j.attempt) or 0)
  if extra and extra ~= '' then d = d .. ',' .. extra end
  return d .. '}'
end

-- `job.created` of a job just written (job_events.rs created), in state `s` on attempt
-- `attempt` (digits).
local PRIO_TEXT = {}
local function emit_created(id, t, s, attempt, priority, run_at)
  local p = PRIO_TEXT[priority]
  if not p then
    p = fmt(tonumber(priority) or 0)
    PRIO_TEXT[priority] = p
  end
  emit('job.created', id, t, '{"status":"' .. s .. '","attempt":' .. attempt .. ',"priority":'
    .. p .. ',"run_at":"' .. rfc3339(tonumber(run_at) or NOW) .. '"}')
end

-- The event of a job whose attempt just ended (job_events.rs attempt_ended): none for a
-- released job back in `pending`.
local function attempt_ended_event(id, j, lease_expired)
  local s, extra, kind = j.status, {}, nil
  if lease_expired then extra[#extra + 1] = '"reason":"lease_expired"' end
  if s == 'retrying' or s == 'failed' or s == 'pending' then
    if j.error then extra[#extra + 1] = '"error":' .. jstr_once(j.error)
    else extra[#extra + 1] = '"error":null' end
  end
  if s == 'retrying' then extra[#extra + 1] = '"run_at":"' .. rfc3339(j.run_at) .. '"' end
  if s == 'completed' then kind = 'job.completed'
  elseif s == 'failed' then kind = 'job.failed'
  elseif s == 'cancelled' then kind = 'job.cancelled'
  elseif s == 'retrying' then kind = 'job.retrying'
  elseif s == 'pending' and lease_expired then kind = 'job.retrying'
  else return end
  emit(kind, id, j.type, job_data(j, table.concat(extra, ',')))
end

-- Ends the attempt of a leased job `j`: writes `set`, drops the lease, stamps finished_at
-- and frees the unique key when the job finished, files it under `to`, writes the event.
-- complete.lua does the same for `completed` written out (the hot path: 45k instructions a
-- job fewer, callgrind), but leaves LEASE_FIELDS, which mean nothing outside `running`.
local LEASE_FIELDS = { 'lease', 'worker', 'lease_expires_at' }
local function end_attempt(id, j, to, set, lease_expired)
  for _, f in ipairs(LEASE_FIELDS) do set[f] = false end
  if is_finished(to) then set.finished_at = NOW_S end
  move(id, j, to, set)
  if is_finished(to) then release_unique(id, j, true) end
  attempt_ended_event(id, j, lease_expired)
end

-- Where a failed attempt goes (job::rules::state_after_failure).
local function state_after_failure(j, has_retry_at)
  if j.cancel_requested == '1' then return 'cancelled' end
  if not has_retry_at or (tonumber(j.attempt) or 0) >= (tonumber(j.max_attempts) or 1) then
    return 'failed'
  end
  return 'retrying'
end

-- Deletes a job and every index entry. Returns 1, or 0 when it does not exist.
local function remove_job(id)
  local j = load(id)
  if not j then return 0 end
  unplace(id, j.type, j.status)
  zrem(k_by_type(j.type), id)
  release_unique(id, j)
  redis.call('DEL', k_job(id))
  return 1
end

-- The job holding unique key `key`, other than `id`, or nil: a live one, or with `window`,
-- also a finished one within its `unique_for` window (enqueues respect the window; imports
-- and replays look at live jobs only).
local function key_holder(key, id, window)
  if not key or key == '' then return nil end
  local holder = redis.call('HGET', K_UNIQUE, key)
  if not holder or holder == id then return nil end
  local h = redis.call('HMGET', k_job(holder), 'status', 'finished_at', 'unique_for')
  if not h[1] then return nil end
  if not is_finished(h[1]) then return holder end
  local window_end = (tonumber(h[2]) or 0) + (tonumber(h[3]) or 0)
  if window and h[3] and window_end > NOW then return holder end
  return nil
end
local function live_holder(key, id) return key_holder(key, id, false) end

-- Inserts a new job from the NEW_JOB_ARGS arguments a[i..i+10]: id, type, payload, priority,
-- max_attempts, run_at ('' = now), timeout_ms (''), unique_key (''), backoff JSON (''),
-- unique_for in ms (''), debounce in ms ('').
-- Returns created (1/0), the id of the job the caller gets (the existing job when the id
-- exists already, a retried call, or when a job holds the unique key: with a debounce, a
-- holder that has not started takes the new payload and waits again), and for a created job
-- its state.
local NEW_JOB_ARGS = 11
local function insert_new(a, i)
  local id, t, unique = a[i], a[i + 1], a[i + 7]
  local unique_for, debounce = a[i + 9], a[i + 10]
  if redis.call('EXISTS', k_job(id)) == 1 then return 0, id end
  local holder = key_holder(unique, id, true)
  if holder then
    if debounce ~= '' then
      local hj = load(holder)
      if hj and (hj.status == 'pending' or hj.status == 'scheduled') then
        local at = NOW + tonumber(debounce)
        if hj.status == 'scheduled' then at = math.max(at, tonumber(hj.run_at) or 0) end
        move(holder, hj, 'scheduled', { payload = a[i + 2], run_at = fmt(at) })
        emit('job.debounced', holder, hj.type, job_data(hj, '"run_at":"' .. rfc3339(at) .. '"'))
      end
    end
    return 0, holder
  end
  -- job::rules::initial_state: a run_at in the past means now; a debounce waits its window.
  local want = NOW
  if a[i + 5] ~= '' then want = tonumber(a[i + 5]) end
  if debounce ~= '' then want = math.max(want, NOW + tonumber(debounce)) end
  local run_at, s = NOW, 'pending'
  if want > NOW then run_at, s = want, 'scheduled' end
  -- `attempt` 0, no logs and no cancel request are what an absent field means (codec.rs, and
  -- the scripts' reads): a job hash is a listpack that every HSET and HMGET scans field by
  -- field, so fields that say nothing cost every later change of the job.
  local f = { 'id', id, 'type', t, 'payload', a[i + 2], 'priority', a[i + 3], 'status', s,
    'max_attempts', a[i + 4], 'run_at', run_at == NOW and NOW_S or fmt(run_at), 'created_at',
    NOW_S }
  if a[i + 6] ~= '' then f[#f + 1] = 'timeout_ms'; f[#f + 1] = a[i + 6] end
  if unique ~= '' then f[#f + 1] = 'unique_key'; f[#f + 1] = unique end
  if a[i + 8] ~= '' then f[#f + 1] = 'backoff'; f[#f + 1] = a[i + 8] end
  if unique_for ~= '' then f[#f + 1] = 'unique_for'; f[#f + 1] = unique_for end
  redis.call('HSET', k_job(id), unpack(f))
  zadd(k_by_type(t), '0', id)
  note_type(t)
  place(id, { type = t, priority = a[i + 3], run_at = run_at }, s)
  if unique ~= '' then redis.call('HSET', K_UNIQUE, unique, id) end
  emit_created(id, t, s, '0', a[i + 3], run_at)
  return 1, id, s
end

-- Lease check shared by every fenced script.
local function holds_lease(j, token)
  return j ~= nil and j.status == 'running' and j.lease == token
end
