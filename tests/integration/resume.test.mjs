// Resumable runs in one process (issue 27): event ids, the run log, reattach
// with Last-Event-ID, detach instead of cancel, DELETE, the resume token and
// the caller's identity, 404/410, and the log's bound. Every client here is a
// real one: fetch (undici) reading SSE as a browser would, @ag-ui/client's
// HttpAgent and verifyEvents, and an AG-UI server behind a proxy agent.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { HttpAgent, verifyEvents } from '@ag-ui/client';
import { startAgate, stopClean, sleep, runInput, uid, paced, waitFor, assertEchoEvents, request } from './lib/harness.mjs';
import { startAguiServer, simpleRun } from './lib/agui-server.mjs';
import { openRunSocket } from './lib/wsclient.mjs';
import { openStream, events, finished, assertIds } from './lib/ssestream.mjs';
import fs from 'node:fs';
import net from 'node:net';
import { chromium } from 'playwright-core';

const T = { timeout: 30000 };
const TEXT = 'one two three four five six seven eight nine ten eleven twelve';

const run = (port, input, headers = {}) => openStream(`http://127.0.0.1:${port}/v1/agents/echo/run`, {
  method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(input),
});
const reattach = (port, runId, { headers = {}, query = '' } = {}) =>
  openStream(`http://127.0.0.1:${port}/v1/runs/${encodeURIComponent(runId)}/events${query}`, { headers });

