-- read returns the key's generation and its trusted state (ReadStart, Get,
-- List). It creates nothing: a read of a key Redis does not hold stores
-- nothing, so reads of unseen paths cost Redis no memory.
-- ARGV: 1 ttl (µs), then the table's four.
local h = redis.call('HMGET', k, 'g', 'st', 'u', 'at', 'c', 'ce', 'e')
local st, u, at, e = h[2], h[3], h[4], h[7]
if not alive(at, e, ARGV[1]) then st = false end
if e ~= epoch then u = false end
local a = -1
if st or u then a = age(at) end
local left = 0
if h[5] then left = math.max(tonumber(h[6] or '0') - now, 0) end
return result(1, h[1], st, u, a, left, grace and not st and not u)
