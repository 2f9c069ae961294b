--[[
  Creates a chat with a cursor at 0 for each given device, unless it exists.

  Input:
    KEYS[1] chat meta hash      {chat:ID}:meta      fields: record, head, trimmed, kind
    KEYS[2] cursor sorted set   {chat:ID}:cursors   device id, score = throughSeq

    ARGV[1]    chat record (JSON)
    ARGV[2]    the chat's kind (a ChatKind number, also in the record: read alone by getChatHead)
    ARGV[3..n] device ids that get a cursor

  Output:
    { created (1 or 0), stored chat record (JSON), head (integer) }
    When the chat exists nothing changes and its stored record is returned.

  Listing the chat under each member lives in other hash tags ({user:ID}), so the
  caller does it after this script, every time, which also repairs a listing a
  crash between the two steps left out.
]]
local existing = redis.call('HMGET', KEYS[1], 'record', 'head')
if existing[1] then
  return { 0, existing[1], tonumber(existing[2]) }
end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'head', 0, 'trimmed', 0, 'kind', ARGV[2])
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[2], 'NX', 0, ARGV[i])
end
return { 1, ARGV[1], 0 }
