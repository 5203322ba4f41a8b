// The official judge of an AG-UI event stream, and mutations it rejects, for
// the conformance test.
//
// judge() reads a stream the way @ag-ui/client 1.0 does before anything
// reaches an application: each event a JSON object that @ag-ui/core's zod
// EventSchemas accepts (the client's enforcement stage, without its lenience:
// it drops unknown types and strips unknown union members with a warning,
// which agate, documented in proto/validate.c, treats as violations, as the
// schema itself does), then chunk expansion (transformChunks) and the
// sequence rules (verifyEvents), the client's own operators, fed one event at
// a time so the first event they refuse is known.
//
// mutate() breaks a valid stream in one place, in a way the judge confirms it
// rejects, and says where: the first event the judge refuses.
import { Subject } from 'rxjs';
import { EventSchemas } from '@ag-ui/core/schemas';
import { transformChunks, verifyEvents } from '@ag-ui/client';
import { encode, decode } from '@ag-ui/proto';

/** An event's data given as text (for mutations below the event: not JSON, not an object). */
export class RawText {
  constructor(text) { this.text = text; }
}

/** What @ag-ui/proto makes of an event: decode(encode(e)). */
export const viaProto = (e) => decode(encode(e));

/**
 * items: event objects, RawText, or JSON texts (strings).
 * Returns {ok: true} or {ok: false, index, stage: 'json'|'schema'|'sequence', reason}.
 */
export function judge(items) {
  let failure = null;
  const input = new Subject();
  input.pipe(transformChunks(false), verifyEvents(false)).subscribe({ error: (e) => { failure = e; } });
  const bad = (index, stage, reason) => ({ ok: false, index, stage, reason });
  for (let i = 0; i < items.length; i++) {
    let ev = items[i];
    if (ev instanceof RawText) ev = ev.text;
    if (typeof ev === 'string') {
      try { ev = JSON.parse(ev); } catch (e) { return bad(i, 'json', e.message); }
    }
    if (ev === null || typeof ev !== 'object' || Array.isArray(ev)) return bad(i, 'json', 'not a JSON object');
    const z = EventSchemas.safeParse(ev);
    if (!z.success) {
      const is = z.error.issues[0];
      return bad(i, 'schema', `${ev.type}: ${is.path.join('.')}: ${is.message}`);
    }
    input.next(ev);
    if (failure) return bad(i, 'sequence', failure.message);
  }
  input.complete();
  return failure ? bad(items.length, 'sequence', failure.message) : { ok: true };
}

// ---------------------------------------------------------------------------
// Mutations

const clone = (x) => structuredClone(x);
const OPENERS = ['RUN_STARTED', 'TEXT_MESSAGE_START', 'TOOL_CALL_START', 'REASONING_START', 'REASONING_MESSAGE_START',
  'STEP_STARTED', 'SUBAGENT_STARTED'];
const CLOSERS = ['TEXT_MESSAGE_END', 'TOOL_CALL_END', 'REASONING_MESSAGE_END', 'REASONING_END', 'STEP_FINISHED',
  'SUBAGENT_FINISHED', 'SUBAGENT_ERROR', 'RUN_FINISHED'];
const ID_FIELDS = ['messageId', 'toolCallId', 'stepName', 'subagentRunId', 'entityId'];
const CONTINUATIONS = ['TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_END', 'TOOL_CALL_ARGS', 'TOOL_CALL_END',
  'REASONING_MESSAGE_CONTENT', 'REASONING_MESSAGE_END', 'REASONING_END', 'STEP_FINISHED', 'ACTIVITY_DELTA',
  'REASONING_ENCRYPTED_VALUE', 'TEXT_MESSAGE_CHUNK', 'TOOL_CALL_CHUNK', 'REASONING_MESSAGE_CHUNK'];

/** The zod shape of each event type's schema: which fields exist, which are required. */
const SHAPES = new Map(EventSchemas.options.map((o) => [o.shape.type.value, o.shape]));

const indexesOf = (events, types) => events.map((e, i) => (types.includes(e.type) ? i : -1)).filter((i) => i >= 0);

// A value of each JSON type, for "wrong type" mutations; the judge keeps the ones its schema refuses.
const WRONG = [0, 1.5, -7, 'text', '', true, false, null, [], [1, 'a'], {}, { type: 'bogus' }];

/** An event of the stream (not a run start or error) right after one of `type`. */
function insertAfter(rng, ev, type) {
  const at = indexesOf(ev, [type]);
  if (!at.length) return null;
  const i = rng.pick(at);
  const others = ev.filter((e) => e.type !== 'RUN_STARTED' && e.type !== 'RUN_ERROR');
  ev.splice(i + 1, 0, others.length ? clone(rng.pick(others)) : { type: 'CUSTOM', name: 'late', value: 1 });
  return ev;
}

