#!/usr/bin/env bash
# Installs the Debian 12 packages agate needs for the named purposes (build, test, bench).
# Only what is missing is installed; as root it runs apt-get itself, otherwise it
# prints the one command a non-root user runs (or uses sudo when that works without a password).
set -euo pipefail

build=(gcc make pkg-config liburing-dev liburcu-dev libjemalloc-dev libssl-dev node-llhttp libyaml-dev libjansson-dev libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev
       libhiredis-dev)   # core/redis.c: the RESP reader and command formatter
test=(libcmocka-dev clang libclang-rt-14-dev curl openssl nodejs npm prometheus chromium kubernetes-client
      podman buildah runc golang-github-containers-common ca-certificates)   # deploy/checks/image.sh
bench=(wrk nginx-light haproxy curl pushpin condure zurl redis-server)   # redis: the fleet_rl, fleet_cache and resume cases
# deploy/checks: systemd-analyze, nginx -t and haproxy -c, and the live front-proxy test
test+=(systemd nginx-light haproxy)
# the fleet tests (issues 26, 27): a real Redis on loopback; redis-cli for poking it by hand
test+=(redis-server redis-tools)

want=()
for purpose in "$@"; do
  case "$purpose" in
    build) want+=("${build[@]}") ;;
    test)  want+=("${test[@]}") ;;
    bench) want+=("${bench[@]}") ;;
    *) echo "install-deps: unknown purpose '$purpose'" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  # nodejs may come from outside Debian's archive on a developer machine; a working node is enough.
  if [ "$p" = nodejs ] && command -v node >/dev/null; then continue; fi
  if [ "$p" = npm ] && command -v npm >/dev/null; then continue; fi
  # kubernetes-client is Debian's kubectl; one from another archive conflicts with it.
  if [ "$p" = kubernetes-client ] && command -v kubectl >/dev/null; then continue; fi
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$st" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" = 0 ]; then as_root=(); elif sudo -n true 2>/dev/null; then as_root=(sudo -n); else
  echo "install-deps: not root; run this once, then try again:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Servers we install (nginx, haproxy, pushpin, zurl, prometheus) are started by the
# tests and benches themselves on loopback ports; their packages must not start a
# system-wide service (on :80, :7999, :9090).
# A policy-rc.d that says "no" (101) for the duration of the install does that.
policy=/usr/sbin/policy-rc.d
added_policy=false
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod +x "$policy"
  added_policy=true
fi
cleanup() { if $added_policy; then "${as_root[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
