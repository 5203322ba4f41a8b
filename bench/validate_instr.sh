#!/usr/bin/env bash
# Instructions per event of validate_event (inclusive) and of the whole
# validate row (validator new/free per run included), counted by callgrind on
# a build of bench/validate_bench.c with RUNS=500 ROUNDS=1: 2 x 500 x 44 events.
# Instruction counts do not depend on machine load, unlike the ns figures.
set -euo pipefail
bin=${1:-build/validate_bench_instr}
events=$((2 * 500 * 44))
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {   # $1: function to collect inside
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" --toggle-collect="$1" \
        "$bin" validate >/dev/null 2>"$out/log"
    grep -m1 '^summary:' "$out/cg" | awk '{print $2}'
}
ev=$(count validate_event)
all=$(count bench_validate)
awk -v e="$ev" -v a="$all" -v n="$events" 'BEGIN {
    printf "validate_event: %.0f instructions/event (inclusive)\n", e / n
    printf "validate row:   %.0f instructions/event (validate_new/_free per run included)\n", a / n
}'