describe('resume: one process, echo agent', () => {
  let agate;
  before(async () => {
    agate = await startAgate({
      config: [
        'agents:',
        '  echo:',
        '    type: echo',
        '    resume: {enabled: true, log_ttl: 1500ms, detach_timeout: 600ms}',
        '  plain: {type: echo}',
      ].join('\n'),
    });
  });
  after(async () => { await stopClean(agate); });

  test('ids are runId:seq, gap-free from 1; the head hands out a 128-bit token', T, async () => {
    const input = runInput(TEXT);
    const s = await run(agate.port, input);
    await finished(s);
    assert.equal(s.status, 200);
    assert.match(s.headers.get('x-agate-resume-token'), /^[0-9a-f]{32}$/);
    assertEchoEvents(events(s), { threadId: input.threadId, runId: input.runId, text: TEXT });
    assertIds(s.frames, input.runId);
  });

  test('a plain agent\'s events carry no id and no token', T, async () => {
    const s = await openStream(`http://127.0.0.1:${agate.port}/v1/agents/plain/run`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(runInput('hi there')),
    });
    await finished(s);
    assert.equal(s.headers.get('x-agate-resume-token'), null);
    assert.ok(s.frames.length > 0 && s.frames.every((f) => f.id === undefined));
  });

  test('disconnect mid-run, reattach with Last-Event-ID: every event once, in order', T, async () => {
    const input = runInput(TEXT, { forwardedProps: paced(40) });
    const first = await run(agate.port, input);
    const token = first.headers.get('x-agate-resume-token');
    await waitFor(() => first.frames.length >= 4, 5000);
    first.abort();
    await finished(first);
    const got = first.frames.slice();
    const last = got[got.length - 1].id;
    await sleep(100);   // the run goes on, detached
    const second = await reattach(agate.port, input.runId, { headers: { 'last-event-id': last, 'x-agate-resume-token': token } });
    assert.equal(second.status, 200);
    await finished(second);
    assert.equal(second.frames[0].id, `${input.runId}:${got.length + 1}`);
    const all = [...got, ...second.frames];
    assertIds(all, input.runId);
    assertEchoEvents(all.map((f) => f.event), { threadId: input.threadId, runId: input.runId, text: TEXT });
  });

  test('the query forms (?last_event_id=, ?token=), as an EventSource would reconnect', T, async () => {
    const input = runInput(TEXT, { forwardedProps: paced(30) });
    const first = await run(agate.port, input);
    const token = first.headers.get('x-agate-resume-token');
    await waitFor(() => first.frames.length >= 3, 5000);
    first.abort();
    await finished(first);
    const got = first.frames.slice();
    const q = `?last_event_id=${encodeURIComponent(got[got.length - 1].id)}&token=${token}`;
    const second = await reattach(agate.port, input.runId, { query: q });
    await finished(second);
    assertIds([...got, ...second.frames], input.runId);
    assertEchoEvents([...got, ...second.frames].map((f) => f.event), { runId: input.runId, text: TEXT });
  });

  test('without an id the whole run is replayed; HttpAgent + verifyEvents accept it', T, async () => {
    const input = runInput(TEXT);
    const first = await run(agate.port, input);
    await finished(first);
    const token = first.headers.get('x-agate-resume-token');
    const agent = new HttpAgent({ url: `http://127.0.0.1:${agate.port}/v1/runs/${input.runId}/events`, headers: { 'X-Agate-Resume-Token': token } });
    const got = await new Promise((resolve, reject) => {
      const out = [];
      agent.run(input).pipe(verifyEvents()).subscribe({ next: (e) => out.push(e), error: reject, complete: () => resolve(out) });
    });
    assert.deepEqual(got.map((e) => e.type), events(first).map((e) => e.type));
    assert.deepEqual(got.map((e) => e.delta ?? null), events(first).map((e) => e.delta ?? null));
    const again = await reattach(agate.port, input.runId, { headers: { 'x-agate-resume-token': token } });
    await finished(again);
    assert.deepEqual(again.frames, first.frames);
  });

  test('reattach while the run is live follows it to its end (over several connections, any shard)', T, async () => {
    const input = runInput(TEXT, { forwardedProps: paced(40) });
    const first = await run(agate.port, input);
    const token = first.headers.get('x-agate-resume-token');
    await waitFor(() => first.frames.length >= 2, 5000);
    const followers = await Promise.all([1, 2, 3, 4].map(() => reattach(agate.port, input.runId, { headers: { 'x-agate-resume-token': token } })));
    await finished(first);
    for (const f of followers) {
      await finished(f);
      assert.deepEqual(f.frames, first.frames);
    }
  });

  test('refused: no token, a wrong token (403); an unknown run (404); a bad id (400)', T, async () => {
    const input = runInput(TEXT);
    const first = await run(agate.port, input);
    await finished(first);
    const none = await reattach(agate.port, input.runId);
    assert.equal(none.status, 403);
    assert.equal(none.json.error, 'forbidden');
    const wrong = await reattach(agate.port, input.runId, { headers: { 'x-agate-resume-token': crypto.randomBytes(16).toString('hex') } });
    assert.equal(wrong.status, 403);
    const unknown = await reattach(agate.port, uid('nope'), { headers: { 'x-agate-resume-token': first.headers.get('x-agate-resume-token') } });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error, 'run_not_found');
    const token = first.headers.get('x-agate-resume-token');
    for (const id of ['nope:3', `${input.runId}:x`, `${input.runId}:99`, `${input.runId}`]) {
      const bad = await reattach(agate.port, input.runId, { headers: { 'x-agate-resume-token': token, 'last-event-id': id } });
      assert.equal(bad.status, 400, id);
      assert.equal(bad.json.error, 'invalid_last_event_id');
    }
  });

  test('an expired log is 410', T, async () => {
    const input = runInput('short one');
    const first = await run(agate.port, input);
    await finished(first);
    const token = first.headers.get('x-agate-resume-token');
    await sleep(1500 + 400);
    const late = await reattach(agate.port, input.runId, { headers: { 'x-agate-resume-token': token } });
    assert.equal(late.status, 410);
    assert.equal(late.json.error, 'resume_log_expired');
  });

  test('detach: the run goes on without a client, then the detach timeout cancels it', T, async () => {
    const input = runInput(TEXT + ' ' + TEXT, { forwardedProps: paced(100) });
    const first = await run(agate.port, input);
    const token = first.headers.get('x-agate-resume-token');
    await waitFor(() => first.frames.length >= 2, 5000);
    first.abort();
    await sleep(1200);   // > detach_timeout (600 ms), < the run (~2.5 s)
    const late = await reattach(agate.port, input.runId, { headers: { 'x-agate-resume-token': token } });
    await finished(late);
    const evs = events(late);
    assert.equal(evs[0].type, 'RUN_STARTED');
    const end = evs[evs.length - 1];
    assert.equal(end.type, 'RUN_ERROR');
    assert.equal(end.code, 'detach_timeout');
    assert.ok(evs.length > first.frames.length, 'events were logged while detached');
    assert.ok(evs.length < 2 + 24, 'the run did not finish');
    assertIds(late.frames, input.runId);
  });

  test('DELETE cancels now; a second DELETE is 409', T, async () => {
    const input = runInput(TEXT, { forwardedProps: paced(100) });
    const first = await run(agate.port, input);
    const token = first.headers.get('x-agate-resume-token');
    await waitFor(() => first.frames.length >= 2, 5000);
    const url = `http://127.0.0.1:${agate.port}/v1/runs/${input.runId}`;
    assert.equal((await fetch(url, { method: 'DELETE' })).status, 403);
    const del = await fetch(url, { method: 'DELETE', headers: { 'x-agate-resume-token': token } });
    assert.equal(del.status, 202);
    await finished(first);
    const evs = events(first);
    assert.equal(evs[evs.length - 1].type, 'RUN_ERROR');
    assert.equal(evs[evs.length - 1].code, 'run_cancelled');
    assert.ok(evs.length < 10);
    const again = await fetch(url, { method: 'DELETE', headers: { 'x-agate-resume-token': token } });
    assert.equal(again.status, 409);
    assert.equal((await again.json()).error, 'run_not_running');
  });
});

