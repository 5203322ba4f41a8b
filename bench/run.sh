#!/usr/bin/env bash
# bench/run.sh: agate against nginx, HAProxy and Pushpin on this machine, in the same
# run, and against an earlier agate (`make bench` runs this; bench/RESULTS.md says
# where agate stands). A driver over one file per case, bench/cases/<case>.sh (what
# the case measures and checks is at its top), the servers' set-up in
# bench/lib/peers.sh, the wrk rows and CPU accounting in bench/lib/measure.sh, and
# the paired comparisons and their intervals in bench/lib/stats.sh. The whole output
# is also written to bench/runs/<date>-<commit>.txt.
#
# Cases (BENCH_CASES; all but baseline by default, baseline too when BENCH_BASELINE is set):
#   echo      agate's echo agent vs nginx (and HAProxy) serving the same bytes (issue 2)
#   obs       what metrics and request logs cost (issue 3: < 3 % of runs/s)
#   proxy     agate as a proxy vs nginx, HAProxy, Pushpin (issue 4: >= 1.3x nginx)
#   cache     a cache HIT vs nginx serving its bytes (issue 7: >= 1.5x nginx)
#   fleet_cache  the shared cache tier in Redis: HITs from Redis vs local HITs, MISSes
#             with sharing on vs off (issue 26: figures)
#   ws        AG-UI over WebSocket, build/wsload (issue 5: figures)
#   auth      an API key and rate limits on vs off (issue 6: within 5 % of off)
#   fleet_rl  a global rate limit through Redis vs the same limit local-only (issue 26:
#             within 5 % in runs/s, at most 10 Redis round trips per 1,000 runs)
#   resume    a resumable echo run (event log in memory, ids; and with Redis) vs a plain
#             one, and a resumable proxy run vs a plain one (issue 27: at most 5 % more
#             CPU per event in memory, 15 % with Redis)
#   streams   thousands of slow streams, then idle keep-alive connections, held (figures)
#   epoll     build/agate on io_uring vs on epoll (engine.backend): echo, proxy and cache
#             req/s and CPU per response, epoll/io_uring (issue 24: at most 1.25x CPU on
#             echo and proxy)
#   baseline  build/agate vs agate built from BENCH_BASELINE: echo, proxy and cache CPU
#             per response, new/baseline (issue 22: unchanged within the noise)
#
# A run: every server is started and checked (a failed check stops the run before
# timing); BENCH_ROUNDS timed rounds over the wrk rows of all cases, interleaved, with
# each round's tables and their means; each target's comparison again in interleaved
# pairs; ws and streams; then targets and server-side checks. The timing and pairs
# sections print how long they take. The agate binaries are copied to the temp dir
# first, so a rebuild of build/agate during the run changes nothing.
#
# Environment (all optional)
#   BENCH_CASES="echo obs proxy cache fleet_cache epoll ws auth fleet_rl resume streams" (+ baseline with BENCH_BASELINE)
#   BENCH_BASELINE=<commit> (e.g. 3bf7da1: the baseline case's agate, built in build/baseline-<sha>)
#   BENCH_SECONDS=10  BENCH_WARMUP=2  BENCH_ROUNDS=2  BENCH_CONNECTIONS=64  BENCH_THREADS=2
#   BENCH_SHARDS=$(nproc)  BENCH_NGINX_OFC=1 (echo case: the open_file_cache row too)
#   BENCH_PAIRS=10 (pairs per comparison after the rounds; 0: none)
#   BENCH_PAIR_SECONDS=3 (length of one slice of a pair)
#   BENCH_LOG_SAMPLE=0.1 (obs case: log.sample of the sampled-log row; "" = no row)
#   BENCH_LOG_NULL=1 (obs case: a row with logs on written to /dev/null, which
#     separates formatting and the ring from the write into the page cache; 0: no row)
#   BENCH_PROXY_PASS=1 (proxy case: also agate with validation: pass)
#   BENCH_PROXY_POOL=64 (agate pool.max_idle and nginx upstream keepalive)
#   BENCH_HAPROXY=1 (HAProxy rows in the echo, proxy, cache and streams cases; 0: none)
#   BENCH_PUSHPIN=1 (Pushpin rows in the proxy and streams cases; 0: none. Needs the
#     Debian packages pushpin, condure and zurl: deploy/install-deps.sh bench)
#   BENCH_WS_CONNS=4  BENCH_WS_RUNS=16  BENCH_WS_ONE_CONNS=32 (ws case)
#   BENCH_STREAMS=8000 (streams case; at most half the fd limit minus 1000: a proxy
#     holds two fds per stream)  BENCH_STREAM_INTERVAL_MS=100  BENCH_STREAM_HOLD=10
#   BENCH_IDLE_HOLD=14 (streams case, idle keep-alive part: seconds held idle; jemalloc
#     gives freed pages back over 10 s)
#   BENCH_PUSHPIN_STREAMS=1000 (streams case: the streams Pushpin holds, at most
#     BENCH_STREAMS; it needs ~120-200 us of CPU per event, so 2 CPUs carry ~1200
#     streams at 10 events/s; past that it answers 502 to the streams it cannot start)
#   BENCH_PUSHPIN_RAMP=500 (streams case: connections Pushpin's rows open per second;
#     at sseload's 2000/s, 8000 idle-row runs overload it into 502s)
#   BENCH_PERF="" (row names, e.g. "agate-log agate-proxy": after the timed rounds,
#     one extra untimed wrk run per named row with `perf record --call-graph dwarf`
#     on the server (about 30 s per row with the report); the top of `perf report`
#     is printed. Needs perf.)
#   BENCH_PORT=18480 (first port tried; the next free ones are used)
#   BENCH_NGINX_AFFINITY=auto (worker_cpu_affinity; "off" to let workers float)
#   BENCH_WAIT_IDLE=0 (wait up to this many seconds for < 10 % CPU busy first)
#   BENCH_LIMITER=0 (1: run build/ratelimit_bench first, as `make bench` does)
#   BENCH_RUNS_DIR=bench/runs (where the run's output is kept; "": nowhere)
#   AGATE_BIN=build/agate  BENCH_KEEP=1 (keep the temp dir with configs and logs)
#
# Exit status: 0 when every check passed (correct agate body, nginx serves the
# same bytes, every proxy relays the upstream's bytes, no non-2xx responses,
# whole responses read, no upstream failures, no log lines lost), 1 otherwise.
# shellcheck source-path=SCRIPTDIR/.. disable=SC1090 # the cases are sourced in a loop
set -euo pipefail

