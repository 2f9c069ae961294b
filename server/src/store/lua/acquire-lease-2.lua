--[[
  Takes a shard's lease when it is free, with a fencing token above every
  earlier one of the shard.

  Input:
    KEYS[1] lease string        {leases}:lease:N    "token:nodeId", expires (PX)
    KEYS[2] token counter       {leases}:token:N    the shard's highest token, never expires

    ARGV[1] nodeId
    ARGV[2] ttlMs

  Output:
    { 1, token }            acquired (or already held by nodeId: renewed, same token)
    { 0, token, nodeId }    held by another node

  Invariant: tokens of a shard only grow, so a newer owner always has the
  higher one (the append script fences by it).
]]
local held = redis.call('GET', KEYS[1])
if held then
  local colon = string.find(held, ':', 1, true)
  local token = tonumber(string.sub(held, 1, colon - 1))
  local owner = string.sub(held, colon + 1)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return { 1, token }
  end
  return { 0, token, owner }
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return { 1, token }
