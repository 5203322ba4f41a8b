// Resumable runs across pods (issue 27, the cross-pod part): two agate
// processes sharing a real redis-server. A run on A is written to a Redis
// Stream; a client that reconnects to B (which does not have the run) is
// served from the stream: the missed events, then the live ones, then the end;
// a killed A leaves B's client a RUN_ERROR gateway_restarted end; with Redis
// down B answers 503 JSON at once. Clients are real: fetch reading SSE, and
// @ag-ui/client's HttpAgent with verifyEvents for a full replay.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { HttpAgent, verifyEvents } from '@ag-ui/client';
import { startAgate, stopClean, sleep, runInput, uid, paced, waitFor, assertEchoEvents, parseSSE, request } from './lib/harness.mjs';
import { startRedis } from './lib/redis.mjs';

const T = { timeout: 40000 };
const TEXT = 'one two three four five six seven eight nine ten eleven twelve';
const CONFIG = [
  'resume: {redis_heartbeat: 200ms, redis_poll: 20ms}',
  'agents:',
  '  echo:',
  '    type: echo',
  '    resume: {enabled: true, log_ttl: 30s, detach_timeout: 20s}',
].join('\n');

async function openStream(url, { method = 'GET', headers = {}, body } = {}) {
  const ac = new AbortController();
  const res = await fetch(url, { method, headers, body, signal: ac.signal });
  const s = { res, status: res.status, headers: res.headers, frames: [], done: false, error: null, abort: () => ac.abort() };
  if (!res.headers.get('content-type')?.startsWith('text/event-stream')) {
    s.json = await res.json().catch(() => null);
    s.done = true;
    return s;
  }
  const dec = new TextDecoder();
  let text = '';
  s.reading = (async () => {
    try {
      for await (const chunk of res.body) {
        text += dec.decode(chunk, { stream: true });
        const { frames, rest } = parseSSE(text);
        text = rest;
        for (const f of frames) if (f.data !== null) s.frames.push({ id: f.fields.id, event: JSON.parse(f.data) });
      }
    } catch (e) { s.error = e; }
    s.done = true;
  })();
  return s;
}
const events = (s) => s.frames.map((f) => f.event);
const run = (port, input) => openStream(`http://127.0.0.1:${port}/v1/agents/echo/run`, {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(input),
});
const reattach = (port, runId, headers = {}) =>
  openStream(`http://127.0.0.1:${port}/v1/runs/${encodeURIComponent(runId)}/events`, { headers });
const finished = (s, ms = 10000) => waitFor(() => s.done, ms);
function assertIds(frames, runId, from = 1) {
  frames.forEach((f, i) => assert.equal(f.id, `${runId}:${from + i}`, `frame ${i}'s id`));
}
async function metric(agate, name) {
  const r = await request(agate.adminPort, { path: '/metrics' });
  const line = r.body.toString('utf8').split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : undefined;
}

