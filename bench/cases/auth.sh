# shellcheck shell=bash disable=SC2016,SC2034,SC2154 # check strings are eval'd; globals shared with bench/run.sh
# bench/cases/auth.sh: access control and rate limiting on against off (issue 6:
# within 5 % of off in runs/s).
#
# The echo case's agate (no auth, no rules) against one with an API key required on
# every request (bench/echo_auth.lua sends it: a SHA-256 and constant-time compare
# per request) and two rate-limit rules that never refuse: per API key, 1e6/s with
# burst 1e6 and 100000 concurrent runs, and one global per-agent rule at 1e7/s
# (every request of every shard a CAS on the same cell). Checked: a request without
# the key is 401; after the timing, no limiter lookup went without a cell.

auth_setup() {
  local status noauth auth_url auth_wire
  add_row agate "agate echo (log off)" bench/echo.lua "$agate_url" "$agate_wire"
  echo "-- auth: agate with an API key required and two rate-limit rules that never refuse"
  BENCH_API_KEY="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  export BENCH_API_KEY
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
}

auth_table() {
  local n
  echo "  [auth] the echo run with an API key and rate limits on vs off"
  header
  for n in agate agate-auth; do has_row $n && row "$1" $n; done
  versus_cost "$1" agate-auth agate
  echo
}

auth_pairs() { add_comparison agate agate-auth; }

auth_targets() {
  local tfull ar med
  # A refusal (429) would be a non-2xx response, which fails its row already.
  tfull=$(metric agate-auth 'agate_ratelimit_table_full_total')
  echo "  info  agate-auth: limiter lookups without a cell (fail-open): ${tfull:-0}"
  [ "${tfull:-0}" = 0 ] || { echo "  FAIL  agate-auth: the limiter table was full"; fail=1; }
  ar=$(awk -v a="${RPS[mean:agate-auth]}" -v b="${RPS[mean:agate]}" 'BEGIN { printf "%.1f", 100 * (1 - a / b) }')
  med=""
  [ "$BENCH_ROUNDS" -ge 3 ] && med=" (median of rounds: req/s $(median_pct RPS agate-auth agate), CPU per response $(median_pct USREQ agate-auth agate))"
  echo "  issue 6 target, auth + rate limiting on within 5 % of off in runs/s: mean cost ${ar} % of req/s$med: $(awk -v c="$ar" 'BEGIN { print (c < 5) ? "met" : "NOT met" }') on the mean (ratio $(ratio "${RPS[mean:agate-auth]}" "${RPS[mean:agate]}")x)"
  paired_verdict agate-auth cost 5
}
