#!lua
-- Settles an append whose answer never arrived (exclusive mode): if Redis ran it, it is the
-- last call the undo journal names, and its writes are undone, newest first; if it has not
-- run, the fence makes sure it never does (append.lua refuses its token). Either way nothing
-- of the call is left. Every undo step can run twice with the same result, so a rollback that
-- fails half-way is finished by the next one. The id counter is not rolled back: a raised
-- counter only skips ids.
--
-- KEYS: as append.lua. ARGV: 1 the failed call's token.
-- Replies {'rolled_back'}, {'fenced'} or {'corrupt', <key>, <why>}.

local ROOMS, CONVERSATIONS, MAILBOXES, ACCOUNTS, ACCOUNT_ROOMS, UNDO, FENCE =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[7], KEYS[8]
local token = ARGV[1]

local function remove_id(key, id)
  redis.call('ZREMRANGEBYLEX', key, '[' .. id .. ':', '(' .. id .. ';')
  return redis.call('EXISTS', key) == 1
end

local function restore(hash, field, stored)
  if stored then
    redis.call('HSET', hash, field, stored)
  else
    redis.call('HDEL', hash, field)
  end
end

local function undo(step)
  if step.op == 'message' then
    if not remove_id(step.log, step.id) then redis.call('SREM', ROOMS, step.room) end
  elseif step.op == 'dm' then
    for _, index in ipairs(step.index) do
      redis.call('ZREM', index, step.pointer)
    end
    if not remove_id(step.log, step.id) then
      redis.call('SREM', CONVERSATIONS, step.conversation)
    end
  elseif step.op == 'queued' then
    if not remove_id(step.mailbox, step.id) then redis.call('SREM', MAILBOXES, step.owner) end
  elseif step.op == 'delivered' then
    for _, entry in ipairs(step.removed) do
      redis.call('ZADD', step.mailbox, 0, entry)
    end
    redis.call('SADD', MAILBOXES, step.owner)
  elseif step.op == 'account' then
    restore(ACCOUNTS, step.key, step.stored)
  elseif step.op == 'rooms' then
    restore(ACCOUNT_ROOMS, step.owner, step.stored)
  end
end

local stored = redis.call('GET', UNDO)
if stored then
  local ok, journal = pcall(cjson.decode, stored)
  if not ok or type(journal) ~= 'table' or type(journal.undo) ~= 'table' then
    return {'corrupt', UNDO, 'not an undo journal'}
  end
  if journal.token == token then
    for i = #journal.undo, 1, -1 do
      undo(journal.undo[i])
    end
    redis.call('DEL', UNDO)
    return {'rolled_back'}
  end
end
redis.call('SET', FENCE, token)
return {'fenced'}
