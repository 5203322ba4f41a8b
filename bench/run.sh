#!/usr/bin/env bash
# bench/run.sh: agate's echo agent against nginx serving the same bytes as a
# static file, on this machine, in the same run (`make bench` runs this).
#
# What is measured
#   agate  POST /v1/agents/echo/run, a 40-word user message (bench/echo-body.json,
#          sent by bench/echo.lua): 200 text/event-stream, chunked, 44 SSE events.
#   nginx  GET of a static file holding the exact SSE body agate sent for that
#          request (nginx answers POST to a static file with 405), served with
#          sendfile and keep-alive; bench/static.lua. Two server blocks of one
#          nginx: stock (open/fstat/sendfile/close per request) and, with
#          BENCH_NGINX_OFC=1 (default), the same plus open_file_cache.
#   Both   wrk -t2 -c64 -d${BENCH_SECONDS}s --latency, keep-alive, loopback only,
#          after a ${BENCH_WARMUP}s warm-up; interleaved agate, nginx, nginx+cache,
#          agate+log, for BENCH_ROUNDS rounds, because a small machine is noisy.
#          About 110 s in all with the defaults.
#   Fairness: the headline rows run nginx with `access_log off` and agate with
#          AGATE_LOG_REQUESTS=false; an extra row (BENCH_LOG_ROW=1, default) runs
#          a second agate with its per-request JSON log on, written to a file.
#          Both servers get one worker/shard per CPU, pinned (agate pins its
#          shards; nginx gets worker_cpu_affinity auto) and SO_REUSEPORT listeners.
#          wrk runs on the same CPUs as the server it measures.
#   CPU    Each row also reports the CPU time the server used (as % of one CPU and
#          as microseconds per response, kernel time included) and the CPU used
#          by everything else on the machine ("other"): a row with a large
#          "other" was measured on a busy machine and is not comparable. On an
#          idle machine "other" is still ~5-10 %: softirq time charged to the
#          idle task (no process) and kernel threads; rows above 25 % get a '*'.
#
# Environment (all optional)
#   BENCH_SECONDS=10  BENCH_WARMUP=2  BENCH_ROUNDS=2  BENCH_CONNECTIONS=64
#   BENCH_THREADS=2   BENCH_SHARDS=$(nproc)  BENCH_LOG_ROW=1  BENCH_NGINX_OFC=1
#   BENCH_PORT=18480 (first port tried; the next free ones are used)
#   BENCH_NGINX_AFFINITY=auto (worker_cpu_affinity; "off" to let workers float)
#   BENCH_WAIT_IDLE=0 (wait up to this many seconds for < 10 % CPU busy first)
#   AGATE_BIN=build/agate  BENCH_KEEP=1 (keep the temp dir with configs and logs)
#
# Exit status: 0 when every check passed (correct agate body, nginx serves the
# same bytes, no non-2xx responses, whole responses read), 1 otherwise.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_ROUNDS=${BENCH_ROUNDS:-2}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-64}
BENCH_THREADS=${BENCH_THREADS:-2}
BENCH_SHARDS=${BENCH_SHARDS:-$(nproc)}
BENCH_LOG_ROW=${BENCH_LOG_ROW:-1}
BENCH_NGINX_OFC=${BENCH_NGINX_OFC:-1}
BENCH_PORT=${BENCH_PORT:-18480}
BENCH_NGINX_AFFINITY=${BENCH_NGINX_AFFINITY:-auto}
AGATE_BIN=${AGATE_BIN:-build/agate}
BODY_FILE=bench/echo-body.json
WORDS=40

die() { echo "bench: $*" >&2; exit 1; }

for tool in wrk nginx curl awk; do
  command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null 2>&1 ||
    die "$tool not found; run: deploy/install-deps.sh bench"
done
NGINX=$(PATH=$PATH:/usr/sbin:/sbin command -v nginx)
if [ ! -x "$AGATE_BIN" ]; then
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

# start_agate NAME LOG(true|false) STDOUT: starts an agate, sets AGATE_PORT, AGATE_PID.
start_agate() {
  local name=$1 log=$2 out=$3 aport
  free_port; AGATE_PORT=$PORT
  free_port; aport=$PORT
  # Start from the built-in defaults: no AGATE_* from the caller's environment.
  local unset_env=() v
  for v in $(compgen -e | grep '^AGATE_' || true); do unset_env+=(-u "$v"); done
  env "${unset_env[@]}" \
    AGATE_LISTEN="127.0.0.1:$AGATE_PORT" AGATE_ADMIN_LISTEN="127.0.0.1:$aport" \
    AGATE_SHARDS="$BENCH_SHARDS" AGATE_LOG_REQUESTS="$log" \
    "$AGATE_BIN" >"$out" 2>"$tmp/$name.stderr" &
  AGATE_PID=$!
  pids+=("$AGATE_PID")
  wait_http "http://127.0.0.1:$aport/health/ready" "$AGATE_PID" "agate ($name)" "$tmp/$name.stderr"
  curl -sf -o /dev/null "http://127.0.0.1:$AGATE_PORT/health/ready" || die "agate ($name) main port not ready"
}

