// Resumable runs across pods (issue 27, the cross-pod part): two agate
// processes sharing a real redis-server. A run on A is written to a Redis
// Stream; a client that reconnects to B (which does not have the run) is
// served from the stream: the missed events, then the live ones, then the end;
// a killed A leaves B's client a RUN_ERROR gateway_restarted end; with Redis
// down B answers 503 JSON at once. B also cancels A's run (DELETE, WebSocket
// CANCEL: through a key A's next write reads), follows it over WebSocket
// (RESUME), and tells an expired run (410, a tombstone key) from one it never
// knew (404); a run a global rate limit refused leaves no log on either pod.
// Clients are real: fetch reading SSE, the `ws` package, and @ag-ui/client's
// HttpAgent with verifyEvents for a full replay.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { HttpAgent, verifyEvents } from '@ag-ui/client';
import { startAgate, stopClean, sleep, runInput, uid, paced, waitFor, assertEchoEvents, assertError, request } from './lib/harness.mjs';
import { startRedis } from './lib/redis.mjs';
import { startAguiServer, simpleRun } from './lib/agui-server.mjs';
import { openRunSocket } from './lib/wsclient.mjs';
import { openStream, events, finished, assertIds } from './lib/ssestream.mjs';

const T = { timeout: 40000 };
const TEXT = 'one two three four five six seven eight nine ten eleven twelve';
const CONFIG = [
  'resume: {redis_heartbeat: 200ms, redis_poll: 20ms}',
  'agents:',
  '  echo:',
  '    type: echo',
  '    resume: {enabled: true, log_ttl: 30s, detach_timeout: 20s}',
].join('\n');

const run = (port, input) => openStream(`http://127.0.0.1:${port}/v1/agents/echo/run`, {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(input),
});
const reattach = (port, runId, headers = {}) =>
  openStream(`http://127.0.0.1:${port}/v1/runs/${encodeURIComponent(runId)}/events`, { headers });
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

const cancelOn = (port, runId, headers = {}) =>
  request(port, { method: 'DELETE', path: `/v1/runs/${encodeURIComponent(runId)}`, headers });
const ALPHA = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');

