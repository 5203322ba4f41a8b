// Test harness for agate's integration tests: starts the real binary, talks to it
// over raw sockets, parses HTTP/1.x responses and SSE frames.
//
// Everything here is loopback-only and bounded in time.

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import assert from 'node:assert/strict';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Absolute path of the binary under test: $AGATE_BIN (relative to the repo root) or build/agate. */
export function agateBin() {
  const bin = process.env.AGATE_BIN || 'build/agate';
  return path.isAbsolute(bin) ? bin : path.join(REPO_ROOT, bin);
}

/** How this run of the suite starts agate (tests/run-integration.sh sets these):
 *   AGATE_TEST_BACKEND=epoll   every agate gets AGATE_ENGINE_BACKEND=epoll (a test may override it)
 *   AGATE_TEST_WRAP=build/nouring   every agate is started through that command (a seccomp
 *                              filter refusing io_uring: engine.backend auto falls back to epoll) */
export const TEST_BACKEND = process.env.AGATE_TEST_BACKEND || '';
export const TEST_WRAP = process.env.AGATE_TEST_WRAP || '';

/** Environment for any agate process: sanitizer options, and nothing from the
 * caller's AGATE_* variables (tests say explicitly what they set), but the run's backend. */
export function agateEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('AGATE_')) env[k] = v;
  }
  env.ASAN_OPTIONS = 'detect_leaks=1:abort_on_error=0';
  env.UBSAN_OPTIONS = 'print_stacktrace=1:halt_on_error=1';
  if (TEST_BACKEND) env.AGATE_ENGINE_BACKEND = TEST_BACKEND;
  return Object.assign(env, extra);
}

/** CPU time (user + system) a process has used, in seconds, from /proc/PID/stat. */
let clkTck;
export function cpuSeconds(pid) {
  clkTck ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');   // f[0] is field 3 (state): utime is f[11], stime f[12]
  return (Number(f[11]) + Number(f[12])) / clkTck;
}

/** A process's RLIMIT_NOFILE, from /proc/PID/limits: {soft, hard} (Infinity for unlimited). */
export function nofileOf(pid = 'self') {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(fs.readFileSync(`/proc/${pid}/limits`, 'utf8'));
  const n = (x) => (x === 'unlimited' ? Infinity : Number(x));
  return { soft: n(m[1]), hard: n(m[2]) };
}

/** The command line that starts the binary: [file, ...args], through `wrap`
 * (a command and its arguments, e.g. ['taskset', '-c', '0']) or the run's AGATE_TEST_WRAP. */
export function agateCommand(args, wrap = null) {
  const w = wrap ?? (TEST_WRAP ? [path.isAbsolute(TEST_WRAP) ? TEST_WRAP : path.join(REPO_ROOT, TEST_WRAP)] : []);
  const argv = [...w, agateBin(), ...args];
  return [argv[0], argv.slice(1)];
}

/** Asserts the start-up line ("msg":"listening") names the engine backend this
 * run expects and says why: epoll under AGATE_TEST_WRAP (io_uring_setup refused
 * with EPERM) or AGATE_TEST_BACKEND=epoll; otherwise auto's choice on this host. */
export async function assertEngineLine(agate) {
  const line = await waitFor(() => agate.stdoutLines().map((l) => { try { return JSON.parse(l); } catch { return null; } })
    .find((j) => j && j.msg === 'listening'), 3000);
  assert.ok(line, `a "listening" line on stdout:\n${agate.stdout()}`);
  assert.equal(typeof line.backend_why, 'string', JSON.stringify(line));
  if (TEST_WRAP) {
    assert.equal(line.backend, 'epoll', JSON.stringify(line));
    assert.match(line.backend_why, /^auto: io_uring_setup: Operation not permitted/, JSON.stringify(line));
  } else if (TEST_BACKEND === 'epoll') {
    assert.equal(line.backend, 'epoll', JSON.stringify(line));
    assert.equal(line.backend_why, 'engine.backend: epoll');
  } else {
    assert.ok(['io_uring', 'epoll'].includes(line.backend), JSON.stringify(line));
    if (line.backend === 'io_uring') assert.equal(line.backend_why, 'auto: io_uring works');
    else assert.match(line.backend_why, /^auto: io_uring_(setup|enter|register): /, JSON.stringify(line));
  }
  return line;
}

/** A process's resident memory, from /proc (NaN if it cannot be read). */
export function vmRssKiB(pid) {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Calls fn every `every` ms until it returns something truthy or `timeout` ms pass;
 * returns the last value (falsy on timeout). */
export async function waitFor(fn, timeout, every = 20) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) return v;
    await sleep(every);
  }
}

