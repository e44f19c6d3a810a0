-- add records a representation, then evicts: first the key's least
-- recently used entries beyond the per-key count, then the table's least
-- recently used entries until the total is within the bound. A version
-- already held with the same bytes is only marked used; with other bytes
-- it names two states and is forgotten (and the near-caches told).
-- ARGV: 1 entry id, 2 body, 3 max bytes, 4 per-key count, 5 and 6 the
-- key's lex range in ids, 7 life of the keys (ms), 8 channel, 9 message
-- that drops the key from the nodes' near-caches.
-- Returns {code, evicted}: code 0 added, 1 was held, 2 forgotten, 3 too
-- large.
local id, body = ARGV[1], ARGV[2]
local maxb, count = tonumber(ARGV[3]), tonumber(ARGV[4])
local old = redis.call('HGET', bodies, id)
if old then
  if old == body then
    redis.call('ZADD', lru, stamp(), id)
    return {1, 0}
  end
  local t = used()
  t = t - drop(id)
  redis.call('SET', total, fmt(math.max(t, 0)), 'PX', ARGV[7])
  redis.call('PUBLISH', ARGV[8], ARGV[9])
  return {2, 0}
end
local c = cost(#body, #id)
if c > maxb then return {3, 0} end
local t = used() + c
redis.call('HSET', bodies, id, body)
redis.call('ZADD', lru, stamp(), id)
redis.call('ZADD', ids, 0, id)
local evicted = 0
local mine = redis.call('ZRANGEBYLEX', ids, ARGV[5], ARGV[6])
if #mine > count then
  local scored = {}
  for _, m in ipairs(mine) do
    if m ~= id then
      scored[#scored + 1] = {tonumber(redis.call('ZSCORE', lru, m) or '0'), m}
    end
  end
  table.sort(scored, function(a, b) return a[1] < b[1] end)
  for i = 1, #mine - count do
    t = t - drop(scored[i][2])
    evicted = evicted + 1
  end
end
while t > maxb do
  local v = redis.call('ZRANGE', lru, 0, 0)
  if #v == 0 or v[1] == id then break end
  t = t - drop(v[1])
  evicted = evicted + 1
end
redis.call('SET', total, fmt(math.max(t, 0)), 'PX', ARGV[7])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
return {0, evicted}
