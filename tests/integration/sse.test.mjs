// The run endpoint's SSE stream seen byte for byte: headers, framing, the echo
// agent's events, pacing, the pacing cap, heartbeats, HTTP/1.0.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startAgate, stopClean, streamRun, runInput, paced, uid, assertEchoEvents, expectedDeltas,
  parseSSE, request, rawRequest, buildRequest, parseResponse, assertCommonHeaders, assertEngineLine,
} from './lib/harness.mjs';

const T = { timeout: 15000 };

describe('SSE stream', () => {
  let agate;
  before(async () => {
    agate = await startAgate({
      config: [
        'stream: {heartbeat: 15s, max_token_interval: 1s}',
        'agents:',
        '  echo: {type: echo, token_interval_ms: 0}',
        '  slow: {type: echo, token_interval_ms: 100}',
        '',
      ].join('\n'),
    });
  });
  after(async () => { if (agate) await stopClean(agate); });

  test('the engine backend is the one this run expects (epoll where io_uring is refused)', T, async () => {
    await assertEngineLine(agate);
  });

  test('response headers of a run', T, async () => {
    const r = await streamRun(agate.port, runInput('hello world'));
    assert.equal(r.statusCode, 200, r.text);
    assert.match(r.headers['content-type'], /^text\/event-stream\b/);
    assert.equal(r.headers['cache-control'], 'no-cache');
    assert.equal(r.headers['x-accel-buffering'], 'no');
    assert.match(r.headers['transfer-encoding'] || '', /chunked/i);
    assert.equal(r.headers['content-length'], undefined, 'no Content-Length on a chunked stream');
    assertCommonHeaders(r.res);
    assert.ok(r.complete, 'chunked body terminated by the zero-length chunk');
  });

  test('framing: only `data: <one-line JSON>\\n\\n` frames, nothing else', T, async () => {
    const r = await streamRun(agate.port, runInput('alpha beta gamma'));
    assert.equal(r.statusCode, 200);
    const text = r.text;
    const { frames, rest } = parseSSE(text);
    assert.equal(rest, '', 'body ends with a complete frame');
    assert.equal(frames.length, 7);
    let rebuilt = '';
    for (const f of frames) {
      assert.equal(f.comments.length, 0, 'no comment frames on a fast stream');
      assert.deepEqual(f.fields, {}, 'no event:/id:/retry: fields');
      assert.ok(f.data !== null);
      assert.ok(!f.data.includes('\n'), 'one data line per event');
      const ev = JSON.parse(f.data);
      assert.equal(typeof ev.type, 'string');
      rebuilt += `data: ${f.data}\n\n`;
    }
    assert.equal(text, rebuilt, 'the body is exactly the concatenation of data frames');
    assertEchoEvents(r.events, { text: 'alpha beta gamma', deltas: ['alpha ', 'beta ', 'gamma'] });
  });

  test('event sequence with threadId and runId echoed', T, async () => {
    const threadId = uid('thread');
    const runId = uid('run');
    const r = await streamRun(agate.port, runInput('one two', { threadId, runId }));
    assert.equal(r.statusCode, 200);
    assert.deepEqual(r.events.map((e) => e.type), [
      'RUN_STARTED', 'TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_END', 'RUN_FINISHED',
    ]);
    assertEchoEvents(r.events, { threadId, runId, text: 'one two', deltas: ['one ', 'two'] });
  });

  test('ids needing JSON escapes are echoed intact', T, async () => {
    const threadId = 't"quote\\back\tslash/é☃\u0001';
    const runId = 'r\n"x"\u00e9\u{1F600}';
    const r = await streamRun(agate.port, runInput('x', { threadId, runId }));
    assert.equal(r.statusCode, 200, r.text);
    assertEchoEvents(r.events, { threadId, runId, text: 'x' });
  });

  const deltaCases = [
    ['plain words', 'the quick brown fox', ['the ', 'quick ', 'brown ', 'fox']],
    ['leading and trailing whitespace', '  hello   world\n\tfoo  ', ['  hello   ', 'world\n\t', 'foo  ']],
    ['newlines and CRLF', 'line one\r\nline two\n\nend\n', ['line ', 'one\r\n', 'line ', 'two\n\n', 'end\n']],
    ['punctuation', 'Hello, world! (yes) "quoted" a-b;c', ['Hello, ', 'world! ', '(yes) ', '"quoted" ', 'a-b;c']],
    ['unicode', 'héllo 世界 🎉emoji ñ', ['héllo ', '世界 ', '🎉emoji ', 'ñ']],
    ['JSON-hostile characters', 'back\\slash "dq" </script> \u0007bell', ['back\\slash ', '"dq" ', '</script> ', '\u0007bell']],
    ['one word', 'single', ['single']],
  ];
  for (const [name, text, deltas] of deltaCases) {
    test(`deltas: ${name}`, T, async () => {
      assert.deepEqual(expectedDeltas(text), deltas, 'test self-check');
      const r = await streamRun(agate.port, runInput(text));
      assert.equal(r.statusCode, 200, r.text);
      assertEchoEvents(r.events, { text, deltas });
    });
  }

  test('deltas: a content array\'s text parts are concatenated with no separator', T, async () => {
    const content = [
      { type: 'text', text: 'Hello ' },
      { type: 'image', source: { type: 'url', value: 'https://example.invalid/x.png' } },
      { type: 'text', text: 'wor' },
      { type: 'text', text: 'ld again' },
    ];
    const r = await streamRun(agate.port, runInput(content));
    assert.equal(r.statusCode, 200, r.text);
    assertEchoEvents(r.events, { text: 'Hello world again', deltas: ['Hello ', 'world ', 'again'] });
  });

  test('the last user message is echoed, not an earlier one or a later assistant one', T, async () => {
    const messages = [
      { id: uid('m'), role: 'system', content: 'be nice' },
      { id: uid('m'), role: 'user', content: 'first question' },
      { id: uid('m'), role: 'assistant', content: 'an answer' },
      { id: uid('m'), role: 'user', content: 'second question here' },
      { id: uid('m'), role: 'assistant', content: 'trailing assistant text' },
    ];
    const r = await streamRun(agate.port, runInput(undefined, { messages }));
    assert.equal(r.statusCode, 200, r.text);
    assertEchoEvents(r.events, { text: 'second question here' });
  });

  test('no user text: only RUN_STARTED and RUN_FINISHED', T, async () => {
    for (const messages of [[], [{ id: uid('m'), role: 'system', content: 'sys only' },
      { id: uid('m'), role: 'assistant', content: 'assistant only' }]]) {
      const threadId = uid('thread');
      const runId = uid('run');
      const r = await streamRun(agate.port, runInput(undefined, { messages, threadId, runId }));
      assert.equal(r.statusCode, 200, r.text);
      assertEchoEvents(r.events, { threadId, runId, text: null });
    }
  });

  test('messageIds are fresh and unique across 20 runs', T, async () => {
    const ids = new Set();
    const inputIds = new Set();
    for (let i = 0; i < 20; i++) {
      const input = runInput(`run number ${i}`);
      inputIds.add(input.messages[0].id);
      const r = await streamRun(agate.port, input);
      assert.equal(r.statusCode, 200);
      assertEchoEvents(r.events, { text: `run number ${i}` });
      const start = r.events.find((e) => e.type === 'TEXT_MESSAGE_START');
      assert.ok(!inputIds.has(start.messageId), 'messageId is not an input message id');
      ids.add(start.messageId);
    }
    assert.equal(ids.size, 20, `distinct messageIds: ${[...ids].join(', ')}`);
  });

  test('a large message streams completely (2000 words)', T, async () => {
    const words = Array.from({ length: 2000 }, (_, i) => `w${i}`);
    const text = words.join(' ');
    const r = await streamRun(agate.port, runInput(text));
    assert.equal(r.statusCode, 200);
    const deltas = assertEchoEvents(r.events, { text });
    assert.equal(deltas.length, 2000);
  });

  test('pacing: tokenIntervalMs 100 with 5 words takes at least 400 ms', T, async () => {
    const text = 'one two three four five';
    const r = await streamRun(agate.port, runInput(text, { forwardedProps: paced(100) }));
    assert.equal(r.statusCode, 200);
    assertEchoEvents(r.events, { text });
    const at = (t) => r.frames.filter((f) => f.event && f.event.type === t).map((f) => f.at);
    const contents = at('TEXT_MESSAGE_CONTENT');
    const finished = at('RUN_FINISHED')[0];
    assert.ok(finished >= 400, `RUN_FINISHED after ${finished} ms (expected >= 400)`);
    assert.ok(contents[4] - contents[0] >= 300, `content events spread over ${contents[4] - contents[0]} ms (expected >= 300)`);
    assert.ok(r.elapsed < 5000, `took ${r.elapsed} ms`);
  });

  test('pacing: the agent\'s token_interval_ms applies (slow agent, 100 ms)', T, async () => {
    const text = 'one two three four five';
    const r = await streamRun(agate.port, runInput(text), { agent: 'slow' });
    assert.equal(r.statusCode, 200, r.text);
    assertEchoEvents(r.events, { text });
    const finished = r.frames.find((f) => f.event && f.event.type === 'RUN_FINISHED').at;
    assert.ok(finished >= 400, `RUN_FINISHED after ${finished} ms (expected >= 400)`);
  });

  test('pacing: tokenIntervalMs 0 overrides a slow agent', T, async () => {
    const text = Array.from({ length: 20 }, (_, i) => `w${i}`).join(' ');
    const r = await streamRun(agate.port, runInput(text, { forwardedProps: paced(0) }), { agent: 'slow' });
    assert.equal(r.statusCode, 200, r.text);
    assertEchoEvents(r.events, { text });
    assert.ok(r.elapsed < 1000, `20 words at interval 0 took ${r.elapsed} ms (agent default would be >= 1900)`);
  });

  test('HTTP/1.0 run: close-delimited body, not chunked, then the connection closes', T, async () => {
    const text = 'old protocol here';
    const r = await streamRun(agate.port, runInput(text), { version: '1.0' });
    assert.equal(r.statusCode, 200, r.text);
    assert.equal(r.res.httpVersion === '1.0' || r.res.httpVersion === '1.1', true);
    assert.equal(r.headers['transfer-encoding'], undefined, 'no Transfer-Encoding for HTTP/1.0');
    assert.match(r.headers['content-type'], /^text\/event-stream\b/);
    assert.ok(r.closed, 'connection closed at the end of the stream');
    assert.equal(r.res.framing, 'close');
    assertEchoEvents(r.events, { text });
  });

  test('HTTP/1.0 health check: close-delimited or Content-Length, connection closes', T, async () => {
    const r = await rawRequest(agate.port, 'GET /health/live HTTP/1.0\r\n\r\n', { timeout: 3000 });
    assert.ok(r.closed, 'connection closed after the response');
    const res = parseResponse(r.data, { eof: true });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['transfer-encoding'], undefined);
    JSON.parse(res.text);
  });

  test('curl-style form Content-Type and no Content-Type are both accepted', T, async () => {
    for (const ct of ['application/x-www-form-urlencoded', null, 'text/plain; charset=utf-8']) {
      const headers = ct ? { 'Content-Type': ct } : {};
      const body = JSON.stringify(runInput('form ok'));
      const raw = buildRequest({ method: 'POST', path: '/v1/agents/echo/run', headers: { ...headers, Connection: 'close' }, body });
      const r = await rawRequest(agate.port, raw, { timeout: 5000 });
      const res = parseResponse(r.data, { methods: ['POST'], eof: r.closed });
      assert.equal(res.statusCode, 200, `Content-Type ${ct}: ${res.text}`);
      const events = parseSSE(res.text).frames.filter((f) => f.data).map((f) => JSON.parse(f.data));
      assertEchoEvents(events, { text: 'form ok' });
    }
  });

  test('health stays fine after runs', T, async () => {
    const r = await request(agate.port, { path: '/health/ready' });
    assert.equal(r.statusCode, 200);
  });
});

