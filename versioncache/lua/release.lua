-- release gives up the claim without a result.
-- ARGV: 1 token, 2 channel, 3 key, 4 ttl (µs), then the table's four.
local h = redis.call('HMGET', k, 'c', 't', 'at', 'e')
if h[1] ~= ARGV[1] then return result(0, '', '', '', -1, 0, false) end
redis.call('HDEL', k, 'c', 'ce', 'cr', 't')
if h[2] then
  if not alive(h[3], h[4], ARGV[4]) then redis.call('HDEL', k, 'st') end
  redis.call('HSET', k, 'u', '1', 'at', fmt(now), 'e', epoch)
end
redis.call('PUBLISH', ARGV[2], epoch .. ' ' .. fmt(seq) .. ' ' .. ARGV[3])
return result(1, '', '', '', -1, 0, false)
