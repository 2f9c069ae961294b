--[[
  Moves the delivery cursors of one or more devices of one chat forward (an
  ack, or a batch of acks), then drops the messages every device of the chat
  has now received, with one trim.

  Input:
    KEYS[1] chat meta hash      {chat:ID}:meta      fields: record, head, trimmed
    KEYS[2] cursor sorted set   {chat:ID}:cursors   device id, score = throughSeq
    KEYS[3] message body hash   {chat:ID}:messages  seq -> body
    KEYS[4] departure hash      {chat:ID}:departed  removed device id -> "untilSeq" or "untilSeq:resumeSeq"

    ARGV[2i-1], ARGV[2i]  deviceId, throughSeq of the i-th ack

  Output:
    one entry per ack, in order: -1 when the device has no cursor in the chat
    (nothing changes for it), otherwise its cursor after the ack:
    max(cursor, min(throughSeq, head, untilSeq)), or resumeSeq when a
    re-added device just reached its untilSeq.

  Invariants: a cursor never moves backward or past the head (nor past a
  removed device's untilSeq); a removed device that reaches its untilSeq loses
  its departure, and its cursor unless re-added; messages through the lowest
  cursor are deleted (trimmed records how far), message ids are kept.
  Trimming runs even when no cursor moved, because a sender's cursor moved by
  its own append may have been the last one holding a message back. A device
  acked twice in the batch ends at the higher of the two. The departure hash
  is read only when it exists (one EXISTS per batch): members' acks cost no
  more for it.
]]
local meta = redis.call('HMGET', KEYS[1], 'head', 'trimmed')
local head = tonumber(meta[1] or '0')
local trimmed = tonumber(meta[2] or '0')
local hasDepartures = redis.call('EXISTS', KEYS[4]) == 1

local out = {}
for i = 1, #ARGV, 2 do
  local cursor = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if not cursor then
    out[#out + 1] = -1
  else
    cursor = tonumber(cursor)
    local nextCursor = math.max(cursor, math.min(tonumber(ARGV[i + 1]), head))
    local departure = hasDepartures and redis.call('HGET', KEYS[4], ARGV[i])
    local released = false
    if departure then
      local colon = string.find(departure, ':', 1, true)
      local untilSeq = tonumber(colon and string.sub(departure, 1, colon - 1) or departure)
      nextCursor = math.max(cursor, math.min(nextCursor, untilSeq))
      if nextCursor >= untilSeq then
        redis.call('HDEL', KEYS[4], ARGV[i])
        if colon then
          nextCursor = math.max(nextCursor, tonumber(string.sub(departure, colon + 1)))
        else
          redis.call('ZREM', KEYS[2], ARGV[i])
          released = true
        end
      end
    end
    if nextCursor ~= cursor and not released then
      redis.call('ZADD', KEYS[2], 'XX', nextCursor, ARGV[i])
    end
    out[#out + 1] = nextCursor
  end
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
return out
