#!/usr/bin/env bash
# Unit tests (cmocka) then integration tests (node --test), continuing after a
# failure; ends with exactly one line "N passed, N failed" and exits non-zero if
# anything failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

passed=0
failed=0
status=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run_step NAME CMD...: runs CMD with its output shown and kept, adds up its counts.
run_step() {
  local name=$1; shift
  local out="$tmp/$name.log" rc=0 p=0 f=0
  "$@" 2>&1 | tee "$out" || rc=$?
  # cmocka: "[  PASSED  ] N test(s)." and "[  FAILED  ] N test(s), listed below:"
  p=$(( p + $(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}') ))
  f=$(( f + $(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}') ))
  # node --test (TAP): "# pass N", "# fail N", "# cancelled N" (cancelled counts as failed)
  p=$(( p + $(sed -n 's/^# pass \([0-9][0-9]*\)$/\1/p' "$out" | awk '{s+=$1} END {print s+0}') ))
  f=$(( f + $(sed -n 's/^# \(fail\|cancelled\) \([0-9][0-9]*\)$/\2/p' "$out" | awk '{s+=$1} END {print s+0}') ))
  if [ "$rc" -ne 0 ]; then
    status=1
    # A step that failed without any failed test counted (crash, install error) counts as one.
    [ "$f" -gt 0 ] || f=1
  fi
  passed=$(( passed + p ))
  failed=$(( failed + f ))
  # Name what failed, under the run it belongs to, for the summary at the end.
  awk -v step="$name" '
    /^=== /                                 { run = substr($0, 5); next }
    /^ *not ok / || /^\[  FAILED  \] [^0-9]/ || /^run-(unit|integration): FAILED/ {
      sub(/^ +/, ""); print step (run != "" ? " [" run "]" : "") ": " $0 }
  ' "$out" >> "$tmp/failures"
}

run_step unit tests/run-unit.sh
run_step integration tests/run-integration.sh
run_step deploy deploy/check.sh

# CI shows the end of this output: the failures go just above the totals.
if [ -s "$tmp/failures" ]; then
  echo "--- what failed"
  cat "$tmp/failures"
fi
echo "$passed passed, $failed failed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
