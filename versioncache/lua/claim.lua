-- claim takes the key's write claim if no live one holds it, and
-- returns the state. A claim whose lease ran out uncommitted is taken
-- over and the key becomes uncertain: that write may have happened.
-- ARGV: 1 token, 2 lease (µs), 3 ttl (µs), 4 new generation, 5 key life (ms).
local now = now_us()
local h = redis.call('HMGET', k, 'c', 'ce', 'st', 'u', 'at', 'g')
local c, st, u, at, g = h[1], h[3], h[4], h[5], h[6]
if c == ARGV[1] then
  return {1, g or '', st or '', u or '', age(at, now), 0}
end
local ce = tonumber(h[2] or '0')
if c and ce > now then
  return {0, g or '', st or '', u or '', age(at, now), ce - now}
end
if c then
  if not alive(at, now, ARGV[3]) then
    st = false
    redis.call('HDEL', k, 'st')
  end
  u, at = '1', fmt(now)
  redis.call('HSET', k, 'u', u, 'at', at)
  redis.call('HDEL', k, 't')
end
redis.call('HSET', k, 'c', ARGV[1], 'ce', fmt(now + tonumber(ARGV[2])), 'g', ARGV[4])
redis.call('PEXPIRE', k, ARGV[5])
index(ARGV[5])
return {1, ARGV[4], st or '', u or '', age(at, now), 0}