describe('resume across pods: cancel, WebSocket and expiry from the pod that does not run it', () => {
  let redis, upstream, a, b;
  const config = () => [
    'resume: {redis_heartbeat: 200ms, redis_poll: 20ms}',
    'agents:',
    '  echo:',
    '    type: echo',
    '    resume: {enabled: true, log_ttl: 30s, detach_timeout: 20s}',
    '  brief:',
    '    type: echo',
    '    resume: {enabled: true, log_ttl: 300ms, detach_timeout: 20s}',
    '  up:',
    '    type: proxy',
    `    endpoints: ["http://127.0.0.1:${upstream.port}/agent"]`,
    '    resume: {enabled: true, log_ttl: 30s, detach_timeout: 20s}',
  ].join('\n');
  before(async () => {
    redis = await startRedis();
    upstream = await startAguiServer({ script: (rec) => ({ events: simpleRun(rec.json, ALPHA), interval: 60 }) });
    const env = { AGATE_REDIS_ADDRESS: `127.0.0.1:${redis.port}`, AGATE_REDIS_COMMAND_TIMEOUT: '1s' };
    a = await startAgate({ config: config(), env });
    b = await startAgate({ config: config(), env });
    await waitFor(async () => (await metric(a, 'agate_redis_up')) === 2 && (await metric(b, 'agate_redis_up')) === 2, 5000);
  });
  after(async () => {
    for (const g of [a, b]) if (g) await stopClean(g);
    await upstream?.close();
    await redis?.kill();
  });

  test('DELETE on B cancels the run on A: the upstream sees its connection closed, every reader gets RUN_ERROR run_cancelled', T, async () => {
    const input = runInput('x');
    const first = await openStream(`http://127.0.0.1:${a.port}/v1/agents/up/run`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(input),
    });
    const token = first.headers.get('x-agate-resume-token');
    await waitFor(() => first.frames.length >= 3, 5000);
    const rec = upstream.requests[upstream.requests.length - 1];
    const onB = await reattach(b.port, input.runId, { 'x-agate-resume-token': token });
    assert.equal(onB.status, 200);
    await waitFor(() => onB.frames.length >= 3, 5000);
    const t0 = Date.now();
    const res = await cancelOn(b.port, input.runId, { 'x-agate-resume-token': token });
    assert.equal(res.statusCode, 202, res.text);
    assert.deepEqual(JSON.parse(res.text), { cancelled: true });
    await finished(first, 5000);
    await finished(onB, 5000);
    assert.ok(Date.now() - t0 < 2000, 'within the owner\'s next write or heartbeat');
    assert.ok(await upstream.waitFor(() => rec.closedAt !== null, 3000));
    assert.equal(rec.aborted, true, 'the upstream saw its connection closed before its run finished');
    for (const s of [first, onB]) {
      const evs = events(s);
      assert.equal(evs[evs.length - 1].type, 'RUN_ERROR');
      assert.equal(evs[evs.length - 1].code, 'run_cancelled');
      assert.ok(!evs.some((e) => e.type === 'RUN_FINISHED'));
      assertIds(s.frames, input.runId);
    }
    assert.deepEqual(onB.frames, first.frames, 'B read the same log, cancel included');
    // it has ended: a second DELETE, on either pod, is 409
    const again = await cancelOn(b.port, input.runId, { 'x-agate-resume-token': token });
    assertError(again, 409, 'run_not_running');
    assertError(await cancelOn(a.port, input.runId, { 'x-agate-resume-token': token }), 409, 'run_not_running');
    // the request key is gone with the run's end
    assert.equal(await redis.call('EXISTS', `agate:run:${input.runId}:cancel`), 0);
  });

  test('DELETE on B: a wrong token or none 403, an unknown run 404; the run is not cancelled', T, async () => {
    const input = runInput(TEXT, { forwardedProps: paced(40) });
    const first = await run(a.port, input);
    const token = first.headers.get('x-agate-resume-token');
    await waitFor(() => first.frames.length >= 3, 5000);
    await sleep(100);   // A's first batch is in Redis
    assertError(await cancelOn(b.port, input.runId, { 'x-agate-resume-token': crypto.randomBytes(16).toString('hex') }), 403, 'forbidden');
    assertError(await cancelOn(b.port, input.runId), 403, 'forbidden');
    assertError(await cancelOn(b.port, uid('nope'), { 'x-agate-resume-token': token }), 404, 'run_not_found');
    await finished(first);
    const evs = events(first);
    assert.equal(evs[evs.length - 1].type, 'RUN_FINISHED', 'a refused DELETE cancels nothing');
    assertEchoEvents(evs, { runId: input.runId, text: TEXT });
  });

  test('WebSocket RESUME on B of a run on A: every event after the last seq once, in order; CANCEL on B cancels it', T, async () => {
    const input = runInput(TEXT, { forwardedProps: paced(60) });
    const wa = await openRunSocket(a.port);
    wa.sendJson(input);
    assert.ok(await wa.until(() => wa.events.length >= 4, 5000));
    wa.terminate();
    const got = wa.events.slice();
    const token = got[0].resumeToken;
    assert.match(token, /^[0-9a-f]{32}$/);
    got.forEach((e, i) => assert.equal(e.seq, i + 1));
    await sleep(150);   // A goes on detached
    const wb = await openRunSocket(b.port);
    try {
      // without the token: refused, as on A
      wb.sendJson({ type: 'RESUME', runId: input.runId });
      assert.ok(await wb.until(() => wb.events.some((e) => e.type === 'RUN_ERROR' && e.code === 'forbidden'), 5000),
        JSON.stringify(wb.events));
      wb.events.length = 0;
      wb.sendJson({ type: 'RESUME', runId: input.runId, lastEventId: got[got.length - 1].seq, token });
      const rest = await wb.waitRun(input.runId);
      assert.equal(rest[0].seq, got.length + 1);
      const all = [...got, ...rest];
      all.forEach((e, i) => assert.equal(e.seq, i + 1, `event ${i}'s seq`));
      assertEchoEvents(all.map(({ seq, resumeToken, ...e }) => e), { threadId: input.threadId, runId: input.runId, text: TEXT });
      // an unknown run: RUN_ERROR run_not_found, the connection stays
      const nope = uid('nope');
      wb.sendJson({ type: 'RESUME', runId: nope, token });
      assert.ok(await wb.until(() => wb.events.some((e) => e.runId === nope && e.code === 'run_not_found'), 5000));
      // CANCEL of a run followed from B cancels the run on A
      const input2 = runInput(TEXT + ' ' + TEXT, { forwardedProps: paced(80) });
      const wa2 = await openRunSocket(a.port);
      wa2.sendJson(input2);
      assert.ok(await wa2.until(() => wa2.events.length >= 3, 5000));
      const token2 = wa2.events[0].resumeToken;
      wb.sendJson({ type: 'RESUME', runId: input2.runId, token: token2 });
      assert.ok(await wb.until(() => wb.runEvents(input2.runId).length >= 3, 5000));
      wb.cancel(input2.runId);
      const onA = await wa2.waitRun(input2.runId, 5000);
      assert.equal(onA[onA.length - 1].type, 'RUN_ERROR');
      assert.equal(onA[onA.length - 1].code, 'run_cancelled', 'the run itself on A, not only B\'s view');
      await wa2.closeClean();
    } finally {
      await wb.closeClean();
    }
  });

  test('an expired run asked on B is 410 resume_log_expired (a tombstone), an unknown one 404', T, async () => {
    const input = runInput('short run');
    const first = await openStream(`http://127.0.0.1:${a.port}/v1/agents/brief/run`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(input),
    });
    await finished(first);
    const token = first.headers.get('x-agate-resume-token');
    await sleep(100);
    const live = await reattach(b.port, input.runId, { 'x-agate-resume-token': token });
    await finished(live);
    assert.deepEqual(live.frames, first.frames, 'within log_ttl: replayed');
    await waitFor(async () => (await redis.call('EXISTS', `agate:run:${input.runId}:meta`)) === 0, 3000);
    const late = await reattach(b.port, input.runId, { 'x-agate-resume-token': token });
    assert.equal(late.status, 410);
    assert.equal(late.json.error, 'resume_log_expired');
    assertError(await cancelOn(b.port, input.runId, { 'x-agate-resume-token': token }), 410, 'resume_log_expired');
    const ttl = await redis.call('PTTL', `agate:run:${input.runId}:gone`);
    assert.ok(ttl > 50000 && ttl <= 60300, `tombstone PTTL ${ttl}: log_ttl + max(log_ttl, 1 min)`);
    const unknown = await reattach(b.port, uid('never'), { 'x-agate-resume-token': token });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error, 'run_not_found');
  });

  test('Redis down: DELETE of another pod\'s run is 503 shared_state_unavailable at once', T, async () => {
    const r2 = await startRedis();
    const env = { AGATE_REDIS_ADDRESS: `127.0.0.1:${r2.port}`, AGATE_REDIS_COMMAND_TIMEOUT: '1s' };
    const c = await startAgate({ config: config(), env });
    try {
      await waitFor(async () => (await metric(c, 'agate_redis_up')) === 2, 5000);
      await r2.kill();
      await waitFor(async () => (await metric(c, 'agate_redis_up')) === 0, 5000);
      const t0 = Date.now();
      const res = await cancelOn(c.port, uid('elsewhere'), { 'x-agate-resume-token': crypto.randomBytes(16).toString('hex') });
      assert.ok(Date.now() - t0 < 1000, 'no wait for Redis');
      assertError(res, 503, 'shared_state_unavailable');
    } finally {
      await stopClean(c);
    }
  });
});

