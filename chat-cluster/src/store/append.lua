#!lua
-- One `append` call of a RedisStore, all or nothing. Redis runs a script alone, but does not
-- undo the writes of a script that fails half-way, so every check comes first: the types of
-- the keys the call touches, the stored values it reads, and (exclusive mode) the fence and
-- the id order. Only then the writes, which cannot fail. (The `#!lua` line makes Redis 7
-- refuse the whole script up front when it is out of memory, instead of at a write.)
--
-- KEYS: 1 rooms, 2 conversations, 3 mailboxes, 4 accounts, 5 account-rooms, 6 next-id,
--       7 undo, 8 fence (see keys.rs)
-- ARGV: 1 mode ('exclusive' or 'shared'), 2 the call's token, 3 the call's ops (JSON, from
--       ops.rs; every id is 20 digits, so ids compare as strings), 4 the id counter's new
--       floor, or ''
--
-- Replies {'ok'}; {'out_of_order', <1-based op>, <last id>}; {'corrupt', <key>, <why>};
-- {'fenced'} (exclusive: `recover` gave up on this token, so it must not run).

local ROOMS, CONVERSATIONS, MAILBOXES, ACCOUNTS, ACCOUNT_ROOMS, NEXT_ID, UNDO, FENCE =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local shared = ARGV[1] == 'shared'
local token = ARGV[2]
local ops = cjson.decode(ARGV[3])
local floor = ARGV[4]

local ID = '^' .. string.rep('%d', 20) .. '$'
local ENTRY = '^' .. string.rep('%d', 20) .. ':'

local function corrupt(key, why)
  return {'corrupt', key, why}
end