describe('resume across pods: two agates, one Redis', () => {
  let redis, a, b;
  const env = () => ({ AGATE_REDIS_ADDRESS: `127.0.0.1:${redis.port}`, AGATE_REDIS_COMMAND_TIMEOUT: '1s' });
  before(async () => {
    redis = await startRedis();
    a = await startAgate({ config: CONFIG, env: env() });
    b = await startAgate({ config: CONFIG, env: env() });
    await waitFor(async () => (await metric(a, 'agate_redis_up')) === 2 && (await metric(b, 'agate_redis_up')) === 2, 5000);
  });
  after(async () => {
    for (const g of [a, b]) if (g) await stopClean(g);
    await redis?.kill();
  });

  test('start on A, drop the client, reattach on B while A streams: every event once, in order, then the end', T, async () => {
    const input = runInput(TEXT, { forwardedProps: paced(60) });
    const first = await run(a.port, input);
    const token = first.headers.get('x-agate-resume-token');
    await waitFor(() => first.frames.length >= 4, 5000);
    first.abort();
    await finished(first);
    const got = first.frames.slice();
    await sleep(150);   // A goes on, detached; the stream moves past what the client saw
    const second = await reattach(b.port, input.runId, { 'last-event-id': got[got.length - 1].id, 'x-agate-resume-token': token });
    assert.equal(second.status, 200);
    const atAttach = second.frames.length;
    await finished(second);
    assert.equal(second.error, null);
    assert.equal(second.frames[0].id, `${input.runId}:${got.length + 1}`);
    const all = [...got, ...second.frames];
    assertIds(all, input.runId);
    assertEchoEvents(all.map((f) => f.event), { threadId: input.threadId, runId: input.runId, text: TEXT });
    assert.ok(second.frames.length > atAttach + 3, 'B followed events that A wrote after the reattach');
    assert.ok((await metric(b, 'agate_resume_redis_remote_reattaches_total')) >= 1);
    assert.ok((await metric(b, 'agate_resume_redis_polls_total')) >= 2);
  });

  test('after A finished: B replays the whole run; HttpAgent + verifyEvents accept it; events go out in batches', T, async () => {
    const before = { batches: await metric(a, 'agate_resume_redis_batches_total'), events: await metric(a, 'agate_resume_redis_events_written_total') };
    const input = runInput(TEXT);
    const first = await run(a.port, input);
    await finished(first);
    const token = first.headers.get('x-agate-resume-token');
    await sleep(100);
    const again = await reattach(b.port, input.runId, { 'x-agate-resume-token': token });
    await finished(again);
    assert.deepEqual(again.frames, first.frames);
    const agent = new HttpAgent({ url: `http://127.0.0.1:${b.port}/v1/runs/${input.runId}/events`, headers: { 'X-Agate-Resume-Token': token } });
    const got = await new Promise((resolve, reject) => {
      const out = [];
      agent.run(input).pipe(verifyEvents()).subscribe({ next: (e) => out.push(e), error: reject, complete: () => resolve(out) });
    });
    assert.deepEqual(got.map((e) => e.type), events(first).map((e) => e.type));
    assert.deepEqual(got.map((e) => e.delta ?? null), events(first).map((e) => e.delta ?? null));
    // What A wrote: the events, then the end entry; the owner key is gone, the rest expires with the log.
    const key = `agate:run:${input.runId}`;
    const ents = await redis.call('XRANGE', key, '-', '+');
    assert.equal(ents.length, first.frames.length + 1);
    assert.equal(ents[ents.length - 1][0].toString(), `${first.frames.length}-1`);
    assert.equal(await redis.call('EXISTS', `${key}:owner`), 0);
    const ttl = await redis.call('PTTL', key);
    assert.ok(ttl > 20000 && ttl <= 30000, `stream PTTL ${ttl}`);
    assert.ok(await redis.call('PTTL', `${key}:meta`) > 20000);
    const meta = (await redis.call('GET', `${key}:meta`)).toString();
    assert.ok(!meta.includes(token), 'the token is stored hashed');
    assert.ok(meta.includes(crypto.createHash('sha256').update(token).digest('hex')));
    // One run's events left in fewer batches than events (one per loop turn, not one per event).
    const batches = (await metric(a, 'agate_resume_redis_batches_total')) - before.batches;
    const written = (await metric(a, 'agate_resume_redis_events_written_total')) - before.events;
    assert.equal(written, first.frames.length);
    assert.ok(batches >= 1 && batches < written / 2, `${batches} batches for ${written} events`);
  });

  test('refused on B: a wrong token or none (403), an unknown run (404), a malformed Last-Event-ID (400)', T, async () => {
    const input = runInput(TEXT);
    const first = await run(a.port, input);
    await finished(first);
    const token = first.headers.get('x-agate-resume-token');
    await sleep(100);
    const wrong = await reattach(b.port, input.runId, { 'x-agate-resume-token': crypto.randomBytes(16).toString('hex') });
    assert.equal(wrong.status, 403);
    assert.equal(wrong.json.error, 'forbidden');
    const none = await reattach(b.port, input.runId);
    assert.equal(none.status, 403);
    const unknown = await reattach(b.port, uid('nope'), { 'x-agate-resume-token': token });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error, 'run_not_found');
    const bad = await reattach(b.port, input.runId, { 'x-agate-resume-token': token, 'last-event-id': 'other:3' });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error, 'invalid_last_event_id');
    // and a reattach from the middle of a finished run gets the rest, once
    const mid = await reattach(b.port, input.runId, { 'x-agate-resume-token': token, 'last-event-id': `${input.runId}:5` });
    await finished(mid);
    assert.deepEqual(mid.frames, first.frames.slice(5));
  });
});

