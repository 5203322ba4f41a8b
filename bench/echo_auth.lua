-- wrk script: bench/echo.lua's request with an API key on every request
-- (bench/run.sh's auth case; the key is $BENCH_API_KEY, its SHA-256 is in the
-- agate-auth config the script writes).
--
--   BENCH_API_KEY=... wrk -t2 -c64 -d10s -s bench/echo_auth.lua http://127.0.0.1:8080/v1/agents/echo/run

dofile("bench/echo.lua")
wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("BENCH_API_KEY"), "echo_auth.lua: BENCH_API_KEY is not set")
