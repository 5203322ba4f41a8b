# shellcheck shell=bash disable=SC2016,SC2034,SC2153,SC2154 # check strings are eval'd; globals shared with bench/run.sh
# bench/cases/streams.sh: many slow streams held open at once (the brief's "tens of
# thousands of slow token streams"; figures, no target). build/sseload (bench/sseload.c:
# epoll client) opens $BENCH_STREAMS SSE runs, each paced at one event per
# $BENCH_STREAM_INTERVAL_MS ms, holds them $BENCH_STREAM_HOLD s and leaves mid-run.
# Rows: agate serving its echo agent itself, and agate, nginx (proxy_buffering off),
# HAProxy and Pushpin as proxies in front of one agate echo agent that is the source
# of every stream. Each row starts a fresh server, so its memory before the streams
# is a clean start and what it holds after is theirs; reported: its resident memory
# before and while holding the streams (KiB per stream), its CPU per event, and the
# longest gap between two events of one stream. Checked: every stream opened and
# streamed at the pace asked for (a peer that cannot is a warning, not a failed
# check), and once the clients left, agate freed every stream and (as a proxy)
# cancelled every upstream run. Then the same servers (fresh again) hold as many idle
# keep-alive connections, each after one unpaced echo run (build/sseload -k): memory
# per idle connection right after and $BENCH_IDLE_HOLD s later. Run after the wrk
# rounds, BENCH_ROUNDS times. Pushpin holds $BENCH_PUSHPIN_STREAMS streams, not
# $BENCH_STREAMS (it runs out of CPU near 1200 on 2 CPUs; the row says what
# $BENCH_STREAMS would need), and its rows open $BENCH_PUSHPIN_RAMP connections a second.

