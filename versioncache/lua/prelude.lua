-- The prelude of every script but prune: helpers, the key k, the table's
-- record and the key index. KEYS: 1 the resource's hash k, 2 the table's
-- key index, 3 the table's record (its epoch and write count), 4 the
-- table's grace marker. Every key a script touches is declared (Cluster,
-- Dragonfly and key-routing proxies refuse others), and all of a table's
-- keys share its hash tag, so they are in one slot.
--
-- The last four ARGV of every script are the node's view of the table: 1
-- the epoch it knows ('' if none), 2 the highest write count it saw in that
-- epoch, 3 a fresh epoch to start if needed, 4 the grace period (ms).
--
-- Times are Redis TIME in µs (Lua numbers are doubles: exact up to 2^53 µs,
-- the year 2255); string.format('%.0f') keeps them integral. Redis's clock
-- is only ever compared with itself; a node that sees it step (or a
-- failover to a host with another clock) starts a new epoch (lua/epoch.lua).
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function fmt(n) return string.format('%.0f', n) end
local k = KEYS[1]
local n_args = #ARGV
local known_e, known_s = ARGV[n_args - 3], tonumber(ARGV[n_args - 2])
local fresh_e, grace_ms = ARGV[n_args - 1], ARGV[n_args]
local now = now_us()

-- The table's epoch. Redis losing data (a restart without persistence,
-- FLUSHALL, a failover to an empty replica, eviction of the record) loses
-- the record: a new epoch starts. A record whose write count is below what
-- the node saw in the same epoch was rolled back (a failover to a replica
-- that lagged, a restart from an older snapshot): a new epoch starts too.
-- States stored in an earlier epoch are never trusted; during the grace
-- period after a new epoch, a key without a trusted state is *dropped*
-- (the next write re-reads the upstream): it may have been written through
-- the proxy before the loss.
local rec = redis.call('HMGET', KEYS[3], 'e', 's', 'gr', 'b')
local epoch, seq = rec[1], tonumber(rec[2] or '0')
local function start_grace()
  redis.call('SET', KEYS[4], epoch, 'PX', grace_ms)
  redis.call('HSET', KEYS[3], 'gr', '1')
end
local function new_epoch(lost)
  epoch, seq = fresh_e, math.max(seq, known_s)
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[3], 'e', epoch, 's', fmt(seq))
  if lost then
    start_grace()
    -- born: claims granted within a lease of it are provisional (claim.lua)
    redis.call('HSET', KEYS[3], 'b', fmt(now))
  end
end
if not epoch then
  -- Lost, or the table's first use: a node that knew an epoch tells, and
  -- so does a key index left by a version of the store without the record.
  new_epoch(known_e ~= '' or redis.call('EXISTS', KEYS[2]) == 1)
elseif epoch == known_e and seq < known_s then
  new_epoch(true)
elseif known_e ~= '' and epoch ~= known_e and not rec[3] then
  -- Another node started this epoch not knowing of the loss (it had just
  -- started itself); this node knew the lost epoch.
  start_grace()
  redis.call('HSET', KEYS[3], 'b', fmt(now))
  rec[4] = fmt(now)
end
-- born is when the current epoch began after a loss (nil: not after one).
local born = tonumber(rec[4] or '')
if epoch == fresh_e and redis.call('HEXISTS', KEYS[3], 'b') == 1 then born = now end
local grace = redis.call('EXISTS', KEYS[4]) == 1

-- bump counts a write in the table's record.
local function bump()
  seq = redis.call('HINCRBY', KEYS[3], 's', 1)
end

-- age of a state stored at at (µs), 0 if Redis's clock went back; -1: none.
local function age(at)
  if at then return math.max(now - tonumber(at), 0) end
  return -1
end
-- alive: a state stored at at, in epoch e, is trusted.
local function alive(at, e, ttl)
  return at and e == epoch and now - tonumber(at) < tonumber(ttl)
end

-- index adds k to the table's key index (KEYS[2]): a sorted set of the
-- keys without the table's prefix, all of score 0, read by prefix with
-- ZRANGEBYLEX (List, prefix purge, guard children). Members of keys that
-- left Redis are swept by the nodes (Redis.sweep) and pruned when a List
-- meets them. The index lives as long as the longest-lived key.
local function index(life)
  local p = string.sub(KEYS[2], 1, -7)
  local added = redis.call('ZADD', KEYS[2], 0, string.sub(k, #p + 1))
  redis.call('PEXPIRE', KEYS[2], life)
  return added
end

-- result is every script's reply: {code, generation, st, u, age of st,
-- µs until the claim's lease ends, epoch, write count, dropped, Redis
-- now, claim token, claim renewals, added to the index, µs a provisional
-- claim must wait}.
local added = 0
local young = 0
local function result(code, g, st, u, a, left, dropped, c, cr)
  local d = 0
  if dropped then d = 1 end
  return {code, g or '', st or '', u or '', a, left or 0, epoch, seq, d, now, c or '', cr or 0, added, young}
end
