#!/usr/bin/env bash
# bench/run.sh: agate against nginx on this machine, in the same run (`make bench`
# runs this). Seven cases, all on by default (BENCH_CASES="echo obs proxy cache ws auth streams"):
#
#   echo   agate's echo agent against nginx serving the same bytes as a static file.
#          agate: POST /v1/agents/echo/run, a 40-word user message
#          (bench/echo-body.json, sent by bench/echo.lua): 200 text/event-stream,
#          chunked, 44 SSE events. nginx: GET of a static file holding the exact SSE
#          body agate sent for that request (nginx answers POST to a static file with
#          405), sendfile, keep-alive; bench/static.lua. Two server blocks: stock
#          (open/fstat/sendfile/close per request) and, with BENCH_NGINX_OFC=1
#          (default), the same plus open_file_cache.
#   obs    what metrics and request logs cost (issue 3): the same echo request
#          against agates that differ only in observability: metrics off + logs
#          off ("bare"), metrics on + logs off (the echo case's agate row), metrics
#          on + logs on written to a file on disk, the same with
#          log.sample=$BENCH_LOG_SAMPLE, and (BENCH_LOG_NULL=1) logs on written to
#          /dev/null. Ratios against "bare".
#   proxy  agate as a proxy (issue 4) against nginx as a proxy, in front of the same
#          upstream: a third nginx that answers POST /agent with the recorded 44-event
#          SSE body (a static file, Content-Length). agate: an agent of type proxy,
#          validation strict, pool.max_idle=$BENCH_PROXY_POOL; nginx: proxy_pass to an
#          upstream block with keepalive $BENCH_PROXY_POOL, HTTP/1.1, proxy_buffering
#          off. wrk POSTs the RunAgentInput to /v1/agents/up/run on both. With
#          BENCH_PROXY_PASS=1 (default) a second agate with validation: pass too.
#          The upstream nginx uses CPU on the same CPUs; its CPU is shown apart.
#   cache  agate answering from its response cache (issue 7) against nginx serving the
#          same bytes as a static file. agate: a proxy agent with cache.ttl 1h in front
#          of an nginx serving the recorded stream, asked once (MISS) before timing, so
#          every timed request is a HIT (replayed with the request's run ids and fresh
#          message ids). nginx: GET of a static file holding one HIT's body. The
#          upstream is idle while timing (checked: one upstream attempt in total).
#   ws     AG-UI over WebSocket (issue 5), agate's echo agent driven by build/wsload
#          (bench/wsload.c: epoll client, runs/s and send-to-RUN_FINISHED latency) in
#          two shapes: many runs over few connections ($BENCH_WS_CONNS connections x
#          $BENCH_WS_RUNS runs in flight, the same 40-word message as the echo case) and
#          one run per connection (upgrade, run, close; $BENCH_WS_ONE_CONNS at a time).
#          No nginx counterpart; run after the wrk rounds, BENCH_ROUNDS times each.
#   streams many slow streams held open at once (the brief's "tens of thousands of slow
#          token streams"): build/sseload (bench/sseload.c: epoll client) opens
#          $BENCH_STREAMS SSE runs, each paced at one event per
#          $BENCH_STREAM_INTERVAL_MS ms, holds them $BENCH_STREAM_HOLD s and leaves
#          mid-run. Rows: agate serving its echo agent itself, and agate, nginx
#          (proxy_buffering off), HAProxy and Pushpin as proxies in front of one agate
#          echo agent that is the source of every stream. Each row starts a fresh server;
#          reported: its resident memory before and while holding the streams (KiB per
#          stream), its CPU per event, and the longest gap between two events of one
#          stream. Checked: every stream opened and streamed at the pace asked for
#          (a peer that cannot is a warning, not a failed check), and once the
#          clients left, agate freed every stream and (as a proxy) cancelled every
#          upstream run. Then the same servers (fresh again) hold
#          as many idle keep-alive connections, each after one unpaced echo run
#          (build/sseload -k): memory per idle connection right after and
#          $BENCH_IDLE_HOLD s later. Run after the wrk rounds, BENCH_ROUNDS times.
#   HAProxy (BENCH_HAPROXY=1, the default) joins the echo, proxy and cache cases as a
#          second peer: in echo and cache it answers with the same bytes from memory
#          (`http-request return ... file`, loaded at start-up: no file I/O per
#          request), in proxy it is the proxy (http-reuse always, keep-alive to the
#          same upstream). One process, one thread per CPU pinned, no logs. The
#          issues' targets are against nginx; the HAProxy ratios are information.
#   Pushpin (BENCH_PUSHPIN=1, the default) joins the proxy and streams cases as a third
#          peer (Debian's pushpin 1.36: a runner starting condure (client HTTP),
#          pushpin-proxy and pushpin-handler, which talk over ZeroMQ IPC). Origin
#          requests go through zurl, which this script runs itself: the runner's own
#          zurl config denies 127.*, so loopback origins fail. Config: Debian's
#          pushpin.conf with the run and log dirs in the temp dir, listening on
#          127.0.0.1 only, log_level 0 (zurl --loglevel=0), the handler's TCP ports
#          moved to free ones; routes: one line to the upstream (proxy: path
#          /v1/agents/up/run rewritten to /agent with path_beg/replace_beg, as nginx
#          and HAProxy rewrite it). Its CPU and memory are summed over the runner,
#          condure, pushpin-proxy, pushpin-handler and zurl. Information only: no
#          target is against Pushpin. In the streams case it holds
#          $BENCH_PUSHPIN_STREAMS streams, not $BENCH_STREAMS (it runs out of CPU
#          near 1200 on 2 CPUs; the row says what $BENCH_STREAMS would need), and its
#          rows open $BENCH_PUSHPIN_RAMP connections a second.
#   auth   access control and rate limiting on against off (issue 6): the echo case's
#          agate (no auth, no rules) against one with an API key required on every
#          request (bench/echo_auth.lua sends it: a SHA-256 and constant-time compare
#          per request) and two rate-limit rules that never refuse: per API key,
#          1e6/s with burst 1e6 and 100000 concurrent runs, and one global per-agent
#          rule at 1e7/s (every request of every shard a CAS on the same cell). The
#          target is req/s within 5 % of off. Checked: a request without the key is 401.
#
# How it is measured
#   wrk -t2 -c64 -d${BENCH_SECONDS}s --latency, keep-alive, loopback only, after a
#   ${BENCH_WARMUP}s warm-up per row. All rows of all cases, for BENCH_ROUNDS rounds,
#   interleaved; even rounds run the rows in reverse order, so slow drift in machine
#   load hits every row about equally. About 3 min 50 s with the defaults.
#   Then each target's comparison is measured again in pairs (BENCH_PAIRS pairs of
#   BENCH_PAIR_SECONDS slices, wrk alternating between the two servers of the
#   comparison, order reversed every other pair; pair p of every comparison before
#   pair p+1 of any): the median of the per-pair ratios
#   with its distribution-free confidence interval (97.9 % for 10 pairs), and the mean.
#   Slow drift cancels within a pair, so this resolves the 3 % and 5 % targets better
#   than the ratio of two row means does.
#   Fairness: nginx runs with `access_log off`; agate rows other than the obs case's
#   log rows run with AGATE_LOG_REQUESTS=false. Every server gets one worker/shard
#   per CPU, pinned (agate pins its shards; nginx gets worker_cpu_affinity auto),
#   with SO_REUSEPORT listeners. wrk runs on the same CPUs as the servers.
#   The agate binary is copied to the temp dir first, so a rebuild of build/agate
#   during the run changes nothing.
#   CPU: each row reports the CPU time the server used (as % of one CPU and as
#   microseconds per response, kernel time included), wrk's CPU, for proxy rows the
#   upstream nginx's CPU, and the CPU used by everything else on the machine
#   ("other"): a row with a large "other" was measured on a busy machine and is not
#   comparable. On an idle machine "other" is still ~5-10 %: softirq time charged
#   to the idle task (no process) and kernel threads; rows above 25 % get a '*'.
#
# Environment (all optional)
#   BENCH_CASES="echo obs proxy cache ws auth"  BENCH_SECONDS=10  BENCH_WARMUP=2  BENCH_ROUNDS=2
#   BENCH_CONNECTIONS=64  BENCH_THREADS=2  BENCH_SHARDS=$(nproc)  BENCH_NGINX_OFC=1
#   BENCH_LOG_SAMPLE=0.1 (obs case: log.sample of the sampled-log row; "" = no row)
#   BENCH_LOG_NULL=1 (obs case: a row with logs on written to /dev/null, which
#     separates formatting and the ring from the write into the page cache; 0: no row)
#   BENCH_PROXY_PASS=1 (proxy case: also agate with validation: pass)
#   BENCH_STREAMS=8000 (streams case; at most half the fd limit minus 1000: a proxy
#     holds two fds per stream)  BENCH_STREAM_INTERVAL_MS=100  BENCH_STREAM_HOLD=10
#   BENCH_IDLE_HOLD=14 (streams case, idle keep-alive part: seconds held idle; jemalloc
#     gives freed pages back over 10 s)
#   BENCH_HAPROXY=1 (HAProxy rows in the echo, proxy and cache cases; 0: none)
#   BENCH_PUSHPIN=1 (Pushpin rows in the proxy and streams cases; 0: none. Needs the
#     Debian packages pushpin, condure and zurl: deploy/install-deps.sh bench)
#   BENCH_PUSHPIN_STREAMS=1000 (streams case: the streams Pushpin holds, at most
#     BENCH_STREAMS; it needs ~120-200 us of CPU per event, so 2 CPUs carry ~1200
#     streams at 10 events/s; past that it answers 502 to the streams it cannot start)
#   BENCH_PUSHPIN_RAMP=500 (streams case: connections Pushpin's rows open per second;
#     at sseload's 2000/s, 8000 idle-row runs overload it into 502s)
#   BENCH_PROXY_POOL=64 (agate pool.max_idle and nginx upstream keepalive)
#   BENCH_PAIRS=10 (pairs per target comparison after the rounds; 0: none)
#   BENCH_PAIR_SECONDS=3 (length of one slice of a pair)
#   BENCH_PERF="" (row names, e.g. "agate-log agate-proxy": after the timed rounds,
#     one extra untimed wrk run per named row with `perf record --call-graph dwarf`
#     on the server (about 30 s per row with the report);
#     the top of `perf report` is printed. Needs perf.)
#   BENCH_PORT=18480 (first port tried; the next free ones are used)
#   BENCH_NGINX_AFFINITY=auto (worker_cpu_affinity; "off" to let workers float)
#   BENCH_WAIT_IDLE=0 (wait up to this many seconds for < 10 % CPU busy first)
#   AGATE_BIN=build/agate  BENCH_KEEP=1 (keep the temp dir with configs and logs)
#
# Exit status: 0 when every check passed (correct agate body, nginx serves the
# same bytes, every proxy relays the upstream's bytes, no non-2xx responses,
# whole responses read, no upstream failures, no log lines lost), 1 otherwise.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCH_CASES=${BENCH_CASES:-echo obs proxy cache ws auth streams}
BENCH_WS_CONNS=${BENCH_WS_CONNS:-4}
BENCH_WS_RUNS=${BENCH_WS_RUNS:-16}
BENCH_WS_ONE_CONNS=${BENCH_WS_ONE_CONNS:-32}
# A proxy holds two fds per stream: stay under the fd limit every server here has.
BENCH_STREAMS=${BENCH_STREAMS:-$(( $(ulimit -n) / 2 - 1000 < 8000 ? $(ulimit -n) / 2 - 1000 : 8000 ))}
BENCH_STREAM_INTERVAL_MS=${BENCH_STREAM_INTERVAL_MS:-100}
BENCH_STREAM_HOLD=${BENCH_STREAM_HOLD:-10}
BENCH_IDLE_HOLD=${BENCH_IDLE_HOLD:-14}
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_ROUNDS=${BENCH_ROUNDS:-2}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-64}
BENCH_THREADS=${BENCH_THREADS:-2}
BENCH_SHARDS=${BENCH_SHARDS:-$(nproc)}
BENCH_NGINX_OFC=${BENCH_NGINX_OFC:-1}
BENCH_LOG_SAMPLE=${BENCH_LOG_SAMPLE-0.1}
BENCH_LOG_NULL=${BENCH_LOG_NULL:-1}
BENCH_PROXY_PASS=${BENCH_PROXY_PASS:-1}
BENCH_PROXY_POOL=${BENCH_PROXY_POOL:-64}
BENCH_HAPROXY=${BENCH_HAPROXY:-1}
BENCH_PUSHPIN=${BENCH_PUSHPIN:-1}
BENCH_PUSHPIN_STREAMS=${BENCH_PUSHPIN_STREAMS:-$(( BENCH_STREAMS < 1000 ? BENCH_STREAMS : 1000 ))}
BENCH_PUSHPIN_RAMP=${BENCH_PUSHPIN_RAMP:-500}
BENCH_PAIRS=${BENCH_PAIRS:-10}
BENCH_PAIR_SECONDS=${BENCH_PAIR_SECONDS:-3}
BENCH_PERF=${BENCH_PERF:-}
BENCH_PORT=${BENCH_PORT:-18480}
BENCH_NGINX_AFFINITY=${BENCH_NGINX_AFFINITY:-auto}
AGATE_BIN=${AGATE_BIN:-build/agate}
BODY_FILE=bench/echo-body.json
WORDS=40

