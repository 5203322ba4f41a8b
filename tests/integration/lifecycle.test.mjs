// Health endpoints, graceful drain on SIGTERM, the drain deadline, clients that
// vanish mid-stream, and the per-request log lines.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startAgate, stopClean, assertCleanExit, request, streamRun, runInput, paced, RawConn, buildRequest,
  probeConnect, assertEchoEvents, assertError, assertCommonHeaders, sleep, uid, waitFor, assertEngineLine,
} from './lib/harness.mjs';

const T = { timeout: 15000 };
const HEALTH = ['/health/live', '/healthz', '/health/ready', '/health/startup'];

/** Starts a run in the background; resolves `firstContent` when the first TEXT_MESSAGE_CONTENT arrives. */
function backgroundRun(port, input, opts = {}) {
  let resolveFirst;
  const firstContent = new Promise((r) => { resolveFirst = r; });
  const done = streamRun(port, input, {
    ...opts,
    onFrame: (f) => { if (f.event && f.event.type === 'TEXT_MESSAGE_CONTENT') resolveFirst(Date.now()); },
  });
  done.catch(() => resolveFirst(null));
  return { firstContent, done };
}

describe('health endpoints', () => {
  let agate;
  before(async () => { agate = await startAgate({ config: 'log: {requests: false}\n' }); });
  after(async () => { if (agate) await stopClean(agate); });

  for (const which of ['main', 'admin']) {
    test(`GET and HEAD on every health route, ${which} listener`, T, async () => {
      const port = which === 'main' ? agate.port : agate.adminPort;
      for (const p of HEALTH) {
        const res = await request(port, { path: p });
        assert.equal(res.statusCode, 200, `${which} GET ${p}: ${res.statusCode} ${res.text}`);
        assert.match(res.headers['content-type'] || '', /^application\/json\b/, `${which} ${p} Content-Type`);
        assertCommonHeaders(res);
        const body = JSON.parse(res.text);
        assert.equal(typeof body, 'object');
        if (p === '/health/ready') assert.deepEqual(body, { status: 'ready' });
        assert.equal(Number(res.headers['content-length']), res.body.length, `${which} ${p} Content-Length`);
        const head = await request(port, { method: 'HEAD', path: p });
        assert.equal(head.statusCode, 200, `${which} HEAD ${p}`);
        assert.equal(head.headers['content-length'], res.headers['content-length'], `${which} HEAD ${p} Content-Length`);
        assert.equal(head.raw.toString('latin1').split('\r\n\r\n')[1], '', `${which} HEAD ${p} has no body`);
      }
    });
  }

  // Under tests/run-integration.sh's nouring run (io_uring refused by seccomp) this
  // is where auto's fall-back to epoll is seen; the rest of the file then runs on it.
  test('the start-up line names the engine backend and why', T, async () => {
    await assertEngineLine(agate);
  });

  test('the admin listener serves health only: a run there is 404 not_found', T, async () => {
    const res = await request(agate.adminPort, { method: 'POST', path: '/v1/agents/echo/run', body: runInput('x') });
    assertError(res, 404, 'not_found');
    const res2 = await request(agate.adminPort, { path: '/nope' });
    assertError(res2, 404, 'not_found');
  });
});