# It takes no arguments: anything else (--help, -h, a typo) prints the comment above
# and starts nothing, instead of a 30-minute run.
if [ $# -gt 0 ]; then
  sed -n '2,/^# shellcheck/{/^# shellcheck/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  [ "$1" = --help ] || [ "$1" = -h ]
  exit
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
run_cmd="$(for v in $(compgen -e | grep -E '^(BENCH_|AGATE_BIN$)' | grep -v '^BENCH_API_KEY$' || true); do
  [[ ${!v} =~ [[:space:]] ]] && printf '%s="%s" ' "$v" "${!v}" || printf '%s=%s ' "$v" "${!v}"; done)bench/run.sh${*:+ $*}${MAKELEVEL:+ (from make)}"

BENCH_BASELINE=${BENCH_BASELINE:-}
BENCH_CASES=${BENCH_CASES:-echo obs proxy cache fleet_cache epoll ws auth fleet_rl resume streams${BENCH_BASELINE:+ baseline}}
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
BENCH_LIMITER=${BENCH_LIMITER:-0}
BENCH_RUNS_DIR=${BENCH_RUNS_DIR-bench/runs}
AGATE_BIN=${AGATE_BIN:-build/agate}
BODY_FILE=bench/echo-body.json
# shellcheck disable=SC2034 # the cases use it
WORDS=40
ALL_CASES="echo obs proxy cache fleet_cache epoll ws auth fleet_rl resume streams baseline"

die() { echo "bench: $*" >&2; exit 1; }
has_case() { [[ " $BENCH_CASES " == *" $1 "* ]]; }
fail=0
check() { if eval "$2"; then echo "  ok    $1"; else echo "  FAIL  $1"; fail=1; fi; }
# for_cases FN "CASE..." [ARG...]: CASE_FN ARG... for each selected case, in that order.
for_cases() {
  local fn=$1 c; local order=$2; shift 2
  for c in $order; do
    if has_case "$c" && declare -F "${c}_$fn" >/dev/null; then "${c}_$fn" "$@"; fi
  done
}

