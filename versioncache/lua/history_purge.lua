-- purge drops the entries in the lex ranges of ids given in ARGV[4..]
-- (pairs: min, max), at most ARGV[1] of them, and tells the nodes'
-- near-caches (ARGV[2] channel, ARGV[3] message) even when Redis held
-- none: a near-cache may hold what Redis evicted. Returns how many it
-- dropped; the caller repeats while that is the limit.
local limit = tonumber(ARGV[1])
local before = used()
local n, freed = 0, 0
for i = 4, #ARGV, 2 do
  if n < limit then
    local ms = redis.call('ZRANGEBYLEX', ids, ARGV[i], ARGV[i + 1], 'LIMIT', 0, limit - n)
    for _, id in ipairs(ms) do
      freed = freed + drop(id)
      n = n + 1
    end
  end
end
if n > 0 then
  local t = before - freed
  local life = redis.call('PTTL', total)
  if life > 0 then
    redis.call('SET', total, fmt(math.max(t, 0)), 'PX', life)
  else
    redis.call('SET', total, fmt(math.max(t, 0)))
  end
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return n
