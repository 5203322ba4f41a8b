// Response caching and request coalescing (issue 7): a cached proxy agent in
// front of a real @ag-ui/encoder server (lib/agui-server.mjs), whose recorded
// requests count what reached the upstream.
//
// MISS then HIT (event for event the original, with the new request's run ids
// and fresh, consistent message and tool-call ids, checked with @ag-ui/client's
// HttpAgent), TTL expiry, eviction under cache.max_bytes, Cache-Control
// no-cache / no-store, failed runs not cached, 100 identical concurrent
// requests on one upstream run, the cache shared by two shards, a slow
// follower detached, and DELETE /admin/cache.
//
// Over WebSocket (each RunAgentInput message a run, lib/wsclient.mjs): MISS
// then HIT, an HTTP MISS answered to WebSocket, a WebSocket leader with an HTTP
// follower and the reverse, Cache-Control on the upgrade, a failed shared run
// (RUN_ERROR per run, the connection stays), CANCEL of one of two cached runs.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { HttpAgent } from '@ag-ui/client';
import {
  startAgate, stopClean, streamRun, runInput, uid, sleep, request, buildRequest, waitFor,
  parseResponses, parseSSE, vmRssKiB,
} from './lib/harness.mjs';
import { startAguiServer, prettyFrame } from './lib/agui-server.mjs';
import { openRunSocket } from './lib/wsclient.mjs';

const T = { timeout: 60000 };
const flow = (o) => `{${Object.entries(o).map(([k, v]) => `${k}: ${v}`).join(', ')}}`;

function cacheConfig(url, { cache = {}, top = '', stream = {}, shards } = {}) {
  return [
    `stream: ${flow({ drain_timeout: '3s', ...stream })}`,
    top,
    'agents:',
    '  up:',
    '    type: proxy',
    `    endpoints: [${url}]`,
    '    timeouts: {connect: 2s, first_event: 10s, idle: 10s, run: 60s}',
    '    retry: {attempts: 0}',
    `    cache: ${flow({ ttl: '60s', ...cache })}`,
    '  plain:',
    '    type: proxy',
    `    endpoints: [${url}]`,
    '    retry: {attempts: 0}',
  ].filter((l) => l !== '').join('\n') + '\n';
}

async function useServer(t, opts) {
  const srv = await startAguiServer(opts);
  t.after(() => srv.close());
  return srv;
}
async function useAgate(t, opts) {
  const agate = await startAgate(opts);
  t.after(async () => { if (!agate.exitInfo) await agate.stop(5000); });
  return agate;
}

/** A run that exercises every kind of id the cache rewrites. */
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
    { type: 'TOOL_CALL_RESULT', messageId: 'm-2', toolCallId: 'tc-1', content: 'found', role: 'tool' },
    { type: 'STATE_SNAPSHOT', snapshot: { id: 'm-1', messageId: 'keep-me' } },
    { type: 'RUN_FINISHED', threadId, runId },
  ];
}

const post = (agate, input, headers = {}, opts = {}) => streamRun(agate.port, input, { agent: 'up', headers, timeout: 20000, ...opts });
const sameQuestion = (text = 'what is the answer?') => (extra = {}) => runInput(text, {
  messages: [{ id: 'user-1', role: 'user', content: text }], ...extra,
});

