# shellcheck shell=bash disable=SC2034,SC2154 # globals shared with bench/run.sh and the cases
# bench/lib/measure.sh: the wrk rows of a bench run. Rows (a server and the request
# wrk sends it) are added by the cases; this file times them in interleaved rounds,
# reads each server's CPU from /proc, prints the rows' tables and their means, and
# runs the single slices the paired comparisons (bench/lib/stats.sh) are made of.
# Sourced by bench/run.sh.
#
# How a row is measured: wrk -t$BENCH_THREADS -c$BENCH_CONNECTIONS --latency,
# keep-alive, loopback, a ${BENCH_WARMUP}s warm-up and then ${BENCH_SECONDS}s
# measured. All rows of all cases, for BENCH_ROUNDS rounds; even rounds run the rows
# in reverse order, so slow drift in machine load hits every row about equally.
# CPU: the server's processes' utime+stime over the measured seconds (/proc/PID/stat,
# all threads, kernel time included), as % of one CPU and as microseconds per
# response; wrk's CPU (this shell's reaped children); for proxy rows the upstream's;
# and the CPU used by everything else on the machine ("other", /proc/stat): a row
# with a large "other" was measured on a busy machine and is not comparable. On an
# idle machine "other" is still ~5-10 %: softirq time charged to the idle task (no
# process) and kernel threads; rows above 25 % get a '*'.

# The rows, in the order they run within a round: name|label|wrk script|url|wire bytes.
# Cases add them in any order; order_rows sorts them into ROW_ORDER (the order of
# the tables; rows not named there run last, in the order they were added).
rows=()
ROW_ORDER="agate-bare agate agate-auth agate-resume agate-log agate-sample agate-lognull nginx nginx-ofc haproxy
  agate-proxy agate-proxy-pass nginx-proxy haproxy-proxy pushpin-proxy agate-cache nginx-cache haproxy-cache
  base-echo new-echo base-proxy new-proxy base-cache new-cache"
declare -A LABEL
add_row() {  # add_row NAME LABEL SCRIPT URL WIRE-BYTES (a second add of NAME is ignored)
  [ -n "${LABEL[$1]:-}" ] && return 0
  rows+=("$1|$2|$3|$4|$5"); LABEL[$1]=$2
}
has_row() { [ -n "${LABEL[$1]:-}" ]; }
order_rows() {
  local sorted=() n spec
  local -A known=()
  for n in $ROW_ORDER; do
    known[$n]=1
    for spec in "${rows[@]}"; do [ "${spec%%|*}" = "$n" ] && sorted+=("$spec"); done
  done
  for spec in "${rows[@]}"; do [ -n "${known[${spec%%|*}]:-}" ] || sorted+=("$spec"); done
  rows=("${sorted[@]}")
  names=()
  for spec in "${rows[@]}"; do names+=("${spec%%|*}"); done
}
row_spec() {  # row_spec NAME: sets spec_script, spec_url for a row
  local spec rn
  for spec in "${rows[@]}"; do
    IFS='|' read -r rn _ spec_script spec_url _ <<<"$spec"
    [ "$rn" = "$1" ] && return 0
  done
  return 1
}

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
cpu_busy() {  # percent of all CPUs busy over one second, from /proc/stat
  local a b
  a=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat); sleep 1
  b=$(awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); u = y[1] - x[1]; i = y[2] - x[2];
    printf "%.0f", (u + i) ? 100 * u / (u + i) : 0 }'
}

