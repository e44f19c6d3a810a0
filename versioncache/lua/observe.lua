-- observe records what a read saw if the key still has the
-- generation the read started with and no claim (held, or left by a
-- node that died). ARGV[2] is the new state if the state is still
-- alive, ARGV[3] if it expired. A read that changes nothing only
-- refreshes a state older than ttl/4.
-- ARGV: 1 generation at read start, 2 st if alive, 3 st if expired,
-- 4 new generation, 5 ttl (µs), 6 key life (ms).
local now = now_us()
local h = redis.call('HMGET', k, 'g', 'c', 'at', 'st', 'u')
local g, c, at, st, u = h[1], h[2], h[3], h[4], h[5]
if not g or g ~= ARGV[1] or c then
  return {0, g or '', st or '', u or '', age(at, now), 0}
end
local live = alive(at, now, ARGV[5])
local nxt = ARGV[3]
if live then nxt = ARGV[2] end
if live and not u and st == nxt then
  if now - tonumber(at) >= tonumber(ARGV[5]) / 4 then
    at = fmt(now)
    redis.call('HSET', k, 'at', at)
    redis.call('PEXPIRE', k, ARGV[6])
    index(ARGV[6])
  end
  return {1, g, st, '', age(at, now), 0}
end
redis.call('HSET', k, 'st', nxt, 'at', fmt(now), 'g', ARGV[4])
redis.call('HDEL', k, 'u')
redis.call('PEXPIRE', k, ARGV[6])
index(ARGV[6])
return {1, ARGV[4], nxt, '', 0, 0}