describe('resume across pods with a global rate limit on the resumable agent', () => {
  test('runs the limit refuses are 429 and leave no log on either pod; the allowed ones resume on the other pod', T, async () => {
    const redis = await startRedis();
    const key = `k-${crypto.randomBytes(8).toString('hex')}`;
    const sha = crypto.createHash('sha256').update(key).digest('hex');
    const config = [
      'resume: {redis_heartbeat: 200ms, redis_poll: 20ms}',
      'agents:',
      '  echo:',
      '    type: echo',
      '    resume: {enabled: true, log_ttl: 30s, detach_timeout: 20s}',
      'auth:',
      '  api_keys:',
      `    - {name: k, sha256: ${sha}, scopes: [agents:run]}`,
      'rate_limit:',
      '  fleet_size: 2',
      '  rules:',
      '    - {name: shared, key: api_key, per_minute: 6, global: true, agents: [echo]}',
      '',
    ].join('\n');
    const env = { AGATE_REDIS_ADDRESS: `127.0.0.1:${redis.port}`, AGATE_REDIS_COMMAND_TIMEOUT: '1s' };
    const pods = [await startAgate({ config, env }), await startAgate({ config, env })];
    const auth = { Authorization: `Bearer ${key}` };
    try {
      for (const p of pods) await waitFor(async () => (await metric(p, 'agate_redis_up')) === 2, 5000);
      const ran = [];
      for (let i = 0; i < 14; i++) {
        const pod = i % 2;
        const input = runInput(`run ${i}`);
        const s = await openStream(`http://127.0.0.1:${pods[pod].port}/v1/agents/echo/run`, {
          method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify(input),
        });
        if (!s.done) await finished(s);
        ran.push({ pod, input, s });
      }
      const ok = ran.filter((x) => x.s.status === 200), refused = ran.filter((x) => x.s.status === 429);
      assert.equal(ok.length + refused.length, ran.length, JSON.stringify(ran.map((x) => x.s.status)));
      assert.equal(ok.length, 6, 'the global limit held across both pods');
      assert.equal(refused.length, 8);
      for (const x of refused) {
        assert.equal(x.s.json.error, 'rate_limit_exceeded');
        assert.ok(Number(x.s.headers.get('retry-after')) >= 1, `Retry-After on a refused resumable run: ${x.s.headers.get('retry-after')}`);
      }
      await sleep(300);   // every batch written
      for (const x of refused) {
        for (const p of pods) {
          const g = await reattach(p.port, x.input.runId, auth);
          assert.equal(g.status, 404, `refused run ${x.input.runId} on pod ${pods.indexOf(p)}: ${g.status} ${JSON.stringify(g.json)}`);
          assert.equal(g.json.error, 'run_not_found');
        }
        assert.equal(await redis.call('EXISTS', `agate:run:${x.input.runId}:meta`), 0, 'nothing in Redis');
        assert.equal(await redis.call('EXISTS', `agate:run:${x.input.runId}`), 0);
      }
      for (const x of ok) {
        const other = pods[1 - x.pod];
        const g = await reattach(other.port, x.input.runId, auth);
        await finished(g);
        assert.equal(g.status, 200);
        assert.deepEqual(g.frames, x.s.frames, 'the allowed run replays on the other pod');
        assert.equal(events(g).at(-1).type, 'RUN_FINISHED');
      }
    } finally {
      for (const p of pods) await stopClean(p);
      await redis.kill();
    }
  });
});