# machine_header: what the run's numbers depend on: the command, date, commit, machine
# (CPU model, nproc, kernel), the servers' and wrk's versions, the agate binaries, and
# how busy the machine was before the start (BENCH_WAIT_IDLE: wait for it to quieten).
machine_header() {
  local cpu_model busy waited
  ncpu=$(nproc)
  cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  echo "== agate vs nginx, same machine, same run (cases: $BENCH_CASES)"
  echo "command: $run_cmd"
  echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "commit:  $commit (committed $(git log -1 --format=%cd --date=short 2>/dev/null || echo ?))"
  echo "machine: nproc=$ncpu, cpu=${cpu_model:-unknown}, kernel=$(uname -r), mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "tools:   $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'),${HAPROXY:+ haproxy/$("$HAPROXY" -v 2>/dev/null | awk 'NR == 1 {print $3}'),}${PUSHPIN:+ pushpin/$("$PUSHPIN" --version 2>/dev/null | awk 'NR == 1 {print $2}') (condure/$(condure --version 2>/dev/null | awk 'NR == 1 {print $2}'), zurl/$(dpkg-query -W -f='${Version}' zurl 2>/dev/null || echo '?')),} $(wrk -v 2>&1 | awk 'NR==1 {print $1, $2}'), $(timeout 5 "$AGATE" --version 2>/dev/null | head -1 || echo "agate ?") ($AGATE_BIN, $commit, built $(date -u -r "$AGATE_BIN" '+%H:%M:%S UTC'), $(readelf -d "$AGATE" 2>/dev/null | grep -q 'NEEDED.*jemalloc' && echo jemalloc || echo 'no jemalloc'))"
  has_case baseline &&
    echo "baseline: agate from $BASE_SHORT ($BASE_BIN, built $(date -u -r "$BASE_BIN" '+%Y-%m-%d %H:%M:%S UTC'), $(readelf -d "$AGATE_BASE" 2>/dev/null | grep -q 'NEEDED.*jemalloc' && echo jemalloc || echo 'no jemalloc'))"
  # How busy is the machine before we start? Other work on these CPUs skews everything.
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
# shellcheck disable=SC2086 # pid lists are split into words on purpose
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

# slice NAME OUT: one BENCH_PAIR_SECONDS wrk run against a row's server, no warm-up
# (a paired comparison's unit). Sets SLICE_RPS (req/s) and SLICE_US (the server's CPU
# per response, us: its processes' ticks over the slice / the responses wrk read).
# Runs in this shell, not in $(...), so that a failure reaches $fail.
# shellcheck disable=SC2086 # pid lists are split into words on purpose
slice() {
  local spids t0 t1 req
  row_spec "$1" || die "slice: no row $1"
  spids=$(server_pids "$1")
  t0=$(pid_ticks $spids)
  run_wrk "$BENCH_PAIR_SECONDS" "$spec_script" "$spec_url" "$2"
  t1=$(pid_ticks $spids)
  if grep -q 'Non-2xx or 3xx responses:' "$2"; then
    echo "  FAIL  $1 paired slice: $(grep 'Non-2xx' "$2")"; fail=1
  fi
  SLICE_RPS=$(awk '/^Requests\/sec:/ {print $2}' "$2")
  req=$(sed -n 's/^BENCH_SUMMARY requests=\([0-9]*\).*/\1/p' "$2")
  if [ -z "$SLICE_RPS" ] || [ "${req:-0}" -eq 0 ]; then cat "$2" >&2; die "could not parse wrk output for $1 (paired slice)"; fi
  SLICE_US=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v r="$req" 'BEGIN { printf "%.3f", 1e6 * t / hz / r }')
}

