// The shared (second-tier) cache (issue 26): two agate processes on one real
// redis-server, each with a cached proxy agent in front of the same real
// @ag-ui/encoder server (lib/agui-server.mjs), whose recorded requests count
// what reached the upstream.
//
// A run stored by agate A is a HIT on agate B (X-Cache-Tier: shared, one
// upstream request), replayed with the new run's ids and fresh, consistent
// message and tool-call ids, checked with @ag-ui/client's HttpAgent and
// verifyEvents; the entry's TTL is set in Redis. An entry that is garbage,
// truncated, written under another key, or has one byte changed is a MISS that
// goes upstream, the client gets a valid stream, and the refusal is counted by
// why. Redis killed: runs are MISSes served from upstream, none hangs, the
// fallback is counted; Redis restarted: sharing resumes by itself. A run over
// cache.shared_max_bytes is not written.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpAgent, verifyEvents } from '@ag-ui/client';
import { startAgate, stopClean, streamRun, runInput, uid, sleep, request, waitFor } from './lib/harness.mjs';
import { startAguiServer } from './lib/agui-server.mjs';
import { openRunSocket } from './lib/wsclient.mjs';
import { startRedis } from './lib/redis.mjs';

const T = { timeout: 90000 };
const flow = (o) => `{${Object.entries(o).map(([k, v]) => `${k}: ${v}`).join(', ')}}`;

function sharedConfig(url, redisPort, { cache = {} } = {}) {
  return [
    'stream: {drain_timeout: 3s}',
    `redis: {address: "127.0.0.1:${redisPort}", reconnect_min: 20ms, reconnect_max: 200ms, command_timeout: 500ms}`,
    'agents:',
    '  up:',
    '    type: proxy',
    `    endpoints: [${url}]`,
    '    timeouts: {connect: 2s, first_event: 10s, idle: 10s, run: 60s}',
    '    retry: {attempts: 0}',
    `    cache: ${flow({ ttl: '60s', shared: 'true', ...cache })}`,
  ].join('\n') + '\n';
}

/** A run with every kind of id the cache rewrites. */
function richRun(input) {
  const { threadId, runId } = input;
  return [
    { type: 'RUN_STARTED', threadId, runId },
    { type: 'TEXT_MESSAGE_START', messageId: 'm-1', role: 'assistant' },
    { type: 'TEXT_MESSAGE_CONTENT', messageId: 'm-1', delta: 'the answer ' },
    { type: 'TEXT_MESSAGE_CONTENT', messageId: 'm-1', delta: 'is 42' },
    { type: 'TEXT_MESSAGE_END', messageId: 'm-1' },
    { type: 'TOOL_CALL_START', toolCallId: 'tc-1', toolCallName: 'lookup', parentMessageId: 'm-1' },
    { type: 'TOOL_CALL_ARGS', toolCallId: 'tc-1', delta: '{"q":"x"}' },
    { type: 'TOOL_CALL_END', toolCallId: 'tc-1' },
    { type: 'RUN_FINISHED', threadId, runId },
  ];
}

async function fleet(t, { script = { events: richRun }, cache = {}, extra = '' } = {}) {
  const redis = await startRedis();
  t.after(() => redis.kill());
  const srv = await startAguiServer({ script });
  t.after(() => srv.close());
  const cfg = sharedConfig(srv.url, redis.port, { cache }) + extra;
  const a = await startAgate({ config: cfg });
  t.after(async () => { if (!a.exitInfo) await a.stop(5000); });
  const b = await startAgate({ config: cfg });
  t.after(async () => { if (!b.exitInfo) await b.stop(5000); });
  // Each shard's connection is made after the listeners are up: a run before it is a
  // MISS that stores nothing (Redis down), which is not what these tests are about.
  for (const pod of [a, b]) await waitFor(async () => metric(await metrics(pod), 'agate_redis_up') === 2, 5000);
  return { redis, srv, a, b, cfg };
}

const post = (agate, input, headers = {}) => streamRun(agate.port, input, { agent: 'up', headers, timeout: 20000 });
const question = (text) => runInput(text, { messages: [{ id: 'user-1', role: 'user', content: text }] });

