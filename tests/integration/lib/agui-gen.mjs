// Generated AG-UI runs for the conformance test (conformance.test.mjs): a
// seeded PRNG, JSON values (unicode, escapes-to-be, deep nesting, large
// strings) and valid event sequences that use every event type of
// @ag-ui/core 1.0 with their optional fields.
//
// A sequence is valid by construction: the generator keeps the same state
// @ag-ui/client keeps (open messages, tool calls, reasoning spans and
// messages, steps per owner, subagents, chunk lanes per owner, owners of
// every id) and only emits what that state allows. The test does not trust
// this: every generated sequence is checked by the official judge
// (agui-judge.mjs) before it is sent, and one it rejects fails the test as a
// generator bug.
import { EventType } from '@ag-ui/core';

/** Every event type @ag-ui/core exports (31 in 1.0). */
export const ALL_TYPES = Object.values(EventType);

// ---------------------------------------------------------------------------
// PRNG: mulberry32, 32-bit state, good enough to pick test inputs; the seed is
// printed with every failure and can be forced (AGATE_PROP_SEED).

export function makeRng(seed) {
  let s = seed >>> 0;
  const float = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const rng = {
    float,
    int: (lo, hi) => lo + Math.floor(float() * (hi - lo + 1)),   // inclusive
    bool: (p = 0.5) => float() < p,
    pick: (a) => a[Math.floor(float() * a.length)],
    /** A child generator: a case's stream of numbers does not depend on how many the last case drew. */
    fork: () => makeRng(Math.floor(float() * 4294967296)),
  };
  return rng;
}

// ---------------------------------------------------------------------------
// Strings

// Pieces drawn from: ASCII, JSON's specials, control characters, Latin-1,
// Cyrillic, CJK, Arabic, emoji (astral: surrogate pairs in UTF-16), ZWJ
// sequences and combining marks, the JS-only line breaks U+2028/2029, the BOM
// and noncharacters, and text that looks like SSE framing.
const PIECES = [
  'hello', 'world', 'a', 'Z', '0', '42', ' ', '  ', '.', ',', '-', '_', '?',
  '"', '\\', '/', '\'', '{', '}', '[', ']', ':', '"}', '\\"', '\\u0041',
  '\t', '\n', '\r', '\r\n', '\b', '\f', '\u0001', '\u001f', '\u007f', '\u0085',
  'é', 'ß', 'ø', 'ñ', 'Ü', '©', '\u00a0',
  'Здравствуй', 'мир', '世界', '日本語', '한국어', 'مرحبا', 'שלום', 'ελληνικά',
  '😀', '🎉', '👍🏽', '👨‍👩‍👧', '🏳️‍🌈', '𝄞', '\u{10ffff}', '\u{1f600}\u{1f601}',
  'e\u0301', '\u200d', '\u200b', '\u2028', '\u2029', '\ufeff', '\ufffd', '\uffff', '\ufffe',
  'data: {"type":"RUN_ERROR"}', '\n\ndata: x\n\n', ': ping', 'event: message', 'id: 7', '\r\r',
];

/**
 * A random string of up to `max` pieces. nul: may hold U+0000.
 */
export function genString(rng, { max = 6, min = 0, nul = false } = {}) {
  const n = rng.int(min, max);
  let s = '';
  for (let i = 0; i < n; i++) s += nul && rng.bool(0.08) ? '\u0000' : rng.pick(PIECES);
  return s;
}

/** A large string (deltas of hundreds of KiB): a random piece pattern repeated. */
export function genBigString(rng, bytes, { nul = false } = {}) {
  let unit = '';
  while (unit.length < 200) unit += genString(rng, { min: 1, max: 8, nul });
  const reps = Math.max(1, Math.floor(bytes / Buffer.byteLength(unit)));
  return `${rng.int(0, 9999)}:${unit.repeat(reps)}`;
}

// Object keys: plain, empty, unicode, escapes-to-be, and U+0000 when allowed.
// Never "__proto__" (a JS object literal would not keep it as a member).
function genKey(rng, o) {
  if (rng.bool(0.6)) return rng.pick(['a', 'b', 'value', 'items', 'x-y', 'camelCase', '0', '1', 'type', 'id', 'k']);
  const k = genString(rng, { max: 3, nul: o.nul });
  return k === '__proto__' ? 'proto' : k;
}

// ---------------------------------------------------------------------------
// Numbers and values

const NUMBERS = [0, 1, -1, 7, 42, -273, 1000, 65535, 2 ** 31, -(2 ** 31), 2 ** 53 - 1, -(2 ** 53 - 1),
  2 ** 53, 1e21, 123456789012, 0.5, -0.25, 3.141592653589793, 1e-7, 6.02214076e23, -1.5e-300, 1.7976931348623157e308,
  5e-324, 0.1, 0.30000000000000004, -0];

function genNumber(rng) {
  if (rng.bool(0.5)) return rng.pick(NUMBERS);
  return rng.bool() ? rng.int(-1e6, 1e6) : (rng.float() - 0.5) * 10 ** rng.int(-10, 30);
}

