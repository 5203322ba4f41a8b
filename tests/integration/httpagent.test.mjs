// agate against the real AG-UI client: @ag-ui/client's HttpAgent (fetch + SSE parser +
// event enforcement + verifyEvents + message assembly).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { HttpAgent, verifyEvents } from '@ag-ui/client';
import { startAgate, stopClean, request, uid, sleep } from './lib/harness.mjs';

const T = { timeout: 15000 };

const userMsg = (content) => ({ id: uid('user'), role: 'user', content });

/** runAgent() with a subscriber collecting every event; rejects if the client rejects the run. */
async function runAgent(url, { messages = [], forwardedProps, runId = uid('run'), threadId = uid('thread'), agent: given } = {}) {
  const agent = given ?? new HttpAgent({ url, threadId, initialMessages: messages });
  const events = [];
  const failures = [];
  const t0 = Date.now();
  const result = await agent.runAgent({ runId, forwardedProps }, {
    onEvent: ({ event }) => { events.push({ ...event, at: Date.now() - t0 }); },
    onRunFailed: ({ error }) => { failures.push(error); },
  });
  return { agent, events, failures, result, runId, threadId: agent.threadId, elapsed: Date.now() - t0 };
}

function assertRun({ agent, events, failures, result, runId, threadId }, text) {
  assert.deepEqual(failures, [], 'onRunFailed was not called');
  const types = events.map((e) => e.type);
  assert.equal(types[0], 'RUN_STARTED');
  assert.equal(types[types.length - 1], 'RUN_FINISHED');
  assert.equal(events[0].threadId, threadId);
  assert.equal(events[0].runId, runId);
  assert.equal(events[events.length - 1].runId, runId);
  if (text === null) {
    assert.deepEqual(types, ['RUN_STARTED', 'RUN_FINISHED']);
    assert.deepEqual(result.newMessages, [], 'no new messages');
    const last = agent.messages[agent.messages.length - 1];
    assert.ok(!last || last.role !== 'assistant', 'no assistant message added');
    return;
  }
  const inner = types.slice(1, -1);
  assert.equal(inner[0], 'TEXT_MESSAGE_START');
  assert.equal(inner[inner.length - 1], 'TEXT_MESSAGE_END');
  assert.ok(inner.slice(1, -1).every((t) => t === 'TEXT_MESSAGE_CONTENT'), `types: ${types.join(' ')}`);
  const start = events[1];
  assert.equal(start.role, 'assistant');
  const last = agent.messages[agent.messages.length - 1];
  assert.equal(last.role, 'assistant');
  assert.equal(last.id, start.messageId);
  assert.equal(last.content, text, 'assistant message content equals the user text exactly');
  assert.equal(result.newMessages.length, 1);
  assert.equal(result.newMessages[0].content, text);
}

