// Rate and concurrency limits against the real binary (2 shards): each limit
// type and key (per second with burst, per minute, concurrent, API key, JWT
// claim, client address behind a trusted proxy, a global rule per agent), the
// 429 answer (headers and JSON body) and the quota headers of allowed streams,
// slots released however a run ends (finished, invalid input, client gone,
// upstream failure), accuracy within 1% across shards under many keep-alive
// clients, and SIGHUP keeping the state of unchanged rules.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import {
  startAgate, stopClean, request, runInput, assertError, waitFor, streamRun, sleep, RawConn, buildRequest,
  parseResponses,
} from './lib/harness.mjs';
import { startAguiServer } from './lib/agui-server.mjs';
import WebSocket from 'ws';

const T = { timeout: 30000 };
const sha = (s) => crypto.createHash('sha256').update(s).digest('hex');
const KEY_A = `ka-${crypto.randomBytes(8).toString('hex')}`;
const KEY_B = `kb-${crypto.randomBytes(8).toString('hex')}`;
const SECRET = crypto.randomBytes(24).toString('hex');
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
function jwt(c) {
  const input = `${b64({ alg: 'HS256' })}.${b64({ exp: Math.floor(Date.now() / 1000) + 300, scope: 'agents:run', ...c })}`;
  return `${input}.${crypto.createHmac('sha256', SECRET).update(input).digest('base64url')}`;
}
const keysYaml = [
  'auth:',
  '  trusted_proxies: [127.0.0.1/32]',
  '  api_keys:',
  `    - {name: a, sha256: ${sha(KEY_A)}, scopes: [agents:run]}`,
  `    - {name: b, sha256: ${sha(KEY_B)}, scopes: [agents:run]}`,
  '  jwt:',
  `    keys: [{secret: "${SECRET}"}]`,
].join('\n');

const rulesYaml = (rules) => ['rate_limit:', '  rules:', ...rules.map((r) => `    - ${r}`)].join('\n');
const agentsYaml = (extra = []) => ['agents:', '  echo: {type: echo}', '  slow: {type: echo, token_interval_ms: 100}', ...extra].join('\n');
const config = (rules, extraAgents) => `${agentsYaml(extraAgents)}\n${keysYaml}\n${rulesYaml(rules)}\n`;
const run = (agate, { agent = 'echo', headers = {}, body = runInput('a b') } = {}) =>
  request(agate.port, { method: 'POST', path: `/v1/agents/${agent}/run`, headers: { 'Content-Type': 'application/json', ...headers }, body });
const auth = (k) => ({ Authorization: `Bearer ${k}` });

function assert429(res) {
  const body = assertError(res, 429, 'rate_limit_exceeded');
  assert.ok(Number(res.headers['retry-after']) >= 1, 'Retry-After');
  for (const p of ['ratelimit-', 'x-ratelimit-']) {
    assert.ok(res.headers[`${p}limit`] !== undefined, `${p}limit`);
    assert.equal(res.headers[`${p}remaining`], '0');
    assert.ok(res.headers[`${p}reset`] !== undefined, `${p}reset`);
  }
  assert.equal(body.retry_after, Number(res.headers['retry-after']));
  assert.equal(body.limit, Number(res.headers['ratelimit-limit']));
  assert.equal(body.remaining, 0);
  assert.equal(typeof body.reset, 'number');
  return body;
}

