-- get returns the bodies of the entry ids in ARGV (false where there is
-- none) and marks the ones found as used.
local out = {}
local now = nil
for i, id in ipairs(ARGV) do
  local b = redis.call('HGET', bodies, id)
  if b then
    if not now then now = stamp() end
    redis.call('ZADD', lru, 'XX', now, id)
    out[i] = b
  else
    out[i] = false
  end
end
return out
