-- record replaces the state unconditionally.
-- ARGV: 1 st, 2 u, 3 new generation, 4 key life (ms), then the table's four.
bump()
redis.call('HSET', k, 'st', ARGV[1], 'at', fmt(now), 'g', ARGV[3], 'e', epoch)
if ARGV[2] == '1' then redis.call('HSET', k, 'u', '1') else redis.call('HDEL', k, 'u') end
redis.call('PEXPIRE', k, ARGV[4])
added = index(ARGV[4])
return result(1, ARGV[3], ARGV[1], ARGV[2], 0, 0, false)
