-- Replays request paths from a file; used by bench/scenarios_wrk.py.
--   wrk -s bench/wrk_replay.lua URL -- PATHS_FILE THREADS
-- PATHS_FILE holds one path per line (drawn from the example site's mix in Python). Each wrk
-- thread starts at its own offset in the list and walks it in order, wrapping around. done()
-- prints one line "BENCH_JSON {...}": counts, errors and latency percentiles in microseconds.
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  paths = {}
  for line in io.lines(args[1]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  assert(#paths > 0, "no paths in " .. args[1])
  local threads = tonumber(args[2]) or 1
  position = math.floor(id * #paths / threads)
end

function request()
  position = position % #paths + 1
  return wrk.format("GET", paths[position])
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
