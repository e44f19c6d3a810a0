-- claim takes the key's write claim if no claim holds it, and returns the
-- state. A claim is taken over only from a holder that a node watched make
-- no progress for a whole lease on its own clock (ARGV 6 and 7: the token
-- and renewal count it watched): no decision rests on two machines' clocks
-- agreeing. A claim taken over makes the key uncertain: that write may have
-- happened.
-- ARGV: 1 token, 2 lease (µs), 3 ttl (µs), 4 new generation, 5 key life
-- (ms), 6 token to take over or '', 7 its renewal count, then the table's
-- four.
local h = redis.call('HMGET', k, 'c', 'ce', 'st', 'u', 'at', 'g', 'cr', 'e')
local c, st, u, at, g, cr, e = h[1], h[3], h[4], h[5], h[6], h[7] or '0', h[8]
if not alive(at, e, ARGV[3]) then st = false end
if e ~= epoch then u = false end
local function a()
  if st or u then return age(at) end
  return -1
end
if c == ARGV[1] then
  return result(1, g, st, u, a(), 0, grace and not st and not u)
end
if c and not (c == ARGV[6] and cr == ARGV[7]) then
  local left = math.max(tonumber(h[2] or '0') - now, 0)
  return result(0, g, st, u, a(), left, false, c, tonumber(cr))
end
if c then
  -- taken over: the holder's write may have happened
  u, at = '1', fmt(now)
  if not st then redis.call('HDEL', k, 'st') end
  redis.call('HSET', k, 'u', u, 'at', at, 'e', epoch)
  redis.call('HDEL', k, 't')
end
redis.call('HSET', k, 'c', ARGV[1], 'ce', fmt(now + tonumber(ARGV[2])), 'cr', '0', 'g', ARGV[4])
redis.call('HDEL', k, 'pv')
if born and now - born < tonumber(ARGV[2]) and not c then
  -- Within a lease of a loss: a claim that held the key before the loss
  -- may still be acting (its write at the upstream). This claim is
  -- provisional: its holder waits until the epoch is a lease old, and a
  -- renewal of the earlier claim takes the key back meanwhile (renew.lua).
  redis.call('HSET', k, 'pv', '1')
  young = born + tonumber(ARGV[2]) - now
end
redis.call('PEXPIRE', k, ARGV[5])
added = index(ARGV[5])
return result(1, ARGV[4], st, u, a(), 0, grace and not st and not u)
