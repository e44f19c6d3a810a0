-- purge forgets the state but keeps a new generation (so that a read
-- in flight is not recorded) and any claim (a write in flight still
-- commits). It reports whether a live state was forgotten.
-- ARGV: 1 new generation, 2 ttl (µs), 3 key life (ms).
if redis.call('EXISTS', k) == 0 then return {0, '', '', '', -1, 0} end
local now = now_us()
local at = redis.call('HGET', k, 'at')
local code = 0
if alive(at, now, ARGV[2]) then code = 1 end
redis.call('HDEL', k, 'st', 'at', 'u')
redis.call('HSET', k, 'g', ARGV[1])
redis.call('PEXPIRE', k, ARGV[3])
index(ARGV[3])
return {code, ARGV[1], '', '', -1, 0}
