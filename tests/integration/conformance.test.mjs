// Property-based conformance: generated AG-UI streams through a strict proxy
// agent, with the official packages as the judge.
//
// Valid streams (lib/agui-gen.mjs: every event type of @ag-ui/core 1.0, their
// optional fields, several runs per stream, subagent attribution, chunk
// lanes, unicode and every legal JSON escape spelling, large deltas, values
// nested up to 63 containers inside an event) are sent by a mock upstream as
// SSE (odd but legal framing: CR, CRLF, BOM, comments, id/retry/unknown and
// event fields, data: with and without its space, multi-line data, writes
// split at any byte) or as @ag-ui/proto frames, and must reach an SSE client
// and a protobuf client unchanged: an SSE upstream's data texts byte for byte,
// a protobuf upstream's frames byte for byte, and across encodings exactly
// what @ag-ui/proto's decode(encode(event)) gives. @ag-ui/client's HttpAgent
// must see the same events through agate as it sees from the upstream itself.
//
// Invalid streams (lib/agui-judge.mjs: one mutation of a valid stream that
// @ag-ui/core's EventSchemas or @ag-ui/client's transformChunks/verifyEvents
// refuse, at the event the judge names) must reach both clients as the events
// before that one, unchanged, and then one RUN_ERROR (upstream_protocol_error)
// ending the stream; what agate sends is itself a stream the judge accepts.
//
// Seeded: AGATE_PROP_SEED=<n> (or "random") replays or varies the cases,
// AGATE_PROP_SCALE=<k> multiplies their number; the seed is in every test name.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { HttpAgent } from '@ag-ui/client';
import { AGUI_MEDIA_TYPE, decode } from '@ag-ui/proto';
import { startAgate, stopClean, runInput, parseSSE } from './lib/harness.mjs';
import { startAguiServer } from './lib/agui-server.mjs';
import { makeRng, genStream, ALL_TYPES, depthOf } from './lib/agui-gen.mjs';
import { writeJson, sseBytes, officialSseEvents, protoFrame, splitWrites } from './lib/agui-wire.mjs';
import { judge, mutate, viaProto, RawText, ALL_KINDS, SEQUENCE_KINDS } from './lib/agui-judge.mjs';

process.env.SUPPRESS_TRANSFORMATION_WARNINGS ??= 'true';   // the client's warnings about stripped members

const SSE = 'text/event-stream';
const SEED = process.env.AGATE_PROP_SEED === 'random' ? (Date.now() % 2147483647)
  : Number(process.env.AGATE_PROP_SEED ?? 20240613);
const SCALE = Number(process.env.AGATE_PROP_SCALE ?? 1);
if (!Number.isInteger(SEED) || !Number.isInteger(SCALE) || SCALE < 1) {
  throw new Error(`AGATE_PROP_SEED must be an integer or "random", AGATE_PROP_SCALE an integer >= 1`);
}
const COUNTS = { sse: 24 * SCALE, proto: 14 * SCALE, badSse: 24 * SCALE, badProto: 12 * SCALE };
const T = { timeout: 30000 };

// ---------------------------------------------------------------------------
// Cases: drawn up front, so a case does not depend on how the ones before it ran.

const master = makeRng(SEED);
const cases = new Map();   // id -> {id, name, upstream, items, texts?, pieces, ...}
let nextId = 0;

