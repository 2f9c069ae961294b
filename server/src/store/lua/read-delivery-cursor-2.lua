--[[
  Reads one device's delivery cursor in a chat and, when it was removed from
  the group and is still owed entries, its departure: in one step, so a
  removal or a final ack cannot fall between the two reads.

  Input:
    KEYS[1] cursor sorted set   {chat:ID}:cursors   device id, score = throughSeq
    KEYS[2] departure hash      {chat:ID}:departed  removed device id -> "untilSeq" or "untilSeq:resumeSeq"

    ARGV[1] deviceId

  Output:
    nil without a cursor; otherwise { throughSeq } for a member's device, or
    { throughSeq, "untilSeq[:resumeSeq]" } for a removed one.
]]
local cursor = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cursor then
  return false
end
local departure = redis.call('HGET', KEYS[2], ARGV[1])
if departure then
  return { tonumber(cursor), departure }
end
return { tonumber(cursor) }
