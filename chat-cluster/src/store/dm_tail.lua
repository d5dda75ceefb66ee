#!lua flags=no-writes
-- A user's newest DMs across all their conversations, newest first: the user's DM index gives
-- the ids and conversations, each conversation's log the DM. One script, so an index entry and
-- its DM are read at one moment.
--
-- KEYS: 1 the user's DM index. ARGV: 1 how many (a count), 2 what comes before a
-- conversation's name in its key.
-- Replies the DMs' entries; '' for an index entry whose DM is missing (the store reports it).

local pointers = redis.call('ZREVRANGEBYLEX', KEYS[1], '+', '-', 'LIMIT', 0, ARGV[1])
local entries = {}
for i, pointer in ipairs(pointers) do
  local id = string.sub(pointer, 1, 20)
  local conversation = string.sub(pointer, 22)
  local found = redis.call('ZRANGEBYLEX', ARGV[2] .. conversation, '[' .. id .. ':',
    '(' .. id .. ';', 'LIMIT', 0, 1)
  entries[i] = found[1] or ''
end
return entries
