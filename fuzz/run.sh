#!/usr/bin/env bash
# fuzz/run.sh SECONDS BIN...: runs each libFuzzer target build/fuzz/fuzz_X for
# SECONDS and prints one summary line per target; exits non-zero if any target
# crashed, leaked, timed out, hit undefined behaviour or failed to start.
#
# The checked-in corpus fuzz/corpus/fuzz_X is only read: it is copied into the
# scratch corpus build/fuzz/corpus-X, which comes first on the command line, so
# libFuzzer writes its new inputs there. Crash inputs and logs go to build/fuzz/.
set -u

if [ $# -lt 2 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS BIN..." >&2
    exit 2
fi
secs=$1
shift

bins=()
for b in "$@"; do
    if [ ! -x "$b" ]; then
        echo "$0: $b: not an executable" >&2
        exit 2
    fi
    bins+=("$(realpath "$b")")    # absolute: we change directory below
done
cd "$(dirname "$0")/.." || exit 2

failed=0
for bin in "${bins[@]}"; do
    name=$(basename "$bin")            # fuzz_X
    short=${name#fuzz_}                # X
    seed=fuzz/corpus/$name
    scratch=build/fuzz/corpus-$short
    artifacts=build/fuzz/artifacts-$short/
    log=build/fuzz/$name.log
    mkdir -p "$scratch" "$artifacts"
    args=(-max_total_time="$secs" -print_final_stats=1 -timeout=10
          -artifact_prefix="$artifacts")
    [ -f "fuzz/$name.dict" ] && args+=(-dict="fuzz/$name.dict")
    dirs=("$scratch")
    if [ -d "$seed" ]; then
        cp -n "$seed"/* "$scratch"/ 2>/dev/null
        dirs+=("$seed")
    fi

    "$bin" "${args[@]}" "${dirs[@]}" >"$log" 2>&1
    rc=$?

    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)
    files=$(find "$scratch" -type f | wc -l)
    # UBSan reports and carries on unless built with -fno-sanitize-recover
    ub=$(grep -c 'runtime error:' "$log")
    if [ $rc -eq 0 ] && [ "$ub" -eq 0 ]; then
        status=ok
    elif [ $rc -eq 0 ]; then
        status="FAILED ($ub UBSan reports)"
        failed=1
        rc=1
    else
        status="FAILED (exit $rc)"
        failed=1
    fi
    printf '%-24s %s: %s runs in %ss, cov %s, corpus %s files, peak rss %s MB, log %s\n' \
        "$name" "$status" "${runs:-?}" "$secs" "${cov:-?}" "$files" "${rss:-?}" "$log"
    if [ $rc -ne 0 ]; then
        grep -E 'ERROR: |SUMMARY: |runtime error:|Test unit written to' "$log" | head -n 5 | sed 's/^/    /'
    fi
done
exit $failed
