--[[
  Announces a node for ttlMs and lists the live ones, by Redis' clock (so
  nodes' clocks need not agree).

  Input:
    KEYS[1] node info hash      {leases}:nodes      nodeId -> address
    KEYS[2] expiry sorted set   {leases}:alive      nodeId, score = expiry (ms, Redis TIME)

    ARGV[1] nodeId ("" to only list)
    ARGV[2] address
    ARGV[3] ttlMs

  Output:
    { nodeId, address, nodeId, address, ... } of every node not expired.

  Expired nodes are dropped from both keys on the way.
]]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for i = 1, #expired do
  redis.call('ZREM', KEYS[2], expired[i])
  redis.call('HDEL', KEYS[1], expired[i])
end
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')
local out = {}
for i = 1, #live do
  out[#out + 1] = live[i]
  out[#out + 1] = redis.call('HGET', KEYS[1], live[i]) or ''
end
return out
