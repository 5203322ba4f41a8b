// AG-UI over WebSocket (RFC 6455): the upgrade, runs as text messages, several
// runs on one connection, CANCEL, every close code agate sends, fragmentation
// with control frames between, ping/pong and a silent peer, the close
// handshake, a slow consumer, and a client that leaves mid-run (its proxied
// upstream request is aborted).
//
// Clients: the `ws` npm package (which checks every server frame strictly: masking,
// RSV bits, UTF-8, close codes) and raw sockets for what `ws` refuses to send
// (unmasked frames, reserved bits and opcodes, invalid UTF-8).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  startAgate, stopClean, request, runInput, uid, sleep, RawConn, buildRequest, assertEchoEvents,
  expectedDeltas, paced,
} from './lib/harness.mjs';
import { startAguiServer, simpleRun } from './lib/agui-server.mjs';
import { openRunSocket } from './lib/wsclient.mjs';

const T = { timeout: 20000 };

// ---------------------------------------------------------------------------
// helpers

async function useAgate(t, opts) {
  const agate = await startAgate(opts);
  t.after(async () => { if (!agate.exitInfo) await agate.stop(5000); });
  return agate;
}

/** A `ws` client on /v1/agents/{agent}/ws that keeps every event (lib/wsclient.mjs);
 * no subprotocol unless asked. */
const openWs = (port, { agent = 'echo', protocols = [], options = {} } = {}) =>
  openRunSocket(port, { agent, protocols, options });

/** A client frame: masked unless told otherwise; rsv is the three RSV bits (0..7). */
function frame(opcode, payload = Buffer.alloc(0), { fin = true, mask = true, rsv = 0 } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const n = data.length;
  const head = [((fin ? 0x80 : 0) | (rsv << 4) | opcode)];
  const m = mask ? 0x80 : 0;
  if (n < 126) head.push(m | n);
  else if (n <= 0xffff) head.push(m | 126, n >> 8, n & 0xff);
  else { head.push(m | 127, 0, 0, 0, 0, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff); }
  if (!mask) return Buffer.concat([Buffer.from(head), data]);
  const key = crypto.randomBytes(4);
  const body = Buffer.alloc(n);
  for (let i = 0; i < n; i++) body[i] = data[i] ^ key[i & 3];
  return Buffer.concat([Buffer.from(head), key, body]);
}

const closePayload = (code, reason = '') => Buffer.concat([Buffer.from([code >> 8, code & 0xff]), Buffer.from(reason)]);

/** Server frames in buf from `pos`: [{fin, rsv, opcode, masked, payload}], and where parsing stopped. */
function parseFrames(buf, pos = 0) {
  const frames = [];
  for (;;) {
    if (buf.length - pos < 2) break;
    const b0 = buf[pos], b1 = buf[pos + 1];
    let len = b1 & 0x7f, at = pos + 2;
    if (len === 126) { if (buf.length - at < 2) break; len = buf.readUInt16BE(at); at += 2; }
    else if (len === 127) { if (buf.length - at < 8) break; len = Number(buf.readBigUInt64BE(at)); at += 8; }
    if (b1 & 0x80) at += 4;
    if (buf.length - at < len) break;
    frames.push({ fin: !!(b0 & 0x80), rsv: (b0 >> 4) & 7, opcode: b0 & 0x0f, masked: !!(b1 & 0x80), payload: buf.subarray(at, at + len) });
    pos = at + len;
  }
  return { frames, pos };
}

/** Raw-socket upgrade; resolves {conn, res, frames()} after the 101 head. */
async function rawUpgrade(port, { agent = 'echo', headers = {} } = {}) {
  const conn = await RawConn.connect(port);
  const h = {
    Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'), ...headers,
  };
  await conn.write(buildRequest({ method: 'GET', path: `/v1/agents/${agent}/ws`, headers: h }));
  assert.ok(await conn.waitFor((c) => c.data.indexOf('\r\n\r\n') >= 0, 5000), 'no response head');
  const end = conn.data.indexOf('\r\n\r\n') + 4;
  const res = parseHead(conn.data.subarray(0, end).toString('latin1'));
  assert.equal(res.statusCode, 101, conn.text);
  const frames = () => parseFrames(conn.data, end).frames;
  const waitFrames = (pred, timeout = 5000) => conn.waitFor(() => pred(frames()), timeout);
  return { conn, res, frames, waitFrames };
}

