# shellcheck shell=bash disable=SC2034,SC2154 # globals shared with bench/run.sh and the cases
# bench/lib/stats.sh: the statistics of a bench run: means and medians over rounds,
# and the paired comparisons that decide the targets. Sourced by bench/run.sh.
#
# Why pairs. Two rows of the timed rounds are 12 s or more apart, and a VM's speed
# drifts by several % over a run, so a ratio of row means resolves about +-4 %: too
# coarse for 3 % and 5 % targets. A paired comparison of servers A and B is
# BENCH_PAIRS pairs of back-to-back BENCH_PAIR_SECONDS slices (A then B, B then A in
# every other pair), one ratio B/A per pair, and the median of those ratios with its
# distribution-free confidence interval (pair_stats): drift slower than a pair
# cancels out. Pair p of every comparison runs before pair p+1 of any: a comparison
# measured as one block sits in one machine phase (agate-bare once served 74.9 k
# req/s through the first comparison's 3 min and 82.4 k through the next one's; that
# comparison read 4.0 %, where the same configurations interleaved read 1.2 %).
# The ratio is of req/s (the targets against nginx and the overhead targets) or of
# the server's CPU per response (the baseline case: new/baseline).

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# pctdiff A B: how much A is above B, in %, signed.
pctdiff() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f%%", 100 * (a / b - 1) }'; }
median_pct() {  # median_pct ARRAYNAME A B: median over rounds of (A/B - 1), in %
  local -n arr=$1; local r
  for r in $(seq "$BENCH_ROUNDS"); do awk -v a="${arr[$r:$2]}" -v b="${arr[$r:$3]}" 'BEGIN { print 100 * (a / b - 1) }'; done |
    sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%+.1f%%", m }'
}
mean() {  # mean ARRAYNAME NAME: over rounds
  local -n arr=$1; local s=0 r
  for r in $(seq "$BENCH_ROUNDS"); do s=$(awk -v s="$s" -v x="${arr[$r:$2]}" 'BEGIN { print s + x }'); done
  awk -v s="$s" -v n="$BENCH_ROUNDS" 'BEGIN { printf "%.3f", s / n }'
}
total() {  # total ARRAYNAME NAME: over rounds
  local -n arr=$1; local s=0 r
  for r in $(seq "$BENCH_ROUNDS"); do s=$((s + ${arr[$r:$2]})); done
  echo "$s"
}

# pair_stats: reads "ratio" lines, sorted; prints "median lo hi mean coverage": the
# median with its distribution-free confidence interval (order statistics x(k) and
# x(n+1-k), k the largest with P(Binomial(n, 1/2) < k) <= 2.5 %; for 10 pairs x(2)
# and x(9), 97.9 % coverage), then the mean. The median, not the mean: one slice in
# which a server stalled (nginx-proxy served 24 k req/s in one 3 s slice, against
# 62-71 k in the other nine) moves a mean of ratios by 0.2, a median not at all.
# Fewer than 6 pairs give no 95 % interval; the range is printed then.
pair_stats() {
  awk '{ r[NR] = $1; s += $1 } END {
    n = NR; med = (n % 2) ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
    k = 0; c = 0; p = 0.5 ^ n; b = 1
    for (j = 0; j < n; j++) {   # c = P(X <= j); stop before it passes 2.5 %
      if (j > 0) b = b * (n - j + 1) / j
      if (c + b * p > 0.025) break
      c += b * p; k = j + 1
    }
    if (k < 1) { lo = r[1]; hi = r[n]; cov = 1 - 2 * p } else { lo = r[k]; hi = r[n + 1 - k]; cov = 1 - 2 * c }
    printf "%.4f %.4f %.4f %.4f %.1f\n", med, lo, hi, s / n, 100 * cov }'
}

