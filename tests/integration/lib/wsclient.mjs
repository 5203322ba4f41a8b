// A WebSocket run client for agate's AG-UI WebSocket endpoint
// (GET /v1/agents/{name}/ws), on the `ws` package: each RunAgentInput is one
// text message, each event comes back as one text frame carrying its runId.
//
//   const ws = await openRunSocket(port, { agent: 'up', headers: { 'Cache-Control': 'no-store' } });
//   const events = await ws.run(input);          // sends it, resolves with that run's events once it ends
//   ws.send(input); await ws.waitRun(input.runId);
//   ws.cancel(runId);
//   ws.frames                                     // every frame as text, in order
//   await ws.waitClose();                         // true once agate has closed it
//   await ws.closeClean();
//
// protocols: the subprotocols offered ([] for none); options: more `ws` client
// options (autoPong: false makes a peer that never answers a ping).
import assert from 'node:assert/strict';
import WebSocket from 'ws';

const TERMINAL = new Set(['RUN_FINISHED', 'RUN_ERROR']);

/** Opens a connection; resolves once open. Every message is kept, parsed. */
export function openRunSocket(port, { agent = 'echo', headers = {}, protocols = 'ag-ui', options = {} } = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/agents/${agent}/ws`, protocols, { ...options, headers });
  ws.events = [];
  ws.frames = [];
  ws.closeInfo = null;
  const waiters = new Set();
  const poke = () => { for (const w of [...waiters]) w(); };
  ws.on('message', (m, isBinary) => {
    assert.equal(isBinary, false, 'agate sends text frames');
    const text = m.toString('utf8');
    ws.frames.push(text);
    ws.events.push(JSON.parse(text));
    poke();
  });
  ws.on('close', (code, reason) => { ws.closeInfo = { code, reason: reason.toString() }; poke(); });
  ws.on('error', (e) => { ws.lastError = e; poke(); });

  /** Resolves true once pred() holds (checked on every frame), false after timeout. */
  ws.until = (pred, timeout = 10000) => new Promise((resolve) => {
    if (pred()) { resolve(true); return; }
    const w = () => { if (pred()) { clearTimeout(timer); waiters.delete(w); resolve(true); } };
    const timer = setTimeout(() => { waiters.delete(w); resolve(pred()); }, timeout);
    waiters.add(w);
  });
  ws.runEvents = (runId) => ws.events.filter((e) => e.runId === runId);
  ws.runOver = (runId) => ws.runEvents(runId).some((e) => TERMINAL.has(e.type));
  ws.waitRun = async (runId, timeout = 10000) => {
    assert.ok(await ws.until(() => ws.runOver(runId), timeout),
      `run ${runId} did not end: ${JSON.stringify(ws.runEvents(runId).map((e) => e.type))}`);
    return ws.runEvents(runId);
  };
  ws.sendJson = (obj) => ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  ws.run = (input, timeout) => { ws.sendJson(input); return ws.waitRun(input.runId, timeout); };
  ws.cancel = (runId) => ws.sendJson({ type: 'CANCEL', runId });
  ws.waitClose = (timeout = 10000) => ws.until(() => ws.closeInfo !== null, timeout);
  ws.closeClean = async (timeout = 5000) => {
    if (ws.readyState === WebSocket.OPEN) ws.close(1000);
    await ws.until(() => ws.closeInfo !== null, timeout);
  };
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

export { WebSocket };
