-- prune removes from the key index (KEYS[1]) the members (ARGV) whose
-- keys (KEYS[2..], the same order) are gone, and returns how many it
-- removed. The check and the removal are one step, so a key created
-- meanwhile keeps its member. It runs without the prelude.
local n = 0
for i, m in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then n = n + redis.call('ZREM', KEYS[1], m) end
end
return n
