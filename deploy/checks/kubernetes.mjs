// deploy/checks/kubernetes.mjs: checks the rendered kustomize output of
// deploy/kubernetes (base and production overlay) against the Kubernetes schemas
// (kubernetes-models) and against the agate binary. Run by kubernetes.sh.
//   node kubernetes.mjs --bin build/agate --tmp DIR base=FILE production=FILE
//   node kubernetes.mjs --sync-rules   (copy deploy/prometheus/rules.yml's groups
//                                       into base/prometheusrule.yaml)
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MODS = path.join(ROOT, 'tests/node_modules');
const YAML = createRequire(path.join(ROOT, 'tests/package.json'))('yaml');
const K8S_DIR = path.join(ROOT, 'deploy/kubernetes');
const RULES = path.join(ROOT, 'deploy/prometheus/rules.yml');
const RULE_WRAP = path.join(K8S_DIR, 'base/prometheusrule.yaml');
const MARGIN_S = 5; // grace period beyond drain + preStop pause, at least

let failures = 0;
function check(ok, what) {
  if (ok) return true;
  failures++;
  console.log(`  FAIL: ${what}`);
  return false;
}

// apiVersion/kind -> model module under tests/node_modules.
const MODELS = {
  'apps/v1/Deployment': 'kubernetes-models/apps/v1/Deployment.mjs',
  'v1/Service': 'kubernetes-models/v1/Service.mjs',
  'v1/ConfigMap': 'kubernetes-models/v1/ConfigMap.mjs',
  'policy/v1/PodDisruptionBudget': 'kubernetes-models/policy/v1/PodDisruptionBudget.mjs',
  'autoscaling/v2/HorizontalPodAutoscaler': 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler.mjs',
  'networking.k8s.io/v1/NetworkPolicy': 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy.mjs',
  'monitoring.coreos.com/v1/ServiceMonitor': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.mjs',
  'monitoring.coreos.com/v1/PrometheusRule': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule.mjs',
};

async function validateSchema(obj) {
  const key = `${obj.apiVersion}/${obj.kind}`;
  if (!check(MODELS[key], `${key}: no schema known (unexpected kind)`)) return;
  const mod = await import(pathToFileURL(path.join(MODS, MODELS[key])).href);
  try {
    new mod[obj.kind](obj).validate();
  } catch (e) {
    check(false, `${key} ${obj.metadata?.name}: schema: ${e.message.slice(0, 400)}`);
  }
}

