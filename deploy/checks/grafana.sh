#!/usr/bin/env bash
# grafana.sh: deploy/grafana/agate.json is a dashboard Grafana can import (panels
# with a type, a place on the 24-column grid that overlaps no other, a Prometheus
# data source and targets), every query parses as PromQL (promtool, with the
# dashboard's variables filled in), the dashboard shows what docs/OPERATIONS.md
# says it shows, and every metric name in it is one a running agate exports.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. deploy/checks/lib/names.bash
dash=deploy/grafana/agate.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# structure; writes every query as a recording rule for promtool
node - "$dash" "$tmp/exprs.yml" <<'JS'
const fs = require('fs');
const [file, out] = process.argv.slice(2);
const d = JSON.parse(fs.readFileSync(file, 'utf8'));
const fail = (m) => { console.error(`${file}: ${m}`); process.exit(1); };
if (typeof d.title !== 'string' || typeof d.uid !== 'string' || !Array.isArray(d.panels)) fail('needs title, uid and panels');
const vars = new Set((d.templating?.list ?? []).map((v) => v.name));
const ids = new Set();
const cells = new Set();
const exprs = [];
for (const p of d.panels) {
  const where = `panel ${p.id} "${p.title}"`;
  if (!Number.isInteger(p.id) || ids.has(p.id)) fail(`${where}: id missing or repeated`);
  ids.add(p.id);
  const g = p.gridPos;
  if (!g || ![g.h, g.w, g.x, g.y].every(Number.isInteger) || g.x < 0 || g.w < 1 || g.x + g.w > 24) fail(`${where}: bad gridPos`);
  for (let y = g.y; y < g.y + g.h; y++)
    for (let x = g.x; x < g.x + g.w; x++) {
      if (cells.has(`${x},${y}`)) fail(`${where}: overlaps another panel at x=${x} y=${y}`);
      cells.add(`${x},${y}`);
    }
  if (p.type === 'row') continue;
  if (!['timeseries', 'stat', 'gauge', 'table', 'heatmap', 'bargauge'].includes(p.type)) fail(`${where}: unknown type ${p.type}`);
  if (p.datasource?.type !== 'prometheus') fail(`${where}: not a Prometheus data source`);
  if (!Array.isArray(p.targets) || p.targets.length === 0) fail(`${where}: no targets`);
  for (const t of p.targets) {
    if (typeof t.expr !== 'string' || !t.expr || typeof t.refId !== 'string') fail(`${where}: a target without expr or refId`);
    for (const [, v] of t.expr.matchAll(/\$(\w+)/g))
      if (!v.startsWith('__') && !vars.has(v)) fail(`${where}: uses $${v}, which is not a dashboard variable`);
    exprs.push(t.expr.replaceAll('$__rate_interval', '1m').replaceAll('$job', '.*'));
  }
}
if (exprs.length < 10) fail(`only ${exprs.length} queries`);
fs.writeFileSync(out, 'groups:\n  - name: dashboard\n    rules:\n' +
  exprs.map((e, i) => `      - record: dashboard_query_${i}\n        expr: ${JSON.stringify(e)}\n`).join(''));
console.log(`${ids.size} panels, ${exprs.length} queries`);
JS
promtool check rules "$tmp/exprs.yml"

# what the dashboard is for (issue 25): runs/s, errors, TTFE and gap percentiles,
# streams, limiter and cache, upstream health, shard loop utilisation, memory
for m in agate_runs_started_total agate_runs_ended_total agate_http_requests_total \
         agate_run_first_event_seconds_bucket agate_run_event_gap_seconds_bucket agate_streams \
         agate_ratelimit_cells agate_cache_requests_total agate_upstream_failures_total \
         agate_upstream_breaker_open agate_shard_busy_seconds_total process_resident_memory_bytes agate_memory_bytes; do
  grep -q "\"expr\": \".*\\b$m\\b" "$dash" || { echo "$dash: no query on $m" >&2; exit 1; }
done
check_metric_names "$dash"