# add_comparison A B [rps|cpu]: a paired comparison, reported as B/A (of req/s, or
# of the server's CPU per response) under B's name in PAIR_MED etc.
comparisons=()
add_comparison() { comparisons+=("$1 $2 ${3:-rps}"); }
declare -A PAIR_MED PAIR_LO PAIR_HI PAIR_MEAN PAIR_COV
# run_pairs: every comparison, BENCH_PAIRS pairs each, interleaved; prints one line
# per comparison.
run_pairs() {
  local p cmp a b m col ncpu=0 med lo hi mn cov ra rb ua ub
  [ "$BENCH_PAIRS" -gt 0 ] && [ ${#comparisons[@]} -gt 0 ] || return 0
  for cmp in "${comparisons[@]}"; do [ "${cmp##* }" = cpu ] && ncpu=$((ncpu + 1)); done
  echo
  echo "== paired: $BENCH_PAIRS pairs of ${BENCH_PAIR_SECONDS}s slices per comparison, wrk alternating between the two servers"
  echo "   (B/A per pair; the median with its distribution-free confidence interval, and the mean; about $(( ${#comparisons[@]} * BENCH_PAIRS * 2 * (BENCH_PAIR_SECONDS + 1) )) s)"
  [ "$ncpu" = 0 ] || echo "   (lines marked CPU: B/A of the server's CPU per response, its ticks over the slice / the responses in it)"
  for cmp in "${comparisons[@]}"; do read -r a b m <<<"$cmp"; : >"$tmp/pairs-$b.txt"; done
  for p in $(seq "$BENCH_PAIRS"); do
    for cmp in "${comparisons[@]}"; do
      read -r a b m <<<"$cmp"
      if [ $((p % 2)) = 1 ]; then
        slice "$a" "$tmp/pair-$p-$a.txt"; ra=$SLICE_RPS ua=$SLICE_US
        slice "$b" "$tmp/pair-$p-$b.txt"; rb=$SLICE_RPS ub=$SLICE_US
      else
        slice "$b" "$tmp/pair-$p-$b.txt"; rb=$SLICE_RPS ub=$SLICE_US
        slice "$a" "$tmp/pair-$p-$a.txt"; ra=$SLICE_RPS ua=$SLICE_US
      fi
      echo "$ra $rb $ua $ub" >>"$tmp/pairs-$b.txt"
    done
  done
  for cmp in "${comparisons[@]}"; do
    read -r a b m <<<"$cmp"
    # shellcheck disable=SC2016 # awk's fields
    if [ "$m" = cpu ]; then col='($3 > 0) ? $4 / $3 : 0'; else col='$2 / $1'; fi
    read -r med lo hi mn cov < <(awk "{ print $col }" "$tmp/pairs-$b.txt" | sort -g | pair_stats)
    PAIR_MED[$b]=$med; PAIR_LO[$b]=$lo; PAIR_HI[$b]=$hi; PAIR_MEAN[$b]=$mn; PAIR_COV[$b]=$cov
    if [ "$m" = cpu ]; then
      printf '  %-26s median %sx (%s %% CI %s-%sx), mean %sx; us/req %s: %s, %s: %s (means of slices)\n' "$b/$a CPU:" \
        "$(printf %.3f "$med")" "$cov" "$(printf %.3f "$lo")" "$(printf %.3f "$hi")" "$(printf %.3f "$mn")" \
        "$b" "$(awk '{ s += $4 } END { printf "%.2f", s / NR }' "$tmp/pairs-$b.txt")" \
        "$a" "$(awk '{ s += $3 } END { printf "%.2f", s / NR }' "$tmp/pairs-$b.txt")"
    else
      printf '  %-26s median %sx (%s %% CI %s-%sx), mean %sx; req/s %s: %s, %s: %s (means of slices)\n' "$b/$a:" \
        "$(printf %.3f "$med")" "$cov" "$(printf %.3f "$lo")" "$(printf %.3f "$hi")" "$(printf %.3f "$mn")" \
        "$b" "$(awk '{ s += $2 } END { printf "%.0f", s / NR }' "$tmp/pairs-$b.txt")" \
        "$a" "$(awk '{ s += $1 } END { printf "%.0f", s / NR }' "$tmp/pairs-$b.txt")"
    fi
  done
}

# paired_verdict NAME KIND LIMIT: the paired median against a target. KIND "cost":
# 1 - ratio must stay under LIMIT %; KIND "ratio": the ratio must reach LIMIT; KIND
# "atmost": the ratio (of CPU per response) must stay at or under LIMIT; KIND "same"
# (no LIMIT): the ratio new/baseline, unchanged when its interval holds 1.
paired_verdict() {
  [ -n "${PAIR_MED[$1]:-}" ] || return 0
  awk -v m="${PAIR_MED[$1]}" -v lo="${PAIR_LO[$1]}" -v hi="${PAIR_HI[$1]}" -v k="$2" -v lim="${3:-1}" -v n="$BENCH_PAIRS" -v cov="${PAIR_COV[$1]}" 'BEGIN {
    if (k == "cost") {
      c = 100 * (1 - m); cw = 100 * (1 - lo); cb = 100 * (1 - hi)
      v = (cw < lim) ? "met with " cov " % confidence" : (c < lim) ? "met on the median, not with " cov " % confidence" : (cb < lim) ? "NOT met on the median (within the interval)" : "NOT met"
      printf "        paired (%d pairs): median cost %.1f %% (%s %% CI %.1f to %.1f %%): %s\n", n, c, cov, cb, cw, v
    } else if (k == "atmost") {
      v = (hi <= lim) ? "met with " cov " % confidence" : (m <= lim) ? "met on the median, not with " cov " % confidence" : (lo <= lim) ? "NOT met on the median (within the interval)" : "NOT met"
      printf "        paired (%d pairs): median %.3fx (%s %% CI %.3f-%.3fx), target at most %.2fx: %s\n", n, m, cov, lo, hi, lim, v
    } else if (k == "same") {
      v = (lo <= 1 && hi >= 1) ? "unchanged within the noise (the interval holds 1)" : (hi < 1) ? "less than the baseline (the whole interval under 1)" : "MORE than the baseline (the whole interval over 1)"
      printf "        paired (%d pairs): median %.3fx, %+.1f %% (%s %% CI %.3f-%.3fx): %s\n", n, m, 100 * (m - 1), cov, lo, hi, v
    } else {
      v = (lo >= lim) ? "met with " cov " % confidence" : (m >= lim) ? "met on the median, not with " cov " % confidence" : (hi >= lim) ? "NOT met on the median (within the interval)" : "NOT met"
      printf "        paired (%d pairs): median %.2fx (%s %% CI %.2f-%.2fx): %s\n", n, m, cov, lo, hi, v
    } }'
}
