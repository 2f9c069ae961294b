--[[
  Stores a new user with its first device, unless the user id is taken.

  Input:
    KEYS[1] user record         {user:ID}:record    JSON
    KEYS[2] user device hash    {user:ID}:devices   device id -> device JSON

    ARGV[1] user record (JSON)
    ARGV[2] device id
    ARGV[3] device record (JSON)

  Output:
    1 when stored, 0 when the user exists (nothing changes).

  The device id -> user index ({device:ID}:owner) is another hash tag; the
  caller claims it before this script. A crash between the two leaves an index
  entry whose user does not list the device, which reads as "no such device".
]]
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
