-- GET of documents base .. base+nkeys-1 in turn: a hot set (100 ids) or, with many ids, a walk
-- over distinct keys (the memory fill).
local n = 0
function request()
	local id = base + (n % nkeys)
	n = n + 1
	return wrk.format("GET", "/docs/" .. id)
end

function response(status, headers, body)
	count(status, headers)
end
