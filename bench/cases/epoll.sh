# shellcheck shell=bash disable=SC2016,SC2034,SC2154 # check strings are eval'd; globals shared with bench/run.sh
# bench/cases/epoll.sh: agate on io_uring against the same binary on epoll
# (engine.backend, by AGATE_ENGINE_BACKEND), in the same run: the echo, proxy and
# cache rows of each, req/s and the server's CPU per response (issue 24). On this
# 2-core box wrk shares the CPUs with the server, so req/s alone is bound by the load
# generator; CPU per response is the figure that tells the backends apart.
#
# Three pairs of agates, each pair one config on the two backends: the echo agent
# (metrics on, logs off, as the echo case's agate); a proxy agent, validation strict,
# in front of an nginx serving the recorded stream (as the proxy case's agate-proxy);
# a cached proxy agent answering HITs (as the cache case's agate-cache, asked once
# before timing). The verdict is paired (bench/lib/stats.sh): epoll/io_uring of CPU
# per response, BENCH_PAIRS pairs interleaved with every other comparison. Target:
# at most 1.25x on echo and proxy (cache: figures). Checked: both answer the same
# events, relay the upstream's bytes, serve HITs, and say which backend they run
# (agate_engine_info); after the timing, no upstream failure and one upstream
# attempt per cache.

EP_WHATS="echo proxy cache"
EP_TARGET=1.25

epoll_setup() {
  local v status u n_hit be
  echo "-- epoll: the same agate on io_uring (uring-*) and on epoll (epoll-*), the same configs"
  cp "$body" "$tmp/www/ep-stream.sse"
  nginx_upstream upstream-ep "$tmp/www/ep-stream.sse"
  proxy_agent_yaml "http://127.0.0.1:$UP_PORT/agent" strict >"$tmp/ep-proxy.yaml"
  cache_agent_yaml "http://127.0.0.1:$UP_PORT/agent" >"$tmp/ep-cache.yaml"
  for v in uring epoll; do
    be=io_uring; [ $v = epoll ] && be=epoll
    start_agate "$v-echo" /dev/null AGATE_ENGINE_BACKEND=$be
    start_agate "$v-proxy" /dev/null AGATE_ENGINE_BACKEND=$be AGATE_CONFIG="$tmp/ep-proxy.yaml"
    start_agate "$v-cache" /dev/null AGATE_ENGINE_BACKEND=$be AGATE_CONFIG="$tmp/ep-cache.yaml"
    UPSTREAM_OF["$v-proxy"]=upstream-ep
    check "$v-echo runs on $be (agate_engine_info)" \
      '[[ "$(curl -sf "http://127.0.0.1:${ADMINPORT[$v-echo]}/metrics")" == *"agate_engine_info{backend=\"$be\""* ]]'

    u="http://127.0.0.1:${MAINPORT[$v-echo]}/v1/agents/echo/run"
    status=$(post "$u" "$tmp/$v-echo.body" "$tmp/$v-echo.headers")
    check "$v-echo answers 200 text/event-stream, $n_events events, $body_bytes-byte body" \
      '[[ $status == "200 text/event-stream"* ]] && [ "$(wc -c <"$tmp/$v-echo.body")" -eq "$body_bytes" ] && [ "$(grep -c "^data: " "$tmp/$v-echo.body")" -eq "$n_events" ]'
    add_row "$v-echo" "echo ($be)" bench/echo.lua "$u" "$(wire_bytes "$u")"

    u="http://127.0.0.1:${MAINPORT[$v-proxy]}/v1/agents/up/run"
    status=$(post "$u" "$tmp/$v-proxy.body" "$tmp/$v-proxy.headers")
    check "$v-proxy answers 200 text/event-stream ($status), body byte-identical to the upstream's" \
      '[[ $status == "200 text/event-stream"* ]] && cmp -s "$tmp/$v-proxy.body" "$body"'
    add_row "$v-proxy" "proxy strict ($be)" bench/echo.lua "$u" "$(wire_bytes "$u")"

    u="http://127.0.0.1:${MAINPORT[$v-cache]}/v1/agents/up/run"
    status=$(post "$u" "$tmp/$v-cache-miss.body" "$tmp/$v-cache-miss.headers")
    check "$v-cache: first request X-Cache: MISS ($status), the upstream's bytes" \
      '[[ $status == "200 text/event-stream"* ]] && grep -qi "^x-cache: *MISS" "$tmp/$v-cache-miss.headers" && cmp -s "$tmp/$v-cache-miss.body" "$body"'
    status=$(post "$u" "$tmp/$v-cache-hit.body" "$tmp/$v-cache-hit.headers")
    n_hit=$(grep -c '^data: ' "$tmp/$v-cache-hit.body" || true)
    check "$v-cache: then X-Cache: HIT ($status), $n_hit events (want $n_events)" \
      '[[ $status == "200 text/event-stream"* ]] && grep -qi "^x-cache: *HIT" "$tmp/$v-cache-hit.headers" && [ "$n_hit" -eq "$n_events" ]'
    add_row "$v-cache" "cache HIT ($be)" bench/echo.lua "$u" "$(wire_bytes "$u")"
  done
}

epoll_table() {
  local w
  echo "  [epoll] agate on io_uring against agate on epoll (same binary, same configs)"
  header
  for w in $EP_WHATS; do row "$1" "uring-$w"; row "$1" "epoll-$w"; done
  for w in $EP_WHATS; do versus "$1" "epoll-$w" "uring-$w"; done
}

epoll_pairs() {
  local w
  for w in $EP_WHATS; do add_comparison "uring-$w" "epoll-$w" cpu; done
}

epoll_targets() {
  local w
  upstream_clean uring epoll
  for w in $EP_WHATS; do
    echo "  epoll, $w: CPU per response epoll/io_uring $(awk -v a="${USREQ[mean:epoll-$w]}" -v b="${USREQ[mean:uring-$w]}" 'BEGIN { printf "%.3f", a / b }')x on the row means (${USREQ[mean:epoll-$w]} against ${USREQ[mean:uring-$w]} us); req/s $(awk -v a="${RPS[mean:epoll-$w]}" -v b="${RPS[mean:uring-$w]}" 'BEGIN { printf "%.3f", a / b }')x"
    [ "$w" = cache ] && echo "        (the target is for echo and proxy; cache: figures)"
    paired_verdict "epoll-$w" atmost "$EP_TARGET"
  done
}