# --- tables -----------------------------------------------------------------------------
BUSY_MARK=25   # rows where other processes used more than this % of one CPU get a '*'
busy_rows=0
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
versus() {  # versus KEY-PREFIX A B: one line of A/B ratios
  printf '  %-26s req/s %sx, p50 %sx, p99 %sx, server CPU per response %sx\n' "$2/$3:" \
    "$(ratio "${RPS[$1:$2]}" "${RPS[$1:$3]}")" "$(ratio "${P50[$1:$2]}" "${P50[$1:$3]}")" \
    "$(ratio "${P99[$1:$2]}" "${P99[$1:$3]}")" "$(ratio "${USREQ[$1:$2]}" "${USREQ[$1:$3]}")"
}
# versus_cost KEY-PREFIX A B: A against B as differences (the overhead cases), plus,
# for the means of 3+ rounds, the median of the per-round differences (it resists
# one noisy row). No newline: the caller may add to the line.
versus_cost() {
  printf '  %-26s req/s %s, server CPU per response %s, p99 %sx' "$2 vs $3:" \
    "$(pctdiff "${RPS[$1:$2]}" "${RPS[$1:$3]}")" "$(pctdiff "${USREQ[$1:$2]}" "${USREQ[$1:$3]}")" \
    "$(ratio "${P99[$1:$2]}" "${P99[$1:$3]}")"
  if [ "$1" = mean ] && [ "$BENCH_ROUNDS" -ge 3 ]; then
    printf '; median of rounds: req/s %s, CPU %s' "$(median_pct RPS "$2" "$3")" "$(median_pct USREQ "$2" "$3")"
  fi
}

# timed_rounds TABLE-CASES...: BENCH_ROUNDS rounds over every row, each round's
# tables, then the means over rounds (the "mean" key) and their tables.
timed_rounds() {
  local nrows=${#rows[@]} r i spec n script url wire order
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
    for_cases table "$*" "$r"
  done
  for n in "${names[@]}"; do
    RPS[mean:$n]=$(mean RPS "$n"); P50[mean:$n]=$(mean P50 "$n"); P90[mean:$n]=$(mean P90 "$n"); P99[mean:$n]=$(mean P99 "$n")
    SRV[mean:$n]=$(mean SRV "$n" | awk '{printf "%.0f", $1}'); USREQ[mean:$n]=$(mean USREQ "$n" | awk '{printf "%.1f", $1}')
    WRKC[mean:$n]=$(mean WRKC "$n" | awk '{printf "%.0f", $1}'); OTHER[mean:$n]=$(mean OTHER "$n" | awk '{printf "%.0f", $1}')
    UPS[mean:$n]=$(mean UPS "$n" | awk '{printf "%.0f", $1}'); UPSREQ[mean:$n]=$(mean UPSREQ "$n" | awk '{printf "%.1f", $1}')
    LOGUS[mean:$n]=$(mean LOGUS "$n")
    BPR[mean:$n]=${BPR[1:$n]}; NON2XX[mean:$n]=$(total NON2XX "$n"); SOCKERR[mean:$n]=$(total SOCKERR "$n")
  done
  echo "-- mean of $BENCH_ROUNDS rounds (non-2xx, sockerr: totals)"
  for_cases table "$*" mean
}

# rows_report: after the timing, what every row's server says about itself.
rows_report() {
  local n all fast
  # Did any agate shard stall? Loop turns that worked longer than 5 ms, from its own
  # histogram (agate_shard_loop_turn_seconds): a tail in wrk's p99 with none here is
  # not a stalled shard.
  for n in "${names[@]}"; do
    is_agate "$n" || continue
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
  return 0
}

# profiles: BENCH_PERF's rows, each profiled under the same wrk load (untimed).
# DWARF call graphs: jansson and libc have no frame pointers, so -g (fp) loses the
# callers of everything inside them.
profiles() {
  local n perf_pids
  set +o pipefail   # head closes its pipe early; that is not an error here
  for n in $BENCH_PERF; do
    has_row "$n" || { echo "  warn  BENCH_PERF: no row named $n"; continue; }
    row_spec "$n"
    echo
    echo "== profile of $n: perf record --call-graph dwarf on its server for ${BENCH_SECONDS}s under the same wrk load (untimed)"
    perf_pids=$(server_pids "$n" | tr ' ' ',')
    timeout -k 5 $(( BENCH_SECONDS + 40 )) wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"$(( BENCH_SECONDS + 4 ))s" -s "$spec_script" "$spec_url" >"$tmp/wrk-perf-$n.txt" 2>&1 &
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
  set -o pipefail
}