/** Any JSON value; depth: containers still allowed below this one. */
export function genValue(rng, depth = 3, o = {}) {
  const r = rng.float();
  if (depth <= 0 || r < 0.45) {
    const k = rng.int(0, 5);
    if (k === 0) return null;
    if (k === 1) return rng.bool();
    if (k <= 3) return genNumber(rng);
    return genString(rng, { nul: o.nul });
  }
  if (r < 0.7) return Array.from({ length: rng.int(0, 4) }, () => genValue(rng, depth - 1, o));
  return genObject(rng, depth, o);
}

/** A JSON object of up to 4 members. */
export function genObject(rng, depth = 2, o = {}) {
  const obj = {};
  const n = rng.int(0, 4);
  for (let i = 0; i < n; i++) obj[genKey(rng, o)] = genValue(rng, depth - 1, o);
  return obj;
}

/** A value of exactly `levels` nested containers (objects and arrays), with siblings on the way. */
export function genDeep(rng, levels, o = {}) {
  let v = genValue(rng, 0, o);
  for (let i = 0; i < levels; i++) {
    if (rng.bool()) {
      const obj = rng.bool(0.3) ? genObject(rng, 0, o) : {};
      obj[rng.bool(0.8) ? 'n' : genKey(rng, o)] = v;
      v = obj;
    } else {
      v = rng.bool(0.3) ? [genValue(rng, 0, o), v] : [v];
    }
  }
  return v;
}

/** Nesting of a JSON value: 1 for a container of scalars, 0 for a scalar. */
export function depthOf(v) {
  if (v === null || typeof v !== 'object') return 0;
  let d = 0;
  for (const x of Array.isArray(v) ? v : Object.values(v)) d = Math.max(d, depthOf(x));
  return d + 1;
}

// ---------------------------------------------------------------------------
// The pieces of events

const opt = (rng, p, f) => (rng.bool(p) ? f() : undefined);

/** Drops members whose value is undefined (optional fields that were not drawn). */
function clean(obj) {
  for (const k of Object.keys(obj)) if (obj[k] === undefined) delete obj[k];
  return obj;
}

const EXTRA_KEYS = ['x-vendor', 'futureField', 'ext', 'ü', ''];
/** Every object of the schema is loose: now and then a member it does not describe. */
function loose(rng, obj, o, p = 0.08) {
  if (rng.bool(p)) obj[rng.pick(EXTRA_KEYS)] = genValue(rng, 1, o);
  return obj;
}

function base(rng, o) {
  return {
    timestamp: opt(rng, 0.2, () => rng.pick([0, 1700000000123, -1, 2 ** 53 - 1, -(2 ** 53 - 1), rng.int(0, 2 ** 40)])),
    rawEvent: opt(rng, 0.1, () => { const v = genValue(rng, 2, o); return v === null ? 'raw' : v; }),
    metadata: opt(rng, 0.12, () => genObject(rng, 2, o)),
  };
}

const TEXT_ROLES = ['developer', 'system', 'assistant', 'user'];

function mimeType(rng) { return rng.pick(['image/png', 'audio/wav', 'video/mp4', 'application/pdf', 'text/plain; charset=utf-8']); }

function genSource(rng, o) {
  const t = rng.pick(['data', 'url', 'file']);
  if (t === 'data') return { type: 'data', value: rng.pick(['AA==', 'JVBERi0=', genString(rng, { nul: o.nul })]), mimeType: mimeType(rng) };
  if (t === 'url') return clean({ type: 'url', value: `https://example.invalid/${genString(rng, { max: 2 })}`, mimeType: opt(rng, 0.5, () => mimeType(rng)) });
  return clean({ type: 'file', value: `file-${rng.int(0, 99)}`, provider: opt(rng, 0.5, () => 'openai'), mimeType: opt(rng, 0.5, () => mimeType(rng)) });
}

function genPart(rng, o) {
  const t = rng.pick(['text', 'text', 'image', 'audio', 'video', 'document']);
  const meta = opt(rng, 0.15, () => genObject(rng, 1, o));
  if (t === 'text') return loose(rng, clean({ type: 'text', text: genString(rng, { nul: o.nul }), id: opt(rng, 0.3, () => `part-${rng.int(0, 99)}`), metadata: meta }), o);
  return loose(rng, clean({ type: t, source: genSource(rng, o), id: opt(rng, 0.3, () => `part-${rng.int(0, 99)}`), metadata: meta }), o);
}

function genContent(rng, o) {
  return rng.bool(0.6) ? genString(rng, { nul: o.nul }) : Array.from({ length: rng.int(0, 3) }, () => genPart(rng, o));
}

function genPatch(rng, o) {
  const ptr = () => rng.pick(['', '/a', '/a/0', '/a/-', '/b/c', '/~0tilde/~1slash', `/${genString(rng, { max: 2 }).replace(/[~/]/g, '')}`]);
  return Array.from({ length: rng.int(0, 4) }, () => {
    const op = rng.pick(['add', 'remove', 'replace', 'move', 'copy', 'test']);
    if (op === 'remove') return { op, path: ptr() };
    if (op === 'move' || op === 'copy') return { op, from: ptr(), path: ptr() };
    return { op, path: ptr(), value: genValue(rng, 2, o) };
  });
}

