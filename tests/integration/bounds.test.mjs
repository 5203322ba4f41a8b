// Memory a peer can make agate hold: clients that send and never read.
//
// Each test runs the attack against the real binary over a raw socket that is
// paused (its kernel buffer fills, nothing is read) and keeps writing until the
// writes stop being accepted or a byte budget is reached, and reads agate's
// VmRSS from /proc before and during. The bound that holds is stream.buffer:
// agate parses no more input while a connection's output is at it, so the
// client's further bytes wait in the kernel and TCP pushes back. Then:
//   - HTTP: the client starts reading and every response arrives, in order
//     (each carries the X-Request-ID of its request), none lost;
//   - WebSocket: a client that never reads is closed with 1008 after
//     ws.stall_timeout; one that starts reading in time keeps a working
//     connection (its pings are answered, a run afterwards finishes).
// Before the bound, 3 MB of pipelined `GET /` grew agate by ~500 MiB and 48 MiB
// of pings by ~50 MiB, held until the connection closed. Requests pipelined
// behind a running stream were bounded already (max_header + max_body); they
// are tested the same way.
//
// Every queue a peer can grow, its bound and the test that holds it (these and
// others') are listed in docs/ARCHITECTURE.md, "Queues a peer can grow".
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { startAgate, stopClean, sleep, vmRssKiB, runInput, uid, request, paced } from './lib/harness.mjs';

const T = { timeout: 120000 };
const MiB = 1024 * 1024;

async function useAgate(t, opts) {
  const agate = await startAgate(opts);
  t.after(async () => { if (!agate.exitInfo) await agate.stop(5000); });
  return agate;
}

/** Resolves to promise's value, or to `fallback` after ms; the timer is
 * cleared, so a finished test leaves nothing behind to wait for. */
function within(promise, ms, fallback = false) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((resolve) => { timer = setTimeout(() => resolve(fallback), ms); }),
  ]);
}

/** A raw socket that reads nothing until told: socket.pause() stops Node
 * reading it, so the kernel's receive buffer fills and the window closes. */
async function connectPaused(port) {
  const sock = net.connect(port, '127.0.0.1');
  sock.setNoDelay(true);
  sock.pause();
  await once(sock, 'connect');
  return sock;
}

/** Writes batches from next() until `budget` bytes were handed to the socket,
 * or a write is not drained within stallMs (the peer stopped taking bytes).
 * Returns how many bytes were written and whether the writes stalled. */
async function writeUntilStalled(sock, next, { budget, stallMs = 1500 }) {
  let sent = 0;
  while (sent < budget) {
    const chunk = next();
    sent += chunk.length;
    if (!sock.write(chunk)) {
      // A reset (agate gave up on a peer that does not read) also ends the writes.
      const drained = await within(once(sock, 'drain').then(() => true, () => false), stallMs);
      if (!drained) return { sent, stalled: true };
    }
  }
  return { sent, stalled: false };
}

/** The highest VmRSS (KiB) seen over `ms`. */
async function peakRss(pid, ms) {
  let peak = vmRssKiB(pid);
  for (const end = Date.now() + ms; Date.now() < end;) {
    await sleep(50);
    peak = Math.max(peak, vmRssKiB(pid));
  }
  return peak;
}

/** The end of a chunked body starting at pos, or -1 while incomplete. */
function chunkedEnd(buf, pos) {
  for (;;) {
    const eol = buf.indexOf('\r\n', pos);
    if (eol < 0) return -1;
    const size = parseInt(buf.subarray(pos, eol).toString('latin1'), 16);
    assert.ok(Number.isFinite(size), 'a chunk size');
    const next = eol + 2 + size + 2;
    if (buf.length < next) return -1;
    if (size === 0) return next;
    pos = next;
  }
}

/** Reads HTTP/1.1 responses off a socket as they come, without keeping them:
 * calls onResponse({status, id, body}) for each (body only when chunked: the
 * stream's events). */