/** The features of an SSE-upstream case; the first few valid ones (i) have one feature each for sure. */
function sseFeatures(rng, i) {
  const f = {
    nul: rng.bool(0.2), named: rng.bool(0.2), deep: rng.bool(0.2) ? rng.int(20, 63) : 0,
    big: rng.bool(0.12) ? rng.int(64 << 10, 1 << 20) : 0, long: rng.bool(0.05) ? rng.int(300, 1500) : 0,
    eol: rng.pick(['\n', '\n', '\n', '\r\n', '\r']), bom: rng.bool(0.15), plain: rng.bool(0.3), multiline: rng.bool(0.3),
  };
  const first = [{ force: ALL_TYPES }, { nul: true }, { named: true }, { deep: 63 }, { big: 1 << 20 }, { eol: '\r\n' }, { eol: '\r', bom: true }, { multiline: true }, { long: 1500 }];
  return i >= 0 && i < first.length ? { ...f, nul: false, named: false, deep: 0, big: 0, long: 0, eol: '\n', bom: false, ...first[i] } : f;
}
function protoFeatures(rng, i) {
  const f = { nul: rng.bool(0.2), deep: rng.bool(0.25) ? rng.int(20, 63) : 0, big: rng.bool(0.12) ? rng.int(64 << 10, 1 << 20) : 0, long: rng.bool(0.05) ? rng.int(300, 1500) : 0 };
  const first = [{ force: ALL_TYPES }, { deep: 63 }, { big: 1 << 20 }, { long: 1500 }, { nul: true }];
  return i >= 0 && i < first.length ? { ...f, nul: false, deep: 0, big: 0, long: 0, ...first[i] } : f;
}
const label = (f) => Object.entries(f).filter(([k, v]) => v && k !== 'plain' && !(k === 'eol' && v === '\n'))
  .map(([k, v]) => (k === 'force' ? 'all-types' : k === 'eol' ? JSON.stringify(v) : v === true ? k : `${k}=${v}`)).join(',');

/** What a stream needs for a mutation kind to apply to it. */
const needs = (kind) => ({
  afterError: { end: 'RUN_ERROR' }, afterFinished: { end: 'RUN_FINISHED' },
  chunkDisagrees: { force: ['TEXT_MESSAGE_CHUNK', 'TOOL_CALL_CHUNK'] },
}[kind] ?? {});

function sseCase(kind, i) {
  const seed = master.int(0, 2 ** 31 - 1);
  const rng = makeRng(seed);
  const f = sseFeatures(rng, kind === 'good' ? i : -1);
  // Invalid cases take the kinds of mutation in turn.
  const want = kind === 'bad' ? ALL_KINDS[i % ALL_KINDS.length] : undefined;
  const events = genStream(rng, { nul: f.nul, deep: f.deep, big: f.big, length: f.long || undefined, force: f.force, ...needs(want) });
  const c = { id: ++nextId, upstream: 'sse', seed, features: f, events };
  if (kind === 'bad') Object.assign(c, { bad: mutate(rng, events, { kind: want }) });
  const items = c.bad ? c.bad.items : events;
  c.texts = items.map((e) => (e instanceof RawText ? e.text : writeJson(rng, e, { plain: f.plain, multiline: f.multiline })));
  const { bytes, named } = sseBytes(rng, c.texts, { eol: f.eol, bom: f.bom, named: f.named });
  c.namedFrames = named;
  c.bytes = bytes;
  c.pieces = splitWrites(rng, bytes);
  c.name = `${kind === 'bad' ? 'invalid' : 'valid'} SSE upstream #${i} seed=${seed} [${label(f)}] ${items.length} events${c.bad ? `, ${c.bad.kind} at ${c.bad.index} (${c.bad.stage})` : ''}`;
  cases.set(c.id, c);
  return c;
}

function protoCase(kind, i) {
  const seed = master.int(0, 2 ** 31 - 1);
  const rng = makeRng(seed);
  const f = protoFeatures(rng, kind === 'good' ? i : -1);
  const want = kind === 'bad' ? SEQUENCE_KINDS[i % SEQUENCE_KINDS.length] : undefined;
  const events = genStream(rng, { nul: f.nul, deep: f.deep, big: f.big, length: f.long || undefined, force: f.force, ...needs(want) });
  const c = { id: ++nextId, upstream: 'proto', seed, features: f, events };
  if (kind === 'bad') Object.assign(c, { bad: mutate(rng, events, { proto: true, kind: want }) });
  c.items = c.bad ? c.bad.items : events;
  c.frames = c.items.map(protoFrame);
  c.pieces = splitWrites(rng, Buffer.concat(c.frames));
  c.name = `${kind === 'bad' ? 'invalid' : 'valid'} protobuf upstream #${i} seed=${seed} [${label(f)}] ${c.items.length} events${c.bad ? `, ${c.bad.kind} at ${c.bad.index}` : ''}`;
  cases.set(c.id, c);
  return c;
}