async function metrics(agate) {
  return (await request(agate.adminPort, { path: '/metrics' })).body.toString('utf8');
}
function metric(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ').pop()) : 0;
}
const lookups = async (agate, result) => metric(await metrics(agate), `agate_cache_tier2_lookups_total{result="${result}"}`);

/** The agate:cache:* keys in Redis. */
async function cacheKeys(redis) {
  const keys = await redis.call('KEYS', 'agate:cache:*');
  return keys.map((k) => k.toString());
}
/** Waits until a new cache key (not in `before`) is in Redis, and returns it. */
async function newKey(redis, before, timeout = 5000) {
  let found;
  await waitFor(async () => {
    found = (await cacheKeys(redis)).find((k) => !before.includes(k));
    return found !== undefined;
  }, timeout);
  if (found === undefined) throw new Error(`no new cache key in Redis within ${timeout} ms`);
  return found;
}

/** A complete, valid stream: 200, RUN_STARTED first, RUN_FINISHED last, every frame JSON. */
function assertValidStream(r, runId) {
  assert.equal(r.statusCode, 200);
  assert.ok(r.complete, 'the stream ended');
  assert.ok(r.frames.every((f) => f.event), 'every frame is JSON');
  assert.equal(r.events[0].type, 'RUN_STARTED');
  assert.equal(r.events.at(-1).type, 'RUN_FINISHED');
  if (runId) assert.equal(r.events.at(-1).runId, runId);
}

