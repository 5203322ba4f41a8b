# shellcheck shell=bash disable=SC2016,SC2034,SC2154 # check strings are eval'd; globals shared with bench/run.sh
# bench/cases/ws.sh: AG-UI over WebSocket (issue 5; figures, no target). agate's echo
# agent driven by build/wsload (bench/wsload.c: epoll client, runs/s and
# send-to-RUN_FINISHED latency) in two shapes: many runs over few connections
# ($BENCH_WS_CONNS connections x $BENCH_WS_RUNS runs in flight, the same 40-word
# message as the echo case) and one run per connection (upgrade, run, close;
# $BENCH_WS_ONE_CONNS at a time). No nginx counterpart; run after the wrk rounds,
# BENCH_ROUNDS times each. Checked: no WebSocket run ended in error.

ws_run() {
  local r shape args label s0 s1 line runs cpu ended
  [ -x build/wsload ] || make --no-print-directory build/wsload >/dev/null || die "cannot build build/wsload"
  echo
  echo "== ws: agate echo over WebSocket, build/wsload, ${BENCH_SECONDS}s per run after 1s warm-up, $BENCH_ROUNDS rounds"
  start_agate agate-ws /dev/null
  printf '  %-44s %10s %12s %9s %9s %9s %12s\n' shape runs/s events/s p50_ms p90_ms p99_ms "us CPU/run"
  kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$line"; }
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
      runs=$(kv runs)
      cpu=$(awk -v t=$((s1 - s0)) -v hz="$CLK_TCK" -v n="$runs" 'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')
      printf '  %-44s %10s %12s %9s %9s %9s %12s\n' "r$r $label" "$(kv runs_per_s)" "$(kv events_per_s)" "$(kv p50_ms)" "$(kv p90_ms)" "$(kv p99_ms)" "$cpu"
    done
  done
  echo "  (us CPU/run: agate's CPU, 1s warm-up included, over the measured runs: an upper bound)"
  ended=$(metric agate-ws 'agate_runs_ended_total{agent="echo",transport="ws",outcome="error"}' 'agate_runs_ended_total{agent="echo",transport="ws",outcome="cut"}')
  check "agate-ws: no WebSocket run ended in error ($ended)" '[ "${ended:-0}" = 0 ]'
}