/** A response head (status line and headers; a 101 has no body framing). */
function parseHead(text) {
  const [status, ...lines] = text.split('\r\n').filter((l) => l.length);
  const headers = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { statusCode: Number(status.split(' ')[1]), headers };
}

const closeCode = (f) => (f.payload.length >= 2 ? f.payload.readUInt16BE(0) : null);

/** Expects a close frame with `code` as the last frame, then the server's FIN. */
async function expectClose(raw, code) {
  assert.ok(await raw.waitFrames((fs) => fs.some((f) => f.opcode === 8)), `no close frame; got ${JSON.stringify(raw.frames().map((f) => f.opcode))}`);
  const fs = raw.frames();
  const cl = fs[fs.length - 1];
  assert.equal(cl.opcode, 8, 'the close frame is the last frame');
  assert.equal(cl.masked, false, 'server frames are not masked');
  assert.equal(closeCode(cl), code, `close code (reason "${cl.payload.subarray(2)}")`);
  assert.ok(await raw.conn.waitClose(5000), 'agate closes the TCP connection after its close frame');
}

async function scrape(agate) {
  const res = await request(agate.adminPort, { path: '/metrics' });
  assert.equal(res.statusCode, 200);
  return res.body.toString('utf8');
}

function metric(text, name, labels = {}) {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const want = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (!want) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    found = true;
  }
  return found ? sum : undefined;
}

// ---------------------------------------------------------------------------

