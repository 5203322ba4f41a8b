// The bytes a generated AG-UI stream is sent as, for the conformance test:
// JSON written with random (legal) spellings, SSE framing with the odd but
// legal parts of the event-stream format, protobuf frames from @ag-ui/proto,
// and the split of a byte stream into the writes (HTTP chunks) a mock
// upstream makes.
import { Subject } from 'rxjs';
import { parseSSEStream } from '@ag-ui/client';
import { EventEncoder } from '@ag-ui/encoder';
import { AGUI_MEDIA_TYPE } from '@ag-ui/proto';

const protoEncoder = new EventEncoder({ accept: AGUI_MEDIA_TYPE });

// ---------------------------------------------------------------------------
// JSON text

const SHORT = { '"': '\\"', '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function hex4(rng, code) {
  const h = code.toString(16).padStart(4, '0');
  return `\\u${rng.bool() ? h : h.toUpperCase()}`;
}

/** One string literal: each character written plainly or escaped, as JSON allows. */
function writeString(rng, s, plain) {
  if (plain) return JSON.stringify(s);
  let out = '"';
  for (const ch of s) {   // by code point: an astral character is one step
    const c = ch.codePointAt(0);
    if (ch === '"' || ch === '\\' || c < 0x20) {
      out += SHORT[ch] && rng.bool(0.7) ? SHORT[ch] : hex4(rng, c);
    } else if (ch === '/' && rng.bool(0.3)) {
      out += '\\/';
    } else if (c > 0x7e && rng.bool(0.3)) {
      if (c > 0xffff) {
        const v = c - 0x10000;
        out += hex4(rng, 0xd800 + (v >> 10)) + hex4(rng, 0xdc00 + (v & 0x3ff));
      } else {
        out += hex4(rng, c);
      }
    } else if (c < 0x7f && rng.bool(0.03)) {
      out += hex4(rng, c);
    } else {
      out += ch;
    }
  }
  return `${out}"`;
}

/** A number spelled some other legal way that JSON.parse reads as the same double. */
function writeNumber(rng, n) {
  if (Object.is(n, -0)) return rng.pick(['-0', '-0.0', '-0e0']);
  const r = rng.float();
  if (r < 0.6) return String(n);
  if (r < 0.8) return n.toExponential().replace('e', rng.bool() ? 'e' : 'E').replace('e+', rng.bool() ? 'e+' : 'e');
  if (Number.isInteger(n) && Math.abs(n) < 1e15) return `${n}.${'0'.repeat(rng.int(1, 3))}`;
  return String(n);
}

/**
 * JSON text for a value. plain: JSON.stringify exactly (what SDK encoders
 * write); else escapes, number spellings, whitespace and member order vary,
 * a member may be preceded by a decoy of the same name (JSON.parse keeps the
 * last), and with multiline the whitespace may hold line feeds (several SSE
 * data lines).
 */
export function writeJson(rng, value, { plain = false, multiline = false } = {}) {
  if (plain) return JSON.stringify(value);
  const ws = () => {
    const r = rng.float();
    if (r < 0.75) return '';
    if (r < 0.88 || !multiline) return rng.pick([' ', '  ', '\t']);
    return rng.pick(['\n', '\n  ', '\n\t', ' \n']);
  };
  const w = (v) => {
    if (v === null) return 'null';
    if (typeof v === 'boolean') return String(v);
    if (typeof v === 'number') return writeNumber(rng, v);
    if (typeof v === 'string') return writeString(rng, v, false);
    if (Array.isArray(v)) return `[${ws()}${v.map((x) => w(x)).join(`${ws()},${ws()}`)}${ws()}]`;
    const entries = Object.entries(v);
    if (rng.bool(0.1)) entries.sort(() => rng.float() - 0.5);   // member order means nothing
    const members = [];
    for (const [k, x] of entries) {
      // A duplicate name is legal JSON and JSON.parse keeps the last: a decoy first.
      if (rng.bool(0.03)) members.push(`${writeString(rng, k, false)}:${w(k === 'type' ? rng.pick(['RUN_ERROR', 'RAW', 7]) : rng.pick([null, 0, 'decoy', [], {}]))}`);
      members.push(`${writeString(rng, k, false)}${ws()}:${ws()}${w(x)}`);
    }
    return `{${ws()}${members.join(`${ws()},${ws()}`)}${ws()}}`;
  };
  return `${ws()}${w(value)}${ws()}`;
}