describe('resume: over WebSocket', () => {
  let agate;
  before(async () => {
    agate = await startAgate({
      config: ['agents:', '  echo:', '    type: echo', '    resume: {enabled: true, detach_timeout: 2s}'].join('\n'),
    });
  });
  after(async () => { await stopClean(agate); });

  test('events carry "seq"; RUN_STARTED the token; a dropped socket, then RESUME on another: every event once', T, async () => {
    const input = runInput(TEXT, { forwardedProps: paced(40) });
    const a = await openRunSocket(agate.port);
    a.sendJson(input);
    assert.ok(await a.until(() => a.runEvents(input.runId).length >= 4 || a.events.length >= 4, 5000));
    a.terminate();   // the connection drops, no close handshake
    const got = a.events.slice();
    assert.equal(got[0].type, 'RUN_STARTED');
    assert.match(got[0].resumeToken, /^[0-9a-f]{32}$/);
    got.forEach((e, i) => assert.equal(e.seq, i + 1));
    const b = await openRunSocket(agate.port);
    b.sendJson({ type: 'RESUME', runId: input.runId, lastEventId: got[got.length - 1].seq, token: got[0].resumeToken });
    const rest = await b.waitRun(input.runId);
    const all = [...got, ...rest];
    all.forEach((e, i) => assert.equal(e.seq, i + 1, `event ${i}'s seq`));
    assertEchoEvents(all.map(({ seq, resumeToken, ...e }) => e), { threadId: input.threadId, runId: input.runId, text: TEXT });
    // a RESUME without the token is refused; CANCEL of a resumable run cancels the run
    b.sendJson({ type: 'RESUME', runId: input.runId });
    assert.ok(await b.until(() => b.events.some((e) => e.type === 'RUN_ERROR' && e.code === 'forbidden'), 5000));
    const input2 = runInput(TEXT, { forwardedProps: paced(100) });
    b.sendJson(input2);
    assert.ok(await b.until(() => b.runEvents(input2.runId).length >= 2, 5000));
    const token2 = b.runEvents(input2.runId)[0].resumeToken;
    b.cancel(input2.runId);
    await b.waitRun(input2.runId);
    await sleep(300);
    const after = await reattach(agate.port, input2.runId, { headers: { 'x-agate-resume-token': token2 } });
    await finished(after);
    const evs = events(after);
    assert.equal(evs[evs.length - 1].code, 'run_cancelled', 'the run itself was cancelled, not only the socket\'s view');
    await b.closeClean();
  });
});