describe('shutdown', () => {
  test('SIGTERM drains: admin ready → 503 at once, main stops accepting, the stream in flight completes, exit 0', T, async () => {
    const agate = await startAgate({ config: 'stream: {drain_timeout: 10s}\nlog: {requests: false}\n' });
    try {
      const text = 'one two three four five six seven eight nine ten';
      const threadId = uid('thread');
      const runId = uid('run');
      const run = backgroundRun(agate.port, runInput(text, { threadId, runId, forwardedProps: paced(100) }));
      assert.ok(await run.firstContent, 'the stream started');
      const tTerm = Date.now();
      agate.signal('SIGTERM');

      // Admin readiness flips to 503 draining at once.
      const ready = await waitFor(async () => {
        try {
          const r = await request(agate.adminPort, { path: '/health/ready', timeout: 1000 });
          return r.statusCode === 503 ? r : null;
        } catch { return null; }
      }, 300);
      assert.ok(ready, 'admin /health/ready did not answer 503 within 300 ms of SIGTERM');
      assert.deepEqual(JSON.parse(ready.text), { status: 'draining' });
      assert.match(ready.headers['content-type'] || '', /^application\/json\b/);

      // The main listener no longer accepts.
      await sleep(50);
      const probe = await probeConnect(agate.port, buildRequest({ path: '/health/live', headers: { Connection: 'close' } }));
      assert.ok(['refused', 'reset', 'closed'].includes(probe.outcome),
        `main listener during drain: ${probe.outcome} ${probe.text ? JSON.stringify(probe.text.slice(0, 120)) : ''}`);

      // The stream in flight runs to its natural end.
      const r = await run.done;
      assert.equal(r.statusCode, 200);
      assert.ok(r.complete, 'stream completed (terminating chunk)');
      assertEchoEvents(r.events, { threadId, runId, text });
      const tStreamEnd = Date.now();

      const code = await agate.waitExit(5000);
      assertCleanExit(agate, code);
      assert.ok(Date.now() - tStreamEnd < 2000, `exit ${Date.now() - tStreamEnd} ms after the last stream ended`);
      assert.ok(tStreamEnd - tTerm >= 500, 'the stream was not cut short');
    } finally {
      if (!agate.exitInfo) agate.signal('SIGKILL');
    }
  });

  test('drain deadline: a stream still running at drain_timeout is cut, exit 0 within ~3 s', T, async () => {
    const agate = await startAgate({ config: 'stream: {drain_timeout: 300ms}\nlog: {requests: false}\n' });
    try {
      const text = Array.from({ length: 100 }, (_, i) => `w${i}`).join(' ');
      const run = backgroundRun(agate.port, runInput(text, { forwardedProps: paced(100) }), { timeout: 12000 });
      assert.ok(await run.firstContent, 'the stream started');
      const tTerm = Date.now();
      agate.signal('SIGTERM');
      const r = await run.done;
      const tCut = Date.now();
      assert.ok(r.closed, 'connection closed by agate');
      assert.ok(!r.events.some((e) => e.type === 'RUN_FINISHED'), 'the 10 s stream did not finish');
      assert.ok(tCut - tTerm < 3000, `stream cut ${tCut - tTerm} ms after SIGTERM`);
      assert.ok(tCut - tTerm >= 200, `stream cut ${tCut - tTerm} ms after SIGTERM, before drain_timeout`);
      const code = await agate.waitExit(5000);
      assertCleanExit(agate, code);
      assert.ok(Date.now() - tTerm < 3000, `exited ${Date.now() - tTerm} ms after SIGTERM`);
    } finally {
      if (!agate.exitInfo) agate.signal('SIGKILL');
    }
  });

  test('SIGTERM with only idle keep-alive connections: prompt exit 0 (nothing to drain)', T, async () => {
    const agate = await startAgate({ config: 'stream: {drain_timeout: 10s}\nlog: {requests: false}\n' });
    try {
      const conns = [];
      for (let i = 0; i < 3; i++) {
        const c = await RawConn.connect(agate.port);
        conns.push(c);
        await c.write(buildRequest({ path: '/health/live' }));
        const rs = await c.waitResponses(1, { timeout: 2000 });
        assert.equal(rs[0].statusCode, 200);
      }
      const t0 = Date.now();
      const code = await agate.stop(8000);
      assertCleanExit(agate, code);
      assert.ok(Date.now() - t0 < 2000, `exit took ${Date.now() - t0} ms with idle keep-alive connections open`);
      for (const c of conns) {
        assert.ok(await c.waitClose(500), 'idle connection closed');
        c.destroy();
      }
    } finally {
      if (!agate.exitInfo) agate.signal('SIGKILL');
    }
  });

  test('SIGTERM on an idle server: exit 0 promptly', T, async () => {
    const agate = await startAgate({ config: 'log: {requests: false}\n' });
    const t0 = Date.now();
    const code = await agate.stop(8000);
    assertCleanExit(agate, code);
    assert.ok(Date.now() - t0 < 2000, `exit took ${Date.now() - t0} ms`);
  });
});

