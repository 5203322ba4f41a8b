// A real AG-UI agent server for the proxy tests: node:http plus @ag-ui/encoder's
// EventEncoder, which encodes events as SSE exactly as the official servers do
// (`data: <JSON>\n\n`, Content-Type from encoder.getContentType()).
//
// Behaviour is scriptable per request (srv.script: an object, or a function of
// the recorded request returning one), and everything received is recorded:
// each request (method, url, headers, body, the connection it came on, when its
// response was closed and whether that was before it finished) and each TCP
// connection (opened, closed).
//
// A script:
//   mode:        'stream' (default) | 'hang' (read the request, never answer) |
//                'reset' (reset the connection before answering) |
//                'destroy' (close it, FIN, before answering) |
//                'status' (answer `status` with an HTML body) | 'huge' (see below)
//   events:      steps (array, or function (input, rec) => array); default: a
//                short valid run built from the request's threadId/runId. A step is
//                  an event object (has a string `type`): encoded by EventEncoder
//                  { pretty: event }   the event as pretty-printed JSON, one data: line per JSON line
//                  { raw: 'text' }     written as is
//                  { delay: ms }       a pause
//                  { reset: true }     reset the connection (RST) here
//                  { destroy: true }   close the connection (FIN, no end of the chunked body) here
//                  { hold: true }      stop writing but keep the response open (until the peer goes)
//   interval:    ms between steps (a slow drip)
//   status, body, contentType, headers: for 'status' mode, or to override the
//                stream's head (contentType: 'application/json' = a wrong content type)
//   headOnly:    send the 200 event-stream head and nothing else (held open)
//   huge:        { count, size }: RUN_STARTED, TEXT_MESSAGE_START, `count`
//                TEXT_MESSAGE_CONTENT events whose delta is "<seq>:" + `size` x's,
//                TEXT_MESSAGE_END, RUN_FINISHED, written as fast as the socket takes
//                them: a write that returns false waits for 'drain' (rec.blockedSince).
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { EventEncoder } from '@ag-ui/encoder';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A short valid run for an input: RUN_STARTED, one text message, RUN_FINISHED. */
export function simpleRun(input = {}, text = 'hello from upstream') {
  const threadId = input.threadId ?? 'thread-x';
  const runId = input.runId ?? 'run-x';
  const messageId = `up-msg-${runId}`;
  const words = text.match(/\S+\s*/g) ?? [];
  return [
    { type: 'RUN_STARTED', threadId, runId },
    { type: 'TEXT_MESSAGE_START', messageId, role: 'assistant' },
    ...words.map((delta) => ({ type: 'TEXT_MESSAGE_CONTENT', messageId, delta })),
    { type: 'TEXT_MESSAGE_END', messageId },
    { type: 'RUN_FINISHED', threadId, runId },
  ];
}

/** SSE for one event as pretty-printed JSON: one `data:` line per line of JSON. */
export function prettyFrame(event) {
  return `${JSON.stringify(event, null, 2).split('\n').map((l) => `data: ${l}`).join('\n')}\n\n`;
}

const DEFAULT_HTML = '<!DOCTYPE html><html><head><title>Upstream error</title></head>'
  + '<body><h1>upstream-secret-page</h1><p>stack trace: at handler (/srv/agent.js:42)</p></body></html>';

/**
 * Starts an AG-UI agent server on 127.0.0.1 (port 0 = any).
 * Returns {port, url, requests, connections, script, waitFor, waitRequests,
 * stopListening, listenAgain, close}.
 */