die() { echo "bench: $*" >&2; exit 1; }
has_case() { [[ " $BENCH_CASES " == *" $1 "* ]]; }
for c in $BENCH_CASES; do
  case $c in echo|obs|proxy|cache|ws|auth|streams) ;; *) die "BENCH_CASES: unknown case '$c' (echo, obs, proxy, cache, ws, auth, streams)" ;; esac
done
[ -n "${BENCH_CASES// /}" ] || die "BENCH_CASES is empty"

for tool in wrk nginx curl awk; do
  command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null 2>&1 ||
    die "$tool not found; run: deploy/install-deps.sh bench"
done
NGINX=$(PATH=$PATH:/usr/sbin:/sbin command -v nginx)
HAPROXY=
if [ "$BENCH_HAPROXY" = 1 ]; then
  HAPROXY=$(PATH=$PATH:/usr/sbin:/sbin command -v haproxy) ||
    die "haproxy not found; run: deploy/install-deps.sh bench (or BENCH_HAPROXY=0)"
fi
PUSHPIN= ZURL= PUSHPIN_CONF=
if [ "$BENCH_PUSHPIN" = 1 ] && { has_case proxy || has_case streams; }; then
  for tool in pushpin zurl condure; do
    command -v "$tool" >/dev/null 2>&1 ||
      die "$tool not found; run: deploy/install-deps.sh bench (Debian 12: apt-get install pushpin condure zurl), or BENCH_PUSHPIN=0"
  done
  PUSHPIN=$(command -v pushpin) ZURL=$(command -v zurl)
  # Debian's pristine config (the one /etc/pushpin/pushpin.conf starts as), else /etc's.
  for f in /usr/share/pushpin/pushpin.conf.condure /etc/pushpin/pushpin.conf; do
    [ -f "$f" ] && { PUSHPIN_CONF=$f; break; }
  done
  [ -n "$PUSHPIN_CONF" ] || die "pushpin.conf not found (/usr/share/pushpin/pushpin.conf.condure, /etc/pushpin/pushpin.conf); reinstall pushpin, or BENCH_PUSHPIN=0"
fi
if [ -n "$BENCH_PERF" ] && ! command -v perf >/dev/null 2>&1; then
  die "BENCH_PERF needs perf (apt-get install linux-perf)"
fi
if [ ! -e "$AGATE_BIN" ]; then
  echo "bench: $AGATE_BIN missing, building it"
  make --no-print-directory build/agate
fi
[ -f "$BODY_FILE" ] || die "$BODY_FILE missing"

# --- processes and clean-up ---------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/agate-bench.XXXXXX")
chmod 755 "$tmp"
pids=()
WRK_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local p
  [ -n "${WRK_PID:-}" ] && kill -TERM "$WRK_PID" 2>/dev/null
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $tmp"; else rm -rf "$tmp"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A private copy of the binary: others may relink build/agate while we run. A copy
# taken mid-link fails --version; wait for the linker and copy again (up to 60 s).
AGATE=$tmp/agate
for i in $(seq 30); do
  if [ -s "$AGATE_BIN" ] && cp "$AGATE_BIN" "$AGATE" 2>/dev/null && chmod +x "$AGATE" &&
     timeout 5 "$AGATE" --version >/dev/null 2>&1; then
    break
  fi
  [ "$i" = 30 ] && die "$AGATE_BIN does not run (being rebuilt?)"
  sleep 2
done

