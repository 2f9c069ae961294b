--[[
  Extends a shard's lease, only for the holder with its token.

  Input:
    KEYS[1] lease string        {leases}:lease:N    "token:nodeId", expires (PX)

    ARGV[1] "token:nodeId" as acquired
    ARGV[2] ttlMs

  Output:
    1 when extended, 0 when the lease expired or belongs to someone else.
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
