// AG-UI's protobuf encoding (application/vnd.ag-ui.event+proto) through agate.
//
// Every event type is built here, encoded with @ag-ui/proto's own `encode`, and
// sent through agate: from a protobuf upstream to an SSE client and to a
// protobuf client, and from an SSE upstream to a protobuf client. Each event
// that comes out is compared, event by event, with what @ag-ui/proto's `decode`
// makes of `encode(event)`: agate's transcoding must lose exactly what the
// protobuf schema loses and nothing more. Then @ag-ui/client's HttpAgent over
// protobuf (a fetch that sets Accept) against the echo agent and a proxy agent,
// Accept negotiation with q-values, the upstream Accept, bad protobuf from an
// upstream (RUN_ERROR under strict validation), and runs counted by transport.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpAgent } from '@ag-ui/client';
import { encode, decode, AGUI_MEDIA_TYPE } from '@ag-ui/proto';
import { EventEncoder } from '@ag-ui/encoder';
import {
  startAgate, stopClean, uid, runInput, request, sseEvents, paced, assertEchoEvents, streamRun,
} from './lib/harness.mjs';
import { startAguiServer } from './lib/agui-server.mjs';

const T = { timeout: 20000 };
const SSE = 'text/event-stream';
const protoEncoder = new EventEncoder({ accept: AGUI_MEDIA_TYPE });

// ---------------------------------------------------------------------------
// events: one valid stream per scenario, together every event type and every
// field the schema has a place for.

