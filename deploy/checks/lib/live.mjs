// live.mjs: a running agate for the deploy checks (deploy/checks/*.sh), started as
// the integration tests start it (tests/integration/lib): build/agate (or
// $AGATE_BIN) on loopback with three agents, so that every per-agent metric family
// appears: `echo` (built in), `lg` (a proxy to a real AG-UI server on loopback)
// and `cached` (the same server behind the response cache).
//   node deploy/checks/lib/live.mjs names    one run per agent, then prints the name
//                                            of every sample of a /metrics scrape
// startLive() is also imported by the front-proxy check.
import { startAgate, request, runInput } from '../../../tests/integration/lib/harness.mjs';
import { startAguiServer } from '../../../tests/integration/lib/agui-server.mjs';

export async function startLive({ env = {} } = {}) {
  const upstream = await startAguiServer();
  const config = [
    'stream: {max_token_interval: 1s}',
    'agents:',
    '  echo: {type: echo}',
    '  lg:',
    '    type: proxy',
    `    endpoints: [${upstream.url}]`,
    '  cached:',
    '    type: proxy',
    `    endpoints: [${upstream.url}]`,
    '    cache: {ttl: 60s}',
    '',
  ].join('\n');
  const agate = await startAgate({ config, env });
  return {
    agate, upstream,
    async stop() {
      const code = await agate.stop();
      await upstream.close();
      return code;
    },
  };
}

/** One SSE run of an agent; throws unless it is a 200 event stream ending in RUN_FINISHED. */
export async function runOnce(port, agent) {
  const r = await request(port, {
    method: 'POST', path: `/v1/agents/${agent}/run`,
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify(runInput('hello')), timeout: 10000,
  });
  const body = String(r.body);
  if (r.statusCode !== 200 || !body.includes('RUN_FINISHED'))
    throw new Error(`run of ${agent}: status ${r.statusCode}, body ${body.slice(0, 300)}`);
}

/** Names of the samples in a Prometheus text scrape (agate_x_total, agate_y_bucket...). */
export function sampleNames(text) {
  const names = new Set();
  for (const line of text.split('\n'))
    if (line && !line.startsWith('#')) names.add(line.split(/[{ ]/, 1)[0]);
  return [...names].sort();
}

if (process.argv[1] && process.argv[1].endsWith('live.mjs') && process.argv[2] === 'names') {
  const live = await startLive();
  let code = 1;
  try {
    for (const a of ['echo', 'lg', 'cached', 'cached']) await runOnce(live.agate.port, a);
    const m = await request(live.agate.adminPort, { path: '/metrics' });
    if (m.statusCode !== 200) throw new Error(`/metrics: status ${m.statusCode}`);
    process.stdout.write(sampleNames(String(m.body)).join('\n') + '\n');
    code = 0;
  } finally {
    const stopped = await live.stop();
    if (stopped !== 0) { console.error(`agate exited ${stopped} on SIGTERM`); code = 1; }
  }
  process.exit(code);
}
