// An SSE response read as it arrives, as a browser reads it: the frames with
// their `id:` fields and parsed events (resumable runs' tests), and a way to
// wait for its end. Non-SSE answers (errors) keep their JSON body.
import assert from 'node:assert/strict';
import { parseSSE, waitFor } from './harness.mjs';

/** fetch(url), then frames pushed to s.frames ({id, event}) until the end. */
export async function openStream(url, { method = 'GET', headers = {}, body } = {}) {
  const ac = new AbortController();
  const res = await fetch(url, { method, headers, body, signal: ac.signal });
  const s = { res, status: res.status, headers: res.headers, frames: [], done: false, error: null, abort: () => ac.abort() };
  if (!res.headers.get('content-type')?.startsWith('text/event-stream')) {
    s.json = await res.json().catch(() => null);
    s.done = true;
    return s;
  }
  const dec = new TextDecoder();
  let text = '';
  s.reading = (async () => {
    try {
      for await (const chunk of res.body) {
        text += dec.decode(chunk, { stream: true });
        const { frames, rest } = parseSSE(text);
        text = rest;
        for (const f of frames) if (f.data !== null) s.frames.push({ id: f.fields.id, event: JSON.parse(f.data) });
      }
    } catch (e) { s.error = e; }
    s.done = true;
  })();
  return s;
}

export const events = (s) => s.frames.map((f) => f.event);
export const finished = (s, ms = 10000) => waitFor(() => s.done, ms);

/** Each frame's id is `<runId>:<seq>`, seq from `from`, gap-free. */
export function assertIds(frames, runId, from = 1) {
  frames.forEach((f, i) => assert.equal(f.id, `${runId}:${from + i}`, `frame ${i}'s id`));
}
