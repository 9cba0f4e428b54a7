-- One script for every fenced operation on a channel, so a turn costs two round trips:
-- "enqueue" (push + maybe take the lock + load state) and "commit" (write + next or release).
-- KEYS: 1 inbox, 2 lock, 3 fence, 4 meta, 5 settings, 6 log, 7 chats, 8 stop, 9 usage,
--       10 archive key of the current chat, 11 archive key of a chat to resume (optional)
-- Inbox items are "M" .. entry-json (a message; the entry starts with {"id":0,) or "A" .. json.
local mode = ARGV[1]

local function with_id(entry, id)
  -- entries are serialised with a leading {"id":0, so the id is spliced in without cjson,
  -- which would reorder keys and turn empty lists into objects
  return '{"id":' .. id .. ',' .. string.sub(entry, 9)
end

local function load_state(tok, kind, body, window)
  local chat = redis.call('HGET', KEYS[4], 'chat') or '1'
  local log = redis.call('LRANGE', KEYS[6], -window, -1)
  local settings = redis.call('HGETALL', KEYS[5])
  return {tok, kind, body, chat, settings, log}
end

local function take_next(tok, ttl, window)
  redis.call('DEL', KEYS[8])
  local item = redis.call('LPOP', KEYS[1])
  if not item then
    redis.call('DEL', KEYS[2])
    return {0}
  end
  redis.call('SET', KEYS[2], tok, 'PX', ttl)
  local kind = string.sub(item, 1, 1)
  local body = string.sub(item, 2)
  if kind == 'M' then
    body = with_id(body, redis.call('HINCRBY', KEYS[4], 'seq', 1))
    redis.call('RPUSH', KEYS[6], body)
  end
  return load_state(tok, kind, body, window)
end

local function find_index(id)
  local prefix = '{"id":' .. id .. ','
  local n = redis.call('LLEN', KEYS[6])
  local i = n - 1
  while i >= 0 do
    local lo = math.max(0, i - 63)
    local page = redis.call('LRANGE', KEYS[6], lo, i)
    for j = #page, 1, -1 do
      if string.sub(page[j], 1, #prefix) == prefix then return lo + j - 1 end
    end
    i = lo - 1
  end
  return -1
end

local function holds(tok)
  return redis.call('GET', KEYS[2]) == tok
end

if mode == 'enqueue' then
  -- ARGV: item, ttl_ms, window, inbox_max
  if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[5]) then return {-1} end
  redis.call('RPUSH', KEYS[1], ARGV[2])
  if redis.call('EXISTS', KEYS[2]) == 1 then return {0} end
  local tok = tostring(redis.call('INCR', KEYS[3]))
  return take_next(tok, ARGV[3], tonumber(ARGV[4]))
elseif mode == 'acquire' then
  -- ARGV: ttl_ms, window: pick up items left by a holder that died
  if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('LLEN', KEYS[1]) == 0 then return {0} end
  local tok = tostring(redis.call('INCR', KEYS[3]))
  return take_next(tok, ARGV[2], tonumber(ARGV[3]))
elseif mode == 'renew' then
  -- ARGV: token, ttl_ms -> {1, stop flag} or {-2} when the lock is no longer ours
  if not holds(ARGV[2]) then return {-2} end
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return {1, redis.call('GET', KEYS[8]) or ''}
elseif mode == 'release' then
  if holds(ARGV[2]) then redis.call('DEL', KEYS[2]) end
  return {0}
elseif mode == 'commit' then
  -- ARGV: token, ttl_ms, window, then (op, payload) pairs; returns the next state or {0}
  local tok = ARGV[2]
  if not holds(tok) then return {-2} end
  local ids = {}
  for i = 5, #ARGV, 2 do
    local op, payload = ARGV[i], ARGV[i + 1]
    if op == 'append' or op == 'prepend' then
      local id = redis.call('HINCRBY', KEYS[4], 'seq', 1)
      local entry = with_id(payload, id)
      if op == 'append' then redis.call('RPUSH', KEYS[6], entry)
      else redis.call('LPUSH', KEYS[6], entry) end
      ids[#ids + 1] = id
    elseif op == 'replace' then
      local id = string.match(payload, '^{"id":(%d+),')
      local idx = find_index(id)
      if idx >= 0 then redis.call('LSET', KEYS[6], idx, payload) end
      ids[#ids + 1] = idx
    elseif op == 'hset' then
      -- payload: field \n value (a channel setting written with the turn: lore timers, vars)
      local f, v = string.match(payload, '^([^\n]*)\n(.*)$')
      if f then redis.call('HSET', KEYS[5], f, v) end
    elseif op == 'delete' then
      local idx = find_index(payload)
      if idx >= 0 then
        redis.call('LSET', KEYS[6], idx, '__deleted__')
        redis.call('LREM', KEYS[6], 1, '__deleted__')
      end
      ids[#ids + 1] = idx
    elseif op == 'usage' then
      -- payload: backend \t model \t user \t prompt tokens \t completion tokens
      local b, m, u, p, c = string.match(payload, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t(%d+)\t(%d+)$')
      if b then
        local bm = b .. '\t' .. m
        redis.call('HINCRBY', KEYS[9], bm .. '\tp', p)
        redis.call('HINCRBY', KEYS[9], bm .. '\tc', c)
        redis.call('HINCRBY', KEYS[9], bm .. '\tn', 1)
        redis.call('HINCRBY', KEYS[9], 'u\t' .. u .. '\tp', p)
        redis.call('HINCRBY', KEYS[9], 'u\t' .. u .. '\tc', c)
        ids[#ids + 1] = redis.call('HINCRBY', KEYS[9], 'turns', 1)
      end
    elseif op == 'archive' then
      -- payload: summary json of the chat being closed; a new, empty chat becomes current
      local cur = redis.call('HGET', KEYS[4], 'chat') or '1'
      if redis.call('EXISTS', KEYS[6]) == 1 then
        redis.call('RENAME', KEYS[6], KEYS[10])
        redis.call('HSET', KEYS[7], cur, payload)
      end
      local nxt = math.max(tonumber(cur), tonumber(redis.call('HGET', KEYS[4], 'chats') or '1')) + 1
      redis.call('HSET', KEYS[4], 'chat', nxt, 'chats', nxt)
      ids[#ids + 1] = nxt
    elseif op == 'resume' then
      -- payload: "<target id>\n<summary json of the current chat>"
      local target, summary = string.match(payload, '^(%d+)\n(.*)$')
      if redis.call('EXISTS', KEYS[11]) == 0 then
        ids[#ids + 1] = -3  -- no such chat: nothing changes, and the lock is still handed on
      else
        local cur = redis.call('HGET', KEYS[4], 'chat') or '1'
        if redis.call('EXISTS', KEYS[6]) == 1 then
          redis.call('RENAME', KEYS[6], KEYS[10])
          redis.call('HSET', KEYS[7], cur, summary)
        end
        redis.call('RENAME', KEYS[11], KEYS[6])
        redis.call('HDEL', KEYS[7], target)
        local top = math.max(tonumber(cur), tonumber(redis.call('HGET', KEYS[4], 'chats') or '1'))
        redis.call('HSET', KEYS[4], 'chat', target, 'chats', top)
        ids[#ids + 1] = tonumber(target)
      end
    end
  end
  local nxt = take_next(tok, ARGV[3], tonumber(ARGV[4]))
  nxt[#nxt + 1] = ids
  return nxt
end
return redis.error_reply('unknown mode ' .. tostring(mode))
