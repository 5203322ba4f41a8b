# shellcheck shell=bash disable=SC2016,SC2034,SC2154 # check strings are eval'd; globals shared with bench/run.sh
# bench/cases/echo.sh: agate's echo agent against nginx (and HAProxy) serving the
# same bytes (issue 2).
#
#   agate: POST /v1/agents/echo/run, a 40-word user message (bench/echo-body.json,
#          sent by bench/echo.lua): 200 text/event-stream, chunked, 44 SSE events.
#   nginx: GET of a static file holding the exact SSE body agate sent for that request
#          (nginx answers POST to a static file with 405), sendfile, keep-alive;
#          bench/static.lua. Two server blocks: stock (open/fstat/sendfile/close per
#          request) and, with BENCH_NGINX_OFC=1 (default), the same plus open_file_cache.
#   HAProxy (BENCH_HAPROXY=1): the same bytes from memory (`http-request return ...
#          file`, loaded at start-up: no file I/O per request). Information only.
#
# echo_record also runs for every other case: the "agate" server (metrics on, request
# logs off) records the SSE body that nginx serves here and the upstreams serve in
# the proxy, cache, streams and baseline cases.

echo_record() {
  start_agate agate /dev/null
  agate_url="http://127.0.0.1:${MAINPORT[agate]}/v1/agents/echo/run"
  mkdir -p "$tmp/www"
  body=$tmp/www/echo.sse
  local status n_content deltas want_text n_chunks
  status=$(post "$agate_url" "$body" "$tmp/agate.headers")
  agate_wire=$(wire_bytes "$agate_url")
  n_content=$(grep -o '"type":"TEXT_MESSAGE_CONTENT"' "$body" | wc -l)
  n_events=$(grep -c '^data: ' "$body" || true)
  echo "== correctness (before timing)"
  echo "-- agate echo"
  check "agate answers 200 text/event-stream ($status)" '[[ $status == "200 text/event-stream"* ]]'
  check "agate uses chunked framing" 'grep -qi "^transfer-encoding: *chunked" "$tmp/agate.headers"'
  check "$n_content TEXT_MESSAGE_CONTENT events (want $WORDS)" '[ "$n_content" -eq "$WORDS" ]'
  check "RUN_STARTED first, RUN_FINISHED last, $n_events events (want $((WORDS + 4)))" \
    '[ "$n_events" -eq $((WORDS + 4)) ] && grep -m1 "^data: " "$body" | grep -q "\"RUN_STARTED\"" && grep "^data: " "$body" | tail -1 | grep -q "\"RUN_FINISHED\""'
  check "every event is 'data: {json}' followed by a blank line" \
    '[ "$(grep -c "^data: {.*}$" "$body")" -eq "$n_events" ] && [ "$(grep -c "^$" "$body")" -eq "$n_events" ] && [ "$(wc -l <"$body")" -eq $((2 * n_events)) ]'
  deltas=$(grep -o '"delta":"[^"]*"' "$body" | sed 's/^"delta":"//; s/"$//' | tr -d '\n')
  want_text=$(grep -o '"content":"[^"]*"' "$BODY_FILE" | sed 's/^"content":"//; s/"$//')
  check "the deltas concatenate to the user message" '[ "$deltas" = "$want_text" ]'
  body_bytes=$(wc -c <"$body")
  n_chunks=$(grep -c $'^[0-9a-fA-F]\\+\r$' "$tmp/wire.b" || true)
  echo "  info  SSE body $body_bytes bytes; on the wire with headers and chunked framing $agate_wire bytes ($n_chunks chunk-size lines)"
}

echo_setup() {
  local status nginx_wire nginx_url nginx_ofc_url
  add_row agate "agate echo (log off)" bench/echo.lua "$agate_url" "$agate_wire"
  echo "-- echo: nginx serving the captured body as a static file"
  free_port; NGINX_PORT=$PORT
  free_port; NGINX_OFC_PORT=$PORT
  {
    nginx_conf nginx
    cat <<EOF
    # Stock static serving: open(), fstat(), sendfile(), close() per request.
    server {
        listen 127.0.0.1:$NGINX_PORT reuseport;
        root $tmp/www;
        location = /echo.sse { }
    }
    # The same file with the descriptor cache a tuned static server would use.
    server {
        listen 127.0.0.1:$NGINX_OFC_PORT reuseport;
        root $tmp/www;
        open_file_cache max=64 inactive=60s;
        open_file_cache_valid 60s;
        location = /echo.sse { }
    }
}
EOF
  } >"$tmp/nginx.conf"
  nginx_url="http://127.0.0.1:$NGINX_PORT/echo.sse"
  start_nginx nginx "$nginx_url"
  SPID[nginx-ofc]=${SPID[nginx]}
  status=$(curl -s -D "$tmp/nginx.wire" -o "$tmp/nginx.body" -w '%{http_code} %{content_type}' "$nginx_url")
  nginx_wire=$(( $(wc -c <"$tmp/nginx.wire") + $(wc -c <"$tmp/nginx.body") ))
  check "nginx answers 200 text/event-stream ($status)" '[[ $status == "200 text/event-stream"* ]]'
  check "nginx serves exactly the captured agate body ($body_bytes bytes)" 'cmp -s "$tmp/nginx.body" "$body"'
  nginx_ofc_url="http://127.0.0.1:$NGINX_OFC_PORT/echo.sse"
  status=$(curl -s -o "$tmp/nginx-ofc.body" -w '%{http_code} %{content_type}' "$nginx_ofc_url")
  check "nginx (open_file_cache server) answers 200 text/event-stream with the same bytes" \
    '[[ $status == "200 text/event-stream"* ]] && cmp -s "$tmp/nginx-ofc.body" "$body"'
  echo "  info  nginx on the wire with headers $nginx_wire bytes (Content-Length, no chunking)"
  echo "  info  wrk -s bench/static.lua sends GET; bench/echo.lua sends POST with $(wc -c <"$BODY_FILE") bytes of JSON"
  add_row nginx "nginx GET static" bench/static.lua "$nginx_url" "$nginx_wire"
  [ "$BENCH_NGINX_OFC" = 1 ] &&
    add_row nginx-ofc "nginx GET + open_file_cache" bench/static.lua "$nginx_ofc_url" "$nginx_wire"
  if [ -n "$HAPROXY" ]; then
    haproxy_static haproxy "$body"
    status=$(curl -s -D "$tmp/haproxy.wire" -o "$tmp/haproxy.body" -w '%{http_code} %{content_type}' "$URL")
    check "haproxy answers 200 text/event-stream ($status) with exactly the captured agate body" \
      '[[ $status == "200 text/event-stream"* ]] && cmp -s "$tmp/haproxy.body" "$body"'
    add_row haproxy "haproxy GET (bytes in memory)" bench/static.lua "$URL" \
      $(( $(wc -c <"$tmp/haproxy.wire") + $(wc -c <"$tmp/haproxy.body") ))
  fi
  return 0
}

echo_table() {
  local n
  echo "  [echo] agate's echo agent vs nginx serving the same bytes"
  header
  for n in agate nginx nginx-ofc haproxy; do has_row $n && row "$1" $n; done
  for n in nginx nginx-ofc haproxy; do has_row $n && versus "$1" agate $n; done
  return 0
}