function seconds(d) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(String(d));
  if (!m) return NaN;
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]];
}
function port(addr) { return Number(String(addr).split(':').pop()); }
function cpus(q) { const s = String(q); return s.endsWith('m') ? Number(s.slice(0, -1)) / 1000 : Number(s); }
function matches(selector, labels) {
  return Object.entries(selector ?? {}).length > 0 &&
    Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

async function get(url) {
  const r = await fetch(url);
  return { status: r.status, body: await r.text() };
}

// Metric family names in a Prometheus text page (from # TYPE lines and samples).
function families(page) {
  const names = new Set();
  for (const line of page.split('\n')) {
    const t = /^# TYPE (\S+)/.exec(line);
    if (t) names.add(t[1]);
    const s = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (s) names.add(s[1].replace(/_(bucket|sum|count|total)$/, '')), names.add(s[1]);
  }
  return names;
}

// Start agate with the pod's config (ports moved to loopback by env, which wins
// over the file), check the probe paths and scrape /metrics, then SIGTERM.
async function liveRun(bin, cfgFile, env, probes) {
  const [p1, p2] = [await freePort(), await freePort()];
  const child = spawn(bin, ['--config', cfgFile], {
    env: { ...process.env, ...env, AGATE_LISTEN: `127.0.0.1:${p1}`, AGATE_ADMIN_LISTEN: `127.0.0.1:${p2}` },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve({ code, sig })));
  const admin = `http://127.0.0.1:${p2}`;
  let up = false;
  for (let i = 0; i < 100 && !up; i++) {
    try { up = (await get(`${admin}${probes.startup}`)).status === 200; } catch { await new Promise((r) => setTimeout(r, 50)); }
  }
  let page = '';
  if (check(up, `agate did not answer ${probes.startup} on its admin listener: ${stderr.slice(0, 400)}`)) {
    for (const [kind, p] of Object.entries(probes)) {
      const r = await get(`${admin}${p}`);
      check(r.status === 200, `${kind} probe ${p} answered ${r.status}, not 200`);
    }
    page = (await get(`${admin}/metrics`)).body;
  }
  child.kill('SIGTERM');
  const ex = await Promise.race([exited, new Promise((r) => setTimeout(() => r({ code: 'timeout' }), 10000))]);
  if (ex.code === 'timeout') child.kill('SIGKILL');
  check(ex.code === 0, `agate exited ${JSON.stringify(ex)} on SIGTERM, not 0`);
  return families(page);
}

async function checkRendering(name, file, bin, tmp) {
  console.log(`# ${name}: kubectl kustomize output, ${path.basename(file)}`);
  const docs = YAML.parseAllDocuments(readFileSync(file, 'utf8'));
  const objs = [];
  for (const d of docs) {
    check(d.errors.length === 0, `YAML: ${d.errors.map((e) => e.message).join('; ')}`);
    const o = d.toJS();
    if (o) objs.push(o);
  }
  for (const o of objs) await validateSchema(o);
  const one = (kind) => {
    const found = objs.filter((o) => o.kind === kind);
    check(found.length === 1, `${kind}: ${found.length} objects, expected 1`);
    return found[0] ?? {};
  };
  const dep = one('Deployment'), svc = one('Service'), cm = one('ConfigMap'), pdb = one('PodDisruptionBudget');
  const hpa = one('HorizontalPodAutoscaler'), np = one('NetworkPolicy'), sm = one('ServiceMonitor'), pr = one('PrometheusRule');
  check(objs.length === 8, `${objs.length} objects rendered, expected 8`);
  if (name === 'production')
    for (const o of objs) check(o.metadata?.namespace === 'agate', `${o.kind}: namespace ${o.metadata?.namespace}, not agate`);

  // Deployment: the fields the rollout, drain and security rely on.
  const spec = dep.spec ?? {}, pod = spec.template?.spec ?? {}, podLabels = spec.template?.metadata?.labels;
  const c = (pod.containers ?? []).find((x) => x.name === 'agate') ?? {};
  check(spec.replicas === 3, `Deployment replicas ${spec.replicas}, not 3`);
  check(spec.strategy?.type === 'RollingUpdate' && spec.strategy?.rollingUpdate?.maxUnavailable === 0, 'Deployment: RollingUpdate with maxUnavailable 0');
  check(matches(spec.selector?.matchLabels, podLabels), 'Deployment selector matches its pod labels');
  check(c.image === 'agate:latest', `image ${c.image}, not agate:latest`);
  check(pod.securityContext?.runAsNonRoot === true, 'pod runAsNonRoot: true');
  const sc = c.securityContext ?? {};
  check(sc.readOnlyRootFilesystem === true, 'container readOnlyRootFilesystem: true');
  check(sc.allowPrivilegeEscalation === false, 'container allowPrivilegeEscalation: false');
  check(isDeepStrictEqual(sc.capabilities?.drop, ['ALL']), 'container capabilities drop [ALL]');
  const seccomp = sc.seccompProfile ?? pod.securityContext?.seccompProfile ?? {};
  if (name === 'production')
    check(seccomp.type === 'Localhost' && seccomp.localhostProfile === 'profiles/agate.json', `seccomp ${JSON.stringify(seccomp)}, not Localhost profiles/agate.json`);
  else check(seccomp.type === 'RuntimeDefault', `seccomp ${JSON.stringify(seccomp)}, not RuntimeDefault`);
  const tsc = pod.topologySpreadConstraints ?? [];
  check(tsc.some((t) => t.topologyKey === 'kubernetes.io/hostname' && matches(t.labelSelector?.matchLabels, podLabels)), 'topology spread over hosts, selecting the pods');

  // Config: the ConfigMap the pod mounts, its agate.yaml, the file path agate reads.
  const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e]));
  const cfgVol = (pod.volumes ?? []).find((v) => v.configMap);
  check(cfgVol?.configMap?.name === cm.metadata?.name, `pod mounts ConfigMap ${cfgVol?.configMap?.name}, rendered is ${cm.metadata?.name}`);
  check(/-[a-z0-9]{10}$/.test(cm.metadata?.name ?? ''), `ConfigMap ${cm.metadata?.name} has no content hash (configMapGenerator)`);
  const cfgMount = (c.volumeMounts ?? []).find((m) => m.name === cfgVol?.name);
  check(env.AGATE_CONFIG?.value === `${cfgMount?.mountPath}/agate.yaml`, `AGATE_CONFIG ${env.AGATE_CONFIG?.value} is not the mounted agate.yaml`);
  const text = cm.data?.['agate.yaml'] ?? '';
  const cfg = YAML.parse(text) ?? {};
  const cports = Object.fromEntries((c.ports ?? []).map((p) => [p.name, p.containerPort]));
  check(cports.http === port(cfg.listen), `container port http ${cports.http} != listen ${cfg.listen}`);
  check(cports.admin === port(cfg.admin_listen), `container port admin ${cports.admin} != admin_listen ${cfg.admin_listen}`);

  // Shards: AGATE_SHARDS from the CPU limit, a whole number of CPUs.
  const rf = env.AGATE_SHARDS?.valueFrom?.resourceFieldRef ?? {};
  check(rf.resource === 'limits.cpu' && String(rf.divisor) === '1', 'AGATE_SHARDS from resourceFieldRef limits.cpu, divisor 1');
  const limitCpu = cpus(c.resources?.limits?.cpu);
  check(Number.isInteger(limitCpu) && limitCpu >= 1, `CPU limit ${c.resources?.limits?.cpu} is not a whole number of CPUs`);
  check(c.resources?.requests?.cpu && c.resources?.requests?.memory && c.resources?.limits?.memory, 'requests (cpu, memory) and memory limit set');

  // Probes and drain timing.
  const probes = {};
  for (const [k, field] of [['startup', 'startupProbe'], ['readiness', 'readinessProbe'], ['liveness', 'livenessProbe']]) {
    const g = c[field]?.httpGet;
    check(g?.port === 'admin' || g?.port === cports.admin, `${field} is not on the admin port`);
    if (check(g?.path, `${field} has no httpGet path`)) probes[k] = g.path;
  }
  check(probes.readiness === '/health/ready', `readiness probe ${probes.readiness}: only /health/ready turns 503 on drain`);
  const pause = c.lifecycle?.preStop?.sleep?.seconds;
  check(Number.isInteger(pause) && pause > 0, `preStop sleep ${pause}`);
  const drain = seconds(cfg.stream?.drain_timeout ?? '25s');
  const grace = pod.terminationGracePeriodSeconds;
  check(grace >= drain + pause + MARGIN_S, `terminationGracePeriodSeconds ${grace} < drain ${drain} + preStop ${pause} + ${MARGIN_S}`);

  // Service, PDB, HPA, NetworkPolicy, ServiceMonitor point at the right things.
  check(matches(svc.spec?.selector, podLabels), 'Service selects the pods');
  const sports = Object.fromEntries((svc.spec?.ports ?? []).map((p) => [p.name, p]));
  check(sports.http?.targetPort === 'http' && sports.admin?.targetPort === 'admin', 'Service ports http and admin target the container ports');
  check(matches(pdb.spec?.selector?.matchLabels, podLabels), 'PDB selects the pods');
  check(hpa.spec?.scaleTargetRef?.kind === 'Deployment' && hpa.spec?.scaleTargetRef?.name === dep.metadata?.name, 'HPA targets the Deployment');
  check(hpa.spec?.minReplicas >= 3, 'HPA minReplicas >= 3');
  check((hpa.spec?.metrics ?? []).some((m) => m.resource?.name === 'cpu'), 'HPA scales on CPU');
  check(matches(np.spec?.podSelector?.matchLabels, podLabels), 'NetworkPolicy selects the pods');
  for (const rule of np.spec?.ingress ?? []) {
    const ports = (rule.ports ?? []).map((p) => p.port);
    if (ports.includes('admin') || ports.includes(cports.admin) || ports.length === 0)
      check(rule.from?.length > 0 && rule.from.every((f) => f.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] === 'monitoring' && !f.ipBlock),
        `NetworkPolicy admits the admin port from outside monitoring: ${JSON.stringify(rule)}`);
  }
  check((np.spec?.ingress ?? []).some((r) => (r.ports ?? []).some((p) => p.port === 'http')), 'NetworkPolicy admits the http port');
  check(matches(sm.spec?.selector?.matchLabels, svc.metadata?.labels), 'ServiceMonitor selects the Service');
  check((sm.spec?.endpoints ?? []).some((e) => e.port === 'admin' && e.path === '/metrics'), 'ServiceMonitor scrapes admin /metrics');
  if (existsSync(RULES)) {
    const groups = YAML.parse(readFileSync(RULES, 'utf8'))?.groups;
    check(isDeepStrictEqual(pr.spec?.groups, groups), 'PrometheusRule groups differ from deploy/prometheus/rules.yml: run node deploy/checks/kubernetes.mjs --sync-rules');
  } else {
    check(isDeepStrictEqual(pr.spec?.groups, []), 'PrometheusRule placeholder: no rules.yml, yet groups are not []');
    console.log('  note: deploy/prometheus/rules.yml absent; PrometheusRule is the empty placeholder');
  }

  // Against the binary: the config passes --check-config with the pod's env and
  // runs the shard count of the CPU limit; the probes answer; metric names exist.
  const cfgFile = path.join(tmp, `${name}-agate.yaml`);
  let cfgText = text;
  const runEnv = { AGATE_SHARDS: String(Math.ceil(limitCpu)) };
  for (const [k, e] of Object.entries(env)) {
    if (e.valueFrom?.secretKeyRef) runEnv[k] = 'k8s-check-secret-0123456789abcdef'; // a Secret's value
  }
  const jwks = cfg.auth?.jwt?.jwks_file;
  if (jwks) {
    // The pod mounts it from a Secret; here a generated JWK Set stands in.
    const mount = (c.volumeMounts ?? []).find((m) => jwks.startsWith(`${m.mountPath}/`));
    const vol = (pod.volumes ?? []).find((v) => v.name === mount?.name);
    check(vol?.secret?.items?.some((i) => i.path === path.basename(jwks)), `jwks_file ${jwks} is not mounted from a Secret`);
    const local = path.join(tmp, `${name}-jwks.json`);
    writeFileSync(local, JSON.stringify({ keys: [{ kty: 'oct', kid: 'k8s-check', k: Buffer.from('k8s-check-jwks-secret-0123456789').toString('base64url') }] }));
    cfgText = cfgText.split(jwks).join(local);
  }
  writeFileSync(cfgFile, cfgText);
  const cc = spawnSync(bin, ['--check-config', '--config', cfgFile], { env: { ...process.env, ...runEnv }, encoding: 'utf8' });
  const out = `${cc.stdout}${cc.stderr}`;
  check(cc.status === 0, `--check-config exited ${cc.status}: ${out.trim()}`);
  const want = Math.ceil(limitCpu);
  check(new RegExp(`would run ${want} shards? `).test(out), `--check-config with AGATE_SHARDS from the CPU limit does not say ${want} shards: ${out.trim()}`);
  const scraped = await liveRun(bin, cfgFile, runEnv, probes);
  check(scraped.has('agate_build_info'), 'live scrape has no agate_build_info');
  const used = new Set();
  const hpaNames = (hpa.spec?.metrics ?? []).map((m) => m.pods?.metric?.name ?? m.object?.metric?.name ?? m.external?.metric?.name).filter(Boolean);
  for (const n of hpaNames) used.add(n);
  // The PrometheusRule's names are deploy/prometheus/rules.yml's, checked by
  // deploy/checks/prometheus.sh against a scrape with proxy and cached agents
  // (this config has neither, so their families are absent here).
  const texts = [JSON.stringify(objs.filter((o) => o.kind !== 'PrometheusRule')),
    ...listFiles(K8S_DIR).filter((f) => !f.endsWith('prometheusrule.yaml')).map((f) => readFileSync(f, 'utf8'))];
  for (const t of texts) for (const m of t.matchAll(/\bagate_[a-z0-9_]+/g)) used.add(m[0]);
  for (const n of used) check(scraped.has(n), `metric ${n} (used in deploy/kubernetes) is not in a live scrape`);
  console.log(`  ${objs.length} objects; metric names checked: ${[...used].join(', ') || 'none'}`);
}