function genUsage(rng) {
  return clean({
    provider: opt(rng, 0.5, () => 'p'), model: opt(rng, 0.5, () => 'm'),
    inputTokens: opt(rng, 0.5, () => rng.int(0, 5000)), outputTokens: opt(rng, 0.5, () => rng.int(0, 5000)),
    totalTokens: opt(rng, 0.3, () => rng.int(0, 9000)), reasoningTokens: opt(rng, 0.2, () => rng.int(0, 100)),
    cachedInputTokens: opt(rng, 0.2, () => rng.int(0, 100)), cacheWriteInputTokens: opt(rng, 0.2, () => rng.int(0, 100)),
  });
}

/** A message of any of the seven roles, with a fresh id (and its tool calls fresh ids). */
function genMessage(rng, fresh, o) {
  const role = rng.pick(['developer', 'system', 'assistant', 'user', 'tool', 'activity', 'reasoning']);
  const m = { id: fresh('hist'), role };
  const common = () => ({
    subagentRunId: opt(rng, 0.1, () => fresh('histsub')),
    metadata: opt(rng, 0.1, () => genObject(rng, 1, o)),
  });
  switch (role) {
    case 'developer': case 'system':
      Object.assign(m, { content: genString(rng, { nul: o.nul }), name: opt(rng, 0.3, () => 'nm'), encryptedValue: opt(rng, 0.1, () => 'enc') }, common());
      break;
    case 'assistant':
      Object.assign(m, {
        content: opt(rng, 0.7, () => genString(rng, { nul: o.nul })), name: opt(rng, 0.2, () => 'bot'),
        toolCalls: opt(rng, 0.4, () => Array.from({ length: rng.int(1, 2) }, () => clean({
          id: fresh('histcall'), type: 'function',
          function: { name: rng.pick(['get_weather', 'search', 'f']), arguments: JSON.stringify(genObject(rng, 1, { nul: o.nul })) },
          encryptedValue: opt(rng, 0.1, () => 'enc'), metadata: opt(rng, 0.1, () => genObject(rng, 1, o)),
        }))),
      }, common());
      break;
    case 'user':
      Object.assign(m, { content: genContent(rng, o), name: opt(rng, 0.2, () => 'me') }, common());
      break;
    case 'tool':
      Object.assign(m, { content: genContent(rng, o), toolCallId: fresh('histcall'), error: opt(rng, 0.2, () => genString(rng, {})) }, common());
      break;
    case 'activity':
      Object.assign(m, { activityType: rng.pick(['plan', 'search', 'progress']), content: genObject(rng, 2, o) }, common());
      break;
    default:   // reasoning
      Object.assign(m, { content: genString(rng, { nul: o.nul }), encryptedValue: opt(rng, 0.3, () => 'enc') }, common());
  }
  return loose(rng, clean(m), o, 0.1);
}

function genRunInput(rng, threadId, runId, fresh, o) {
  return loose(rng, clean({
    threadId, runId,
    parentRunId: opt(rng, 0.2, () => 'parent-run'),
    state: opt(rng, 0.5, () => genObject(rng, 2, o)),
    messages: Array.from({ length: rng.int(0, 3) }, () => genMessage(rng, fresh, o)),
    tools: opt(rng, 0.5, () => [{ name: 'get_weather', description: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } }]),
    context: opt(rng, 0.4, () => [{ description: 'locale', value: genString(rng, { max: 2 }) }]),
    forwardedProps: opt(rng, 0.3, () => genObject(rng, 1, o)),
    resume: opt(rng, 0.2, () => [clean({ interruptId: 'i0', status: rng.pick(['resolved', 'cancelled']), payload: opt(rng, 0.5, () => ({ ok: true })) })]),
  }), o, 0.2);
}

// ---------------------------------------------------------------------------
// Runs

/** Types whose arrival closes the chunk lane of their own subagentRunId (transformChunks). */
const CLOSES_OWN_LANE = new Set(['TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_END',
  'TOOL_CALL_START', 'TOOL_CALL_ARGS', 'TOOL_CALL_END', 'TOOL_CALL_RESULT', 'STATE_SNAPSHOT', 'STATE_DELTA',
  'CUSTOM', 'STEP_STARTED', 'STEP_FINISHED', 'REASONING_START', 'REASONING_MESSAGE_START',
  'REASONING_MESSAGE_CONTENT', 'REASONING_MESSAGE_END', 'REASONING_END']);
const CLOSES_ALL_LANES = new Set(['RUN_STARTED', 'RUN_FINISHED', 'RUN_ERROR', 'MESSAGES_SNAPSHOT']);

/**
 * One stream: one run, sometimes followed by more (a stream may carry several
 * runs, each started after the last finished or errored).
 *   o.nul     strings and keys may hold U+0000
 *   o.big     bytes of one large delta somewhere (0: none)
 *   o.deep    containers nested inside the event object by one deep value (0: none);
 *             the event's own object makes it one level more
 *   o.end     'RUN_ERROR' to end the last run with one (else drawn)
 *   o.force   event types that must appear in this stream
 *   o.length  about how many events the first run has
 */
