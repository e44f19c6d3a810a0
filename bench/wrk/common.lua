-- Shared by every workload: the driver (bench/main.go) puts this file in front of the workload's
-- script. It counts statuses per thread, learns ETags, and prints the line the driver parses.
-- Run with -t1 (one thread, one Lua state): the ETag table is then shared by all connections.

wrk.headers["Accept-Encoding"] = "gzip" -- so that encode gzip compresses in the gzip configurations

-- Statuses seen by this thread (globals, so that done() can read them with thread:get).
s200, s204, s409, s4xx, s5xx, sother, bad_problem = 0, 0, 0, 0, 0, 0, 0

function count(status, headers)
	if status == 200 then
		s200 = s200 + 1
	elseif status == 204 then
		s204 = s204 + 1
	elseif status == 409 then
		s409 = s409 + 1
		local ct = headers["Content-Type"] or headers["content-type"] or ""
		if not string.find(ct, "application/problem+json", 1, true) then
			bad_problem = bad_problem + 1
		end
	elseif status >= 500 then
		s5xx = s5xx + 1
	elseif status >= 400 then
		s4xx = s4xx + 1
	else
		sother = sother + 1
	end
end

-- The upstream's ETags are "<id>-<version>" (encode may append -gzip): any response, a 409 from the
-- proxy included, says which document it is about and which version is current.
-- pending counts the requests in flight per id: when wrk stops, their writes may have reached the
-- upstream unseen, so those ids are not kept for the next run (it reads them again first).
tags, versions, pending = {}, {}, {}

function sent(id)
	pending[id] = (pending[id] or 0) + 1
end

function learn(headers)
	local tag = headers["Etag"] or headers["ETag"] or headers["etag"]
	if tag == nil then
		return
	end
	local id, v = string.match(tag, '^"(%d+)%-(%d+)')
	if id == nil then
		return
	end
	id, v = tonumber(id), tonumber(v)
	if pending[id] then
		pending[id] = pending[id] - 1
	end
	-- Responses overtake each other: never go back to an older version.
	if versions[id] == nil or v >= versions[id] then
		versions[id], tags[id] = v, tag
	end
end

-- args: [1] first id of this run's documents, [2] how many ids, [3] random seed (each run draws other
-- ids), [4] a file that keeps the learned ETags from one run to the next (the driver writes the first
-- one from a GET of every document, so that the measured runs are writes only)
base, nkeys, statefile = 0, 100, nil
function init(args)
	base = tonumber(args[1]) or base
	nkeys = tonumber(args[2]) or nkeys
	math.randomseed(tonumber(args[3]) or os.time())
	statefile = args[4]
	local f = statefile and io.open(statefile, "r")
	if f then
		for line in f:lines() do
			local id, v, tag = string.match(line, "^(%d+)\t(%d+)\t(.*)$")
			if id then
				versions[tonumber(id)], tags[tonumber(id)] = tonumber(v), tag
			end
		end
		f:close()
	end
end

local threads = {}
function setup(thread)
	table.insert(threads, thread)
end

function done(summary, latency, requests)
	local names = { "s200", "s204", "s409", "s4xx", "s5xx", "sother", "bad_problem" }
	local total = {}
	for _, name in ipairs(names) do
		total[name] = 0
		for _, t in ipairs(threads) do
			total[name] = total[name] + (t:get(name) or 0)
		end
	end
	for _, t in ipairs(threads) do
		local path, learned, tagOf, inflight = t:get("statefile"), t:get("versions"), t:get("tags"), t:get("pending")
		if path and next(learned) ~= nil then
			local f = assert(io.open(path, "w"))
			for id, v in pairs(learned) do
				if (inflight[id] or 0) <= 0 then
					f:write(string.format("%d\t%d\t%s\n", id, v, tagOf[id]))
				end
			end
			f:close()
		end
	end
	local e = summary.errors
	io.write(string.format(
		"BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d connect=%d read=%d write=%d timeout=%d",
		summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
		latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout))
	for _, name in ipairs(names) do
		io.write(string.format(" %s=%d", name, total[name]))
	end
	io.write("\n")
end