const runAgentInput = {
  threadId: 't1',
  runId: 'r1',
  state: { count: 1, nested: { list: [1, 'two', null, true] } },
  messages: [
    { id: 'u1', role: 'user', content: [{ type: 'text', text: 'hi' }, { type: 'image', source: { type: 'data', value: 'AA==', mimeType: 'image/png' } }] },
    { id: 'a0', role: 'assistant', content: 'earlier' },
  ],
  tools: [{ name: 'get_weather', description: 'weather for a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } }],
  context: [{ description: 'locale', value: 'nb-NO' }],
  forwardedProps: { agate: { x: 1 } },
  resume: [{ interruptId: 'i0', status: 'resolved', payload: { ok: true } }],
};

const snapshotMessages = [
  { id: 'd1', role: 'developer', content: 'be brief' },
  { id: 's1', role: 'system', content: 'you are a bot', name: 'sys' },
  { id: 'm1', role: 'assistant', content: 'calling', toolCalls: [{ id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }] },
  { id: 'u2', role: 'user', content: 'plain text' },
  {
    id: 'u3',
    role: 'user',
    content: [
      { type: 'text', text: 't' },
      { type: 'audio', source: { type: 'file', value: 'file-1', provider: 'openai', mimeType: 'audio/wav' } },
      { type: 'video', source: { type: 'url', value: 'https://example.com/v.mp4', mimeType: 'video/mp4' } },
      { type: 'document', source: { type: 'data', value: 'JVBERi0=', mimeType: 'application/pdf' } },
    ],
  },
  { id: 't1m', role: 'tool', toolCallId: 'c1', content: 'sunny', error: 'none' },
  { id: 'act1', role: 'activity', activityType: 'plan', content: { steps: ['a', 'b'] } },
  { id: 'rz1', role: 'reasoning', content: 'thinking', encryptedValue: 'enc' },
];

const scenarios = {
  everything: [
    { type: 'RUN_STARTED', threadId: 't1', runId: 'r1', input: runAgentInput, timestamp: 1700000000123, rawEvent: { provider: 'x', n: 1 }, metadata: { k: 'v' } },
    { type: 'STEP_STARTED', stepName: 'plan' },
    { type: 'TEXT_MESSAGE_START', messageId: 'm1', role: 'assistant', name: 'bot' },
    { type: 'TEXT_MESSAGE_CONTENT', messageId: 'm1', delta: 'héllo "q" \\ \n\t ✓ 😀 \u2028' },
    { type: 'TEXT_MESSAGE_CONTENT', messageId: 'm1', delta: '' },
    { type: 'TEXT_MESSAGE_END', messageId: 'm1' },
    { type: 'TOOL_CALL_START', toolCallId: 'c1', toolCallName: 'get_weather', parentMessageId: 'm1' },
    { type: 'TOOL_CALL_ARGS', toolCallId: 'c1', delta: '{"city":"Oslo"}' },
    { type: 'TOOL_CALL_END', toolCallId: 'c1' },
    { type: 'TOOL_CALL_RESULT', messageId: 't1m', toolCallId: 'c1', content: 'sunny', role: 'tool' },
    { type: 'TOOL_CALL_START', toolCallId: 'c2', toolCallName: 'look' },
    { type: 'TOOL_CALL_END', toolCallId: 'c2' },
    { type: 'TOOL_CALL_RESULT', messageId: 't2m', toolCallId: 'c2', content: [{ type: 'text', text: 'see' }, { type: 'image', source: { type: 'url', value: 'https://example.com/y.png' } }] },
    { type: 'STATE_SNAPSHOT', snapshot: { a: [1, 2.5, -3, 1e300, 0.1], b: { c: null, d: true, e: 's' }, big: 12345678901234, neg: -0.000123 } },
    {
      type: 'STATE_DELTA',
      delta: [
        { op: 'add', path: '/a/-', value: 4 },
        { op: 'remove', path: '/b/c' },
        { op: 'replace', path: '/b/d', value: false },
        { op: 'move', from: '/b/e', path: '/e' },
        { op: 'copy', from: '/a', path: '/a2' },
        { op: 'test', path: '/big', value: 12345678901234 },
        { op: 'add', path: '/n', value: null },
      ],
    },
    { type: 'MESSAGES_SNAPSHOT', messages: snapshotMessages },
    { type: 'ACTIVITY_SNAPSHOT', messageId: 'act1', activityType: 'plan', content: { steps: ['a', 'b'] }, replace: false },
    { type: 'ACTIVITY_DELTA', messageId: 'act1', activityType: 'plan', patch: [{ op: 'add', path: '/steps/-', value: 'c' }] },
    { type: 'RAW', event: { x: [1, { y: 'z' }], s: 'raw' }, source: 'openai' },
    { type: 'CUSTOM', name: 'c', value: [null, 1, 'two', { three: 3 }] },
    { type: 'CUSTOM', name: 'nullish', value: null },
    { type: 'TEXT_MESSAGE_CHUNK', messageId: 'm2', role: 'assistant', delta: 'a', name: 'bot' },
    { type: 'TEXT_MESSAGE_CHUNK', delta: 'b' },
    { type: 'TOOL_CALL_CHUNK', toolCallId: 'c3', toolCallName: 'f', parentMessageId: 'm2', delta: '{' },
    { type: 'TOOL_CALL_CHUNK', delta: '}' },
    { type: 'REASONING_START', messageId: 'rz1' },
    { type: 'REASONING_MESSAGE_START', messageId: 'rz1m', role: 'reasoning' },
    { type: 'REASONING_MESSAGE_CONTENT', messageId: 'rz1m', delta: 'think' },
    { type: 'REASONING_MESSAGE_END', messageId: 'rz1m' },
    { type: 'REASONING_MESSAGE_CHUNK', messageId: 'rz2m', delta: 'hm' },
    { type: 'REASONING_MESSAGE_CHUNK', delta: 'mm' },
    { type: 'REASONING_ENCRYPTED_VALUE', subtype: 'message', entityId: 'rz1m', encryptedValue: 'opaque' },
    { type: 'REASONING_END', messageId: 'rz1' },
    { type: 'SUBAGENT_STARTED', subagentRunId: 'sa1', name: 'research', description: 'looks things up', parentToolCallId: 'c1', parentMessageId: 'm1' },
    { type: 'TEXT_MESSAGE_START', messageId: 'sm1', role: 'assistant', subagentRunId: 'sa1' },
    { type: 'TEXT_MESSAGE_CONTENT', messageId: 'sm1', delta: 'found', subagentRunId: 'sa1' },
    { type: 'TEXT_MESSAGE_END', messageId: 'sm1', subagentRunId: 'sa1' },
    { type: 'STEP_STARTED', stepName: 'search', subagentRunId: 'sa1' },
    { type: 'STEP_FINISHED', stepName: 'search', subagentRunId: 'sa1' },
    { type: 'SUBAGENT_FINISHED', subagentRunId: 'sa1', result: { answer: 42 }, outcome: { type: 'success' } },
    { type: 'SUBAGENT_STARTED', subagentRunId: 'sa2', name: 'other', parentSubagentRunId: 'sa1' },
    { type: 'SUBAGENT_ERROR', subagentRunId: 'sa2', message: 'boom', code: 'E_SUB' },
    { type: 'STEP_FINISHED', stepName: 'plan' },
    {
      type: 'RUN_FINISHED',
      threadId: 't1',
      runId: 'r1',
      result: { ok: true },
      outcome: { type: 'success', pendingToolCallIds: ['c3'] },
      usage: [{ provider: 'p', model: 'm', inputTokens: 10, outputTokens: 5, totalTokens: 15, reasoningTokens: 1, cachedInputTokens: 2, cacheWriteInputTokens: 3 }],
    },
    { type: 'RUN_STARTED', threadId: 't1', runId: 'r2', parentRunId: 'r1', protocolVersion: '1.0' },
    { type: 'RUN_ERROR', message: 'failed', code: 'E2', usage: [{ provider: 'p', inputTokens: 1 }] },
  ],
  interrupt: [
    { type: 'RUN_STARTED', threadId: 't2', runId: 'r3' },
    { type: 'SUBAGENT_STARTED', subagentRunId: 'sa3', name: 'approver' },
    { type: 'SUBAGENT_FINISHED', subagentRunId: 'sa3', outcome: { type: 'suspended', interruptIds: ['i1'] } },
    {
      type: 'RUN_FINISHED',
      threadId: 't2',
      runId: 'r3',
      outcome: {
        type: 'interrupt',
        interrupts: [{
          id: 'i1', reason: 'approval', message: 'ok?', toolCallId: 'c9', responseSchema: { type: 'boolean' },
          expiresAt: '2030-01-01T00:00:00Z', metadata: { level: 2 }, subagentRunId: 'sa3',
        }],
      },
    },
  ],
  // U+0000 in strings and keys: valid UTF-8 that @ag-ui/proto carries; agate
  // dropped these events (protobuf-c's strings end at NUL).
  nul: [
    { type: 'RUN_STARTED', threadId: 't\u0000', runId: 'r\u00005' },
    { type: 'TEXT_MESSAGE_START', messageId: 'n\u00001', role: 'assistant' },
    { type: 'TEXT_MESSAGE_CONTENT', messageId: 'n\u00001', delta: 'a\u0000b' },
    { type: 'TEXT_MESSAGE_END', messageId: 'n\u00001' },
    { type: 'CUSTOM', name: 'k\u0000', value: { '\u0000': 1 } },
    { type: 'STATE_SNAPSHOT', snapshot: { 'a\u0000b': { '\u0000': ['\u0000', { '\u0000\u0000': 'x\u0000yé' }] } } },
    { type: 'MESSAGES_SNAPSHOT', messages: [{ id: '\u0000', role: 'user', content: 'hi\u0000' }, { id: 'a\u0000', role: 'assistant', content: '\u0000' }] },
    { type: 'RUN_FINISHED', threadId: 't\u0000', runId: 'r\u00005', result: { '\u0000': '\u0000' } },
  ],
  plain: [
    { type: 'RUN_STARTED', threadId: 't3', runId: 'r4' },
    { type: 'TEXT_MESSAGE_START', messageId: 'p1' },
    { type: 'TEXT_MESSAGE_CONTENT', messageId: 'p1', delta: 'x' },
    { type: 'TEXT_MESSAGE_END', messageId: 'p1' },
    { type: 'RUN_FINISHED', threadId: 't3', runId: 'r4', outcome: { type: 'cancelled' } },
  ],
};

const ALL_TYPES = [
  'RUN_STARTED', 'RUN_FINISHED', 'RUN_ERROR', 'STEP_STARTED', 'STEP_FINISHED',
  'TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_END', 'TEXT_MESSAGE_CHUNK',
  'TOOL_CALL_START', 'TOOL_CALL_ARGS', 'TOOL_CALL_END', 'TOOL_CALL_CHUNK', 'TOOL_CALL_RESULT',
  'STATE_SNAPSHOT', 'STATE_DELTA', 'MESSAGES_SNAPSHOT', 'ACTIVITY_SNAPSHOT', 'ACTIVITY_DELTA',
  'RAW', 'CUSTOM', 'REASONING_START', 'REASONING_MESSAGE_START', 'REASONING_MESSAGE_CONTENT',
  'REASONING_MESSAGE_END', 'REASONING_MESSAGE_CHUNK', 'REASONING_END', 'REASONING_ENCRYPTED_VALUE',
  'SUBAGENT_STARTED', 'SUBAGENT_FINISHED', 'SUBAGENT_ERROR',
];

/** What @ag-ui/proto makes of an event: decode(encode(e)). */
const viaProto = (e) => decode(encode(e));
const frameOf = (e) => Buffer.from(protoEncoder.encodeProtobuf(e));

/** Splits a binary body into frames and decodes each with @ag-ui/proto. */
function decodeFrames(buf) {
  const events = [];
  let i = 0;
  while (i + 4 <= buf.length) {
    const n = buf.readUInt32BE(i);
    assert.ok(i + 4 + n <= buf.length, `frame at ${i} runs past the body (${n} bytes)`);
    events.push(decode(buf.subarray(i + 4, i + 4 + n)));
    i += 4 + n;
  }
  assert.equal(i, buf.length, 'trailing bytes after the last frame');
  return events;
}

function proxyConfig(url, { validation = 'strict' } = {}) {
  return [
    'agents:',
    '  up:',
    '    type: proxy',
    `    endpoints: [${url}]`,
    '    timeouts: {connect: 2s, first_event: 5s, idle: 5s, run: 60s}',
    '    retry: {attempts: 0}',
    `    validation: ${validation}`,
    '  echo: {type: echo, token_interval_ms: 0}',
    '',
  ].join('\n');
}

async function setup(t, script, opts) {
  const up = await startAguiServer({ script });
  t.after(() => up.close());
  const agate = await startAgate({ config: proxyConfig(up.url, opts) });
  t.after(async () => { if (!agate.exitInfo) await stopClean(agate); });
  return { up, agate };
}

/** POSTs a run with an Accept header; returns {status, contentType, body (Buffer)}. */
async function run(agate, agent, accept, input = runInput('hello protobuf world')) {
  const res = await fetch(`http://127.0.0.1:${agate.port}/v1/agents/${agent}/run`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(accept ? { Accept: accept } : {}) },
    body: JSON.stringify(input),
  });
  const cc = res.headers.get('cache-control');   // repeated lines arrive joined with ", "
  assert.ok(!cc || !cc.includes(','), `Cache-Control sent more than once: ${cc}`);
  return { status: res.status, contentType: res.headers.get('content-type'), body: Buffer.from(await res.arrayBuffer()) };
}