describe('@ag-ui/client HttpAgent', () => {
  let agate;
  let url;
  before(async () => {
    agate = await startAgate({ config: 'stream: {drain_timeout: 5s}\n' });
    url = `http://127.0.0.1:${agate.port}/v1/agents/echo/run`;
  });
  after(async () => { if (agate) await stopClean(agate); });

  test('plain words', T, async () => {
    const text = 'the quick brown fox jumps over the lazy dog';
    const r = await runAgent(url, { messages: [userMsg(text)] });
    assertRun(r, text);
    assert.equal(r.events.filter((e) => e.type === 'TEXT_MESSAGE_CONTENT').length, 9);
  });

  test('punctuation, unicode, multiple spaces, newlines', T, async () => {
    const text = '  Hello,   wörld!\n\nЗдравствуй 世界 🎉🎉  "quotes" \\back\\slash\t<tag/>\r\nend.  ';
    const r = await runAgent(url, { messages: [userMsg(text)] });
    assertRun(r, text);
  });

  test('content-array parts are concatenated', T, async () => {
    const parts = [
      { type: 'text', text: 'Part one, ' },
      { type: 'image', source: { type: 'url', value: 'https://example.invalid/cat.png', mimeType: 'image/png' } },
      { type: 'text', text: 'part two' },
      { type: 'text', text: ' and three.' },
    ];
    const r = await runAgent(url, { messages: [userMsg(parts)] });
    assertRun(r, 'Part one, part two and three.');
  });

  test('no user message: only the run events', T, async () => {
    const r = await runAgent(url, { messages: [] });
    assertRun(r, null);
    const r2 = await runAgent(url, { messages: [{ id: uid('sys'), role: 'system', content: 'system only' }] });
    assertRun(r2, null);
  });

  test('paced: tokenIntervalMs 20', T, async () => {
    const text = 'one two three four five six seven eight nine ten';
    const r = await runAgent(url, { messages: [userMsg(text)], forwardedProps: { agate: { tokenIntervalMs: 20 } } });
    assertRun(r, text);
    const c = r.events.filter((e) => e.type === 'TEXT_MESSAGE_CONTENT');
    assert.equal(c.length, 10);
    assert.ok(c[9].at - c[0].at >= 150, `10 paced deltas spread over ${c[9].at - c[0].at} ms (expected >= 150)`);
  });

  test('multi-turn: the last user message is echoed, history kept', T, async () => {
    const agent = new HttpAgent({ url, threadId: uid('thread'), initialMessages: [userMsg('first turn')] });
    const r1 = await runAgent(url, { agent });
    assertRun(r1, 'first turn');
    agent.addMessage(userMsg('second turn here'));
    const r2 = await runAgent(url, { agent });
    assertRun(r2, 'second turn here');
    assert.deepEqual(agent.messages.map((m) => m.role), ['user', 'assistant', 'user', 'assistant']);
    assert.notEqual(agent.messages[1].id, agent.messages[3].id);
  });

  test('agent.run(input) Observable piped through verifyEvents()', T, async () => {
    const text = 'observable stream ok';
    const threadId = uid('thread');
    const runId = uid('run');
    const agent = new HttpAgent({ url });
    const input = {
      threadId, runId, state: {}, tools: [], context: [], forwardedProps: {},
      messages: [userMsg(text)],
    };
    const events = await new Promise((resolve, reject) => {
      const got = [];
      agent.run(input).pipe(verifyEvents()).subscribe({
        next: (e) => got.push(e),
        error: reject,
        complete: () => resolve(got),
      });
    });
    assert.deepEqual(events.map((e) => e.type), [
      'RUN_STARTED', 'TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_END', 'RUN_FINISHED',
    ]);
    assert.equal(events[0].threadId, threadId);
    assert.equal(events[0].runId, runId);
    assert.equal(events.filter((e) => e.delta !== undefined).map((e) => e.delta).join(''), text);
  });

  test('10 concurrent runs', T, async () => {
    const runs = await Promise.all(Array.from({ length: 10 }, (_, i) => runAgent(url, {
      messages: [userMsg(`concurrent run ${i} of ten`)],
      forwardedProps: { agate: { tokenIntervalMs: 5 } },
    })));
    runs.forEach((r, i) => assertRun(r, `concurrent run ${i} of ten`));
    assert.equal(new Set(runs.map((r) => r.events[1].messageId)).size, 10);
  });

  test('unknown agent: runAgent rejects with the 404 agent_not_found payload', T, async () => {
    const agent = new HttpAgent({ url: `http://127.0.0.1:${agate.port}/v1/agents/nobody/run`, initialMessages: [userMsg('x')] });
    const origError = console.error;
    console.error = () => {};
    try {
      await assert.rejects(agent.runAgent({ runId: uid('run') }), (err) => {
        assert.equal(err.status, 404);
        assert.equal(err.payload && err.payload.error, 'agent_not_found', `payload ${JSON.stringify(err.payload)}`);
        return true;
      });
    } finally { console.error = origError; }
  });

  test('abortRun() mid-stream: the client stops cleanly, agate stays healthy', T, async () => {
    const text = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');
    const agent = new HttpAgent({ url, initialMessages: [userMsg(text)] });
    let contents = 0;
    const p = agent.runAgent({ runId: uid('run'), forwardedProps: { agate: { tokenIntervalMs: 100 } } }, {
      onTextMessageContentEvent: () => { if (++contents === 2) agent.abortRun(); },
    });
    const t0 = Date.now();
    await p.catch(() => {});
    assert.ok(Date.now() - t0 < 3000, 'the aborted run ended promptly');
    assert.ok(contents >= 2 && contents < 40, `${contents} content events before the abort took effect`);
    await sleep(200);
    const res = await request(agate.port, { path: '/health/ready' });
    assert.equal(res.statusCode, 200);
    const r = await runAgent(url, { messages: [userMsg('after abort')] });
    assertRun(r, 'after abort');
  });
});
