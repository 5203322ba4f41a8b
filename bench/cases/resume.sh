# shellcheck shell=bash disable=SC2016,SC2034,SC2154 # check strings are eval'd; globals shared with bench/run.sh
declare -A RPX_URL
# bench/cases/resume.sh: a resumable run against a plain one, in memory (issue 27:
# at most 5 % more CPU per event) and with Redis (at most 15 %).
#
# The echo case's agate (echo agent, plain) against one whose echo agent has
# `resume: {enabled: true}`: every event is appended to the run's log, read back
# by the client's follower run at the turn's end and written with an `id:` line,
# and each run makes a log (its token from getrandom, a table insert). Every
# request has the same runId (bench/echo.lua sends one body), so each run takes
# over the previous run's log (same caller): no 409, and the logs replaced are
# freed by their owners' sweeps. Checked: 200 with X-Agate-Resume-Token, as many
# events as the plain run, each with `id: <runId>:<seq>` from 1.

resume_setup() {
  local status rid ids resume_url resume_wire
  add_row agate "agate echo (log off)" bench/echo.lua "$agate_url" "$agate_wire"
  echo "-- resume: agate with the echo agent resumable (in memory)"
  printf 'agents:\n  echo:\n    type: echo\n    resume: {enabled: true}\n' >"$tmp/agate-resume.yaml"
  start_agate agate-resume /dev/null AGATE_CONFIG="$tmp/agate-resume.yaml"
  resume_url="http://127.0.0.1:${MAINPORT[agate-resume]}/v1/agents/echo/run"
  status=$(post "$resume_url" "$tmp/agate-resume.body" "$tmp/agate-resume.headers")
  resume_wire=$(wire_bytes "$resume_url")
  rid=$(grep -o '"runId":"[^"]*"' "$BODY_FILE" | head -1 | sed 's/^"runId":"//; s/"$//')
  ids=$(grep '^id: ' "$tmp/agate-resume.body" | sed "s/^id: $rid://" | tr '\n' ' ')
  check "agate-resume answers 200 text/event-stream ($status) with X-Agate-Resume-Token" \
    '[[ $status == "200 text/event-stream"* ]] && grep -qi "^x-agate-resume-token: [0-9a-f]\{32\}" "$tmp/agate-resume.headers"'
  check "agate-resume sends $n_events events, ids $rid:1..$n_events" \
    '[ "$(grep -c "^data: " "$tmp/agate-resume.body")" -eq "$n_events" ] && [ "$ids" = "$(seq -s " " 1 "$n_events") " ]'
  echo "  info  agate-resume on the wire $resume_wire bytes (plain: $agate_wire)"
  add_row agate-resume "agate echo, resumable" bench/echo.lua "$resume_url" "$resume_wire"
  resume_redis_setup
  resume_proxy_setup
}

# A proxy agent in front of an nginx serving the recorded 44-event stream (as the
# proxy case's upstream), plain and resumable: the producer is the upstream's
# stream, and a plain run relays its frames as a block where a resumable one
# logs and relays each event with its id. Checked: both relay every event, the
# resumable one with ids from 1.
resume_proxy_setup() {
  local saved_up=${UP_PORT:-} up n status
  nginx_upstream resume-upstream "$body"
  up="http://127.0.0.1:$UP_PORT/agent"
  UP_PORT=$saved_up
  for n in agate-rpx agate-rpx-resume; do
    printf 'agents:\n  up:\n    type: proxy\n    endpoints: [%s]\n    validation: strict\n    pool: {max_idle: %s}\n' \
      "$up" "$BENCH_PROXY_POOL" >"$tmp/$n.yaml"
  done
  printf '    resume: {enabled: true}\n' >>"$tmp/agate-rpx-resume.yaml"
  echo "-- resume: agate proxying the recorded stream, plain and resumable"
  for n in agate-rpx agate-rpx-resume; do
    start_agate $n /dev/null AGATE_CONFIG="$tmp/$n.yaml"
    RPX_URL[$n]="http://127.0.0.1:${MAINPORT[$n]}/v1/agents/up/run"
    status=$(post "${RPX_URL[$n]}" "$tmp/$n.body" "$tmp/$n.headers")
    check "$n answers 200 text/event-stream ($status) with the upstream's $n_events events" \
      '[[ $status == "200 text/event-stream"* ]] && [ "$(grep -c "^data: " "$tmp/$n.body")" -eq "$n_events" ]'
  done
  check "agate-rpx-resume's events carry ids 1..$n_events" \
    '[ "$(grep -c "^id: [^:]*:[0-9]*$" "$tmp/agate-rpx-resume.body")" -eq "$n_events" ]'
  add_row agate-rpx "agate proxy (log off)" bench/echo.lua "${RPX_URL[agate-rpx]}" "$(wire_bytes "${RPX_URL[agate-rpx]}")"
  add_row agate-rpx-resume "agate proxy, resumable" bench/echo.lua "${RPX_URL[agate-rpx-resume]}" \
    "$(wire_bytes "${RPX_URL[agate-rpx-resume]}")"
}