function assertSameEvents(got, want, label) {
  assert.equal(got.length, want.length, `${label}: ${got.length} events, expected ${want.length}: ${JSON.stringify(got.map((e) => e.type))}`);
  for (let i = 0; i < want.length; i++) assert.deepStrictEqual(got[i], want[i], `${label}: event ${i} (${want[i].type})`);
}

// ---------------------------------------------------------------------------

describe('protobuf transcoding, every event type', () => {
  test('the scenarios cover every AG-UI event type', () => {
    const seen = new Set(Object.values(scenarios).flat().map((e) => e.type));
    for (const type of ALL_TYPES) assert.ok(seen.has(type), `no ${type} in the scenarios`);
  });

  for (const [name, events] of Object.entries(scenarios)) {
    test(`${name}: protobuf upstream -> SSE client and -> protobuf client, event by event`, T, async (t) => {
      const { agate } = await setup(t, { contentType: AGUI_MEDIA_TYPE, events: events.map((e) => ({ raw: frameOf(e) })) });
      const want = events.map(viaProto);

      const sse = await run(agate, 'up', SSE);
      assert.equal(sse.status, 200);
      assert.equal(sse.contentType, SSE);
      assertSameEvents(sseEvents(sse.body.toString('utf8')), want, 'SSE client');

      const pb = await run(agate, 'up', AGUI_MEDIA_TYPE);
      assert.equal(pb.status, 200);
      assert.equal(pb.contentType, AGUI_MEDIA_TYPE);
      assertSameEvents(decodeFrames(pb.body), want, 'protobuf client');
      // protobuf to protobuf: the upstream's frames are relayed as they came
      assert.ok(pb.body.equals(Buffer.concat(events.map(frameOf))), 'frames relayed byte for byte');
    });

    test(`${name}: SSE upstream -> protobuf client, event by event`, T, async (t) => {
      const { up, agate } = await setup(t, { contentType: SSE, events });
      const pb = await run(agate, 'up', AGUI_MEDIA_TYPE);
      assert.equal(pb.status, 200);
      assert.equal(pb.contentType, AGUI_MEDIA_TYPE);
      assertSameEvents(decodeFrames(pb.body), events.map(viaProto), 'protobuf client');
      // agate asked the upstream for the client's encoding first.
      assert.match(up.requests[0].headers.accept, /^application\/vnd\.ag-ui\.event\+proto, text\/event-stream;q=0\.5$/);
    });
  }

  test('SSE upstream -> protobuf client: of members named twice the last counts, whatever the type of the first', T, async (t) => {
    // JSON.parse (and agate's validator) keep the last of duplicate names; the
    // conversion to protobuf must too, not fail on the first and drop the event.
    const texts = [
      '{"type":"RUN_STARTED","threadId":"t","runId":"r"}',
      '{"type":"TEXT_MESSAGE_START","messageId":"m","role":0,"role":"assistant"}',
      '{"type":"TEXT_MESSAGE_CONTENT","delta":1,"messageId":[],"messageId":"m","delta":"x"}',
      '{"type":"TEXT_MESSAGE_END","messageId":"m"}',
      '{"type":"CUSTOM","name":{"x":1},"value":[1],"name":"n","value":2}',
      '{"type":"RUN_FINISHED","threadId":"t","runId":"r"}',
    ];
    const { agate } = await setup(t, { contentType: SSE, events: texts.map((x) => ({ raw: `data: ${x}\n\n` })) });
    const sse = await run(agate, 'up', SSE);
    assert.deepStrictEqual(sseEvents(sse.body.toString('utf8')), texts.map((x) => JSON.parse(x)), 'the validator accepts them');
    const pb = await run(agate, 'up', AGUI_MEDIA_TYPE);
    assertSameEvents(decodeFrames(pb.body), texts.map((x) => viaProto(JSON.parse(x))), 'protobuf client');
  });

  test('an SSE client of an SSE upstream still gets the bytes unchanged, and agate asks only for SSE', T, async (t) => {
    const events = scenarios.plain;
    const { up, agate } = await setup(t, { events });
    const sse = await run(agate, 'up', SSE);
    assert.deepStrictEqual(sseEvents(sse.body.toString('utf8')), events);
    assert.equal(up.requests[0].headers.accept, SSE);
  });
});

