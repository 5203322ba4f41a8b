// Memory a peer can make agate hold: clients that send and never read.
//
// Each test runs the attack against the real binary over a raw socket that is
// paused (its kernel buffer fills, nothing is read) and keeps writing until the
// writes stop being accepted or a byte budget is reached, and reads agate's
// VmRSS from /proc before and during. The bound that holds is stream.buffer:
// agate parses no more input while a connection's output is at it, so the
// client's further bytes wait in the kernel and TCP pushes back. Then:
// the client starts reading and every response arrives, in order (each
// carries the X-Request-ID of its request), none lost. Before the bound, 3 MB
// of pipelined `GET /` grew agate by ~500 MiB, held until the connection closed.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { startAgate, stopClean, sleep, vmRssKiB } from './lib/harness.mjs';

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

/** Reads HTTP/1.1 responses with Content-Length off a socket as they come,
 * without keeping them: calls onResponse({status, id, bodyLength}) for each. */
function readResponses(sock, onResponse) {
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    let pos = 0;
    for (;;) {
      const eoh = buf.indexOf('\r\n\r\n', pos);
      if (eoh < 0) break;
      const head = buf.subarray(pos, eoh).toString('latin1');
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? NaN);
      assert.ok(Number.isFinite(len), `a response without Content-Length: ${head}`);
      if (buf.length < eoh + 4 + len) break;
      onResponse({
        status: Number(head.slice(9, 12)),
        id: /\r\nx-request-id: *([^\r]*)/i.exec(head)?.[1],
        bodyLength: len,
      });
      pos = eoh + 4 + len;
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
});