declare -A STREAM_KIB STREAM_US
rss_kib() {  # rss_kib PID...: resident memory of those processes, KiB
  local p t=0 v
  for p in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || v=0
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
# wait_streams NAME: until that agate has no SSE stream in progress (10 s at most);
# prints how many remain.
wait_streams() {
  local n
  for _ in $(seq 100); do
    n=$(metric "$1" 'agate_streams{transport="sse"}')
    [ "${n:-0}" = 0 ] && break
    sleep 0.1
  done
  echo "${n:-0}"
}
# streams_row NAME URL-PORT AGENT: sseload against that server; prints the row.
# shellcheck disable=SC2086 # pid lists are split into words on purpose
streams_row() {
  local name=$1 port=$2 agent=$3 n=${4:-$BENCH_STREAMS} ramp=${5:-} pids_ r0 r1 t0 t1 line kv_ ok ev hold_ev rate lag err
  pids_=$(server_pids "$name")
  # One request first, so that what start-up and a first request allocate is
  # counted before, not per stream.
  curl -s -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary "@$BODY_FILE" \
    "http://127.0.0.1:$port/v1/agents/$agent/run" || true
  sleep 0.5
  r0=$(rss_kib $pids_)
  timeout -k 5 $((BENCH_STREAM_HOLD + 150)) build/sseload -p "$port" -a "$agent" -c "$n" ${ramp:+-r "$ramp"} \
    -w $(( (BENCH_STREAM_HOLD + 60) * 1000 / BENCH_STREAM_INTERVAL_MS )) -i "$BENCH_STREAM_INTERVAL_MS" \
    -d "$BENCH_STREAM_HOLD" >"$tmp/sseload-$name.out" 2>"$tmp/sseload-$name.err" &
  local lp=$!
  for _ in $(seq 1500); do grep -q '^READY' "$tmp/sseload-$name.out" 2>/dev/null && break; kill -0 "$lp" 2>/dev/null || break; sleep 0.1; done
  sleep 1   # the last streams' first events settle
  r1=$(rss_kib $pids_)
  t0=$(pid_ticks $pids_)
  wait "$lp" || true
  t1=$(pid_ticks $pids_)
  line=$(grep '^SUMMARY' "$tmp/sseload-$name.out" || true)
  if [ -z "$line" ]; then
    echo "  FAIL  $name: sseload did not finish: $(head -c 300 "$tmp/sseload-$name.err")"; fail=1; return
  fi
  kv_() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$line"; }
  ok=$(kv_ ok); ev=$(kv_ events); hold_ev=$(kv_ hold_events); rate=$(kv_ ev_per_s); lag=$(kv_ lag_max_ms); err=$(kv_ errors)
  printf '  %-34s %7s %9s %9s %10s %8s %9s %9s %8s\n' "$name" "$ok" \
    "$(awk -v k="$r0" 'BEGIN { printf "%.1f", k / 1024 }')" "$(awk -v k="$r1" 'BEGIN { printf "%.1f", k / 1024 }')" \
    "$(awk -v a="$r0" -v b="$r1" -v n="$ok" 'BEGIN { printf "%.2f", n ? (b - a) / n : 0 }')" "$rate" \
    "$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v s="$BENCH_STREAM_HOLD" 'BEGIN { printf "%.0f", 100 * t / hz / s }')" \
    "$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v e="$hold_ev" 'BEGIN { printf "%.2f", e ? t / hz * 1e6 / e : 0 }')" "$lag"
  STREAM_KIB[$name]=$(awk -v a="$r0" -v b="$r1" -v n="$ok" 'BEGIN { printf "%.2f", n ? (b - a) / n : 0 }')
  STREAM_US[$name]=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v e="$hold_ev" 'BEGIN { printf "%.2f", e ? t / hz * 1e6 / e : 0 }')
  # Every stream opened and streamed at the pace asked for, nothing failed. That is
  # agate's check; a peer that cannot is a finding about the peer (its row's memory
  # and CPU figures then cover fewer streams), so it warns instead of failing.
  local want; want=$(( n * 1000 / BENCH_STREAM_INTERVAL_MS ))
  local held='[ "$ok" = "$n" ] && [ "$err" = 0 ] && awk -v r="$rate" -v w="$want" "BEGIN { exit !(r >= 0.9 * w) }"'
  if [[ $name == agate* ]]; then
    check "$name: all $n streams open and streaming ($ok), no errors ($err), $rate events/s of $want paced" "$held"
  elif ! eval "$held"; then
    echo "  warn  $name (a peer) did not hold them all: $ok of $n streams, $err errors, $rate events/s of $want paced; its per-stream figures are not comparable"
  fi
  check "$name: $ev events, at least one per stream" '[ "$ev" -ge "$n" ]'
}
# idle_row NAME PORT [INTERVAL-MS [RAMP]]: BENCH_STREAMS keep-alive connections, one
# 40-word echo run each (unpaced unless INTERVAL-MS), then left idle; resident memory
# right after and once the allocator's decay has run (BENCH_IDLE_HOLD s later).
# Prints the row.
# shellcheck disable=SC2086 # pid lists are split into words on purpose
idle_row() {
  local name=$1 port=$2 iv=${3:-0} ramp=${4:-} pids_ r0 r1 r2 line idle err
  pids_=$(server_pids "$name")
  curl -s -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary "@$BODY_FILE" \
    "http://127.0.0.1:$port/v1/agents/echo/run" || true
  sleep 0.5
  r0=$(rss_kib $pids_)
  timeout -k 5 $((BENCH_IDLE_HOLD + 150)) build/sseload -p "$port" -a echo -c "$BENCH_STREAMS" -w "$WORDS" -i "$iv" ${ramp:+-r "$ramp"} \
    -d "$BENCH_IDLE_HOLD" -k >"$tmp/idleload-$name.out" 2>"$tmp/idleload-$name.err" &
  local lp=$!
  for _ in $(seq 1500); do grep -q '^READY' "$tmp/idleload-$name.out" 2>/dev/null && break; kill -0 "$lp" 2>/dev/null || break; sleep 0.1; done
  sleep 0.5
  r1=$(rss_kib $pids_)
  sleep $((BENCH_IDLE_HOLD - 2))
  r2=$(rss_kib $pids_)
  wait "$lp" || true
  line=$(grep '^SUMMARY' "$tmp/idleload-$name.out" || true)
  if [ -z "$line" ]; then
    echo "  FAIL  $name: sseload -k did not finish: $(head -c 300 "$tmp/idleload-$name.err")"; fail=1; return
  fi
  idle=$(sed -n 's/.*\bidle=\([0-9]*\).*/\1/p' <<<"$line"); err=$(sed -n 's/.*\berrors=\([0-9]*\).*/\1/p' <<<"$line")
  printf '  %-34s %7s %9s %14s %16s\n' "$name" "$idle" "$(awk -v k="$r0" 'BEGIN { printf "%.1f", k / 1024 }')" \
    "$(awk -v a="$r0" -v b="$r1" -v n="$idle" 'BEGIN { printf "%.2f", n ? (b - a) / n : 0 }')" \
    "$(awk -v a="$r0" -v b="$r2" -v n="$idle" 'BEGIN { printf "%.2f", n ? (b - a) / n : 0 }')"
  if [[ $name == agate* ]]; then
    check "$name: all $BENCH_STREAMS runs answered and their connections still open, idle, ${BENCH_IDLE_HOLD}s later ($idle), no errors ($err)" \
      '[ "$idle" = "$BENCH_STREAMS" ] && [ "$err" = 0 ]'
  elif [ "$idle" != "$BENCH_STREAMS" ] || [ "$err" != 0 ]; then
    echo "  warn  $name: $idle of $BENCH_STREAMS connections idle at the end, $err errors ($(sort "$tmp/idleload-$name.err" | uniq -c | sort -rn | head -1 | sed 's/^ *//')): its KiB/conn is not comparable"
  fi
}
streams_run() {
  local r left uleft up_port
  [ -x build/sseload ] || make --no-print-directory build/sseload >/dev/null || die "cannot build build/sseload"
  echo
  echo "== streams: $BENCH_STREAMS SSE streams held open at once, one event per ${BENCH_STREAM_INTERVAL_MS} ms each, held ${BENCH_STREAM_HOLD}s; build/sseload, $BENCH_ROUNDS rounds"
  echo "   source: an agate echo agent (paced); each row a fresh server, measured from one request after start-up"
  start_agate streams-up /dev/null AGATE_MAX_CONNECTIONS=$((BENCH_STREAMS + 1000))
  up_port=${MAINPORT[streams-up]}
  cat >"$tmp/agate-sproxy.yaml" <<EOF
agents:
  echo:
    type: proxy
    endpoints: [http://127.0.0.1:$up_port/v1/agents/echo/run]
    validation: strict
EOF
  free_port; NGINX_S_PORT=$PORT
  { nginx_conf nginx-sproxy $(( BENCH_STREAMS + 1000 ))
    cat <<EOF
    upstream stream_src {
        server 127.0.0.1:$up_port;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_S_PORT reuseport;
        location / {
            proxy_pass http://stream_src;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
  } >"$tmp/nginx-sproxy.conf"
  if [ -n "$HAPROXY" ]; then
    free_port; HAPROXY_S_PORT=$PORT
    { haproxy_conf; cat <<EOF
frontend sproxy
    bind 127.0.0.1:$HAPROXY_S_PORT
    default_backend stream_src
backend stream_src
    server up 127.0.0.1:$up_port
EOF
    } >"$tmp/haproxy-sproxy.cfg"
  fi
  if [ -n "$PUSHPIN" ]; then
    free_port; PUSHPIN_S_PORT=$PORT
    pushpin_conf pushpin-sproxy "$PUSHPIN_S_PORT" "* 127.0.0.1:$up_port"
  fi
  printf '  %-34s %7s %9s %9s %10s %8s %9s %9s %8s\n' row streams "MiB idle" "MiB held" "KiB/stream" "events/s" "srv cpu%" "us/event" "gap_ms"
  for r in $(seq "$BENCH_ROUNDS"); do
    echo "  -- round $r"
    start_agate agate-sdirect /dev/null AGATE_MAX_CONNECTIONS=$((BENCH_STREAMS + 1000))
    streams_row agate-sdirect "${MAINPORT[agate-sdirect]}" echo
    left=$(wait_streams agate-sdirect)
    check "agate-sdirect: every stream freed once its client left ($left left)" '[ "$left" = 0 ]'
    stop_server agate-sdirect
    start_agate agate-sproxy /dev/null AGATE_MAX_CONNECTIONS=$((BENCH_STREAMS + 1000)) AGATE_CONFIG="$tmp/agate-sproxy.yaml"
    streams_row agate-sproxy "${MAINPORT[agate-sproxy]}" echo
    left=$(wait_streams agate-sproxy); uleft=$(wait_streams streams-up)
    check "agate-sproxy: every stream freed once its client left ($left left), and its upstream run cancelled ($uleft left at the source)" \
      '[ "$left" = 0 ] && [ "$uleft" = 0 ]'
    stop_server agate-sproxy
    start_nginx nginx-sproxy "http://127.0.0.1:$NGINX_S_PORT/health/live"
    streams_row nginx-sproxy "$NGINX_S_PORT" echo
    echo "  info  nginx-sproxy: $(wait_streams streams-up) runs left at the source after its clients left"
    stop_server nginx-sproxy
    if [ -n "$HAPROXY" ]; then
      start_haproxy haproxy-sproxy "http://127.0.0.1:$HAPROXY_S_PORT/health/live"
      streams_row haproxy-sproxy "$HAPROXY_S_PORT" echo
      echo "  info  haproxy-sproxy: $(wait_streams streams-up) runs left at the source after its clients left"
      stop_server haproxy-sproxy
    fi
    if [ -n "$PUSHPIN" ]; then
      start_pushpin pushpin-sproxy "http://127.0.0.1:$PUSHPIN_S_PORT/health/live"
      streams_row pushpin-sproxy "$PUSHPIN_S_PORT" echo "$BENCH_PUSHPIN_STREAMS" "$BENCH_PUSHPIN_RAMP"
      echo "  info  pushpin-sproxy: $(wait_streams streams-up) runs left at the source after its clients left"
      if [ "$BENCH_PUSHPIN_STREAMS" != "$BENCH_STREAMS" ]; then
        echo "  info  pushpin-sproxy held $BENCH_PUSHPIN_STREAMS streams (BENCH_PUSHPIN_STREAMS), not $BENCH_STREAMS: at ${STREAM_US[pushpin-sproxy]:-?} us of CPU per event,"
        echo "        $BENCH_STREAMS streams ($(( BENCH_STREAMS * 1000 / BENCH_STREAM_INTERVAL_MS )) events/s) need $(awk -v u="${STREAM_US[pushpin-sproxy]:-0}" -v e=$(( BENCH_STREAMS * 1000 / BENCH_STREAM_INTERVAL_MS )) 'BEGIN { printf "%.1f", u * e / 1e6 }') CPUs; this machine has $ncpu (past its CPU it answers 502 to the streams it cannot start)"
      fi
      stop_pushpin pushpin-sproxy
    fi
  done
  echo "   (MiB: resident memory of the server's processes, nginx master and workers summed, Pushpin's five summed; KiB/stream: held minus idle,"
  echo "    over the streams; srv cpu%: % of one CPU while holding them; us/event: server CPU per event relayed)"
  echo
  echo "== idle keep-alive: $BENCH_STREAMS connections, one $WORDS-word echo run each, then idle ${BENCH_IDLE_HOLD}s; build/sseload -k"
  printf '  %-34s %7s %9s %14s %16s\n' row "idle" "MiB before" "KiB/conn after" "KiB/conn ${BENCH_IDLE_HOLD}s later"
  for r in $(seq "$BENCH_ROUNDS"); do
    echo "  -- round $r"
    start_agate agate-sdirect /dev/null AGATE_MAX_CONNECTIONS=$((BENCH_STREAMS + 1000))
    idle_row agate-sdirect "${MAINPORT[agate-sdirect]}"
    stop_server agate-sdirect
    start_agate agate-sproxy /dev/null AGATE_MAX_CONNECTIONS=$((BENCH_STREAMS + 1000)) AGATE_CONFIG="$tmp/agate-sproxy.yaml"
    idle_row agate-sproxy "${MAINPORT[agate-sproxy]}"
    stop_server agate-sproxy
    start_nginx nginx-sproxy "http://127.0.0.1:$NGINX_S_PORT/health/live"
    idle_row nginx-sproxy "$NGINX_S_PORT"
    stop_server nginx-sproxy
    if [ -n "$HAPROXY" ]; then
      start_haproxy haproxy-sproxy "http://127.0.0.1:$HAPROXY_S_PORT/health/live"
      idle_row haproxy-sproxy "$HAPROXY_S_PORT"
      stop_server haproxy-sproxy
    fi
    if [ -n "$PUSHPIN" ]; then
      start_pushpin pushpin-sproxy "http://127.0.0.1:$PUSHPIN_S_PORT/health/live"
      # Runs paced at 1 ms: an unpaced run reaches Pushpin whole and it answers with
      # Content-Length, which sseload cannot read as keep-alive (chunked or
      # close-delimited only). Opened BENCH_PUSHPIN_RAMP a second.
      idle_row pushpin-sproxy "$PUSHPIN_S_PORT" 1 "$BENCH_PUSHPIN_RAMP"
      stop_pushpin pushpin-sproxy
    fi
  done
  [ -n "$PUSHPIN" ] && echo "   (pushpin-sproxy: runs paced at 1 ms, so that it answers chunked; opened $BENCH_PUSHPIN_RAMP a second)"
  echo "   (KiB/conn: resident memory over the idle connections, against before them: right after the last"
  echo "    response, and ${BENCH_IDLE_HOLD}s later, once agate has trimmed them (2 s) and the allocators have given pages back)"
}