describe('clients that go away', () => {
  let agate;
  before(async () => {
    agate = await startAgate({ config: 'stream: {buffer: 16KiB}\nlimits: {max_body: 2MiB}\nlog: {requests: false}\n' });
  });
  after(async () => { if (agate) await stopClean(agate); });

  async function healthy() {
    const res = await request(agate.port, { path: '/health/ready' });
    assert.equal(res.statusCode, 200);
    const r = await streamRun(agate.port, runInput('still serving'));
    assert.equal(r.statusCode, 200);
    assertEchoEvents(r.events, { text: 'still serving' });
  }

  test('disconnect mid-stream (paced), then more requests succeed', T, async () => {
    for (let i = 0; i < 3; i++) {
      const c = await RawConn.connect(agate.port);
      await c.write(buildRequest({ method: 'POST', path: '/v1/agents/echo/run', body: runInput('a b c d e f g h i j k l m n o p', { forwardedProps: paced(50) }) }));
      const got = await c.waitFor((x) => x.text.includes('TEXT_MESSAGE_CONTENT'), 3000);
      assert.ok(got, 'stream started');
      c.destroy();
    }
    await sleep(300);
    await healthy();
  });

  test('disconnect right after sending the request', T, async () => {
    for (let i = 0; i < 5; i++) {
      const c = await RawConn.connect(agate.port);
      await c.write(buildRequest({ method: 'POST', path: '/v1/agents/echo/run', body: runInput('gone before the answer', { forwardedProps: paced(20) }) }));
      c.destroy();
    }
    await sleep(300);
    await healthy();
  });

  test('disconnect mid-request (half a body)', T, async () => {
    const c = await RawConn.connect(agate.port);
    await c.write(buildRequest({ method: 'POST', path: '/v1/agents/echo/run', headers: { 'Content-Length': '500' } }));
    await c.write('{"threadId":"t","runId":');
    await sleep(50);
    c.destroy();
    await sleep(200);
    await healthy();
  });

  test('a client that stops reading a large fast stream, then disconnects', T, async () => {
    const text = Array.from({ length: 60000 }, (_, i) => `word${i}`).join(' ');
    const c = await RawConn.connect(agate.port);
    await c.write(buildRequest({ method: 'POST', path: '/v1/agents/echo/run', body: runInput(text) }));
    await c.waitFor((x) => x.data.length > 0, 3000);
    c.socket.pause();
    await sleep(1000);
    // agate must be serving others while this stream is blocked on a full socket.
    const t0 = Date.now();
    const res = await request(agate.port, { path: '/health/live' });
    assert.equal(res.statusCode, 200);
    assert.ok(Date.now() - t0 < 1000, 'other requests are served while one stream is blocked');
    c.destroy();
    await sleep(300);
    await healthy();
  });
});