describe('rate limits', () => {
  test('per second with burst, per API key; quota headers on allowed streams; 429 shape', T, async () => {
    const agate = await startAgate({ config: config(['{name: keyed, key: api_key, per_second: 1, burst: 3}']) });
    try {
      const seen = [];
      for (let i = 0; i < 3; i++) {
        const res = await run(agate, { headers: auth(KEY_A) });
        assert.equal(res.statusCode, 200, res.text);
        assert.match(res.headers['content-type'], /text\/event-stream/);
        seen.push(Number(res.headers['ratelimit-remaining']));
        assert.equal(res.headers['ratelimit-limit'], '1');
        assert.equal(res.headers['x-ratelimit-remaining'], res.headers['ratelimit-remaining']);
      }
      assert.deepEqual(seen, [2, 1, 0]);
      const body = assert429(await run(agate, { headers: auth(KEY_A) }));
      assert.equal(body.limit, 1);
      // another key has its own bucket; no key at all is not limited by an api_key rule
      assert.equal((await run(agate, { headers: auth(KEY_B) })).statusCode, 200);
      assert.equal((await run(agate)).statusCode, 200);
      await sleep(1100);
      assert.equal((await run(agate, { headers: auth(KEY_A) })).statusCode, 200);
      const m = (await request(agate.adminPort, { path: '/metrics' })).text;
      assert.match(m, /agate_http_rejected_requests_total\{reason="rate_limited"\} [1-9]/);
      assert.match(m, /agate_ratelimit_cells\{state="used"\} [1-9]/);
    } finally { await stopClean(agate); }
  });

  test('per minute; JWT claim key (tenant); client address from a trusted X-Forwarded-For', T, async () => {
    const agate = await startAgate({
      config: config(['{name: tenant, key: "claim:tenant", per_minute: 2}', '{name: ip, key: client_ip, per_minute: 3, agents: [slow]}']),
    });
    try {
      for (let i = 0; i < 2; i++) assert.equal((await run(agate, { headers: auth(jwt({ tenant: 't1', sub: `u${i}` })) })).statusCode, 200);
      const body = assert429(await run(agate, { headers: auth(jwt({ tenant: 't1', sub: 'u9' })) }));
      assert.ok(body.retry_after > 20 && body.retry_after <= 30, `per minute: retry_after ${body.retry_after}`);
      assert.equal((await run(agate, { headers: auth(jwt({ tenant: 't2' })) })).statusCode, 200);
      // client_ip on agent slow only: three per address, the address taken from XFF (127.0.0.1 is trusted)
      const slow = (ip) => run(agate, { agent: 'slow', headers: { 'X-Forwarded-For': `${ip}, 127.0.0.1` }, body: runInput('') });
      for (let i = 0; i < 3; i++) assert.equal((await slow('203.0.113.7')).statusCode, 200);
      assert429(await slow('203.0.113.7'));
      assert.equal((await slow('198.51.100.1')).statusCode, 200);
    } finally { await stopClean(agate); }
  });

  test('a refused request consumes nothing from the rules that passed', T, async () => {
    const agate = await startAgate({
      config: config(['{name: wide, key: api_key, per_minute: 3, per_agent: false}', '{name: narrow, key: api_key, per_minute: 1, agents: [slow]}']),
    });
    try {
      assert.equal((await run(agate, { agent: 'slow', headers: auth(KEY_A), body: runInput('') })).statusCode, 200);
      for (let i = 0; i < 5; i++) assert429(await run(agate, { agent: 'slow', headers: auth(KEY_A), body: runInput('') }));
      // wide was charged once (the allowed run), not by the five refusals
      assert.equal((await run(agate, { headers: auth(KEY_A) })).statusCode, 200);
      assert.equal((await run(agate, { headers: auth(KEY_A) })).statusCode, 200);
      assert429(await run(agate, { headers: auth(KEY_A) }));
    } finally { await stopClean(agate); }
  });

  test('concurrency: slot held while streaming, released on finish, invalid input, client disconnect', T, async () => {
    const agate = await startAgate({ config: config(['{name: one, key: api_key, concurrent: 1}']) });
    try {
      const paced = runInput('w1 w2 w3 w4 w5', { forwardedProps: { agate: { tokenIntervalMs: 100 } } });
      const first = streamRun(agate.port, paced, { headers: auth(KEY_A) });
      await sleep(150);
      const body = assert429(await run(agate, { headers: auth(KEY_A) }));
      assert.equal(body.limit, 1);
      assert.equal((await run(agate, { headers: auth(KEY_B) })).statusCode, 200, 'another key is not held');
      const done = await first;
      assert.ok(done.events.some((e) => e.type === 'RUN_FINISHED'));
      assert.equal((await run(agate, { headers: auth(KEY_A) })).statusCode, 200, 'released on finish');
      // invalid RunAgentInput: 400, and the slot is not kept
      assertError(await run(agate, { headers: auth(KEY_A), body: '{"nope":1}' }), 400, 'invalid_request');
      assert.equal((await run(agate, { headers: auth(KEY_A) })).statusCode, 200, 'released after 400');
      // client disconnect mid-stream
      const conn = await RawConn.connect(agate.port);
      await conn.write(buildRequest({ method: 'POST', path: '/v1/agents/echo/run', headers: { ...auth(KEY_A), 'Content-Type': 'application/json' }, body: paced }));
      await conn.waitFor((c) => c.text.includes('TEXT_MESSAGE_CONTENT'), 5000);
      assert.equal((await run(agate, { headers: auth(KEY_A) })).statusCode, 429);
      conn.destroy();
      await waitFor(async () => (await run(agate, { headers: auth(KEY_A) })).statusCode === 200, 5000);
    } finally { await stopClean(agate); }
  });

  test('concurrency: released when the upstream fails before and after the first event', T, async () => {
    const up = await startAguiServer({ script: { mode: 'reset' } });
    const agate = await startAgate({
      config: config(['{name: one, key: global, concurrent: 1}'], [
        '  up:', '    type: proxy', `    endpoints: [http://127.0.0.1:${up.port}/agent]`, '    retry: {attempts: 0}',
      ]),
    });
    try {
      const r1 = await run(agate, { agent: 'up' });
      assert.ok(r1.statusCode >= 500, `upstream reset before the stream: ${r1.statusCode}`);
      up.script = (rec) => ({ events: [{ type: 'RUN_STARTED', threadId: 't', runId: 'r' }, { delay: 50 }, { destroy: true }] });
      const r2 = await streamRun(agate.port, runInput('x'), { agent: 'up' });
      assert.equal(r2.statusCode, 200);
      assert.ok(r2.events.some((e) => e.type === 'RUN_ERROR'), 'RUN_ERROR after the upstream dropped');
      up.script = {};
      const r3 = await streamRun(agate.port, runInput('x'), { agent: 'up' });
      assert.equal(r3.statusCode, 200, 'the slot came back after both failures');
    } finally { await stopClean(agate); await up.close(); }
  });

  test('global rule per agent: every caller shares one bucket, other agents are untouched', T, async () => {
    const agate = await startAgate({ config: config(['{name: fragile, key: global, per_minute: 2, agents: [slow]}']) });
    try {
      const slow = (h) => run(agate, { agent: 'slow', headers: h, body: runInput('') });
      assert.equal((await slow(auth(KEY_A))).statusCode, 200);
      assert.equal((await slow(auth(KEY_B))).statusCode, 200);
      assert429(await slow({}));
      assert.equal((await run(agate)).statusCode, 200);
    } finally { await stopClean(agate); }
  });

  // The times (ms) at which agate logged an admitted run of the echo agent.
  const admittedTimes = (agate) => agate.stdoutLines()
    .map((l) => { try { return JSON.parse(l); } catch { return null; } })
    .filter((j) => j && j.msg === 'request' && j.status === 200 && j.path === '/v1/agents/echo/run')
    .map((j) => Date.parse(j.time));

  // 150/s is decided by one CAS per request; 2000/s is leased to the shards five
  // tokens at a time (rl_lease_for), which must hold the same 1%.
  for (const [RATE, BURST] of [[150, 30], [2000, 200]]) test(`accuracy across 2 shards: 48 keep-alive clients for 4 s against ${RATE}/s burst ${BURST}, within 1%`, { timeout: 60000 }, async () => {
    const SECONDS = 4, CLIENTS = 48;
    const agate = await startAgate({ config: config([`{name: g, key: global, per_second: ${RATE}, burst: ${BURST}}`]) });
    try {
      const body = runInput('');
      const req = buildRequest({ method: 'POST', path: '/v1/agents/echo/run', headers: { 'Content-Type': 'application/json' }, body });
      let ok = 0, limited = 0, other = 0, firstSend = Infinity, lastRecv = 0, stop = false;
      const client = async () => {
        const conn = await RawConn.connect(agate.port);
        let offset = 0;
        while (!stop) {
          const sent = Date.now();
          firstSend = Math.min(firstSend, sent);
          await conn.write(req);
          await conn.waitFor(() => {
            try {
              const r = parseResponses(conn.data.subarray(offset), { methods: ['POST'], eof: false }).responses;
              return r.length > 0 && r[0].complete;
            } catch { return false; }
          }, 10000);
          const r = parseResponses(conn.data.subarray(offset), { methods: ['POST'], eof: false });
          const res = r.responses[0];
          offset = conn.data.length - r.rest.length;
          if (res.statusCode === 200) ok++; else if (res.statusCode === 429) limited++; else other++;
          lastRecv = Date.now();
        }
        conn.destroy();
      };
      const clients = Array.from({ length: CLIENTS }, client);
      await sleep(SECONDS * 1000);
      stop = true;
      await Promise.all(clients);
      // The window is measured on agate's clock, from its first admitted request to
      // its last: a client-side window also holds the connect time and the last
      // responses' trip through a busy node loop, which on a loaded 2-CPU runner
      // came to 60 ms (9 admissions at this rate, -1.45%) with agate exact.
      await waitFor(() => admittedTimes(agate).length >= ok, 5000);
      const times = admittedTimes(agate);
      // a log writer that falls behind drops lines (counted, by design): the window
      // needs only the first and the last, so a few missing lines do not matter
      assert.ok(times.length >= ok * 0.99, `request log lines for ${times.length} of ${ok} admitted requests`);
      const elapsed = (Math.max(...times) - Math.min(...times)) / 1000;
      const expected = BURST + RATE * elapsed;
      const err = (ok - expected) / expected;
      const clientWindow = (lastRecv - firstSend) / 1000;
      console.log(`# accuracy: ${ok} allowed, ${limited} limited, ${other} other in ${elapsed.toFixed(3)} s (client saw ${clientWindow.toFixed(3)} s); expected ${expected.toFixed(1)} (${(err * 100).toFixed(2)}%)`);
      assert.equal(other, 0);
      // Saturated throughout: refusals at a fifth of the admissions or more. (It was
      // limited > ok, twice the rate, which a 2-CPU runner's node clients missed with
      // agate exact: 8197 allowed, 5847 limited, -0.01%.)
      assert.ok(limited >= ok * 0.2, `the clients asked for more than the limit (${ok} allowed, ${limited} limited)`);
      assert.ok(Math.abs(err) <= 0.01, `allowed ${ok} vs expected ${expected.toFixed(1)}: ${(err * 100).toFixed(2)}%`);
    } finally { await stopClean(agate); }
  });

  test('SIGHUP keeps the state of unchanged rules and starts changed ones fresh', T, async () => {
    const agate = await startAgate({ config: config(['{name: kept, key: api_key, per_minute: 2}']) });
    try {
      for (let i = 0; i < 2; i++) assert.equal((await run(agate, { headers: auth(KEY_A) })).statusCode, 200);
      assert429(await run(agate, { headers: auth(KEY_A) }));
      // same rule plus an unrelated one: KEY_A stays exhausted
      fs.writeFileSync(agate.configPath, config(['{name: kept, key: api_key, per_minute: 2}', '{name: extra, key: global, per_minute: 1000}']));
      agate.signal('SIGHUP');
      await waitFor(() => agate.stdoutLines().filter((l) => /"msg":"reload".*"status":"ok"/.test(l)).length === 1, 5000);
      assert429(await run(agate, { headers: auth(KEY_A) }));
      // the rule changed: a new bucket
      fs.writeFileSync(agate.configPath, config(['{name: kept, key: api_key, per_minute: 5}']));
      agate.signal('SIGHUP');
      await waitFor(() => agate.stdoutLines().filter((l) => /"msg":"reload".*"status":"ok"/.test(l)).length === 2, 5000);
      assert.equal((await run(agate, { headers: auth(KEY_A) })).statusCode, 200);
    } finally { await stopClean(agate); }
  });

  test('WebSocket: a refused run is a RUN_ERROR rate_limited and the connection stays open', T, async () => {
    const agate = await startAgate({ config: config(['{name: ws, key: api_key, per_minute: 1}']) });
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${agate.port}/v1/agents/echo/ws`, { headers: auth(KEY_A) });
      const msgs = [];
      ws.on('message', (d) => msgs.push(JSON.parse(d.toString())));
      await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
      const a = runInput('first'), b = runInput('second');
      ws.send(JSON.stringify(a));
      await waitFor(() => msgs.some((m) => m.type === 'RUN_FINISHED' && m.runId === a.runId), 5000);
      ws.send(JSON.stringify(b));
      await waitFor(() => msgs.some((m) => m.type === 'RUN_ERROR' && m.runId === b.runId), 5000);
      const err = msgs.find((m) => m.type === 'RUN_ERROR' && m.runId === b.runId);
      assert.equal(err.code, 'rate_limited');
      assert.equal(ws.readyState, WebSocket.OPEN, 'the connection stays open');
      // and a bad key is refused before the upgrade
      const bad = new WebSocket(`ws://127.0.0.1:${agate.port}/v1/agents/echo/ws`, { headers: auth('wrong-key') });
      const status = await new Promise((resolve) => {
        bad.once('unexpected-response', (_req, res) => resolve(res.statusCode));
        bad.once('open', () => resolve('open'));
        bad.once('error', () => resolve('error'));
      });
      assert.equal(status, 401);
      ws.close();
    } finally { await stopClean(agate); }
  });

  test('WebSocket: a key given as a header, a bearer.agate. protocol entry or access_token is one identity', T, async () => {
    const agate = await startAgate({ config: config(['{name: ws, key: api_key, per_minute: 2}']) });
    const open = (opts) => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${agate.port}/v1/agents/echo/ws${opts.query ?? ''}`, opts.protocols ?? ['ag-ui'],
        { headers: opts.headers ?? {} });
      ws.msgs = [];
      ws.on('message', (d) => ws.msgs.push(JSON.parse(d.toString())));
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });
    const runOn = async (ws) => {
      const input = runInput('one');
      ws.send(JSON.stringify(input));
      await waitFor(() => ws.msgs.some((m) => /^RUN_(FINISHED|ERROR)$/.test(m.type) && m.runId === input.runId), 5000);
      return ws.msgs.find((m) => /^RUN_(FINISHED|ERROR)$/.test(m.type) && m.runId === input.runId);
    };
    try {
      const sockets = [
        await open({ headers: auth(KEY_A) }),
        await open({ protocols: ['ag-ui', `bearer.agate.${KEY_A}`] }),
        await open({ query: `?access_token=${KEY_A}` }),
        await open({ protocols: ['ag-ui', `bearer.agate.${KEY_B}`] }),
      ];
      assert.equal((await runOn(sockets[0])).type, 'RUN_FINISHED');
      assert.equal((await runOn(sockets[1])).type, 'RUN_FINISHED');
      const third = await runOn(sockets[2]);   // key a's third run this minute, whichever way it came
      assert.equal(third.type, 'RUN_ERROR');
      assert.equal(third.code, 'rate_limited');
      assert.equal((await runOn(sockets[3])).type, 'RUN_FINISHED', 'key b has its own bucket');
      for (const ws of sockets) ws.close();
    } finally { await stopClean(agate); }
  });
});
