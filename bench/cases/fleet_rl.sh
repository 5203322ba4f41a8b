# shellcheck shell=bash disable=SC2016,SC2034,SC2154 # check strings are eval'd; globals shared with bench/run.sh
# bench/cases/fleet_rl.sh: a global rate limit (shared through Redis, issue 26)
# against the same limit local-only. Goals: the per-request cost of a global limit
# within 5 % of a local one (runs/s, paired), and at most 10 Redis round trips per
# 1,000 runs at steady state.
#
# Two agates with one rule that never refuses, keyed `global` on the echo agent
# (10,000,000 a second, burst the same): agate-rl-local enforces it on its own
# limiter table; agate-rl-global marks it `global: true` against a redis-server
# this case starts on loopback (leases of up to 1,000 tokens per shard). Checked
# before timing: both answer 200 with the echo body, and the global one has
# leased from Redis. After the timing: runs per Redis round trip, from
# agate_redis_round_trips_total (sends, each carrying a loop turn's commands) and
# agate_ratelimit_global_round_trips_total (the limiter's commands), against
# agate_runs_started_total; no decision fell back (Redis stayed reachable).

fleet_rl_setup() {
  local rport status
  command -v redis-server >/dev/null || die "fleet_rl: redis-server not installed (deploy/install-deps.sh test)"
  echo "-- fleet_rl: a global rate limit through Redis vs the same limit local-only"
  free_port; rport=$PORT
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --protected-mode no \
    --loglevel warning >"$tmp/redis.log" 2>&1 &
  SPID[redis]=$!
  pids+=("$!")
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break; sleep 0.1; done
  local rule='{name: fleet, key: global, agents: [echo], per_second: 10000000, burst: 10000000'
  printf 'rate_limit:\n  rules:\n    - %s}\n' "$rule" >"$tmp/agate-rl-local.yaml"
  printf 'redis:\n  address: 127.0.0.1:%s\nrate_limit:\n  rules:\n    - %s, global: true}\n' "$rport" "$rule" \
    >"$tmp/agate-rl-global.yaml"
  start_agate agate-rl-local /dev/null AGATE_CONFIG="$tmp/agate-rl-local.yaml"
  start_agate agate-rl-global /dev/null AGATE_CONFIG="$tmp/agate-rl-global.yaml"
  local n url wire
  for n in agate-rl-local agate-rl-global; do
    url="http://127.0.0.1:${MAINPORT[$n]}/v1/agents/echo/run"
    # 8 connections of 20 runs first: the global agate's first runs on a shard wait
    # for a lease (no RateLimit-* then) while its leases grow; SO_REUSEPORT spreads
    # the connections, so every shard has a lease before the check's own connection
    for _ in $(seq 8); do
      # shellcheck disable=SC2046 # one "-o /dev/null URL" pair per run
      curl -s -X POST -H 'Content-Type: application/json' --data-binary "@$BODY_FILE" $(for _ in $(seq 20); do printf -- '-o /dev/null %s ' "$url"; done)
    done
    status=$(curl -s -X POST -H 'Content-Type: application/json' -H 'Accept: text/event-stream' \
      --data-binary "@$BODY_FILE" -D "$tmp/$n.headers" -o "$tmp/$n.body" -w '%{http_code} %{content_type}' "$url")
    check "$n answers 200 text/event-stream ($status), $n_events events, RateLimit-* headers" \
      '[[ $status == "200 text/event-stream"* ]] && [ "$(grep -c "^data: " "$tmp/$n.body")" -eq "$n_events" ] && grep -qi "^ratelimit-remaining:" "$tmp/$n.headers"'
    # the RateLimit-* values differ in length from one response to the next: the
    # wire size of one, as auth.sh does
    wire=$(( $(curl -s --raw -X POST -H 'Content-Type: application/json' -H 'Accept: text/event-stream' \
      --data-binary "@$BODY_FILE" -D - -o "$tmp/wire.b" "$url" | wc -c) + $(wc -c <"$tmp/wire.b") ))
    add_row "$n" "agate echo, ${n#agate-rl-} limit" bench/echo.lua "$url" "$wire"
  done
  local leases
  leases=$(metric agate-rl-global 'agate_ratelimit_global_leases_total')
  check "agate-rl-global leased from Redis ($leases leases)" '[ "${leases:-0}" -ge 1 ]'
}

fleet_rl_table() {
  echo "  [fleet_rl] the echo run under a rate limit shared through Redis vs the same limit local-only"
  header
  local n
  for n in agate-rl-local agate-rl-global; do has_row $n && row "$1" $n; done
  versus_cost "$1" agate-rl-global agate-rl-local
  echo
}

fleet_rl_pairs() { add_comparison agate-rl-local agate-rl-global; }

fleet_rl_targets() {
  local runs sends cmds fb ar
  runs=$(metric agate-rl-global 'agate_runs_started_total')
  sends=$(metric agate-rl-global 'agate_redis_round_trips_total')
  cmds=$(metric agate-rl-global 'agate_ratelimit_global_round_trips_total')
  fb=$(metric agate-rl-global 'agate_ratelimit_global_fallbacks_total')
  echo "  info  agate-rl-global: $runs runs, $sends Redis sends, $cmds limiter commands, $fb fallbacks"
  awk -v r="${runs:-0}" -v s="${sends:-0}" -v c="${cmds:-0}" 'BEGIN {
    if (r == 0) { print "  FAIL  agate-rl-global: no runs counted"; exit }
    printf "  issue 26 target, at most 10 Redis round trips per 1,000 runs: %.2f sends, %.2f limiter commands per 1,000: %s\n",
      1000 * s / r, 1000 * c / r, (1000 * s / r <= 10) ? "met" : "NOT met" }'
  [ "${fb:-0}" = 0 ] || { echo "  FAIL  agate-rl-global: $fb decisions fell back (Redis unreachable during the run)"; fail=1; }
  ar=$(awk -v a="${RPS[mean:agate-rl-global]:-0}" -v b="${RPS[mean:agate-rl-local]:-1}" 'BEGIN { printf "%.1f", 100 * (1 - a / b) }')
  echo "  issue 26 target, a global limit's per-request cost within 5 % of a local one: mean cost ${ar} % of req/s: $(awk -v c="$ar" 'BEGIN { print (c < 5) ? "met" : "NOT met" }') on the mean"
  paired_verdict agate-rl-global cost 5
}
