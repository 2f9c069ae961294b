--[[
  Stores what a device published: replaces its identity DH key, signed prekey
  and last-resort PQ prekey when given, adds one-time prekeys it does not hold.

  Input:
    KEYS[1] bundle hash            {device:ID}:bundle  fields: dh, dhsig, spk, lastresort
    KEYS[2] one-time X25519 zset   {device:ID}:otpk    member = encoded OneTimePreKey, score = key id
    KEYS[3] one-time PQ zset       {device:ID}:otpq    member = encoded PqPreKey, score = key id

    ARGV[1] identity DH key ("" keeps the stored one)
    ARGV[2] its signature
    ARGV[3] encoded SignedPreKey ("" keeps)
    ARGV[4] encoded last-resort PqPreKey ("" keeps)
    ARGV[5] number of one-time X25519 prekeys n
    ARGV[6 .. 5+2n]   pairs: key id, encoded OneTimePreKey
    ARGV[6+2n ..]     pairs: key id, encoded PqPreKey

  Output:
    { one-time X25519 count, one-time PQ count, 1 when the bundle is complete else 0 }

  A key id already held is skipped (ZCOUNT on its score), so publishing twice adds nothing.
]]
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[1], 'dh', ARGV[1], 'dhsig', ARGV[2])
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'spk', ARGV[3])
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'lastresort', ARGV[4])
end
local n = tonumber(ARGV[5])
local function addOnce(key, id, member)
  if redis.call('ZCOUNT', key, id, id) == 0 then
    redis.call('ZADD', key, id, member)
  end
end
for i = 6, 5 + 2 * n, 2 do
  addOnce(KEYS[2], ARGV[i], ARGV[i + 1])
end
for i = 6 + 2 * n, #ARGV, 2 do
  addOnce(KEYS[3], ARGV[i], ARGV[i + 1])
end
local complete = redis.call('HMGET', KEYS[1], 'dh', 'spk', 'lastresort')
local hasBundle = 0
if complete[1] and complete[2] and complete[3] then
  hasBundle = 1
end
return { redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]), hasBundle }