describe('HttpAgent over protobuf', () => {
  const protoFetch = (url, init) => fetch(url, { ...init, headers: { ...init.headers, Accept: AGUI_MEDIA_TYPE } });
  let contentTypes = [];
  const spyFetch = async (url, init) => {
    const res = await protoFetch(url, init);
    contentTypes.push(res.headers.get('content-type'));
    return res;
  };

  async function agentRun(url, { fetchImpl, text = 'one two three' } = {}) {
    const agent = new HttpAgent({ url, threadId: uid('thread'), initialMessages: [{ id: uid('m'), role: 'user', content: text }], ...(fetchImpl ? { fetch: fetchImpl } : {}) });
    const events = [];
    await agent.runAgent({ runId: uid('run') }, { onEvent: ({ event }) => { events.push(event); } });
    return { events, messages: agent.messages };
  }

  test('echo agent: the same events as over SSE', T, async (t) => {
    const agate = await startAgate({ config: 'agents:\n  echo: {type: echo, token_interval_ms: 0}\n' });
    t.after(async () => { if (!agate.exitInfo) await stopClean(agate); });
    const url = `http://127.0.0.1:${agate.port}/v1/agents/echo/run`;
    contentTypes = [];
    const pb = await agentRun(url, { fetchImpl: spyFetch, text: 'hello brave new world' });
    assert.deepStrictEqual(contentTypes, [AGUI_MEDIA_TYPE]);
    const sse = await agentRun(url, { text: 'hello brave new world' });
    const norm = (evs) => evs.map(({ messageId, threadId, runId, ...rest }) => rest);
    assert.deepStrictEqual(norm(pb.events), norm(sse.events));
    assert.deepStrictEqual(pb.events.filter((e) => e.type === 'TEXT_MESSAGE_CONTENT').map((e) => e.delta),
      ['hello ', 'brave ', 'new ', 'world']);
    assert.equal(pb.messages.at(-1).content, 'hello brave new world');
  });

  test('proxy agent (SSE upstream and protobuf upstream): exactly the upstream events', T, async (t) => {
    for (const [upstream, events] of [['sse', scenarios.plain], ['proto', scenarios.plain], ['sse', scenarios.nul], ['proto', scenarios.nul]]) {
      const script = upstream === 'sse' ? { contentType: SSE, events } : { contentType: AGUI_MEDIA_TYPE, events: events.map((e) => ({ raw: frameOf(e) })) };
      const { agate } = await setup(t, script);
      const url = `http://127.0.0.1:${agate.port}/v1/agents/up/run`;
      contentTypes = [];
      const pb = await agentRun(url, { fetchImpl: spyFetch });
      assert.deepStrictEqual(contentTypes, [AGUI_MEDIA_TYPE]);
      // HttpAgent hands on what its pipeline makes of the stream; over SSE the
      // same upstream events must give the same thing.
      const sse = await agentRun(url);
      assert.deepStrictEqual(pb.events, sse.events, `${upstream} upstream`);
      assert.deepStrictEqual(pb.events.map((e) => e.type), events.map((e) => e.type));
      // and the events are the upstream's own (HttpAgent's own run ids aside)
      const own = (evs) => evs.filter((e) => !/^RUN_/.test(e.type));
      assert.deepStrictEqual(own(pb.events), own(events.map(viaProto)), `${upstream} upstream: the events, unchanged`);
      await stopClean(agate);
    }
  });
});

