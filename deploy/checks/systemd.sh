#!/usr/bin/env bash
# systemd.sh: deploy/systemd/agate.service passes `systemd-analyze verify` without
# a word (in a scratch root holding build/agate at the unit's ExecStart path, so
# the commands are checked too), scores an exposure of at most 2.5 in
# `systemd-analyze security --offline=true`, and keeps what agate needs: a
# dedicated user, EnvironmentFile, ExecReload sending SIGHUP, a stop timeout longer
# than the binary's drain, and io_uring and sched_setaffinity in its SystemCallFilter.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
unit=deploy/systemd/agate.service
bin=${AGATE_BIN:-build/agate}
fail() { echo "$unit: $*" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

mkdir -p "$root/usr/local/bin" "$root/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
cp "$bin" "$root/usr/local/bin/agate"
cp "$(type -P kill)" "$root/bin/kill"
cp -a /lib/systemd/system "$root/usr/lib/systemd/"
cp "$unit" "$root/etc/systemd/system/agate.service"
out=$(systemd-analyze verify --root="$root" agate.service 2>&1) || fail "verify failed: $out"
[ -z "$out" ] || fail "systemd-analyze verify is not silent: $out"

sec=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1)
score=$(sed -n 's/.*Overall exposure level for agate.service: \([0-9.]*\).*/\1/p' <<<"$sec")
[ -n "$score" ] || fail "no exposure level in: $sec"
awk -v s="$score" 'BEGIN { exit !(s <= 2.5) }' || fail "exposure $score > 2.5"
echo "exposure level $score"

val() { sed -n "s/^$1=//p" "$unit"; }
user=$(val User)
[ -n "$user" ] && [ "$user" != root ] || fail "no dedicated User="
val EnvironmentFile | grep -q . || fail "no EnvironmentFile="
val ExecReload | grep -Eq '^/bin/kill -(HUP|s HUP|SIGHUP) \$MAINPID$' || fail "ExecReload does not send SIGHUP to \$MAINPID"
filter=$(val SystemCallFilter | grep -v '^~')
for sc in io_uring_setup io_uring_enter io_uring_register sched_setaffinity; do
  grep -qw "$sc" <<<"$filter" || fail "SystemCallFilter does not keep $sc"
done
# what is denied must not take them back
for g in $(val SystemCallFilter | sed -n 's/^~//p'); do
  denied=$(systemd-analyze syscall-filter "$g")
  for sc in io_uring_setup io_uring_enter io_uring_register sched_setaffinity; do
    grep -qw "$sc" <<<"$denied" && fail "SystemCallFilter=~$g denies $sc"
  done
done
# the stop timeout covers the binary's drain (its default, from --help)
drain=$("$bin" --help | sed -n 's/.*stream.drain_timeout *default \([0-9]*\)s$/\1/p')
stop=$(val TimeoutStopSec | sed 's/s$//')
[ -n "$drain" ] && [ -n "$stop" ] || fail "no drain default ($drain) or TimeoutStopSec ($stop)"
[ "$stop" -ge $((drain + 5)) ] || fail "TimeoutStopSec=${stop}s leaves no margin over the ${drain}s drain"
grep -q "^KillSignal=SIGTERM$" "$unit" || fail "KillSignal is not SIGTERM"
echo "verify silent; user $user; stop ${stop}s over a ${drain}s drain"
