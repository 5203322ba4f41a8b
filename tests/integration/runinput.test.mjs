// RunAgentInput validation: invalid bodies are 400 invalid_request naming the field;
// valid edge cases (per @ag-ui/core 1.0's RunAgentInputSchema) are accepted.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { RunAgentInputSchema } from '@ag-ui/core/schemas';
import {
  startAgate, stopClean, request, runInput, uid, assertError, assertCommonHeaders, sseEvents,
  assertEchoEvents, RawConn, buildRequest,
} from './lib/harness.mjs';

const T = { timeout: 15000 };
const RUN = '/v1/agents/echo/run';

const base = () => runInput('hello there', { threadId: 't-1', runId: 'r-1' });
const msg = (role, content, extra = {}) => ({ id: uid('m'), role, content, ...extra });

/** zod path → "messages[0].role" */
function zodField(issue) {
  let s = '';
  for (const p of issue.path) s += typeof p === 'number' ? `[${p}]` : (s ? `.${p}` : p);
  return s;
}

// [name, body maker, expected field (or the acceptable fields), schemaChecks]
// schemaChecks: whether @ag-ui/core's schema must agree the body is invalid at that field.
// For a bad part inside a content array the precise path is expected, but the
// union-level "messages[i].content" (what zod itself reports) is accepted too.
const invalid = [
  ['missing threadId', () => { const b = base(); delete b.threadId; return b; }, 'threadId', true],
  ['threadId not a string', () => ({ ...base(), threadId: 123 }), 'threadId', true],
  ['missing runId', () => { const b = base(); delete b.runId; return b; }, 'runId', true],
  ['runId null', () => ({ ...base(), runId: null }), 'runId', true],
  ['missing messages', () => { const b = base(); delete b.messages; return b; }, 'messages', true],
  ['messages not an array', () => ({ ...base(), messages: { role: 'user' } }), 'messages', true],
  ['messages a string', () => ({ ...base(), messages: 'hi' }), 'messages', true],
  ['bad role', () => ({ ...base(), messages: [msg('wizard', 'x')] }), 'messages[0].role', true],
  ['missing role', () => ({ ...base(), messages: [{ id: 'm1', content: 'x' }] }), 'messages[0].role', true],
  ['role not a string', () => ({ ...base(), messages: [msg(7, 'x')] }), 'messages[0].role', true],
  ['message missing id', () => ({ ...base(), messages: [{ role: 'user', content: 'x' }] }), 'messages[0].id', true],
  ['message not an object', () => ({ ...base(), messages: [msg('user', 'ok'), 'nope'] }), 'messages[1]', true],
  ['user content a number', () => ({ ...base(), messages: [msg('user', 'ok'), msg('user', 42)] }), 'messages[1].content', true],
  ['user content an object', () => ({ ...base(), messages: [msg('user', { text: 'x' })] }), 'messages[0].content', true],
  ['user content missing', () => ({ ...base(), messages: [{ id: 'm1', role: 'user' }] }), 'messages[0].content', true],
  ['system content an array', () => ({ ...base(), messages: [msg('system', [{ type: 'text', text: 'x' }])] }), 'messages[0].content', true],
  ['text part with non-string text', () => ({ ...base(), messages: [msg('user', [{ type: 'text', text: 5 }])] }), ['messages[0].content[0].text', 'messages[0].content'], true],
  ['content part of unknown type', () => ({ ...base(), messages: [msg('user', [{ type: 'text', text: 'a' }, { type: 'bogus' }])] }), ['messages[0].content[1].type', 'messages[0].content'], true],
  ['image part without source', () => ({ ...base(), messages: [msg('user', [{ type: 'image' }])] }), ['messages[0].content[0].source', 'messages[0].content'], true],
  ['tool message without toolCallId', () => ({ ...base(), messages: [msg('tool', 'result')] }), 'messages[0].toolCallId', true],
  ['tools not an array', () => ({ ...base(), tools: {} }), 'tools', true],
  ['tool without description', () => ({ ...base(), tools: [{ name: 'x' }] }), 'tools[0].description', true],
  ['context entry without value', () => ({ ...base(), context: [{ description: 'd' }] }), 'context[0].value', true],
  ['tokenIntervalMs negative', () => ({ ...base(), forwardedProps: { agate: { tokenIntervalMs: -1 } } }), 'forwardedProps.agate.tokenIntervalMs', false],
  ['tokenIntervalMs not an integer', () => ({ ...base(), forwardedProps: { agate: { tokenIntervalMs: 1.5 } } }), 'forwardedProps.agate.tokenIntervalMs', false],
  ['tokenIntervalMs a string', () => ({ ...base(), forwardedProps: { agate: { tokenIntervalMs: '100' } } }), 'forwardedProps.agate.tokenIntervalMs', false],
];

