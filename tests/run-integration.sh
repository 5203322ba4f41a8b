#!/usr/bin/env bash
# Integration tests: the real agate binary against real clients (node --test).
# Runs the whole suite against build/agate-asan (ASan+UBSan), against build/agate
# (release), against build/agate with the epoll engine (engine.backend: epoll, by
# AGATE_ENGINE_BACKEND), and the lifecycle and SSE files once more against
# build/agate started under build/nouring, a seccomp filter that refuses io_uring
# (EPERM): engine.backend auto must fall back to epoll. Usage:
#   tests/run-integration.sh                  # all files, every run
#   tests/run-integration.sh http1 sse        # only tests/integration/{http1,sse}.test.mjs
#   AGATE_BINS="build/agate" tests/run-integration.sh   # only the release binary
#   AGATE_BINS="build/agate:epoll" tests/run-integration.sh   # only the epoll run
# Each AGATE_BINS entry is BIN, BIN:epoll or BIN:nouring (the last runs only the
# lifecycle and sse files of those selected).
# The output is TAP; each run ends with "# pass N" / "# fail N" lines.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Install the pinned npm packages when missing or older than the lock file.
if [ ! -f tests/node_modules/.package-lock.json ] || [ tests/package-lock.json -nt tests/node_modules/.package-lock.json ]; then
  echo "run-integration: installing test packages (npm ci)"
  (cd tests && npm ci --no-audit --no-fund --loglevel=error)
fi

files=()
if [ $# -gt 0 ]; then
  for name in "$@"; do
    case "$name" in
      */*) files+=("$name") ;;
      *.test.mjs) files+=("tests/integration/$name") ;;
      *) files+=("tests/integration/$name.test.mjs") ;;
    esac
  done
else
  for f in tests/integration/*.test.mjs; do files+=("$f"); done
fi
for f in "${files[@]}"; do
  [ -f "$f" ] || { echo "run-integration: no such test file: $f" >&2; exit 2; }
done

# One file at a time (each file starts its own agate processes; timing checks want
# a quiet machine). Node < 20.10 has no --test-concurrency: run the files one by one.
serial=1
node --help 2>/dev/null | grep -q -- '--test-concurrency' || serial=0

read -r -a bins <<< "${AGATE_BINS:-build/agate-asan build/agate build/agate:epoll build/agate:nouring}"
status=0
for entry in "${bins[@]}"; do
  bin=${entry%%:*} mode=${entry#"$bin"}; mode=${mode#:}
  run_files=("${files[@]}")
  run_env=()
  case "$mode" in
    "") ;;
    epoll) run_env=(AGATE_TEST_BACKEND=epoll) ;;
    nouring)
      [ -x build/nouring ] || make --no-print-directory build/nouring
      run_env=(AGATE_TEST_WRAP=build/nouring)
      run_files=()
      for f in "${files[@]}"; do
        case "$f" in */lifecycle.test.mjs|*/sse.test.mjs) run_files+=("$f") ;; esac
      done
      [ ${#run_files[@]} -gt 0 ] || continue ;;
    *) echo "run-integration: AGATE_BINS entry '$entry': the mode is epoll or nouring" >&2; exit 2 ;;
  esac
  echo "=== integration tests against $bin${mode:+ ($mode)}"
  [ -x "$bin" ] || echo "run-integration: $bin is missing or not executable (make $bin); its tests will fail"
  rc=0
  if [ "$serial" -eq 1 ]; then
    # A bound on the whole suite: a test that hangs outside its own timeout (a hook,
    # a handle left open) fails the run here instead of stalling CI until it is killed.
    env AGATE_BIN="$bin" "${run_env[@]}" timeout -k 30 "${INTEGRATION_TIMEOUT:-2400}" \
      node --test --test-concurrency=1 --test-reporter=tap "${run_files[@]}" || rc=$?
    [ "$rc" -eq 124 ] && echo "run-integration: the suite against $entry did not finish within ${INTEGRATION_TIMEOUT:-2400} s"
  else
    for f in "${run_files[@]}"; do
      env AGATE_BIN="$bin" "${run_env[@]}" node --test --test-reporter=tap "$f" || rc=$?
    done
  fi
  if [ "$rc" -ne 0 ]; then
    echo "run-integration: FAILED against $entry (exit $rc)"
    status=1
  else
    echo "run-integration: passed against $entry"
  fi
done
exit "$status"
