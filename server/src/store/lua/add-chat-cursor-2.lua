--[[
  Gives a (newly linked) device a cursor at the chat's head, unless it has one.

  Input:
    KEYS[1] chat meta hash      {chat:ID}:meta      fields: record, head, trimmed
    KEYS[2] cursor sorted set   {chat:ID}:cursors   device id, score = throughSeq

    ARGV[1] device id

  Output:
    0 when the chat does not exist (nothing changes), else 1.
]]
local head = redis.call('HGET', KEYS[1], 'head')
if not head then
  return 0
end
redis.call('ZADD', KEYS[2], 'NX', tonumber(head), ARGV[1])
return 1