async function metrics(agate) {
  const r = await request(agate.adminPort, { path: '/metrics' });
  return r.body.toString('utf8');
}
function metric(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`) && !l.includes('#'));
  return line ? Number(line.split(' ').pop()) : undefined;
}


// An upstream whose runs start and then die 400 ms in (the connection is
// destroyed mid-stream) until heal() is called; then it answers normally.
async function useDoomedServer(t) {
  let fail = true;
  const srv = await useServer(t, {
    script: (rec) => {
      const { threadId, runId } = rec.json;
      if (!fail) return {};
      return { events: [{ type: 'RUN_STARTED', threadId, runId }, { delay: 400 }, { destroy: true }] };
    },
  });
  return { srv, heal: () => { fail = false; } };
}
describe('response cache', () => {
  test('MISS then HIT: the same events with the new run ids and fresh, consistent message/tool ids (HttpAgent)', T, async (t) => {
    const srv = await useServer(t, { script: { events: richRun } });
    const agate = await useAgate(t, { config: cacheConfig(srv.url) });
    const url = `http://127.0.0.1:${agate.port}/v1/agents/up/run`;
    const question = [{ id: 'user-1', role: 'user', content: 'cache me' }];

    const viaClient = async () => {
      const threadId = uid('thread');
      const runId = uid('run');
      const agent = new HttpAgent({ url, threadId, initialMessages: question });
      const events = [];
      const failures = [];
      await agent.runAgent({ runId }, {
        onEvent: ({ event }) => { events.push(event); },
        onRunFailed: ({ error }) => { failures.push(error); },
      });
      assert.deepEqual(failures, []);
      return { threadId, runId, events, agent };
    };
    const miss = await viaClient();
    assert.equal(srv.requests.length, 1);
    const original = srv.requests[0].sent;
    assert.equal(miss.events.length, original.length);
    // the same body again, raw, to see the head
    const first = await post(agate, srv.requests[0].body);
    assert.equal(first.statusCode, 200);
    assert.equal(first.headers['x-cache'], 'HIT');
    assert.match(first.headers.age, /^\d+$/);
    const direct = await post(agate, runInput('cache me', { messages: question }));
    assert.equal(direct.headers['x-cache'], 'MISS', 'without HttpAgent\'s protocolVersion it is another question');
    assert.equal(direct.headers.age, '0');
    assert.equal(srv.requests.length, 2);

    // A HIT through the official client: validated by its verifier, ids rewritten.
    const runs = [await viaClient(), await viaClient()];
    assert.equal(srv.requests.length, 2, 'both hits were answered from memory');
    for (const { threadId, runId, events } of runs) {
      assert.equal(events.length, original.length, 'event for event');
      const ids = new Map();
      const fresh = (orig, got) => {
        if (!ids.has(orig)) ids.set(orig, got);
        assert.equal(got, ids.get(orig), `old id ${orig} always becomes the same new id`);
        assert.notEqual(got, orig, 'a fresh id');
      };
      events.forEach((ev, i) => {
        const o = original[i];
        const { rawEvent, timestamp, ...e } = ev;   // fields HttpAgent may add
        assert.equal(e.type, o.type);
        for (const [k, v] of Object.entries(o)) {
          if (k === 'threadId') assert.equal(e[k], threadId);
          else if (k === 'runId') assert.equal(e[k], runId);
          else if (['messageId', 'toolCallId', 'parentMessageId'].includes(k)) fresh(v, e[k]);
          else assert.deepEqual(e[k], v, `${o.type}.${k} unchanged`);
        }
      });
      assert.equal(ids.size, 3, 'm-1, m-2 and tc-1 each mapped');
      assert.equal(new Set(ids.values()).size, 3, 'to three different new ids');
      assert.equal(events[9].snapshot.id, 'm-1', 'state is the agent\'s data: never rewritten');
    }
    assert.notEqual(runs[0].events[1].messageId, runs[1].events[1].messageId, 'each hit mints its own ids');

    const m = await metrics(agate);
    assert.equal(metric(m, 'agate_cache_requests_total{agent="up",result="hit"}'), 3);
    assert.equal(metric(m, 'agate_cache_requests_total{agent="up",result="miss"}'), 2);
    assert.equal(metric(m, 'agate_cache_entries'), 2);
    // One key per request; each shard's memo answers a body it has keyed before.
    // Four of the five asked the same question, over two shards: at least one
    // asked it again on a shard that had it (even if the other key took its slot).
    const memo = (result) => metric(m, `agate_cache_key_memo_total{agent="up",result="${result}"}`);
    assert.equal(memo('hit') + memo('miss'), 5);
    assert.equal(memo('too_large'), 0);
    assert.ok(memo('hit') >= 1, `memo hits: ${memo('hit')}`);
    await stopClean(agate);
  });

  test('ttl: an entry expires and the next request goes upstream again', T, async (t) => {
    const srv = await useServer(t, {});
    const agate = await useAgate(t, { config: cacheConfig(srv.url, { cache: { ttl: '1s' } }) });
    const q = sameQuestion();
    assert.equal((await post(agate, q())).headers['x-cache'], 'MISS');
    assert.equal((await post(agate, q())).headers['x-cache'], 'HIT');
    await sleep(1300);
    const again = await post(agate, q());
    assert.equal(again.headers['x-cache'], 'MISS');
    assert.equal(srv.requests.length, 2);
    assert.ok(metric(await metrics(agate), 'agate_cache_expirations_total') >= 1);
    await stopClean(agate);
  });

  // A key holding U+0000 is valid JSON (JSON.parse reads it); agate refused such
  // a body (400) and could not make its cache key.
  test('U+0000 in request and event keys: MISS, HIT on the same body, MISS on another; the events replayed as stored', T, async (t) => {
    const srv = await useServer(t, {
      script: (rec) => ({ events: [...richRun(rec.json).slice(0, -1), { type: 'CUSTOM', name: 'k', value: { '\u0000': rec.json.state } }, richRun(rec.json).at(-1)] }),
    });
    const agate = await useAgate(t, { config: cacheConfig(srv.url) });
    const q = sameQuestion('nul keys');
    const miss = await post(agate, q({ state: { '\u0000': 1, 'a\u0000': { '\u0000': [2] } } }));
    assert.equal(miss.statusCode, 200, miss.text);
    assert.equal(miss.headers['x-cache'], 'MISS');
    const input = q({ state: { 'a\u0000': { '\u0000': [2] }, '\u0000': 1 } });   // the same meaning, keys reordered
    const hit = await post(agate, input);
    assert.equal(hit.headers['x-cache'], 'HIT');
    assert.deepEqual(hit.events.at(-2), { type: 'CUSTOM', name: 'k', value: { '\u0000': { '\u0000': 1, 'a\u0000': { '\u0000': [2] } } } });
    assert.equal(hit.events.at(-1).runId, input.runId);
    const other = await post(agate, q({ state: { '\u0000\u0000': 1, 'a\u0000': { '\u0000': [2] } } }));
    assert.equal(other.headers['x-cache'], 'MISS', 'another key is another body');
    assert.equal(srv.requests.length, 2);
    await stopClean(agate);
  });

  // The store notes which events hold a line feed, so a replay splits only those.
  // A HIT that fits the stream buffer is rendered whole from the entry's plan;
  // one that does not goes a stretch of records at a time, and an event with a
  // line feed is handed to the sink on its own.
  const replays = [['whole, from the plan', {}], ['record by record', { buffer: '100B' }]];
  for (const [how, stream] of replays) test(`a HIT replays multi-line (pretty-printed) events as multi-line data, one-line ones as one line (${how})`, T, async (t) => {
    const q = sameQuestion('pretty please');
    const srv = await useServer(t, {
      script: (rec) => {
        const evs = richRun(rec.json);
        return { events: evs.map((e, i) => (i === 2 || i === 9 ? { pretty: e } : e)) };
      },
    });
    const agate = await useAgate(t, { config: cacheConfig(srv.url, { stream }) });
    const miss = await post(agate, q());
    assert.equal(miss.headers['x-cache'], 'MISS');
    const input = q();
    const hit = await post(agate, input);
    assert.equal(hit.headers['x-cache'], 'HIT');
    assert.equal(srv.requests.length, 1);
    for (const r of [miss, hit]) {
      const frames = r.frames.filter((f) => f.data !== null);
      assert.equal(frames.length, 11);
      const multi = frames.map((f, i) => (f.data.includes('\n') ? i : -1)).filter((i) => i >= 0);
      assert.deepEqual(multi, [2, 9], 'exactly the pretty events are multi-line');
    }
    assert.deepEqual(hit.events[2], miss.events[2] && { ...miss.events[2], messageId: hit.events[1].messageId });
    assert.deepEqual(hit.events[9], miss.events[9], 'STATE_SNAPSHOT is replayed as stored');
    assert.ok(hit.text.includes(prettyFrame(hit.events[9])), 'its frame is the pretty one, line for line');
    assert.equal(hit.events[0].runId, input.runId);
    await stopClean(agate);
  });

  test('eviction keeps the cache under cache.max_bytes', T, async (t) => {
    // ~20 KiB runs; a 128 KiB cap holds a few (one entry may use at most a quarter).
    const big = (input) => {
      const { threadId, runId } = input;
      const text = input.messages[0].content;
      return [
        { type: 'RUN_STARTED', threadId, runId },
        { type: 'TEXT_MESSAGE_START', messageId: 'm', role: 'assistant' },
        ...Array.from({ length: 20 }, () => ({ type: 'TEXT_MESSAGE_CONTENT', messageId: 'm', delta: `${text} `.repeat(100).slice(0, 1000) })),
        { type: 'TEXT_MESSAGE_END', messageId: 'm' },
        { type: 'RUN_FINISHED', threadId, runId },
      ];
    };
    const srv = await useServer(t, { script: { events: big } });
    const agate = await useAgate(t, { config: cacheConfig(srv.url, { top: 'cache: {max_bytes: 128KiB}' }) });
    for (let i = 0; i < 12; i++) {
      const r = await post(agate, sameQuestion(`question ${i}`)());
      assert.equal(r.headers['x-cache'], 'MISS');
      assert.equal(r.events.length, 24);
    }
    const m = await metrics(agate);
    const bytes = metric(m, 'agate_cache_bytes');
    assert.ok(bytes <= 128 * 1024, `cache holds ${bytes} bytes, cap 131072`);
    assert.ok(metric(m, 'agate_cache_evictions_total') >= 5, `older entries were evicted: ${m.split('\n').filter((l) => l.startsWith('agate_cache')).join(' ')}`);
    assert.ok(metric(m, 'agate_cache_entries') >= 3);
    // The newest is still there; the oldest is gone.
    assert.equal((await post(agate, sameQuestion('question 11')())).headers['x-cache'], 'HIT');
    assert.equal((await post(agate, sameQuestion('question 0')())).headers['x-cache'], 'MISS');
    await stopClean(agate);
  });

  test('Cache-Control: no-cache skips the lookup but stores; no-store skips both', T, async (t) => {
    const srv = await useServer(t, {});
    const agate = await useAgate(t, { config: cacheConfig(srv.url) });
    const q = sameQuestion();
    assert.equal((await post(agate, q(), { 'Cache-Control': 'no-store' })).headers['x-cache'], 'MISS');
    assert.equal((await post(agate, q())).headers['x-cache'], 'MISS', 'no-store stored nothing');
    assert.equal((await post(agate, q())).headers['x-cache'], 'HIT');
    assert.equal((await post(agate, q(), { 'Cache-Control': 'max-age=0, no-cache' })).headers['x-cache'], 'MISS');
    assert.equal((await post(agate, q(), { 'Cache-Control': 'no-store' })).headers['x-cache'], 'MISS');
    assert.equal(srv.requests.length, 4);
    const hit = await post(agate, q());
    assert.equal(hit.headers['x-cache'], 'HIT');
    assert.equal(srv.requests.length, 4);
    // threadId/runId are not part of the key, a different question is
    assert.equal((await post(agate, sameQuestion('another')())).headers['x-cache'], 'MISS');
    // an agent without a cache says nothing
    const plain = await streamRun(agate.port, q(), { agent: 'plain' });
    assert.equal(plain.headers['x-cache'], undefined);
    await stopClean(agate);
  });

  test('failed runs are not cached: an upstream RUN_ERROR, a broken stream, an HTTP error', T, async (t) => {
    let mode = 'run_error';
    const srv = await useServer(t, {
      script: (rec) => {
        const { threadId, runId } = rec.json;
        if (mode === 'run_error') return { events: [{ type: 'RUN_STARTED', threadId, runId }, { type: 'RUN_ERROR', message: 'model overloaded' }] };
        if (mode === 'cut') return { events: [{ type: 'RUN_STARTED', threadId, runId }, { destroy: true }] };
        if (mode === 'status') return { mode: 'status', status: 500 };
        return {};
      },
    });
    const agate = await useAgate(t, { config: cacheConfig(srv.url) });
    const q = sameQuestion();
    for (const m of ['run_error', 'run_error', 'cut', 'status']) {
      mode = m;
      const r = await post(agate, q());
      assert.notEqual(r.headers['x-cache'], 'HIT', `${m}: not from the cache`);
    }
    assert.equal(srv.requests.length, 4);
    mode = 'ok';
    assert.equal((await post(agate, q())).headers['x-cache'], 'MISS');
    assert.equal((await post(agate, q())).headers['x-cache'], 'HIT');
    await stopClean(agate);
  });

  test('100 identical concurrent requests: one upstream run, everyone gets it all with their own run ids', T, async (t) => {
    const srv = await useServer(t, { script: { events: richRun, interval: 40 } });
    const agate = await useAgate(t, { config: cacheConfig(srv.url) });
    const inputs = Array.from({ length: 100 }, () => sameQuestion('together')());
    const results = await Promise.all(inputs.map((inp) => post(agate, inp, {}, { timeout: 30000 })));
    assert.equal(srv.requests.length, 1, 'exactly one upstream request');
    const verdicts = { MISS: 0, COALESCED: 0, HIT: 0 };
    results.forEach((r, i) => {
      assert.equal(r.statusCode, 200);
      assert.ok(r.complete, 'the stream ended properly');
      verdicts[r.headers['x-cache']]++;
      assert.equal(r.events.length, 11, `client ${i} got every event`);
      assert.deepEqual(r.events.map((e) => e.type), srv.requests[0].sent.map((e) => e.type));
      assert.equal(r.events[0].runId, inputs[i].runId);
      assert.equal(r.events[0].threadId, inputs[i].threadId);
      assert.equal(r.events[10].runId, inputs[i].runId);
    });
    assert.equal(verdicts.MISS, 1, JSON.stringify(verdicts));
    assert.ok(verdicts.COALESCED >= 50, `most joined the run in flight: ${JSON.stringify(verdicts)}`);
    const m = await metrics(agate);
    assert.equal(metric(m, 'agate_cache_requests_total{agent="up",result="coalesced"}'), verdicts.COALESCED);
    await stopClean(agate);
  });

  test('upstream failure mid-run: every coalesced client gets the RUN_ERROR, nothing is cached', T, async (t) => {
    const doomed = await useDoomedServer(t);
    const srv = doomed.srv;
    const agate = await useAgate(t, { config: cacheConfig(srv.url) });
    const q = sameQuestion('doomed');
    const results = await Promise.all(Array.from({ length: 10 }, () => post(agate, q())));
    assert.equal(srv.requests.length, 1);
    for (const r of results) {
      const last = r.events[r.events.length - 1];
      assert.equal(last.type, 'RUN_ERROR', JSON.stringify(r.events));
    }
    assert.ok(results.filter((r) => r.headers['x-cache'] === 'COALESCED').length >= 5);
    doomed.heal();
    assert.equal((await post(agate, q())).headers['x-cache'], 'MISS', 'nothing was cached');
    await stopClean(agate);
  });

  test('a shared run whose upstream breaks the protocol after its own RUN_ERROR: every client gets that RUN_ERROR once, nothing is cached', T, async (t) => {
    let broken = true;
    const srv = await useServer(t, {
      script: (rec) => {
        const { threadId, runId } = rec.json;
        if (!broken) return {};
        return { events: [{ type: 'RUN_STARTED', threadId, runId }, { delay: 400 }, { type: 'RUN_ERROR', message: 'model overloaded', code: 'E_UP' },
          { delay: 100 }, { type: 'TEXT_MESSAGE_CONTENT', messageId: 'late', delta: 'x' }, { hold: true }] };
      },
    });
    const agate = await useAgate(t, { config: cacheConfig(srv.url) });
    const q = sameQuestion('broken after error');
    const results = await Promise.all(Array.from({ length: 6 }, () => post(agate, q())));
    assert.equal(srv.requests.length, 1);
    for (const r of results) {
      assert.ok(r.complete, 'the stream ended');
      assert.deepEqual(r.events.map((e) => e.type), ['RUN_STARTED', 'RUN_ERROR'], `${r.headers['x-cache']}: ${JSON.stringify(r.events)}`);
      assert.equal(r.events[1].code, 'E_UP', 'the upstream\'s own RUN_ERROR');
    }
    assert.ok(results.filter((r) => r.headers['x-cache'] === 'COALESCED').length >= 3);
    broken = false;
    assert.equal((await post(agate, q())).headers['x-cache'], 'MISS', 'nothing was cached');
    await stopClean(agate);
  });

  test('the cache is shared by the shards: hits served by both', T, async (t) => {
    const srv = await useServer(t, {});
    const agate = await useAgate(t, { config: cacheConfig(srv.url), env: { AGATE_SHARDS: '2' } });
    const q = sameQuestion();
    assert.equal((await post(agate, q())).headers['x-cache'], 'MISS');
    const seen = new Set();
    for (let i = 0; i < 40 && seen.size < 2; i++) {
      const r = await post(agate, q());
      assert.equal(r.headers['x-cache'], 'HIT');
      await waitFor(() => agate.stdoutLines().some((l) => l.includes(r.headers['x-request-id'])), 2000);
      const line = agate.stdoutLines().find((l) => l.includes(r.headers['x-request-id']));
      seen.add(JSON.parse(line).shard);
    }
    assert.deepEqual([...seen].sort(), [0, 1], 'hits on shard 0 and shard 1');
    assert.equal(srv.requests.length, 1);
    await stopClean(agate);
  });

  test('a slow coalesced client is detached with a RUN_ERROR; the others finish', T, async (t) => {
    // 24 MB of events: more than the kernel buffers hold for a client that reads nothing.
    // Paced by the upstream (a step per ms), so a reading client keeps up whatever
    // the kernel's socket buffers do, and only the one that stops falls behind.
    const pad = 'x'.repeat(8000);
    const flood = ({ threadId, runId }) => [
      { type: 'RUN_STARTED', threadId, runId },
      { type: 'TEXT_MESSAGE_START', messageId: 'm', role: 'assistant' },
      ...Array.from({ length: 3000 }, (_, i) => ({ type: 'TEXT_MESSAGE_CONTENT', messageId: 'm', delta: `${i}:${pad}` })),
      { type: 'TEXT_MESSAGE_END', messageId: 'm' },
      { type: 'RUN_FINISHED', threadId, runId },
    ];
    const srv = await useServer(t, { script: { events: flood, interval: 1 } });
    const agate = await useAgate(t, {
      config: cacheConfig(srv.url, { cache: { max_lag: '4MiB', max_entry: '64MiB' }, stream: { buffer: '64KiB' } }),
    });
    const body = () => JSON.stringify(sameQuestion('flood')());
    // Reads a whole response with no per-chunk parsing (a 24 MB stream).
    const bulk = (port, { paused = false } = {}) => new Promise((resolve, reject) => {
      const sock = net.connect(port, '127.0.0.1');
      const chunks = [];
      sock.on('connect', () => {
        if (paused) sock.pause();
        sock.write(buildRequest({
          method: 'POST', path: '/v1/agents/up/run',
          headers: { 'Content-Type': 'application/json', Connection: 'close' }, body: body(),
        }));
      });
      sock.on('data', (d) => chunks.push(d));
      sock.on('error', reject);
      sock.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
      bulk.socks.push(sock);
    });
    bulk.socks = [];
    const summary = (text) => ({
      cache: /\r\nX-Cache: (\w+)/i.exec(text)?.[1],
      events: (text.match(/\ndata: /g) ?? []).length + (text.includes('\r\n\r\ndata: ') ? 0 : 0),
      finished: text.includes('"RUN_FINISHED"'),
      detached: text.includes('client_too_slow'),
    });
    const leader = bulk(agate.port);
    await srv.waitRequests(1);
    const slow = bulk(agate.port, { paused: true });
    await sleep(50);
    const fast = bulk(agate.port);
    const [l, f] = (await Promise.all([leader, fast])).map(summary);
    assert.equal(l.cache, 'MISS');
    assert.ok(l.finished && f.finished, `the leader and the fast follower got the whole run: ${JSON.stringify([l, f])}`);
    assert.equal(f.cache, 'COALESCED');
    assert.ok(await waitFor(async () => metric(await metrics(agate), 'agate_cache_followers_detached_total{agent="up"}') === 1, 10000),
      'the slow follower was detached');
    bulk.socks[1].resume();
    const s = summary(await slow);
    assert.equal(s.cache, 'COALESCED');
    assert.ok(s.detached, 'its stream ends with RUN_ERROR client_too_slow');
    assert.ok(!s.finished);
    assert.equal(srv.requests.length, 1);
    await stopClean(agate);
  });

  test('a HIT bigger than the stream buffer, to a client that stops reading: memory bounded, every event in order', T, async (t) => {
    // A replay renders stored events into the connection's buffer many at a
    // time, but only up to stream.buffer: the rest waits for the client to read.
    const COUNT = 6000;
    const pad = 'x'.repeat(4000);   // ~24 MB stored
    const flood = ({ threadId, runId }) => [
      { type: 'RUN_STARTED', threadId, runId },
      { type: 'TEXT_MESSAGE_START', messageId: 'm', role: 'assistant' },
      ...Array.from({ length: COUNT }, (_, i) => ({ type: 'TEXT_MESSAGE_CONTENT', messageId: 'm', delta: `${i}:${pad}` })),
      { type: 'TEXT_MESSAGE_END', messageId: 'm' },
      { type: 'RUN_FINISHED', threadId, runId },
    ];
    const srv = await useServer(t, { script: { events: flood } });
    const agate = await useAgate(t, {
      config: cacheConfig(srv.url, { top: 'cache: {max_bytes: 256MiB}', cache: { max_entry: '64MiB' }, stream: { buffer: '16KiB' } }),
    });
    const open = (input, paused) => {
      const sock = net.connect(agate.port, '127.0.0.1');
      const chunks = [];
      sock.on('connect', () => {
        if (paused) sock.pause();
        sock.write(buildRequest({
          method: 'POST', path: '/v1/agents/up/run',
          headers: { 'Content-Type': 'application/json', Connection: 'close' }, body: JSON.stringify(input),
        }));
      });
      sock.on('data', (d) => chunks.push(d));
      const done = new Promise((resolve, reject) => {
        sock.on('error', reject);
        sock.on('close', () => resolve(parseResponses(Buffer.concat(chunks), { methods: ['POST'] }).responses[0]));
      });
      return { sock, done };
    };
    const q = sameQuestion('a long answer');
    const miss = await open(q(), false).done;
    assert.equal(miss.headers['x-cache'], 'MISS');
    await sleep(200);
    const rss0 = vmRssKiB(agate.pid);

    const input = q();
    const hit = open(input, true);
    let rssMax = 0;
    for (const end = Date.now() + 1000; Date.now() < end;) {
      rssMax = Math.max(rssMax, vmRssKiB(agate.pid));
      await sleep(50);
    }
    const growthMiB = (rssMax - rss0) / 1024;
    t.diagnostic(`agate RSS ${(rss0 / 1024).toFixed(1)} -> ${(rssMax / 1024).toFixed(1)} MiB while the HIT's client read nothing`);
    assert.ok(growthMiB < 12, `agate's RSS grew by ${growthMiB.toFixed(1)} MiB: the replay did not stop at the buffer bound`);

    hit.sock.resume();
    const res = await hit.done;
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['x-cache'], 'HIT');
    const events = parseSSE(res.body.toString('utf8')).frames.filter((f) => f.data !== null).map((f) => JSON.parse(f.data));
    assert.equal(events.length, COUNT + 4);
    assert.deepEqual([events[0].threadId, events[0].runId], [input.threadId, input.runId]);
    assert.equal(events.at(-1).type, 'RUN_FINISHED');
    const mid = events[1].messageId;
    assert.notEqual(mid, 'm', 'a fresh message id');
    let bad = null;
    for (let i = 0; i < COUNT && !bad; i++) {
      const e = events[i + 2];
      if (e.type !== 'TEXT_MESSAGE_CONTENT' || e.messageId !== mid || e.delta !== `${i}:${pad}`) bad = `event ${i + 2}: ${JSON.stringify(e).slice(0, 80)}`;
    }
    assert.equal(bad, null, bad);
    assert.equal(srv.requests.length, 1);
    // Counted per event, whether relayed (the MISS) or replayed many at a time (the HIT).
    const m = await metrics(agate);
    assert.equal(metric(m, 'agate_events_sent_total{type="TEXT_MESSAGE_CONTENT"}'), 2 * COUNT);
    assert.equal(metric(m, 'agate_events_sent_total{type="RUN_FINISHED"}'), 2);
    assert.equal(metric(m, 'agate_run_first_event_seconds_count{agent="up"}'), 2);
    assert.equal(metric(m, 'agate_run_event_gap_seconds_count{agent="up"}'), 2 * (COUNT + 3));
    await stopClean(agate);
  });

  test('DELETE /admin/cache drops every entry, or one agent\'s', T, async (t) => {
    const srv = await useServer(t, {});
    const agate = await useAgate(t, { config: cacheConfig(srv.url) });
    const q = sameQuestion();
    await post(agate, q());
    assert.equal((await post(agate, q())).headers['x-cache'], 'HIT');
    let r = await request(agate.adminPort, { method: 'DELETE', path: '/admin/cache?agent=plain' });
    assert.equal(r.statusCode, 200);
    assert.deepEqual(JSON.parse(r.body.toString()), { purged: 0 });
    assert.equal((await post(agate, q())).headers['x-cache'], 'HIT');
    r = await request(agate.adminPort, { method: 'DELETE', path: '/admin/cache?agent=up' });
    assert.deepEqual(JSON.parse(r.body.toString()), { purged: 1 });
    assert.equal((await post(agate, q())).headers['x-cache'], 'MISS');
    r = await request(agate.adminPort, { method: 'DELETE', path: '/admin/cache' });
    assert.deepEqual(JSON.parse(r.body.toString()), { purged: 1 });
    assert.equal((await post(agate, q())).headers['x-cache'], 'MISS');
    r = await request(agate.adminPort, { method: 'DELETE', path: '/admin/cache?agent=nope' });
    assert.equal(r.statusCode, 404);
    r = await request(agate.port, { method: 'DELETE', path: '/admin/cache' });
    assert.equal(r.statusCode, 404, 'not on the main listener');
    await stopClean(agate);
  });
});

