# shellcheck shell=bash disable=SC2016,SC2034,SC2154 # check strings are eval'd; globals shared with bench/run.sh
# bench/cases/proxy.sh: agate as a proxy against nginx as a proxy (issue 4: >= 1.3x
# nginx's runs/s at no worse p99), HAProxy and Pushpin in front of the same upstream.
#
# The upstream: a third nginx that answers POST /agent with the recorded 44-event SSE
# body (a static file, Content-Length). agate: an agent of type proxy, validation
# strict, pool.max_idle=$BENCH_PROXY_POOL; nginx: proxy_pass to an upstream block with
# keepalive $BENCH_PROXY_POOL, HTTP/1.1, proxy_buffering off. wrk POSTs the
# RunAgentInput to /v1/agents/up/run on every proxy. With BENCH_PROXY_PASS=1
# (default) a second agate with validation: pass too. HAProxy (BENCH_HAPROXY=1):
# http-reuse always, keep-alive to the same upstream. Pushpin (BENCH_PUSHPIN=1): the
# path rewritten by its route, as nginx and HAProxy rewrite it; CPU summed over its
# five processes. The upstream nginx uses CPU on the same CPUs; each row shows it
# apart ("ups"). Checked: every proxy relays the upstream's bytes; after the timing,
# agate had no upstream failure, retry or failed run.

proxy_setup() {
  local n v u w nch status px_peers px_names nginx_px_url haproxy_px_url pushpin_px_url
  echo "-- proxy: agate and nginx as proxies in front of an nginx serving the recorded stream"
  cp "$body" "$tmp/www/stream.sse"
  nginx_upstream upstream "$tmp/www/stream.sse"
  local up_url="http://127.0.0.1:$UP_PORT/agent"
  status=$(post "$up_url" "$tmp/upstream.body" "$tmp/upstream.headers")
  check "upstream answers POST /agent with 200 text/event-stream ($status) and the recorded $body_bytes bytes" \
    '[[ $status == "200 text/event-stream"* ]] && cmp -s "$tmp/upstream.body" "$body"'

  # nginx as the proxy.
  free_port; NGINX_PX_PORT=$PORT
  {
    nginx_conf nginx-proxy
    cat <<EOF
    upstream upstream_pool {
        server 127.0.0.1:$UP_PORT;
        keepalive $BENCH_PROXY_POOL;
        keepalive_requests 100000;
    }
    server {
        listen 127.0.0.1:$NGINX_PX_PORT reuseport;
        location = /v1/agents/up/run {
            proxy_pass http://upstream_pool/agent;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
  } >"$tmp/nginx-proxy.conf"
  nginx_px_url="http://127.0.0.1:$NGINX_PX_PORT/v1/agents/up/run"
  start_nginx nginx-proxy "$nginx_px_url"

  # haproxy as the proxy: the same upstream, connections kept and reused.
  px_peers=(nginx-proxy)
  if [ -n "$HAPROXY" ]; then
    free_port; HAPROXY_PX_PORT=$PORT
    { haproxy_conf; cat <<EOF
frontend px
    bind 127.0.0.1:$HAPROXY_PX_PORT
    default_backend upstream
backend upstream
    http-request set-path /agent
    server up 127.0.0.1:$UP_PORT
EOF
    } >"$tmp/haproxy-proxy.cfg"
    haproxy_px_url="http://127.0.0.1:$HAPROXY_PX_PORT/v1/agents/up/run"
    start_haproxy haproxy-proxy "$haproxy_px_url"
    px_peers+=(haproxy-proxy)
  fi
  # Pushpin as the proxy: the same upstream, the path rewritten by the route
  # (path_beg + replace_beg), as nginx's proxy_pass and HAProxy's set-path do.
  if [ -n "$PUSHPIN" ]; then
    free_port; PUSHPIN_PX_PORT=$PORT
    pushpin_conf pushpin-proxy "$PUSHPIN_PX_PORT" "*,path_beg=/v1/agents/up/run,replace_beg=/agent 127.0.0.1:$UP_PORT"
    pushpin_px_url="http://127.0.0.1:$PUSHPIN_PX_PORT/v1/agents/up/run"
    start_pushpin pushpin-proxy "$pushpin_px_url"
    px_peers+=(pushpin-proxy)
  fi

  # agate as the proxy: the issue's config, plus the pool size nginx gets.
  px_names=(agate-proxy)
  [ "$BENCH_PROXY_PASS" = 1 ] && px_names+=(agate-proxy-pass)
  for n in "${px_names[@]}"; do
    v=strict; [ "$n" = agate-proxy-pass ] && v=pass
    proxy_agent_yaml "http://127.0.0.1:$UP_PORT/agent" "$v" >"$tmp/$n.yaml"
    start_agate "$n" /dev/null AGATE_CONFIG="$tmp/$n.yaml"
  done

  for n in "${px_names[@]}" "${px_peers[@]}"; do
    case $n in
      nginx-proxy) u=$nginx_px_url ;;
      haproxy-proxy) u=$haproxy_px_url ;;
      pushpin-proxy) u=$pushpin_px_url ;;
      *) u="http://127.0.0.1:${MAINPORT[$n]}/v1/agents/up/run" ;;
    esac
    status=$(post "$u" "$tmp/$n.body" "$tmp/$n.headers")
    w=$(wire_bytes "$u")
    nch=$(grep -c $'^[0-9a-fA-F]\\+\r$' "$tmp/wire.b" || true)
    check "$n answers 200 text/event-stream ($status), body byte-identical to the upstream's ($n_events events)" \
      '[[ $status == "200 text/event-stream"* ]] && cmp -s "$tmp/$n.body" "$body"'
    if [[ $n != agate* ]]; then
      echo "  info  $n on the wire $w bytes ($(grep -qi '^transfer-encoding: *chunked' "$tmp/$n.headers" && echo chunked || echo Content-Length))"
    else
      check "$n uses chunked framing ($w bytes on the wire, $nch chunk-size lines)" 'grep -qi "^transfer-encoding: *chunked" "$tmp/$n.headers"'
    fi
    UPSTREAM_OF["$n"]=upstream
    add_row "$n" "$(case $n in agate-proxy) echo "agate proxy (strict)" ;; agate-proxy-pass) echo "agate proxy (pass)" ;; haproxy-proxy) echo "haproxy proxy" ;; pushpin-proxy) echo "pushpin proxy" ;; *) echo "nginx proxy" ;; esac)" \
      bench/echo.lua "$u" "$w"
  done
}
# proxy_agent_yaml URL VALIDATION: the config of an agate whose agent "up" proxies to
# URL (also the baseline case's proxy rows).
proxy_agent_yaml() {
  cat <<EOF
agents:
  up:
    type: proxy
    endpoints: [$1]
    validation: $2
    pool: {max_idle: $BENCH_PROXY_POOL}
EOF
}

