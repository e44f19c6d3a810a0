-- The prelude of the history scripts (versioncache/redis_history.go): the
-- table's four keys, all declared, all starting with the store's
-- KeyPrefix (so that they share a Cluster hash slot):
--   KEYS[1] bodies: a hash, entry id -> the representation's raw bytes
--   KEYS[2] lru:    a sorted set of the entry ids by last use
--   KEYS[3] ids:    a sorted set of the entry ids, all of score 0, read by
--                   lex range: a key's entries, or every key with a prefix
--   KEYS[4] total:  the table's cost in bytes (what cost() sums)
-- An entry id is the history key (escaped: no NUL) .. NUL .. the version.
local bodies, lru, ids, total = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local function fmt(n) return string.format('%.0f', n) end

-- alloc is the allocation of n bytes: jemalloc's size class (16-byte
-- steps up to 128, then four classes per doubling).
local function alloc(n)
  if n <= 16 then return 16 end
  if n <= 128 then return math.ceil(n / 16) * 16 end
  local p = 256
  while p < n do p = p * 2 end
  local step = p / 8
  return math.ceil(n / step) * step
end

-- cost is what an entry of a body of n bytes and an id of m bytes costs:
-- the body's and the id's strings (the id three times: hash field, lru
-- and ids members), each with its header and NUL, and ENTRY_OVERHEAD (the
-- hash's and the sorted sets' dict entries and skiplist nodes; measured
-- with MEMORY USAGE, see redis_history_test.go). Keep in step with
-- redisHistoryCost in redis_history.go.
local ENTRY_OVERHEAD = 320
local function cost(n, m)
  return alloc(n + 10) + 3 * alloc(m + 4) + ENTRY_OVERHEAD
end

-- drop removes one entry and returns its cost.
local function drop(id)
  local n = redis.call('HSTRLEN', bodies, id)
  redis.call('HDEL', bodies, id)
  redis.call('ZREM', lru, id)
  redis.call('ZREM', ids, id)
  return cost(n, #id)
end

-- stamp is a last-use score above every score held: Redis TIME in µs, or
-- one more than the newest score if that is ahead.
local function stamp()
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local top = redis.call('ZREVRANGE', lru, 0, 0, 'WITHSCORES')
  if top[2] and tonumber(top[2]) >= now then now = tonumber(top[2]) + 1 end
  return now
end

-- used returns the table's cost; recounted from the entries when the
-- counter was lost (deleted, evicted) while entries remain.
local function used()
  local t = redis.call('GET', total)
  if t then return tonumber(t) end
  local sum, cursor = 0, '0'
  repeat
    local r = redis.call('HSCAN', bodies, cursor, 'COUNT', 1000)
    cursor = r[1]
    for i = 1, #r[2], 2 do sum = sum + cost(#r[2][i + 1], #r[2][i]) end
  until cursor == '0'
  return sum
end