# free_port: sets PORT to a loopback port nobody listens on, at or above
# $BENCH_PORT, not handed out before (a global, not $(...): it must remember).
used_ports=" "
free_port() {
  local p=$BENCH_PORT
  while [[ $used_ports == *" $p "* ]] || (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
    p=$((p + 1))
  done
  used_ports+="$p "
  PORT=$p
}

# wait_http URL PID WHAT [STDERR-FILE]: until URL answers 2xx (at most 10 s) or PID dies.
wait_http() {
  for _ in $(seq 100); do
    kill -0 "$2" 2>/dev/null || { [ -n "${4:-}" ] && cat "$4" >&2; die "$3 exited during start-up"; }
    curl -sf -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  die "$3 not ready at $1 after 10 s"
}

# Server processes by row name: SPID (agate pid or nginx master pid), MAINPORT,
# ADMINPORT (agate only).
declare -A SPID MAINPORT ADMINPORT

# start_agate NAME STDOUT [VAR=VALUE...]: starts an agate with the built-in defaults,
# request logs off unless a VAR says otherwise, plus the given environment.
start_agate() {
  local name=$1 out=$2; shift 2
  local mport aport
  free_port; mport=$PORT
  free_port; aport=$PORT
  # Start from the built-in defaults: no AGATE_* from the caller's environment.
  local unset_env=() v
  for v in $(compgen -e | grep '^AGATE_' || true); do unset_env+=(-u "$v"); done
  env "${unset_env[@]}" \
    AGATE_LISTEN="127.0.0.1:$mport" AGATE_ADMIN_LISTEN="127.0.0.1:$aport" \
    AGATE_SHARDS="$BENCH_SHARDS" AGATE_LOG_REQUESTS=false "$@" \
    "$AGATE" >"$out" 2>"$tmp/$name.stderr" &
  SPID[$name]=$!
  pids+=("$!")
  MAINPORT[$name]=$mport ADMINPORT[$name]=$aport
  wait_http "http://127.0.0.1:$aport/health/ready" "${SPID[$name]}" "agate ($name)" "$tmp/$name.stderr"
  curl -sf -o /dev/null "http://127.0.0.1:$mport/health/ready" || die "agate ($name) main port not ready"
}

# metric NAME PREFIX...: sum of the samples on that agate's /metrics whose series
# (name and labels) starts with one of the PREFIXes.
metric() {
  local n=$1; shift
  curl -sf "http://127.0.0.1:${ADMINPORT[$n]}/metrics" | awk -v pre="$*" '
    BEGIN { np = split(pre, p, " ") }
    !/^#/ { for (i = 1; i <= np; i++) if (index($1, p[i]) == 1) { s += $NF; break } }
    END { printf "%d", s }'
}

# nginx: one instance per role, all with the same process layout.
case "$BENCH_NGINX_AFFINITY" in auto) NGINX_AFFINITY=auto ;; off|none|"") NGINX_AFFINITY=off ;; *) NGINX_AFFINITY=$BENCH_NGINX_AFFINITY ;; esac
[ "$NGINX_AFFINITY" = off ] && NGINX_AFFINITY_LINE="" || NGINX_AFFINITY_LINE="worker_cpu_affinity $NGINX_AFFINITY;"
# nginx_conf NAME [WORKER_CONNECTIONS]: prints the common part of an nginx.conf up
# to "http {"; the caller adds the server blocks and the closing brace.
nginx_conf() {
  mkdir -p "$tmp/$1-tmp"
  [ "$(id -u)" = 0 ] && echo "user root;"   # workers must read $tmp; as non-root the directive is ignored
  cat <<EOF
worker_processes $(nproc);
$NGINX_AFFINITY_LINE
pid $tmp/$1.pid;
error_log $tmp/$1-error.log warn;
events { worker_connections ${2:-4096}; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 100000;
    client_body_temp_path $tmp/$1-tmp/body;
    proxy_temp_path $tmp/$1-tmp/proxy;
    fastcgi_temp_path $tmp/$1-tmp/fastcgi;
    uwsgi_temp_path $tmp/$1-tmp/uwsgi;
    scgi_temp_path $tmp/$1-tmp/scgi;
    types { }
    default_type text/event-stream;
EOF
}
# start_nginx NAME READY-URL: runs nginx with $tmp/NAME.conf; SPID[NAME] = master.
start_nginx() {
  "$NGINX" -t -q -e "$tmp/$1-error.log" -p "$tmp" -c "$tmp/$1.conf" -g 'daemon off;' ||
    { cat "$tmp/$1-error.log" >&2; die "nginx ($1) config test failed"; }
  "$NGINX" -e "$tmp/$1-error.log" -p "$tmp" -c "$tmp/$1.conf" -g 'daemon off;' &
  SPID[$1]=$!
  pids+=("$!")
  wait_http "$2" "${SPID[$1]}" "nginx ($1)" "$tmp/$1-error.log"
}

# haproxy_conf: the common part of a haproxy.cfg (global and defaults); the
# caller adds its frontends and backends. Threads pinned one per CPU, as nginx's
# workers; no log lines are configured, as nginx has access_log off. maxconn
# stays under the fd limit (haproxy refuses to start when it cannot raise it).
haproxy_conf() {
  local n; n=$(nproc)
  cat <<EOF
global
    nbthread $n
    cpu-map auto:1/1-$n 0-$((n - 1))
    maxconn $(( $(ulimit -n) / 2 - 100 ))
defaults
    mode http
    timeout connect 5s
    timeout client 65s
    timeout server 65s
    timeout http-keep-alive 65s
    option http-keep-alive
    http-reuse always
EOF
}
# start_haproxy NAME READY-URL: runs haproxy -db with $tmp/NAME.cfg; SPID[NAME].
start_haproxy() {
  "$HAPROXY" -c -q -f "$tmp/$1.cfg" >"$tmp/$1.log" 2>&1 ||
    { cat "$tmp/$1.log" >&2; die "haproxy ($1) config check failed"; }
  "$HAPROXY" -db -f "$tmp/$1.cfg" >>"$tmp/$1.log" 2>&1 &
  SPID[$1]=$!
  pids+=("$!")
  wait_http "$2" "${SPID[$1]}" "haproxy ($1)" "$tmp/$1.log"
}
# haproxy_static NAME FILE: a haproxy answering every request with FILE's bytes
# (read once at start-up) as 200 text/event-stream; sets URL.
haproxy_static() {
  free_port
  { haproxy_conf; cat <<EOF
frontend static
    bind 127.0.0.1:$PORT
    http-request return status 200 content-type text/event-stream file $2
EOF
  } >"$tmp/$1.cfg"
  URL="http://127.0.0.1:$PORT/$(basename "$2")"
  start_haproxy "$1" "$URL"
}

# Pushpin: Debian's runner (`pushpin`) starts condure, pushpin-proxy and
# pushpin-handler; pushpin-proxy asks zurl for every origin request. The runner's
# own zurl config denies 127.* (loopback origins end in "error" after a timeout),
# so zurl is run here with its own config and pushpin-proxy pointed at it.
declare -A PPKIDS   # NAME -> the runner's children (condure, pushpin-proxy, pushpin-handler)
# pushpin_conf NAME PORT ROUTE: writes $tmp/NAME/{pushpin.conf,routes,zurl.conf} for a
# Pushpin on 127.0.0.1:PORT whose routes file is the one line ROUTE. Debian's
# pushpin.conf, with: run and log dirs here, log_level 0, the handler's TCP ports
# moved to free ones, and the [proxy] zurl specs on this instance's zurl.
pushpin_conf() {
  local d=$tmp/$1 p_push p_sub p_http p_cmd
  mkdir -p "$d/run" "$d/log"
  free_port; p_push=$PORT; free_port; p_sub=$PORT; free_port; p_http=$PORT; free_port; p_cmd=$PORT
  cat >"$d/zurl.conf" <<EOF
[General]
in_spec=ipc://$d/run/zurl-in
in_stream_spec=ipc://$d/run/zurl-in-stream
out_spec=ipc://$d/run/zurl-out
defpolicy=allow
allow=
deny=
max_open_requests=$(( 2 * BENCH_STREAMS > 20000 ? 2 * BENCH_STREAMS : 20000 ))
buffer_size=200000
timeout=600
in_hwm=10000
out_hwm=10000
EOF
  printf '%s\n' "$3" >"$d/routes"
  awk -v d="$d" -v port="127.0.0.1:$2" -v prefix="agb$$-" -v p_push="$p_push" -v p_sub="$p_sub" \
      -v p_http="$p_http" -v p_cmd="$p_cmd" '
    BEGIN {
      v["global/rundir"] = d "/run"; v["global/ipc_prefix"] = prefix; v["global/port_offset"] = 0
      v["runner/services"] = "condure,pushpin-proxy,pushpin-handler"; v["runner/http_port"] = port
      v["runner/logdir"] = d "/log"; v["runner/log_level"] = 0
      v["proxy/routesfile"] = d "/routes"; v["proxy/updates_check"] = "off"
      v["handler/push_in_spec"] = "tcp://127.0.0.1:" p_push; v["handler/push_in_sub_specs"] = "tcp://127.0.0.1:" p_sub
      v["handler/push_in_http_port"] = p_http; v["handler/command_spec"] = "tcp://127.0.0.1:" p_cmd
    }
    /^\[[a-z]+\]/ {
      sec = substr($0, 2, index($0, "]") - 2); print
      if (sec == "proxy") {   # this instance'"'"'s zurl, not /var/run/zurl (internal.conf)
        print "zurl_out_specs=ipc://" d "/run/zurl-in"
        print "zurl_out_stream_specs=ipc://" d "/run/zurl-in-stream"
        print "zurl_in_specs=ipc://" d "/run/zurl-out"
      }
      next
    }
    /^[a-z_]+=/ {
      k = sec "/" substr($0, 1, index($0, "=") - 1)
      if (k in v) { print substr(k, index(k, "/") + 1) "=" v[k]; seen[k] = 1; next }
    }
    { print }
    END { for (k in v) if (!(k in seen)) { print "missing key " k > "/dev/stderr"; exit 1 } }' \
    "$PUSHPIN_CONF" >"$d/pushpin.conf" || die "pushpin ($1): $PUSHPIN_CONF does not have the keys this script sets"
}
running() {  # running PID: the process exists and is not a zombie
  local st
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}
# start_pushpin NAME READY-URL: zurl and the runner with $tmp/NAME's configs; SPID[NAME]
# is the runner, SPID[NAME-zurl] zurl, PPKIDS[NAME] the runner's three services.
start_pushpin() {
  local d=$tmp/$1 k
  "$ZURL" --config="$d/zurl.conf" --loglevel=0 >>"$d/log/zurl.out" 2>&1 &
  SPID[$1-zurl]=$!
  pids+=("$!")
  "$PUSHPIN" --config="$d/pushpin.conf" >>"$d/log/runner.out" 2>&1 &
  SPID[$1]=$!
  pids+=("$!")
  wait_http "$2" "${SPID[$1]}" "pushpin ($1)" "$d/log/runner.out"
  running "${SPID[$1-zurl]}" || { cat "$d/log/zurl.out" >&2; die "zurl ($1) exited"; }
  PPKIDS[$1]=$(pgrep -P "${SPID[$1]}" | tr '\n' ' ' || true)
  [ "$(wc -w <<<"${PPKIDS[$1]}")" = 3 ] ||
    die "pushpin ($1): want condure, pushpin-proxy and pushpin-handler under the runner, found: $(for k in ${PPKIDS[$1]}; do cat "/proc/$k/comm"; done | tr '\n' ' ')"
  for k in ${PPKIDS[$1]}; do pids+=("$k"); done
}
# stop_pushpin NAME: the runner (it stops its services), any service left, then zurl.
stop_pushpin() {
  local k q alive keep=() kids=" ${PPKIDS[$1]} "
  stop_server "$1"
  for k in ${PPKIDS[$1]}; do kill -TERM "$k" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0
    for k in ${PPKIDS[$1]}; do running "$k" && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for k in ${PPKIDS[$1]}; do running "$k" && kill -KILL "$k" 2>/dev/null; done
  for q in "${pids[@]}"; do [[ $kids == *" $q "* ]] || keep+=("$q"); done
  pids=("${keep[@]}")
  PPKIDS[$1]=
  stop_server "$1-zurl"
}

# post URL BODY-OUT HEADERS-OUT: the bench request once; prints "code content-type".
post() {
  curl -s -X POST -H 'Content-Type: application/json' -H 'Accept: text/event-stream' \
    --data-binary "@$BODY_FILE" -D "$3" -o "$2" -w '%{http_code} %{content_type}' "$1"
}
# wire_bytes URL: bytes of one response on the wire (headers, chunk framing, body).
wire_bytes() {
  curl -s --raw -X POST -H 'Content-Type: application/json' -H 'Accept: text/event-stream' \
    --data-binary "@$BODY_FILE" -D "$tmp/wire.h" -o "$tmp/wire.b" "$1"
  echo $(( $(wc -c <"$tmp/wire.h") + $(wc -c <"$tmp/wire.b") ))
}

# --- machine --------------------------------------------------------------------------
ncpu=$(nproc)
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
echo "== agate vs nginx, same machine, same run (cases: $BENCH_CASES)"
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine: nproc=$ncpu, cpu=${cpu_model:-unknown}, kernel=$(uname -r), mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "tools:   $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'),${HAPROXY:+ haproxy/$("$HAPROXY" -v 2>/dev/null | awk 'NR == 1 {print $3}'),}${PUSHPIN:+ pushpin/$("$PUSHPIN" --version 2>/dev/null | awk 'NR == 1 {print $2}') (condure/$(condure --version 2>/dev/null | awk 'NR == 1 {print $2}'), zurl/$(dpkg-query -W -f='${Version}' zurl 2>/dev/null || echo '?')),} $(wrk -v 2>&1 | awk 'NR==1 {print $1, $2}'), $(timeout 5 "$AGATE" --version 2>/dev/null | head -1 || echo "agate ?") ($AGATE_BIN, $(git log -1 --format=%h 2>/dev/null || echo no-git)$(git diff --quiet HEAD -- core net proto 2>/dev/null || echo '+dirty'), built $(date -u -r "$AGATE_BIN" '+%H:%M:%S UTC'), $(readelf -d "$AGATE" 2>/dev/null | grep -q 'NEEDED.*jemalloc' && echo jemalloc || echo 'no jemalloc'))"
# How busy is the machine before we start? Other work on these CPUs skews everything.
cpu_busy() {  # percent of all CPUs busy over one second, from /proc/stat
  local a b
  a=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat); sleep 1
  b=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); u = y[1] - x[1]; i = y[2] - x[2];
    printf "%.0f", (u + i) ? 100 * u / (u + i) : 0 }'
}
busy=$(cpu_busy)
# BENCH_WAIT_IDLE=N: wait up to N seconds for the machine to go quiet (< 10 % busy).
if [ "${BENCH_WAIT_IDLE:-0}" -gt 0 ] && [ "$busy" -gt 10 ]; then
  waited=0
  while [ "$busy" -gt 10 ] && [ "$waited" -lt "$BENCH_WAIT_IDLE" ]; do
    sleep 2; waited=$((waited + 3)); busy=$(cpu_busy)
  done
  echo "waited:  ${waited}s for the machine to go quiet (BENCH_WAIT_IDLE=$BENCH_WAIT_IDLE)"