// ---------------------------------------------------------------------------
// WebSocket runs

async function useWs(t, agate, opts = {}) {
  const ws = await openRunSocket(agate.port, { agent: 'up', ...opts });
  t.after(() => ws.terminate());
  return ws;
}

/**
 * Asserts that `events` (a WebSocket run's, or an SSE run's) are `original` (the
 * upstream's events) event for event, with threadId/runId those of the replaying
 * run and every message/tool-call id fresh and consistent. A WebSocket frame may
 * carry the extra "runId" member agate adds. Returns the id map.
 */
function assertReplayOf(events, original, { threadId, runId }) {
  assert.equal(events.length, original.length, `event for event: ${JSON.stringify(events.map((e) => e.type))}`);
  const ids = new Map();
  events.forEach((e, i) => {
    const o = original[i];
    assert.equal(e.type, o.type);
    for (const [k, v] of Object.entries(o)) {
      if (k === 'threadId') assert.equal(e[k], threadId);
      else if (k === 'runId') assert.equal(e[k], runId);
      else if (['messageId', 'toolCallId', 'parentMessageId'].includes(k)) {
        if (!ids.has(v)) ids.set(v, e[k]);
        assert.equal(e[k], ids.get(v), `old id ${v} always becomes the same new id`);
        assert.notEqual(e[k], v, `${o.type}.${k}: a fresh id`);
      } else assert.deepEqual(e[k], v, `${o.type}.${k} unchanged`);
    }
    const extra = Object.keys(e).filter((k) => !(k in o));
    assert.ok(extra.every((k) => k === 'runId'), `${o.type}: only runId added, got ${extra}`);
    if ('runId' in e) assert.equal(e.runId, runId);
  });
  return ids;
}