let tmpDir;
let tmpSeq = 0;
/** Writes text to a fresh file in this process's temp directory; returns its path. */
export function writeTemp(text, name = 'agate.yaml') {
  if (!tmpDir) {
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'agate-it-'));
    process.once('exit', () => {
      try { fs.rmSync(tmpDir, { recursive: true, force: true }); } catch { /* ignore */ }
    });
  }
  const p = path.join(tmpDir, `${++tmpSeq}-${name}`);
  fs.writeFileSync(p, text);
  return p;
}

/** A loopback port that was free a moment ago (bind 0, read, close). */
export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

// Every process started here is killed if the test process goes away first.
const live = new Set();
process.once('exit', () => {
  for (const p of live) { try { p.kill('SIGKILL'); } catch { /* ignore */ } }
});

// What the harness is waiting for, for the watchdog's report.
let phase = 'loading the test file';

/** The kernel's view of a process: state, wait channel and stack (for hang reports). */
function procState(pid) {
  const read = (f) => { try { return fs.readFileSync(`/proc/${pid}/${f}`, 'utf8').trim(); } catch (e) { return `(${e.code})`; } };
  const state = (read('status').match(/^State:.*$/m) || ['State: gone'])[0];
  return `pid ${pid} ${state}, wchan ${read('wchan')}\n${read('stack')}`;
}

// A test file that runs this long is stuck somewhere no test timeout reaches (a
// hook, a wait on a process): report what it waits on and what is open, and fail
// the file instead of stalling the suite. No file takes a tenth of this.
const WATCHDOG_MS = Number(process.env.AGATE_TEST_WATCHDOG_MS || 600000);
setTimeout(() => {
  const lines = [`[harness] watchdog: ${path.basename(process.argv[1] || '?')} still running after ${WATCHDOG_MS / 1000} s`,
    `[harness] waiting on: ${phase}`,
    `[harness] open resources: ${JSON.stringify(process.getActiveResourcesInfo())}`];
  for (const p of live) lines.push(`[harness] agate ${procState(p.pid)}`);
  process.stderr.write(`${lines.join('\n')}\n`);
  process.exit(70);
}, WATCHDOG_MS).unref();

// The timer above needs a free main thread; a native deadlock (node 20's crypto has
// had one) blocks it for good. A worker thread gives the file 30 s more, then kills
// this process's children and the process itself, so the suite goes on to fail.
const deadlockWatch = new Worker(`
  const fs = require('node:fs');
  const { workerData: { ms, pid, file } } = require('node:worker_threads');
  setTimeout(() => {
    fs.writeSync(2, '[harness] watchdog: ' + file + ' still running after ' + ms / 1000 +
      ' s and its main thread does not answer (a native deadlock?): killing it\\n');
    for (const d of fs.readdirSync('/proc')) {
      try {
        const st = fs.readFileSync('/proc/' + d + '/stat', 'utf8');
        if (Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === pid) process.kill(Number(d), 'SIGKILL');
      } catch { /* gone, or not a process */ }
    }
    process.kill(pid, 'SIGKILL');
  }, ms);
`, { eval: true, workerData: { ms: WATCHDOG_MS + 30000, pid: process.pid, file: path.basename(process.argv[1] || '?') } });
deadlockWatch.unref();

/** SIGKILL, then wait (bounded) for the exit; a process the kernel does not let go is reported. */
async function killAndReap(proc, exited, closed) {
  proc.kill('SIGKILL');
  phase = `the exit of agate pid ${proc.pid} after SIGKILL`;
  let t;
  const r = await Promise.race([exited, new Promise((resolve) => { t = setTimeout(() => resolve(null), 15000); })]);
  clearTimeout(t);
  if (!r) throw new Error(`agate pid ${proc.pid} did not exit within 15 s of SIGKILL: ${procState(proc.pid)}`);
  await Promise.race([closed, sleep(2000)]);
}

/**
 * Starts agate.
 *   config: YAML text written to a temp file and passed as --config (omit or null: no --config)
 *   env:    extra environment (overrides the AGATE_LISTEN/AGATE_ADMIN_LISTEN/AGATE_SHARDS set here)
 *   args:   extra command-line arguments
 *   ready:  wait for GET /health/ready == 200 on the main port (default true)
 *   port, adminPort: listen on these instead of free ports (e.g. another agate's)
 *   nofile: {soft, hard} descriptor limit (RLIMIT_NOFILE) to start it under, set by
 *           /bin/sh's ulimit before it execs agate (same pid); hard omitted: inherited
 */