# --- machine --------------------------------------------------------------------------
ncpu=$(nproc)
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
echo "== agate vs nginx, same machine, same run"
echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine: nproc=$ncpu, cpu=${cpu_model:-unknown}, kernel=$(uname -r), mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "tools:   $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | awk 'NR==1 {print $1, $2}'), $(timeout 5 "$AGATE_BIN" --version 2>/dev/null | head -1 || echo "agate ?") ($AGATE_BIN, $(git log -1 --format=%h 2>/dev/null || echo no-git)$(git diff --quiet HEAD -- core net proto 2>/dev/null || echo '+dirty'))"
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
echo "timing:  starts $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $AGATE_BIN built $(date -u -r "$AGATE_BIN" '+%Y-%m-%d %H:%M:%S UTC')"
echo "load:    wrk -t$BENCH_THREADS -c$BENCH_CONNECTIONS -d${BENCH_SECONDS}s --latency, ${BENCH_WARMUP}s warm-up, $BENCH_ROUNDS rounds; agate shards=$BENCH_SHARDS, nginx worker_processes=$ncpu"
echo

# --- agate: start, capture one response, check it -------------------------------------
start_agate agate false /dev/null
AGATE_MAIN_PORT=$AGATE_PORT AGATE_MAIN_PID=$AGATE_PID
agate_url="http://127.0.0.1:$AGATE_MAIN_PORT/v1/agents/echo/run"
if [ "$BENCH_LOG_ROW" = 1 ]; then
  start_agate agate-log true "$tmp/agate-requests.jsonl"
  AGATE_LOG_PORT=$AGATE_PORT AGATE_LOG_PID=$AGATE_PID
  agate_log_url="http://127.0.0.1:$AGATE_LOG_PORT/v1/agents/echo/run"
fi

mkdir -p "$tmp/www"
status=$(curl -s -X POST -H 'Content-Type: application/json' -H 'Accept: text/event-stream' \
  --data-binary "@$BODY_FILE" -D "$tmp/agate.headers" -o "$tmp/www/echo.sse" \
  -w '%{http_code} %{content_type}' "$agate_url")
# The same request again with the chunked framing left in: the bytes on the wire.
curl -s --raw -X POST -H 'Content-Type: application/json' -H 'Accept: text/event-stream' \
  --data-binary "@$BODY_FILE" -D "$tmp/agate.wire" "$agate_url" >>"$tmp/agate.wire.body"

fail=0
check() { if eval "$2"; then echo "  ok    $1"; else echo "  FAIL  $1"; fail=1; fi; }
body=$tmp/www/echo.sse
n_content=$(grep -o '"type":"TEXT_MESSAGE_CONTENT"' "$body" | wc -l)
n_events=$(grep -c '^data: ' "$body" || true)
echo "== correctness (before timing)"
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
agate_wire=$(( $(wc -c <"$tmp/agate.wire") + $(wc -c <"$tmp/agate.wire.body") ))
n_chunks=$(grep -c $'^[0-9a-fA-F]\\+\r$' "$tmp/agate.wire.body" || true)
echo "  info  SSE body $body_bytes bytes; on the wire with headers and chunked framing $agate_wire bytes ($n_chunks chunk-size lines)"

