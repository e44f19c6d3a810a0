-- The prelude of every script but prune: helpers, the script's key k
-- (KEYS[1], the resource's hash) and the key index. Times are Redis TIME in
-- µs (Lua numbers are doubles: exact up to 2^53 µs, the year 2255);
-- string.format('%.0f') keeps them integral.
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function fmt(n) return string.format('%.0f', n) end
local function age(at, now)
  if at then return now - tonumber(at) end
  return -1
end
local function alive(at, now, ttl)
  return at and now - tonumber(at) < tonumber(ttl)
end
local k = KEYS[1]
-- index adds k to the table's key index (KEYS[2]): a sorted set of the
-- keys without KeyPrefix, all of score 0, read by prefix with ZRANGEBYLEX
-- (List, prefix purge, guard children). A key that left Redis (expired)
-- stays a member until a sweep finds it gone: each key new to the index
-- checks the next two members at a cursor (KEYS[3]) that walks the index
-- round and round, so the index holds at most about twice the live keys.
-- The index and its cursor live as long as the longest-lived key.
local function index(life)
  local p = string.sub(KEYS[2], 1, -7)
  local added = redis.call('ZADD', KEYS[2], 0, string.sub(k, #p + 1))
  redis.call('PEXPIRE', KEYS[2], life)
  if added == 0 then return end
  local from = redis.call('GET', KEYS[3])
  local lo = '-'
  if from and from ~= '' then lo = '(' .. from end
  local ms = redis.call('ZRANGEBYLEX', KEYS[2], lo, '+', 'LIMIT', 0, 2)
  local last = ''
  for _, x in ipairs(ms) do
    if redis.call('EXISTS', p .. x) == 0 then redis.call('ZREM', KEYS[2], x) end
    last = x
  end
  if #ms < 2 then last = '' end
  redis.call('SET', KEYS[3], last, 'PX', life)
end