// Each mutation: (rng, events) -> mutated items, or null when it does not apply.
// `sequence` ones keep every event schema-valid (they also work for protobuf upstreams).
const SEQUENCE = {
  dropOpener(rng, ev) {
    const at = indexesOf(ev, OPENERS);
    if (!at.length) return null;
    ev.splice(rng.pick(at), 1);
    return ev;
  },
  dropCloser(rng, ev) {
    const at = indexesOf(ev, CLOSERS);
    if (!at.length) return null;
    ev.splice(rng.pick(at), 1);
    return ev;
  },
  duplicateOpener(rng, ev) {
    const at = indexesOf(ev, OPENERS);
    if (!at.length) return null;
    const i = rng.pick(at);
    ev.splice(rng.int(i + 1, Math.min(ev.length, i + 3)), 0, clone(ev[i]));
    return ev;
  },
  wrongId(rng, ev) {
    const at = indexesOf(ev, CONTINUATIONS);
    if (!at.length) return null;
    const e = ev[rng.pick(at)];
    const k = ID_FIELDS.find((f) => typeof e[f] === 'string' && f !== 'subagentRunId');
    if (!k) return null;
    e[k] = rng.pick([`${e[k]}-x`, 'never-started', '', e[k].toUpperCase() === e[k] ? `${e[k]}.` : e[k].toUpperCase()]);
    return ev;
  },
  foreignTag(rng, ev) {
    const at = indexesOf(ev, [...CONTINUATIONS, 'TOOL_CALL_START']);
    if (!at.length) return null;
    ev[rng.pick(at)].subagentRunId = rng.pick(['intruder', 'sub-x', '']);
    return ev;
  },
  afterFinished(rng, ev) { return insertAfter(rng, ev, 'RUN_FINISHED'); },
  afterError(rng, ev) { return insertAfter(rng, ev, 'RUN_ERROR'); },
  restartInRun(rng, ev) {
    const starts = indexesOf(ev, ['RUN_STARTED']);
    const i = rng.pick(starts);
    if (i === undefined || i + 1 >= ev.length) return null;
    ev.splice(rng.int(i + 1, ev.length - 1), 0, clone(ev[i]));
    return ev;
  },
  notStartedFirst(rng, ev) {
    if (ev[0]?.type !== 'RUN_STARTED') return null;
    ev.splice(0, 1, ...(rng.bool() ? [] : [{ type: 'STEP_STARTED', stepName: 'early' }, ev[0]]));
    return ev;
  },
  chunkWithoutId(rng, ev) {
    const i = rng.int(1, ev.length - 1);
    ev.splice(i, 0, rng.pick([
      { type: 'TEXT_MESSAGE_CHUNK', delta: 'orphan', subagentRunId: 'lane-nobody-opened' },
      { type: 'TOOL_CALL_CHUNK', toolCallId: 'c-no-name', delta: '{' },
      { type: 'REASONING_MESSAGE_CHUNK', delta: 'hm', subagentRunId: 'lane-nobody-opened' },
    ]));
    return ev;
  },
  chunkDisagrees(rng, ev) {
    const at = indexesOf(ev, ['TEXT_MESSAGE_CHUNK', 'TOOL_CALL_CHUNK']);
    if (!at.length) return null;
    const i = rng.pick(at);
    const e = clone(ev[i]);
    delete e.delta;
    if (e.type === 'TEXT_MESSAGE_CHUNK') e.name = 'someone-else';
    else e.toolCallName = 'another_tool';
    ev.splice(i + 1, 0, e);
    return ev;
  },
};