describe('resume: the caller\'s identity', () => {
  let agate;
  const keyA = `ka-${crypto.randomBytes(8).toString('hex')}`;
  const keyB = `kb-${crypto.randomBytes(8).toString('hex')}`;
  const sha = (k) => crypto.createHash('sha256').update(k).digest('hex');
  before(async () => {
    agate = await startAgate({
      config: [
        'agents:',
        '  echo:',
        '    type: echo',
        '    resume: {enabled: true}',
        'auth:',
        '  anonymous: false',
        '  api_keys:',
        `    - {name: a, sha256: ${sha(keyA)}, scopes: [agents:run]}`,
        `    - {name: b, sha256: ${sha(keyB)}, scopes: [agents:run]}`,
      ].join('\n'),
    });
  });
  after(async () => { await stopClean(agate); });

  test('the same identity needs no token; another is refused without it; the token is always enough', T, async () => {
    const input = runInput(TEXT);
    const first = await run(agate.port, input, { authorization: `Bearer ${keyA}` });
    await finished(first);
    assert.equal(first.status, 200);
    const token = first.headers.get('x-agate-resume-token');
    const same = await reattach(agate.port, input.runId, { headers: { authorization: `Bearer ${keyA}` } });
    await finished(same);
    assert.equal(same.status, 200);
    assert.deepEqual(same.frames, first.frames);
    const other = await reattach(agate.port, input.runId, { headers: { authorization: `Bearer ${keyB}` } });
    assert.equal(other.status, 403);
    const bad = await reattach(agate.port, input.runId, { headers: { authorization: 'Bearer nope' } });
    assert.equal(bad.status, 401);
    const byToken = await reattach(agate.port, input.runId, { headers: { authorization: `Bearer ${keyB}`, 'x-agate-resume-token': token } });
    await finished(byToken);
    assert.equal(byToken.status, 200);
    assert.equal(byToken.frames.length, first.frames.length);
    // another identity cannot take over the run id while it is kept
    const clash = await run(agate.port, input, { authorization: `Bearer ${keyB}` });
    assert.equal(clash.status, 409);
    assert.equal(clash.json.error, 'run_id_in_use');
  });
});

describe('resume: a proxied run', () => {
  let upstream, agate;
  before(async () => {
    upstream = await startAguiServer({ script: (rec) => ({ events: simpleRun(rec.json, TEXT), interval: 80 }) });
    agate = await startAgate({
      config: [
        'agents:',
        '  echo:',
        '    type: proxy',
        `    endpoints: ["http://127.0.0.1:${upstream.port}/agent"]`,
        '    resume: {enabled: true, detach_timeout: 400ms}',
      ].join('\n'),
    });
  });
  after(async () => { await stopClean(agate); await upstream.close(); });

  test('a client that leaves does not cancel the upstream at once; the detach timeout does', T, async () => {
    const input = runInput('x');
    const first = await run(agate.port, input);
    await waitFor(() => first.frames.length >= 2, 5000);
    first.abort();
    const rec = upstream.requests[upstream.requests.length - 1];
    await sleep(200);
    assert.equal(rec.closedAt, null, 'the upstream run goes on while detached');
    await waitFor(() => rec.closedAt !== null, 3000);
    assert.equal(rec.aborted, true, 'the upstream saw its connection closed before the run finished');
  });

  test('reattach within the window: every event once, and the upstream run finishes', T, async () => {
    const input = runInput('x');
    const first = await run(agate.port, input);
    const token = first.headers.get('x-agate-resume-token');
    await waitFor(() => first.frames.length >= 3, 5000);
    first.abort();
    await finished(first);
    const got = first.frames.slice();
    const second = await reattach(agate.port, input.runId, { headers: { 'x-agate-resume-token': token, 'last-event-id': got[got.length - 1].id } });
    await finished(second);
    const all = [...got, ...second.frames];
    assertIds(all, input.runId);
    assert.deepEqual(all.map((f) => f.event), simpleRun(input, TEXT));
    const rec = upstream.requests[upstream.requests.length - 1];
    await waitFor(() => rec.closedAt !== null, 3000);
    assert.equal(rec.finished, true);
  });
});