// ---------------------------------------------------------------------------
// SSE

const COMMENTS = [':', ': ping', ':keep-alive', ': data: {"type":"RUN_ERROR","message":"not me"}', ': é 😀'];
const FIELDS = ['id: 42', 'id:', 'id: ev-7', 'retry: 1500', 'retry: soon', 'x-unknown: 1', 'x-unknown', 'Data: not data', 'datum: x', 'ID: 9'];
export const EVENT_NAMES = ['agui', 'TEXT_MESSAGE_CONTENT', 'update', 'x y', 'é'];

/**
 * An SSE stream of data texts (one event each) as bytes.
 *   eol    '\n' | '\r\n' | '\r' (one style per stream; all are legal)
 *   bom    a UTF-8 BOM first
 *   named  frames may carry an `event:` field other than "message"
 *   odd    comments, id/retry/unknown fields, blank lines and comment-only
 *          blocks between frames, `data:` with and without its space
 * Returns {bytes, named: the indexes of the frames given an event name other than "message"}.
 */
export function sseBytes(rng, texts, { eol = '\n', bom = false, named = false, odd = true } = {}) {
  const lines = [];
  const namedAt = [];
  for (const [i, text] of texts.entries()) {
    if (odd && rng.bool(0.1)) lines.push(rng.pick(COMMENTS), '');   // a block that dispatches nothing
    if (odd && rng.bool(0.15)) lines.push(rng.pick([...COMMENTS, ...FIELDS]));
    if (named && rng.bool(0.4)) { lines.push(`event:${rng.bool() ? ' ' : ''}${rng.pick(EVENT_NAMES)}`); namedAt.push(i); }
    else if (odd && rng.bool(0.1)) lines.push(rng.pick(['event: message', 'event:message']));
    for (const line of text.split('\n')) {
      // One space after the colon is the separator; a line starting with a
      // space keeps it only if the separator space is there.
      lines.push(line.startsWith(' ') || !odd || rng.bool(0.7) ? `data: ${line}` : `data:${line}`);
      if (odd && rng.bool(0.03)) lines.push(rng.pick(COMMENTS));
    }
    lines.push('');
    if (odd && rng.bool(0.1)) lines.push('');
  }
  const body = lines.map((l) => l + eol).join('');
  return { bytes: Buffer.from((bom ? '\ufeff' : '') + body, 'utf8'), named: namedAt };
}

/** The events @ag-ui/client's own SSE parser reads from bytes (it splits on LF only). */
export function officialSseEvents(bytes) {
  const src = new Subject();
  const out = [];
  let err = null;
  parseSSEStream(src).subscribe({ next: (j) => out.push(j), error: (e) => { err = e; } });
  src.next({ type: 'headers', status: 200, headers: new Headers({ 'content-type': 'text/event-stream' }) });
  src.next({ type: 'data', data: new Uint8Array(bytes) });
  src.complete();
  if (err) throw err;
  return out;
}

// ---------------------------------------------------------------------------
// protobuf and writes

/** One event as @ag-ui/encoder frames it for protobuf: 4-byte length, then @ag-ui/proto's encode. */
export const protoFrame = (event) => Buffer.from(protoEncoder.encodeProtobuf(event));

/**
 * Splits bytes into at most `max` writes: mostly large pieces, some of 1-3
 * bytes (mid UTF-8 sequence, mid line end, mid length prefix).
 */
export function splitWrites(rng, bytes, max = 48) {
  const cuts = new Set();
  const n = rng.int(0, Math.min(max - 1, bytes.length - 1));
  for (let i = 0; i < n; i++) {
    const at = rng.int(1, bytes.length - 1);
    cuts.add(at);
    if (rng.bool(0.3) && at + 1 < bytes.length) cuts.add(at + 1);
  }
  const sorted = [...cuts].sort((a, b) => a - b);
  const pieces = [];
  let from = 0;
  for (const at of sorted) { pieces.push(bytes.subarray(from, at)); from = at; }
  pieces.push(bytes.subarray(from));
  return pieces;
}
