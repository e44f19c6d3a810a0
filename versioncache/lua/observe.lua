-- observe records what a read saw if the key still has the generation
-- the read started with and no claim (held, or left by a node that died).
-- A read that started on a key Redis did not hold (generation 'absent')
-- is recorded only if the key is still absent. ARGV[2] is the new state if
-- the state is still trusted, ARGV[3] if not. A read that changes nothing
-- only refreshes a state older than ttl/4.
-- ARGV: 1 generation at read start, 2 st if alive, 3 st if not, 4 new
-- generation, 5 ttl (µs), 6 key life (ms), then the table's four.
local h = redis.call('HMGET', k, 'g', 'c', 'at', 'st', 'u', 'e')
local g, c, at, st, u, e = h[1], h[2], h[3], h[4], h[5], h[6]
if ARGV[1] == 'absent' then
  -- (during a grace, the read may have started before the loss)
  if g or c or grace then return result(0, g, false, false, -1, 0, false) end
elseif not g or g ~= ARGV[1] or c then
  if not alive(at, e, ARGV[5]) then st = false end
  return result(0, g, st, u, age(at), 0, false)
end
local live = alive(at, e, ARGV[5])
if grace and not live then
  -- The generation may have come back with a rollback, or the read may
  -- have started before the loss: what it saw is not recorded.
  return result(0, g, false, false, -1, 0, false)
end
local nxt = ARGV[3]
if live then nxt = ARGV[2] end
if live and not u and st == nxt then
  if now - tonumber(at) >= tonumber(ARGV[5]) / 4 then
    at = fmt(now)
    redis.call('HSET', k, 'at', at)
    redis.call('PEXPIRE', k, ARGV[6])
    added = index(ARGV[6])
  end
  return result(1, g, st, false, age(at), 0, false)
end
redis.call('HSET', k, 'st', nxt, 'at', fmt(now), 'g', ARGV[4], 'e', epoch)
redis.call('HDEL', k, 'u')
redis.call('PEXPIRE', k, ARGV[6])
added = index(ARGV[6])
return result(1, ARGV[4], nxt, false, 0, 0, false)