export async function startAgate({ config, env = {}, args = [], ready = true, readyTimeout = 10000, port, adminPort, nofile, wrap = null } = {}) {
  phase = 'a free port';
  port ??= await freePort();
  adminPort ??= await freePort();
  while (adminPort === port) adminPort = await freePort();
  const configPath = config == null ? null : writeTemp(config);
  const fullEnv = agateEnv({
    AGATE_LISTEN: `127.0.0.1:${port}`,
    AGATE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
    AGATE_SHARDS: '2',
    ...env,
  });
  const argv = [...(configPath ? ['--config', configPath] : []), ...args];
  const bin = agateBin();
  if (!fs.existsSync(bin)) throw new Error(`agate binary not found: ${bin} (build it, or set AGATE_BIN)`);
  const [file, fileArgs] = agateCommand(argv, wrap);
  // Soft first: a hard limit under the current soft one is refused.
  const limits = nofile ? [`ulimit -Sn ${Number(nofile.soft)}`, ...(nofile.hard ? [`ulimit -Hn ${Number(nofile.hard)}`] : [])] : [];
  const proc = nofile
    ? spawn('/bin/sh', ['-c', `${limits.join(' && ')} && exec "$0" "$@"`, file, ...fileArgs], { cwd: REPO_ROOT, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(file, fileArgs, { cwd: REPO_ROOT, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);

  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { err += d; });

  let exitInfo = null;
  let resolveExited;
  const exited = new Promise((resolve) => { resolveExited = resolve; });
  proc.once('exit', (code, signal) => {
    exitInfo = exitInfo ?? { code, signal };
    live.delete(proc);
    resolveExited(exitInfo);
  });
  // 'exit' can fire before the pipes drain: wait for 'close' to have all output.
  let resolveClosed;
  const closed = new Promise((resolve) => { resolveClosed = resolve; });
  proc.once('close', () => resolveClosed());
  // A failed spawn (ENOENT, EACCES, ETXTBSY while the binary is being relinked)
  // emits 'error' and no 'exit': settle both promises here, or every wait hangs.
  proc.once('error', (e) => {
    err += `\n[harness] spawn error: ${e.message}\n`;
    if (!exitInfo) exitInfo = { code: null, signal: null, error: e.message };
    live.delete(proc);
    resolveExited(exitInfo);
    resolveClosed();
  });

  const exitCodeOf = (info) => (info.error ? `spawn error: ${info.error}` : info.code !== null ? info.code : `signal ${info.signal}`);

  const agate = {
    port,
    adminPort,
    configPath,
    proc,
    pid: proc.pid,
    exited,
    stdout: () => out,
    stdoutLines: () => out.split('\n').filter((l) => l.length > 0),
    stderr: () => err,
    get exitInfo() { return exitInfo; },
    /** Sends a signal (default SIGTERM) without waiting. */
    signal(sig = 'SIGTERM') { if (!exitInfo) proc.kill(sig); },
    /** Waits for exit (timeout ms); returns the exit code, or "signal X", or "timeout". */
    async waitExit(timeout = 30000) {
      phase = `agate pid ${proc.pid} to exit`;
      let t;
      const r = await Promise.race([
        exited.then((info) => exitCodeOf(info)),
        new Promise((resolve) => { t = setTimeout(() => resolve('timeout'), timeout); }),
      ]);
      clearTimeout(t);
      if (r === 'timeout') {
        await killAndReap(proc, exited, closed);
        return 'timeout';
      }
      await Promise.race([closed, sleep(2000)]);
      return r;
    },
    /** SIGTERM, then wait for exit (30 s). Returns the exit code (0 expected). */
    async stop(timeout = 30000) {
      if (!exitInfo) proc.kill('SIGTERM');
      return agate.waitExit(timeout);
    },
  };

  if (ready) {
    phase = `agate pid ${proc.pid} to be ready on port ${port}`;
    const deadline = Date.now() + readyTimeout;
    let lastErr = '';
    for (;;) {
      if (exitInfo) {
        await Promise.race([closed, sleep(1000)]);
        throw new Error(`agate exited (${exitCodeOf(exitInfo)}) before becoming ready; stderr:\n${err}`);
      }
      try {
        const r = await request(port, { path: '/health/ready', timeout: 1000 });
        if (r.statusCode === 200) break;
        lastErr = `status ${r.statusCode}`;
      } catch (e) {
        lastErr = e.message;
      }
      if (Date.now() > deadline) {
        const state = procState(proc.pid);
        await killAndReap(proc, exited, closed);
        throw new Error(`agate not ready on 127.0.0.1:${port} within ${readyTimeout} ms (${lastErr}); it was ${state}; stderr:\n${err}`);
      }
      await sleep(50);
    }
  }
  phase = 'a test (agate started)';
  return agate;
}

const SANITIZER_MARKS = ['AddressSanitizer', 'LeakSanitizer', 'runtime error'];

/** Asserts the exit code is 0 and stderr shows no ASan/LSan/UBSan report. */
export function assertCleanExit(agate, code) {
  const err = agate.stderr();
  const tail = err.length > 4000 ? `…${err.slice(-4000)}` : err;
  assert.equal(code, 0, `agate exit code ${code} (expected 0); stderr:\n${tail}`);
  for (const m of SANITIZER_MARKS) {
    assert.ok(!err.includes(m), `stderr contains "${m}":\n${tail}`);
  }
}

/** stop() + assertCleanExit(); returns the code. */
export async function stopClean(agate, timeout = 30000) {
  const code = await agate.stop(timeout);
  assertCleanExit(agate, code);
  return code;
}

// ---------------------------------------------------------------------------
// Raw sockets

/**
 * One TCP connection kept as a byte log.
 *   conn.data     Buffer of everything received
 *   conn.ended    peer sent FIN / socket closed
 *   conn.error    socket error (ECONNRESET, ...)
 */
export class RawConn {
  constructor(socket) {
    this.socket = socket;
    this.data = Buffer.alloc(0);
    this.ended = false;
    this.closed = false;
    this.error = null;
    this.closedAt = null;
    this.chunks = []; // [{at, bytes}]
    this._waiters = new Set();
    socket.on('data', (d) => {
      this.data = Buffer.concat([this.data, d]);
      this.chunks.push({ at: Date.now(), bytes: d });
      this._poke();
    });
    socket.on('end', () => { this.ended = true; this._poke(); });
    socket.on('error', (e) => { this.error = e; this._poke(); });
    socket.on('close', () => {
      this.closed = true;
      this.ended = true;
      this.closedAt = Date.now();
      this._poke();
    });
  }

  static connect(port, { host = '127.0.0.1', timeout = 3000 } = {}) {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host });
      s.setNoDelay(true);
      const t = setTimeout(() => { s.destroy(); reject(new Error(`connect timeout to ${host}:${port}`)); }, timeout);
      s.once('connect', () => { clearTimeout(t); s.removeListener('error', onErr); resolve(new RawConn(s)); });
      const onErr = (e) => { clearTimeout(t); reject(e); };
      s.once('error', onErr);
    });
  }

  _poke() { for (const w of [...this._waiters]) w(); }

  write(bytes) {
    return new Promise((resolve) => {
      if (this.closed || this.socket.destroyed) return resolve(false);
      this.socket.write(bytes, (e) => resolve(!e));
    });
  }

  get text() { return this.data.toString('utf8'); }

  /** Waits until pred(this) is true; resolves true, or false at the timeout. */
  waitFor(pred, timeout = 5000) {
    return new Promise((resolve) => {
      if (pred(this)) return resolve(true);
      let t;
      const w = () => {
        if (pred(this)) { clearTimeout(t); this._waiters.delete(w); resolve(true); }
      };
      t = setTimeout(() => { this._waiters.delete(w); resolve(pred(this)); }, timeout);
      this._waiters.add(w);
    });
  }

  /** Waits until the peer closes (FIN or reset); true when it did within the timeout. */
  waitClose(timeout = 5000) { return this.waitFor((c) => c.ended || c.closed, timeout); }

  /** Waits until `count` complete final responses can be parsed. */
  async waitResponses(count, { timeout = 5000, methods = [] } = {}) {
    await this.waitFor((c) => {
      const r = parseResponses(c.data, { methods, eof: c.ended });
      return r.responses.filter((x) => x.complete).length >= count;
    }, timeout);
    return parseResponses(this.data, { methods, eof: this.ended }).responses;
  }

  destroy() { this.socket.destroy(); }
  end() { this.socket.end(); }
}