export async function startAguiServer({ script = {}, port = 0, path: agentPath = '/agent', keepAliveTimeout = 5000 } = {}) {
  const requests = [];
  const connections = [];
  const sockets = new Set();
  const waiters = new Set();
  const poke = () => { for (const w of [...waiters]) w(); };
  let connSeq = 0;

  const server = http.createServer();
  server.keepAliveTimeout = keepAliveTimeout;
  server.headersTimeout = Math.max(keepAliveTimeout + 1000, 10000);
  server.requestTimeout = 0;   // long streams are the point

  server.on('connection', (socket) => {
    const conn = { id: ++connSeq, remotePort: socket.remotePort, openedAt: Date.now(), closedAt: null, requests: 0 };
    socket.agui = conn;
    connections.push(conn);
    sockets.add(socket);
    socket.on('error', () => { /* resets from the peer are expected */ });
    socket.on('close', () => { conn.closedAt = Date.now(); sockets.delete(socket); poke(); });
    poke();
  });

  server.on('request', (req, res) => {
    const socket = req.socket;
    socket.agui.requests++;
    const rec = {
      index: requests.length,
      method: req.method,
      url: req.url,
      httpVersion: req.httpVersion,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      body: '',
      json: undefined,
      connId: socket.agui.id,
      at: Date.now(),
      bodyAt: null,
      closedAt: null,       // the response was closed (finished, or the connection went)
      aborted: false,       // ... before it finished: the peer went away
      finished: false,
      frames: [],           // every SSE frame written, as text
      frameTimes: [],       // when each was written (ms)
      sent: [],             // the events written through the encoder, as the peer will parse them
      bytes: 0,
      eventsWritten: 0,
      blockedSince: null,   // a write returned false and 'drain' has not come yet
      blockedTotalMs: 0,
      drains: 0,
      done: false,          // the script ran to its end
    };
    requests.push(rec);
    poke();
    res.on('close', () => {
      rec.closedAt = Date.now();
      rec.finished = res.writableFinished;
      rec.aborted = !res.writableFinished;
      poke();
    });
    res.on('error', () => { /* the peer went away */ });
    const chunks = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      rec.body = Buffer.concat(chunks).toString('utf8');
      rec.bodyAt = Date.now();
      try { rec.json = JSON.parse(rec.body); } catch { rec.json = undefined; }
      poke();
      const s = typeof srv.script === 'function' ? srv.script(rec) : srv.script;
      respond(req, res, rec, s ?? {}).catch((e) => { rec.error = e; res.destroy(); poke(); });
    });
  });

  const gone = (res) => res.destroyed || res.socket == null || res.socket.destroyed;

  // keep: record the frame itself (a huge stream keeps only bytes and counts)
  async function write(res, rec, text, keep = true) {
    if (gone(res)) return false;
    if (keep) {
      rec.frames.push(text);
      rec.frameTimes.push(Date.now());
    }
    rec.bytes += Buffer.byteLength(text);
    if (!res.write(text)) {
      rec.blockedSince = Date.now();
      poke();
      await new Promise((resolve) => {
        const done = () => { res.off('drain', done); res.off('close', done); resolve(); };
        res.on('drain', done);
        res.on('close', done);
      });
      rec.blockedTotalMs += Date.now() - rec.blockedSince;
      rec.blockedSince = null;
      rec.drains++;
      poke();
    }
    return !gone(res);
  }

  function head(res, enc, s) {
    res.writeHead(s.status ?? 200, {
      'Content-Type': s.contentType ?? enc.getContentType(),
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
      ...(s.headers ?? {}),
    });
    res.flushHeaders();
  }

  async function respond(req, res, rec, s) {
    const mode = s.mode ?? 'stream';
    const enc = new EventEncoder({ accept: req.headers.accept });
    if (mode === 'hang') return;
    if (mode === 'reset') { req.socket.resetAndDestroy(); return; }
    if (mode === 'destroy') { req.socket.destroy(); return; }
    if (mode === 'status') {
      const body = s.body ?? DEFAULT_HTML;
      res.writeHead(s.status ?? 500, {
        'Content-Type': s.contentType ?? 'text/html; charset=utf-8',
        'Content-Length': Buffer.byteLength(body),
        ...(s.headers ?? {}),
      });
      res.end(body);
      rec.done = true;
      return;
    }
    head(res, enc, s);
    if (s.headOnly) return;
    if (mode === 'huge') {
      await huge(res, rec, enc, s.huge ?? {});
      return;
    }
    const steps = typeof s.events === 'function' ? s.events(rec.json ?? {}, rec)
      : s.events ?? simpleRun(rec.json ?? {});
    for (const step of steps) {
      if (gone(res)) return;
      if (s.interval && rec.frames.length > 0) await sleep(s.interval);
      if (gone(res)) return;
      if (typeof step.type === 'string') {
        const frame = enc.encode(step);
        rec.sent.push(JSON.parse(frame.slice('data: '.length)));
        rec.eventsWritten++;
        if (!(await write(res, rec, frame))) return;
      } else if (step.pretty) {
        rec.sent.push(JSON.parse(JSON.stringify(step.pretty)));
        rec.eventsWritten++;
        if (!(await write(res, rec, prettyFrame(step.pretty)))) return;
      } else if (step.raw !== undefined) {
        if (!(await write(res, rec, step.raw))) return;
      } else if (step.delay !== undefined) {
        await sleep(step.delay);
      } else if (step.reset) {
        req.socket.resetAndDestroy();
        return;
      } else if (step.destroy) {
        req.socket.destroy();
        return;
      } else if (step.hold) {
        rec.done = true;
        poke();
        return;
      } else {
        throw new Error(`unknown script step ${JSON.stringify(step)}`);
      }
    }
    rec.done = true;
    if (!gone(res)) res.end();
    poke();
  }

  async function huge(res, rec, enc, { count = 1000, size = 1024, threadId, runId } = {}) {
    const input = rec.json ?? {};
    const tid = threadId ?? input.threadId ?? 'thread-huge';
    const rid = runId ?? input.runId ?? 'run-huge';
    const messageId = 'huge-msg';
    const pad = 'x'.repeat(size);
    const ev = (e) => { rec.eventsWritten++; return enc.encode(e); };
    if (!(await write(res, rec, ev({ type: 'RUN_STARTED', threadId: tid, runId: rid })))) return;
    if (!(await write(res, rec, ev({ type: 'TEXT_MESSAGE_START', messageId, role: 'assistant' })))) return;
    for (let i = 0; i < count; i++) {
      // frames are not kept for a huge stream (memory); bytes and counts are
      const frame = ev({ type: 'TEXT_MESSAGE_CONTENT', messageId, delta: `${i}:${pad}` });
      if (!(await write(res, rec, frame, false))) return;
    }
    if (!(await write(res, rec, ev({ type: 'TEXT_MESSAGE_END', messageId })))) return;
    if (!(await write(res, rec, ev({ type: 'RUN_FINISHED', threadId: tid, runId: rid })))) return;
    rec.done = true;
    res.end();
    poke();
  }

  let listening = false;
  async function listen(p) {
    server.listen({ port: p, host: '127.0.0.1', exclusive: true });
    await once(server, 'listening');
    listening = true;
    return server.address().port;
  }

  const srv = {
    script,
    requests,
    connections,
    port: await listen(port),
    get url() { return `http://127.0.0.1:${srv.port}${agentPath}`; },
    get listening() { return listening; },

    /** Waits until pred() is true (re-checked on every recorded change and every 20 ms). */
    waitFor(pred, timeout = 5000) {
      return new Promise((resolve) => {
        if (pred()) return resolve(true);
        let t;
        const iv = setInterval(() => w(), 20);
        const w = () => {
          if (pred()) { clearTimeout(t); clearInterval(iv); waiters.delete(w); resolve(true); }
        };
        t = setTimeout(() => { clearInterval(iv); waiters.delete(w); resolve(pred()); }, timeout);
        waiters.add(w);
      });
    },
    waitRequests(n, timeout = 5000) { return srv.waitFor(() => requests.length >= n, timeout); },

    /** Stops accepting (the port refuses connections); open connections stay. */
    async stopListening() {
      if (!listening) return;
      listening = false;
      await new Promise((resolve) => server.close(() => resolve()));
    },
    /** Listens again on the same port. */
    async listenAgain() {
      if (listening) return;
      await listen(srv.port);
    },
    /** Closes the server and every connection. */
    async close() {
      for (const s of sockets) s.destroy();
      if (listening) {
        listening = false;
        await new Promise((resolve) => server.close(() => resolve()));
      }
    },
  };
  return srv;
}