function readResponses(sock, onResponse) {
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    let pos = 0;
    for (;;) {
      const eoh = buf.indexOf('\r\n\r\n', pos);
      if (eoh < 0) break;
      const head = buf.subarray(pos, eoh).toString('latin1');
      let end, body = null;
      if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
        end = chunkedEnd(buf, eoh + 4);
        if (end < 0) break;
        body = buf.subarray(eoh + 4, end).toString();
      } else {
        const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? NaN);
        assert.ok(Number.isFinite(len), `a response without Content-Length: ${head}`);
        end = eoh + 4 + len;
        if (buf.length < end) break;
      }
      onResponse({ status: Number(head.slice(9, 12)), id: /\r\nx-request-id: *([^\r]*)/i.exec(head)?.[1], body });
      pos = end;
    }
    buf = buf.subarray(pos);
  });
  sock.resume();
}

// ---------------------------------------------------------------------------

describe('pipelined requests to a client that never reads', () => {
  // GET / is the demo page (~7 KB a response); health checks and errors are
  // small, so the budget is larger for them: before the bound every one of
  // them was answered into memory at once (16 MB of 404s: ~170 MB).
  const kinds = [
    { name: 'GET / (the demo page)', path: '/', status: 200, budget: 3 * MiB },
    { name: 'health checks', path: '/health/live', status: 200, budget: 16 * MiB },
    { name: 'requests answered with an error (404)', path: '/no/such/route', status: 404, budget: 16 * MiB },
  ];
  for (const kind of kinds) {
    test(`${kind.name}: memory bounded while unread; every response, in order, once read`, T, async (t) => {
      const agate = await useAgate(t, { env: { AGATE_SHARDS: '1' } });
      const rss0 = vmRssKiB(agate.pid);
      const sock = await connectPaused(agate.port);
      t.after(() => sock.destroy());
      let n = 0;
      const batch = () => {
        let s = '';
        while (s.length < 64 * 1024) s += `GET ${kind.path} HTTP/1.1\r\nHost: x\r\nX-Request-ID: r${n++}\r\n\r\n`;
        return Buffer.from(s, 'latin1');
      };
      const { sent, stalled } = await writeUntilStalled(sock, batch, { budget: kind.budget });
      const peak = await peakRss(agate.pid, 1000);
      const growthMiB = (peak - rss0) / 1024;
      t.diagnostic(`${n} requests (${(sent / MiB).toFixed(1)} MiB${stalled ? ', then the writes stalled' : ''}); RSS +${growthMiB.toFixed(1)} MiB`);
      assert.ok(growthMiB < 64, `agate grew by ${growthMiB.toFixed(1)} MiB for a client that reads nothing`);

      // The client reads: all n answers arrive, in order, none lost.
      let got = 0;
      let bad = null;
      const done = new Promise((resolve) => {
        readResponses(sock, (r) => {
          if (!bad && (r.status !== kind.status || r.id !== `r${got}`)) bad = { at: got, ...r };
          if (++got === n) resolve();
        });
        sock.on('close', resolve);
      });
      await within(done, 90000);
      assert.equal(bad, null, `response ${bad?.at} out of order or wrong: ${JSON.stringify(bad)}`);
      assert.equal(got, n, 'every pipelined request is answered once the client reads');
      assert.equal(sock.destroyed, false, 'the connection stays open');
      sock.destroy();
      await stopClean(agate);
    });
  }

  // The other input queue: requests pipelined behind a running stream wait in
  // agate until it ends, up to limits.max_header + limits.max_body (here 80 KiB);
  // past that agate stops reading them (test_conn's test_io_pause_pipelined).
  test('requests pipelined behind a running stream: at most max_header + max_body held; all answered after it', T, async (t) => {
    const agate = await useAgate(t, { config: 'limits: {max_header: 16KiB, max_body: 64KiB}\n', env: { AGATE_SHARDS: '1' } });
    const rss0 = vmRssKiB(agate.pid);
    const sock = await connectPaused(agate.port);
    t.after(() => sock.destroy());
    const body = JSON.stringify(runInput('one two three four five six', { forwardedProps: paced(300) }));
    sock.write(`POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-ID: stream\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    let n = 0;
    const batch = () => {
      let s = '';
      while (s.length < 64 * 1024) s += `GET /health/live HTTP/1.1\r\nHost: x\r\nX-Request-ID: r${n++}\r\n\r\n`;
      return Buffer.from(s, 'latin1');
    };
    const { sent, stalled } = await writeUntilStalled(sock, batch, { budget: 64 * MiB });
    const growthMiB = (await peakRss(agate.pid, 500) - rss0) / 1024;
    t.diagnostic(`${n} requests behind the stream (${(sent / MiB).toFixed(1)} MiB${stalled ? ', then the writes stalled' : ''}); RSS +${growthMiB.toFixed(1)} MiB`);
    assert.ok(stalled, 'the writes stall: agate stops reading behind the stream');
    assert.ok(growthMiB < 16, `agate grew by ${growthMiB.toFixed(1)} MiB`);

    let got = 0;
    let bad = null;
    let stream = null;
    const done = new Promise((resolve) => {
      readResponses(sock, (r) => {
        if (!stream) { stream = r; return; }
        if (!bad && (r.status !== 200 || r.id !== `r${got}`)) bad = { at: got, ...r };
        if (++got === n) resolve();
      });
      sock.on('close', resolve);
    });
    await within(done, 90000);
    assert.equal(stream?.id, 'stream', 'the stream is answered first');
    assert.match(stream.body, /RUN_FINISHED/);
    assert.equal(bad, null, `response ${bad?.at} out of order or wrong: ${JSON.stringify(bad)}`);
    assert.equal(got, n, 'every request behind the stream is answered once it ends');
    sock.destroy();
    await stopClean(agate);
  });
});

// ---------------------------------------------------------------------------
// WebSocket

/** A client frame, masked with a fixed key: a flood is made of hundreds of
 * thousands of them, and a random key each (crypto) made the client, not
 * agate, the slow side. */
const MASK = [0x3c, 0xa5, 0x5a, 0xc3];
function frame(opcode, payload) {
  const data = Buffer.from(payload);
  const n = data.length;
  const hl = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(hl + 4 + n);
  out[0] = 0x80 | opcode;
  if (n < 126) out[1] = 0x80 | n;
  else if (n < 65536) { out[1] = 0x80 | 126; out.writeUInt16BE(n, 2); }
  else { out[1] = 0x80 | 127; out.writeBigUInt64BE(BigInt(n), 2); }
  for (let i = 0; i < 4; i++) out[hl + i] = MASK[i];
  for (let i = 0; i < n; i++) out[hl + 4 + i] = data[i] ^ MASK[i & 3];
  return out;
}

/** Upgrades on a paused raw socket; resolves once the 101 head has been read,
 * with whatever came after it. */
async function upgradePaused(port) {
  const sock = await connectPaused(port);
  sock.write(`GET /v1/agents/echo/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n\r\n`);
  let buf = Buffer.alloc(0);
  for (;;) {
    await once(sock, 'readable');
    let d;
    while ((d = sock.read()) !== null) buf = Buffer.concat([buf, d]);
    const eoh = buf.indexOf('\r\n\r\n');
    if (eoh >= 0) {
      assert.match(buf.subarray(0, eoh).toString('latin1'), /^HTTP\/1\.1 101 /);
      return { sock, rest: buf.subarray(eoh + 4) };
    }
  }
}

/** Reads server frames as they come, without keeping them, from `rest` on. */
function readFrames(sock, rest, onFrame) {
  let buf = rest;
  const parse = () => {
    let pos = 0;
    for (;;) {
      if (buf.length - pos < 2) break;
      let len = buf[pos + 1] & 0x7f, at = pos + 2;
      if (len === 126) { if (buf.length - at < 2) break; len = buf.readUInt16BE(at); at += 2; }
      else if (len === 127) { if (buf.length - at < 8) break; len = Number(buf.readBigUInt64BE(at)); at += 8; }
      if (buf.length - at < len) break;
      onFrame({ opcode: buf[pos] & 0x0f, payload: buf.subarray(at, at + len) });
      pos = at + len;
    }
    buf = buf.subarray(pos);
  };
  sock.on('data', (d) => { buf = buf.length ? Buffer.concat([buf, d]) : d; parse(); });
  parse();
  sock.resume();
}

async function scrape(agate) {
  const res = await request(agate.adminPort, { path: '/metrics' });
  assert.equal(res.statusCode, 200);
  return res.body.toString('utf8');
}

function metric(text, name, labels = {}) {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

const framesOut = async (agate) => metric(await scrape(agate), 'agate_ws_frames_total', { direction: 'out' });
const framesIn = async (agate) => metric(await scrape(agate), 'agate_ws_frames_total', { direction: 'in' });

/** A 125-byte ping (the largest control payload) numbered i: its pong says which ping it answers. */
const ping = (i) => frame(9, `p${String(i).padStart(124, '0')}`);

/** Batches of ~64 KiB of frames made by one(i), counting them in counter.n. */
const batches = (one, counter) => () => {
  const parts = [];
  for (let bytes = 0; bytes < 64 * 1024;) { const f = one(counter.n++); parts.push(f); bytes += f.length; }
  return Buffer.concat(parts);
};

/** A peer that has stopped reading: waits for agate to queue its close (the
 * one frame that can still be added to a stuck output), then reads everything
 * within the 2 s agate gives a closed peer, and returns the frames that
 * followed `rest` and whether agate then closed the connection. */
async function closeAfterStall(agate, sock, rest, { timeout }) {
  const before = await framesOut(agate);
  const deadline = Date.now() + timeout;
  while (await framesOut(agate) === before && Date.now() < deadline) await sleep(100);
  const frames = [];
  readFrames(sock, rest, (f) => frames.push({
    opcode: f.opcode,
    code: f.opcode === 8 ? f.payload.readUInt16BE(0) : null,
    reason: f.opcode === 8 ? f.payload.subarray(2).toString() : null,
  }));
  const closed = await within(once(sock, 'close').then(() => true, () => true), 10000);
  return { frames, closed };
}

function assertClosed1008({ frames, closed }) {
  assert.ok(closed, 'agate closes the connection');
  const close = frames.find((f) => f.opcode === 8);
  assert.ok(close, `a close frame; got ${frames.length} frames`);
  assert.equal(close.code, 1008);
  assert.equal(close.reason, 'client too slow: send buffer stuck');
  assert.equal(frames[frames.length - 1], close, 'nothing after the close frame');
}

// ASan's quarantine keeps freed blocks resident, so the WebSocket bound is
// looser than what the release build needs (+7 MiB for 130 MiB of pings).
const WS_GROWTH_MIB = 32;

describe('WebSocket peers that never read', () => {
  test('48 MiB of pings, unread: memory bounded; once read, the latest is answered and the connection works', T, async (t) => {
    const agate = await useAgate(t, { config: 'stream: {buffer: 64KiB}\nws: {ping_interval: 0s}\n', env: { AGATE_SHARDS: '1' } });
    const rss0 = vmRssKiB(agate.pid);
    const { sock, rest } = await upgradePaused(agate.port);
    t.after(() => sock.destroy());
    const count = { n: 0 };
    const { sent, stalled } = await writeUntilStalled(sock, batches(ping, count), { budget: 48 * MiB });
    const growthMiB = (await peakRss(agate.pid, 1000) - rss0) / 1024;
    t.diagnostic(`${count.n} pings (${(sent / MiB).toFixed(1)} MiB${stalled ? ', then the writes stalled' : ''}); RSS +${growthMiB.toFixed(1)} MiB`);
    assert.ok(growthMiB < WS_GROWTH_MIB, `agate grew by ${growthMiB.toFixed(1)} MiB for a peer that reads nothing`);

    const pongs = [];
    const events = [];
    readFrames(sock, rest, (f) => {
      if (f.opcode === 10) pongs.push(f.payload.toString());
      else if (f.opcode === 1) events.push(JSON.parse(f.payload.toString()));
      else assert.fail(`unexpected frame, opcode ${f.opcode}`);
    });
    const last = `p${String(count.n - 1).padStart(124, '0')}`;
    const deadline = Date.now() + 60000;
    while (pongs[pongs.length - 1] !== last && Date.now() < deadline && !sock.destroyed) await sleep(50);
    assert.equal(pongs[pongs.length - 1], last, 'the latest ping is answered once everything is read');
    let prev = -1;
    for (const p of pongs) {
      const i = Number(p.slice(1));
      assert.ok(i > prev, 'pongs answer pings in the order sent');
      prev = i;
    }
    t.diagnostic(`${pongs.length} pongs for ${count.n} pings`);
    const input = runInput('still here', { runId: uid('run') });
    sock.write(frame(1, JSON.stringify(input)));
    while (!events.some((e) => e.type === 'RUN_FINISHED') && Date.now() < deadline) await sleep(20);
    assert.deepEqual(events.map((e) => e.type),
      ['RUN_STARTED', 'TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_END', 'RUN_FINISHED']);
    assert.equal(sock.destroyed, false);
    sock.destroy();
    await stopClean(agate);
  });

  test('invalid messages (a RUN_ERROR each), unread: memory bounded, then 1008 after ws.stall_timeout', T, async (t) => {
    const agate = await useAgate(t, { config: 'stream: {buffer: 64KiB}\nws: {stall_timeout: 3s, ping_interval: 0s}\n', env: { AGATE_SHARDS: '1' } });
    const rss0 = vmRssKiB(agate.pid);
    const { sock, rest } = await upgradePaused(agate.port);
    t.after(() => sock.destroy());
    sock.on('error', () => {});   // a write may meet agate's reset once it has given up on us
    const started = Date.now();
    const count = { n: 0 };
    const { sent, stalled } = await writeUntilStalled(sock, batches(() => frame(1, '{}'), count), { budget: 8 * MiB, stallMs: 1000 });
    const growthMiB = (await peakRss(agate.pid, 500) - rss0) / 1024;
    const read = await framesIn(agate);
    t.diagnostic(`${count.n} messages (${(sent / MiB).toFixed(1)} MiB${stalled ? ', then the writes stalled' : ''}), ${read} read; RSS +${growthMiB.toFixed(1)} MiB`);
    assert.ok(growthMiB < WS_GROWTH_MIB, `agate grew by ${growthMiB.toFixed(1)} MiB for a peer that reads nothing`);
    assert.ok(read < count.n / 2, `agate stopped reading (${read} of ${count.n} messages read)`);
    const res = await closeAfterStall(agate, sock, rest, { timeout: 10000 });
    assert.ok(Date.now() - started >= 3000, 'not before ws.stall_timeout');
    assertClosed1008(res);
    await stopClean(agate);
  });

  test('pings behind a run\'s unread events: read only until the output is full, then 1008 after ws.stall_timeout', T, async (t) => {
    const agate = await useAgate(t, { config: 'stream: {buffer: 64KiB}\nws: {stall_timeout: 3s, ping_interval: 0s}\nlimits: {max_body: 8MiB}\n', env: { AGATE_SHARDS: '1' } });
    const rss0 = vmRssKiB(agate.pid);
    const { sock, rest } = await upgradePaused(agate.port);
    t.after(() => sock.destroy());
    sock.on('error', () => {});
    const started = Date.now();
    // A run far bigger than the kernel's buffers: its events fill them, then stream.buffer.
    const text = Array.from({ length: 150000 }, (_, i) => `w${i % 10}`).join(' ');
    sock.write(frame(1, JSON.stringify(runInput(text))));
    let events = 0;
    for (let prev = -1, end = Date.now() + 10000; (!events || events !== prev) && Date.now() < end; await sleep(300)) {
      prev = events;
      events = metric(await scrape(agate), 'agate_events_sent_total');
    }
    assert.ok(events > 0 && events < 150000, `the run is blocked part way (${events} events)`);
    const in0 = await framesIn(agate);
    const count = { n: 0 };
    const { sent, stalled } = await writeUntilStalled(sock, batches(ping, count), { budget: 48 * MiB, stallMs: 1000 });
    const growthMiB = (await peakRss(agate.pid, 500) - rss0) / 1024;
    const read = await framesIn(agate) - in0;
    t.diagnostic(`${events} events out, then ${count.n} pings (${(sent / MiB).toFixed(1)} MiB${stalled ? ', then the writes stalled' : ''}), ${read} read; RSS +${growthMiB.toFixed(1)} MiB`);
    assert.ok(growthMiB < WS_GROWTH_MIB, `agate grew by ${growthMiB.toFixed(1)} MiB for a peer that reads nothing`);
    assert.ok(stalled, 'the writes stall: agate reads no pings while its output is full');
    // Pings are read while the output is under the bound (their pongs fill it),
    // then none: the rest wait unread in the kernel.
    assert.ok(read < count.n / 2, `agate stopped reading once its output was full (${read} of ${count.n} pings read)`);
    const res = await closeAfterStall(agate, sock, rest, { timeout: 10000 });
    assert.ok(Date.now() - started >= 3000, 'not before ws.stall_timeout');
    assertClosed1008(res);
    await stopClean(agate);
  });
});