export function genStream(rng, o = {}) {
  let seq = 0;
  const tag = rng.int(0, 0xffff).toString(16);
  // Ids: unique in the stream, some with unicode or characters that escape in JSON.
  const fresh = (p) => {
    const n = ++seq;
    const deco = rng.bool(0.15) ? rng.pick(['é', '世', '😀', '"q"', '\\', '/', ' ', '\u2028', '\t']) : '';
    return `${p}${deco}-${tag}-${n}${o.nul && rng.bool(0.05) ? '\u0000' : ''}`;
  };
  const events = [];
  const force = (o.force ?? []).filter((t) => t !== 'RUN_ERROR');
  const end = o.force?.includes('RUN_ERROR') ? 'RUN_ERROR' : o.end;
  let big = o.big ?? 0;
  let deep = o.deep ?? 0;
  const runs = rng.bool(0.25) ? rng.int(2, 3) : 1;
  for (let i = 0; i < runs; i++) {
    const run = new RunGen(rng, fresh, o, events);
    run.start();
    const target = (i === 0 ? o.length ?? rng.int(4, 40) : rng.int(2, 12)) + force.length * 3;
    while (run.emitted < target || (i === runs - 1 && force.length)) {
      if (force.length && rng.bool(0.35)) {
        if (run.forceType(force[0])) force.shift();
        else force.push(force.shift());   // not possible now (e.g. RUN_ERROR): later
        if (force.length && run.emitted > target + 200) throw new Error(`generator: cannot force ${force.join(',')}`);
        continue;
      }
      run.step();
    }
    if (big) { run.bigDelta(big); big = 0; }
    if (deep) { run.deepValue(deep); deep = 0; }
    if (o.nul && i === 0) run.custom({ 'key\u0000with NUL': genString(rng, { nul: true }) });   // one U+0000 key for sure
    const last = i === runs - 1;
    run.finish(last ? end : undefined);
  }
  return events;
}

/** One run's state: exactly what verifyEvents and transformChunks remember, per owner. */
class RunGen {
  constructor(rng, fresh, o, out) {
    Object.assign(this, { rng, fresh, o, out, emitted: 0 });
    this.threadId = fresh('thread');
    this.runId = fresh('run');
    this.subs = [];           // active subagent run ids
    this.closedSubs = [];
    this.texts = [];          // open text messages {id, owner}
    this.tools = [];          // open tool calls {id, owner}
    this.spans = [];          // open reasoning spans {id, owner}
    this.rmsgs = [];          // open reasoning messages {id, owner}
    this.steps = [];          // open steps {name, owner}
    this.lanes = new Map();   // owner -> {kind, id, owner, role, name, parent}
    this.owners = { message: new Map(), tool: new Map(), reasoning: new Map(), activity: new Map() };
  }

  // ---- emitting: applies transformChunks' lane closing rules to the model ----
  emit(ev) {
    const t = ev.type;
    if (CLOSES_ALL_LANES.has(t)) this.lanes.clear();
    else if (CLOSES_OWN_LANE.has(t)) this.lanes.delete(ev.subagentRunId);
    else if ((t === 'SUBAGENT_FINISHED' || t === 'SUBAGENT_ERROR')) this.lanes.delete(ev.subagentRunId);
    this.push(ev);
  }
  /** Events are loose objects: now and then a member no schema describes. */
  push(ev) {
    this.out.push(loose(this.rng, clean(ev), this.o));
    this.emitted++;
  }

  /** An owner for a new entity: the parent (undefined), an active subagent, or
   *  (attribution only, no SUBAGENT_* events) a tag nothing started. */
  newOwner() {
    const r = this.rng.float();
    if (r < 0.55) return undefined;
    if (this.subs.length && r < 0.95) return this.rng.pick(this.subs);
    // "" is a legal subagent id, and not the parent.
    return r < 0.96 ? this.fresh('ghost') : r < 0.98 ? '' : undefined;
  }
  /** The tag a continuation carries: absent (always agrees), or its owner's. */
  contTag(owner) { return owner !== undefined && this.rng.bool(0.6) ? owner : undefined; }
  str(max = 6) { return genString(this.rng, { max, nul: this.o.nul }); }
  b() { return base(this.rng, this.o); }

  start() {
    const rng = this.rng;
    this.emit({
      type: 'RUN_STARTED', threadId: this.threadId, runId: this.runId,
      parentRunId: opt(rng, 0.15, () => 'parent-run'), protocolVersion: opt(rng, 0.2, () => '1.0'),
      input: opt(rng, 0.3, () => genRunInput(rng, this.threadId, this.runId, this.fresh, this.o)),
      ...this.b(),
    });
  }

