-- renew extends the lease of a claim that is still this write's.
-- ARGV: 1 token, 2 lease (µs), 3 key life (ms).
if redis.call('HGET', k, 'c') ~= ARGV[1] then return 0 end
redis.call('HSET', k, 'ce', fmt(now_us() + tonumber(ARGV[2])))
redis.call('PEXPIRE', k, ARGV[3])
index(ARGV[3])
return 1