describe('Accept negotiation', () => {
  test('q-values decide; SSE stays the default', T, async (t) => {
    const agate = await startAgate({ config: 'agents:\n  echo: {type: echo, token_interval_ms: 0}\n' });
    t.after(async () => { if (!agate.exitInfo) await stopClean(agate); });
    const cases = [
      [undefined, SSE],
      ['*/*', SSE],
      [SSE, SSE],
      [AGUI_MEDIA_TYPE, AGUI_MEDIA_TYPE],
      [`${AGUI_MEDIA_TYPE}, ${SSE}`, AGUI_MEDIA_TYPE],
      [`${SSE}, ${AGUI_MEDIA_TYPE}`, SSE],
      [`${SSE};q=0.5, ${AGUI_MEDIA_TYPE}`, AGUI_MEDIA_TYPE],
      [`${AGUI_MEDIA_TYPE};q=0.2, ${SSE}`, SSE],
      [`${AGUI_MEDIA_TYPE};q=0, */*`, SSE],
      [`application/*, text/*;q=0.1`, AGUI_MEDIA_TYPE],
      [`*/*;q=0.8, ${AGUI_MEDIA_TYPE}`, AGUI_MEDIA_TYPE],
      [`${AGUI_MEDIA_TYPE.toUpperCase()} ; q=0.9, text/event-stream;q=0.8`, AGUI_MEDIA_TYPE],
    ];
    for (const [accept, want] of cases) {
      const res = await run(agate, 'echo', accept);
      assert.equal(res.status, 200);
      assert.equal(res.contentType, want, `Accept: ${accept}`);
      const events = want === SSE ? sseEvents(res.body.toString('utf8')) : decodeFrames(res.body);
      assert.deepStrictEqual(events.map((e) => e.type),
        ['RUN_STARTED', 'TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_END', 'RUN_FINISHED'], `Accept: ${accept}`);
    }
  });

  test('runs are counted by transport', T, async (t) => {
    const agate = await startAgate({ config: 'agents:\n  echo: {type: echo, token_interval_ms: 0}\n' });
    t.after(async () => { if (!agate.exitInfo) await stopClean(agate); });
    await run(agate, 'echo', AGUI_MEDIA_TYPE);
    await run(agate, 'echo', AGUI_MEDIA_TYPE);
    await run(agate, 'echo', SSE);
    const m = await request(agate.adminPort, { path: '/metrics' });
    const text = m.body.toString('utf8');
    assert.match(text, /agate_runs_started_total\{agent="echo",transport="proto"\} 2\b/);
    assert.match(text, /agate_runs_started_total\{agent="echo",transport="sse"\} 1\b/);
    assert.match(text, /agate_runs_ended_total\{agent="echo",transport="proto",outcome="finished"\} 2\b/);
  });
});

