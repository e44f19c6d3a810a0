-- prune removes from the key index (KEYS[1]) the members of ARGV
-- whose keys are gone, and returns how many it removed. The check and
-- the removal are one step, so a key created meanwhile keeps its member.
-- It runs without the prelude.
local p = string.sub(KEYS[1], 1, -7)
local n = 0
for _, m in ipairs(ARGV) do
  if redis.call('EXISTS', p .. m) == 0 then n = n + redis.call('ZREM', KEYS[1], m) end
end
return n
