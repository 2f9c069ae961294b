--[[
  Reads a group's operations after a seq, ascending.

  Input:
    KEYS[1] operation hash      {chat:ID}:ops       seq -> body

    ARGV[1] afterSeq
    ARGV[2] limit (at least 1)

  Output:
    { seq, body, seq, body, ... } (seq as integers), at most `limit` pairs.

  Operations are few (membership changes and rotations), so the fields are
  listed and sorted here rather than kept in a second, ordered key.
]]
local fields = redis.call('HKEYS', KEYS[1])
local after = tonumber(ARGV[1])
local seqs = {}
for i = 1, #fields do
  local seq = tonumber(fields[i])
  if seq > after then
    seqs[#seqs + 1] = seq
  end
end
table.sort(seqs)
local out = {}
for i = 1, math.min(#seqs, tonumber(ARGV[2])) do
  out[#out + 1] = seqs[i]
  out[#out + 1] = redis.call('HGET', KEYS[1], seqs[i])
end
return out
