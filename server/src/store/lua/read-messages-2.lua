--[[
  Reads stored messages of one chat after a seq, ascending.

  Input:
    KEYS[1] chat meta hash      {chat:ID}:meta      fields: record, head, trimmed
    KEYS[2] message body hash   {chat:ID}:messages  seq -> body

    ARGV[1] afterSeq
    ARGV[2] limit (at least 1)

  Output:
    {} when nothing is stored after afterSeq (or the chat does not exist), else
    { seq of the first body (integer), body, body, ... } with consecutive seqs.

  Every seq in (trimmed, head] is stored (gapless, trimmed only from the low
  end), so the range is computed instead of scanned.
]]
local meta = redis.call('HMGET', KEYS[1], 'head', 'trimmed')
if not meta[1] then
  return {}
end
local head = tonumber(meta[1])
local trimmed = tonumber(meta[2] or '0')
local first = math.max(tonumber(ARGV[1]), trimmed) + 1
local last = math.min(head, first + tonumber(ARGV[2]) - 1)
if last < first then
  return {}
end

local out = { first }
local fields = {}
for seq = first, last do
  fields[#fields + 1] = seq
  -- HMGET in chunks: unpack() of a huge table would overflow the Lua stack.
  if #fields == 1000 or seq == last then
    local bodies = redis.call('HMGET', KEYS[2], unpack(fields))
    for i = 1, #bodies do
      out[#out + 1] = bodies[i]
    end
    fields = {}
  end
end
return out