/**
 * A loopback port that accepts nothing and answers nothing: a listening socket
 * (backlog 1, in a perl child so nothing calls accept()) whose accept queue is
 * filled by two idle connections. Linux then drops further SYNs, so a connect to
 * it stays pending: a connect timeout on loopback. Returns {port, close()}.
 */
export async function startBlackhole() {
  const script = '$|=1; use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", '
    + 'LocalPort => 0, Listen => 1, Proto => "tcp") or die "listen: $!"; print $s->sockport, "\\n"; <STDIN>;';
  const proc = spawn('perl', ['-e', script], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(Number(out.trim()));
    });
    proc.once('error', reject);
    proc.once('exit', (code) => reject(new Error(`blackhole helper exited ${code}: ${err}`)));
  });
  const fillers = [];
  const connectOutcome = (timeout) => new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    fillers.push(s);
    s.on('error', () => {});
    const t = setTimeout(() => resolve('pending'), timeout);
    s.once('connect', () => { clearTimeout(t); resolve('connected'); });
    s.once('error', (e) => { clearTimeout(t); resolve(e.code); });
  });
  // Fill the accept queue, then check that one more connect stays pending.
  for (let i = 0; i < 4; i++) {
    const r = await connectOutcome(300);
    if (r === 'pending') {
      return {
        port,
        close() {
          for (const s of fillers) s.destroy();
          proc.stdin.end();
          proc.kill();
        },
      };
    }
    if (r !== 'connected') break;
  }
  for (const s of fillers) s.destroy();
  proc.kill();
  throw new Error('could not make a connect to loopback stay pending (accept queue never filled)');
}