# The same, with redis.address set: each run's events also go to a Redis Stream
# (one EVALSHA per run per loop turn) on a local redis-server. Checked: the run
# answers as in memory, and the events reached the Stream (XLEN, the metric).
resume_redis_setup() {
  local status rport url wire written
  command -v redis-server >/dev/null || { echo "  skip  resume with Redis: no redis-server"; return 0; }
  free_port; rport=$PORT
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >"$tmp/redis.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
  echo "-- resume: agate with the echo agent resumable, runs written to Redis Streams"
  start_agate agate-resume-redis /dev/null AGATE_CONFIG="$tmp/agate-resume.yaml" AGATE_REDIS_ADDRESS="127.0.0.1:$rport"
  url="http://127.0.0.1:${MAINPORT[agate-resume-redis]}/v1/agents/echo/run"
  for _ in $(seq 50); do [ "$(metric agate-resume-redis agate_redis_up)" = "$BENCH_SHARDS" ] && break; sleep 0.1; done
  status=$(post "$url" "$tmp/agate-resume-redis.body" "$tmp/agate-resume-redis.headers")
  wire=$(wire_bytes "$url")
  sleep 0.2
  written=$(metric agate-resume-redis agate_resume_redis_events_written_total)
  check "agate-resume-redis answers 200 text/event-stream ($status), $n_events events" \
    '[[ $status == "200 text/event-stream"* ]] && [ "$(grep -c "^data: " "$tmp/agate-resume-redis.body")" -eq "$n_events" ]'
  check "agate-resume-redis wrote its runs' events to Redis ($written events)" '[ "$written" -ge "$n_events" ]'
  add_row agate-resume-redis "agate echo, resumable, Redis" bench/echo.lua "$url" "$wire"
}

resume_table() {
  local n
  echo "  [resume] the echo run resumable (event log in memory, ids) vs plain"
  header
  for n in agate agate-resume agate-resume-redis agate-rpx agate-rpx-resume; do has_row $n && row "$1" $n; done
  versus_cost "$1" agate-resume agate
  has_row agate-resume-redis && versus_cost "$1" agate-resume-redis agate
  has_row agate-rpx-resume && versus_cost "$1" agate-rpx-resume agate-rpx
  echo
}

# The goal is CPU per event: the pairs compare agate's CPU per response (its
# ticks over each slice's responses; the same events per response in both), not
# req/s, which on this 2-CPU box also moves with wrk's and redis-server's CPU.
resume_pairs() {
  add_comparison agate agate-resume cpu
  has_row agate-resume-redis && add_comparison agate agate-resume-redis cpu
  has_row agate-rpx-resume && add_comparison agate-rpx agate-rpx-resume cpu
}

resume_targets() {
  local per_event
  per_event=$(awk -v a="${USREQ[mean:agate-resume]}" -v b="${USREQ[mean:agate]}" -v n="$n_events" \
    'BEGIN { printf "%.3f us/event resumable, %.3f plain", a / n, b / n }')
  echo "  info  agate-resume: server CPU per event $per_event"
  echo "  issue 27 target, a resumable run in memory at most 5 % more CPU per event: $(pctdiff "${USREQ[mean:agate-resume]}" "${USREQ[mean:agate]}") on the mean"
  paired_verdict agate-resume atmost 1.05
  has_row agate-resume-redis || return 0
  per_event=$(awk -v a="${USREQ[mean:agate-resume-redis]}" -v b="${USREQ[mean:agate]}" -v n="$n_events" \
    'BEGIN { printf "%.3f us/event resumable with Redis, %.3f plain", a / n, b / n }')
  echo "  info  agate-resume-redis: server CPU per event $per_event (agate's own; redis-server's is the row's 'other' column)"
  echo "  issue 27 target, a resumable run with Redis at most 15 % more CPU per event: $(pctdiff "${USREQ[mean:agate-resume-redis]}" "${USREQ[mean:agate]}") on the mean"
  paired_verdict agate-resume-redis atmost 1.15
  has_row agate-rpx-resume || return 0
  echo "  info  agate-rpx-resume: a proxy agent's run resumable against plain (server CPU per response; the same 5 % goal, in memory)"
  paired_verdict agate-rpx-resume atmost 1.05
}