describe('resume: the log\'s bound', () => {
  let agate;
  before(async () => {
    agate = await startAgate({
      config: [
        'agents:',
        '  echo:',
        '    type: echo',
        '    resume: {enabled: true, max_bytes: 4KiB}',
      ].join('\n'),
    });
  });
  after(async () => { await stopClean(agate); });

  test('a log past max_bytes drops its front: the live client has everything, a full replay is 410, the tail replays', T, async () => {
    const words = Array.from({ length: 400 }, (_, i) => `word${i}`).join(' ');
    const input = runInput(words);
    const first = await run(agate.port, input);
    await finished(first);
    assertEchoEvents(events(first), { runId: input.runId, text: words });
    assertIds(first.frames, input.runId);
    const token = first.headers.get('x-agate-resume-token');
    const full = await reattach(agate.port, input.runId, { headers: { 'x-agate-resume-token': token } });
    assert.equal(full.status, 410);
    assert.equal(full.json.error, 'resume_log_truncated');
    const n = first.frames.length;
    const tail = await reattach(agate.port, input.runId, { headers: { 'x-agate-resume-token': token, 'last-event-id': `${input.runId}:${n - 5}` } });
    await finished(tail);
    assert.deepEqual(tail.frames, first.frames.slice(n - 5));
    // what the log holds: ~100 bytes an event, 400 events; at most max_bytes stay
    const kept = [];
    for (let k = n - 1; k > 0; k--) {
      const r = await reattach(agate.port, input.runId, { headers: { 'x-agate-resume-token': token, 'last-event-id': `${input.runId}:${k}` } });
      if (r.status !== 200) break;
      await finished(r);
      kept.push(r);
      if (n - k > 80) break;
    }
    const keptBytes = kept.length ? kept[kept.length - 1].frames.reduce((a, f) => a + JSON.stringify(f.event).length + 16, 0) : 0;
    assert.ok(kept.length < 80, `the log kept ${kept.length} events (${keptBytes} bytes) under a 4 KiB bound`);
  });
});

describe('resume: the process\'s bound (resume.max_bytes), runs under many ids', () => {
  let agate;
  before(async () => {
    agate = await startAgate({
      config: [
        'resume: {max_bytes: 64KiB}',
        'agents:',
        '  echo:',
        '    type: echo',
        '    resume: {enabled: true, log_ttl: 10m}',
      ].join('\n'),
    });
  });
  after(async () => { await stopClean(agate); });
  const metric = async (name) => {
    const text = (await request(agate.adminPort, { path: '/metrics' })).text;
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line ? Number(line.split(' ').pop()) : NaN;
  };

  test('a client minting run ids cannot grow the logs past the bound: the oldest go (410), the newest replay', T, async () => {
    const done = [];
    for (let i = 0; i < 120; i++) {
      const input = runInput(`${TEXT} run ${i}`);
      const s = await run(agate.port, input);
      await finished(s);
      assert.equal(s.status, 200);
      done.push({ input, s, token: s.headers.get('x-agate-resume-token') });
    }
    // 120 runs of ~1.5 KiB of events each hold ~8 KiB (a chunk and the log) until log_ttl: far past 64 KiB
    await waitFor(async () => (await metric('agate_resume_log_bytes')) <= 65536, 3000);
    assert.ok((await metric('agate_resume_logs_trimmed_total')) > 0, 'logs were trimmed');
    const logs = await metric('agate_resume_logs');
    assert.ok(logs < 120 && logs > 0, `${logs} logs held`);
    const oldest = await reattach(agate.port, done[0].input.runId, { headers: { 'x-agate-resume-token': done[0].token } });
    assert.ok([404, 410].includes(oldest.status), `the oldest run: ${oldest.status}`);
    if (oldest.status === 410) assert.equal(oldest.json.error, 'resume_log_expired');
    const last = done.at(-1);
    const again = await reattach(agate.port, last.input.runId, { headers: { 'x-agate-resume-token': last.token } });
    await finished(again);
    assert.equal(again.status, 200);
    assert.deepEqual(again.frames, last.s.frames, 'the newest run replays whole');
  });

  test('a runId no id line can carry (a line feed) runs plain: no ids, no token, every event', T, async () => {
    const input = { ...runInput(TEXT), runId: `line\nfeed-${uid('r')}` };
    const s = await run(agate.port, input);
    await finished(s);
    assert.equal(s.status, 200);
    assert.equal(s.headers.get('x-agate-resume-token'), null);
    assert.ok(s.frames.every((f) => f.id === undefined), 'no id: lines');
    assertEchoEvents(events(s), { runId: input.runId, text: TEXT });
  });
});