/**
 * Sends exact bytes over a fresh connection and collects everything until the peer
 * closes, until(dataBuffer) returns true, or the timeout.
 * Returns {data, text, closed, timedOut, error, conn}.
 */
export async function rawRequest(port, bytes, { until, timeout = 5000, host = '127.0.0.1', keepOpen = false } = {}) {
  const conn = await RawConn.connect(port, { host });
  const chunks = Array.isArray(bytes) ? bytes : [bytes];
  for (const c of chunks) await conn.write(c);
  const ok = await conn.waitFor((c) => c.ended || c.closed || (until ? until(c.data) : false), timeout);
  const res = {
    data: conn.data,
    text: conn.data.toString('utf8'),
    closed: conn.ended || conn.closed,
    timedOut: !ok,
    error: conn.error,
    conn,
  };
  if (!keepOpen) conn.destroy();
  return res;
}

// ---------------------------------------------------------------------------
// HTTP/1.x response parsing

const CRLF2 = Buffer.from('\r\n\r\n');

function parseHead(text) {
  const lines = text.split('\r\n');
  const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
  const headers = {};
  const rawHeaders = [];
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i <= 0) throw new Error(`bad header line: ${JSON.stringify(line)}`);
    const name = line.slice(0, i).trim();
    const value = line.slice(i + 1).trim();
    rawHeaders.push([name, value]);
    const k = name.toLowerCase();
    headers[k] = k in headers ? `${headers[k]}, ${value}` : value;
  }
  return { httpVersion: m[1], statusCode: Number(m[2]), statusMessage: m[3] ?? '', headers, rawHeaders };
}