  // ---- actions: each emits one event if the state allows it, else returns false ----
  textStart() {
    const owner = this.newOwner();
    const id = this.fresh('msg');
    this.owners.message.set(id, owner);
    this.texts.push({ id, owner });
    this.emit({ type: 'TEXT_MESSAGE_START', messageId: id, role: opt(this.rng, 0.7, () => this.rng.pick(TEXT_ROLES)), name: opt(this.rng, 0.2, () => this.str(2)), subagentRunId: owner, ...this.b() });
    return true;
  }
  textContent(delta) {
    if (!this.texts.length) return false;
    const m = this.rng.pick(this.texts);
    this.emit({ type: 'TEXT_MESSAGE_CONTENT', messageId: m.id, delta: delta ?? this.str(), subagentRunId: this.contTag(m.owner), ...this.lite() });
    return true;
  }
  textEnd() { return this.close(this.texts, (m) => ({ type: 'TEXT_MESSAGE_END', messageId: m.id, subagentRunId: this.contTag(m.owner), ...this.lite() })); }

  toolStart() {
    const owner = this.newOwner();
    const id = this.fresh('call');
    // A tool call lives in its parent message and has that message's owner.
    const parents = [...this.owners.message].filter(([, ow]) => ow === owner).map(([mid]) => mid);
    const parent = parents.length && this.rng.bool(0.5) ? this.rng.pick(parents) : undefined;
    this.owners.tool.set(id, owner);
    this.tools.push({ id, owner });
    this.emit({ type: 'TOOL_CALL_START', toolCallId: id, toolCallName: this.rng.pick(['get_weather', 'search', 'f', this.str(2)]), parentMessageId: parent, subagentRunId: owner, ...this.b() });
    return true;
  }
  toolArgs(delta) {
    if (!this.tools.length) return false;
    const c = this.rng.pick(this.tools);
    this.emit({ type: 'TOOL_CALL_ARGS', toolCallId: c.id, delta: delta ?? Array.from(JSON.stringify(genObject(this.rng, 1, { nul: this.o.nul }))).slice(0, this.rng.int(0, 40)).join(''), subagentRunId: this.contTag(c.owner), ...this.lite() });
    return true;
  }
  toolEnd() { return this.close(this.tools, (c) => ({ type: 'TOOL_CALL_END', toolCallId: c.id, subagentRunId: this.contTag(c.owner), ...this.lite() })); }
  toolResult() {
    const calls = [...this.owners.tool.keys()];
    const owner = this.newOwner();
    const id = this.fresh('result');
    this.owners.message.set(id, owner);   // the newest mint owns the message
    this.emit({ type: 'TOOL_CALL_RESULT', messageId: id, toolCallId: calls.length ? this.rng.pick(calls) : this.fresh('call'), content: genContent(this.rng, this.o), role: opt(this.rng, 0.5, () => 'tool'), subagentRunId: owner, ...this.b() });
    return true;
  }

  reasoningStart() {
    const owner = this.newOwner();
    const id = this.fresh('think');
    this.owners.reasoning.set(id, owner);
    this.spans.push({ id, owner });
    this.emit({ type: 'REASONING_START', messageId: id, subagentRunId: owner, ...this.b() });
    return true;
  }
  reasoningMessageStart() {
    // Often inside a span and under its id (the canonical shape), else fresh.
    const free = this.spans.filter((s) => !this.rmsgs.some((m) => m.id === s.id));
    let id, owner;
    if (free.length && this.rng.bool(0.6)) ({ id, owner } = this.rng.pick(free));
    else { owner = this.newOwner(); id = this.fresh('rmsg'); this.owners.reasoning.set(id, owner); }
    // The first opener of an id records its owner (untagged: the parent); a
    // message inside its span may leave the tag out.
    const shared = this.spans.some((sp) => sp.id === id);
    this.rmsgs.push({ id, owner });
    this.emit({ type: 'REASONING_MESSAGE_START', messageId: id, role: 'reasoning', subagentRunId: shared ? this.contTag(owner) : owner, ...this.b() });
    return true;
  }
  reasoningContent(delta) {
    if (!this.rmsgs.length) return false;
    const m = this.rng.pick(this.rmsgs);
    this.emit({ type: 'REASONING_MESSAGE_CONTENT', messageId: m.id, delta: delta ?? this.str(), subagentRunId: this.contTag(m.owner), ...this.lite() });
    return true;
  }
  reasoningMessageEnd() { return this.close(this.rmsgs, (m) => ({ type: 'REASONING_MESSAGE_END', messageId: m.id, subagentRunId: this.contTag(m.owner), ...this.lite() })); }
  reasoningEnd() { return this.close(this.spans, (s) => ({ type: 'REASONING_END', messageId: s.id, subagentRunId: this.contTag(s.owner), ...this.lite() })); }
  encrypted() {
    const tool = this.rng.bool(0.4);
    const known = tool ? [...this.owners.tool] : [...this.owners.message, ...this.owners.reasoning];
    const [id, owner] = known.length && this.rng.bool(0.85) ? this.rng.pick(known) : [this.fresh('ent'), undefined];
    this.emit({ type: 'REASONING_ENCRYPTED_VALUE', subtype: tool ? 'tool-call' : 'message', entityId: id, encryptedValue: this.str(3) || 'x', subagentRunId: this.contTag(owner), ...this.b() });
    return true;
  }

