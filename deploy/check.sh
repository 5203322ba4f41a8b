#!/usr/bin/env bash
# make deploy-check: every file that ships under deploy/ checked against the real
# binary and the real tools (issue 25). One script per artifact in deploy/checks/,
# run in name order, each exiting non-zero on a failure; the output ends with
# TAP-style "# pass N" / "# fail N" lines, which tests/run-all.sh counts.
# Usage: deploy/check.sh [NAME...]   (deploy/checks/NAME.sh only)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

checks=()
if [ $# -gt 0 ]; then
  for n in "$@"; do checks+=("deploy/checks/$n.sh"); done
else
  for f in deploy/checks/*.sh; do [ -e "$f" ] && checks+=("$f"); done
fi

pass=0
fail=0
for f in "${checks[@]}"; do
  name=$(basename "$f" .sh)
  echo "=== deploy-check $name"
  if [ -f "$f" ] && bash "$f"; then
    echo "ok - $name"
    pass=$((pass + 1))
  else
    echo "not ok - $name"
    fail=$((fail + 1))
  fi
done
echo "# pass $pass"
echo "# fail $fail"
[ "$fail" -eq 0 ]
