# names.bash: sourced by the deploy checks. check_metric_names FILE... fails unless
# every agate_* and process_* name written in the files is the name of a sample in
# a live scrape of build/agate (deploy/checks/lib/live.mjs: an echo, a proxy and a
# cached agent, one run each), so a renamed metric cannot leave a rule or a panel
# watching nothing.
check_metric_names() {
  local scraped used missing
  scraped=$(node deploy/checks/lib/live.mjs names) || { echo "live scrape of agate failed" >&2; return 1; }
  # a scrape without the per-agent families means live.mjs did not do its job
  for must in agate_runs_ended_total agate_upstream_breaker_open agate_cache_requests_total; do
    grep -qx "$must" <<<"$scraped" || { echo "live scrape lacks $must" >&2; return 1; }
  done
  used=$(grep -ohE '\b(agate|process)_[a-z0-9_]+' "$@" | sort -u)
  [ "$(wc -l <<<"$used")" -ge 5 ] || { echo "found only: $used in $*" >&2; return 1; }
  missing=$(comm -23 <(echo "$used") <(echo "$scraped"))
  if [ -n "$missing" ]; then
    echo "metric names in $* that agate does not export:" >&2
    echo "$missing" >&2
    return 1
  fi
  echo "$(wc -l <<<"$used") metric names in $*: all in a live scrape"
}