describe('nesting', () => {
  // The JSON depth of an event (the event object is one level) is bounded at
  // 64 whatever the encoding; protobuf spends two or three message levels on
  // each JSON level (Value, Struct, FieldsEntry), and agate used to bound
  // those instead: ~21 nested objects or 32 arrays from a protobuf upstream
  // were refused, while SSE took 63 and @ag-ui/proto decodes them.
  const nested = (k, shape) => {
    let v = 'leaf';
    for (let i = 0; i < k; i++) v = shape === 'o' || (shape === 'oa' && i % 2) ? { k: v } : [v];
    return v;
  };
  const stream = (k, shape) => [
    { type: 'RUN_STARTED', threadId: 't', runId: 'r' },
    { type: 'STATE_SNAPSHOT', snapshot: nested(k, shape) },
    { type: 'RUN_FINISHED', threadId: 't', runId: 'r' },
  ];
  for (const shape of ['o', 'a', 'oa']) {
    test(`${{ o: 'objects', a: 'arrays', oa: 'objects and arrays' }[shape]}: up to 63 levels in a snapshot pass from either upstream encoding to either client, 64 are refused by both`, T, async (t) => {
      for (const upstream of ['sse', 'proto']) {
        const script = (rec) => {
          const events = stream(rec.json.state.k, shape);
          return upstream === 'sse' ? { contentType: SSE, events } : { contentType: AGUI_MEDIA_TYPE, events: events.map((e) => ({ raw: frameOf(e) })) };
        };
        const { agate } = await setup(t, script);
        for (const k of [21, 22, 32, 33, 63, 64]) {
          for (const accept of [SSE, AGUI_MEDIA_TYPE]) {
            const res = await run(agate, 'up', accept, runInput('deep', { state: { k } }));
            const got = accept === SSE ? sseEvents(res.body.toString('utf8')) : decodeFrames(res.body);
            const label = `${upstream} upstream, ${accept} client, ${k} levels`;
            if (k < 64) {
              assertSameEvents(got, stream(k, shape).map(viaProto), label);
            } else {
              assert.deepStrictEqual(got.map((e) => e.type), ['RUN_STARTED', 'RUN_ERROR'], label);
              assert.match(got[1].message, /deeper than 64/, label);
            }
          }
        }
        // and HttpAgent over protobuf takes the deepest allowed snapshot as its state
        const agent = new HttpAgent({
          url: `http://127.0.0.1:${agate.port}/v1/agents/up/run`, threadId: 't', initialState: { k: 63 },
          fetch: (url, init) => fetch(url, { ...init, headers: { ...init.headers, Accept: AGUI_MEDIA_TYPE } }),
        });
        await agent.runAgent({ runId: 'r' });
        assert.deepStrictEqual(agent.state, nested(63, shape), `${upstream} upstream: HttpAgent's state`);
        await stopClean(agate);
      }
    });
  }
});

