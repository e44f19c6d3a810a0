-- renew extends the lease of a claim that is still this write's, and
-- counts the renewal (what a node watching the claim sees progress by).
-- ARGV: 1 token, 2 lease (µs), 3 key life (ms), then the table's four.
if redis.call('HGET', k, 'c') ~= ARGV[1] then return result(0, '', '', '', -1, 0, false) end
redis.call('HSET', k, 'ce', fmt(now + tonumber(ARGV[2])))
redis.call('HINCRBY', k, 'cr', 1)
redis.call('PEXPIRE', k, ARGV[3])
added = index(ARGV[3])
return result(1, '', '', '', -1, 0, false)
