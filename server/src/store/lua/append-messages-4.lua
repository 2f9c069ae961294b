--[[
  Appends a batch of messages to one chat, in order, idempotently by message id.

  Input:
    KEYS[1] chat meta hash      {chat:ID}:meta      fields: record, head, trimmed
    KEYS[2] message id hash     {chat:ID}:ids       message id -> "seq:firstSenderDeviceId"
    KEYS[3] message body hash   {chat:ID}:messages  seq -> protobuf Message without chatId/seq
    KEYS[4] cursor sorted set   {chat:ID}:cursors   device id, score = throughSeq

    ARGV    triples, one per draft in order: messageId (16 raw bytes), senderDeviceId, body

  Output:
    nil when the chat does not exist (nothing written), otherwise a flat array
    with three entries per draft, in draft order:
      seq (integer), isDuplicate (1 or 0), senderDeviceId of the first append of that id

  Invariants: seqs are gapless (head + 1 per new id); a repeated id (also inside
  this batch, also after its message was trimmed, since ids are never deleted)
  assigns nothing and returns its first seq; a sender's cursor standing exactly
  one below its new message moves onto it.
]]
local head = redis.call('HGET', KEYS[1], 'head')
if not head then
  return false
end
head = tonumber(head)
local firstHead = head
local out = {}

for i = 1, #ARGV, 3 do
  local messageId = ARGV[i]
  local sender = ARGV[i + 1]
  local first = redis.call('HGET', KEYS[2], messageId)
  if first then
    local colon = string.find(first, ':', 1, true)
    out[#out + 1] = tonumber(string.sub(first, 1, colon - 1))
    out[#out + 1] = 1
    out[#out + 1] = string.sub(first, colon + 1)
  else
    head = head + 1
    redis.call('HSET', KEYS[2], messageId, head .. ':' .. sender)
    redis.call('HSET', KEYS[3], head, ARGV[i + 2])
    local cursor = redis.call('ZSCORE', KEYS[4], sender)
    if cursor and tonumber(cursor) == head - 1 then
      redis.call('ZADD', KEYS[4], 'XX', head, sender)
    end
    out[#out + 1] = head
    out[#out + 1] = 0
    out[#out + 1] = sender
  end
end

if head ~= firstHead then
  redis.call('HSET', KEYS[1], 'head', head)
end
return out
