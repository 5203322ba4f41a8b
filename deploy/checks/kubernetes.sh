#!/usr/bin/env bash
# deploy/kubernetes: renders the kustomize base and production overlay with
# `kubectl kustomize` (Debian: kubernetes-client) and checks every object against the
# Kubernetes schemas and the fields agate relies on, and against build/agate:
# --check-config on the ConfigMap's agate.yaml, probe paths answering 200, ports,
# grace period, shard count, metric names in a live scrape (deploy/checks/kubernetes.mjs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bin=${AGATE_BIN:-build/agate}
[ -x "$bin" ] || { echo "kubernetes: $bin not built (make build/agate)"; exit 1; }
command -v kubectl >/dev/null || { echo "kubernetes: kubectl missing (deploy/install-deps.sh test)"; exit 1; }
[ -d tests/node_modules/kubernetes-models ] && [ -d tests/node_modules/yaml ] ||
  { echo "kubernetes: tests/node_modules lacks kubernetes-models/yaml (cd tests && npm ci)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for k in base overlays/production; do
  n=$(basename "$k")
  # kubectl 1.20 (Debian 12) embeds kustomize 2.0.3: the kustomization files keep
  # to what it reads (bases, patchesStrategicMerge); newer ones warn, which is fine.
  kubectl kustomize "deploy/kubernetes/$k" >"$tmp/$n.yaml" 2>"$tmp/$n.err" ||
    { echo "kubernetes: kubectl kustomize deploy/kubernetes/$k failed:"; cat "$tmp/$n.err"; exit 1; }
done
node deploy/checks/kubernetes.mjs --bin "$bin" --tmp "$tmp" base="$tmp/base.yaml" production="$tmp/production.yaml"