  stepStart() {
    const owner = this.newOwner();
    // Few names, so a subagent often runs a step its parent runs too (valid).
    const names = ['plan', 'tools', 'answer', 'search', this.str(2)];
    const name = this.rng.pick(names);
    if (this.steps.some((s) => s.name === name && s.owner === owner)) return false;
    this.steps.push({ name, owner });
    this.emit({ type: 'STEP_STARTED', stepName: name, subagentRunId: owner, ...this.b() });
    return true;
  }
  // A step is finished by exactly its owner: an absent tag means the parent.
  stepFinish() { return this.close(this.steps, (s) => ({ type: 'STEP_FINISHED', stepName: s.name, subagentRunId: s.owner, ...this.b() })); }

  subStart() {
    const id = this.fresh('sub');
    const parents = [...this.subs, ...this.closedSubs];
    this.emit({
      type: 'SUBAGENT_STARTED', subagentRunId: id, name: this.rng.pick(['research', 'writer', this.str(2)]),
      description: opt(this.rng, 0.4, () => this.str(3)),
      parentSubagentRunId: parents.length && this.rng.bool(0.4) ? this.rng.pick(parents) : undefined,
      parentToolCallId: opt(this.rng, 0.2, () => this.fresh('call')), parentMessageId: opt(this.rng, 0.2, () => this.fresh('msg')),
      ...this.b(),
    });
    this.subs.push(id);
    return true;
  }
  subEnd(kind) {
    if (!this.subs.length) return false;
    const id = this.subs.splice(this.rng.int(0, this.subs.length - 1), 1)[0];
    this.closedSubs.push(id);
    if ((kind ?? (this.rng.bool(0.7) ? 'SUBAGENT_FINISHED' : 'SUBAGENT_ERROR')) === 'SUBAGENT_FINISHED') {
      this.emit({
        type: 'SUBAGENT_FINISHED', subagentRunId: id, result: opt(this.rng, 0.4, () => genValue(this.rng, 2, this.o) ?? 0),
        outcome: opt(this.rng, 0.5, () => (this.rng.bool() ? { type: 'success' } : clean({ type: 'suspended', interruptIds: opt(this.rng, 0.6, () => ['i1', 'i2']) }))),
        ...this.b(),
      });
    } else {
      this.emit({ type: 'SUBAGENT_ERROR', subagentRunId: id, message: this.str(4), code: opt(this.rng, 0.5, () => 'E_SUB'), ...this.b() });
    }
    return true;
  }

  stateSnapshot(value) { this.emit({ type: 'STATE_SNAPSHOT', snapshot: value ?? genValue(this.rng, 3, this.o), subagentRunId: opt(this.rng, 0.2, () => this.newOwner()), ...this.b() }); return true; }
  stateDelta() { this.emit({ type: 'STATE_DELTA', delta: genPatch(this.rng, this.o), subagentRunId: opt(this.rng, 0.2, () => this.newOwner()), ...this.b() }); return true; }
  messagesSnapshot() {
    this.emit({ type: 'MESSAGES_SNAPSHOT', messages: Array.from({ length: this.rng.int(0, 5) }, () => genMessage(this.rng, this.fresh, this.o)), ...this.b() });
    return true;
  }
  activitySnapshot() {
    const known = [...this.owners.activity];
    const again = known.length && this.rng.bool(0.3);
    const [id, prev] = again ? this.rng.pick(known) : [this.fresh('act'), undefined];
    const replace = opt(this.rng, 0.5, () => this.rng.bool());
    const owner = again && replace === false ? prev : this.newOwner();
    if (!again || replace !== false) this.owners.activity.set(id, owner);
    this.emit({ type: 'ACTIVITY_SNAPSHOT', messageId: id, activityType: this.rng.pick(['plan', 'search']), content: genObject(this.rng, 2, this.o), replace, subagentRunId: again && replace === false ? this.contTag(prev) : owner, ...this.b() });
    return true;
  }
  activityDelta() {
    const known = [...this.owners.activity];
    const [id, owner] = known.length && this.rng.bool(0.8) ? this.rng.pick(known) : [this.fresh('act'), undefined];
    this.emit({ type: 'ACTIVITY_DELTA', messageId: id, activityType: 'plan', patch: genPatch(this.rng, this.o), subagentRunId: this.contTag(owner), ...this.b() });
    return true;
  }
  raw(value) { this.emit({ type: 'RAW', event: value ?? genValue(this.rng, 3, this.o), source: opt(this.rng, 0.5, () => 'openai'), subagentRunId: opt(this.rng, 0.1, () => this.newOwner()), ...this.b() }); return true; }
  custom(value) { this.emit({ type: 'CUSTOM', name: this.rng.pick(['progress', 'c', this.str(2)]), value: value ?? genValue(this.rng, 3, this.o), subagentRunId: opt(this.rng, 0.2, () => this.newOwner()), ...this.b() }); return true; }

