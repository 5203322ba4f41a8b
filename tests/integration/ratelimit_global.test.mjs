// Global rate limits and concurrency caps (issue 26) against a real
// redis-server and two agate processes (2 shards each) sharing it: a global
// per-key limit holds across both within the documented bound while a local
// one counts per pod; a busy global limit stays within burst + rate * time +
// the outstanding leases; 429s say rate_limit_exceeded with Retry-After;
// Redis killed mid-test: no crash, no hung request, each rule's
// on_redis_down (local: the per-pod share; allow; deny: 503) in responses,
// metrics and one log line per transition; Redis restarted: sharing resumes
// by itself; a global concurrency cap holds across pods and a killed pod's
// slots come back after global_slot_ttl.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  startAgate, stopClean, request, runInput, assertError, waitFor, sleep, RawConn, buildRequest,
} from './lib/harness.mjs';
import { startRedis } from './lib/redis.mjs';
import WebSocket from 'ws';

const T = { timeout: 60000 };
const sha = (s) => crypto.createHash('sha256').update(s).digest('hex');
const KEYS = Object.fromEntries(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map((n) => [n, `k${n}-${crypto.randomBytes(8).toString('hex')}`]));
const auth = (n) => ({ Authorization: `Bearer ${KEYS[n]}` });
const PODS = 2;
const SHARDS = 2;

function config(redisPort, rules, { fleet = PODS, slotTtl = '2s' } = {}) {
  return [
    'agents:',
    '  echo: {type: echo}',
    '  free: {type: echo}',
    '  strict: {type: echo}',
    '  local: {type: echo}',
    '  busy: {type: echo}',
    '  slow: {type: echo, token_interval_ms: 100}',
    'redis:',
    `  address: 127.0.0.1:${redisPort}`,
    '  reconnect_min: 50ms',
    '  reconnect_max: 200ms',
    '  command_timeout: 500ms',
    'auth:',
    '  api_keys:',
    ...Object.entries(KEYS).map(([n, k]) => `    - {name: ${n}, sha256: ${sha(k)}, scopes: [agents:run]}`),
    'rate_limit:',
    `  fleet_size: ${fleet}`,
    `  global_slot_ttl: ${slotTtl}`,
    '  rules:',
    ...rules.map((r) => `    - ${r}`),
    '',
  ].join('\n');
}

const RULES = [
  '{name: shared, key: api_key, per_minute: 20, global: true, agents: [echo]}',
  '{name: shared-allow, key: api_key, per_minute: 20, global: true, on_redis_down: allow, agents: [free]}',
  '{name: shared-deny, key: api_key, per_minute: 20, global: true, on_redis_down: deny, agents: [strict]}',
  '{name: per-pod, key: api_key, per_minute: 20, agents: [local]}',
  '{name: busy, key: global, per_second: 50, global: true, agents: [busy]}',
];

const run = (agate, { agent = 'echo', key = 'a', body = runInput('a b') } = {}) =>
  request(agate.port, { method: 'POST', path: `/v1/agents/${agent}/run`, headers: { 'Content-Type': 'application/json', ...auth(key) }, body, timeout: 5000 });

function assert429(res) {
  assertError(res, 429, 'rate_limit_exceeded');
  assert.ok(Number(res.headers['retry-after']) >= 1, `Retry-After: ${res.headers['retry-after']}`);
}

async function metric(agate, name, labels = '') {
  const text = (await request(agate.adminPort, { path: '/metrics' })).text;
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line ? Number(line.split(' ').pop()) : NaN;
}

/** Sends n runs alternating between the pods; the statuses per pod. */
async function alternate(pods, n, opts) {
  const seen = pods.map(() => ({}));
  for (let i = 0; i < n; i++) {
    const p = i % pods.length;
    const res = await run(pods[p], opts);
    seen[p][res.statusCode] = (seen[p][res.statusCode] ?? 0) + 1;
    if (res.statusCode === 429) assert429(res);
  }
  return seen;
}
const total = (seen, code) => seen.reduce((a, s) => a + (s[code] ?? 0), 0);

