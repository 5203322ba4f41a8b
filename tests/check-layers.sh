#!/usr/bin/env bash
# check-layers: the dependency rule core <- proto <- net, from the #include
# lines, and (when objects are given) from the symbols they use.
#
#   core/   the runtime: includes only core/ headers
#   proto/  AG-UI: includes core/ and proto/ headers, never net/
#   net/    the wire and the gateway: may include anything
#   core/main.c, the composition root, is the one exception: it names every module.
#
# Usage: tests/check-layers.sh [OBJDIR]   (OBJDIR: build/asan, objects without LTO)
# With OBJDIR, every symbol a core/ object needs must come from core/ or a
# library, and every symbol a proto/ object needs from core/, proto/ or a
# library: a layer cannot reach up by a declaration that names no header.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bad=0

allowed() {   # allowed LAYER HEADER-LAYER
  case "$1:$2" in
    core:core|proto:core|proto:proto|net:*) return 0 ;;
    *) return 1 ;;
  esac
}

for f in core/*.[ch] proto/*.[ch] net/*.[ch]; do
  [ "$f" = core/main.c ] && continue
  layer=${f%%/*}
  while IFS= read -r h; do
    if ! allowed "$layer" "${h%%/*}"; then
      echo "check-layers: $f includes $h ($layer/ may not include ${h%%/*}/)" >&2
      bad=1
    fi
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([a-z]*\/[^"]*\)".*/\1/p' "$f")
done

if [ $# -ge 1 ]; then
  objdir=$1
  declare -A owner=()
  for layer in core proto net; do
    for c in "$layer"/*.c; do   # objects of today's sources only, not stale ones
      o=$objdir/${c%.c}.o
      [ -e "$o" ] || continue
      [ "$c" = core/main.c ] && continue
      while read -r sym; do owner[$sym]=$layer; done < <(nm --defined-only -g "$o" | awk '{print $3}')
    done
  done
  [ ${#owner[@]} -gt 0 ] || { echo "check-layers: no objects under $objdir" >&2; exit 1; }
  for layer in core proto; do
    for c in "$layer"/*.c; do
      o=$objdir/${c%.c}.o
      [ -e "$o" ] || continue
      [ "$c" = core/main.c ] && continue
      while read -r sym; do
        up=${owner[$sym]:-}
        if [ -n "$up" ] && ! allowed "$layer" "$up"; then
          echo "check-layers: ${o#$objdir/} uses $sym from $up/" >&2
          bad=1
        fi
      done < <(nm -u "$o" | awk '{print $2}')
    done
  done
fi

if [ $bad -ne 0 ]; then
  echo "check-layers: FAILED (core <- proto <- net; see core/README.md)" >&2
  exit 1
fi
echo "check-layers: ok (core <- proto <- net${1:+, includes and symbols})"