  // ---- chunks: one lane per owner (transformChunks' PendingStream) ----
  chunkNew(kind) {
    const owner = this.newOwner();
    const id = this.fresh(kind === 'tool' ? 'ccall' : kind === 'text' ? 'cmsg' : 'crmsg');
    const lane = { kind, id, owner };
    const ev = { subagentRunId: owner, delta: opt(this.rng, 0.8, () => this.str()), ...this.b() };
    if (kind === 'text') {
      lane.role = opt(this.rng, 0.5, () => this.rng.pick(TEXT_ROLES));
      lane.name = opt(this.rng, 0.2, () => 'bot');
      Object.assign(ev, { type: 'TEXT_MESSAGE_CHUNK', messageId: id, role: lane.role, name: lane.name });
      this.owners.message.set(id, owner);
    } else if (kind === 'tool') {
      const parents = [...this.owners.message].filter(([, ow]) => ow === owner).map(([mid]) => mid);
      lane.parent = parents.length && this.rng.bool(0.4) ? this.rng.pick(parents) : undefined;
      lane.name = this.rng.pick(['f', 'search']);
      Object.assign(ev, { type: 'TOOL_CALL_CHUNK', toolCallId: id, toolCallName: lane.name, parentMessageId: lane.parent });
      this.owners.tool.set(id, owner);
    } else {
      Object.assign(ev, { type: 'REASONING_MESSAGE_CHUNK', messageId: id });
      this.owners.reasoning.set(id, owner);
    }
    this.emit(ev);
    this.lanes.set(owner, lane);   // after emit: a chunk opens (and first closes) only its own lane
    return true;
  }
  chunkNewAny() { return this.chunkNew(this.rng.pick(['text', 'tool', 'reasoning'])); }
  chunkCont() {
    const lanes = [...this.lanes.values()];
    if (!lanes.length) return false;
    const lane = this.rng.pick(lanes);
    const idKey = lane.kind === 'tool' ? 'toolCallId' : 'messageId';
    const type = { text: 'TEXT_MESSAGE_CHUNK', tool: 'TOOL_CALL_CHUNK', reasoning: 'REASONING_MESSAGE_CHUNK' }[lane.kind];
    const ev = { type, delta: opt(this.rng, 0.9, () => this.str()), ...this.lite() };
    // Which lane a chunk continues is inferred when it names neither id nor
    // owner: the parent's lane if it is of this kind, else the only lane of it.
    const sameKind = lanes.filter((l) => l.kind === lane.kind);
    const parentLane = this.lanes.get(undefined);
    const inferable = lane.owner === undefined ? parentLane === lane
      : (parentLane?.kind !== lane.kind && sameKind.length === 1);
    const forms = ['id', ...(lane.owner !== undefined ? ['id+tag', 'tag'] : []), ...(inferable ? ['none'] : [])];
    const form = this.rng.pick(forms);
    if (form.startsWith('id')) ev[idKey] = lane.id;
    if (form.endsWith('tag')) ev.subagentRunId = lane.owner;
    // A continuation may repeat what its opener said, with the same value.
    if (lane.kind === 'text' && this.rng.bool(0.2)) ev.role = lane.role ?? 'assistant';
    if (lane.kind === 'text' && lane.name !== undefined && this.rng.bool(0.2)) ev.name = lane.name;
    if (lane.kind === 'tool' && this.rng.bool(0.2)) ev.toolCallName = lane.name;
    if (lane.kind === 'tool' && lane.parent !== undefined && this.rng.bool(0.2)) ev.parentMessageId = lane.parent;
    this.push(ev);
    return true;
  }

  /** Optional base fields on continuations, rarer than on openers. */
  lite() { return this.rng.bool(0.15) ? this.b() : {}; }

  close(list, make) {
    if (!list.length) return false;
    const x = list.splice(this.rng.int(0, list.length - 1), 1)[0];
    this.emit(make(x));
    return true;
  }

  step() {
    const a = this.rng.pick(ACTIONS);
    if (!this[a]()) this.textStart();
  }

  /** Emits one event of `type` (and what it needs first); false if it cannot be now. */
  forceType(type) {
    const need = (list, opener) => { if (!list.length) this[opener](); };
    switch (type) {
      case 'RUN_STARTED': case 'RUN_FINISHED': return true;   // every run has them
      case 'TEXT_MESSAGE_START': return this.textStart();
      case 'TEXT_MESSAGE_CONTENT': need(this.texts, 'textStart'); return this.textContent();
      case 'TEXT_MESSAGE_END': need(this.texts, 'textStart'); return this.textEnd();
      case 'TOOL_CALL_START': return this.toolStart();
      case 'TOOL_CALL_ARGS': need(this.tools, 'toolStart'); return this.toolArgs();
      case 'TOOL_CALL_END': need(this.tools, 'toolStart'); return this.toolEnd();
      case 'TOOL_CALL_RESULT': return this.toolResult();
      case 'TEXT_MESSAGE_CHUNK': return this.chunkNew('text');
      case 'TOOL_CALL_CHUNK': return this.chunkNew('tool');
      case 'REASONING_MESSAGE_CHUNK': return this.chunkNew('reasoning');
      case 'REASONING_START': return this.reasoningStart();
      case 'REASONING_MESSAGE_START': return this.reasoningMessageStart();
      case 'REASONING_MESSAGE_CONTENT': need(this.rmsgs, 'reasoningMessageStart'); return this.reasoningContent();
      case 'REASONING_MESSAGE_END': need(this.rmsgs, 'reasoningMessageStart'); return this.reasoningMessageEnd();
      case 'REASONING_END': need(this.spans, 'reasoningStart'); return this.reasoningEnd();
      case 'REASONING_ENCRYPTED_VALUE': return this.encrypted();
      case 'STEP_STARTED': return this.stepStart();
      case 'STEP_FINISHED': if (!this.steps.length && !this.stepStart()) return false; return this.stepFinish();
      case 'SUBAGENT_STARTED': return this.subStart();
      case 'SUBAGENT_FINISHED': need(this.subs, 'subStart'); return this.subEnd('SUBAGENT_FINISHED');
      case 'SUBAGENT_ERROR': need(this.subs, 'subStart'); return this.subEnd('SUBAGENT_ERROR');
      case 'STATE_SNAPSHOT': return this.stateSnapshot();
      case 'STATE_DELTA': return this.stateDelta();
      case 'MESSAGES_SNAPSHOT': return this.messagesSnapshot();
      case 'ACTIVITY_SNAPSHOT': return this.activitySnapshot();
      case 'ACTIVITY_DELTA': return this.activityDelta();
      case 'RAW': return this.raw();
      case 'CUSTOM': return this.custom();
      default: throw new Error(`generator: unknown event type ${type}`);
    }
  }

