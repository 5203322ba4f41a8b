-- wrk script: POST the echo agent's run request (a 40-word user message) on
-- every request of every keep-alive connection.
--
--   wrk -t2 -c64 -d10s --latency -s bench/echo.lua http://127.0.0.1:8080/v1/agents/echo/run
--
-- The body is read from $BENCH_BODY_FILE (default bench/echo-body.json,
-- relative to the current directory; bench/run.sh runs from the repo root).
-- done() prints one machine-readable "BENCH_SUMMARY" line that bench/run.sh
-- uses to check that whole responses were read (bytes per response).

local path = os.getenv("BENCH_BODY_FILE") or "bench/echo-body.json"
local f = assert(io.open(path, "rb"), "echo.lua: cannot open " .. path)
local body = f:read("*a"):gsub("%s+$", "")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "text/event-stream"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_SUMMARY requests=%d bytes=%d duration_us=%d status=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.bytes, summary.duration, e.status, e.connect, e.read,
    e.write, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
