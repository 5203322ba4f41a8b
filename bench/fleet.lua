-- wrk script for the shared-cache rows (bench/cases/fleet_cache.sh): POST the
-- bench request (bench/echo-body.json) with its user message made distinct per
-- request. Set FLEET_KEYS before loading it (bench/fleet_cycle.lua,
-- bench/fleet_unique.lua): N > 0 cycles every connection through N questions
-- (with a local tier smaller than N entries, most requests miss locally and are
-- answered by the second tier), 0 never repeats a question (every request a
-- MISS, also across wrk runs: a per-thread nonce from the clock).
-- done() prints bench/echo.lua's BENCH_SUMMARY line.

local keys = FLEET_KEYS or 0
local path = os.getenv("BENCH_BODY_FILE") or "bench/echo-body.json"
local f = assert(io.open(path, "rb"), "fleet.lua: cannot open " .. path)
local body = f:read("*a"):gsub("%s+$", "")
f:close()
local pre, post = body:match('^(.-"content":")(.*)$')
assert(pre, "fleet.lua: no \"content\" in " .. path)

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "text/event-stream"

local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end

local n, nonce = 0, ""
function init(args)
  -- threads start half the cycle apart: two threads asking the same question at
  -- once would make the second a local HIT, not a second-tier one
  n = (tid or 0) * 512
  math.randomseed(os.time() * 1000 + (tid or 0))
  nonce = string.format("%d-%d-%d", os.time(), tid or 0, math.random(1, 1000000000))
end

function request()
  n = n + 1
  local q
  if keys > 0 then q = "q" .. (n % keys) .. " " else q = nonce .. "-" .. n .. " " end
  return wrk.format(nil, nil, nil, pre .. q .. post)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_SUMMARY requests=%d bytes=%d duration_us=%d status=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.bytes, summary.duration, e.status, e.connect, e.read,
    e.write, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