describe('resume across pods: the pod running the run dies, Redis goes down', () => {
  test('A killed mid-run: B\'s clients get the events so far, then one RUN_ERROR gateway_restarted, soon', T, async () => {
    const redis = await startRedis();
    const env = { AGATE_REDIS_ADDRESS: `127.0.0.1:${redis.port}`, AGATE_REDIS_COMMAND_TIMEOUT: '1s' };
    const a = await startAgate({ config: CONFIG, env });
    const b = await startAgate({ config: CONFIG, env });
    try {
      await waitFor(async () => (await metric(a, 'agate_redis_up')) === 2 && (await metric(b, 'agate_redis_up')) === 2, 5000);
      const input = runInput(TEXT + ' ' + TEXT, { forwardedProps: paced(80) });
      const first = await run(a.port, input);
      const token = first.headers.get('x-agate-resume-token');
      await waitFor(() => first.frames.length >= 5, 5000);
      const onB = await reattach(b.port, input.runId, { 'x-agate-resume-token': token });
      assert.equal(onB.status, 200);
      await waitFor(() => onB.frames.length >= 5, 5000);
      a.signal('SIGKILL');
      await a.wait?.(5000);
      const t0 = Date.now();
      const late = await reattach(b.port, input.runId, { 'x-agate-resume-token': token });
      await finished(onB, 5000);
      await finished(late, 5000);
      assert.ok(Date.now() - t0 < 4000, 'ended within the owner key\'s lifetime and a few polls');
      for (const s of [onB, late]) {
        assert.equal(s.status, 200);
        const evs = events(s);
        assertIds(s.frames, input.runId);
        const end = evs[evs.length - 1];
        assert.equal(end.type, 'RUN_ERROR');
        assert.equal(end.code, 'gateway_restarted');
        assert.equal(evs.filter((e) => e.type === 'RUN_ERROR').length, 1);
        assert.ok(evs.length < 2 + 48 && evs.length >= first.frames.length, 'the events so far, not the whole run');
        assert.deepEqual(s.frames.slice(0, first.frames.length - 1), first.frames.slice(0, first.frames.length - 1));
      }
      assert.deepEqual(late.frames, onB.frames);   // one end, written once, read by both
      const ents = await redis.call('XRANGE', `agate:run:${input.runId}`, '-', '+');
      assert.equal(ents.filter((e) => e[0].toString().endsWith('-1')).length, 1);
      assert.ok((await metric(b, 'agate_resume_redis_lost_ends_total')) >= 1);
    } finally {
      a.signal('SIGKILL');
      await stopClean(b);
      await redis.kill();
    }
  });

  test('a client following on B keeps A\'s run from its detach timeout; it ends with RUN_FINISHED', T, async () => {
    const redis = await startRedis();
    const env = { AGATE_REDIS_ADDRESS: `127.0.0.1:${redis.port}`, AGATE_REDIS_COMMAND_TIMEOUT: '1s' };
    const config = CONFIG.replace('detach_timeout: 20s', 'detach_timeout: 700ms');
    const a = await startAgate({ config, env });
    const b = await startAgate({ config, env });
    try {
      await waitFor(async () => (await metric(a, 'agate_redis_up')) === 2 && (await metric(b, 'agate_redis_up')) === 2, 5000);
      const input = runInput(TEXT + ' ' + TEXT, { forwardedProps: paced(80) });   // ~2 s, > 700 ms
      const first = await run(a.port, input);
      const token = first.headers.get('x-agate-resume-token');
      await waitFor(() => first.frames.length >= 3, 5000);
      first.abort();
      await finished(first);
      const onB = await reattach(b.port, input.runId, { 'x-agate-resume-token': token });
      await finished(onB);
      const evs = events(onB);
      assert.equal(evs[evs.length - 1].type, 'RUN_FINISHED');
      assertIds(onB.frames, input.runId);
      assertEchoEvents(evs, { runId: input.runId, text: TEXT + ' ' + TEXT });
    } finally {
      await stopClean(a);
      await stopClean(b);
      await redis.kill();
    }
  });

  test('Redis down: a reattach to another pod\'s run is 503 JSON at once; reattach on the run\'s own pod still works', T, async () => {
    const redis = await startRedis();
    const env = { AGATE_REDIS_ADDRESS: `127.0.0.1:${redis.port}`, AGATE_REDIS_COMMAND_TIMEOUT: '1s' };
    const a = await startAgate({ config: CONFIG, env });
    const b = await startAgate({ config: CONFIG, env });
    try {
      await waitFor(async () => (await metric(a, 'agate_redis_up')) === 2 && (await metric(b, 'agate_redis_up')) === 2, 5000);
      await redis.kill();
      await waitFor(async () => (await metric(a, 'agate_redis_up')) === 0 && (await metric(b, 'agate_redis_up')) === 0, 5000);
      const input = runInput(TEXT, { forwardedProps: paced(30) });
      const first = await run(a.port, input);
      const token = first.headers.get('x-agate-resume-token');
      await waitFor(() => first.frames.length >= 3, 5000);
      first.abort();
      await finished(first);
      const t0 = Date.now();
      const onB = await reattach(b.port, input.runId, { 'x-agate-resume-token': token });
      assert.ok(Date.now() - t0 < 1000, 'no wait for Redis');
      assert.equal(onB.status, 503);
      assert.equal(onB.json.error, 'shared_state_unavailable');
      const onA = await reattach(a.port, input.runId, { 'x-agate-resume-token': token, 'last-event-id': first.frames[first.frames.length - 1].id });
      await finished(onA);
      const all = [...first.frames, ...onA.frames];
      assertIds(all, input.runId);
      assertEchoEvents(all.map((f) => f.event), { runId: input.runId, text: TEXT });
      assert.ok((await metric(a, 'agate_resume_redis_events_dropped_total')) >= all.length, 'dropped while down, counted');
      assert.equal(await metric(a, 'agate_resume_redis_batches_total'), 0);
    } finally {
      await stopClean(a);
      await stopClean(b);
    }
  });
});