# --- nginx: the same bytes as a static file -------------------------------------------
free_port; NGINX_PORT=$PORT
free_port; NGINX_OFC_PORT=$PORT
# agate pins shard i to the i-th allowed CPU; `auto` does the same for nginx workers.
case "$BENCH_NGINX_AFFINITY" in auto) NGINX_AFFINITY=auto ;; off|none|"") NGINX_AFFINITY=off ;; *) NGINX_AFFINITY=$BENCH_NGINX_AFFINITY ;; esac
[ "$NGINX_AFFINITY" = off ] && NGINX_AFFINITY_LINE="" || NGINX_AFFINITY_LINE="worker_cpu_affinity $NGINX_AFFINITY;"
mkdir -p "$tmp/nginx-tmp"
{
  [ "$(id -u)" = 0 ] && echo "user root;"   # workers must read $tmp; as non-root the directive is ignored
  cat <<EOF
worker_processes $ncpu;
$NGINX_AFFINITY_LINE
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 100000;
    client_body_temp_path $tmp/nginx-tmp/body;
    proxy_temp_path $tmp/nginx-tmp/proxy;
    fastcgi_temp_path $tmp/nginx-tmp/fastcgi;
    uwsgi_temp_path $tmp/nginx-tmp/uwsgi;
    scgi_temp_path $tmp/nginx-tmp/scgi;
    types { }
    default_type text/event-stream;
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
"$NGINX" -t -q -e "$tmp/nginx-error.log" -p "$tmp" -c "$tmp/nginx.conf" -g 'daemon off;' ||
  { cat "$tmp/nginx-error.log" >&2; die "nginx config test failed"; }
"$NGINX" -e "$tmp/nginx-error.log" -p "$tmp" -c "$tmp/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
pids+=("$NGINX_PID")
nginx_url="http://127.0.0.1:$NGINX_PORT/echo.sse"
wait_http "$nginx_url" "$NGINX_PID" nginx "$tmp/nginx-error.log"
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
server_pids() {  # server_pids NAME
  case $1 in
    agate) echo "$AGATE_MAIN_PID" ;;
    agate-log) echo "$AGATE_LOG_PID" ;;
    nginx|nginx-ofc) echo "$NGINX_PID" $(pgrep -P "$NGINX_PID" || true) ;;
  esac
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
declare -A RPS P50 P90 P99 NON2XX SOCKERR BPR SRV USREQ WRKC OTHER
measure() {
  local round=$1 name=$2 script=$3 url=$4 wire=$5 out k
  out="$tmp/wrk-$round-$name.txt"
  run_wrk "$BENCH_WARMUP" "$script" "$url" "$tmp/wrk-warmup-$round-$name.txt"
  local spids b0 s0 c0 b1 s1 c1 elapsed
  spids=$(server_pids "$name")
  times >"$tmp/times"
  b0=$(busy_ticks); s0=$(pid_ticks $spids); c0=$(child_ticks); elapsed=$(date +%s%N)
  run_wrk "$BENCH_SECONDS" "$script" "$url" "$out"
  b1=$(busy_ticks); s1=$(pid_ticks $spids); elapsed=$(( $(date +%s%N) - elapsed ))
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
  BPR[$k]=$(( bytes / req ))
  # % of one CPU over the wall time of the run; server CPU per response in us.
  SRV[$k]=$(awk -v t=$((s1 - s0)) -v hz="$CLK_TCK" -v ns="$elapsed" 'BEGIN { printf "%.0f", 100 * t / hz / (ns / 1e9) }')
  WRKC[$k]=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v ns="$elapsed" 'BEGIN { printf "%.0f", 100 * t / hz / (ns / 1e9) }')
  OTHER[$k]=$(awk -v t=$(( (b1 - b0) - (s1 - s0) - (c1 - c0) )) -v hz="$CLK_TCK" -v ns="$elapsed" 'BEGIN { if (t < 0) t = 0; printf "%.0f", 100 * t / hz / (ns / 1e9) }')
  USREQ[$k]=$(awk -v t=$((s1 - s0)) -v hz="$CLK_TCK" -v r="$req" 'BEGIN { printf "%.1f", 1e6 * t / hz / r }')
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
row() {  # row LABEL KEY
  local mark=""
  [ "${OTHER[$2]}" -gt "$BUSY_MARK" ] && { mark=" *"; busy_rows=$((busy_rows + 1)); }
  printf '  %-27s %8.0f %7.3f %7.3f %7.3f %6d %7s %7s %7s %6s %5s %5s%s\n' "$1" "${RPS[$2]}" "${P50[$2]}" "${P90[$2]}" "${P99[$2]}" \
    "${BPR[$2]}" "${NON2XX[$2]}" "${SOCKERR[$2]}" "${SRV[$2]}%" "${USREQ[$2]}" "${WRKC[$2]}%" "${OTHER[$2]}%" "$mark"
}
header() {
  printf '  %-27s %8s %7s %7s %7s %6s %7s %7s %7s %6s %5s %5s\n' "" "req/s" "p50 ms" "p90 ms" "p99 ms" "B/resp" "non-2xx" "sockerr" \
    "srv cpu" "us/req" "wrk" "other"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# The rows, in the order they run within a round: name|label|wrk script|url|wire bytes.
rows=("agate|agate POST echo (log off)|bench/echo.lua|$agate_url|$agate_wire"
      "nginx|nginx GET static|bench/static.lua|$nginx_url|$nginx_wire")
[ "$BENCH_NGINX_OFC" = 1 ] &&
  rows+=("nginx-ofc|nginx GET + open_file_cache|bench/static.lua|$nginx_ofc_url|$nginx_wire")
[ "$BENCH_LOG_ROW" = 1 ] &&
  rows+=("agate-log|agate POST echo (log file)|bench/echo.lua|$agate_log_url|$agate_wire")
declare -A LABEL
for spec in "${rows[@]}"; do IFS='|' read -r n l _ <<<"$spec"; LABEL[$n]=$l; done

table() {  # table KEY-PREFIX: the rows, then agate against each nginx row
  local n other
  header
  for spec in "${rows[@]}"; do IFS='|' read -r n _ <<<"$spec"; row "${LABEL[$n]}" "$1:$n"; done
  for other in nginx nginx-ofc; do
    [ -n "${RPS[$1:$other]:-}" ] || continue
    printf '  agate/%-10s req/s %sx, p50 %sx, p99 %sx, server CPU per response %sx\n' "$other:" \
      "$(ratio "${RPS[$1:agate]}" "${RPS[$1:$other]}")" "$(ratio "${P50[$1:agate]}" "${P50[$1:$other]}")" \
      "$(ratio "${P99[$1:agate]}" "${P99[$1:$other]}")" "$(ratio "${USREQ[$1:agate]}" "${USREQ[$1:$other]}")"
  done
}

echo "== timing (each row: ${BENCH_WARMUP}s warm-up, then ${BENCH_SECONDS}s measured)"
echo "   srv cpu: server CPU, % of one CPU; us/req: server CPU us per response; wrk: wrk's CPU;"
echo "   other: CPU used by everything else on this machine during the row (should be ~0%)"
for r in $(seq "$BENCH_ROUNDS"); do
  for spec in "${rows[@]}"; do
    IFS='|' read -r n _ script url wire <<<"$spec"
    measure "$r" "$n" "$script" "$url" "$wire"
  done
  echo "-- round $r of $BENCH_ROUNDS"
  table "$r"
done

# Mean over rounds.
mean() {  # mean ARRAYNAME NAME
  local -n arr=$1; local s=0 r
  for r in $(seq "$BENCH_ROUNDS"); do s=$(awk -v s="$s" -v x="${arr[$r:$2]}" 'BEGIN { print s + x }'); done
  awk -v s="$s" -v n="$BENCH_ROUNDS" 'BEGIN { printf "%.3f", s / n }'
}
names=()
for spec in "${rows[@]}"; do IFS='|' read -r n _ <<<"$spec"; names+=("$n"); done
for n in "${names[@]}"; do
  RPS[mean:$n]=$(mean RPS "$n"); P50[mean:$n]=$(mean P50 "$n"); P90[mean:$n]=$(mean P90 "$n"); P99[mean:$n]=$(mean P99 "$n")
  SRV[mean:$n]=$(mean SRV "$n" | awk '{printf "%.0f", $1}'); USREQ[mean:$n]=$(mean USREQ "$n" | awk '{printf "%.1f", $1}')
  WRKC[mean:$n]=$(mean WRKC "$n" | awk '{printf "%.0f", $1}'); OTHER[mean:$n]=$(mean OTHER "$n" | awk '{printf "%.0f", $1}')
  BPR[mean:$n]=${BPR[1:$n]}; NON2XX[mean:$n]=$(( $(printf '%s+' $(for r in $(seq "$BENCH_ROUNDS"); do echo "${NON2XX[$r:$n]}"; done)) 0 ))
  SOCKERR[mean:$n]=$(( $(printf '%s+' $(for r in $(seq "$BENCH_ROUNDS"); do echo "${SOCKERR[$r:$n]}"; done)) 0 ))
done
echo "-- mean of $BENCH_ROUNDS rounds (non-2xx, sockerr: totals)"
table mean
if [ "$BENCH_LOG_ROW" = 1 ]; then
  echo "  agate log on/off: req/s $(ratio "${RPS[mean:agate-log]}" "${RPS[mean:agate]}")x ($(wc -l <"$tmp/agate-requests.jsonl") log lines written)"
fi
for n in "${names[@]}"; do
  printf '  %-10s %s\n' "$n:" "$(awk -v r="${RPS[mean:$n]}" -v b="${BPR[mean:$n]}" 'BEGIN { printf "%.1f MB/s on the wire (req/s x %d B/resp)", r * b / 1e6, b }')"
done
if [ "$busy_rows" -gt 0 ]; then
  echo "  warn  rows marked * ran while other processes used > ${BUSY_MARK}% of a CPU: not comparable; rerun on a quiet machine"
fi
echo
if [ $fail = 0 ]; then echo "bench: all checks passed"; else echo "bench: some checks FAILED"; exit 1; fi
