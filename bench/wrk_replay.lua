-- Replays requests from a file; used by bench/scenarios_wrk.py and bench/scenarios_gunicorn.py.
--   wrk -s bench/wrk_replay.lua URL -- PATHS_FILE THREADS
-- PATHS_FILE holds one request per line (drawn from the example site's mixes in Python): a path
-- for a GET, or "POST <path> <JSON body>" for a POST of application/json. Each wrk thread
-- starts at its own offset in the list and walks it in order, wrapping around. done() prints
-- one line "BENCH_JSON {...}": counts, errors and latency percentiles in microseconds.
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  requests = {}
  local json = {["Content-Type"] = "application/json"}
  for line in io.lines(args[1]) do
    if line:sub(1, 5) == "POST " then
      local path, body = line:match("^POST (%S+) (.*)$")
      assert(path, "bad POST line: " .. line)
      requests[#requests + 1] = wrk.format("POST", path, json, body)
    elseif #line > 0 then
      requests[#requests + 1] = wrk.format("GET", line)
    end
  end
  assert(#requests > 0, "no requests in " .. args[1])
  local threads = tonumber(args[2]) or 1
  position = math.floor(id * #requests / threads)
end

function request()
  position = position % #requests + 1
  return requests[position]
end

function done(summary, latency, requests)
  local e = summary.errors
  local p = {}
  for _, q in ipairs({50, 90, 99, 99.9}) do
    p[#p + 1] = string.format('"%s": %d', tostring(q), latency:percentile(q))
  end
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "latency_us": {%s}, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(p, ", "), latency.max))
end
