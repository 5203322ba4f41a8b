#!/usr/bin/env bash
# Builds agate's image from the built binary: stages a root filesystem (the
# binary, the libraries `ldd` names and their loader, CA certificates, passwd and
# group, deploy/agate.yaml at /etc/agate/agate.yaml) and builds
# deploy/image/Containerfile (FROM scratch) on it with buildah.
# Usage: deploy/image/build.sh [TAG]   (default localhost/agate:latest)
#   AGATE_BIN   the binary to ship (default build/agate; `make build/agate` first)
# buildah runs with runc and explicit ulimits: its defaults (crun, the host's
# limits) are not what every machine here supports.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

tag=${1:-localhost/agate:latest}
bin=${AGATE_BIN:-build/agate}
[ -x "$bin" ] || { echo "image: $bin not found or not executable (make build/agate)" >&2; exit 1; }
command -v buildah >/dev/null || { echo "image: buildah not installed (deploy/install-deps.sh test, as root)" >&2; exit 1; }

ctx=$(mktemp -d /tmp/agate-image.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/etc/agate" "$root/etc/ssl/certs"

install -m 0755 "$bin" "$root/agate"
# Every library at the path ldd found it (the loader's default directories on
# Debian), symlinks followed; the ELF interpreter at its absolute path.
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
[ -n "$libs" ] || { echo "image: ldd $bin listed no libraries" >&2; exit 1; }
for lib in $libs; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
missing=$(ldd "$bin" | grep 'not found' || true)
[ -z "$missing" ] || { echo "image: unresolved libraries: $missing" >&2; exit 1; }

cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/:/sbin/nologin\nagate:x:65532:65532:agate:/:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nagate:x:65532:\n' >"$root/etc/group"
# glibc without nsswitch.conf tries DNS before /etc/hosts; a proxy agent's
# upstream named in /etc/hosts (Kubernetes' hostAliases) should win.
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
install -m 0644 deploy/agate.yaml "$root/etc/agate/agate.yaml"

# --format docker: the OCI image format has no HEALTHCHECK.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then hard=65536; fi
buildah bud --runtime runc --ulimit "nofile=$hard:$hard" --ulimit nproc=4096:4096 \
  --format docker --layers=false -t "$tag" -f deploy/image/Containerfile "$ctx"
echo "image: built $tag from $bin"