describe('protobuf heartbeat', () => {
  // The encoding has no comment frame. Without some frame a quiet protobuf run
  // was cut by a load balancer's idle timeout (60 s is common). The keep-alive
  // is a frame holding only field 19999 (protobuf's own range: no AG-UI schema
  // can name it), which @ag-ui/client drops as an event from a later protocol.
  const HEARTBEAT = Buffer.from([0, 0, 0, 4, 0xfa, 0xe1, 0x09, 0x00]);
  // stream.protobuf_heartbeat paces them; SSE's stream.heartbeat is off unless asked for.
  const config = (more = '', sseHeartbeat = '0s') => `stream: {protobuf_heartbeat: 200ms, heartbeat: ${sseHeartbeat}, max_token_interval: 1s}\nagents:\n  echo: {type: echo, token_interval_ms: 0}\n${more}`;
  const protoFetch = (url, init) => fetch(url, { ...init, headers: { ...init.headers, Accept: AGUI_MEDIA_TYPE } });

  /** The body's frames, in order: a heartbeat as 'HB', an event decoded. */
  function frames(buf) {
    const out = [];
    for (let i = 0; i < buf.length;) {
      const n = buf.readUInt32BE(i);
      const f = buf.subarray(i, i + 4 + n);
      out.push(f.equals(HEARTBEAT) ? 'HB' : decode(f.subarray(4)));
      i += 4 + n;
    }
    return out;
  }

  test('a quiet stream gets heartbeat frames between its events; @ag-ui/client drops them and keeps every event', T, async (t) => {
    const agate = await startAgate({ config: config() });
    t.after(async () => { if (!agate.exitInfo) await stopClean(agate); });
    const text = 'tick tock tick';
    const res = await run(agate, 'echo', AGUI_MEDIA_TYPE, runInput(text, { forwardedProps: paced(700) }));
    assert.equal(res.contentType, AGUI_MEDIA_TYPE);
    const got = frames(res.body);
    const kinds = got.map((f) => (f === 'HB' ? f : f.type));
    const first = kinds.indexOf('TEXT_MESSAGE_CONTENT'), last = kinds.lastIndexOf('TEXT_MESSAGE_CONTENT');
    assert.ok(kinds.slice(first, last).includes('HB'), `a heartbeat between content events: ${JSON.stringify(kinds)}`);
    assertEchoEvents(got.filter((f) => f !== 'HB'), { text });

    // The official client, over protobuf: the same events as over SSE, each
    // heartbeat dropped with the warning @ag-ui/client 1.0.0 gives a frame
    // of a later protocol.
    const url = `http://127.0.0.1:${agate.port}/v1/agents/echo/run`;
    const warns = [];
    const warn = console.warn;
    console.warn = (...a) => { warns.push(a.join(' ')); };
    const events = [];
    const failures = [];
    try {
      const agent = new HttpAgent({ url, threadId: uid('thread'), initialMessages: [{ id: uid('m'), role: 'user', content: text }], fetch: protoFetch });
      await agent.runAgent({ runId: uid('run'), forwardedProps: paced(700) }, {
        onEvent: ({ event }) => { events.push(event); },
        onRunFailed: ({ error }) => { failures.push(error); },
      });
    } finally { console.warn = warn; }
    assert.deepEqual(failures, []);
    assertEchoEvents(events, { text });
    assert.ok(warns.length >= 1, 'the client saw heartbeats');
    for (const w of warns) assert.match(w, /Dropped an event this build does not know/);
  });

  test('no heartbeat on a stream that is never quiet for one', T, async (t) => {
    const agate = await startAgate({ config: config() });
    t.after(async () => { if (!agate.exitInfo) await stopClean(agate); });
    const text = 'a b c d e f';
    const res = await run(agate, 'echo', AGUI_MEDIA_TYPE, runInput(text, { forwardedProps: paced(20) }));
    const got = frames(res.body);
    assert.ok(!got.includes('HB'), 'no heartbeat');
    assertEchoEvents(got, { text });
  });

  test('agate in front of agate: the outer skips the inner\'s heartbeats (strict) and sends its own', T, async (t) => {
    const inner = await startAgate({ config: config() });
    t.after(async () => { if (!inner.exitInfo) await stopClean(inner); });
    const outer = await startAgate({
      config: config(`  up:\n    type: proxy\n    endpoints: [http://127.0.0.1:${inner.port}/v1/agents/echo/run]\n    validation: strict\n    retry: {attempts: 0}\n`, '200ms'),
    });
    t.after(async () => { if (!outer.exitInfo) await stopClean(outer); });
    const text = 'slow words here';
    const res = await run(outer, 'up', AGUI_MEDIA_TYPE, runInput(text, { forwardedProps: paced(700) }));
    const got = frames(res.body);
    assert.ok(got.includes('HB'), `the outer's heartbeats: ${JSON.stringify(got.map((f) => (f === 'HB' ? f : f.type)))}`);
    assertEchoEvents(got.filter((f) => f !== 'HB'), { text });
    // an SSE client of the outer: ": ping" comments, the same events
    const r = await streamRun(outer.port, runInput(text, { forwardedProps: paced(700) }), { agent: 'up' });
    assertEchoEvents(r.events, { text });
    assert.ok(r.frames.some((f) => f.data === null && f.comments.includes('ping')));
  });
});