describe('SSE pacing cap', () => {
  let agate;
  before(async () => {
    agate = await startAgate({
      config: [
        'stream: {max_token_interval: 50ms}',
        'agents:',
        '  echo: {type: echo, token_interval_ms: 0}',
        '  sluggish: {type: echo, token_interval_ms: 10000}',
        '',
      ].join('\n'),
    });
  });
  after(async () => { if (agate) await stopClean(agate); });

  test('tokenIntervalMs 10000 is capped at max_token_interval 50ms', T, async () => {
    const text = 'one two three four five';
    const r = await streamRun(agate.port, runInput(text, { forwardedProps: paced(10000) }));
    assert.equal(r.statusCode, 200, r.text);
    assertEchoEvents(r.events, { text });
    assert.ok(r.elapsed < 2000, `took ${r.elapsed} ms; capped pacing should take ~250 ms`);
    const finished = r.frames.find((f) => f.event && f.event.type === 'RUN_FINISHED').at;
    assert.ok(finished >= 150, `RUN_FINISHED at ${finished} ms: still paced at the cap (expected >= 150)`);
  });

  test('an agent\'s token_interval_ms 10000 is capped too', T, async () => {
    const text = 'one two three four five';
    const r = await streamRun(agate.port, runInput(text), { agent: 'sluggish' });
    assert.equal(r.statusCode, 200, r.text);
    assertEchoEvents(r.events, { text });
    assert.ok(r.elapsed < 2000, `took ${r.elapsed} ms; capped pacing should take ~250 ms`);
  });
});