const notAnObject = [
  ['body is an array', '[]'],
  ['body is a string', '"hello"'],
  ['body is null', 'null'],
  ['body is a number', '42'],
];

const invalidJson = [
  ['truncated JSON', '{"threadId": "t", "runId": '],
  ['not JSON at all', 'threadId=t&runId=r'],
  ['trailing garbage', '{"threadId":"t","runId":"r","messages":[]} xyz'],
  ['empty body', ''],
  ['invalid UTF-8 in a string', Buffer.concat([Buffer.from('{"threadId":"'), Buffer.from([0xff, 0xfe]), Buffer.from('","runId":"r","messages":[]}')])],
];

const valid = [
  ['only the three required fields', () => ({ threadId: 't', runId: 'r', messages: [msg('user', 'just these')] }), 'just these'],
  ['unknown top-level and message fields (loose objects)', () => ({ ...base(), extra: { a: 1 }, messages: [msg('user', 'loose ok', { extraField: true, name: 'bob' })] }), 'loose ok'],
  ['protocolVersion and parentRunId', () => ({ ...base(), protocolVersion: '1.0', parentRunId: 'p', messages: [msg('user', 'versioned')] }), 'versioned'],
  ['state null', () => ({ ...base(), state: null, messages: [msg('user', 'null state')] }), 'null state'],
  ['every role', () => ({
    ...base(),
    messages: [
      msg('developer', 'dev'), msg('system', 'sys'),
      { id: 'a1', role: 'assistant', toolCalls: [{ id: 'tc1', type: 'function', function: { name: 'f', arguments: '{}' } }] },
      msg('tool', 'tool result', { toolCallId: 'tc1' }),
      { id: 'act1', role: 'activity', activityType: 'progress', content: { pct: 50 } },
      msg('reasoning', 'thinking'),
      msg('user', 'all roles'),
    ],
  }), 'all roles'],
  ['tools, context, resume', () => ({
    ...base(),
    tools: [{ name: 'lookup', description: 'look things up', parameters: { type: 'object' } }],
    context: [{ description: 'where', value: 'here' }],
    resume: [{ interruptId: 'i1', status: 'resolved', payload: { ok: true } }],
    messages: [msg('user', 'with extras')],
  }), 'with extras'],
  ['tokenIntervalMs 0 and other forwardedProps', () => ({ ...base(), forwardedProps: { other: [1, 2], agate: { tokenIntervalMs: 0, other: 'x' } }, messages: [msg('user', 'fwd ok')] }), 'fwd ok'],
  ['media parts only (no text) → no message', () => ({ ...base(), messages: [msg('user', [{ type: 'image', source: { type: 'data', value: 'AAAA', mimeType: 'image/png' } }])] }), null],
  ['U+0000 in keys (JSON.parse reads them)', () => ({
    ...base(), '\u0000': 1, state: { '\u0000': { 'a\u0000b': [{ '\u0000': null }] } }, forwardedProps: { '\u0000x': true },
    messages: [msg('user', 'nul keys', { '\u0000': 'loose' })],
  }), 'nul keys'],
];