/** Decodes a chunked body starting at buf[pos]. Returns {body, end, complete, chunkSizes, trailers}. */
export function dechunk(buf, pos = 0) {
  const parts = [];
  const chunkSizes = [];
  for (;;) {
    const eol = buf.indexOf('\r\n', pos);
    if (eol < 0) return { body: Buffer.concat(parts), end: pos, complete: false, chunkSizes };
    const sizeLine = buf.subarray(pos, eol).toString('latin1');
    const size = parseInt(sizeLine.split(';')[0].trim(), 16);
    if (Number.isNaN(size)) throw new Error(`bad chunk size line ${JSON.stringify(sizeLine)}`);
    if (size === 0) {
      // trailers, then CRLF
      let p = eol + 2;
      const trailers = [];
      for (;;) {
        const e = buf.indexOf('\r\n', p);
        if (e < 0) return { body: Buffer.concat(parts), end: pos, complete: false, chunkSizes };
        if (e === p) return { body: Buffer.concat(parts), end: e + 2, complete: true, chunkSizes, trailers };
        trailers.push(buf.subarray(p, e).toString('latin1'));
        p = e + 2;
      }
    }
    if (buf.length < eol + 2 + size + 2) return { body: Buffer.concat(parts), end: pos, complete: false, chunkSizes };
    parts.push(buf.subarray(eol + 2, eol + 2 + size));
    chunkSizes.push(size);
    if (buf[eol + 2 + size] !== 0x0d || buf[eol + 3 + size] !== 0x0a) throw new Error('chunk not followed by CRLF');
    pos = eol + 2 + size + 2;
  }
}

/**
 * Parses every HTTP/1.x response in a byte stream (pipelined responses included).
 *   methods: request methods in order, to know which responses have no body (HEAD)
 *   eof:     whether the peer has closed (completes close-delimited bodies)
 * Interim 1xx responses are returned in `interim` and also attached to the next
 * final response as `.interim`. Returns {responses, interim, rest}.
 * Each response: {httpVersion, statusCode, statusMessage, headers (lower-case keys),
 * rawHeaders, body (Buffer), text, json(), framing, complete, chunkSizes}.
 */
