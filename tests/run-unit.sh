#!/usr/bin/env bash
# Runs every cmocka unit-test binary: build/rel/tests/test_* and build/asan/tests/test_*.
# Exits non-zero if any binary fails (non-zero exit, or a sanitizer report).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

bins=()
for dir in build/rel/tests build/asan/tests; do
  [ -d "$dir" ] || continue
  for f in "$dir"/test_*; do
    [ -f "$f" ] && [ -x "$f" ] || continue
    case "$f" in *.d|*.o) continue ;; esac
    bins+=("$f")
  done
done

if [ ${#bins[@]} -eq 0 ]; then
  echo "run-unit: no unit-test binaries under build/rel/tests or build/asan/tests (build them with make)"
  exit 0
fi

failed=()
for b in "${bins[@]}"; do
  echo "=== $b"
  log=$(mktemp)
  rc=0
  "$b" 2>&1 | tee "$log" || rc=$?
  # A sanitizer report fails the binary even if it exited 0.
  if [ "$rc" -eq 0 ] && grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$log"; then rc=99; fi
  if [ "$rc" -ne 0 ]; then
    echo "run-unit: FAILED $b (exit $rc)"
    # A crash or a sanitizer report after cmocka's summary leaves no failed-test
    # count behind: report it as one failed test so the totals show it.
    if ! grep -qE '^\[  FAILED  \] [0-9]+ test' "$log"; then
      echo "[  FAILED  ] 1 test(s): $b exited $rc without a cmocka failure summary (crash or sanitizer report)"
    fi
    failed+=("$b")
  fi
  rm -f "$log"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "run-unit: ${#failed[@]} of ${#bins[@]} binaries failed: ${failed[*]}"
  exit 1
fi
echo "run-unit: all ${#bins[@]} binaries passed"