describe('SSE heartbeat', () => {
  let agate;
  before(async () => {
    agate = await startAgate({ config: 'stream: {heartbeat: 200ms, max_token_interval: 1s}\n' });
  });
  after(async () => { if (agate) await stopClean(agate); });

  test('a `: ping` comment frame arrives between content events on a quiet stream', T, async () => {
    const text = 'tick tock tick';
    const r = await streamRun(agate.port, runInput(text, { forwardedProps: paced(700) }));
    assert.equal(r.statusCode, 200, r.text);
    assertEchoEvents(r.events, { text });
    const kinds = r.frames.map((f) => (f.data !== null ? f.event.type : f.comments.length ? `:${f.comments.join('|')}` : '?'));
    const firstContent = kinds.indexOf('TEXT_MESSAGE_CONTENT');
    const lastContent = kinds.lastIndexOf('TEXT_MESSAGE_CONTENT');
    const pings = r.frames
      .map((f, i) => ({ f, i }))
      .filter(({ f, i }) => f.data === null && f.comments.includes('ping') && i > firstContent && i < lastContent);
    assert.ok(pings.length >= 1, `no ": ping" frame between content events; frames: ${JSON.stringify(kinds)}`);
    for (const f of r.frames.filter((x) => x.data === null)) {
      assert.deepEqual(f.comments, ['ping'], `comment frames are ": ping": ${JSON.stringify(f.raw)}`);
      assert.equal(f.raw, ': ping');
    }
  });

  test('no ping on a stream that is never quiet for a heartbeat', T, async () => {
    const text = 'a b c d e f';
    const r = await streamRun(agate.port, runInput(text, { forwardedProps: paced(20) }));
    assert.equal(r.statusCode, 200);
    assertEchoEvents(r.events, { text });
    assert.equal(r.frames.filter((f) => f.data === null).length, 0, 'no comment frames');
  });
});
