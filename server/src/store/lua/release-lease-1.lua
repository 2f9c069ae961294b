--[[
  Gives a shard's lease up, only for the holder with its token.

  Input:
    KEYS[1] lease string        {leases}:lease:N    "token:nodeId", expires (PX)

    ARGV[1] "token:nodeId" as acquired

  Output:
    1 when released, 0 when it was not held so (expired, or someone else's).
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
