--[[
  Appends a group operation's message and applies its change to the chat, in
  one step, only on top of the chain head the operation names.

  Input:
    KEYS[1] chat meta hash      {chat:ID}:meta      fields: record, head, trimmed, fence, ophash, opseq
    KEYS[2] message id hash     {chat:ID}:ids       message id -> "seq:firstSenderDeviceId"
    KEYS[3] message body hash   {chat:ID}:messages  seq -> protobuf Message without chatId/seq
    KEYS[4] cursor sorted set   {chat:ID}:cursors   device id, score = throughSeq
    KEYS[5] operation hash      {chat:ID}:ops       seq -> the operation's message body (never trimmed)
    KEYS[6] departure hash      {chat:ID}:departed  removed device id -> "untilSeq" or "untilSeq:resumeSeq"

    ARGV[1] fencing token (0: no lease), as in append-messages-4.lua
    ARGV[2] previous operation hash the operation follows ("" before the first)
    ARGV[3] the operation's own hash (the new head)
    ARGV[4] the chat record after the operation (JSON)
    ARGV[5] message id
    ARGV[6] sender device id
    ARGV[7] body
    ARGV[8] number of added devices n
    ARGV[9 .. 8+n]   added device ids (cursor at seq - 1 unless they have one;
                     one still owed entries before its removal resumes at seq - 1)
    ARGV[9+n ..]     removed device ids (a cursor below seq stays, bounded by
                     seq in the departure hash; a device removed again while
                     still owed entries before a re-addition keeps its first
                     bound only, so nothing after a removal leaks)

  Output:
    "FENCED <token>" error as append-messages-4.lua; nil when the chat does
    not exist; { seq, firstSenderDeviceId } when the message id is in the chat
    already (nothing applied); the error "CONFLICT ..." when the chain head is not
    ARGV[2] (nothing written); otherwise seq, or -seq when the sender's cursor
    moved onto it.
]]
local meta = redis.call('HMGET', KEYS[1], 'head', 'fence', 'ophash')
local head = meta[1]
if not head then
  return false
end
local token = tonumber(ARGV[1])
local fence = tonumber(meta[2] or '0')
if token < fence then
  return redis.error_reply('FENCED ' .. fence)
end

local first = redis.call('HGET', KEYS[2], ARGV[5])
if first then
  local colon = string.find(first, ':', 1, true)
  return { tonumber(string.sub(first, 1, colon - 1)), string.sub(first, colon + 1) }
end
if (meta[3] or '') ~= ARGV[2] then
  return redis.error_reply('CONFLICT the chain head moved')
end
if token > fence then
  redis.call('HSET', KEYS[1], 'fence', token)
end

local seq = tonumber(head) + 1
local sender = ARGV[6]
redis.call('HSET', KEYS[2], ARGV[5], seq .. ':' .. sender)
redis.call('HSET', KEYS[3], seq, ARGV[7])
redis.call('HSET', KEYS[5], seq, ARGV[7])
redis.call('HSET', KEYS[1], 'head', seq, 'record', ARGV[4], 'ophash', ARGV[3], 'opseq', seq)

local n = tonumber(ARGV[8])
for i = 9, 8 + n do
  local departure = redis.call('HGET', KEYS[6], ARGV[i])
  if departure then
    local colon = string.find(departure, ':', 1, true)
    local untilSeq = colon and string.sub(departure, 1, colon - 1) or departure
    redis.call('HSET', KEYS[6], ARGV[i], untilSeq .. ':' .. (seq - 1))
  else
    redis.call('ZADD', KEYS[4], 'NX', seq - 1, ARGV[i])
  end
end

local cursor = tonumber(redis.call('ZSCORE', KEYS[4], sender))
local caughtUp = cursor == seq - 1
if caughtUp then
  redis.call('ZADD', KEYS[4], 'XX', seq, sender)
end

for i = 9 + n, #ARGV do
  local departure = redis.call('HGET', KEYS[6], ARGV[i])
  if departure then
    local colon = string.find(departure, ':', 1, true)
    if colon then
      redis.call('HSET', KEYS[6], ARGV[i], string.sub(departure, 1, colon - 1))
    end
  else
    local through = redis.call('ZSCORE', KEYS[4], ARGV[i])
    if through then
      if tonumber(through) >= seq then
        -- Already through its removal (a LEAVE's sender): nothing is owed.
        redis.call('ZREM', KEYS[4], ARGV[i])
      else
        redis.call('HSET', KEYS[6], ARGV[i], seq)
      end
    end
  end
end

if caughtUp then
  return -seq
end
return seq