export function parseResponses(buf, { methods = [], eof = true } = {}) {
  const responses = [];
  const interim = [];
  let pending = [];
  let pos = 0;
  while (pos < buf.length) {
    const he = buf.indexOf(CRLF2, pos);
    if (he < 0) break;
    const head = parseHead(buf.subarray(pos, he).toString('latin1'));
    let p = he + 4;
    if (head.statusCode >= 100 && head.statusCode < 200) {
      interim.push(head);
      pending.push(head);
      pos = p;
      continue;
    }
    const method = (methods[responses.length] || 'GET').toUpperCase();
    const res = { ...head, interim: pending, body: Buffer.alloc(0), framing: 'none', complete: true, chunkSizes: [] };
    pending = [];
    const te = (head.headers['transfer-encoding'] || '').toLowerCase();
    const cl = head.headers['content-length'];
    if (method === 'HEAD' || head.statusCode === 204 || head.statusCode === 304) {
      res.framing = 'none';
    } else if (te.includes('chunked')) {
      res.framing = 'chunked';
      const d = dechunk(buf, p);
      res.body = d.body;
      res.complete = d.complete;
      res.chunkSizes = d.chunkSizes;
      p = d.complete ? d.end : buf.length;
    } else if (cl !== undefined) {
      res.framing = 'length';
      const n = Number(cl);
      res.body = buf.subarray(p, Math.min(buf.length, p + n));
      res.complete = buf.length >= p + n;
      p = Math.min(buf.length, p + n);
    } else {
      res.framing = 'close';
      res.body = buf.subarray(p);
      res.complete = eof;
      p = buf.length;
    }
    res.text = res.body.toString('utf8');
    res.json = () => JSON.parse(res.text);
    responses.push(res);
    pos = p;
    if (!res.complete) break;
  }
  return { responses, interim, rest: buf.subarray(pos) };
}

/** Parses exactly one response; throws when there is none. */
export function parseResponse(buf, opts = {}) {
  const { responses } = parseResponses(buf, opts);
  if (responses.length === 0) throw new Error(`no HTTP response in ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`);
  return responses[0];
}

/** Builds request bytes. body: string|Buffer|object (JSON-encoded). */
export function buildRequest({ method = 'GET', path: p = '/', headers = {}, body, version = '1.1', host = 'localhost' } = {}) {
  let bodyBuf = null;
  if (body !== undefined && body !== null) {
    bodyBuf = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  }
  const h = { ...headers };
  const has = (n) => Object.keys(h).some((k) => k.toLowerCase() === n);
  if (!has('host') && version === '1.1') h.Host = host;
  if (bodyBuf && !has('content-length') && !has('transfer-encoding')) h['Content-Length'] = String(bodyBuf.length);
  let head = `${method} ${p} HTTP/${version}\r\n`;
  for (const [k, v] of Object.entries(h)) {
    for (const vv of Array.isArray(v) ? v : [v]) head += `${k}: ${vv}\r\n`;
  }
  head += '\r\n';
  return bodyBuf ? Buffer.concat([Buffer.from(head, 'latin1'), bodyBuf]) : Buffer.from(head, 'latin1');
}

/**
 * One request on its own connection (Connection: close unless given), parsed.
 * Returns the response plus {closed, raw, elapsed}.
 */
export async function request(port, { method = 'GET', path: p = '/', headers = {}, body, version = '1.1', timeout = 5000 } = {}) {
  const h = { ...headers };
  if (!Object.keys(h).some((k) => k.toLowerCase() === 'connection') && version === '1.1') h.Connection = 'close';
  const t0 = Date.now();
  const r = await rawRequest(port, buildRequest({ method, path: p, headers: h, body, version }), {
    timeout,
    until: (buf) => {
      try {
        const x = parseResponses(buf, { methods: [method], eof: false }).responses;
        return x.length > 0 && x[0].complete && x[0].framing !== 'close';
      } catch { return false; }
    },
  });
  if (r.data.length === 0) {
    throw new Error(`no response to ${method} ${p} (${r.error ? r.error.code || r.error.message : r.timedOut ? 'timeout' : 'closed'})`);
  }
  const res = parseResponse(r.data, { methods: [method], eof: r.closed });
  return { ...res, closed: r.closed, raw: r.data, elapsed: Date.now() - t0 };
}

/** Asserts an agate JSON error response: status and {"error": code, "message": string}. */
export function assertError(res, status, code) {
  assert.equal(res.statusCode, status, `expected ${status} ${code}, got ${res.statusCode}: ${res.text}`);
  assert.match(res.headers['content-type'] || '', /^application\/json/, 'error Content-Type');
  let body;
  try { body = JSON.parse(res.text); } catch { assert.fail(`error body is not JSON: ${JSON.stringify(res.text)}`); }
  assert.equal(body.error, code, `error code in ${res.text}`);
  assert.equal(typeof body.message, 'string', `message in ${res.text}`);
  assert.ok(body.message.length > 0, 'message not empty');
  return body;
}

/** Asserts the headers every agate response carries: X-Request-ID, Date, Content-Type. */
export function assertCommonHeaders(res, { contentType = true } = {}) {
  assert.ok(res.headers['x-request-id'], `X-Request-ID missing on ${res.statusCode}`);
  assert.ok(res.headers.date, `Date missing on ${res.statusCode}`);
  assert.ok(!Number.isNaN(Date.parse(res.headers.date)), `Date unparsable: ${res.headers.date}`);
  if (contentType) assert.ok(res.headers['content-type'], `Content-Type missing on ${res.statusCode}`);
  // node joins repeated Cache-Control lines with ", "; agate sends one directive, once
  const cc = res.headers['cache-control'];
  if (cc !== undefined) assert.ok(!cc.includes(','), `Cache-Control sent more than once: ${cc}`);
}

