-- GET of random documents among nkeys (1M) ids: most requests name a key the proxy has not seen
-- recently, so its version table keeps admitting and evicting (cache churn).
function request()
	return wrk.format("GET", "/docs/" .. (base + math.random(0, nkeys - 1)))
end

function response(status, headers, body)
	count(status, headers)
end
