--[[
  Moves a device's delivery cursor forward and drops the messages every device
  of the chat has now received.

  Input:
    KEYS[1] chat meta hash      {chat:ID}:meta      fields: record, head, trimmed
    KEYS[2] cursor sorted set   {chat:ID}:cursors   device id, score = throughSeq
    KEYS[3] message body hash   {chat:ID}:messages  seq -> body
    KEYS[4] departure hash      {chat:ID}:departed  removed device id -> "untilSeq" or "untilSeq:resumeSeq"

    ARGV[1] deviceId
    ARGV[2] throughSeq

  Output:
    nil when the device has no cursor in the chat (nothing changes), otherwise
    the cursor after the ack: max(cursor, min(throughSeq, head, untilSeq)), or
    resumeSeq when a re-added device just reached its untilSeq.

  Invariants: a cursor never moves backward or past the head (nor past a
  removed device's untilSeq); a removed device that reaches its untilSeq loses
  its departure, and its cursor unless re-added; messages through the lowest
  cursor are deleted (trimmed records how far), message ids are kept.
  Trimming runs even when this cursor stood still, because a sender's cursor
  moved by its own append may have been the last one holding a message back.
]]
local cursor = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not cursor then
  return false
end
cursor = tonumber(cursor)
local meta = redis.call('HMGET', KEYS[1], 'head', 'trimmed')
local head = tonumber(meta[1] or '0')
local trimmed = tonumber(meta[2] or '0')

local nextCursor = math.max(cursor, math.min(tonumber(ARGV[2]), head))
local departure = redis.call('HGET', KEYS[4], ARGV[1])
local released = false
if departure then
  local colon = string.find(departure, ':', 1, true)
  local untilSeq = tonumber(colon and string.sub(departure, 1, colon - 1) or departure)
  nextCursor = math.max(cursor, math.min(nextCursor, untilSeq))
  if nextCursor >= untilSeq then
    redis.call('HDEL', KEYS[4], ARGV[1])
    if colon then
      nextCursor = math.max(nextCursor, tonumber(string.sub(departure, colon + 1)))
    else
      redis.call('ZREM', KEYS[2], ARGV[1])
      released = true
    end
  end
end
if nextCursor ~= cursor and not released then
  redis.call('ZADD', KEYS[2], 'XX', nextCursor, ARGV[1])
end

local lowest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local everyoneThrough = tonumber(lowest[2] or '0')
if everyoneThrough > trimmed then
  -- HDEL in chunks: unpack() of a huge table would overflow the Lua stack.
  local fields = {}
  for seq = trimmed + 1, everyoneThrough do
    fields[#fields + 1] = seq
    if #fields == 1000 then
      redis.call('HDEL', KEYS[3], unpack(fields))
      fields = {}
    end
  end
  if #fields > 0 then
    redis.call('HDEL', KEYS[3], unpack(fields))
  end
  redis.call('HSET', KEYS[1], 'trimmed', everyoneThrough)
end
return nextCursor