// ---------------------------------------------------------------------------
// SSE

/**
 * Splits an SSE body into frames (blank-line separated). Each frame:
 * {data: string|null (data lines joined by \n), comments: [text after ':'], fields, raw}
 * Returns {frames, rest} where rest is an unterminated tail.
 */
export function parseSSE(text) {
  const norm = text.replace(/\r\n/g, '\n').replace(/\r/g, '\n');
  const blocks = norm.split('\n\n');
  const rest = blocks.pop();
  const frames = blocks.map((raw) => {
    const frame = { data: null, comments: [], fields: {}, raw };
    const data = [];
    for (const line of raw.split('\n')) {
      if (line === '') continue;
      if (line.startsWith(':')) { frame.comments.push(line.slice(1).replace(/^ /, '')); continue; }
      const i = line.indexOf(':');
      const name = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (name === 'data') data.push(value);
      else frame.fields[name] = value;
    }
    if (data.length) frame.data = data.join('\n');
    return frame;
  });
  return { frames, rest };
}

/** The JSON events of the data frames. */
export function sseEvents(text) {
  return parseSSE(text).frames.filter((f) => f.data !== null).map((f) => JSON.parse(f.data));
}

// ---------------------------------------------------------------------------
// Runs

let idSeq = 0;
export const uid = (p = 'id') => `${p}-${process.pid}-${Date.now().toString(36)}-${++idSeq}`;

/** A minimal valid RunAgentInput with one user message (text: string or content parts). */
export function runInput(text, { threadId = uid('thread'), runId = uid('run'), messages, forwardedProps, ...rest } = {}) {
  const msgs = messages ?? (text === undefined ? [] : [{ id: uid('msg'), role: 'user', content: text }]);
  return {
    threadId,
    runId,
    state: {},
    messages: msgs,
    tools: [],
    context: [],
    forwardedProps: forwardedProps ?? {},
    ...rest,
  };
}

/** forwardedProps asking for a per-request token interval. */
export const paced = (ms) => ({ agate: { tokenIntervalMs: ms } });

/**
 * POSTs a run over a raw socket and reads the SSE stream as it arrives, timestamping
 * each frame. Resolves when the response is complete, the peer closes, or the timeout.
 * Returns {res (head), statusCode, headers, frames: [{...frame, at}], events, t0,
 * closed, complete, body, conn}.
 */
export async function streamRun(port, input, {
  agent = 'echo', headers = {}, timeout = 10000, version = '1.1', onFrame, keepOpen = false, conn: given,
} = {}) {
  const body = typeof input === 'string' || Buffer.isBuffer(input) ? input : JSON.stringify(input);
  const h = { 'Content-Type': 'application/json', ...headers };
  if (version === '1.1' && !Object.keys(h).some((k) => k.toLowerCase() === 'connection')) h.Connection = 'close';
  const conn = given ?? await RawConn.connect(port);
  const t0 = Date.now();
  await conn.write(buildRequest({ method: 'POST', path: `/v1/agents/${agent}/run`, headers: h, body, version }));

  const frames = [];
  let seen = 0;
  let head = null;
  let complete = false;
  const scan = () => {
    let res;
    try {
      res = parseResponses(conn.data, { methods: ['POST'], eof: conn.ended }).responses[0];
    } catch { return false; }
    if (!res) return false;
    head = res;
    if (res.statusCode !== 200) { complete = res.complete; return complete; }
    const { frames: fr } = parseSSE(res.body.toString('utf8'));
    const now = Date.now();
    for (; seen < fr.length; seen++) {
      const f = { ...fr[seen], at: now - t0 };
      if (f.data !== null) {
        try { f.event = JSON.parse(f.data); } catch { f.event = undefined; }
      }
      frames.push(f);
      if (onFrame) onFrame(f, conn);
    }
    complete = res.complete;
    return complete;
  };
  await conn.waitFor((c) => scan() || c.ended, timeout);
  scan();
  if (!keepOpen && !given) conn.destroy();
  if (!head) {
    throw new Error(`no response to run (${conn.error ? conn.error.code : conn.ended ? 'closed' : 'timeout'}): ${JSON.stringify(conn.text.slice(0, 300))}`);
  }
  return {
    res: head,
    statusCode: head.statusCode,
    headers: head.headers,
    body: head.body,
    text: head.text,
    frames,
    events: frames.filter((f) => f.event).map((f) => f.event),
    t0,
    elapsed: Date.now() - t0,
    closed: conn.ended,
    complete,
    conn,
  };
}