describe('shared cache (second tier in Redis)', () => {
  test('stored by A, a HIT on B with fresh ids (HttpAgent, verifyEvents); the TTL is set in Redis', T, async (t) => {
    const { redis, srv, a, b } = await fleet(t);
    const url = (ag) => `http://127.0.0.1:${ag.port}/v1/agents/up/run`;
    const initialMessages = [{ id: 'user-1', role: 'user', content: 'share me' }];
    const viaClient = async (ag) => {
      const threadId = uid('thread');
      const runId = uid('run');
      const agent = new HttpAgent({ url: url(ag), threadId, initialMessages });
      const input = { threadId, runId, state: {}, tools: [], context: [], forwardedProps: {}, messages: initialMessages };
      const events = await new Promise((resolve, reject) => {
        const got = [];
        agent.run(input).pipe(verifyEvents()).subscribe({
          next: (ev) => got.push(ev), error: reject, complete: () => resolve(got),
        });
      });
      return { threadId, runId, events };
    };

    const miss = await viaClient(a);
    assert.equal(srv.requests.length, 1);
    const original = srv.requests[0].sent;
    assert.equal(miss.events.length, original.length);
    const key = await newKey(redis, []);
    assert.match(key, /^agate:cache:[0-9a-f]{64}$/);
    const pttl = await redis.call('PTTL', key);
    assert.ok(pttl > 0 && pttl <= 60000, `PTTL ${pttl}`);

    const hit = await viaClient(b);
    assert.equal(srv.requests.length, 1, 'B answered from the entry A stored');
    assert.equal(await lookups(b, 'hit'), 1);
    assert.equal(hit.events.length, original.length);
    const ids = new Map();
    hit.events.forEach((ev, i) => {
      const o = original[i];
      assert.equal(ev.type, o.type);
      for (const [k, v] of Object.entries(o)) {
        if (k === 'threadId') assert.equal(ev[k], hit.threadId);
        else if (k === 'runId') assert.equal(ev[k], hit.runId);
        else if (['messageId', 'toolCallId', 'parentMessageId'].includes(k)) {
          if (!ids.has(v)) ids.set(v, ev[k]);
          assert.equal(ev[k], ids.get(v), `old id ${v} always becomes the same new id`);
          assert.notEqual(ev[k], v, 'a fresh id');
        } else assert.deepEqual(ev[k], v, `${o.type}.${k} unchanged`);
      }
    });
    assert.equal(ids.size, 2, 'm-1 and tc-1 each mapped');
    assert.notEqual(hit.events[1].messageId, miss.events[1].messageId);

    // The head of a second-tier hit, on another question; then B's own tier.
    const q = question('headers please');
    const m1 = await post(a, q);
    assert.equal(m1.headers['x-cache'], 'MISS');
    await newKey(redis, [key]);
    const h1 = await post(b, q);
    assert.equal(h1.headers['x-cache'], 'HIT');
    assert.equal(h1.headers['x-cache-tier'], 'shared');
    assert.match(h1.headers.age, /^\d+$/);
    assertValidStream(h1, q.runId);
    const h2 = await post(b, q);
    assert.equal(h2.headers['x-cache'], 'HIT');
    assert.equal(h2.headers['x-cache-tier'], undefined, 'the second time from B\'s own tier');
    assert.equal(srv.requests.length, 2);
    assert.equal(await lookups(b, 'hit'), 2);
    const ma = await metrics(a);
    assert.equal(metric(ma, 'agate_cache_tier2_stores_total{result="stored"}'), 2);
    assert.ok(metric(ma, 'agate_cache_tier2_bytes_total{direction="written"}') > 0);
    await stopClean(a);
    await stopClean(b);
  });

  test('over WebSocket and in the log: a run stored by A over HTTP is a HIT on B over WebSocket; the request log says HIT', T, async (t) => {
    const { redis, srv, a, b } = await fleet(t);
    const q = question('ws and logs');
    await post(a, q);
    await newKey(redis, []);
    const original = srv.requests[0].sent;
    const ws = await openRunSocket(b.port, { agent: 'up' });
    t.after(() => ws.terminate());
    const input = { ...q, threadId: uid('thread'), runId: uid('run') };
    const events = await ws.run(input);
    assert.equal(srv.requests.length, 1, 'answered from Redis');
    assert.equal(events.length, original.length);
    events.forEach((e, i) => assert.equal(e.type, original[i].type));
    assert.equal(events[0].threadId, input.threadId);
    assert.equal(events.at(-1).runId, input.runId);
    assert.notEqual(events[1].messageId, original[1].messageId, 'a fresh id');
    assert.equal(await lookups(b, 'hit'), 1);
    const logLine = (ag, pred) => waitFor(() => ag.stdoutLines().map((l) => { try { return JSON.parse(l); } catch { return {}; } }).find(pred), 3000);
    const wsLine = await logLine(b, (j) => j.msg === 'run' && j.run_id === input.runId);
    assert.equal(wsLine?.cache, 'HIT');
    // An SSE run's request line is written after the wait: it says what the lookup decided.
    const q2 = question('logged after the wait');
    const before = await cacheKeys(redis);
    await post(a, q2);
    await newKey(redis, before);
    const r = await post(b, q2);
    assert.equal(r.headers['x-cache-tier'], 'shared');
    const reqLine = await logLine(b, (j) => j.msg === 'request' && j.request_id === r.headers['x-request-id']);
    assert.equal(reqLine?.cache, 'HIT');
    ws.close();
    await stopClean(a);
    await stopClean(b);
  });

  test('a corrupt, truncated, foreign or altered entry is a MISS served from upstream, counted by why', T, async (t) => {
    const { redis, srv, a, b } = await fleet(t);
    // One valid entry to copy from (the "foreign" case).
    const donor = question('donor');
    await post(a, donor);
    const donorKey = await newKey(redis, []);
    const donorEntry = await redis.call('GET', donorKey);
    const cases = [
      ['garbage', () => Buffer.from('this is not an agate entry at all'), 'magic'],
      ['truncated', (e) => e.subarray(0, e.length - 7), 'truncated'],
      ['foreign', () => donorEntry, 'foreign'],
      ['altered', (e) => { const c = Buffer.from(e); c[c.length - 20] ^= 0x20; return c; }, 'checksum'],
      ['header only', (e) => e.subarray(0, 40), 'truncated'],
    ];
    let upstream = srv.requests.length;
    for (const [name, corrupt, why] of cases) {
      const q = question(`corrupt ${name}`);
      const before = await cacheKeys(redis);
      assert.equal((await post(a, q)).headers['x-cache'], 'MISS');
      const key = await newKey(redis, before);
      const entry = await redis.call('GET', key);
      assert.equal(await redis.call('SET', key, corrupt(entry)), 'OK');
      upstream += 1;
      assert.equal(srv.requests.length, upstream);
      const r = await post(b, q);
      assert.equal(r.headers['x-cache'], 'MISS', `${name}: not served`);
      assertValidStream(r, q.runId);
      upstream += 1;
      assert.equal(srv.requests.length, upstream, `${name}: B went upstream`);
      assert.equal(metric(await metrics(b), `agate_cache_tier2_rejected_total{why="${why}"}`) >= 1, true, `${name}: counted as ${why}`);
    }
    assert.equal(await lookups(b, 'rejected'), cases.length);
    assert.equal(await lookups(b, 'hit'), 0);
    await stopClean(a);
    await stopClean(b);
  });

  test('Redis killed: MISSes from upstream, no hang, counted; restarted: sharing resumes', T, async (t) => {
    const { redis, srv, a, b } = await fleet(t);
    const port = redis.port;
    await redis.kill();
    for (const ag of [a, b]) {
      const q = question(`while down ${ag.port}`);
      const t0 = Date.now();
      const r = await post(ag, q);
      assert.equal(r.headers['x-cache'], 'MISS');
      assertValidStream(r, q.runId);
      assert.ok(Date.now() - t0 < 5000, 'no hang');
    }
    const q = question('same on both while down');
    assert.equal((await post(a, q)).headers['x-cache'], 'MISS');
    assert.equal((await post(b, q)).headers['x-cache'], 'MISS', 'nothing shared while Redis is down');
    assert.equal(srv.requests.length, 4);
    for (const ag of [a, b]) {
      const m = await metrics(ag);
      const fellBack = ['down', 'error', 'timeout'].reduce((s, r) => s + metric(m, `agate_cache_tier2_lookups_total{result="${r}"}`), 0);
      assert.equal(fellBack, 2, 'each run fell back, counted');
    }
    assert.ok(metric(await metrics(a), 'agate_cache_tier2_stores_total{result="down"}') >= 2);

    const again = await startRedis({ port });
    t.after(() => again.kill());
    // Sharing resumes by itself (each pod's shards reconnect on their own, with
    // backoff): soon a fresh question stored by A is a HIT on B.
    let n = 0;
    let last;
    const resumed = await waitFor(async () => {
      const before = await cacheKeys(again);
      const q2 = question(`after restart ${n++}`);
      await post(a, q2);
      try { await newKey(again, before, 1000); } catch { return false; }
      last = await post(b, { ...q2, runId: uid('run') });
      return last.headers['x-cache'] === 'HIT';
    }, 15000, 100);
    assert.ok(resumed, `sharing resumed after ${n} tries`);
    assert.equal(last.headers['x-cache-tier'], 'shared');
    assertValidStream(last);
    await stopClean(a);
    await stopClean(b);
  });

  test('cache.shared_wait: an identical request on B while A runs it waits for A\'s entry (one upstream run)', T, async (t) => {
    const slow = (input) => [
      { type: 'RUN_STARTED', threadId: input.threadId, runId: input.runId },
      { delay: 600 },
      { type: 'TEXT_MESSAGE_START', messageId: 'm', role: 'assistant' },
      { type: 'TEXT_MESSAGE_CONTENT', messageId: 'm', delta: 'slow answer' },
      { type: 'TEXT_MESSAGE_END', messageId: 'm' },
      { type: 'RUN_FINISHED', threadId: input.threadId, runId: input.runId },
    ];
    const { redis, srv, a, b } = await fleet(t, { script: { events: slow }, cache: { shared_wait: '2s' } });
    const q = question('one run for the fleet');
    const onA = post(a, q);
    await waitFor(() => srv.requests.length === 1, 5000);
    const q2 = { ...q, threadId: uid('thread'), runId: uid('run') };
    const onB = await post(b, q2);
    const ra = await onA;
    assert.equal(ra.headers['x-cache'], 'MISS');
    assert.equal(onB.headers['x-cache'], 'HIT');
    assert.equal(onB.headers['x-cache-tier'], 'shared');
    assertValidStream(onB, q2.runId);
    assert.equal(srv.requests.length, 1, 'B waited for A\'s run instead of starting its own');
    assert.equal(metric(await metrics(a), 'agate_cache_tier2_waits_total{result="leader"}'), 1);
    assert.equal(metric(await metrics(b), 'agate_cache_tier2_waits_total{result="hit"}'), 1);

    // A lock whose run never stores (held by hand here) holds a request only for shared_wait.
    const q3 = question('nobody else will answer this one');
    const before = await cacheKeys(redis);
    await post(a, q3);
    const key = await newKey(redis, before);
    assert.equal(await redis.call('DEL', key), 1);
    const lock = key.replace('agate:cache:', 'agate:cachelock:');
    assert.equal(await redis.call('SET', lock, '1', 'PX', '60000'), 'OK');
    const upstream = srv.requests.length;
    const t0 = Date.now();
    const r3 = await post(b, { ...q3, runId: uid('run') });
    const waited = Date.now() - t0;
    assert.equal(r3.headers['x-cache'], 'MISS');
    assertValidStream(r3);
    assert.ok(waited >= 1500 && waited < 8000, `waited ${waited} ms for a shared_wait of 2s`);
    assert.equal(srv.requests.length, upstream + 1);
    assert.equal(metric(await metrics(b), 'agate_cache_tier2_waits_total{result="timeout"}'), 1);
    await stopClean(a);
    await stopClean(b);
  });

  test('with a global rate limit too: the limit is decided first (from Redis), then the second tier; HITs count against it', T, async (t) => {
    // Both waits before the head: the limiter's lease (net/rlglobal.c wraps the run
    // kind) and then the tier-2 GET (net/coalesce_tier2.c's waiting kind inside it).
    const extra = ['rate_limit:', '  fleet_size: 2', '  rules:',
      '    - {name: fleetwide, key: global, per_minute: 3, burst: 3, global: true, agents: [up]}'].join('\n') + '\n';
    const { srv, a, b } = await fleet(t, { extra });
    const q = question('limited and shared');
    assert.equal((await post(a, q)).headers['x-cache'], 'MISS');
    await waitFor(async () => metric(await metrics(a), 'agate_cache_tier2_stores_total{result="stored"}') === 1, 5000);
    const h1 = await post(b, q);
    assert.equal(h1.statusCode, 200);
    assert.equal(h1.headers['x-cache'], 'HIT');
    assert.equal(h1.headers['x-cache-tier'], 'shared');
    assertValidStream(h1, q.runId);
    assert.equal((await post(b, q)).headers['x-cache'], 'HIT');
    // Three runs across the two pods: the fourth is refused on either, before any cache lookup.
    const lookupsBefore = await lookups(a, 'hit') + await lookups(a, 'miss');
    for (const pod of [a, b]) {
      const r = await post(pod, q);
      assert.equal(r.statusCode, 429, `pod ${pod === a ? 'A' : 'B'}: ${r.statusCode}`);
      assert.equal(JSON.parse(r.body.toString()).error, 'rate_limit_exceeded');
      assert.match(r.headers['retry-after'], /^\d+$/);
    }
    assert.equal(await lookups(a, 'hit') + await lookups(a, 'miss'), lookupsBefore, 'a refused run consults no cache');
    assert.equal(srv.requests.length, 1, 'one upstream run');
    await stopClean(a);
    await stopClean(b);
  });

  test('a run over cache.shared_max_bytes is not written to Redis', T, async (t) => {
    const big = (input) => [
      { type: 'RUN_STARTED', threadId: input.threadId, runId: input.runId },
      { type: 'TEXT_MESSAGE_START', messageId: 'm', role: 'assistant' },
      { type: 'TEXT_MESSAGE_CONTENT', messageId: 'm', delta: 'x'.repeat(4000) },
      { type: 'TEXT_MESSAGE_END', messageId: 'm' },
      { type: 'RUN_FINISHED', threadId: input.threadId, runId: input.runId },
    ];
    const { redis, srv, a, b } = await fleet(t, { script: { events: big }, cache: { shared_max_bytes: '2KiB' } });
    const q = question('too big to share');
    assert.equal((await post(a, q)).headers['x-cache'], 'MISS');
    await waitFor(async () => metric(await metrics(a), 'agate_cache_tier2_stores_total{result="too_large"}') === 1, 5000);
    assert.deepEqual(await cacheKeys(redis), []);
    assert.equal((await post(a, q)).headers['x-cache'], 'HIT', 'kept in A\'s own tier');
    const r = await post(b, q);
    assert.equal(r.headers['x-cache'], 'MISS');
    assertValidStream(r, q.runId);
    assert.equal(srv.requests.length, 2);
    assert.equal(await lookups(b, 'miss'), 1);
    await stopClean(a);
    await stopClean(b);
  });
});