fi
echo "idle?:   ${busy}% of CPU busy before start, load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$busy" -gt 10 ]; then
  echo "  warn  the machine is not idle; busiest processes:"
  ps -eo pid,pcpu,comm --sort=-pcpu | awk 'NR > 1 && NR <= 4 {printf "          pid %s %s%% (lifetime avg) %s\n", $1, $2, $3}'
fi
echo "load:    wrk -t$BENCH_THREADS -c$BENCH_CONNECTIONS -d${BENCH_SECONDS}s --latency, ${BENCH_WARMUP}s warm-up, $BENCH_ROUNDS rounds; agate shards=$BENCH_SHARDS, nginx worker_processes=$ncpu"
echo

# --- agate echo: start, capture one response, check it --------------------------------
# "agate" (metrics on, request logs off) is always started: it records the SSE body
# that nginx serves in the echo case and the upstream serves in the proxy case.
start_agate agate /dev/null
agate_url="http://127.0.0.1:${MAINPORT[agate]}/v1/agents/echo/run"

mkdir -p "$tmp/www"
body=$tmp/www/echo.sse
status=$(post "$agate_url" "$body" "$tmp/agate.headers")
agate_wire=$(wire_bytes "$agate_url")

fail=0
check() { if eval "$2"; then echo "  ok    $1"; else echo "  FAIL  $1"; fail=1; fi; }
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

# The rows, in the order they run within a round: name|label|wrk script|url|wire bytes.
rows=()
add_row() { rows+=("$1|$2|$3|$4|$5"); }

# --- obs: the same echo agent with observability variants -----------------------------
if has_case obs; then
  echo "-- obs: agates differing only in metrics and request logs"
  # What this machine charges for page-cache writes. The log rows write ~50 MB/s of
  # lines into the page cache. On a VM whose balloon driver reports free pages to
  # the host ("Free page reporting enabled" in dmesg, as on the machine the
  # results came from), a page the guest freed is handed back and the next write
  # into it pays the hypervisor to back it again: ~10x a write into a page that
  # stayed backed. Warming the page cache first does not help (the freed pages are
  # reported within seconds). So the file rows carry a cost that is the VM's, and
  # the /dev/null row (BENCH_LOG_NULL=1, on by default) shows agate's own: the
  # line formatted, copied through the ring and handed to write(2).
  TIMEFORMAT=%S
  t_fresh=$( { time dd if=/dev/zero of="$tmp/probe.bin" bs=1M count=256 conv=fdatasync >/dev/null 2>&1; } 2>&1 )
  t_again=$( { time dd if=/dev/zero of="$tmp/probe.bin" bs=1M count=256 conv=notrunc,fdatasync >/dev/null 2>&1; } 2>&1 )
  rm -f "$tmp/probe.bin"
  unset TIMEFORMAT
  echo "  info  page cache: writing 1 GB into new pages costs $(awk -v t="$t_fresh" 'BEGIN { printf "%.2f", t * 4 }') s of system time, over pages already cached $(awk -v t="$t_again" 'BEGIN { printf "%.2f", t * 4 }') s"
  start_agate agate-bare /dev/null AGATE_METRICS=false
  start_agate agate-log "$tmp/agate-log.jsonl" AGATE_LOG_REQUESTS=true
  [ -n "$BENCH_LOG_SAMPLE" ] &&
    start_agate agate-sample "$tmp/agate-sample.jsonl" AGATE_LOG_REQUESTS=true AGATE_LOG_SAMPLE="$BENCH_LOG_SAMPLE"
  obs_names=(agate-bare agate-log ${BENCH_LOG_SAMPLE:+agate-sample})
  if [ "$BENCH_LOG_NULL" = 1 ]; then
    start_agate agate-lognull /dev/null AGATE_LOG_REQUESTS=true
    obs_names+=(agate-lognull)
  fi
  for n in "${obs_names[@]}"; do
    u="http://127.0.0.1:${MAINPORT[$n]}/v1/agents/echo/run"
    status=$(post "$u" "$tmp/$n.body" "$tmp/$n.headers")
    w=$(wire_bytes "$u")
    check "$n answers 200 text/event-stream, $body_bytes-byte body, $w bytes on the wire" \
      '[[ $status == "200 text/event-stream"* ]] && [ "$(wc -c <"$tmp/$n.body")" -eq "$body_bytes" ] && [ "$(grep -c "^data: " "$tmp/$n.body")" -eq "$n_events" ]'
  done
  add_row agate-bare "agate echo, metrics+log off" bench/echo.lua "http://127.0.0.1:${MAINPORT[agate-bare]}/v1/agents/echo/run" "$agate_wire"
fi
if has_case echo || has_case obs || has_case auth; then
  add_row agate "agate echo (log off)" bench/echo.lua "$agate_url" "$agate_wire"
fi

# --- auth: the same echo run with an API key and rate limits on ------------------------
if has_case auth; then
  echo "-- auth: agate with an API key required and two rate-limit rules that never refuse"
  export BENCH_API_KEY="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  cat >"$tmp/agate-auth.yaml" <<EOF
auth:
  anonymous: false
  api_keys:
    - {name: bench, sha256: $(printf %s "$BENCH_API_KEY" | sha256sum | cut -d' ' -f1), scopes: [agents:run]}
rate_limit:
  rules:
    - {name: per-key, key: api_key, per_second: 1000000, burst: 1000000, concurrent: 100000}
    - {name: echo-global, key: global, agents: [echo], per_second: 10000000, burst: 10000000}
EOF
  start_agate agate-auth /dev/null AGATE_CONFIG="$tmp/agate-auth.yaml"
  auth_url="http://127.0.0.1:${MAINPORT[agate-auth]}/v1/agents/echo/run"
  status=$(curl -s -X POST -H 'Content-Type: application/json' -H 'Accept: text/event-stream' \
    -H "Authorization: Bearer $BENCH_API_KEY" --data-binary "@$BODY_FILE" -D "$tmp/agate-auth.headers" \
    -o "$tmp/agate-auth.body" -w '%{http_code} %{content_type}' "$auth_url")
  auth_wire=$(( $(curl -s --raw -X POST -H 'Content-Type: application/json' -H 'Accept: text/event-stream' \
    -H "Authorization: Bearer $BENCH_API_KEY" --data-binary "@$BODY_FILE" -D - -o "$tmp/wire.b" "$auth_url" | wc -c) \
    + $(wc -c <"$tmp/wire.b") ))
  check "agate-auth answers 200 text/event-stream with the key ($status), $n_events events, RateLimit-* headers" \
    '[[ $status == "200 text/event-stream"* ]] && [ "$(grep -c "^data: " "$tmp/agate-auth.body")" -eq "$n_events" ] && grep -qi "^ratelimit-remaining:" "$tmp/agate-auth.headers"'
  noauth=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' --data-binary "@$BODY_FILE" "$auth_url")
  check "agate-auth refuses a request without the key (401, got $noauth)" '[ "$noauth" = 401 ]'
  add_row agate-auth "agate echo, auth + limits" bench/echo_auth.lua "$auth_url" "$auth_wire"
fi
if has_case obs; then
  add_row agate-log "agate echo, log to file" bench/echo.lua "http://127.0.0.1:${MAINPORT[agate-log]}/v1/agents/echo/run" "$agate_wire"
  [ -n "$BENCH_LOG_SAMPLE" ] &&
    add_row agate-sample "agate echo, log sample $BENCH_LOG_SAMPLE" bench/echo.lua "http://127.0.0.1:${MAINPORT[agate-sample]}/v1/agents/echo/run" "$agate_wire"
  [ "$BENCH_LOG_NULL" = 1 ] &&
    add_row agate-lognull "agate echo, log to /dev/null" bench/echo.lua "http://127.0.0.1:${MAINPORT[agate-lognull]}/v1/agents/echo/run" "$agate_wire"
fi

# --- echo: nginx serving the same bytes as a static file ------------------------------
if has_case echo; then
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
fi

# --- proxy: agate and nginx in front of one upstream ----------------------------------
if has_case proxy; then
  echo "-- proxy: agate and nginx as proxies in front of an nginx serving the recorded stream"
  cp "$body" "$tmp/www/stream.sse"
  free_port; UP_PORT=$PORT
  free_port; NGINX_PX_PORT=$PORT
  # The upstream: POST /agent answers 200 with the recorded stream. nginx's static
  # handler refuses POST with 405; error_page with a URI redirects internally with
  # the method changed to GET (a named location would keep POST and 405 again).
  # open_file_cache keeps the upstream's own cost low for both proxies.
  {
    nginx_conf upstream
    cat <<EOF
    open_file_cache max=64 inactive=60s;
    open_file_cache_valid 60s;
    server {
        listen 127.0.0.1:$UP_PORT reuseport;
        location = /agent {
            alias $tmp/www/stream.sse;
            error_page 405 =200 \$uri;
        }
    }
}
EOF
  } >"$tmp/upstream.conf"
  up_url="http://127.0.0.1:$UP_PORT/agent"
  start_nginx upstream "$up_url"
  status=$(post "$up_url" "$tmp/upstream.body" "$tmp/upstream.headers")
  check "upstream answers POST /agent with 200 text/event-stream ($status) and the recorded $body_bytes bytes" \
    '[[ $status == "200 text/event-stream"* ]] && cmp -s "$tmp/upstream.body" "$body"'

  # nginx as the proxy.
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
    cat >"$tmp/$n.yaml" <<EOF