const SCHEMA = {
  missingField(rng, ev) {
    const e = rng.pick(ev);
    const shape = SHAPES.get(e.type);
    const required = Object.keys(shape).filter((k) => k !== 'type' && !shape[k].safeParse(undefined).success);
    if (!required.length) return null;
    delete e[rng.pick(required)];
    return ev;
  },
  wrongType(rng, ev) {
    // Any member anywhere in an event: the judge keeps the mutations its schema refuses.
    const e = rng.pick(ev);
    const paths = [];
    const walk = (v, path) => {
      if (v === null || typeof v !== 'object') return;
      for (const [k, x] of Object.entries(v)) {
        if (path.length === 0 && k === 'type') continue;
        paths.push([...path, k]);
        if (paths.length < 200) walk(x, [...path, k]);
      }
    };
    walk(e, []);
    if (!paths.length) return null;
    const path = rng.pick(paths);
    let o = e;
    for (const k of path.slice(0, -1)) o = o[k];
    o[path.at(-1)] = clone(rng.pick(WRONG));
    return ev;
  },
  nullOptional(rng, ev) {
    const e = rng.pick(ev);
    const shape = SHAPES.get(e.type);
    const optional = Object.keys(shape).filter((k) => shape[k].safeParse(undefined).success && !shape[k].safeParse(null).success);
    if (!optional.length) return null;
    e[rng.pick(optional)] = null;
    return ev;
  },
  badEnum(rng, ev) {
    const cand = ev.filter((e) => ['TEXT_MESSAGE_START', 'REASONING_MESSAGE_START', 'REASONING_ENCRYPTED_VALUE', 'TOOL_CALL_RESULT', 'SUBAGENT_FINISHED', 'STATE_DELTA', 'ACTIVITY_DELTA'].includes(e.type));
    if (!cand.length) return null;
    const e = rng.pick(cand);
    if (e.type === 'REASONING_ENCRYPTED_VALUE') e.subtype = 'toolcall';
    else if (e.type === 'SUBAGENT_FINISHED') e.outcome = { type: 'done' };
    else if (e.type === 'STATE_DELTA') e.delta = [{ op: 'merge', path: '/a', value: 1 }];
    else if (e.type === 'ACTIVITY_DELTA') e.patch = [{ op: 'add', path: 'no-slash', value: 1 }];
    else e.role = rng.pick(['robot', 'Assistant', 'tool']);
    return ev;
  },
  badTimestamp(rng, ev) {
    rng.pick(ev).timestamp = rng.pick([1.5, 2 ** 53, -(2 ** 53), '1700000000', 1e300]);
    return ev;
  },
  unknownType(rng, ev) {
    const i = rng.int(0, ev.length - 1);
    ev[i].type = rng.pick(['TEXT_MESSAGE_BEGIN', 'text_message_start', 'RUN_STARTED ', '', 'THINKING_START']);
    return ev;
  },
  notObject(rng, ev) {
    ev.splice(rng.int(0, ev.length - 1), 1, new RawText(rng.pick(['[]', '[{"type":"RUN_STARTED"}]', '"RUN_STARTED"', 'null', '42', 'true'])));
    return ev;
  },
  notJson(rng, ev) {
    const i = rng.int(0, ev.length - 1);
    const text = JSON.stringify(ev[i]);
    ev.splice(i, 1, new RawText(rng.pick([
      text.slice(0, rng.int(1, text.length - 1)),
      `${text} x`,
      `${text}}`,
      text.replace(/"type"/, "'type'"),
      text.replace(/}$/, ',}'),
      `${text.slice(0, -1)},"n":NaN}`,
      `${text.slice(0, -1)},"n":01}`,
      `/* c */${text}`,
      text.replace(/"type"/, '"ty\\xpe"'),
    ])));
    return ev;
  },
};

export const SEQUENCE_KINDS = Object.keys(SEQUENCE);
export const ALL_KINDS = [...SEQUENCE_KINDS, ...Object.keys(SCHEMA)];

/**
 * Breaks `events` once. proto: only mutations a protobuf upstream can carry
 * (every event schema-valid; the judge then sees decode(encode(e))). kind:
 * the mutation to try first.
 * Returns {items, kind, index, stage, reason}: the first item the judge
 * refuses is items[index].
 */
export function mutate(rng, events, { proto = false, kind: first } = {}) {
  const kinds = proto ? SEQUENCE_KINDS : ALL_KINDS;
  for (let attempt = 0; attempt < 50; attempt++) {
    const kind = first && attempt < 20 ? first : rng.pick(kinds);
    const items = (SEQUENCE[kind] ?? SCHEMA[kind])(rng, clone(events));
    if (!items || !items.length) continue;
    if (proto && items.some((e) => e instanceof RawText || !EventSchemas.safeParse(e).success)) continue;
    const verdict = judge(proto ? items.map(viaProto) : items);
    if (!verdict.ok && verdict.index < items.length) return { items, kind, ...verdict };
  }
  // Always refused: a content event for a message nobody started.
  const items = clone(events);
  items.splice(rng.int(1, items.length - 1), 0, { type: 'TEXT_MESSAGE_CONTENT', messageId: 'never-started', delta: 'x' });
  const verdict = judge(proto ? items.map(viaProto) : items);
  return { items, kind: 'contentWithoutStart', ...verdict };
}