/** The log line of a WebSocket run (msg "run"), once the log thread wrote it. */
async function runLine(agate, runId) {
  const find = () => agate.stdoutLines().map((l) => { try { return JSON.parse(l); } catch { return {}; } })
    .find((j) => j.msg === 'run' && j.run_id === runId);
  const line = await waitFor(find, 3000);
  assert.ok(line, `no run log line for ${runId}`);
  return line;
}
async function requestLine(agate, requestId) {
  const find = () => agate.stdoutLines().map((l) => { try { return JSON.parse(l); } catch { return {}; } })
    .find((j) => j.msg === 'request' && j.request_id === requestId);
  const line = await waitFor(find, 3000);
  assert.ok(line, `no request log line for ${requestId}`);
  return line;
}

const cacheCount = (m, result) => metric(m, `agate_cache_requests_total{agent="up",result="${result}"}`);

describe('response cache over WebSocket', () => {
  test('WS MISS then WS HIT: the same events with the new run ids and fresh ids, one upstream request', T, async (t) => {
    const srv = await useServer(t, { script: { events: richRun } });
    const agate = await useAgate(t, { config: cacheConfig(srv.url) });
    const ws = await useWs(t, agate);
    const q = sameQuestion('ws question');

    const first = q();
    const missEvents = await ws.run(first);
    assert.equal(srv.requests.length, 1);
    const original = srv.requests[0].sent;
    assert.equal(missEvents[missEvents.length - 1].type, 'RUN_FINISHED');
    assert.equal((await runLine(agate, first.runId)).cache, 'MISS');

    const second = q();
    const hitEvents = await ws.run(second);
    assert.equal(srv.requests.length, 1, 'the second run was answered from the cache');
    const ids = assertReplayOf(hitEvents, original, second);
    assert.equal(ids.size, 3, 'm-1, m-2 and tc-1 each mapped');
    // event for event the MISS run's frames, but for the ids
    hitEvents.forEach((e, i) => {
      const m = missEvents[i];
      assert.deepEqual(Object.keys(e).sort(), Object.keys(m).sort(), `${e.type}: same members`);
      assert.equal(m.runId, first.runId);
    });
    assert.equal(hitEvents[9].snapshot.id, 'm-1', 'state is never rewritten');
    const line = await runLine(agate, second.runId);
    assert.equal(line.cache, 'HIT');
    assert.equal(line.outcome, 'finished');
    assert.equal(line.events, original.length);
    assert.equal(line.transport, 'ws');

    const third = q();
    const again = await ws.run(third);
    assert.notEqual(again[1].messageId, hitEvents[1].messageId, 'each hit mints its own ids');
    assert.equal(srv.requests.length, 1);
    const m = await metrics(agate);
    assert.equal(cacheCount(m, 'hit'), 2, 'WebSocket hits are counted');
    assert.equal(cacheCount(m, 'miss'), 1);
    assert.equal(ws.readyState, 1, 'the connection stays open');
    await ws.closeClean();
    await stopClean(agate);
  });

  test('HTTP MISS then WS HIT', T, async (t) => {
    const srv = await useServer(t, { script: { events: richRun } });
    const agate = await useAgate(t, { config: cacheConfig(srv.url) });
    const q = sameQuestion('asked over http');
    const miss = await post(agate, q(), { 'X-Request-ID': 'http-miss' });
    assert.equal(miss.headers['x-cache'], 'MISS');
    assert.equal((await requestLine(agate, 'http-miss')).cache, 'MISS', 'the request line says it too');
    const ws = await useWs(t, agate);
    const input = q();
    const events = await ws.run(input);
    assert.equal(srv.requests.length, 1, 'answered from the cache');
    assertReplayOf(events, srv.requests[0].sent, input);
    assert.equal((await runLine(agate, input.runId)).cache, 'HIT');
    assert.equal(cacheCount(await metrics(agate), 'hit'), 1);
    await ws.closeClean();
    await stopClean(agate);
  });

  test('a WS leader and an HTTP follower share one upstream run', T, async (t) => {
    const srv = await useServer(t, { script: { events: richRun, interval: 100 } });
    const agate = await useAgate(t, { config: cacheConfig(srv.url) });
    const ws = await useWs(t, agate);
    const q = sameQuestion('shared from ws');
    const lead = q();
    ws.sendJson(lead);
    assert.ok(await srv.waitRequests(1));
    assert.ok(await ws.until(() => ws.runEvents(lead.runId).length >= 1), 'the leader is streaming');
    const follower = q();
    const http = await post(agate, follower);
    assert.equal(http.headers['x-cache'], 'COALESCED');
    assert.ok(http.complete);
    assertReplayOf(http.events, srv.requests[0].sent, follower);
    const events = await ws.waitRun(lead.runId);
    assert.equal(events[events.length - 1].type, 'RUN_FINISHED');
    assert.equal(events.length, 11);
    assert.equal(srv.requests.length, 1, 'exactly one upstream request');
    assert.equal((await runLine(agate, lead.runId)).cache, 'MISS');
    const m = await metrics(agate);
    assert.equal(cacheCount(m, 'coalesced'), 1);
    assert.equal(cacheCount(m, 'miss'), 1);
    await ws.closeClean();
    await stopClean(agate);
  });

  test('an HTTP leader and WS followers (two on one connection) share one upstream run', T, async (t) => {
    const srv = await useServer(t, { script: { events: richRun, interval: 100 } });
    const agate = await useAgate(t, { config: cacheConfig(srv.url) });
    const q = sameQuestion('shared from http');
    const leader = post(agate, q());
    assert.ok(await srv.waitRequests(1));
    await sleep(150);   // the leader's first events are out: the followers replay them, then follow
    const ws = await useWs(t, agate);
    const a = q();
    const b = q();
    ws.sendJson(a);
    ws.sendJson(b);
    const [ea, eb] = await Promise.all([ws.waitRun(a.runId), ws.waitRun(b.runId)]);
    const original = srv.requests[0].sent;
    const ida = assertReplayOf(ea, original, a);
    const idb = assertReplayOf(eb, original, b);
    assert.notEqual(ida.get('m-1'), idb.get('m-1'), 'each follower has its own ids');
    const l = await leader;
    assert.equal(l.headers['x-cache'], 'MISS');
    assert.equal(l.events.length, 11);
    assert.equal(srv.requests.length, 1, 'exactly one upstream request');
    assert.equal((await runLine(agate, a.runId)).cache, 'COALESCED');
    assert.equal((await runLine(agate, b.runId)).cache, 'COALESCED');
    assert.equal(cacheCount(await metrics(agate), 'coalesced'), 2);
    await ws.closeClean();
    await stopClean(agate);
  });

  test('Cache-Control on the upgrade request: no-store for every run on the connection, no-cache stores', T, async (t) => {
    const srv = await useServer(t, {});
    const agate = await useAgate(t, { config: cacheConfig(srv.url) });
    const q = sameQuestion('fresh please');
    const noStore = await useWs(t, agate, { headers: { 'Cache-Control': 'no-store' } });
    for (let i = 0; i < 2; i++) {
      const input = q();
      const events = await noStore.run(input);
      assert.equal(events[events.length - 1].type, 'RUN_FINISHED');
      assert.equal((await runLine(agate, input.runId)).cache, 'MISS');
    }
    assert.equal(srv.requests.length, 2, 'no-store: neither looked up nor stored');
    const plain = await useWs(t, agate);
    const p1 = q();
    await plain.run(p1);
    assert.equal((await runLine(agate, p1.runId)).cache, 'MISS', 'nothing was stored by the no-store runs');
    assert.equal(srv.requests.length, 3);
    const noCache = await useWs(t, agate, { headers: { 'Cache-Control': 'max-age=0, no-cache' } });
    const nc = q();
    await noCache.run(nc);
    assert.equal((await runLine(agate, nc.runId)).cache, 'MISS', 'no-cache: not looked up');
    assert.equal(srv.requests.length, 4);
    const p2 = q();
    await plain.run(p2);
    assert.equal((await runLine(agate, p2.runId)).cache, 'HIT');
    assert.equal(srv.requests.length, 4);
    const m = await metrics(agate);
    assert.equal(cacheCount(m, 'miss'), 4);
    assert.equal(cacheCount(m, 'hit'), 1);
    for (const ws of [noStore, plain, noCache]) await ws.closeClean();
    await stopClean(agate);
  });

  test('a failed shared run: each WS run gets its RUN_ERROR, the connections stay open, nothing is cached', T, async (t) => {
    const doomed = await useDoomedServer(t);
    const srv = doomed.srv;
    const agate = await useAgate(t, { config: cacheConfig(srv.url) });
    const q = sameQuestion('doomed over ws');
    const one = await useWs(t, agate);
    const two = await useWs(t, agate);
    const lead = q();
    one.sendJson(lead);
    assert.ok(await srv.waitRequests(1));
    const followers = [q(), q(), q()];
    one.sendJson(followers[0]);
    two.sendJson(followers[1]);
    two.sendJson(followers[2]);
    const runs = await Promise.all([
      one.waitRun(lead.runId), one.waitRun(followers[0].runId), two.waitRun(followers[1].runId), two.waitRun(followers[2].runId),
    ]);
    assert.equal(srv.requests.length, 1);
    for (const events of runs) {
      const last = events[events.length - 1];
      assert.equal(last.type, 'RUN_ERROR', JSON.stringify(events));
      assert.equal(events[0].type, 'RUN_STARTED', 'the shared part came first');
    }
    for (const f of followers) assert.equal((await runLine(agate, f.runId)).cache, 'COALESCED');
    assert.equal((await runLine(agate, followers[0].runId)).outcome, 'error');
    assert.equal(one.readyState, 1);
    assert.equal(two.readyState, 1);
    doomed.heal();
    const next = q();
    const ok = await two.run(next);
    assert.equal(ok[ok.length - 1].type, 'RUN_FINISHED', 'the connection still runs');
    assert.equal((await runLine(agate, next.runId)).cache, 'MISS', 'nothing was cached');
    assert.equal(srv.requests.length, 2);
    await one.closeClean();
    await two.closeClean();
    await stopClean(agate);
  });

  test('a WS follower that falls behind is detached with a RUN_ERROR; its connection stays open', T, async (t) => {
    const srv = await useServer(t, { script: { mode: 'huge', huge: { count: 2000, size: 4000 } } });   // ~8 MB
    const agate = await useAgate(t, {
      config: cacheConfig(srv.url, { cache: { max_lag: '256KiB', max_entry: '64MiB' }, stream: { buffer: '64KiB' } }),
    });
    const q = sameQuestion('flood over ws');
    const leader = await useWs(t, agate);
    const slow = await useWs(t, agate);
    const lead = q();
    leader.sendJson(lead);
    assert.ok(await srv.waitRequests(1));
    slow._socket.pause();   // reads nothing: the kernel buffers fill, then agate's, then it lags
    const follower = q();
    slow.sendJson(follower);
    const le = await leader.waitRun(lead.runId, 30000);
    assert.equal(le[le.length - 1].type, 'RUN_FINISHED', 'the leader is not held back');
    assert.ok(await waitFor(async () => metric(await metrics(agate), 'agate_cache_followers_detached_total{agent="up"}') === 1, 10000),
      'the slow follower was detached');
    slow._socket.resume();
    const fe = await slow.waitRun(follower.runId, 30000);
    assert.equal(fe[fe.length - 1].type, 'RUN_ERROR');
    assert.equal(fe[fe.length - 1].code, 'client_too_slow');
    assert.ok(fe.length < le.length, 'it did not get the whole run');
    assert.equal((await runLine(agate, follower.runId)).cache, 'COALESCED');
    assert.equal(slow.readyState, 1, 'the connection stays open');
    const next = q();
    const hit = await slow.run(next, 30000);
    assert.equal(hit[hit.length - 1].type, 'RUN_FINISHED', 'and runs the next run (from the cache)');
    assert.equal((await runLine(agate, next.runId)).cache, 'HIT');
    assert.equal(srv.requests.length, 1);
    await leader.closeClean();
    await slow.closeClean();
    await stopClean(agate);
  });

  test('CANCEL of one of two concurrent cached runs on a connection stops only that one (COALESCED and HIT)', T, async (t) => {
    const srv = await useServer(t, { script: { events: richRun, interval: 100 } });
    const agate = await useAgate(t, { config: cacheConfig(srv.url, { cache: { pace: true } }) });
    const ws = await useWs(t, agate);
    const q = sameQuestion('cancel one');

    // A leader and a follower on one connection: cancel the follower.
    const lead = q();
    const follower = q();
    ws.sendJson(lead);
    assert.ok(await srv.waitRequests(1));
    ws.sendJson(follower);
    assert.ok(await ws.until(() => ws.runEvents(follower.runId).length >= 2), 'the follower is streaming');
    ws.cancel(follower.runId);
    const fe = await ws.waitRun(follower.runId);
    assert.equal(fe[fe.length - 1].code, 'cancelled');
    const le = await ws.waitRun(lead.runId);
    assert.equal(le[le.length - 1].type, 'RUN_FINISHED', 'the leader ran on');
    assert.equal(le.length, 11);
    assert.equal(ws.runEvents(follower.runId).length, fe.length, 'nothing for the cancelled run after its RUN_ERROR');
    assert.equal(srv.requests.length, 1);
    assert.equal(srv.requests[0].aborted, false, 'the shared upstream run was not cut');
    assert.equal((await runLine(agate, follower.runId)).outcome, 'client_closed');

    // Two paced hits (the original gaps, ~1 s): cancel one.
    const h1 = q();
    const h2 = q();
    ws.sendJson(h1);
    ws.sendJson(h2);
    assert.ok(await ws.until(() => ws.runEvents(h1.runId).length >= 2 && ws.runEvents(h2.runId).length >= 2));
    ws.cancel(h1.runId);
    const e1 = await ws.waitRun(h1.runId);
    assert.equal(e1[e1.length - 1].code, 'cancelled');
    assert.ok(e1.length < 11, 'the cancelled hit stopped early');
    const e2 = await ws.waitRun(h2.runId);
    assertReplayOf(e2, srv.requests[0].sent, h2);
    await sleep(200);
    assert.equal(ws.runEvents(h1.runId).length, e1.length, 'nothing for the cancelled hit after its RUN_ERROR');
    assert.equal(srv.requests.length, 1);
    assert.equal((await runLine(agate, h2.runId)).cache, 'HIT');
    const m = await metrics(agate);
    assert.equal(cacheCount(m, 'hit'), 2);
    assert.equal(cacheCount(m, 'coalesced'), 1);
    await ws.closeClean();
    await stopClean(agate);
  });
});