proxy_table() {
  local n a b
  echo "  [proxy] agate vs nginx as a proxy in front of the same upstream nginx (ups: the upstream's CPU)"
  header ups
  for n in agate-proxy nginx-proxy agate-proxy-pass haproxy-proxy pushpin-proxy; do has_row $n && row "$1" $n ups; done
  versus "$1" agate-proxy nginx-proxy
  if has_row haproxy-proxy; then versus "$1" agate-proxy haproxy-proxy; fi
  if has_row pushpin-proxy; then versus "$1" agate-proxy pushpin-proxy; fi
  if has_row agate-proxy-pass; then
    versus "$1" agate-proxy-pass nginx-proxy
    versus "$1" agate-proxy agate-proxy-pass
  fi
  # Per response, including the upstream's share.
  a=$(awk -v a="${USREQ[$1:agate-proxy]}" -v b="${UPSREQ[$1:agate-proxy]}" 'BEGIN{print a+b}')
  b=$(awk -v a="${USREQ[$1:nginx-proxy]}" -v b="${UPSREQ[$1:nginx-proxy]}" 'BEGIN{print a+b}')
  printf '  %-26s %sx (agate %.1f us, nginx %.1f us: proxy + upstream)\n' "CPU per response incl. ups:" "$(ratio "$a" "$b")" "$a" "$b"
}

proxy_pairs() { add_comparison nginx-proxy agate-proxy; }

proxy_targets() {
  local n att fl rt served err rr pr
  for n in agate-proxy agate-proxy-pass; do
    has_row $n || continue
    att=$(metric "$n" 'agate_upstream_attempts_total')
    fl=$(metric "$n" 'agate_upstream_failures_total')
    rt=$(metric "$n" 'agate_upstream_retries_total')
    served=$(metric "$n" 'agate_http_requests_total{listener="main",route="run",method="POST",code="2xx"}')
    err=$(metric "$n" 'agate_runs_ended_total{agent="up",transport="sse",outcome="error"}' 'agate_runs_ended_total{agent="up",transport="sse",outcome="cut"}')
    echo "  info  $n: $served runs answered 2xx, $att upstream attempts, $fl failures, $rt retries, $err runs ended in error/cut"
    if [ "$fl" != 0 ] || [ "$rt" != 0 ] || [ "$err" != 0 ]; then echo "  FAIL  $n: upstream failures, retries or failed runs"; fail=1; fi
  done
  rr=$(ratio "${RPS[mean:agate-proxy]}" "${RPS[mean:nginx-proxy]}")
  pr=$(ratio "${P99[mean:agate-proxy]}" "${P99[mean:nginx-proxy]}")
  echo "  issue 4 target, agate proxy (validation strict) >= 1.3x nginx's runs/s at no worse p99: req/s ${rr}x, p99 ${pr}x: $(awk -v r="$rr" -v p="$pr" 'BEGIN { print (r >= 1.3 && p <= 1) ? "met" : "NOT met" }')"
  paired_verdict agate-proxy ratio 1.3
}