agents:
  up:
    type: proxy
    endpoints: [http://127.0.0.1:$UP_PORT/agent]
    validation: $v
    pool: {max_idle: $BENCH_PROXY_POOL}
EOF
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
    add_row "$n" "$(case $n in agate-proxy) echo "agate proxy (strict)" ;; agate-proxy-pass) echo "agate proxy (pass)" ;; haproxy-proxy) echo "haproxy proxy" ;; pushpin-proxy) echo "pushpin proxy" ;; *) echo "nginx proxy" ;; esac)" \
      bench/echo.lua "$u" "$w"
  done
fi
# --- cache: agate's response cache against nginx serving the same bytes -----------------
if has_case cache; then
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
  cat >"$tmp/agate-cache.yaml" <<EOF
cache: {max_bytes: 64MiB}
agents:
  up:
    type: proxy
    endpoints: [http://127.0.0.1:$CUP_PORT/agent]
    cache: {ttl: 1h}
EOF
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
fi
[ $fail = 0 ] || die "correctness checks failed; not timing"
echo

# --- timing ---------------------------------------------------------------------------
# to_ms VALUE: wrk prints 812.00us, 1.23ms, 2.01s, 1.50m; print milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (match(v, /^[0-9.]+/) == 0) { print "nan"; exit }
    n = substr(v, 1, RLENGTH); u = substr(v, RLENGTH + 1)
    f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : (u == "h") ? 3600000 : -1
    if (f < 0) { print "nan"; exit }
    printf "%.3f", n * f }'
}