-- Keys whose type this call has checked already (a batch names one room's log many times).
local typed = {}

-- An error reply if `key` holds something other than a `want` (or nothing).
local function wrong_type(key, want)
  if typed[key] then
    return
  end
  typed[key] = true
  local found = redis.call('TYPE', key)['ok']
  if found ~= 'none' and found ~= want then
    return corrupt(key, 'a ' .. found .. ' where a ' .. want .. ' belongs')
  end
end

-- The last id of a log or mailbox (false if empty), or an error reply.
local function last_id(key)
  local top = redis.call('ZREVRANGEBYLEX', key, '+', '-', 'LIMIT', 0, 1)[1]
  if not top then
    return false
  end
  if not string.find(top, ENTRY) then
    return nil, corrupt(key, 'an entry that does not start with its id')
  end
  return string.sub(top, 1, 20)
end

local function has_id(key, id)
  return #redis.call('ZRANGEBYLEX', key, '[' .. id .. ':', '(' .. id .. ';', 'LIMIT', 0, 1) > 0
end

-- Whether a stored account (JSON) has a password hash; nil and an error reply if it is not one.
local function has_hash(key, stored)
  local ok, account = pcall(cjson.decode, stored)
  if not ok or type(account) ~= 'table' then
    return nil, corrupt(ACCOUNTS, 'the account of ' .. key .. ' is not JSON')
  end
  return account.hash ~= nil and account.hash ~= cjson.null
end

local function check()
  if not shared and redis.call('GET', FENCE) == token then
    return {'fenced'}
  end
  -- Shared mode writes no mailboxes, room sets, undo journal or fence: only the keys it
  -- touches are checked.
  local sets, hashes, strings = {ROOMS, CONVERSATIONS, MAILBOXES}, {ACCOUNTS, ACCOUNT_ROOMS},
    {NEXT_ID, UNDO, FENCE}
  if shared then
    sets, hashes, strings = {ROOMS, CONVERSATIONS}, {ACCOUNTS}, {NEXT_ID}
  end
  for _, key in ipairs(sets) do
    local err = wrong_type(key, 'set')
    if err then return err end
  end
  for _, key in ipairs(hashes) do
    local err = wrong_type(key, 'hash')
    if err then return err end
  end
  for _, key in ipairs(strings) do
    local err = wrong_type(key, 'string')
    if err then return err end
  end
  local counter = redis.call('GET', NEXT_ID)
  if counter and not string.find(counter, ID) then
    return corrupt(NEXT_ID, 'not an id of 20 digits')
  end
  -- The last id of each log and mailbox as of the ops checked so far (false: empty).
  local last = {}
  for i, op in ipairs(ops) do
    local log = op.log or op.mailbox
    if log then
      local err = wrong_type(log, 'zset')
      if err then return err end
    end
    for _, index in ipairs(op.index or {}) do
      local err = wrong_type(index, 'zset')
      if err then return err end
    end
    if shared and op.op == 'account' then
      local stored = redis.call('HGET', ACCOUNTS, op.key)
      if stored then
        local _, err = has_hash(op.key, stored)
        if err then return err end
      end
    end
    if not shared and log then
      local previous = last[log]
      if previous == nil then
        local err
        previous, err = last_id(log)
        if err then return err end
      end
      if op.op == 'delivered' then
        -- Everything up to `through` goes; what is left keeps its last id.
        if previous and previous <= op.through then previous = false end
        last[log] = previous
      else
        if previous and previous >= op.id then
          return {'out_of_order', tostring(i), previous}
        end
        last[log] = op.id
      end
    end
  end
end

-- What undoes the writes of this call, newest last (exclusive mode: see rollback.lua).
local undo = {}

local function apply(op)
  if op.op == 'message' then
    if shared and has_id(op.log, op.id) then return end
    redis.call('ZADD', op.log, 0, op.entry)
    redis.call('SADD', ROOMS, op.room)
    table.insert(undo, {op = 'message', log = op.log, id = op.id, room = op.room})
  elseif op.op == 'dm' then
    if shared and has_id(op.log, op.id) then return end
    redis.call('ZADD', op.log, 0, op.entry)
    redis.call('SADD', CONVERSATIONS, op.conversation)
    for _, index in ipairs(op.index) do
      redis.call('ZADD', index, 0, op.pointer)
    end
    table.insert(undo, {op = 'dm', log = op.log, id = op.id, conversation = op.conversation,
      index = op.index, pointer = op.pointer})
  elseif op.op == 'queued' then
    redis.call('ZADD', op.mailbox, 0, op.entry)
    redis.call('SADD', MAILBOXES, op.owner)
    table.insert(undo, {op = 'queued', mailbox = op.mailbox, id = op.id, owner = op.owner})
  elseif op.op == 'delivered' then
    local through = '(' .. op.through .. ';'
    local removed = redis.call('ZRANGEBYLEX', op.mailbox, '-', through)
    if #removed > 0 then
      redis.call('ZREMRANGEBYLEX', op.mailbox, '-', through)
      if redis.call('EXISTS', op.mailbox) == 0 then
        redis.call('SREM', MAILBOXES, op.owner)
      end
      table.insert(undo, {op = 'delivered', mailbox = op.mailbox, owner = op.owner,
        removed = removed})
    end
  elseif op.op == 'account' then
    local stored = redis.call('HGET', ACCOUNTS, op.key)
    -- Shared: a name keeps its first account, unless a later record adds the missing hash.
    if shared and stored and not (op.hashed and not has_hash(op.key, stored)) then return end
    redis.call('HSET', ACCOUNTS, op.key, op.value)
    table.insert(undo, {op = 'account', key = op.key, stored = stored})
  elseif op.op == 'rooms' then
    local stored = redis.call('HGET', ACCOUNT_ROOMS, op.owner)
    redis.call('HSET', ACCOUNT_ROOMS, op.owner, op.value)
    table.insert(undo, {op = 'rooms', owner = op.owner, stored = stored})
  end
end

local refused = check()
if refused then
  return refused
end
for _, op in ipairs(ops) do
  apply(op)
end
if floor ~= '' then
  local counter = redis.call('GET', NEXT_ID)
  if not counter or floor > counter then
    redis.call('SET', NEXT_ID, floor)
  end
end
if not shared then
  redis.call('SET', UNDO, cjson.encode({token = token, undo = undo}))
end
return {'ok'}