describe('request logs', () => {
  test('one JSON line per request on stdout with the documented fields', T, async () => {
    const agate = await startAgate({ config: 'log: {requests: true, level: info}\n' });
    let code;
    try {
      const reqs = [
        { id: 'log-live', method: 'GET', path: '/health/live', status: 200, events: 0 },
        { id: 'log-404', method: 'GET', path: '/nope', status: 404, events: 0 },
        { id: 'log-run', method: 'POST', path: '/v1/agents/echo/run', body: runInput('a b c'), status: 200, events: 7 },
        { id: 'log-400', method: 'POST', path: '/v1/agents/echo/run', body: '{"threadId":1}', status: 400, events: 0 },
        { id: 'log-405', method: 'DELETE', path: '/healthz', status: 405, events: 0 },
      ];
      for (const r of reqs) {
        const res = await request(agate.port, { method: r.method, path: r.path, body: r.body, headers: { 'X-Request-ID': r.id } });
        assert.equal(res.statusCode, r.status);
      }
      const flushed = await waitFor(() => reqs.every((r) => agate.stdout().includes(r.id)), 2000);
      code = await agate.stop();
      assertCleanExit(agate, code);

      const lines = agate.stdoutLines().map((l) => { try { return JSON.parse(l); } catch { return null; } }).filter(Boolean);
      for (const r of reqs) {
        const matching = lines.filter((l) => l.request_id === r.id);
        assert.equal(matching.length, 1, `exactly one log line for ${r.id}; stdout:\n${agate.stdout()}`);
        const l = matching[0];
        for (const k of ['time', 'level', 'request_id', 'method', 'path', 'status', 'bytes', 'duration_ms', 'events', 'shard', 'msg']) {
          assert.ok(k in l, `${r.id}: key ${k} missing in ${JSON.stringify(l)}`);
        }
        assert.equal(l.msg, 'request');
        assert.ok(['debug', 'info', 'warn', 'error'].includes(l.level), `${r.id}: level ${l.level}`);
        assert.ok(!Number.isNaN(Date.parse(l.time)), `time ${l.time} parses`);
        assert.equal(l.method, r.method);
        assert.equal(l.path, r.path);
        assert.equal(l.status, r.status);
        assert.equal(typeof l.bytes, 'number');
        assert.ok(l.bytes > 0, `${r.id}: bytes ${l.bytes}`);
        assert.equal(typeof l.duration_ms, 'number');
        assert.ok(l.duration_ms >= 0);
        assert.equal(l.events, r.events, `${r.id}: events`);
        assert.ok(Number.isInteger(l.shard) && l.shard >= 0 && l.shard < 2, `${r.id}: shard ${l.shard}`);
      }
      const run = lines.find((l) => l.request_id === 'log-run');
      const live = lines.find((l) => l.request_id === 'log-live');
      assert.ok(run.bytes > live.bytes, 'a stream counts its bytes');
      assert.ok(flushed, 'log lines reached stdout while agate was running (within 2 s), not only at exit');
    } finally {
      if (!agate.exitInfo) agate.signal('SIGKILL');
    }
  });

  test('a paced run logs its duration', T, async () => {
    const agate = await startAgate({});
    try {
      const r = await streamRun(agate.port, runInput('p q r s t', { forwardedProps: paced(60) }), { headers: { 'X-Request-ID': 'log-paced' } });
      assert.equal(r.statusCode, 200);
      const code = await agate.stop();
      assertCleanExit(agate, code);
      const line = agate.stdoutLines().map((l) => { try { return JSON.parse(l); } catch { return null; } })
        .find((l) => l && l.request_id === 'log-paced');
      assert.ok(line, `log line for log-paced; stdout:\n${agate.stdout()}`);
      assert.ok(line.duration_ms >= 200, `duration_ms ${line.duration_ms} for a ~300 ms stream`);
      assert.equal(line.events, 9);
    } finally {
      if (!agate.exitInfo) agate.signal('SIGKILL');
    }
  });

  test('a client that disconnects mid-stream ends the run (its log line comes at once, with the events sent)', T, async () => {
    const agate = await startAgate({ config: 'log: {requests: true}\n' });
    try {
      const text = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');
      const c = await RawConn.connect(agate.port);
      await c.write(buildRequest({
        method: 'POST', path: '/v1/agents/echo/run', headers: { 'X-Request-ID': 'log-gone' },
        body: runInput(text, { forwardedProps: paced(100) }),
      }));
      assert.ok(await c.waitFor((x) => (x.text.match(/TEXT_MESSAGE_CONTENT/g) || []).length >= 2, 3000), 'stream started');
      c.destroy();
      const tGone = Date.now();
      const line = await waitFor(() => agate.stdoutLines().map((l) => { try { return JSON.parse(l); } catch { return null; } })
        .find((l) => l && l.request_id === 'log-gone'), 2000);
      assert.ok(line, `no log line within 2 s of the disconnect (a 4 s run must end when its client goes); stdout:\n${agate.stdout()}`);
      assert.ok(Date.now() - tGone < 2000);
      assert.ok(line.events >= 4 && line.events < 44, `events ${line.events}: the run stopped early`);
      assert.ok(line.duration_ms < 2500, `duration_ms ${line.duration_ms}`);
      const code = await agate.stop();
      assertCleanExit(agate, code);
    } finally {
      if (!agate.exitInfo) agate.signal('SIGKILL');
    }
  });

  test('log.requests false (AGATE_LOG_REQUESTS=false) turns request lines off', T, async () => {
    const agate = await startAgate({ config: 'log: {requests: true}\n', env: { AGATE_LOG_REQUESTS: 'false' } });
    try {
      const res = await request(agate.port, { path: '/health/live', headers: { 'X-Request-ID': 'log-quiet' } });
      assert.equal(res.statusCode, 200);
      const code = await agate.stop();
      assertCleanExit(agate, code);
      assert.ok(!agate.stdout().includes('log-quiet'), `no request line; stdout:\n${agate.stdout()}`);
    } finally {
      if (!agate.exitInfo) agate.signal('SIGKILL');
    }
  });
});