function listFiles(dir) {
  const r = spawnSync('find', [dir, '-type', 'f', '-name', '*.yaml'], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean);
}

function syncRules() {
  const groups = YAML.parse(readFileSync(RULES, 'utf8'))?.groups;
  if (!Array.isArray(groups)) throw new Error(`${RULES}: no top-level groups: list`);
  const doc = YAML.parseDocument(readFileSync(RULE_WRAP, 'utf8'));
  doc.setIn(['spec', 'groups'], doc.createNode(groups));
  writeFileSync(RULE_WRAP, doc.toString({ lineWidth: 0 }));
  console.log(`${path.relative(ROOT, RULE_WRAP)}: ${groups.length} groups from ${path.relative(ROOT, RULES)}`);
}

async function main() {
  const args = process.argv.slice(2);
  if (args[0] === '--sync-rules') return syncRules();
  let bin, tmp;
  const renders = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--bin') bin = args[++i];
    else if (args[i] === '--tmp') tmp = args[++i];
    else { const [n, f] = args[i].split('='); renders.push([n, f]); }
  }
  for (const [n, f] of renders) await checkRendering(n, f, bin, tmp);
  console.log(failures ? `kubernetes: ${failures} failed checks` : 'kubernetes: all checks passed');
  process.exit(failures ? 1 : 0);
}
await main();
