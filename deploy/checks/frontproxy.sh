#!/usr/bin/env bash
# frontproxy.sh: deploy/nginx/agate.conf and deploy/haproxy/agate.cfg pass
# `nginx -t` and `haproxy -c`, then serve live on loopback in front of build/agate:
# over TLS, a paced SSE run over HTTP/2 arrives event by event (not buffered to
# the end) and a WebSocket run completes (deploy/checks/lib/frontproxy.mjs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec node deploy/checks/lib/frontproxy.mjs