# CPU accounting, in clock ticks. busy_ticks: all CPUs, non-idle. pid_ticks PID...:
# utime+stime of those processes (all their threads).
CLK_TCK=$(getconf CLK_TCK)
busy_ticks() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
pid_ticks() {
  local p t=0 v
  for p in "$@"; do
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || v=0
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
# CPU of this shell's reaped children (wrk), from `times`, in ticks. `times` must run
# in this shell, not in a $(...) subshell, so it writes a file that child_ticks reads.
child_ticks() {
  awk -v hz="$CLK_TCK" 'NR == 2 {
    t = 0
    for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
    printf "%d", t * hz + 0.5 }' "$tmp/times"
}
log_tid() {  # log_tid PID: the thread ids of agate's log writer ("agate-log") and file pacer ("agate-logsync")
  grep -lx -e agate-log -e agate-logsync /proc/"$1"/task/*/comm 2>/dev/null | cut -d/ -f5 | tr '\n' ' '
}
tid_ticks() {  # tid_ticks PID "TID...": CPU ticks of those threads, summed
  local t sum=0 v
  for t in $2; do
    v=$(sed 's/^.*) //' "/proc/$1/task/$t/stat" 2>/dev/null | awk '{print $12 + $13}')
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
server_pids() {  # server_pids NAME: the row's server processes (nginx: master and workers;
  case $1 in     # pushpin: the runner, condure, pushpin-proxy, pushpin-handler and zurl)
    nginx*|upstream) echo "${SPID[$1]}" $(pgrep -P "${SPID[$1]}" || true) ;;
    pushpin*) echo "${SPID[$1]}" ${PPKIDS[$1]} "${SPID[$1-zurl]}" ;;
    *) echo "${SPID[$1]}" ;;
  esac
}
upstream_pids() {  # upstream_pids NAME: the upstream's processes for proxy rows, else none
  case $1 in agate-proxy|agate-proxy-pass|nginx-proxy|haproxy-proxy|pushpin-proxy) server_pids upstream ;; esac
}

# run_wrk SECONDS SCRIPT URL OUT
# wrk runs in the background and is waited for, so that a signal to this script
# runs the clean-up at once instead of after wrk's run.
run_wrk() {
  timeout -k 5 $(( $1 + 30 )) wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"$1s" --latency -s "$2" "$3" >"$4" 2>&1 &
  WRK_PID=$!
  wait "$WRK_PID" || { WRK_PID=; cat "$4" >&2; die "wrk failed against $3"; }
  WRK_PID=
}

# One measured row. Results go to the associative arrays below, keyed "round:name".
declare -A RPS P50 P90 P99 NON2XX SOCKERR BPR SRV USREQ WRKC OTHER UPS UPSREQ REQS LOGUS
measure() {
  local round=$1 name=$2 script=$3 url=$4 wire=$5 out k ltid l0 l1
  out="$tmp/wrk-$round-$name.txt"
  run_wrk "$BENCH_WARMUP" "$script" "$url" "$tmp/wrk-warmup-$round-$name.txt"
  local spids upids b0 s0 u0 c0 b1 s1 u1 c1 elapsed
  spids=$(server_pids "$name"); upids=$(upstream_pids "$name")
  times >"$tmp/times"
  ltid=; [[ $name == agate-log* || $name == agate-sample ]] && ltid=$(log_tid "${SPID[$name]}")
  l0=$(tid_ticks "${SPID[$name]}" "$ltid")
  b0=$(busy_ticks); s0=$(pid_ticks $spids); u0=$(pid_ticks $upids); c0=$(child_ticks); elapsed=$(date +%s%N)
  run_wrk "$BENCH_SECONDS" "$script" "$url" "$out"
  b1=$(busy_ticks); s1=$(pid_ticks $spids); u1=$(pid_ticks $upids); elapsed=$(( $(date +%s%N) - elapsed ))
  l1=$(tid_ticks "${SPID[$name]}" "$ltid")
  times >"$tmp/times"; c1=$(child_ticks)
  k="$round:$name"
  RPS[$k]=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  P50[$k]=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
  P90[$k]=$(to_ms "$(awk '$1 == "90%" {print $2}' "$out")")
  P99[$k]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
  NON2XX[$k]=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
  NON2XX[$k]=${NON2XX[$k]:-0}
  SOCKERR[$k]=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")
  SOCKERR[$k]=${SOCKERR[$k]:-0}
  # Whole responses read? bytes wrk read / responses it completed vs. one response's size.
  local sum req bytes st p99us
  sum=$(grep '^BENCH_SUMMARY ' "$out" || true)
  req=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<"$sum")
  bytes=$(sed -n 's/.* bytes=\([0-9]*\).*/\1/p' <<<"$sum")
  st=$(sed -n 's/.* status=\([0-9]*\).*/\1/p' <<<"$sum")
  p99us=$(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' <<<"$sum")
  if [ -z "$req" ] || [ "$req" -eq 0 ] || [ -z "${RPS[$k]}" ] || [ "${P99[$k]}" = nan ]; then
    cat "$out" >&2; die "could not parse wrk output for $name"
  fi
  REQS[$k]=$req
  BPR[$k]=$(( bytes / req ))
  # % of one CPU over the wall time of the run; server CPU per response in us.
  pct() { awk -v t="$1" -v hz="$CLK_TCK" -v ns="$elapsed" 'BEGIN { if (t < 0) t = 0; printf "%.0f", 100 * t / hz / (ns / 1e9) }'; }
  SRV[$k]=$(pct $((s1 - s0)))
  WRKC[$k]=$(pct $((c1 - c0)))
  UPS[$k]=$(pct $((u1 - u0)))
  OTHER[$k]=$(pct $(( (b1 - b0) - (s1 - s0) - (u1 - u0) - (c1 - c0) )))
  USREQ[$k]=$(awk -v t=$((s1 - s0)) -v hz="$CLK_TCK" -v r="$req" 'BEGIN { printf "%.1f", 1e6 * t / hz / r }')
  UPSREQ[$k]=$(awk -v t=$((u1 - u0)) -v hz="$CLK_TCK" -v r="$req" 'BEGIN { printf "%.1f", 1e6 * t / hz / r }')
  LOGUS[$k]=$(awk -v t=$((l1 - l0)) -v hz="$CLK_TCK" -v r="$req" 'BEGIN { printf "%.2f", 1e6 * t / hz / r }')
  if [ "${NON2XX[$k]}" != 0 ] || [ "${st:-0}" != 0 ]; then
    echo "  FAIL  $name round $round: ${NON2XX[$k]} non-2xx responses"; fail=1
  fi
  # Bytes per response within 2 % of one captured response: wrk read them whole.
  if ! awk -v b="${BPR[$k]}" -v w="$wire" 'BEGIN { exit !(b > w * 0.98 && b < w * 1.02) }'; then
    echo "  FAIL  $name round $round: wrk read ${BPR[$k]} bytes/response, one response is $wire"; fail=1
  fi
  # The text output (parsed with units) and wrk's own histogram (in us) must agree.
  if ! awk -v a="${P99[$k]}" -v b="$p99us" 'BEGIN { d = a - b / 1000; if (d < 0) d = -d; exit !(d <= 0.01 + a * 0.01) }'; then
    echo "  FAIL  $name round $round: p99 parsed as ${P99[$k]} ms, wrk says ${p99us} us"; fail=1
  fi
  [ "${SOCKERR[$k]}" = 0 ] || echo "  warn  $name round $round: socket errors: $(grep 'Socket errors' "$out")"
}

BUSY_MARK=25   # rows where other processes used more than this % of one CPU get a '*'
busy_rows=0
declare -A LABEL
for spec in "${rows[@]}"; do IFS='|' read -r n l _ <<<"$spec"; LABEL[$n]=$l; done
has_row() { [ -n "${LABEL[$1]:-}" ]; }

row() {  # row KEY-PREFIX NAME [ups]
  local k="$1:$2" mark="" ups=""
  [ "${OTHER[$k]}" -gt "$BUSY_MARK" ] && { mark=" *"; busy_rows=$((busy_rows + 1)); }
  [ "${3:-}" = ups ] && ups=$(printf ' %5s %6s' "${UPS[$k]}%" "${UPSREQ[$k]}")
  printf '  %-28s %8.0f %7.3f %7.3f %7.3f %6d %7s %7s %7s %6s %5s%s %5s%s\n' "${LABEL[$2]}" "${RPS[$k]}" "${P50[$k]}" "${P90[$k]}" \
    "${P99[$k]}" "${BPR[$k]}" "${NON2XX[$k]}" "${SOCKERR[$k]}" "${SRV[$k]}%" "${USREQ[$k]}" "${WRKC[$k]}%" "$ups" "${OTHER[$k]}%" "$mark"
}
header() {  # header [ups]
  local ups=""
  [ "${1:-}" = ups ] && ups=$(printf ' %5s %6s' "ups" "us/req")
  printf '  %-28s %8s %7s %7s %7s %6s %7s %7s %7s %6s %5s%s %5s\n' "" "req/s" "p50 ms" "p90 ms" "p99 ms" "B/resp" "non-2xx" "sockerr" \
    "srv cpu" "us/req" "wrk" "$ups" "other"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# pctdiff A B: how much A is above B, in %, signed.
pctdiff() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f%%", 100 * (a / b - 1) }'; }
versus() {  # versus KEY-PREFIX A B: one line of A/B ratios
  printf '  %-26s req/s %sx, p50 %sx, p99 %sx, server CPU per response %sx\n' "$2/$3:" \
    "$(ratio "${RPS[$1:$2]}" "${RPS[$1:$3]}")" "$(ratio "${P50[$1:$2]}" "${P50[$1:$3]}")" \
    "$(ratio "${P99[$1:$2]}" "${P99[$1:$3]}")" "$(ratio "${USREQ[$1:$2]}" "${USREQ[$1:$3]}")"
}

table_echo() {
  local n
  echo "  [echo] agate's echo agent vs nginx serving the same bytes"
  header
  for n in agate nginx nginx-ofc haproxy; do has_row $n && row "$1" $n; done
  for n in nginx nginx-ofc haproxy; do has_row $n && versus "$1" agate $n; done
  return 0
}
table_obs() {
  local n
  echo "  [obs] observability cost: the same echo run, metrics and request logs varied"
  header
  for n in agate-bare agate agate-log agate-sample agate-lognull; do has_row $n && row "$1" $n; done
  for n in agate agate-log agate-sample agate-lognull; do
    has_row $n || continue
    printf '  %-26s req/s %s, server CPU per response %s, p99 %sx' "$n vs agate-bare:" \
      "$(pctdiff "${RPS[$1:$n]}" "${RPS[$1:agate-bare]}")" "$(pctdiff "${USREQ[$1:$n]}" "${USREQ[$1:agate-bare]}")" \
      "$(ratio "${P99[$1:$n]}" "${P99[$1:agate-bare]}")"
    # With 3+ rounds, the median of the per-round differences resists one noisy row.
    if [ "$1" = mean ] && [ "$BENCH_ROUNDS" -ge 3 ]; then
      printf '; median of rounds: req/s %s, CPU %s' "$(median_pct RPS $n agate-bare)" "$(median_pct USREQ $n agate-bare)"
    fi
    echo
  done
  return 0
}
median_pct() {  # median_pct ARRAYNAME A B: median over rounds of (A/B - 1), in %
  local -n arr=$1; local r
  for r in $(seq "$BENCH_ROUNDS"); do awk -v a="${arr[$r:$2]}" -v b="${arr[$r:$3]}" 'BEGIN { print 100 * (a / b - 1) }'; done |
    sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%+.1f%%", m }'
}
table_proxy() {
  local n
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
  printf '  %-26s %sx (agate %.1f us, nginx %.1f us: proxy + upstream)\n' "CPU per response incl. ups:" \
    "$(ratio "$(awk -v a="${USREQ[$1:agate-proxy]}" -v b="${UPSREQ[$1:agate-proxy]}" 'BEGIN{print a+b}')" \
             "$(awk -v a="${USREQ[$1:nginx-proxy]}" -v b="${UPSREQ[$1:nginx-proxy]}" 'BEGIN{print a+b}')")" \
    "$(awk -v a="${USREQ[$1:agate-proxy]}" -v b="${UPSREQ[$1:agate-proxy]}" 'BEGIN{print a+b}')" \
    "$(awk -v a="${USREQ[$1:nginx-proxy]}" -v b="${UPSREQ[$1:nginx-proxy]}" 'BEGIN{print a+b}')"
}
table_cache() {
  echo "  [cache] agate answering from its response cache vs nginx serving a HIT's bytes"
  header
  local n
  for n in agate-cache nginx-cache haproxy-cache; do has_row $n && row "$1" $n; done
  versus "$1" agate-cache nginx-cache
  if has_row haproxy-cache; then versus "$1" agate-cache haproxy-cache; fi
}
table_auth() {
  echo "  [auth] the echo run with an API key and rate limits on vs off"
  header
  local n
  for n in agate agate-auth; do has_row $n && row "$1" $n; done
  printf '  %-26s req/s %s, server CPU per response %s, p99 %sx' "agate-auth vs agate:" \
    "$(pctdiff "${RPS[$1:agate-auth]}" "${RPS[$1:agate]}")" "$(pctdiff "${USREQ[$1:agate-auth]}" "${USREQ[$1:agate]}")" \
    "$(ratio "${P99[$1:agate-auth]}" "${P99[$1:agate]}")"
  if [ "$1" = mean ] && [ "$BENCH_ROUNDS" -ge 3 ]; then
    printf '; median of rounds: req/s %s, CPU %s' "$(median_pct RPS agate-auth agate)" "$(median_pct USREQ agate-auth agate)"
  fi
  echo
}
tables() {
  has_case echo && table_echo "$1"
  has_case auth && table_auth "$1"
  has_case cache && table_cache "$1"
  has_case obs && table_obs "$1"
  has_case proxy && table_proxy "$1"
  return 0
}

nrows=${#rows[@]}
echo "== timing (each row: ${BENCH_WARMUP}s warm-up, then ${BENCH_SECONDS}s measured; $nrows rows x $BENCH_ROUNDS rounds, about $(( nrows * BENCH_ROUNDS * (BENCH_WARMUP + BENCH_SECONDS) )) s)"
echo "   srv cpu: server CPU, % of one CPU; us/req: server CPU us per response; wrk: wrk's CPU;"
echo "   ups: the upstream nginx's CPU (proxy rows); other: CPU used by everything else (should be ~0-10%)"
for r in $(seq "$BENCH_ROUNDS"); do
  order=("${rows[@]}")
  if [ $((r % 2)) = 0 ]; then   # even rounds backwards
    order=(); for ((i = nrows - 1; i >= 0; i--)); do order+=("${rows[$i]}"); done
  fi
  for spec in "${order[@]}"; do
    IFS='|' read -r n _ script url wire <<<"$spec"
    measure "$r" "$n" "$script" "$url" "$wire"
  done
  echo "-- round $r of $BENCH_ROUNDS$([ $((r % 2)) = 0 ] && echo ' (rows in reverse order)')"
  tables "$r"
done

# Mean over rounds.
mean() {  # mean ARRAYNAME NAME
  local -n arr=$1; local s=0 r
  for r in $(seq "$BENCH_ROUNDS"); do s=$(awk -v s="$s" -v x="${arr[$r:$2]}" 'BEGIN { print s + x }'); done
  awk -v s="$s" -v n="$BENCH_ROUNDS" 'BEGIN { printf "%.3f", s / n }'
}
total() {  # total ARRAYNAME NAME
  local -n arr=$1; local s=0 r
  for r in $(seq "$BENCH_ROUNDS"); do s=$((s + ${arr[$r:$2]})); done
  echo "$s"
}
names=()
for spec in "${rows[@]}"; do IFS='|' read -r n _ <<<"$spec"; names+=("$n"); done
for n in "${names[@]}"; do
  RPS[mean:$n]=$(mean RPS "$n"); P50[mean:$n]=$(mean P50 "$n"); P90[mean:$n]=$(mean P90 "$n"); P99[mean:$n]=$(mean P99 "$n")
  SRV[mean:$n]=$(mean SRV "$n" | awk '{printf "%.0f", $1}'); USREQ[mean:$n]=$(mean USREQ "$n" | awk '{printf "%.1f", $1}')
  WRKC[mean:$n]=$(mean WRKC "$n" | awk '{printf "%.0f", $1}'); OTHER[mean:$n]=$(mean OTHER "$n" | awk '{printf "%.0f", $1}')
  UPS[mean:$n]=$(mean UPS "$n" | awk '{printf "%.0f", $1}'); UPSREQ[mean:$n]=$(mean UPSREQ "$n" | awk '{printf "%.1f", $1}')
  LOGUS[mean:$n]=$(mean LOGUS "$n")
  BPR[mean:$n]=${BPR[1:$n]}; NON2XX[mean:$n]=$(total NON2XX "$n"); SOCKERR[mean:$n]=$(total SOCKERR "$n")
done
echo "-- mean of $BENCH_ROUNDS rounds (non-2xx, sockerr: totals)"
tables mean

# --- paired: each target's comparison again, wrk alternating between the two servers --
# Two rows of the tables above are 12 s or more apart, and this VM's speed drifts by
# several % over a run (RESULTS.md, Runs 22-23), so a ratio of row means resolves about
# +-4 %: too coarse for the 3 % and 5 % targets. Here each comparison is BENCH_PAIRS
# pairs of back-to-back BENCH_PAIR_SECONDS slices (A then B, B then A in every other
# pair), one ratio B/A per pair, and the median of those ratios with its confidence
# interval (see pair_stats): drift slower than a pair cancels out.
declare -A PAIR_MED PAIR_LO PAIR_HI PAIR_MEAN PAIR_COV
row_spec() {  # row_spec NAME: sets spec_script, spec_url for a row
  local spec rn
  for spec in "${rows[@]}"; do
    IFS='|' read -r rn _ spec_script spec_url _ <<<"$spec"
    [ "$rn" = "$1" ] && return 0
  done
  return 1
}
slice() {  # slice NAME OUT: one BENCH_PAIR_SECONDS wrk run against a row's server; prints req/s
  row_spec "$1" || die "slice: no row $1"
  run_wrk "$BENCH_PAIR_SECONDS" "$spec_script" "$spec_url" "$2"
  if grep -q 'Non-2xx or 3xx responses:' "$2"; then
    echo "  FAIL  $1 paired slice: $(grep 'Non-2xx' "$2")" >&2; fail=1
  fi
  awk '/^Requests\/sec:/ {print $2}' "$2"
}
# pair_stats: reads "ratio" lines, sorted; prints "median lo hi mean coverage": the
# median with its distribution-free confidence interval (order statistics x(k) and
# x(n+1-k), k the largest with P(Binomial(n, 1/2) < k) <= 2.5 %; for 10 pairs x(2)
# and x(9), 97.9 % coverage), then the mean. The median, not the mean: one slice in
# which a server stalled (nginx-proxy served 24 k req/s in one 3 s slice of Run 29,
# against 62-71 k in the other nine) moves a mean of ratios by 0.2, a median not at
# all. Fewer than 6 pairs give no 95 % interval; the range is printed then.
pair_stats() {
  awk '{ r[NR] = $1; s += $1 } END {
    n = NR; med = (n % 2) ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
    k = 0; c = 0; p = 0.5 ^ n; b = 1
    for (j = 0; j < n; j++) {   # c = P(X <= j); stop before it passes 2.5 %
      if (j > 0) b = b * (n - j + 1) / j
      if (c + b * p > 0.025) break
      c += b * p; k = j + 1
    }
    if (k < 1) { lo = r[1]; hi = r[n]; cov = 1 - 2 * p } else { lo = r[k]; hi = r[n + 1 - k]; cov = 1 - 2 * c }
    printf "%.4f %.4f %.4f %.4f %.1f\n", med, lo, hi, s / n, 100 * cov }'
}
if [ "$BENCH_PAIRS" -gt 0 ]; then
  comparisons=()
  has_row agate-bare && has_row agate-log && comparisons+=("agate-bare agate-log")
  # Issue 3's cost split: agate's own part (lines formatted, handed to write(2) on
  # /dev/null), and the lines of one request in ten written to the file.
  has_row agate-bare && has_row agate-lognull && comparisons+=("agate-bare agate-lognull")
  has_row agate-bare && has_row agate-sample && comparisons+=("agate-bare agate-sample")
  has_row agate && has_row agate-auth && comparisons+=("agate agate-auth")
  has_row nginx-proxy && has_row agate-proxy && comparisons+=("nginx-proxy agate-proxy")
  has_row nginx-cache && has_row agate-cache && comparisons+=("nginx-cache agate-cache")
  if [ ${#comparisons[@]} -gt 0 ]; then
    echo
    echo "== paired: $BENCH_PAIRS pairs of ${BENCH_PAIR_SECONDS}s slices per comparison, wrk alternating between the two servers"
    echo "   (B/A per pair; the median with its distribution-free confidence interval, and the mean; about $(( ${#comparisons[@]} * BENCH_PAIRS * 2 * (BENCH_PAIR_SECONDS + 1) )) s)"
  fi
  # Pair p of every comparison, then pair p+1: a comparison measured as one block sits
  # in one machine phase. In Run 48 agate-bare served 74.9 k req/s through the first
  # comparison's 3 min and 82.4 k through the next one's; that comparison read 4.0 %,
  # where the same configurations interleaved by hand read 1.2 % (30 pairs).
  for cmp in "${comparisons[@]}"; do read -r a b <<<"$cmp"; : >"$tmp/pairs-$b.txt"; done
  for p in $(seq "$BENCH_PAIRS"); do
    for cmp in "${comparisons[@]}"; do
      read -r a b <<<"$cmp"
      if [ $((p % 2)) = 1 ]; then
        ra=$(slice "$a" "$tmp/pair-$p-$a.txt"); rb=$(slice "$b" "$tmp/pair-$p-$b.txt")
      else
        rb=$(slice "$b" "$tmp/pair-$p-$b.txt"); ra=$(slice "$a" "$tmp/pair-$p-$a.txt")
      fi
      echo "$ra $rb" >>"$tmp/pairs-$b.txt"
    done
  done
  for cmp in "${comparisons[@]}"; do
    read -r a b <<<"$cmp"
    read -r med lo hi m cov < <(awk '{ print $2 / $1 }' "$tmp/pairs-$b.txt" | sort -g | pair_stats)
    PAIR_MED[$b]=$med; PAIR_LO[$b]=$lo; PAIR_HI[$b]=$hi; PAIR_MEAN[$b]=$m; PAIR_COV[$b]=$cov
    printf '  %-26s median %sx (%s %% CI %s-%sx), mean %sx; req/s %s: %s, %s: %s (means of slices)\n' "$b/$a:" \
      "$(printf %.3f "$med")" "$cov" "$(printf %.3f "$lo")" "$(printf %.3f "$hi")" "$(printf %.3f "$m")" \
      "$b" "$(awk '{ s += $2 } END { printf "%.0f", s / NR }' "$tmp/pairs-$b.txt")" \
      "$a" "$(awk '{ s += $1 } END { printf "%.0f", s / NR }' "$tmp/pairs-$b.txt")"
  done
fi
# paired_verdict NAME KIND LIMIT: the paired median against a target. KIND "cost":
# 1 - ratio must stay under LIMIT %; KIND "ratio": the ratio must reach LIMIT.
paired_verdict() {
  [ -n "${PAIR_MED[$1]:-}" ] || return 0
  awk -v m="${PAIR_MED[$1]}" -v lo="${PAIR_LO[$1]}" -v hi="${PAIR_HI[$1]}" -v k="$2" -v lim="$3" -v n="$BENCH_PAIRS" -v cov="${PAIR_COV[$1]}" 'BEGIN {
    if (k == "cost") {
      c = 100 * (1 - m); cw = 100 * (1 - lo); cb = 100 * (1 - hi)
      v = (cw < lim) ? "met with " cov " % confidence" : (c < lim) ? "met on the median, not with " cov " % confidence" : (cb < lim) ? "NOT met on the median (within the interval)" : "NOT met"
      printf "        paired (%d pairs): median cost %.1f %% (%s %% CI %.1f to %.1f %%): %s\n", n, c, cov, cb, cw, v
    } else {
      v = (lo >= lim) ? "met with " cov " % confidence" : (m >= lim) ? "met on the median, not with " cov " % confidence" : (hi >= lim) ? "NOT met on the median (within the interval)" : "NOT met"
      printf "        paired (%d pairs): median %.2fx (%s %% CI %.2f-%.2fx): %s\n", n, m, cov, lo, hi, v
    } }'
}

# --- ws: WebSocket runs, driven by build/wsload (not wrk) -----------------------------
if has_case ws; then
  [ -x build/wsload ] || make --no-print-directory build/wsload >/dev/null || die "cannot build build/wsload"
  echo
  echo "== ws: agate echo over WebSocket, build/wsload, ${BENCH_SECONDS}s per run after 1s warm-up, $BENCH_ROUNDS rounds"
  start_agate agate-ws /dev/null
  printf '  %-44s %10s %12s %9s %9s %9s %12s\n' shape runs/s events/s p50_ms p90_ms p99_ms "us CPU/run"
  for r in $(seq "$BENCH_ROUNDS"); do
    for shape in multi one; do
      if [ $shape = multi ]; then
        args=(-c "$BENCH_WS_CONNS" -k "$BENCH_WS_RUNS"); label="$BENCH_WS_CONNS conns x $BENCH_WS_RUNS runs in flight"
      else
        args=(-c "$BENCH_WS_ONE_CONNS" -1); label="one run per connection ($BENCH_WS_ONE_CONNS at a time)"
      fi
      s0=$(pid_ticks "${SPID[agate-ws]}")
      line=$(timeout -k 5 $((BENCH_SECONDS + 30)) build/wsload -p "${MAINPORT[agate-ws]}" -w "$WORDS" -d "$BENCH_SECONDS" "${args[@]}") ||
        { echo "  FAIL  wsload ($label): $line"; fail=1; continue; }
      s1=$(pid_ticks "${SPID[agate-ws]}")
      kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$line"; }
      runs=$(kv runs)
      cpu=$(awk -v t=$((s1 - s0)) -v hz="$CLK_TCK" -v n="$runs" 'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')
      printf '  %-44s %10s %12s %9s %9s %9s %12s\n' "r$r $label" "$(kv runs_per_s)" "$(kv events_per_s)" "$(kv p50_ms)" "$(kv p90_ms)" "$(kv p99_ms)" "$cpu"
    done
  done
  echo "  (us CPU/run: agate's CPU, 1s warm-up included, over the measured runs: an upper bound)"
  ended=$(metric agate-ws 'agate_runs_ended_total{agent="echo",transport="ws",outcome="error"}' 'agate_runs_ended_total{agent="echo",transport="ws",outcome="cut"}')
  check "agate-ws: no WebSocket run ended in error ($ended)" '[ "${ended:-0}" = 0 ]'
fi

# --- streams: many slow streams held open at once, driven by build/sseload --------------
# Each row gets a fresh server, so its memory before the streams is a clean start
# and what it holds after is theirs. The source of every stream is one agate echo
# agent, paced (forwardedProps.agate.tokenIntervalMs); the proxies sit in front of it.
rss_kib() {  # rss_kib PID...: resident memory of those processes, KiB
  local p t=0 v
  for p in "$@"; do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || v=0
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
# stop_server NAME: TERM, then KILL after 5 s, and wait (it is this shell's child).
stop_server() {
  local p=${SPID[$1]}
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  local q keep=()
  for q in "${pids[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
  pids=("${keep[@]}")
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
if has_case streams; then
  [ -x build/sseload ] || make --no-print-directory build/sseload >/dev/null || die "cannot build build/sseload"
  echo
  echo "== streams: $BENCH_STREAMS SSE streams held open at once, one event per ${BENCH_STREAM_INTERVAL_MS} ms each, held ${BENCH_STREAM_HOLD}s; build/sseload, $BENCH_ROUNDS rounds"
  echo "   source: an agate echo agent (paced); each row a fresh server, measured from one request after start-up"
  declare -A STREAM_KIB STREAM_US
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
fi

# --- after the timing: targets and server-side checks ---------------------------------
echo
echo "== targets and server-side checks"
if has_case obs; then
  # Every request logged? Lines in the file (minus start-up lines) against the
  # agate's own count of answered runs, and its dropped-lines counter.
  sleep 0.2   # the log writer polls every 10 ms
  for n in agate-log agate-sample; do
    has_row $n || continue
    lines=$(grep -c '"path":"/v1/agents/echo/run"' "$tmp/$n.jsonl" || true)
    served=$(metric "$n" 'agate_http_requests_total{listener="main",route="run",')
    dropped=$(metric "$n" 'agate_log_lines_dropped_total')
    want=1; [ $n = agate-sample ] && want=$BENCH_LOG_SAMPLE
    echo "  info  $n: $lines request lines for $served runs served ($(awk -v a="$lines" -v b="$served" 'BEGIN { printf "%.3f", b ? a / b : 0 }') of them, log.sample $want), $dropped dropped, $(du -m "$tmp/$n.jsonl" | cut -f1) MB written"
    if [ "$dropped" != 0 ]; then echo "  warn  $n: the log writer fell behind and dropped $dropped lines"; fi
    if [ $n = agate-log ] && [ $((lines + dropped)) -ne "$served" ]; then
      echo "  FAIL  $n: $lines lines + $dropped dropped != $served runs"; fail=1
    fi
  done
  c=$(awk -v a="${RPS[mean:agate-log]}" -v b="${RPS[mean:agate-bare]}" 'BEGIN { printf "%.1f", 100 * (1 - a / b) }')
  cc=$(awk -v a="${USREQ[mean:agate-log]}" -v b="${USREQ[mean:agate-bare]}" 'BEGIN { printf "%.1f", 100 * (a / b - 1) }')
  # The log thread's own CPU per line: the write into the page cache, measured
  # directly (thread CPU ticks over the row), so it does not drown in req/s noise.
  for n in agate-log agate-sample agate-lognull; do
    has_row $n || continue
    echo "  info  $n: the log threads (writer and file pacer) used $(printf '%.2f' "${LOGUS[mean:$n]}") us of CPU per response ($(awk -v a="${LOGUS[mean:$n]}" -v b="${USREQ[mean:$n]}" 'BEGIN { printf "%.1f", b ? 100 * a / b : 0 }') % of the agate's CPU per response)"
  done
  med=""
  [ "$BENCH_ROUNDS" -ge 3 ] && med=" (median of rounds: req/s $(median_pct RPS agate-log agate-bare), CPU per response $(median_pct USREQ agate-log agate-bare))"
  echo "  issue 3 target, metrics + logs on cost < 3 % of runs/s: mean cost ${c} % of req/s, ${cc} % more CPU per response$med: $(awk -v c="$c" 'BEGIN { print (c < 3) ? "met" : "NOT met" }') on the mean (run-to-run noise on req/s is several %; use many rounds to resolve 3 %)"
  paired_verdict agate-log cost 3
  for n in agate-lognull agate-sample; do
    [ -n "${PAIR_MED[$n]:-}" ] || continue
    echo "  info  $n against agate-bare, paired:"; paired_verdict $n cost 3
  done
  if has_row agate-lognull; then
    c=$(awk -v a="${RPS[mean:agate-lognull]}" -v b="${RPS[mean:agate-bare]}" 'BEGIN { printf "%.1f", 100 * (1 - a / b) }')
    cc=$(awk -v a="${USREQ[mean:agate-lognull]}" -v b="${USREQ[mean:agate-bare]}" 'BEGIN { printf "%.1f", 100 * (a / b - 1) }')
    med=""
    [ "$BENCH_ROUNDS" -ge 3 ] && med=" (median of rounds: req/s $(median_pct RPS agate-lognull agate-bare), CPU per response $(median_pct USREQ agate-lognull agate-bare))"
    echo "  info  the same with the log on /dev/null (agate's own work, no page cache): mean cost ${c} % of req/s, ${cc} % more CPU per response$med"
  fi
fi
if has_case proxy; then
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
fi
if has_case cache; then
  up=$(metric agate-cache 'agate_upstream_attempts_total')
  hits=$(metric agate-cache 'agate_cache_requests_total{agent="up",result="hit"}')
  echo "  info  agate-cache: $hits hits, $up upstream attempt(s)"
  [ "$up" = 1 ] || { echo "  FAIL  agate-cache: the upstream was asked $up times (want 1: every timed request a HIT)"; fail=1; }
  rr=$(ratio "${RPS[mean:agate-cache]}" "${RPS[mean:nginx-cache]}")
  echo "  issue 7 target, agate cache HIT >= 1.5x nginx static req/s: ${rr}x: $(awk -v r="$rr" 'BEGIN { print (r >= 1.5) ? "met" : "NOT met" }')"
  paired_verdict agate-cache ratio 1.5
fi
if has_case auth; then
  # A refusal (429) would be a non-2xx response, which fails its row already.
  tfull=$(metric agate-auth 'agate_ratelimit_table_full_total')
  echo "  info  agate-auth: limiter lookups without a cell (fail-open): ${tfull:-0}"
  [ "${tfull:-0}" = 0 ] || { echo "  FAIL  agate-auth: the limiter table was full"; fail=1; }
  ar=$(awk -v a="${RPS[mean:agate-auth]}" -v b="${RPS[mean:agate]}" 'BEGIN { printf "%.1f", 100 * (1 - a / b) }')
  med=""
  [ "$BENCH_ROUNDS" -ge 3 ] && med=" (median of rounds: req/s $(median_pct RPS agate-auth agate), CPU per response $(median_pct USREQ agate-auth agate))"
  echo "  issue 6 target, auth + rate limiting on within 5 % of off in runs/s: mean cost ${ar} % of req/s$med: $(awk -v c="$ar" 'BEGIN { print (c < 5) ? "met" : "NOT met" }') on the mean (ratio $(ratio "${RPS[mean:agate-auth]}" "${RPS[mean:agate]}")x)"
  paired_verdict agate-auth cost 5
fi
# Did any agate shard stall? Loop turns that worked longer than 5 ms, from its own
# histogram (agate_shard_loop_turn_seconds): a tail in wrk's p99 with none here is
# not a stalled shard.
for n in "${names[@]}"; do
  [[ $n == agate* ]] || continue
  read -r all fast < <(curl -sf "http://127.0.0.1:${ADMINPORT[$n]}/metrics" | awk '
    $1 == "agate_shard_loop_turn_seconds_count" { a = $2 }
    $1 == "agate_shard_loop_turn_seconds_bucket{le=\"0.005\"}" { f = $2 }
    END { printf "%d %d\n", a, f }')   # one scrape: both from the same instant
  [ "$all" -gt 0 ] || continue   # metrics off
  echo "  info  $n: $((all - fast)) of $all loop turns worked longer than 5 ms"
done
for n in "${names[@]}"; do
  printf '  %-17s %s\n' "$n:" "$(awk -v r="${RPS[mean:$n]}" -v b="${BPR[mean:$n]}" 'BEGIN { printf "%.1f MB/s on the wire (req/s x %d B/resp)", r * b / 1e6, b }')"
done
if [ "$busy_rows" -gt 0 ]; then
  echo "  warn  rows marked * ran while other processes used > ${BUSY_MARK}% of a CPU: not comparable; rerun on a quiet machine"
fi

# --- optional profiles (untimed) ------------------------------------------------------
# DWARF call graphs: jansson and libc have no frame pointers, so -g (fp) loses the
# callers of everything inside them.
set +o pipefail   # head closes its pipe early; that is not an error here
for n in $BENCH_PERF; do
  has_row "$n" || { echo "  warn  BENCH_PERF: no row named $n"; continue; }
  for spec in "${rows[@]}"; do IFS='|' read -r rn _ script url _ <<<"$spec"; [ "$rn" = "$n" ] && break; done
  echo
  echo "== profile of $n: perf record --call-graph dwarf on its server for ${BENCH_SECONDS}s under the same wrk load (untimed)"
  perf_pids=$(server_pids "$n" | tr ' ' ',')
  timeout -k 5 $(( BENCH_SECONDS + 40 )) wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"$(( BENCH_SECONDS + 4 ))s" -s "$script" "$url" >"$tmp/wrk-perf-$n.txt" 2>&1 &
  WRK_PID=$!
  sleep 2
  perf record -q -F 299 --call-graph dwarf,8192 -p "$perf_pids" -o "$tmp/perf-$n.data" -- sleep "$BENCH_SECONDS" >/dev/null 2>&1 ||
    echo "  warn  perf record failed"
  wait "$WRK_PID" || true; WRK_PID=
  echo "   (wrk under perf: $(awk '/^Requests\/sec:/ {print $2}' "$tmp/wrk-perf-$n.txt") req/s)"
  perf report -i "$tmp/perf-$n.data" --stdio --no-children --sort comm -g none 2>/dev/null | grep -E '^ +[0-9]' | head -8 >"$tmp/perf-$n.comm"
  perf report -i "$tmp/perf-$n.data" --stdio --no-children --sort dso -g none 2>/dev/null | grep -E '^ +[0-9]' | head -8 >"$tmp/perf-$n.dso"
  perf report -i "$tmp/perf-$n.data" --stdio --no-children --sort dso,sym -g none 2>/dev/null | grep -E '^ +[0-9]' | head -30 >"$tmp/perf-$n.self"
  perf report -i "$tmp/perf-$n.data" --stdio --children --sort sym -g none 2>/dev/null | grep -E '^ +[0-9]' |
    grep -v -e '\[k\]' -e '\] 0x0000' >"$tmp/perf-$n.all"
  head -40 "$tmp/perf-$n.all" >"$tmp/perf-$n.incl"
  echo "-- by thread";                          cat "$tmp/perf-$n.comm"
  echo "-- by library";                         cat "$tmp/perf-$n.dso"
  echo "-- by symbol, self time";               cat "$tmp/perf-$n.self"
  echo "-- user-space functions, inclusive (children) time"; cat "$tmp/perf-$n.incl"
  echo "-- observability functions, inclusive time (request log: log_request, shard_log_line, log_put;"
  echo "   log writer thread: writer_main; metrics: metrics_*, m_*; trace ids: trace_*, rand_*)"
  grep -E '\] (log_|shard_log|writer_main|drain|write_all|__GI___writev|metrics_|m_[a-z]|trace_|rand_|clock_|export_span)' "$tmp/perf-$n.all" | head -20
done

echo
if [ $fail = 0 ]; then echo "bench: all checks passed"; else echo "bench: some checks FAILED"; exit 1; fi
