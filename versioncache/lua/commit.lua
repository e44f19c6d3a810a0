-- commit stores a write's result and releases its claim, if the claim
-- is still this write's; otherwise it stores nothing but marks the key
-- uncertain (and taints a claim that took it over: that write's result
-- may be overtaken by this one's).
-- ARGV: 1 token, 2 st, 3 u, 4 new generation, 5 key life (ms), 6 ttl (µs),
-- 7 channel, 8 key, then the table's four.
local h = redis.call('HMGET', k, 'c', 't', 'lc', 'at', 'e')
if h[1] == ARGV[1] then
  local u = ARGV[3]
  if h[2] then u = '1' end
  bump()
  redis.call('HSET', k, 'st', ARGV[2], 'at', fmt(now), 'g', ARGV[4], 'lc', ARGV[1], 'e', epoch)
  if u == '1' then redis.call('HSET', k, 'u', '1') else redis.call('HDEL', k, 'u') end
  redis.call('HDEL', k, 'c', 'ce', 'cr', 't')
  redis.call('PEXPIRE', k, ARGV[5])
  added = index(ARGV[5])
  redis.call('PUBLISH', ARGV[7], epoch .. ' ' .. fmt(seq) .. ' ' .. ARGV[8])
  return result(1, ARGV[4], ARGV[2], u, 0, 0, false)
end
if h[3] == ARGV[1] then
  return result(2, '', '', '', -1, 0, false)
end
if not alive(h[4], h[5], ARGV[6]) then redis.call('HDEL', k, 'st') end
bump()
redis.call('HSET', k, 'u', '1', 'at', fmt(now), 'g', ARGV[4], 'e', epoch)
if h[1] then redis.call('HSET', k, 't', '1') end
redis.call('PEXPIRE', k, ARGV[5])
added = index(ARGV[5])
return result(0, ARGV[4], '', '1', 0, 0, false)
