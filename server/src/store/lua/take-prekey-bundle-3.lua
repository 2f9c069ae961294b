--[[
  Claims one bundle of a device: its fixed keys plus the lowest one-time
  X25519 prekey and the lowest one-time PQ prekey, each removed as it is
  taken, so no two callers ever get the same one-time key.

  Input:
    KEYS[1] bundle hash            {device:ID}:bundle  fields: dh, dhsig, spk, lastresort
    KEYS[2] one-time X25519 zset   {device:ID}:otpk
    KEYS[3] one-time PQ zset       {device:ID}:otpq

  Output:
    nil when the bundle is incomplete (nothing claimed), else
    { dh, dhsig, spk, lastresort, one-time X25519 member or "", one-time PQ member or "" }
]]
local base = redis.call('HMGET', KEYS[1], 'dh', 'dhsig', 'spk', 'lastresort')
if not (base[1] and base[2] and base[3] and base[4]) then
  return false
end
local oneTime = redis.call('ZPOPMIN', KEYS[2])
local pq = redis.call('ZPOPMIN', KEYS[3])
return { base[1], base[2], base[3], base[4], oneTime[1] or '', pq[1] or '' }