for c in $BENCH_CASES; do
  [[ " $ALL_CASES " == *" $c "* ]] || die "BENCH_CASES: unknown case '$c' (${ALL_CASES// /, })"
done
[ -n "${BENCH_CASES// /}" ] || die "BENCH_CASES is empty"
if has_case baseline && [ -z "$BENCH_BASELINE" ]; then
  die "the baseline case needs BENCH_BASELINE=<commit> (e.g. BENCH_BASELINE=3bf7da1, or make bench BASELINE=3bf7da1)"
fi
if [ -n "$BENCH_BASELINE" ] && ! has_case baseline; then
  echo "bench: BENCH_BASELINE is set but BENCH_CASES has no baseline case; no baseline rows" >&2
fi

. bench/lib/peers.sh
. bench/lib/measure.sh
. bench/lib/stats.sh
for c in $ALL_CASES; do . "bench/cases/$c.sh"; done
find_peers
if [ ! -e "$AGATE_BIN" ]; then
  echo "bench: $AGATE_BIN missing, building it"
  make --no-print-directory build/agate
fi
[ -f "$BODY_FILE" ] || die "$BODY_FILE missing"

# --- processes, clean-up and the run's file -------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/agate-bench.XXXXXX")
chmod 755 "$tmp"
pids=()
WRK_PID='' TEE_PID=''
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
  # Not a bare `wait`: it would wait for tee too, which waits for this shell.
  [ ${#pids[@]} = 0 ] || wait "${pids[@]}" 2>/dev/null || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "bench: kept $tmp"; else rm -rf "$tmp"; fi
  [ -n "${run_file:-}" ] && echo "bench: this run's output is in $run_file"
  if [ -n "$TEE_PID" ]; then   # let tee write the last lines before the shell returns
    exec >&- 2>&-
    for _ in $(seq 50); do kill -0 "$TEE_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

commit=$(git log -1 --format=%h 2>/dev/null || echo no-git)
git diff --quiet HEAD -- . ':!bench' ':!docs' ':!tests' ':!fuzz' ':!*.md' 2>/dev/null || commit+=+dirty
run_file=
if [ -n "$BENCH_RUNS_DIR" ]; then
  mkdir -p "$BENCH_RUNS_DIR"
  run_file=$BENCH_RUNS_DIR/$(date -u +%Y-%m-%dT%H%M%SZ)-$commit.txt
  # tee ignores the terminal's ^C, and with -p a reader that goes away (| head): the
  # clean-up's last lines, and the rest of the run, still reach the file.
  exec > >(trap "" INT TERM; exec tee -p -a "$run_file") 2>&1
  TEE_PID=$!
fi

# Private copies of the binaries: a rebuild of build/agate while we run changes nothing.
AGATE=$tmp/agate
copy_binary "$AGATE_BIN" "$AGATE"
if has_case baseline; then
  baseline_build
  AGATE_BASE=$tmp/agate-baseline
  copy_binary "$BASE_BIN" "$AGATE_BASE"
fi

machine_header
if [ "$BENCH_LIMITER" = 1 ]; then
  echo "== the rate limiter alone: build/ratelimit_bench (core/ratelimit.c, no HTTP)"
  [ -x build/ratelimit_bench ] || make --no-print-directory build/ratelimit_bench
  build/ratelimit_bench
  echo
fi

# --- the run ----------------------------------------------------------------------------
echo_record                                   # every case needs the recorded body
for_cases setup "obs auth fleet_rl resume echo proxy cache fleet_cache epoll baseline"
[ $fail = 0 ] || die "correctness checks failed; not timing"
echo
order_rows
timed_rounds "echo auth fleet_rl resume cache fleet_cache obs proxy epoll baseline"
if [ "$BENCH_PAIRS" -gt 0 ]; then for_cases pairs "obs auth fleet_rl resume proxy cache fleet_cache epoll baseline"; fi
run_pairs
for_cases run "ws streams"
echo
echo "== targets and server-side checks"
for_cases targets "obs proxy cache fleet_cache auth fleet_rl resume epoll baseline"
rows_report
profiles

echo
if [ $fail = 0 ]; then echo "bench: all checks passed"; else echo "bench: some checks FAILED"; exit 1; fi