  /** One delta of about `bytes` bytes, in whichever streaming event fits. */
  bigDelta(bytes) {
    const s = genBigString(this.rng, bytes, { nul: this.o.nul });
    const k = this.rng.int(0, 3);
    if (k === 0) { if (!this.texts.length) this.textStart(); this.textContent(s); }
    else if (k === 1) { if (!this.tools.length) this.toolStart(); this.toolArgs(s); }
    else if (k === 2) { if (!this.rmsgs.length) this.reasoningMessageStart(); this.reasoningContent(s); }
    else this.custom(s);
  }

  /** One value nested `levels` containers deep inside its event. */
  deepValue(levels) {
    const v = genDeep(this.rng, levels, { nul: this.o.nul });
    this[this.rng.pick(['stateSnapshot', 'raw', 'custom'])](v);
  }

  /** Ends the run: RUN_ERROR at any point, or everything closed then RUN_FINISHED. */
  finish(end) {
    const rng = this.rng;
    if (end === 'RUN_ERROR' || (end === undefined && rng.bool(0.12))) {
      this.emit({ type: 'RUN_ERROR', message: this.str(4), code: opt(rng, 0.6, () => 'E_RUN'), usage: opt(rng, 0.2, () => [genUsage(rng)]), ...this.b() });
      return;
    }
    const closers = [['texts', 'textEnd'], ['tools', 'toolEnd'], ['rmsgs', 'reasoningMessageEnd'], ['spans', 'reasoningEnd'], ['steps', 'stepFinish'], ['subs', 'subEnd']];
    for (;;) {
      const open = closers.filter(([k]) => this[k].length);
      if (!open.length) break;
      this[rng.pick(open)[1]]();
    }
    const outcome = rng.pick([undefined, 'success', 'interrupt', 'cancelled']);
    this.emit({
      type: 'RUN_FINISHED', threadId: this.threadId, runId: this.runId,
      result: opt(rng, 0.3, () => genValue(rng, 2, this.o) ?? 'done'),
      outcome: outcome === 'success' ? clean({ type: 'success', pendingToolCallIds: opt(rng, 0.5, () => [...this.owners.tool.keys()].slice(0, 2)) })
        : outcome === 'interrupt' ? { type: 'interrupt', interrupts: Array.from({ length: rng.int(1, 2) }, (_, i) => clean({
          id: `i${i}`, reason: rng.pick(['approval', 'input']), message: opt(rng, 0.5, () => this.str(3)), toolCallId: opt(rng, 0.3, () => 'c9'),
          responseSchema: opt(rng, 0.3, () => ({ type: 'boolean' })), expiresAt: opt(rng, 0.2, () => '2030-01-01T00:00:00Z'),
          metadata: opt(rng, 0.2, () => ({ level: 2 })), subagentRunId: opt(rng, 0.2, () => this.fresh('sub')),
        })) }
          : outcome === 'cancelled' ? { type: 'cancelled' } : undefined,
      usage: opt(rng, 0.3, () => Array.from({ length: rng.int(1, 2) }, () => genUsage(rng))),
      ...this.b(),
    });
    if (rng.bool(0.05)) this.emit({ type: 'RUN_ERROR', message: 'after the finish', ...this.b() });
  }
}

// How often each action is drawn (listed once per weight unit).
const ACTIONS = [
  ...Array(4).fill('textStart'), ...Array(8).fill('textContent'), ...Array(3).fill('textEnd'),
  ...Array(2).fill('toolStart'), ...Array(4).fill('toolArgs'), ...Array(2).fill('toolEnd'), 'toolResult',
  'reasoningStart', 'reasoningMessageStart', ...Array(3).fill('reasoningContent'), 'reasoningMessageEnd', 'reasoningEnd', 'encrypted',
  'stepStart', 'stepFinish', 'subStart', 'subEnd',
  'stateSnapshot', 'stateDelta', 'messagesSnapshot', 'activitySnapshot', 'activityDelta', 'raw', 'custom',
  'chunkNewAny', 'chunkNewAny', ...Array(4).fill('chunkCont'),
];
