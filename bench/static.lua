-- wrk script: GET the static copy of the echo agent's SSE body from nginx
-- (nginx answers POST to a static file with 405, so the baseline uses GET).
--
--   wrk -t2 -c64 -d10s --latency -s bench/static.lua http://127.0.0.1:8081/echo.sse
--
-- done() prints the same "BENCH_SUMMARY" line as echo.lua.

wrk.method = "GET"
wrk.headers["Accept"] = "text/event-stream"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_SUMMARY requests=%d bytes=%d duration_us=%d status=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.bytes, summary.duration, e.status, e.connect, e.read,
    e.write, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