const valid = { sse: [], proto: [] };
const invalid = { sse: [], proto: [] };
for (let i = 0; i < COUNTS.sse; i++) valid.sse.push(sseCase('good', i));
for (let i = 0; i < COUNTS.proto; i++) valid.proto.push(protoCase('good', i));
for (let i = 0; i < COUNTS.badSse; i++) invalid.sse.push(sseCase('bad', i));
for (let i = 0; i < COUNTS.badProto; i++) invalid.proto.push(protoCase('bad', i));

// ---------------------------------------------------------------------------
// agate in front of one mock upstream that answers each case by its id
// (forwardedProps.conformance, which agate forwards unchanged).

let agate;
let up;
const t0 = Date.now();

before(async () => {
  up = await startAguiServer({
    script: (rec) => {
      const c = cases.get(rec.json?.forwardedProps?.conformance);
      if (!c) return { mode: 'status', status: 404, body: 'no such case' };
      return { contentType: c.upstream === 'sse' ? SSE : AGUI_MEDIA_TYPE, events: c.pieces.map((raw) => ({ raw })) };
    },
  });
  agate = await startAgate({
    config: [
      'agents:',
      '  up:',
      '    type: proxy',
      `    endpoints: [${up.url}]`,
      '    timeouts: {connect: 2s, first_event: 20s, idle: 20s, run: 60s}',
      '    retry: {attempts: 0}',
      '    validation: strict',
      '    max_event: 16MiB',
      '',
    ].join('\n'),
  });
});
after(async () => {
  if (agate) await stopClean(agate);
  if (up) await up.close();
  process.stderr.write(`# conformance: seed ${SEED}, ${cases.size} streams, ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
});

const agentUrl = () => `http://127.0.0.1:${agate.port}/v1/agents/up/run`;

/** One run of a case through agate with an Accept header: {status, contentType, body}. */
async function post(c, accept) {
  const res = await fetch(agentUrl(), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: accept },
    body: JSON.stringify(runInput(undefined, { forwardedProps: { conformance: c.id } })),
  });
  return { status: res.status, contentType: res.headers.get('content-type'), body: Buffer.from(await res.arrayBuffer()) };
}

/** The data texts of an SSE body; the body must end with a whole frame. */
function sseDatas(body) {
  const { frames, rest } = parseSSE(body.toString('utf8'));
  assert.equal(rest, '', 'the SSE body ends with a whole frame');
  return frames.filter((f) => f.data !== null).map((f) => f.data);
}

/** The events of a protobuf body, each decoded with @ag-ui/proto. */
function protoEvents(body) {
  const out = [];
  let i = 0;
  while (i + 4 <= body.length) {
    const n = body.readUInt32BE(i);
    assert.ok(i + 4 + n <= body.length, `frame at byte ${i} runs past the body`);
    out.push(decode(body.subarray(i + 4, i + 4 + n)));
    i += 4 + n;
  }
  assert.equal(i, body.length, 'no bytes after the last frame');
  return out;
}

const short = (x) => { const s = typeof x === 'string' ? x : JSON.stringify(x); return s.length > 300 ? `${s.slice(0, 300)}... (${s.length} chars)` : s; };

/** Lists equal, element by element; a failure names the first difference. */
function assertSameList(got, want, what, eq = (a, b) => assert.deepStrictEqual(a, b)) {
  const n = Math.min(got.length, want.length);
  for (let i = 0; i < n; i++) {
    try { eq(got[i], want[i]); } catch {
      assert.fail(`${what}: item ${i} of ${want.length} differs\n  got:  ${short(got[i])}\n  want: ${short(want[i])}`);
    }
  }
  assert.equal(got.length, want.length, `${what}: ${got.length} items, expected ${want.length}; extra or missing: ${short((got.length > n ? got : want).slice(n, n + 2))}`);
}

function assertRunError(e, where) {
  assert.equal(e?.type, 'RUN_ERROR', `${where}: the stream ends with RUN_ERROR, got ${short(e)}`);
  assert.equal(e.code, 'upstream_protocol_error', `${where}: RUN_ERROR code`);
}

// ---------------------------------------------------------------------------
// HttpAgent: the official client, against the upstream itself and through agate.

/** The events HttpAgent hands its subscribers for a case, and how the run ended. */
async function agentRun(c, url, accept) {
  const fetchImpl = accept ? (u, init) => fetch(u, { ...init, headers: { ...init.headers, Accept: accept } }) : undefined;
  const agent = new HttpAgent({ url, threadId: 'conformance-thread', ...(fetchImpl ? { fetch: fetchImpl } : {}) });
  const events = [];
  let error = null;
  const { error: origError, warn: origWarn } = console;
  // The client logs a failed run before it rejects, and warns about patches
  // it cannot apply to its state (generated patches need not apply).
  console.error = () => {};
  console.warn = () => {};
  try {
    await agent.runAgent({ runId: `conf-${c.id}`, forwardedProps: { conformance: c.id } }, {
      onEvent: ({ event }) => { events.push(event); },
    });
  } catch (e) {
    error = e.message;
  } finally {
    console.error = origError;
    console.warn = origWarn;
  }
  return { events, error };
}

// ---------------------------------------------------------------------------

describe('generated streams through a strict proxy agent', () => {
  test(`@ag-ui/core exports the 31 event types of AG-UI 1.0, and the valid streams (seed ${SEED}) use every one from both upstream encodings; the invalid ones every kind of mutation`, () => {
    assert.equal(ALL_TYPES.length, 31, `event types: ${ALL_TYPES.join(' ')}`);
    for (const [enc, list] of Object.entries(valid)) {
      const seen = new Set(list.flatMap((c) => (c.items ?? c.events).map((e) => e.type)));
      assert.deepEqual(ALL_TYPES.filter((t) => !seen.has(t)), [], `types no ${enc} case sends`);
    }
    assert.ok(valid.sse.some((c) => c.events.some((e) => depthOf(e) === 64)), 'an event 64 containers deep (63 inside it)');
    const used = (list) => new Set(list.map((c) => c.bad.kind));
    assert.deepEqual(ALL_KINDS.filter((k) => !used(invalid.sse).has(k)), [], 'mutation kinds no invalid SSE case uses');
    assert.deepEqual(SEQUENCE_KINDS.filter((k) => !used(invalid.proto).has(k)), [], 'mutation kinds no invalid protobuf case uses');
  });

  for (const c of valid.sse) {
    test(c.name, T, async () => {
      const want = c.texts.map((t) => JSON.parse(t));
      const verdict = judge(c.texts);
      assert.ok(verdict.ok, `test self-check: the official judge accepts the stream: ${JSON.stringify(verdict)}`);
      if (c.features.eol === '\n') {
        assert.deepStrictEqual(officialSseEvents(c.bytes), want, 'test self-check: @ag-ui/client\'s SSE parser reads the framing');
      }

      const sse = await post(c, SSE);
      assert.equal(sse.status, 200);
      assert.equal(sse.contentType, SSE);
      assertSameList(sseDatas(sse.body), c.texts, `SSE client (data texts byte for byte; frames with an event name: ${c.namedFrames.join(' ') || 'none'})`, (a, b) => assert.equal(a, b));

      const pb = await post(c, AGUI_MEDIA_TYPE);
      assert.equal(pb.status, 200);
      assert.equal(pb.contentType, AGUI_MEDIA_TYPE);
      assertSameList(protoEvents(pb.body), want.map(viaProto), 'protobuf client (decode(encode(event)))');

      if (c.features.eol === '\n' && c.id % 2 === 0) {
        const direct = await agentRun(c, up.url);
        const through = await agentRun(c, agentUrl());
        assert.equal(through.error, direct.error, 'HttpAgent: the run ends the same way');
        assertSameList(through.events, direct.events, 'HttpAgent through agate vs from the upstream');
      }
    });
  }

  for (const c of valid.proto) {
    test(c.name, T, async () => {
      const want = c.items.map(viaProto);
      const verdict = judge(want);
      assert.ok(verdict.ok, `test self-check: the official judge accepts the stream: ${JSON.stringify(verdict)}`);

      const sse = await post(c, SSE);
      assert.equal(sse.status, 200);
      assertSameList(sseDatas(sse.body).map((d) => JSON.parse(d)), want, 'SSE client (decode(encode(event)))');

      const pb = await post(c, AGUI_MEDIA_TYPE);
      assert.equal(pb.status, 200);
      assertSameList(protoEvents(pb.body), want, 'protobuf client');
      assert.ok(pb.body.equals(Buffer.concat(c.frames)), 'protobuf client: the frames byte for byte');

      if (c.id % 2 === 0) {
        const direct = await agentRun(c, up.url);
        for (const accept of [SSE, AGUI_MEDIA_TYPE]) {
          const through = await agentRun(c, agentUrl(), accept);
          assert.equal(through.error, direct.error, `HttpAgent (${accept}): the run ends the same way`);
          assertSameList(through.events, direct.events, `HttpAgent (${accept}) through agate vs from the upstream`);
        }
      }
    });
  }

  for (const c of [...invalid.sse, ...invalid.proto]) {
    test(c.name, T, async () => {
      const { index: k, reason } = c.bad;
      const sent = c.upstream === 'sse' ? c.texts : c.items.map(viaProto);
      const verdict = judge(sent);
      assert.ok(!verdict.ok && verdict.index === k, `test self-check: the judge refuses event ${k}: ${JSON.stringify(verdict)}`);
      const before = c.upstream === 'sse' ? c.texts.slice(0, k).map((t) => JSON.parse(t)) : sent.slice(0, k);
      const why = `the judge: ${reason}`;

      // After the upstream's own RUN_ERROR the client's run is over: the stream
      // just ends (a second RUN_ERROR would break the protocol).
      const closed = before.at(-1)?.type === 'RUN_ERROR';
      const sse = await post(c, SSE);
      assert.equal(sse.status, 200);
      const datas = sseDatas(sse.body);
      const got = datas.map((d) => JSON.parse(d));
      const prefix = closed ? datas : datas.slice(0, -1);
      if (!closed) assertRunError(got.at(-1), `SSE client (${why})`);
      if (c.upstream === 'sse') assertSameList(prefix, c.texts.slice(0, k), `SSE client, the events before event ${k}`, (a, b) => assert.equal(a, b));
      else assertSameList(prefix.map((d) => JSON.parse(d)), before, `SSE client, the events before event ${k}`);
      const out = judge(datas);
      assert.ok(out.ok, `what agate sent passes the judge: ${JSON.stringify(out)}`);

      const pb = await post(c, AGUI_MEDIA_TYPE);
      assert.equal(pb.status, 200);
      const pbEvents = protoEvents(pb.body);
      if (!closed) assertRunError(pbEvents.at(-1), `protobuf client (${why})`);
      assertSameList(closed ? pbEvents : pbEvents.slice(0, -1), before.map(viaProto), `protobuf client, the events before event ${k}`);

      if (c.id % 3 === 0 && (c.upstream === 'proto' || c.features.eol === '\n')) {
        // Straight from the upstream HttpAgent fails the run; through agate it
        // gets a run that ends with RUN_ERROR and fails nothing.
        // (HttpAgent is lenient where agate is strict on purpose: it drops
        // unknown types and turns pre-1.0 nulls into absence; it runs the same
        // sequence rules.)
        if (c.bad.stage === 'sequence') assert.ok((await agentRun(c, up.url)).error, 'test self-check: HttpAgent refuses the upstream\'s stream');
        const through = await agentRun(c, agentUrl());
        assert.equal(through.error, null, 'HttpAgent accepts what agate sends');
        assert.equal(through.events.at(-1)?.type, 'RUN_ERROR');
        if (!closed) assert.equal(through.events.at(-1).code, 'upstream_protocol_error');
      }
    });
  }
});