describe('bad protobuf from an upstream', () => {
  const started = frameOf({ type: 'RUN_STARTED', threadId: 't', runId: 'r' });
  const lenPrefix = (bytes) => { const b = Buffer.alloc(4); b.writeUInt32BE(bytes.length); return Buffer.concat([b, bytes]); };
  // An Event whose arm (text_message_start = 1) carries a BaseEvent declaring RUN_STARTED (11).
  const mismatched = lenPrefix(Buffer.from([0x0a, 0x06, 0x0a, 0x02, 0x08, 0x0b, 0x12, 0x00]));
  // Two different arms in one envelope.
  const twoArms = lenPrefix(Buffer.from([0x0a, 0x02, 0x0a, 0x00, 0x12, 0x02, 0x0a, 0x00]));
  // Field 100 only: an event from a later protocol.
  const future = lenPrefix(Buffer.from([0xa2, 0x06, 0x02, 0x08, 0x01]));
  const garbage = lenPrefix(Buffer.from([0xff, 0xff, 0xff]));

  const cases = [
    ['bytes that are not protobuf', garbage, /malformed protobuf/],
    ['an arm whose base event names another type', mismatched, /envelope carries TEXT_MESSAGE_START/],
    ['two event kinds in one envelope', twoArms, /two different kinds/],
    ['an event kind newer than the schema (strict)', future, /newer than this schema/],
    ['a valid event that breaks the sequence rules', frameOf({ type: 'TEXT_MESSAGE_CONTENT', messageId: 'nope', delta: 'x' }), /not (been )?started|was not started/],
  ];
  for (const [label, bad, msg] of cases) {
    test(`${label}: RUN_ERROR upstream_protocol_error, for SSE and protobuf clients`, T, async (t) => {
      const { agate } = await setup(t, { contentType: AGUI_MEDIA_TYPE, events: [{ raw: started }, { raw: bad }, { raw: frameOf({ type: 'RUN_FINISHED', threadId: 't', runId: 'r' }) }] });
      for (const accept of [SSE, AGUI_MEDIA_TYPE]) {
        const res = await run(agate, 'up', accept);
        const events = accept === SSE ? sseEvents(res.body.toString('utf8')) : decodeFrames(res.body);
        assert.deepStrictEqual(events.map((e) => e.type), ['RUN_STARTED', 'RUN_ERROR'], `${accept}: ${JSON.stringify(events)}`);
        assert.equal(events[1].code, 'upstream_protocol_error');
        assert.match(events[1].message, msg);
      }
    });
  }

  test('an event kind newer than the schema is skipped under validation: pass', T, async (t) => {
    const { agate } = await setup(t, { contentType: AGUI_MEDIA_TYPE, events: [{ raw: started }, { raw: future }, { raw: frameOf({ type: 'RUN_FINISHED', threadId: 't', runId: 'r' }) }] },
      { validation: 'pass' });
    const res = await run(agate, 'up', SSE);
    assert.deepStrictEqual(sseEvents(res.body.toString('utf8')).map((e) => e.type), ['RUN_STARTED', 'RUN_FINISHED']);
  });

  test('a frame that announces more than 4 MiB ends the run', T, async (t) => {
    const huge = Buffer.from([0x00, 0x50, 0x00, 0x00]);   // 5 MiB
    const { agate } = await setup(t, { contentType: AGUI_MEDIA_TYPE, events: [{ raw: started }, { raw: huge }] });
    const res = await run(agate, 'up', SSE);
    const events = sseEvents(res.body.toString('utf8'));
    assert.deepStrictEqual(events.map((e) => e.type), ['RUN_STARTED', 'RUN_ERROR']);
    assert.match(events[1].message, /exceeds the agent's max_event \(4194304 bytes\)/);
  });

  test('frames split at every byte still decode', T, async (t) => {
    const events = scenarios.plain;
    const bytes = Buffer.concat(events.map(frameOf));
    const { agate } = await setup(t, { contentType: AGUI_MEDIA_TYPE, events: [...bytes].map((b) => ({ raw: Buffer.from([b]) })) });
    const res = await run(agate, 'up', SSE);
    assertSameEvents(sseEvents(res.body.toString('utf8')), events.map(viaProto), 'split');
  });
});
