-- PUT with If-Match over nkeys ids in turn. A document whose ETag this script has not learned yet is
-- first read with a GET; after that every request to it is a PUT with the ETag of the last response
-- about it (a 204's new ETag, or a 409's current one: the retry). With many ids (uncontended) the
-- ETag is always right (ids whose last request was cut off when the previous run stopped are read
-- again first), so a 409 is a false rejection; with few ids (contended) several connections
-- write the same document at once and all but one of them get 409 and retry with the new ETag.
local n = 0
local doc = '{"title":"edited","body":"' .. string.rep("x", 160) .. '"}'
function request()
	local id = base + (n % nkeys)
	n = n + 1
	local tag = tags[id]
	sent(id)
	if tag == nil then
		return wrk.format("GET", "/docs/" .. id)
	end
	return wrk.format("PUT", "/docs/" .. id, {
		["Host"] = wrk.headers["Host"],
		["Accept-Encoding"] = "gzip",
		["Content-Type"] = "application/json",
		["If-Match"] = tag,
	}, doc)
end

function response(status, headers, body)
	count(status, headers)
	learn(headers)
end
