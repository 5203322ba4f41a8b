# shellcheck shell=bash disable=SC2016,SC2034,SC2154 # check strings are eval'd; globals shared with bench/run.sh
# bench/cases/cache.sh: agate answering from its response cache against nginx serving
# the same bytes as a static file (issue 7: a HIT >= 1.5x nginx static req/s).
#
# agate: a proxy agent with cache.ttl 1h in front of an nginx serving the recorded
# stream, asked once (MISS) before timing, so every timed request is a HIT (replayed
# with the request's run ids and fresh message ids). nginx: GET of a static file
# holding one HIT's body. HAProxy (BENCH_HAPROXY=1): the HIT's bytes from memory.
# Checked: MISS then HIT before timing; after it, one upstream attempt in total (the
# upstream was idle while timing).

cache_setup() {
  local status n_hit cw cu nc_url ncw
  echo "-- cache: agate answering from its cache vs nginx serving a HIT's bytes as a static file"
  cp "$body" "$tmp/www/cache-up.sse"
  free_port; CUP_PORT=$PORT
  free_port; NGINX_C_PORT=$PORT
  {
    nginx_conf upstream-cache
    cat <<EOF
    server {
        listen 127.0.0.1:$CUP_PORT reuseport;
        location = /agent {
            alias $tmp/www/cache-up.sse;
            error_page 405 =200 \$uri;
        }
    }
    server {
        listen 127.0.0.1:$NGINX_C_PORT reuseport;
        root $tmp/www;
        location = /cached.sse { }
    }
}
EOF
  } >"$tmp/upstream-cache.conf"
  start_nginx upstream-cache "http://127.0.0.1:$CUP_PORT/agent"
  SPID[nginx-cache]=${SPID[upstream-cache]}
  cache_agent_yaml "http://127.0.0.1:$CUP_PORT/agent" >"$tmp/agate-cache.yaml"
  start_agate agate-cache /dev/null AGATE_CONFIG="$tmp/agate-cache.yaml"
  cu="http://127.0.0.1:${MAINPORT[agate-cache]}/v1/agents/up/run"
  status=$(post "$cu" "$tmp/cache-miss.body" "$tmp/cache-miss.headers")
  check "agate-cache: first request 200 text/event-stream ($status), X-Cache: MISS, the upstream's bytes" \
    '[[ $status == "200 text/event-stream"* ]] && grep -qi "^x-cache: *MISS" "$tmp/cache-miss.headers" && cmp -s "$tmp/cache-miss.body" "$body"'
  status=$(post "$cu" "$tmp/www/cached.sse" "$tmp/cache-hit.headers")
  n_hit=$(grep -c '^data: ' "$tmp/www/cached.sse" || true)
  check "agate-cache: then X-Cache: HIT ($status), $n_hit events (want $n_events), same types in order" \
    '[[ $status == "200 text/event-stream"* ]] && grep -qi "^x-cache: *HIT" "$tmp/cache-hit.headers" && [ "$n_hit" -eq "$n_events" ] && diff <(grep -o "\"type\":\"[A-Z_]*\"" "$body") <(grep -o "\"type\":\"[A-Z_]*\"" "$tmp/www/cached.sse") >/dev/null'
  cw=$(wire_bytes "$cu")
  nc_url="http://127.0.0.1:$NGINX_C_PORT/cached.sse"
  status=$(curl -s -D "$tmp/nginx-cache.wire" -o "$tmp/nginx-cache.body" -w '%{http_code} %{content_type}' "$nc_url")
  ncw=$(( $(wc -c <"$tmp/nginx-cache.wire") + $(wc -c <"$tmp/nginx-cache.body") ))
  check "nginx-cache serves the HIT's bytes ($status)" '[[ $status == "200 text/event-stream"* ]] && cmp -s "$tmp/nginx-cache.body" "$tmp/www/cached.sse"'
  add_row agate-cache "agate cache HIT" bench/echo.lua "$cu" "$cw"
  add_row nginx-cache "nginx GET static (HIT bytes)" bench/static.lua "$nc_url" "$ncw"
  if [ -n "$HAPROXY" ]; then
    haproxy_static haproxy-cache "$tmp/www/cached.sse"
    status=$(curl -s -D "$tmp/haproxy-cache.wire" -o "$tmp/haproxy-cache.body" -w '%{http_code} %{content_type}' "$URL")
    check "haproxy-cache serves the HIT's bytes ($status)" \
      '[[ $status == "200 text/event-stream"* ]] && cmp -s "$tmp/haproxy-cache.body" "$tmp/www/cached.sse"'
    add_row haproxy-cache "haproxy GET (HIT bytes in memory)" bench/static.lua "$URL" \
      $(( $(wc -c <"$tmp/haproxy-cache.wire") + $(wc -c <"$tmp/haproxy-cache.body") ))
  fi
  return 0
}
# cache_agent_yaml URL: the config of an agate whose agent "up" proxies to URL with
# its answers cached (also the baseline case's cache rows).
cache_agent_yaml() {
  cat <<EOF
cache: {max_bytes: 64MiB}
agents:
  up:
    type: proxy
    endpoints: [$1]
    cache: {ttl: 1h}
EOF
}

cache_table() {
  local n
  echo "  [cache] agate answering from its response cache vs nginx serving a HIT's bytes"
  header
  for n in agate-cache nginx-cache haproxy-cache; do has_row $n && row "$1" $n; done
  versus "$1" agate-cache nginx-cache
  if has_row haproxy-cache; then versus "$1" agate-cache haproxy-cache; fi
  return 0
}

cache_pairs() { add_comparison nginx-cache agate-cache; }

cache_targets() {
  local up hits rr
  up=$(metric agate-cache 'agate_upstream_attempts_total')
  hits=$(metric agate-cache 'agate_cache_requests_total{agent="up",result="hit"}')
  echo "  info  agate-cache: $hits hits, $up upstream attempt(s)"
  [ "$up" = 1 ] || { echo "  FAIL  agate-cache: the upstream was asked $up times (want 1: every timed request a HIT)"; fail=1; }
  rr=$(ratio "${RPS[mean:agate-cache]}" "${RPS[mean:nginx-cache]}")
  echo "  issue 7 target, agate cache HIT >= 1.5x nginx static req/s: ${rr}x: $(awk -v r="$rr" 'BEGIN { print (r >= 1.5) ? "met" : "NOT met" }')"
  paired_verdict agate-cache ratio 1.5
}