describe('upgrade', () => {
  test('RFC 6455 handshake: 101, Sec-WebSocket-Accept, subprotocol ag-ui only when offered', T, async (t) => {
    const agate = await useAgate(t);
    // The RFC's own example key and accept value (section 1.3).
    const raw = await rawUpgrade(agate.port, { headers: { 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Protocol': 'foo, ag-ui' } });
    assert.equal(raw.res.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.equal(raw.res.headers.upgrade.toLowerCase(), 'websocket');
    assert.equal(raw.res.headers.connection.toLowerCase(), 'upgrade');
    assert.equal(raw.res.headers['sec-websocket-protocol'], 'ag-ui');
    assert.ok(raw.res.headers['x-request-id']);
    raw.conn.destroy();
    const plain = await rawUpgrade(agate.port);
    assert.equal(plain.res.headers['sec-websocket-protocol'], undefined, 'no subprotocol when none was offered');
    plain.conn.destroy();
    const ws = await openWs(agate.port, { protocols: ['ag-ui'] });
    assert.equal(ws.protocol, 'ag-ui');
    ws.close();
    await ws.waitClose();
    await stopClean(agate);
  });

  test('bad upgrades get JSON errors: 426 without Upgrade or with another version, 400 bad key, 404, 405', T, async (t) => {
    const agate = await useAgate(t);
    const up = { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' };
    const cases = [
      { headers: {}, status: 426, code: 'upgrade_required' },
      { headers: { ...up, 'Sec-WebSocket-Version': '8' }, status: 426, code: 'unsupported_websocket_version' },
      { headers: { ...up, 'Sec-WebSocket-Key': 'short' }, status: 400, code: 'bad_request' },
      { headers: { ...up, 'Sec-WebSocket-Key': undefined }, status: 400, code: 'bad_request' },
      { headers: up, path: '/v1/agents/nope/ws', status: 404, code: 'agent_not_found' },
      { headers: up, method: 'POST', status: 405, code: 'method_not_allowed' },
    ];
    for (const c of cases) {
      const headers = Object.fromEntries(Object.entries(c.headers).filter(([, v]) => v !== undefined));
      const res = await request(agate.port, { method: c.method ?? 'GET', path: c.path ?? '/v1/agents/echo/ws', headers, body: c.method === 'POST' ? '{}' : undefined });
      assert.equal(res.statusCode, c.status, JSON.stringify(c));
      assert.equal(res.headers['content-type'], 'application/json');
      assert.equal(JSON.parse(res.body.toString()).error, c.code, JSON.stringify(c));
      if (c.status === 426) assert.equal(res.headers['sec-websocket-version'], '13');
    }
    await stopClean(agate);
  });
});

describe('runs', () => {
  test('an echo run: the SSE events as text frames, runId on every event', T, async (t) => {
    const agate = await useAgate(t);
    const ws = await openWs(agate.port, { protocols: 'ag-ui' });
    const text = 'hello over a web socket, word by word';
    const input = runInput(text);
    ws.send(JSON.stringify(input));
    const events = await ws.waitRun(input.runId);
    assertEchoEvents(events, { threadId: input.threadId, runId: input.runId, text, deltas: expectedDeltas(text) });
    for (const e of events) assert.equal(e.runId, input.runId);
    // The same connection takes another run afterwards.
    const second = runInput('again');
    ws.send(JSON.stringify(second));
    assertEchoEvents(await ws.waitRun(second.runId), { runId: second.runId, text: 'again' });
    const m = await scrape(agate);
    assert.equal(metric(m, 'agate_runs_started_total', { agent: 'echo', transport: 'ws' }), 2);
    assert.equal(metric(m, 'agate_runs_ended_total', { agent: 'echo', transport: 'ws', outcome: 'finished' }), 2);
    assert.equal(metric(m, 'agate_ws_connections'), 1);
    assert.ok(metric(m, 'agate_ws_frames_total', { direction: 'out' }) >= events.length + 5);
    // every event but each run's first has a gap, the ones of a burst included
    const sent = metric(m, 'agate_events_sent_total');
    assert.equal(sent, events.length + ws.events.filter((e) => e.runId === second.runId).length);
    assert.equal(metric(m, 'agate_run_first_event_seconds_count', { agent: 'echo' }), 2);
    assert.equal(metric(m, 'agate_run_event_gap_seconds_count', { agent: 'echo' }), sent - 2);
    ws.close(1000);
    await ws.waitClose();
    assert.equal(ws.closeInfo.code, 1000);
    await stopClean(agate);
  });

  test('several concurrent runs on one connection interleave and stay apart by runId', T, async (t) => {
    const agate = await useAgate(t);
    const ws = await openWs(agate.port);
    const inputs = Array.from({ length: 5 }, (_, i) => runInput(`run ${i} says one two three four`, { forwardedProps: paced(15) }));
    for (const input of inputs) ws.send(JSON.stringify(input));
    for (const input of inputs) {
      const events = await ws.waitRun(input.runId);
      assertEchoEvents(events, { threadId: input.threadId, runId: input.runId, text: input.messages[0].content });
    }
    // They ran at the same time: the first run's events are not one block.
    const order = ws.events.map((e) => e.runId);
    const first = order.indexOf(inputs[0].runId), last = order.lastIndexOf(inputs[0].runId);
    assert.ok(order.slice(first, last).some((id) => id !== inputs[0].runId), 'runs interleave');
    ws.close();
    await ws.waitClose();
    await stopClean(agate);
  });

  test('CANCEL ends one run with RUN_ERROR "cancelled"; the others and the connection go on', T, async (t) => {
    const agate = await useAgate(t);
    const ws = await openWs(agate.port);
    const long = runInput(Array.from({ length: 200 }, (_, i) => `w${i}`).join(' '), { forwardedProps: paced(20) });
    const other = runInput('the other run keeps going', { forwardedProps: paced(20) });
    ws.send(JSON.stringify(long));
    ws.send(JSON.stringify(other));
    assert.ok(await ws.until(() => ws.runEvents(long.runId).filter((e) => e.type === 'TEXT_MESSAGE_CONTENT').length >= 2));
    ws.send(JSON.stringify({ type: 'CANCEL', runId: long.runId }));
    const events = await ws.waitRun(long.runId);
    const last = events[events.length - 1];
    assert.equal(last.type, 'RUN_ERROR');
    assert.equal(last.code, 'cancelled');
    const count = events.length;
    assertEchoEvents(await ws.waitRun(other.runId), { runId: other.runId, text: other.messages[0].content });
    await sleep(100);
    assert.equal(ws.runEvents(long.runId).length, count, 'nothing after the RUN_ERROR');
    // CANCEL of an unknown run is ignored; the connection still works.
    ws.send(JSON.stringify({ type: 'CANCEL', runId: 'no-such-run' }));
    const after = runInput('still open');
    ws.send(JSON.stringify(after));
    assertEchoEvents(await ws.waitRun(after.runId), { runId: after.runId, text: 'still open' });
    const m = await scrape(agate);
    assert.equal(metric(m, 'agate_runs_ended_total', { agent: 'echo', transport: 'ws', outcome: 'client_closed' }), 1);
    ws.close();
    await ws.waitClose();
    await stopClean(agate);
  });

  // U+0000 is valid JSON in strings and keys (JSON.parse reads both); agate
  // read these messages with jansson, which refused them, and closed with 1007.
  test('U+0000 in a runId and in keys: a run, its CANCEL, an invalid input answered with RUN_ERROR; the connection stays', T, async (t) => {
    const agate = await useAgate(t);
    const ws = await openWs(agate.port);
    const long = runInput(Array.from({ length: 200 }, (_, i) => `w${i}`).join(' '), {
      runId: `nul\u0000run-${uid('r')}`, state: { '\u0000': 1 }, forwardedProps: paced(20),
    });
    ws.send(JSON.stringify(long));
    assert.ok(await ws.until(() => ws.runEvents(long.runId).filter((e) => e.type === 'TEXT_MESSAGE_CONTENT').length >= 2));
    ws.send(JSON.stringify({ type: 'CANCEL', runId: long.runId, '\u0000': 'CANCEL' }));
    const events = await ws.waitRun(long.runId);
    assert.equal(events.at(-1).type, 'RUN_ERROR');
    assert.equal(events.at(-1).code, 'cancelled');
    ws.send(JSON.stringify({ runId: 'bad\u0000nul', messages: 'not an array', '\u0000': 1 }));
    const [err] = await ws.waitRun('bad\u0000nul');
    assert.equal(err.code, 'invalid_input');
    // a type that only starts with CANCEL is no CANCEL
    ws.send(JSON.stringify({ type: 'CANCEL\u0000', runId: 'not-a-cancel' }));
    const [err2] = await ws.waitRun('not-a-cancel');
    assert.equal(err2.code, 'invalid_input');
    const after = runInput('still open');
    ws.send(JSON.stringify(after));
    assertEchoEvents(await ws.waitRun(after.runId), { runId: after.runId, text: 'still open' });
    assert.equal(ws.closeInfo, null);
    ws.close();
    await ws.waitClose();
    await stopClean(agate);
  });

  test('an invalid RunAgentInput gets RUN_ERROR invalid_input (with its runId) and the connection stays open', T, async (t) => {
    const agate = await useAgate(t);
    const ws = await openWs(agate.port);
    ws.send(JSON.stringify({ runId: 'bad-1', messages: 'not an array' }));
    const [err] = await ws.waitRun('bad-1');
    assert.equal(err.type, 'RUN_ERROR');
    assert.equal(err.code, 'invalid_input');
    assert.match(err.message, /invalid RunAgentInput/);
    // A duplicate runId while the first is running.
    const slow = runInput('a b c d e f g h', { forwardedProps: paced(50) });
    ws.send(JSON.stringify(slow));
    ws.send(JSON.stringify(slow));
    assert.ok(await ws.until(() => ws.events.some((e) => e.code === 'duplicate_run' && e.runId === slow.runId)));
    assert.ok(await ws.until(() => ws.runEvents(slow.runId).some((e) => e.type === 'RUN_FINISHED')));
    assertEchoEvents(ws.runEvents(slow.runId).filter((e) => e.code !== 'duplicate_run'), { runId: slow.runId, text: 'a b c d e f g h' });
    const ok = runInput('fine');
    ws.send(JSON.stringify(ok));
    assertEchoEvents(await ws.waitRun(ok.runId), { runId: ok.runId, text: 'fine' });
    assert.equal(ws.closeInfo, null);
    await stopClean(agate);
  });

  test('ws.max_runs: a run past the limit gets RUN_ERROR too_many_runs', T, async (t) => {
    const agate = await useAgate(t, { config: 'ws: {max_runs: 2}\n' });
    const ws = await openWs(agate.port);
    const ins = [0, 1, 2].map((i) => runInput(`r${i} x y z`, { forwardedProps: paced(40) }));
    for (const i of ins) ws.send(JSON.stringify(i));
    const third = await ws.waitRun(ins[2].runId);
    assert.equal(third.length, 1);
    assert.equal(third[0].code, 'too_many_runs');
    for (const i of ins.slice(0, 2)) assertEchoEvents(await ws.waitRun(i.runId), { runId: i.runId });
    await stopClean(agate);
  });

  test('a message that is not JSON closes with 1007; a binary message with 1003', T, async (t) => {
    const agate = await useAgate(t);
    const ws = await openWs(agate.port);
    ws.send('this is not json');
    assert.ok(await ws.waitClose());
    assert.equal(ws.closeInfo.code, 1007);
    const ws2 = await openWs(agate.port);
    ws2.send(Buffer.from([1, 2, 3]), { binary: true });
    assert.ok(await ws2.waitClose());
    assert.equal(ws2.closeInfo.code, 1003);
    await stopClean(agate);
  });
});

describe('protocol', () => {
  test('1002 for an unmasked client frame', T, async (t) => {
    const agate = await useAgate(t);
    const raw = await rawUpgrade(agate.port);
    await raw.conn.write(frame(1, '{}', { mask: false }));
    await expectClose(raw, 1002);
    await stopClean(agate);
  });

  test('1002 for each RSV bit and for reserved opcodes', T, async (t) => {
    const agate = await useAgate(t);
    for (const f of [frame(1, 'x', { rsv: 4 }), frame(1, 'x', { rsv: 2 }), frame(1, 'x', { rsv: 1 }), frame(3, 'x'), frame(0xb, '')]) {
      const raw = await rawUpgrade(agate.port);
      await raw.conn.write(f);
      await expectClose(raw, 1002);
    }
    // Control frame rules: fragmented ping, 126-byte ping, continuation with nothing open.
    for (const f of [frame(9, 'x', { fin: false }), frame(9, Buffer.alloc(126)), frame(0, 'x')]) {
      const raw = await rawUpgrade(agate.port);
      await raw.conn.write(f);
      await expectClose(raw, 1002);
    }
    await stopClean(agate);
  });

  test('1007 for invalid UTF-8 in a text message, also split across fragments', T, async (t) => {
    const agate = await useAgate(t);
    let raw = await rawUpgrade(agate.port);
    await raw.conn.write(frame(1, Buffer.from([0x7b, 0xff, 0x7d])));
    await expectClose(raw, 1007);
    // A valid character split across two fragments is fine ...
    raw = await rawUpgrade(agate.port);
    const input = runInput('café au lait');
    const bytes = Buffer.from(JSON.stringify(input));
    const cut = bytes.indexOf(Buffer.from('é')) + 1;
    await raw.conn.write(Buffer.concat([frame(1, bytes.subarray(0, cut), { fin: false }), frame(0, bytes.subarray(cut))]));
    assert.ok(await raw.waitFrames((fs) => fs.some((f) => f.opcode === 1 && f.payload.includes('RUN_FINISHED'))));
    // ... an invalid one (a lead byte, then ASCII in the next fragment) is not.
    await raw.conn.write(Buffer.concat([frame(1, Buffer.from('{"a":"\xe2', 'latin1'), { fin: false }), frame(0, Buffer.from('x"}'))]));
    await expectClose(raw, 1007);
    await stopClean(agate);
  });

  test('1009 for a message over ws.max_message', T, async (t) => {
    const agate = await useAgate(t, { config: 'ws: {max_message: 4KiB}\n' });
    const ws = await openWs(agate.port);
    const ok = runInput('x'.repeat(3000));
    ws.send(JSON.stringify(ok));
    await ws.waitRun(ok.runId);
    ws.send(JSON.stringify(runInput('y'.repeat(5000))));
    assert.ok(await ws.waitClose());
    assert.equal(ws.closeInfo.code, 1009);
    // Over the limit only in sum, in fragments.
    const raw = await rawUpgrade(agate.port);
    await raw.conn.write(Buffer.concat([frame(1, 'a'.repeat(3000), { fin: false }), frame(0, 'b'.repeat(3000))]));
    await expectClose(raw, 1009);
    await stopClean(agate);
  });

  test('a fragmented message with a ping between fragments: pong first, then the run', T, async (t) => {
    const agate = await useAgate(t);
    const raw = await rawUpgrade(agate.port);
    const input = runInput('fragments are reassembled');
    const bytes = Buffer.from(JSON.stringify(input));
    const a = bytes.subarray(0, 10), b = bytes.subarray(10, 40), c = bytes.subarray(40);
    await raw.conn.write(frame(1, a, { fin: false }));
    await raw.conn.write(frame(9, 'ping-1'));
    assert.ok(await raw.waitFrames((fs) => fs.some((f) => f.opcode === 10)), 'pong while the message is open');
    const pong = raw.frames().find((f) => f.opcode === 10);
    assert.equal(pong.payload.toString(), 'ping-1');
    await raw.conn.write(Buffer.concat([frame(0, b, { fin: false }), frame(10, ''), frame(0, c)]));
    assert.ok(await raw.waitFrames((fs) => fs.some((f) => f.payload.includes('RUN_FINISHED'))));
    const events = raw.frames().filter((f) => f.opcode === 1).map((f) => JSON.parse(f.payload));
    assertEchoEvents(events, { runId: input.runId, text: 'fragments are reassembled' });
    for (const f of raw.frames()) { assert.equal(f.rsv, 0); assert.equal(f.fin, true); assert.equal(f.masked, false); }
    raw.conn.destroy();
    await stopClean(agate);
  });

  test('agate pings a quiet connection; a peer that answers stays, one that does not is closed', T, async (t) => {
    const agate = await useAgate(t, { config: 'ws: {ping_interval: 200ms, pong_timeout: 300ms}\n' });
    const live = await openWs(agate.port);
    let pings = 0;
    live.on('ping', () => { pings++; });
    const silent = await openWs(agate.port, { options: { autoPong: false } });
    let silentPings = 0;
    silent.on('ping', () => { silentPings++; });
    assert.ok(await silent.waitClose(3000), 'the silent peer is closed');
    assert.equal(silent.closeInfo.code, 1001);
    assert.ok(silentPings >= 1);
    await sleep(600);
    assert.ok(pings >= 2, `pings seen: ${pings}`);
    assert.equal(live.closeInfo, null, 'a peer that answers stays connected');
    const input = runInput('still here');
    live.send(JSON.stringify(input));
    assertEchoEvents(await live.waitRun(input.runId), { runId: input.runId, text: 'still here' });
    await stopClean(agate);
  });

  test('close handshake: agate echoes the client code, then closes TCP; runs stop', T, async (t) => {
    const agate = await useAgate(t);
    const ws = await openWs(agate.port);
    const slow = runInput(Array.from({ length: 100 }, (_, i) => `w${i}`).join(' '), { forwardedProps: paced(20) });
    ws.send(JSON.stringify(slow));
    assert.ok(await ws.until(() => ws.runEvents(slow.runId).length >= 3));
    ws.close(4001, 'done here');
    assert.ok(await ws.waitClose());
    assert.equal(ws.closeInfo.code, 4001, 'agate echoes the code');
    // Raw: close with no payload gets 1000 back, then FIN.
    const raw = await rawUpgrade(agate.port);
    await raw.conn.write(frame(8, ''));
    await expectClose(raw, 1000);
    // A close with a bad code (1005 may not be sent) is a protocol error.
    const raw2 = await rawUpgrade(agate.port);
    await raw2.conn.write(frame(8, closePayload(1005)));
    await expectClose(raw2, 1002);
    const m = await scrape(agate);
    assert.equal(metric(m, 'agate_runs_ended_total', { agent: 'echo', transport: 'ws', outcome: 'client_closed' }), 1);
    assert.equal(metric(m, 'agate_streams', { transport: 'ws' }), 0);
    await stopClean(agate);
  });

  test('frames that arrive in the same packet as the upgrade request are not lost', T, async (t) => {
    const agate = await useAgate(t);
    const conn = await RawConn.connect(agate.port);
    const input = runInput('right behind the handshake');
    const head = buildRequest({ method: 'GET', path: '/v1/agents/echo/ws', headers: {
      Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
    } });
    await conn.write(Buffer.concat([Buffer.from(head), frame(1, JSON.stringify(input))]));
    assert.ok(await conn.waitFor((c) => c.text.includes('RUN_FINISHED')));
    conn.destroy();
    await stopClean(agate);
  });
});

describe('backpressure and cancellation', () => {
  test('a consumer that stops reading: its runs pause (bounded output), then 1008 and the runs are cancelled', T, async (t) => {
    const agate = await useAgate(t, { config: 'stream: {buffer: 64KiB}\nws: {stall_timeout: 2s}\nlimits: {max_body: 8MiB}\n' });
    const raw = await rawUpgrade(agate.port);
    raw.conn.socket.pause();   // stop reading: the kernel buffers fill, then agate's
    const text = Array.from({ length: 150000 }, (_, i) => `w${i % 10}`).join(' ');
    await raw.conn.write(frame(1, JSON.stringify(runInput(text))));
    await sleep(700);
    const a = metric(await scrape(agate), 'agate_events_sent_total');
    await sleep(700);
    const b = metric(await scrape(agate), 'agate_events_sent_total');
    assert.equal(a, b, 'the run is paused while the client does not read');
    assert.ok(a < 150000, `only part of the run went out (${a} events)`);
    // Past stall_timeout the connection is closed and the run cancelled.
    await sleep(2500);
    raw.conn.socket.resume();
    assert.ok(await raw.conn.waitClose(8000), 'agate closes the stuck connection');
    const m = await scrape(agate);
    assert.equal(metric(m, 'agate_runs_ended_total', { agent: 'echo', transport: 'ws', outcome: 'client_closed' }), 1);
    // The slot is freed once the client has read up to our FIN and gone (linger).
    let open = 1;
    for (let i = 0; i < 60 && open !== 0; i++) { open = metric(await scrape(agate), 'agate_ws_connections'); if (open) await sleep(50); }
    assert.equal(open, 0);
    await stopClean(agate);
  });

  test('a client that goes away mid-run cancels its proxied run: the upstream request is aborted', T, async (t) => {
    const srv = await startAguiServer({
      script: { events: (input) => [...simpleRun(input, 'first words').slice(0, 3), { hold: true }] },
    });
    t.after(() => srv.close());
    const agate = await useAgate(t, { config: `agents:\n  up:\n    type: proxy\n    endpoints: [${srv.url}]\n  echo: {type: echo}\n` });
    const ws = await openWs(agate.port, { agent: 'up' });
    const input = runInput('hello upstream');
    ws.send(JSON.stringify(input));
    assert.ok(await ws.until(() => ws.runEvents(input.runId).length >= 3), JSON.stringify(ws.events));
    const [started, msgStart, content] = ws.runEvents(input.runId);
    assert.equal(started.type, 'RUN_STARTED');
    assert.equal(msgStart.type, 'TEXT_MESSAGE_START');
    assert.equal(content.delta, 'first ');
    assert.equal(srv.requests.length, 1);
    assert.deepEqual(JSON.parse(srv.requests[0].body), input, 'the upstream gets the RunAgentInput as sent');
    ws.terminate();
    assert.ok(await srv.waitFor(() => srv.requests[0].closedAt !== null, 5000), 'upstream request closed');
    assert.equal(srv.requests[0].aborted, true);
    await stopClean(agate);
  });

  test('a pass-through upstream event that is not UTF-8 fails that run only (RUN_ERROR), not the connection', T, async (t) => {
    const srv = await startAguiServer({
      script: (rec) => (!rec.json?.runId?.startsWith('bad') ? {} : { events: (input) => [
        ...simpleRun(input, 'ok').slice(0, 2),
        { raw: Buffer.concat([Buffer.from('data: {"type":"TEXT_MESSAGE_CONTENT","messageId":"up-msg-' + input.runId + '","delta":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}\n\n')]) },
        ...simpleRun(input, 'ok').slice(2),
      ] }),
    });
    t.after(() => srv.close());
    const agate = await useAgate(t, { config: `agents:\n  up:\n    type: proxy\n    validation: pass\n    endpoints: [${srv.url}]\n` });
    const ws = await openWs(agate.port, { agent: 'up' });
    const input = runInput('x', { runId: uid('bad') });
    ws.send(JSON.stringify(input));
    const ev = await ws.waitRun(input.runId);
    assert.deepEqual(ev.map((e) => e.type), ['RUN_STARTED', 'TEXT_MESSAGE_START', 'RUN_ERROR']);
    assert.equal(ev[2].code, 'upstream_protocol_error');
    assert.ok(await srv.waitFor(() => srv.requests[0].closedAt !== null, 5000), 'the upstream request is dropped');
    assert.equal(ws.closeInfo, null, 'the connection stays open');
    const next = runInput('y');
    ws.send(JSON.stringify(next));
    const ok = await ws.waitRun(next.runId);
    assert.equal(ok[ok.length - 1].type, 'RUN_FINISHED');
    ws.close();
    await ws.waitClose();
    await stopClean(agate);
  });

  test('CANCEL of a proxied run aborts its upstream request; other runs on the connection finish', T, async (t) => {
    const srv = await startAguiServer({
      script: (rec) => (rec.json?.runId?.startsWith('hold')
        ? { events: (input) => [...simpleRun(input, 'x').slice(0, 2), { hold: true }] }
        : { events: (input) => simpleRun(input, 'from the upstream agent'), interval: 10 }),
    });
    t.after(() => srv.close());
    const agate = await useAgate(t, { config: `agents:\n  up:\n    type: proxy\n    endpoints: [${srv.url}]\n` });
    const ws = await openWs(agate.port, { agent: 'up' });
    const held = runInput('x', { runId: uid('hold') });
    ws.send(JSON.stringify(held));
    assert.ok(await ws.until(() => ws.runEvents(held.runId).length >= 2));
    const free = runInput('y');
    ws.send(JSON.stringify(free));
    ws.send(JSON.stringify({ type: 'CANCEL', runId: held.runId }));
    const ev = await ws.waitRun(held.runId);
    assert.equal(ev[ev.length - 1].code, 'cancelled');
    const heldRec = () => srv.requests.find((r) => r.json?.runId === held.runId);
    assert.ok(await srv.waitFor(() => heldRec()?.closedAt != null, 5000));
    assert.equal(heldRec().aborted, true);
    const fe = await ws.waitRun(free.runId);
    // Exactly the upstream's events, each with the run's runId.
    assert.deepEqual(fe, simpleRun(free, 'from the upstream agent').map((e) => ({ runId: free.runId, ...e })));
    ws.close();
    await ws.waitClose();
    await stopClean(agate);
  });
});
