-- purge forgets the state but keeps a new generation (so that a read
-- in flight is not recorded) and any claim (a write in flight still
-- commits). It reports whether a live state was forgotten.
-- ARGV: 1 new generation, 2 ttl (µs), 3 key life (ms), then the table's four.
if redis.call('EXISTS', k) == 0 then return result(0, '', '', '', -1, 0, false) end
local h = redis.call('HMGET', k, 'at', 'e')
local code = 0
if alive(h[1], h[2], ARGV[2]) then code = 1 end
redis.call('HDEL', k, 'st', 'at', 'u', 'e')
redis.call('HSET', k, 'g', ARGV[1])
redis.call('PEXPIRE', k, ARGV[3])
added = index(ARGV[3])
return result(code, ARGV[1], '', '', -1, 0, false)