describe('resume: backpressure from the run\'s own client', () => {
  let agate;
  before(async () => {
    agate = await startAgate({
      config: [
        'stream: {buffer: 64KiB}',
        'agents:',
        '  echo:',
        '    type: echo',
        '    resume: {enabled: true, max_bytes: 64MiB}',
      ].join('\n'),
    });
  });
  after(async () => { await stopClean(agate); });

  test('a client that stops reading holds the run; read again, it gets every event once, in order', { timeout: 60000 }, async () => {
    const n = 100000;   // ~11 MB of events: past the socket buffers and stream.buffer
    const words = Array.from({ length: n }, (_, i) => `w${i}`).join(' ');
    const input = runInput(words);
    const body = JSON.stringify(input);
    const sock = net.connect(agate.port, '127.0.0.1');
    await new Promise((r, j) => { sock.once('connect', r); sock.once('error', j); });
    sock.write(`POST /v1/agents/echo/run HTTP/1.0\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    const chunks = [];
    let head = '';
    await new Promise((r) => {   // the head only (its token), then no more reading: paused
      const more = () => {
        let c;
        while (!head.includes('\r\n\r\n') && (c = sock.read()) !== null) {
          chunks.push(c);
          head += c.toString('latin1');
        }
        if (head.includes('\r\n\r\n')) { sock.off('readable', more); r(); }
      };
      sock.on('readable', more);
    });
    const token = /x-agate-resume-token: ([0-9a-f]{32})/i.exec(head)[1];
    // another client follows the same run from its start while the first holds it
    const second = await reattach(agate.port, input.runId, { headers: { 'x-agate-resume-token': token } });
    await sleep(1500);
    assert.equal(second.done, false, 'the run waits for its own client');
    const held = second.frames.length;
    assert.ok(held < n + 4, `the follower got ${held} of ${n + 4} events while the client held the run`);
    await sleep(500);
    assert.ok(second.frames.length - held < 100, 'and the run stays held');
    sock.on('data', (c) => chunks.push(c));
    await new Promise((r) => sock.once('close', r));
    const all = Buffer.concat(chunks).toString('utf8');   // HTTP/1.0: the body runs to the close, unchunked
    const at = all.indexOf('\r\n\r\n');
    assert.match(all.slice(0, at), /^HTTP\/1\.[01] 200 /);
    const frames = all.slice(at + 4).split('\n\n').filter((f) => f).map((f) => {
      const [idLine, dataLine] = f.split('\n');
      return { id: idLine.slice('id: '.length), event: JSON.parse(dataLine.slice('data: '.length)) };
    });
    assert.equal(frames.length, n + 4);
    assertIds(frames, input.runId);
    assertEchoEvents(frames.map((f) => f.event), { runId: input.runId, text: words });
    await finished(second, 20000);
    assert.deepEqual(second.frames, frames, 'the follower got the same events');
  });
});

/** A TCP relay to agate that cuts the first /events response once it has
 * carried `after` events (both sockets destroyed, as a lost network would),
 * and relays everything else, reconnections included. */
async function cuttingRelay(port, after) {
  const socks = new Set();
  let cut = false;
  const srv = net.createServer((client) => {
    const up = net.connect(port, '127.0.0.1');
    socks.add(client); socks.add(up);
    let isEvents = false, ids = 0;
    client.on('data', (d) => { if (d.toString('latin1').includes('/events')) isEvents = true; up.write(d); });
    up.on('data', (d) => {
      client.write(d);
      if (!isEvents || cut) return;
      ids += (d.toString('latin1').match(/\nid: /g) ?? []).length;
      if (ids >= after) { cut = true; client.destroy(); up.destroy(); }
    });
    const end = () => { client.destroy(); up.destroy(); socks.delete(client); socks.delete(up); };
    client.on('close', end); up.on('close', end); client.on('error', end); up.on('error', end);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { port: srv.address().port, wasCut: () => cut, close: () => { for (const s of socks) s.destroy(); srv.close(); } };
}

test('EventSource in Chromium reconnects by itself through a dropped connection and gets every event once', { timeout: 60000 }, async (t) => {
  assert.ok(fs.existsSync('/usr/bin/chromium'), '/usr/bin/chromium is missing (deploy/install-deps.sh test installs chromium)');
  const agate = await startAgate({
    config: ['agents:', '  echo:', '    type: echo', '    resume: {enabled: true, detach_timeout: 20s}'].join('\n'),
  });
  t.after(async () => { if (!agate.exitInfo) await agate.stop(5000); });
  const relay = await cuttingRelay(agate.port, 4);
  t.after(() => relay.close());
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  t.after(() => browser.close());

  const input = runInput(TEXT, { forwardedProps: paced(150) });
  const first = await run(agate.port, input);   // starts the run; this client leaves at once
  const token = first.headers.get('x-agate-resume-token');
  first.abort();

  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${relay.port}/`);   // same origin as the stream
  await page.evaluate(([url]) => {
    window.got = []; window.opens = 0; window.done = false;
    const es = new EventSource(url);
    es.onopen = () => { window.opens++; };
    es.onmessage = (m) => {
      const ev = JSON.parse(m.data);
      window.got.push({ id: m.lastEventId, ev });
      if (ev.type === 'RUN_FINISHED' || ev.type === 'RUN_ERROR') { es.close(); window.done = true; }
    };
  }, [`/v1/runs/${encodeURIComponent(input.runId)}/events?token=${token}`]);
  await page.waitForFunction(() => window.done, null, { timeout: 40000 });
  const got = await page.evaluate(() => window.got);
  const opens = await page.evaluate(() => window.opens);
  assert.ok(relay.wasCut(), 'the relay cut the stream');
  assert.ok(opens >= 2, `EventSource reconnected (${opens} opens)`);
  got.forEach((f, i) => assert.equal(f.id, `${input.runId}:${i + 1}`, `event ${i}'s id`));
  assertEchoEvents(got.map((f) => f.ev), { threadId: input.threadId, runId: input.runId, text: TEXT });
  await page.close();
  await stopClean(agate);
});

test('the demo page shows a run surviving a dropped connection', { timeout: 60000 }, async (t) => {
  const agate = await startAgate({
    config: ['agents:', '  echo:', '    type: echo', '    resume: {enabled: true}'].join('\n'),
  });
  t.after(async () => { if (!agate.exitInfo) await agate.stop(5000); });
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`http://127.0.0.1:${agate.port}/`);
  const text = 'A run that outlives its connection, resumed from the last event id it saw.';
  await page.fill('#text', text);
  await page.fill('#interval', '60');
  await page.click('#run-drop');
  await page.waitForFunction(() => document.getElementById('sse-status').textContent.startsWith('dropped'), null, { timeout: 10000 });
  await page.waitForFunction(() => document.getElementById('sse-status').textContent !== 'running'
    && !document.getElementById('sse-status').textContent.startsWith('dropped'), null, { timeout: 20000 });
  assert.equal(await page.textContent('#sse-status'), 'done');
  assert.equal(await page.textContent('#sse-out'), text);
  assert.equal(Number(await page.textContent('#sse-events')), text.split(' ').length + 4, 'every event once');
  assert.deepEqual(errors, []);
  await page.close();
  await stopClean(agate);
});
