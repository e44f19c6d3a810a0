-- release gives up the claim without a result.
-- ARGV: 1 token, 2 channel, 3 key, 4 ttl (µs).
local now = now_us()
local h = redis.call('HMGET', k, 'c', 't', 'at')
if h[1] ~= ARGV[1] then return {0, '', '', '', -1, 0} end
redis.call('HDEL', k, 'c', 'ce', 't')
if h[2] then
  if not alive(h[3], now, ARGV[4]) then redis.call('HDEL', k, 'st') end
  redis.call('HSET', k, 'u', '1', 'at', fmt(now))
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return {1, '', '', '', -1, 0}