describe('RunAgentInput validation', () => {
  let agate;
  before(async () => { agate = await startAgate({ config: 'limits: {max_body: 64KiB}\n' }); });
  after(async () => { if (agate) await stopClean(agate); });

  for (const [name, make, fieldSpec, schemaChecks] of invalid) {
    const fields = Array.isArray(fieldSpec) ? fieldSpec : [fieldSpec];
    test(`invalid: ${name} → 400 invalid_request, field ${fields[0]}`, T, async () => {
      const body = make();
      const z = RunAgentInputSchema.safeParse(body);
      if (schemaChecks) {
        assert.ok(!z.success, 'test self-check: @ag-ui/core also rejects this body');
        assert.ok(z.error.issues.some((i) => fields.includes(zodField(i))),
          `test self-check: schema issue paths ${z.error.issues.map(zodField).join(', ')} include one of ${fields.join(', ')}`);
      } else {
        assert.ok(z.success, 'test self-check: only agate\'s own rule rejects this body');
      }
      const res = await request(agate.port, { method: 'POST', path: RUN, body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
      const err = assertError(res, 400, 'invalid_request');
      assertCommonHeaders(res);
      assert.ok(fields.includes(err.field), `"field" ${JSON.stringify(err.field)} is not ${fields.join(' or ')} in ${res.text}`);
    });
  }

  for (const [name, raw] of notAnObject) {
    test(`invalid: ${name} → 400 invalid_request`, T, async () => {
      const res = await request(agate.port, { method: 'POST', path: RUN, body: raw });
      const err = assertError(res, 400, 'invalid_request');
      // The problem is the body itself: no field to name ("" or absent).
      if ('field' in err) assert.equal(err.field, '', `"field" for a body-level error: ${res.text}`);
    });
  }

  for (const [name, raw] of invalidJson) {
    test(`invalid JSON: ${name} → 400 invalid_request`, T, async () => {
      const res = await request(agate.port, {
        method: 'POST', path: RUN, body: raw, headers: { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(raw)) },
      });
      const err = assertError(res, 400, 'invalid_request');
      if ('field' in err) assert.equal(err.field, '', `"field" for a body-level error: ${res.text}`);
    });
  }

  test('invalid_request keeps the connection usable (it is not malformed HTTP)', T, async () => {
    const c = await RawConn.connect(agate.port);
    try {
      await c.write(buildRequest({ method: 'POST', path: RUN, body: '{"threadId":1}' }));
      const rs1 = await c.waitResponses(1, { methods: ['POST'], timeout: 3000 });
      assertError(rs1[0], 400, 'invalid_request');
      assert.ok(!c.ended, 'connection closed after invalid_request');
      await c.write(buildRequest({ method: 'POST', path: RUN, body: runInput('still here'), headers: { Connection: 'close' } }));
      const rs2 = await c.waitResponses(2, { methods: ['POST', 'POST'], timeout: 3000 });
      assert.equal(rs2.length, 2, `second response missing: ${JSON.stringify(c.text.slice(-300))}`);
      assert.equal(rs2[1].statusCode, 200);
      assertEchoEvents(sseEvents(rs2[1].text), { text: 'still here' });
    } finally { c.destroy(); }
  });

  for (const [name, make, text] of valid) {
    test(`valid: ${name} → 200`, T, async () => {
      const body = make();
      const z = RunAgentInputSchema.safeParse(body);
      assert.ok(z.success, `test self-check: @ag-ui/core accepts this body: ${z.success ? '' : JSON.stringify(z.error.issues)}`);
      const res = await request(agate.port, { method: 'POST', path: RUN, body: JSON.stringify(body) });
      assert.equal(res.statusCode, 200, res.text);
      assertEchoEvents(sseEvents(res.text), { threadId: body.threadId, runId: body.runId, text });
    });
  }
});