describe('global limits across two pods', () => {
  let redis;
  let pods = [];
  before(async () => {
    redis = await startRedis();
    pods = [await startAgate({ config: config(redis.port, RULES) }), await startAgate({ config: config(redis.port, RULES) })];
    // every shard connected first: before that a global rule is on its on_redis_down
    for (const p of pods) await waitFor(async () => (await metric(p, 'agate_redis_up')) === 2, 5000);
  });
  after(async () => {
    for (const p of pods) await stopClean(p);
    await redis?.stop();
  });

  test('a global per-key limit holds across both pods; a local one counts per pod', T, async () => {
    // 20 a minute: a slow key, leased one token at a time, so the bound (the
    // outstanding leases) is 0 here: exactly 20 across the fleet
    const g = await alternate(pods, 30, { key: 'a' });
    assert.equal(total(g, 200), 20, JSON.stringify(g));
    assert.equal(total(g, 429), 10);
    assert.ok(g[0][200] >= 5 && g[1][200] >= 5, 'both pods admitted part of it');
    // the same rule without global: each pod counts alone
    const l = await alternate(pods, 50, { agent: 'local', key: 'a' });
    assert.equal(l[0][200], 20, JSON.stringify(l));
    assert.equal(l[1][200], 20);
    // the bucket is in Redis under the key prefix, expiring
    const keys = (await redis.call('KEYS', 'agate:rl:*')).map(String);
    assert.ok(keys.length >= 1, 'a bucket in redis');
    assert.ok(await redis.call('PTTL', keys[0]) > 0, 'with an expiry');
    for (const p of pods) {
      assert.ok(await metric(p, 'agate_ratelimit_global_decisions_total', 'result="waited"') > 0);
      assert.ok(await metric(p, 'agate_ratelimit_global_decisions_total', 'result="refused"') > 0);
      assert.ok(await metric(p, 'agate_ratelimit_global_round_trips_total') > 0);
    }
  });

  test('WebSocket: a run waits for the shared bucket, and is refused by it with RUN_ERROR rate_limited', T, async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${pods[0].port}/v1/agents/echo/ws`, { headers: auth('g') });
    const msgs = [];
    ws.on('message', (d) => msgs.push(JSON.parse(d.toString())));
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    try {
      const a = runInput('first'), b = runInput('second');
      ws.send(JSON.stringify(a));   // pod 0 has no lease for key g: it asks Redis, then runs
      await waitFor(() => msgs.some((m) => m.type === 'RUN_FINISHED' && m.runId === a.runId), 5000);
      for (let i = 0; i < 19; i++) assert.equal((await run(pods[1], { key: 'g' })).statusCode, 200);
      assert429(await run(pods[1], { key: 'g' }));
      ws.send(JSON.stringify(b));   // the fleet's 20 are spent on the other pod
      await waitFor(() => msgs.some((m) => m.type === 'RUN_ERROR' && m.runId === b.runId), 5000);
      assert.equal(msgs.find((m) => m.type === 'RUN_ERROR' && m.runId === b.runId).code, 'rate_limited');
      assert.ok(!msgs.some((m) => m.type === 'RUN_STARTED' && m.runId === b.runId), 'nothing streamed before the refusal');
      assert.equal(ws.readyState, WebSocket.OPEN, 'the connection stays open');
    } finally { ws.close(); }
  });

  test('a busy global limit stays within burst + rate * elapsed + the outstanding leases', T, async (t) => {
    // 50 a second, burst 50: a lease is at most min(50/10, 50/(2 pods * 2 shards)) = 5
    const L = 5;
    const t0 = Date.now();
    const all = await Promise.all(Array.from({ length: 16 }, async (_, c) => {
      const seen = { 200: 0, 429: 0 };
      for (let i = 0; i < 40; i++) {
        const res = await run(pods[c % 2], { agent: 'busy', key: 'b' });
        seen[res.statusCode] = (seen[res.statusCode] ?? 0) + 1;
        if (res.statusCode === 429) assert429(res);
      }
      return seen;
    }));
    const elapsed = (Date.now() - t0) / 1000;
    const ok = all.reduce((a, s) => a + s[200], 0);
    const bound = 50 + 50 * elapsed + 1.5 * PODS * SHARDS * L;
    t.diagnostic(`busy: ${ok} of 640 admitted in ${elapsed.toFixed(3)} s; bound ${bound.toFixed(1)}`);
    assert.ok(ok <= bound, `${ok} admitted in ${elapsed}s, bound ${bound}`);
    assert.ok(ok < 640, 'some were refused');
    assert.ok(ok >= 50 - PODS * SHARDS * L, `${ok} admitted: the limit is shared, not starved`);
    let leased = 0;
    for (const p of pods) leased += await metric(p, 'agate_ratelimit_global_decisions_total', 'result="leased"');
    assert.ok(leased > 0, 'some decisions were made from leases, without a round trip');
  });

  test('Redis paused: a run that waits for it falls back after redis.command_timeout, not later', T, async () => {
    const before = await metric(pods[0], 'agate_ratelimit_global_fallbacks_total', 'mode="allow"');
    await redis.call('CLIENT', 'PAUSE', '3000', 'ALL');
    const t0 = Date.now();
    const res = await run(pods[0], { agent: 'free', key: 'h' });   // a key no shard has a lease for
    const took = Date.now() - t0;
    assert.equal(res.statusCode, 200, res.text);
    assert.ok(took < 2500, `answered by the fallback in ${took} ms (command_timeout 500ms), not after the pause`);
    assert.ok(await metric(pods[0], 'agate_ratelimit_global_fallbacks_total', 'mode="allow"') > before);
    await redis.call('CLIENT', 'UNPAUSE');
    await waitFor(async () => {
      await run(pods[0], { agent: 'free', key: 'h' });
      return await metric(pods[0], 'agate_ratelimit_global_transitions_total', 'to="up"') >= 1;
    }, 10000, 100);
  });

  test('Redis killed: each rule falls back to its on_redis_down, then sharing resumes by itself', T, async () => {
    await redis.kill();
    const t0 = Date.now();
    // local: this pod's share, 20 / fleet_size 2 = 10 each
    const l = await alternate(pods, 30, { key: 'c' });
    assert.equal(l[0][200], 10, JSON.stringify(l));
    assert.equal(l[1][200], 10);
    // allow: everything passes
    const a = await alternate(pods, 30, { agent: 'free', key: 'c' });
    assert.equal(total(a, 200), 30, JSON.stringify(a));
    // deny: 503 with a code that says why
    for (const p of pods) {
      const res = await run(p, { agent: 'strict', key: 'c' });
      assertError(res, 503, 'rate_limit_unavailable');
      assert.ok(Number(res.headers['retry-after']) >= 1);
    }
    assert.ok(Date.now() - t0 < 20000, 'no request hung');
    for (const p of pods) {
      assert.ok(await metric(p, 'agate_ratelimit_global_fallbacks_total', 'mode="local"') >= 10);
      assert.ok(await metric(p, 'agate_ratelimit_global_fallbacks_total', 'mode="allow"') >= 15);
      assert.ok(await metric(p, 'agate_ratelimit_global_fallbacks_total', 'mode="deny"') >= 1);
      assert.ok(await metric(p, 'agate_ratelimit_global_transitions_total', 'to="down"') >= 1);
      await waitFor(() => p.stdoutLines().some((x) => x.includes('redis unreachable: global limits')), 5000);
      const downs = p.stdoutLines().filter((x) => x.includes('redis unreachable: global limits'));
      assert.ok(downs.length >= 1 && downs.length <= SHARDS * 2, `logged once per transition: ${downs.length}`);
    }

    redis = await startRedis({ port: redis.port });
    for (const p of pods) {
      await waitFor(async () => {
        await run(p, { agent: 'free', key: 'd' });
        return await metric(p, 'agate_ratelimit_global_transitions_total', 'to="up"') >= 1;
      }, 10000, 100);
      await waitFor(() => p.stdoutLines().some((x) => x.includes('redis reachable again')), 5000);   /* logged once, by the log thread */
    }
    await sleep(300);   /* every shard reconnected */
    const g = await alternate(pods, 30, { key: 'e' });
    assert.equal(total(g, 200), 20, `shared again: ${JSON.stringify(g)}`);
    for (const p of pods) assert.equal(p.exitInfo, null, 'no crash');
  });
});

describe('a global concurrency cap across two pods', () => {
  test('holds across pods; a killed pod\'s slots come back after the slot ttl', T, async () => {
    const redis = await startRedis();
    const rules = ['{name: three, key: global, concurrent: 3, global: true, agents: [slow]}'];
    const a = await startAgate({ config: config(redis.port, rules, { slotTtl: '2s' }) });
    const b = await startAgate({ config: config(redis.port, rules, { slotTtl: '2s' }) });
    for (const p of [a, b]) await waitFor(async () => (await metric(p, 'agate_redis_up')) === 2, 5000);
    try {
      const long = runInput(Array.from({ length: 60 }, (_, i) => `w${i}`).join(' '));   /* ~6 s at 100 ms a token */
      const opened = [];
      const open = async (p) => {
        const conn = await RawConn.connect(p.port);
        opened.push(conn);
        await conn.write(buildRequest({ method: 'POST', path: '/v1/agents/slow/run', headers: { ...auth('f'), 'Content-Type': 'application/json' }, body: long }));
        await conn.waitFor((c) => c.text.includes('RUN_STARTED') || c.ended, 5000);
        return conn.text;
      };
      // two streams on a, one on b: the fleet's three slots
      for (const p of [a, a, b]) assert.match(await open(p), /^HTTP\/1\.1 200/, 'admitted');
      for (const p of [a, b]) assert429(await run(p, { agent: 'slow', key: 'f', body: runInput('x') }));
      // a dies holding two slots; b gets them back once a's lease expires (2 s), not before
      a.signal('SIGKILL');
      await a.exited;
      assert429(await run(b, { agent: 'slow', key: 'f', body: runInput('x') }));
      const t0 = Date.now();
      await waitFor(async () => (await run(b, { agent: 'slow', key: 'f', body: runInput('x') })).statusCode === 200, 8000, 200);
      const waited = Date.now() - t0;
      assert.ok(waited >= 1000, `slots came back after the ttl (${waited} ms)`);
      assert.ok(await metric(b, 'agate_ratelimit_global_slots_total', 'state="granted"') >= 2);
      for (const c of opened) c.destroy();
    } finally {
      await stopClean(b);
      await redis.stop();
    }
  });
});
