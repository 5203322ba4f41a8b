// Observability against the real tools: Debian's Prometheus scrapes agate and its
// HTTP API must report the traffic we drove; promtool lints the exposition; W3C
// trace context is adopted, generated and echoed; spans reach an OTLP collector
// (a request's SERVER span and a CLIENT span per upstream attempt of a proxied
// run, over SSE and WebSocket); log levels and sampling hold; a stalled log
// reader costs lines, never requests.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import {
  startAgate, stopClean, request, streamRun, runInput, freePort, sleep, RawConn, buildRequest, parseResponses,
  waitFor, rawRequest,
} from './lib/harness.mjs';
import { startAguiServer } from './lib/agui-server.mjs';

const T = { timeout: 60000 };
const TP_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

async function metricsText(port, accept) {
  const res = await request(port, { path: '/metrics', headers: accept ? { Accept: accept } : {} });
  assert.equal(res.statusCode, 200, res.text);
  return res;
}

/** Value of one sample line in Prometheus text, or undefined. */
function sampleValue(text, selector) {
  const line = text.split('\n').find((l) => l.startsWith(`${selector} `));
  return line === undefined ? undefined : Number(line.slice(selector.length + 1));
}

describe('Prometheus scrapes agate', () => {
  let agate;
  let prom;
  let promPort;
  let dir;

  before(async () => {
    agate = await startAgate({ config: 'log: {requests: false}\n' });
    promPort = await freePort();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agate-prom-'));
    fs.writeFileSync(path.join(dir, 'prometheus.yml'), [
      'global: {scrape_interval: 1s, evaluation_interval: 1s}',
      'scrape_configs:',
      '  - job_name: agate',
      '    static_configs:',
      `      - targets: ['127.0.0.1:${agate.adminPort}']`,
      '',
    ].join('\n'));
    prom = spawn('prometheus', [
      `--config.file=${path.join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
      '--log.level=warn',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let promErr = '';
    prom.stderr.on('data', (d) => { promErr += d; });
    const ready = await waitFor(async () => {
      try { return (await request(promPort, { path: '/-/ready' })).statusCode === 200; } catch { return false; }
    }, 20000);
    assert.ok(ready, `prometheus did not become ready: ${promErr}`);
  });

  after(async () => {
    if (prom) { prom.kill('SIGTERM'); await new Promise((r) => prom.once('exit', r)); }
    if (agate) await stopClean(agate);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function query(q) {
    const res = await request(promPort, { path: `/api/v1/query?query=${encodeURIComponent(q)}` });
    assert.equal(res.statusCode, 200, res.text);
    const body = JSON.parse(res.text);
    assert.equal(body.status, 'success', res.text);
    return body.data.result.length ? Number(body.data.result[0].value[1]) : undefined;
  }

  test('series arrive in Prometheus with the values of the traffic driven', T, async () => {
    const runs = 7;
    for (let i = 0; i < runs; i++) {
      const r = await streamRun(agate.port, runInput('one two three'));
      assert.equal(r.statusCode, 200);
    }
    for (let i = 0; i < 3; i++) assert.equal((await request(agate.port, { path: '/no/such/path' })).statusCode, 404);
    assert.equal((await request(agate.port, { method: 'POST', path: '/v1/agents/echo/run', body: '{"threadId":1}' })).statusCode, 400);

    const want = {
      'sum(agate_runs_started_total{agent="echo",transport="sse"})': runs,
      'sum(agate_runs_ended_total{agent="echo",outcome="finished"})': runs,
      'agate_events_sent_total{type="TEXT_MESSAGE_CONTENT"}': runs * 3,
      'agate_events_sent_total{type="RUN_STARTED"}': runs,
      'sum(agate_http_requests_total{listener="main",route="not_found",code="4xx"})': 3,
      'sum(agate_http_requests_total{listener="main",route="run",code="2xx"})': runs,
      'agate_http_rejected_requests_total{reason="invalid_input"}': 1,
      'agate_run_duration_seconds_count{agent="echo"}': runs,
      'agate_run_first_event_seconds_count{agent="echo"}': runs,
      'agate_run_event_gap_seconds_count{agent="echo"}': runs * 6,   // 7 events per run, 6 gaps
      'up{job="agate"}': 1,
    };
    const got = {};
    const ok = await waitFor(async () => {
      for (const q of Object.keys(want)) got[q] = await query(q);
      return Object.keys(want).every((q) => got[q] === want[q]);
    }, 20000, 500);
    assert.ok(ok, `Prometheus values differ:\n${Object.keys(want).map((q) => `${q}: got ${got[q]}, want ${want[q]}`).join('\n')}`);
    // Gauges and engine series are there and plausible.
    assert.ok((await query('sum(agate_shard_loop_iterations_total)')) > 0);
    assert.ok((await query('agate_uring_sqes_per_loop_count')) > 0);
    // every loop turn is in the turn-time histogram: its count follows the turn
    // counter (one expression, so one scrape; another shard may be mid-turn
    // between the two adds)
    assert.ok((await query('agate_shard_loop_turn_seconds_count')) > 0, 'loop turns observed');
    const diff = await query('abs(agate_shard_loop_turn_seconds_count - scalar(sum(agate_shard_loop_iterations_total)))');
    assert.ok(diff !== undefined && diff <= 5, `turn histogram count vs loop iterations differ by ${diff}`);
    assert.ok((await query('agate_shard_loop_turn_seconds_sum')) > 0);
    assert.ok((await query('process_resident_memory_bytes')) > 1e6);
    assert.equal(await query('agate_draining'), 0);
  });

  test('promtool check metrics passes on the text exposition; OpenMetrics ends with # EOF', T, async () => {
    const res = await metricsText(agate.adminPort);
    assert.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    const r = spawnSync('promtool', ['check', 'metrics'], { input: res.body, encoding: 'utf8' });
    assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
    assert.equal((r.stdout + r.stderr).trim(), '', `promtool found problems:\n${r.stdout}${r.stderr}`);

    const om = await metricsText(agate.adminPort, 'application/openmetrics-text;version=1.0.0,text/plain;q=0.5');
    assert.match(om.headers['content-type'], /^application\/openmetrics-text; version=1\.0\.0/);
    assert.ok(om.text.endsWith('# EOF\n'));
    assert.match(om.text, /^# TYPE agate_runs_started counter$/m);
    assert.match(om.text, /^agate_runs_started_total\{agent="echo",transport="sse"\} \d+$/m);
  });

  test('/metrics is on the admin listener only by default; no request ids or raw paths as labels', T, async () => {
    assert.equal((await request(agate.port, { path: '/metrics' })).statusCode, 404);
    await request(agate.port, { path: '/secret-looking/path/42' });
    const text = (await metricsText(agate.adminPort)).text;
    assert.ok(!text.includes('secret-looking'), 'a raw path leaked into labels');
    assert.ok(!/request_id=/.test(text));
  });
});

test('metrics.enabled false: /metrics says so with a 404 instead of serving zeros', T, async () => {
  const agate = await startAgate({ env: { AGATE_METRICS: 'false' } });
  try {
    await streamRun(agate.port, 'echo', runInput('hi there'));
    const res = await request(agate.adminPort, { path: '/metrics' });
    assert.equal(res.statusCode, 404);
    assert.equal(JSON.parse(res.text).error, 'metrics_disabled');
    assert.ok(!res.text.includes('agate_'), 'no series when disabled');
  } finally {
    await stopClean(agate);
  }
});

describe('W3C trace context', () => {
  let agate;
  before(async () => { agate = await startAgate({ config: 'log: {requests: true}\n' }); });
  after(async () => { if (agate) await stopClean(agate); });

  const TRACE = '0af7651916cd43dd8448eb211c80319c';
  const PARENT = 'b7ad6b7169203331';

  test('a valid traceparent is adopted: same trace id, new span id, flags kept, logged', T, async () => {
    const res = await request(agate.port, { path: '/healthz', headers: { traceparent: `00-${TRACE}-${PARENT}-01`, 'X-Request-ID': 'tp-valid' } });
    const m = TP_RE.exec(res.headers.traceparent || '');
    assert.ok(m, `traceparent echoed: ${res.headers.traceparent}`);
    assert.equal(m[1], TRACE);
    assert.notEqual(m[2], PARENT);
    assert.equal(m[3], '01');
    const line = await waitFor(() => agate.stdoutLines().map((l) => JSON.parse(l)).find((j) => j.request_id === 'tp-valid'), 3000, 50);
    assert.ok(line, 'request line logged');
    assert.equal(line.trace_id, TRACE);
    assert.equal(line.span_id, m[2]);
  });

  test('a hostile path is logged as valid JSON: quotes and backslashes escaped, other bytes as ?', T, async () => {
    // llhttp takes bytes >= 0x80 in a path; '"' and '\\' arrive percent-free here
    const raw = Buffer.concat([
      Buffer.from('GET /q"x\\y'), Buffer.from([0xc3, 0xa9, 0xff]),
      Buffer.from(`/${'z'.repeat(300)} HTTP/1.1\r\nHost: a\r\nX-Request-ID: hostile-path\r\nConnection: close\r\n\r\n`),
    ]);
    const res = await rawRequest(agate.port, raw);
    assert.match(res.text, /^HTTP\/1\.1 404 /);
    const line = await waitFor(() => agate.stdoutLines().map((l) => JSON.parse(l)).find((j) => j.request_id === 'hostile-path'), 3000, 50);
    assert.ok(line, 'request line logged and parsed as JSON');
    // the first 256 bytes of the path, non-ASCII bytes replaced one for one
    assert.equal(line.path, ('/q"x\\y???/' + 'z'.repeat(300)).slice(0, 256));
    assert.equal(line.status, 404);
    assert.equal(line.method, 'GET');
  });

  test('an unknown higher version is parsed by its first 55 characters', T, async () => {
    const res = await request(agate.port, { path: '/healthz', headers: { traceparent: `cc-${TRACE}-${PARENT}-01-future-stuff` } });
    assert.equal(TP_RE.exec(res.headers.traceparent)[1], TRACE);
  });

  for (const [what, value] of [
    ['uppercase hex', `00-${TRACE.toUpperCase()}-${PARENT}-01`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${PARENT}-01`],
    ['all-zero parent id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['version ff', `ff-${TRACE}-${PARENT}-01`],
    ['too short', `00-${TRACE}-${PARENT}-1`],
    ['version 00 with extra fields', `00-${TRACE}-${PARENT}-01-extra`],
    ['garbage', 'not a traceparent'],
  ]) {
    test(`a malformed traceparent (${what}) starts a new trace`, T, async () => {
      const res = await request(agate.port, { path: '/healthz', headers: { traceparent: value } });
      const m = TP_RE.exec(res.headers.traceparent || '');
      assert.ok(m, `a valid traceparent is generated: ${res.headers.traceparent}`);
      assert.notEqual(m[1], TRACE);
      assert.notEqual(m[1], '0'.repeat(32));
    });
  }

  test('without traceparent each request gets its own trace', T, async () => {
    const a = TP_RE.exec((await request(agate.port, { path: '/healthz' })).headers.traceparent);
    const b = TP_RE.exec((await request(agate.port, { path: '/healthz' })).headers.traceparent);
    assert.ok(a && b);
    assert.notEqual(a[1], b[1]);
    assert.equal(a[3], '01');
  });
});

/** A fake OTLP/HTTP collector on loopback: every POSTed body, and its spans flattened. */
async function startCollector() {
  const bodies = [];
  const collector = http.createServer((req, res) => {
    let data = '';
    req.on('data', (d) => { data += d; });
    req.on('end', () => {
      bodies.push({ path: req.url, type: req.headers['content-type'], body: JSON.parse(data) });
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise((r) => collector.listen(0, '127.0.0.1', r));
  const spans = () => bodies.flatMap((b) => (b.body.resourceSpans || [])
    .flatMap((rs) => (rs.scopeSpans || []).flatMap((ss) => ss.spans || [])));
  return { collector, bodies, spans, port: collector.address().port, close: () => collector.close() };
}

/** A span's attributes as {key: value} (intValue stays a string, as OTLP/JSON writes it). */
const attrsOf = (s) => Object.fromEntries(s.attributes.map((a) => [a.key, Object.values(a.value)[0]]));
const spanIdSent = (rec) => /^00-[0-9a-f]{32}-([0-9a-f]{16})-[0-9a-f]{2}$/.exec(rec.headers.traceparent || '')?.[1];

describe('OTLP span export', () => {
  test('run spans reach a collector as OTLP/HTTP JSON with the caller as parent', T, async () => {
    const { collector, bodies, port: cport } = await startCollector();
    const agate = await startAgate({
      config: `trace: {otlp_endpoint: "http://127.0.0.1:${cport}/v1/traces", export_interval: 100ms}\n`,
    });
    try {
      const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
      const PARENT = '00f067aa0ba902b7';
      const r = await streamRun(agate.port, runInput('span me'), { headers: { traceparent: `00-${TRACE}-${PARENT}-01` } });
      assert.equal(r.statusCode, 200);
      const span = await waitFor(() => {
        for (const b of bodies) {
          for (const rs of b.body.resourceSpans || []) {
            for (const ss of rs.scopeSpans || []) {
              const s = (ss.spans || []).find((x) => x.traceId === TRACE);
              if (s) return { span: s, resource: rs.resource, path: b.path, type: b.type };
            }
          }
        }
        return null;
      }, 5000, 50);
      assert.ok(span, `no span with our trace id; got ${JSON.stringify(bodies).slice(0, 500)}`);
      assert.equal(span.path, '/v1/traces');
      assert.match(span.type, /^application\/json/);
      const s = span.span;
      assert.equal(s.parentSpanId, PARENT);
      assert.match(s.spanId, /^[0-9a-f]{16}$/);
      assert.equal(s.spanId, TP_RE.exec(r.headers.traceparent)[2], 'the span id is the one echoed to the client');
      assert.equal(s.name, 'POST /v1/agents/{name}/run');
      assert.equal(s.kind, 2);
      assert.ok(BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano));
      const attrs = Object.fromEntries(s.attributes.map((a) => [a.key, Object.values(a.value)[0]]));
      assert.equal(attrs['agate.agent'], 'echo');
      assert.equal(attrs['http.response.status_code'], '200');
      assert.equal(attrs['agate.events'], String(r.events.length));
      const svc = span.resource.attributes.find((a) => a.key === 'service.name');
      assert.equal(svc.value.stringValue, 'agate');
      const text = (await metricsText(agate.adminPort)).text;
      assert.ok(sampleValue(text, 'agate_otlp_spans_exported_total') >= 1);
    } finally {
      await stopClean(agate);
      collector.close();
    }
  });

  /** agate with two proxy agents whose first endpoint fails (refuses, or answers 503)
   * and whose second works; retries on, one shard so round robin starts at the first. */
  async function proxyAgate(cport, refused, bad, good) {
    const agent = (name, endpoints) => [
      `  ${name}:`, '    type: proxy', `    endpoints: [${endpoints.join(', ')}]`,
      '    retry: {attempts: 2, backoff: 10ms, max_backoff: 20ms}',
      '    timeouts: {connect: 2s, first_event: 5s, idle: 5s, run: 30s}',
    ];
    return startAgate({
      env: { AGATE_SHARDS: '1' },
      config: [
        `trace: {otlp_endpoint: "http://127.0.0.1:${cport}/v1/traces", export_interval: 100ms}`,
        'stream: {drain_timeout: 3s}',
        'agents:', ...agent('refusing', [refused, good]), ...agent('failing', [bad, good]), ...agent('held', [good]), '',
      ].join('\n'),
    });
  }

  /** The SERVER span and the CLIENT spans (by attempt) of one trace, once `n` client spans
   * (and, unless withServer is false, the server span) are in. */
  async function traceSpans(col, trace, n, { withServer = true } = {}) {
    const got = await waitFor(() => {
      const all = col.spans().filter((x) => x.traceId === trace);
      const server = all.filter((x) => x.kind === 2);
      const client = all.filter((x) => x.kind === 3);
      return (server.length >= 1 || !withServer) && client.length >= n ? { server, client } : null;
    }, 5000, 50);
    assert.ok(got, `spans of ${trace}: ${JSON.stringify(col.spans().filter((x) => x.traceId === trace)).slice(0, 800)}`);
    await sleep(300);   // three more export ticks: a duplicate would be here by now
    const all = col.spans().filter((x) => x.traceId === trace);
    const client = all.filter((x) => x.kind === 3).sort((a, b) => Number(attrsOf(a)['agate.attempt']) - Number(attrsOf(b)['agate.attempt']));
    assert.equal(client.length, n, `exactly ${n} CLIENT spans: ${JSON.stringify(client)}`);
    return { server: all.filter((x) => x.kind === 2), client };
  }

  /** What every upstream attempt's span carries. */
  function assertAttemptSpan(c, { parent, attempt, agent, requestId, port, spanId }) {
    const a = attrsOf(c);
    assert.equal(c.parentSpanId, parent, 'the parent is the request\'s server span');
    assert.equal(c.spanId, spanId, 'the span id is the one sent upstream in traceparent');
    assert.equal(c.name, 'POST');
    assert.equal(a['http.request.method'], 'POST');
    assert.equal(a['server.address'], '127.0.0.1');
    assert.equal(a['server.port'], String(port));
    assert.equal(a['url.path'], '/agent');
    assert.equal(a['agate.agent'], agent);
    assert.equal(a['agate.attempt'], String(attempt));
    assert.equal(a['agate.request_id'], requestId);
    assert.equal(a['http.route'], undefined);
    assert.ok(BigInt(c.endTimeUnixNano) >= BigInt(c.startTimeUnixNano), 'ends after it starts');
  }

  /** A client span lies inside its server span (a few ms of slack: both are timed on the
   * shard's per-turn clock). */
  function assertWithin(c, s) {
    const slack = 20n * 1000000n;
    assert.ok(BigInt(c.startTimeUnixNano) + slack >= BigInt(s.startTimeUnixNano), 'starts within the server span');
    assert.ok(BigInt(c.endTimeUnixNano) <= BigInt(s.endTimeUnixNano) + slack, 'ends within the server span');
  }

  test('a proxied run: one CLIENT span per upstream attempt, ids as sent in traceparent, failures as errors', T, async () => {
    const col = await startCollector();
    const bad = await startAguiServer({ script: { mode: 'status', status: 503 } });
    const good = await startAguiServer();
    const refused = `http://127.0.0.1:${await freePort()}/agent`;
    const agate = await proxyAgate(col.port, refused, bad.url, good.url);
    try {
      // First endpoint refuses the connection, the second answers.
      const TRACE = '5bf92f3577b34da6a3ce929d0e0e4736';
      const r = await streamRun(agate.port, runInput('attempts'), {
        agent: 'refusing', headers: { traceparent: `00-${TRACE}-00f067aa0ba902b7-01`, 'X-Request-ID': 'attempts-1' },
      });
      assert.equal(r.statusCode, 200, r.text);
      assert.equal(good.requests.length, 1);
      const serverId = TP_RE.exec(r.headers.traceparent)[2];
      let { server, client } = await traceSpans(col, TRACE, 2);
      assert.equal(server.length, 1);
      assert.equal(server[0].spanId, serverId);
      const common = { parent: serverId, agent: 'refusing', requestId: 'attempts-1' };
      const refusedPort = Number(new URL(refused).port);
      // Nothing listened there, so nobody saw its traceparent: its id is only checked
      // to be a fresh one.
      assertAttemptSpan(client[0], { ...common, attempt: 1, port: refusedPort, spanId: client[0].spanId });
      assert.match(client[0].spanId, /^[0-9a-f]{16}$/);
      assertAttemptSpan(client[1], { ...common, attempt: 2, port: good.port, spanId: spanIdSent(good.requests[0]) });
      assert.notEqual(client[0].spanId, client[1].spanId);
      assert.ok(![serverId, '00f067aa0ba902b7'].includes(client[0].spanId));
      assert.equal(client[0].status.code, 2, 'a refused attempt is an error');
      assert.equal(attrsOf(client[0])['error.type'], 'connect');
      assert.equal(attrsOf(client[0])['http.response.status_code'], undefined, 'no answer, no status code');
      assert.equal(client[1].status.code ?? 0, 0);
      assert.equal(attrsOf(client[1])['http.response.status_code'], '200');
      assert.equal(attrsOf(client[1])['error.type'], undefined);
      for (const c of client) assertWithin(c, server[0]);
      assert.ok(BigInt(client[0].endTimeUnixNano) <= BigInt(client[1].startTimeUnixNano) + 1000000n, 'the retry follows');

      // First endpoint answers 503, the second answers: both saw their traceparent.
      const TRACE2 = '6bf92f3577b34da6a3ce929d0e0e4736';
      const r2 = await streamRun(agate.port, runInput('attempts'), {
        agent: 'failing', headers: { traceparent: `00-${TRACE2}-00f067aa0ba902b7-01`, 'X-Request-ID': 'attempts-2' },
      });
      assert.equal(r2.statusCode, 200, r2.text);
      const serverId2 = TP_RE.exec(r2.headers.traceparent)[2];
      ({ client } = await traceSpans(col, TRACE2, 2));
      const common2 = { parent: serverId2, agent: 'failing', requestId: 'attempts-2' };
      assertAttemptSpan(client[0], { ...common2, attempt: 1, port: bad.port, spanId: spanIdSent(bad.requests[0]) });
      assertAttemptSpan(client[1], { ...common2, attempt: 2, port: good.port, spanId: spanIdSent(good.requests[1]) });
      assert.equal(client[0].status.code, 2);
      assert.equal(attrsOf(client[0])['http.response.status_code'], '503');
      assert.equal(attrsOf(client[0])['error.type'], '503', 'OTel: error.type is the status code when there is one');
      assert.equal(client[1].status.code ?? 0, 0);
    } finally {
      await stopClean(agate);
      bad.close();
      good.close();
      col.close();
    }
  });

  test('WebSocket runs: a CLIENT span per attempt under the upgrade\'s span; a cancelled attempt ends as one', T, async () => {
    const col = await startCollector();
    const bad = await startAguiServer();
    const good = await startAguiServer({ script: (rec) => (rec.json?.runId === 'held-run' ? { events: [{ hold: true }] } : {}) });
    const agate = await proxyAgate(col.port, `http://127.0.0.1:${await freePort()}/agent`, bad.url, good.url);
    const TRACE = '7bf92f3577b34da6a3ce929d0e0e4736';
    const ws = new WebSocket(`ws://127.0.0.1:${agate.port}/v1/agents/held/ws`, {
      headers: { traceparent: `00-${TRACE}-00f067aa0ba902b7-01`, 'X-Request-ID': 'ws-spans' },
    });
    try {
      const upgrade = await new Promise((resolve, reject) => { ws.once('upgrade', resolve); ws.once('error', reject); });
      await new Promise((resolve) => (ws.readyState === WebSocket.OPEN ? resolve() : ws.once('open', resolve)));
      const serverId = TP_RE.exec(upgrade.headers.traceparent)[2];
      const events = [];
      ws.on('message', (m) => events.push(JSON.parse(m.toString())));
      ws.send(JSON.stringify(runInput('over ws', { runId: 'done-run' })));
      ws.send(JSON.stringify(runInput('held', { runId: 'held-run' })));
      assert.ok(await waitFor(() => events.some((e) => e.runId === 'done-run' && e.type === 'RUN_FINISHED')
        && good.requests.length === 2, 5000, 20), JSON.stringify(events));
      await sleep(100);
      ws.send(JSON.stringify({ type: 'CANCEL', runId: 'held-run' }));
      assert.ok(await waitFor(() => events.some((e) => e.runId === 'held-run' && e.code === 'cancelled'), 5000, 20));
      // The upgrade's server span lasts as long as the connection: not exported yet.
      const { client } = await traceSpans(col, TRACE, 2, { withServer: false });
      const byRequest = (rec) => client.find((c) => c.spanId === spanIdSent(rec));
      const done = byRequest(good.requests.find((q) => q.json.runId === 'done-run'));
      const held = byRequest(good.requests.find((q) => q.json.runId === 'held-run'));
      assert.ok(done && held, 'each attempt\'s span id is the one its upstream request carried');
      for (const c of [done, held]) {
        assertAttemptSpan(c, { parent: serverId, attempt: 1, agent: 'held', requestId: 'ws-spans', port: good.port, spanId: c.spanId });
      }
      assert.equal(done.status.code ?? 0, 0);
      assert.equal(attrsOf(done)['http.response.status_code'], '200');
      assert.equal(held.status.code, 2, 'a cancelled attempt did not complete');
      assert.equal(attrsOf(held)['error.type'], 'cancelled');
      assert.equal(attrsOf(held)['http.response.status_code'], '200', 'its head had come');
      assert.equal(bad.requests.length, 0);
      ws.close(1000);
      const { server } = await traceSpans(col, TRACE, 2);
      assert.equal(server.length, 1);
      assert.equal(server[0].spanId, serverId);
      for (const c of [done, held]) assertWithin(c, server[0]);
    } finally {
      ws.terminate();
      await stopClean(agate);
      bad.close();
      good.close();
      col.close();
    }
  });
});

describe('request logs', () => {
  test('log.sample 0 drops successful lines, errors are always written', T, async () => {
    const agate = await startAgate({ config: 'log: {requests: true, sample: 0}\n' });
    try {
      for (let i = 0; i < 5; i++) await request(agate.port, { path: '/healthz', headers: { 'X-Request-ID': `ok-${i}` } });
      for (let i = 0; i < 2; i++) await request(agate.port, { path: '/missing', headers: { 'X-Request-ID': `bad-${i}` } });
      const lines = await waitFor(() => {
        const l = agate.stdoutLines().map((x) => JSON.parse(x)).filter((j) => j.msg === 'request');
        return l.length >= 2 ? l : null;
      }, 3000, 50);
      assert.ok(lines, 'error lines written');
      await sleep(200);
      const ids = agate.stdoutLines().map((x) => JSON.parse(x)).filter((j) => j.msg === 'request').map((j) => j.request_id);
      assert.deepEqual(ids.sort(), ['bad-0', 'bad-1']);
      const line = lines[0];
      assert.equal(line.level, 'warn');
      assert.match(line.trace_id, /^[0-9a-f]{32}$/);
      assert.match(line.span_id, /^[0-9a-f]{16}$/);
    } finally {
      await stopClean(agate);
    }
  });

  test('log.level error hides 4xx lines', T, async () => {
    const agate = await startAgate({ config: 'log: {requests: true, level: error}\n' });
    try {
      await request(agate.port, { path: '/missing' });
      await request(agate.port, { path: '/healthz' });
      await sleep(300);
      assert.equal(agate.stdoutLines().map((x) => JSON.parse(x)).filter((j) => j.msg === 'request').length, 0);
    } finally {
      await stopClean(agate);
    }
  });

  test('a log reader that stops reading costs log lines, never requests', T, async () => {
    const agate = await startAgate({ config: 'log: {requests: true, buffer: 1MiB}\n', env: { AGATE_SHARDS: '1' } });
    try {
      agate.proc.stdout.pause();   // the pipe fills; the log writer thread blocks in write()
      const conn = await RawConn.connect(agate.port);
      const batch = 200;
      const rounds = 60;           // 12000 lines: far more than the pipe and the 1 MiB ring hold
      const one = buildRequest({ path: '/healthz', headers: { 'X-Request-ID': 'flood' } });
      const t0 = Date.now();
      for (let r = 0; r < rounds; r++) {
        const before = conn.data.length;
        await conn.write(Buffer.concat(Array(batch).fill(one)));
        await conn.waitFor((c) => {
          const n = (c.data.toString('latin1', before).match(/HTTP\/1\.1 200 OK/g) || []).length;
          return n >= batch;
        }, 10000);
      }
      const elapsed = Date.now() - t0;
      const all = parseResponses(conn.data, { eof: false }).responses;
      assert.equal(all.length, batch * rounds);
      assert.ok(all.every((x) => x.statusCode === 200));
      conn.destroy();
      const text = (await metricsText(agate.adminPort)).text;
      const dropped = sampleValue(text, 'agate_log_lines_dropped_total');
      assert.ok(dropped > 0, `lines dropped while the reader was stalled: ${dropped} (elapsed ${elapsed} ms)`);
      agate.proc.stdout.resume();  // the writer catches up and later lines flow again
      // Lines made while the ring is still full are dropped too, so keep asking.
      let n = 0;
      const seen = await waitFor(async () => {
        await request(agate.port, { path: '/healthz', headers: { 'X-Request-ID': `after-stall-${++n}` } });
        return /"after-stall-\d+"/.test(agate.stdout());
      }, 10000, 100);
      assert.ok(seen, 'log lines flow again once the reader resumes');
    } finally {
      agate.proc.stdout.resume();
      await stopClean(agate);
    }
  });

  test('a larger log.buffer rides out the same stall without losing a line', T, async () => {
    // The stall above, 8000 lines (~2 MiB): more than the pipe and a 1 MiB ring
    // hold, less than a 16 MiB one.
    const agate = await startAgate({ config: 'log: {requests: true}\n', env: { AGATE_SHARDS: '1', AGATE_LOG_BUFFER: '16MiB' } });
    try {
      agate.proc.stdout.pause();
      const conn = await RawConn.connect(agate.port);
      const batch = 200;
      const rounds = 40;
      const one = buildRequest({ path: '/healthz', headers: { 'X-Request-ID': 'held' } });
      for (let r = 0; r < rounds; r++) {
        const before = conn.data.length;
        await conn.write(Buffer.concat(Array(batch).fill(one)));
        await conn.waitFor((c) => (c.data.toString('latin1', before).match(/HTTP\/1\.1 200 OK/g) || []).length >= batch, 10000);
      }
      conn.destroy();
      assert.equal(sampleValue((await metricsText(agate.adminPort)).text, 'agate_log_lines_dropped_total'), 0);
      agate.proc.stdout.resume();
      const all = await waitFor(() => (agate.stdout().match(/"request_id":"held"/g) || []).length === batch * rounds, 10000, 100);
      assert.ok(all, `every line arrives once the reader resumes: ${(agate.stdout().match(/"request_id":"held"/g) || []).length} of ${batch * rounds}`);
    } finally {
      agate.proc.stdout.resume();
      await stopClean(agate);
    }
  });
});
