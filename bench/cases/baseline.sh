# shellcheck shell=bash disable=SC2016,SC2034,SC2154 # check strings are eval'd; globals shared with bench/run.sh
# bench/cases/baseline.sh: build/agate against agate built from an earlier commit
# (BENCH_BASELINE=<commit>; `make bench BASELINE=3bf7da1`), in the same run: the
# echo, proxy and cache CPU per response of each, new/baseline. A change that should
# cost nothing (issue 22's redesign) shows as a ratio whose interval holds 1.
#
# The baseline is built once, from a git worktree of that commit in
# build/baseline-<sha>/ (`make build/agate` there), and reused by later runs. Three
# pairs of agates, each pair the same config on the two binaries: the echo agent
# (metrics on, logs off, as the echo case's agate); a proxy agent, validation strict,
# in front of an nginx serving the recorded stream (as the proxy case's agate-proxy);
# a cached proxy agent answering HITs (as the cache case's agate-cache, asked once
# before timing). CPU per response is the server process's CPU ticks
# (/proc/PID/stat: utime+stime, all threads) over a slice / the responses wrk read in
# it. The verdict is paired (bench/lib/stats.sh): BENCH_PAIRS pairs of slices per
# comparison, interleaved with every other comparison's, the median of the per-pair
# ratios new/baseline with its distribution-free interval. Checked: both binaries
# answer the same events, relay the upstream's bytes and serve HITs; after the timing,
# no upstream failure and one upstream attempt per cache.

BASE_WHATS="echo proxy cache"

# baseline_build: sets BASE_SHORT and BASE_BIN (build/baseline-<sha>/build/agate),
# creating the worktree and building it when missing.
baseline_build() {
  local sha dir
  sha=$(git rev-parse -q --verify "${BENCH_BASELINE}^{commit}") ||
    die "BENCH_BASELINE=$BENCH_BASELINE: no such commit in this repository"
  BASE_SHORT=$(git rev-parse --short "$sha")
  dir=build/baseline-${sha:0:12}
  if [ ! -x "$dir/build/agate" ]; then
    if [ ! -e "$dir/.git" ]; then
      # -f: a worktree deleted with build/ (make clean) is still registered; take it over.
      git worktree add -f --detach "$dir" "$sha" >/dev/null || die "cannot create the worktree $dir"
    fi
    echo "bench: building the baseline agate ($BASE_SHORT) in $dir"
    # Its own make, not a sub-make of `make bench` (no jobserver, no command-line variables).
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$dir" --no-print-directory -j"$(nproc)" build/agate ||
      die "cannot build the baseline agate in $dir"
  fi
  BASE_BIN=$dir/build/agate
}

baseline_setup() {
  local v w bin status u n_hit
  echo "-- baseline: build/agate (new) against agate from $BASE_SHORT (baseline), the same configs on both"
  cp "$body" "$tmp/www/bl-stream.sse"
  nginx_upstream upstream-bl "$tmp/www/bl-stream.sse"
  proxy_agent_yaml "http://127.0.0.1:$UP_PORT/agent" strict >"$tmp/bl-proxy.yaml"
  cache_agent_yaml "http://127.0.0.1:$UP_PORT/agent" >"$tmp/bl-cache.yaml"
  for v in base new; do
    bin=$AGATE; [ $v = base ] && bin=$AGATE_BASE
    START_BIN=$bin start_agate "$v-echo" /dev/null
    START_BIN=$bin start_agate "$v-proxy" /dev/null AGATE_CONFIG="$tmp/bl-proxy.yaml"
    START_BIN=$bin start_agate "$v-cache" /dev/null AGATE_CONFIG="$tmp/bl-cache.yaml"
    UPSTREAM_OF["$v-proxy"]=upstream-bl

    u="http://127.0.0.1:${MAINPORT[$v-echo]}/v1/agents/echo/run"
    status=$(post "$u" "$tmp/$v-echo.body" "$tmp/$v-echo.headers")
    check "$v-echo answers 200 text/event-stream, $n_events events, $body_bytes-byte body" \
      '[[ $status == "200 text/event-stream"* ]] && [ "$(wc -c <"$tmp/$v-echo.body")" -eq "$body_bytes" ] && [ "$(grep -c "^data: " "$tmp/$v-echo.body")" -eq "$n_events" ]'
    add_row "$v-echo" "echo ($(baseline_label $v))" bench/echo.lua "$u" "$(wire_bytes "$u")"

    u="http://127.0.0.1:${MAINPORT[$v-proxy]}/v1/agents/up/run"
    status=$(post "$u" "$tmp/$v-proxy.body" "$tmp/$v-proxy.headers")
    check "$v-proxy answers 200 text/event-stream ($status), body byte-identical to the upstream's" \
      '[[ $status == "200 text/event-stream"* ]] && cmp -s "$tmp/$v-proxy.body" "$body"'
    add_row "$v-proxy" "proxy strict ($(baseline_label $v))" bench/echo.lua "$u" "$(wire_bytes "$u")"

    u="http://127.0.0.1:${MAINPORT[$v-cache]}/v1/agents/up/run"
    status=$(post "$u" "$tmp/$v-cache-miss.body" "$tmp/$v-cache-miss.headers")
    check "$v-cache: first request X-Cache: MISS ($status), the upstream's bytes" \
      '[[ $status == "200 text/event-stream"* ]] && grep -qi "^x-cache: *MISS" "$tmp/$v-cache-miss.headers" && cmp -s "$tmp/$v-cache-miss.body" "$body"'
    status=$(post "$u" "$tmp/$v-cache-hit.body" "$tmp/$v-cache-hit.headers")
    n_hit=$(grep -c '^data: ' "$tmp/$v-cache-hit.body" || true)
    check "$v-cache: then X-Cache: HIT ($status), $n_hit events (want $n_events)" \
      '[[ $status == "200 text/event-stream"* ]] && grep -qi "^x-cache: *HIT" "$tmp/$v-cache-hit.headers" && [ "$n_hit" -eq "$n_events" ]'
    add_row "$v-cache" "cache HIT ($(baseline_label $v))" bench/echo.lua "$u" "$(wire_bytes "$u")"
  done
}
baseline_label() { if [ "$1" = base ]; then echo baseline; else echo new; fi; }

baseline_table() {
  local w
  echo "  [baseline] build/agate (new) against agate from $BASE_SHORT (baseline)"
  header
  for w in $BASE_WHATS; do row "$1" "base-$w"; row "$1" "new-$w"; done
  for w in $BASE_WHATS; do versus "$1" "new-$w" "base-$w"; done
}

baseline_pairs() {
  local w
  for w in $BASE_WHATS; do add_comparison "base-$w" "new-$w" cpu; done
}

baseline_targets() {
  local w
  upstream_clean base new
  for w in $BASE_WHATS; do
    echo "  baseline $BASE_SHORT, $w: CPU per response new/baseline $(awk -v a="${USREQ[mean:new-$w]}" -v b="${USREQ[mean:base-$w]}" 'BEGIN { printf "%.3f", a / b }')x on the row means (${USREQ[mean:new-$w]} against ${USREQ[mean:base-$w]} us)"
    paired_verdict "new-$w" same
  done
}
