-- renew extends the lease of a claim that is still this write's, and
-- counts the renewal (what a node watching the claim sees progress by).
-- ARGV 4 is the mode: 'reassert' from a holder that still acts on its
-- claim: if Redis lost the claim (it is gone, or another node holds it
-- provisionally after the loss), the holder takes it back and the key is
-- uncertain, since its write may be at the upstream; 'confirm' from a
-- provisional holder at the end of its wait: it keeps the claim if it is
-- still its own.
-- Only a claim granted in an earlier epoch (ARGV 5) is taken back: a
-- claim that merely ended in this epoch is never revived.
-- ARGV: 1 token, 2 lease (µs), 3 key life (ms), 4 mode, 5 the epoch the
-- claim was granted in, then the table's four.
local h = redis.call('HMGET', k, 'c', 'pv')
if h[1] ~= ARGV[1] then
  if ARGV[4] ~= 'reassert' or ARGV[5] == epoch or (h[1] and not h[2]) then
    return result(0, '', '', '', -1, 0, false)
  end
  redis.call('HSET', k, 'c', ARGV[1], 'cr', '0', 'u', '1', 'at', fmt(now), 'e', epoch)
  redis.call('HDEL', k, 'pv', 't')
elseif ARGV[4] == 'confirm' then
  redis.call('HDEL', k, 'pv')
end
redis.call('HSET', k, 'ce', fmt(now + tonumber(ARGV[2])))
redis.call('HINCRBY', k, 'cr', 1)
redis.call('PEXPIRE', k, ARGV[3])
added = index(ARGV[3])
return result(1, '', '', '', -1, 0, false)