/** Asserts the echo agent's event sequence for `text` (null: no user text) and returns the deltas. */
export function assertEchoEvents(events, { threadId, runId, text, deltas: expectDeltas } = {}) {
  const types = events.map((e) => e.type);
  assert.ok(events.length >= 2, `too few events: ${JSON.stringify(types)}`);
  assert.equal(types[0], 'RUN_STARTED');
  assert.equal(types[types.length - 1], 'RUN_FINISHED');
  if (threadId !== undefined) {
    assert.equal(events[0].threadId, threadId, 'RUN_STARTED.threadId');
    assert.equal(events[events.length - 1].threadId, threadId, 'RUN_FINISHED.threadId');
  }
  if (runId !== undefined) {
    assert.equal(events[0].runId, runId, 'RUN_STARTED.runId');
    assert.equal(events[events.length - 1].runId, runId, 'RUN_FINISHED.runId');
  }
  if (text === null) {
    assert.deepEqual(types, ['RUN_STARTED', 'RUN_FINISHED']);
    return [];
  }
  const inner = events.slice(1, -1);
  assert.equal(inner[0].type, 'TEXT_MESSAGE_START', `sequence ${JSON.stringify(types)}`);
  assert.equal(inner[0].role, 'assistant');
  assert.equal(typeof inner[0].messageId, 'string');
  assert.ok(inner[0].messageId.length > 0);
  const mid = inner[0].messageId;
  assert.equal(inner[inner.length - 1].type, 'TEXT_MESSAGE_END', `sequence ${JSON.stringify(types)}`);
  assert.equal(inner[inner.length - 1].messageId, mid);
  const contents = inner.slice(1, -1);
  for (const c of contents) {   // (the message only on failure: it is the whole sequence, per event)
    if (c.type !== 'TEXT_MESSAGE_CONTENT') assert.fail(`sequence ${JSON.stringify(types)}`);
    assert.equal(c.messageId, mid);
    assert.equal(typeof c.delta, 'string');
  }
  const deltas = contents.map((c) => c.delta);
  if (text !== undefined) assert.equal(deltas.join(''), text, 'deltas concatenate to the user text');
  if (expectDeltas !== undefined) assert.deepEqual(deltas, expectDeltas);
  return deltas;
}

/** The deltas the spec prescribes: each word with the whitespace after it; leading whitespace goes with the first. */
export function expectedDeltas(text) {
  const m = /^\s*/.exec(text);
  const lead = m[0];
  const words = text.slice(lead.length).match(/\S+\s*/g) || [];
  if (words.length) words[0] = lead + words[0];
  return words;
}

/** Runs a CLI invocation of agate synchronously (config checks, --help, ...). */
export function runAgateSync(args, { env = {}, timeout = 10000, wrap = null } = {}) {
  const [file, fileArgs] = agateCommand(args, wrap);
  const r = spawnSync(file, fileArgs, { cwd: REPO_ROOT, env: agateEnv(env), encoding: 'utf8', timeout });
  const spawnErr = r.error ? `\n[harness] spawn error: ${r.error.message}\n` : '';
  return { code: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + spawnErr, error: r.error };
}

/** Connect attempt outcome: 'refused' | 'reset' | 'closed' (no bytes) | 'response' (got bytes) | 'timeout'. */
export async function probeConnect(port, bytes, timeout = 1500) {
  let conn;
  try {
    conn = await RawConn.connect(port, { timeout });
  } catch (e) {
    if (e.code === 'ECONNREFUSED') return { outcome: 'refused' };
    if (e.code === 'ECONNRESET') return { outcome: 'reset' };
    return { outcome: 'error', error: e };
  }
  if (bytes) await conn.write(bytes);
  await conn.waitFor((c) => c.ended || c.closed || c.data.length > 0, timeout);
  conn.destroy();
  if (conn.data.length > 0) return { outcome: 'response', text: conn.text };
  if (conn.error && conn.error.code === 'ECONNRESET') return { outcome: 'reset' };
  if (conn.ended) return { outcome: 'closed' };
  return { outcome: 'timeout' };
}
