-- read returns the key's generation and state; with ARGV[1] ~= '' it
-- first gives a key without one the generation ARGV[1] (ReadStart).
-- ARGV: 1 new generation or '', 2 key life (ms).
local now = now_us()
local h = redis.call('HMGET', k, 'g', 'st', 'u', 'at', 'c', 'ce')
local g = h[1]
if not g and ARGV[1] ~= '' then
  g = ARGV[1]
  redis.call('HSET', k, 'g', g)
  redis.call('PEXPIRE', k, ARGV[2])
  index(ARGV[2])
end
local left = 0
if h[5] then left = math.max(tonumber(h[6] or '0') - now, 0) end
return {1, g or '', h[2] or '', h[3] or '', age(h[4], now), left}
