// A real redis-server (Debian's) for the fleet tests: loopback only, no
// persistence, its own port; killed when the test process exits. Also a tiny
// RESP client (for asserting what agate wrote, and for poking the server: ACL,
// CLIENT PAUSE, FLUSHALL) so the tests need no npm Redis package.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import { freePort, sleep } from './harness.mjs';

const live = new Set();
process.once('exit', () => {
  for (const p of live) { try { p.kill('SIGKILL'); } catch { /* ignore */ } }
});

/** Encodes a command as RESP (an array of bulk strings). */
export function respCommand(args) {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
    parts.push(`$${b.length}\r\n`, b, '\r\n');
  }
  return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
}

/** Parses one RESP2 value from buf at pos: [value, next] or null when incomplete.
 * Errors come back as Error objects; bulk strings as Buffers. */
export function respParse(buf, pos = 0) {
  const eol = buf.indexOf('\r\n', pos);
  if (eol < 0) return null;
  const line = buf.toString('latin1', pos + 1, eol);
  const next = eol + 2;
  switch (String.fromCharCode(buf[pos])) {
    case '+': return [line, next];
    case '-': return [new Error(line), next];
    case ':': return [Number(line), next];
    case '$': {
      const n = Number(line);
      if (n < 0) return [null, next];
      if (buf.length < next + n + 2) return null;
      return [buf.subarray(next, next + n), next + n + 2];
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return [null, next];
      const out = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = respParse(buf, p);
        if (!r) return null;
        out.push(r[0]);
        p = r[1];
      }
      return [out, p];
    }
    default: throw new Error(`not RESP at ${pos}: ${JSON.stringify(buf.toString('latin1', pos, pos + 20))}`);
  }
}

/** One connection to Redis; call(...args) resolves with the parsed reply. */
export class RespClient {
  static async connect(port, { host = '127.0.0.1' } = {}) {
    const c = new RespClient();
    c.sock = net.connect({ port, host });
    await once(c.sock, 'connect');
    c.buf = Buffer.alloc(0);
    c.waiting = [];
    c.sock.on('data', (d) => {
      c.buf = Buffer.concat([c.buf, d]);
      for (;;) {
        const r = respParse(c.buf);
        if (!r) break;
        c.buf = c.buf.subarray(r[1]);
        c.waiting.shift()?.(r[0]);
      }
    });
    c.sock.on('error', () => {});
    return c;
  }

  call(...args) {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.sock.write(respCommand(args));
    });
  }

  close() { this.sock.destroy(); }
}

/**
 * Starts redis-server on a free loopback port. Options: port (to restart on
 * the same one), requirepass, args (more `--name value` pairs).
 * Returns { port, proc, call(...args) (a fresh connection each time), stop(), kill() }.
 */
export async function startRedis({ port, requirepass, args = [] } = {}) {
  port ??= await freePort();
  const argv = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'warning'];
  if (requirepass) argv.push('--requirepass', requirepass);
  argv.push(...args);
  const proc = spawn('redis-server', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let log = '';
  proc.stdout.on('data', (d) => { log += d; });
  proc.stderr.on('data', (d) => { log += d; });
  proc.once('exit', () => live.delete(proc));
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      const c = await RespClient.connect(port);
      const pong = await c.call(...(requirepass ? ['AUTH', requirepass] : ['PING']));
      c.close();
      if (pong === 'PONG' || pong === 'OK') break;
    } catch { /* not yet listening */ }
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start on ${port}:\n${log}`);
    await sleep(20);
  }
  const r = {
    port,
    proc,
    log: () => log,
    async call(...a) {
      const c = await RespClient.connect(port);
      try {
        if (requirepass) await c.call('AUTH', requirepass);
        return await c.call(...a);
      } finally { c.close(); }
    },
    async kill() {
      if (proc.exitCode !== null || proc.signalCode) return;
      proc.kill('SIGKILL');
      await once(proc, 'exit');
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode) return;
      proc.kill('SIGTERM');
      await once(proc, 'exit');
    },
  };
  return r;
}
