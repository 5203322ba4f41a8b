// frontproxy.mjs: deploy/nginx/agate.conf and deploy/haproxy/agate.cfg, live on
// loopback in front of build/agate (deploy/checks/frontproxy.sh runs this).
// Each file is used as shipped except for the lines that name places: its listen
// or bind address, its certificate paths (a self-signed pair made here) and
// agate's address; each of those substitutions must match exactly once. Then,
// through each proxy, over TLS:
//   - an SSE run of the echo agent paced at 150 ms per event, over HTTP/2, must
//     arrive spread over time (a buffering proxy delivers it all at the end);
//   - a WebSocket run must complete.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { freePort, runInput, sleep, REPO_ROOT } from '../../../tests/integration/lib/harness.mjs';
import { startLive } from './live.mjs';

const WebSocket = createRequire(path.join(REPO_ROOT, 'tests', 'package.json'))('ws');
const PACE_MS = 150;
const WORDS = 'one two three four five six seven eight'.split(' ');

function fail(msg) { throw new Error(msg); }

function place(text, file, pairs) {
  for (const [from, to] of pairs) {
    const n = text.split(from).length - 1;
    if (n !== 1) fail(`${file}: expected "${from}" once, found it ${n} times`);
    text = text.replace(from, to);
  }
  return text;
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stdout}${r.stderr}`);
  return r.stdout + r.stderr;
}

/** A paced SSE run over HTTP/2; returns arrival times (ms) of its content events. */
async function pacedRun(port) {
  const session = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
  session.on('error', () => {});
  try {
    await new Promise((resolve, reject) => { session.once('connect', resolve); session.once('error', reject); });
    if (session.alpnProtocol !== 'h2') fail(`ALPN gave ${session.alpnProtocol}, not h2`);
    const body = JSON.stringify(runInput(WORDS.join(' '), { forwardedProps: { agate: { tokenIntervalMs: PACE_MS } } }));
    const req = session.request({ ':method': 'POST', ':path': '/v1/agents/echo/run', 'content-type': 'application/json', accept: 'text/event-stream' });
    req.end(body);
    const t0 = Date.now();
    let status = 0;
    let buf = '';
    const times = [];
    let finished = false;
    req.on('response', (h) => { status = h[':status']; });
    req.setEncoding('utf8');
    req.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (frame.includes('"TEXT_MESSAGE_CONTENT"')) times.push(Date.now() - t0);
        if (frame.includes('"RUN_FINISHED"')) finished = true;
      }
    });
    await new Promise((resolve, reject) => { req.on('end', resolve); req.on('error', reject); setTimeout(() => reject(new Error('SSE run: no end in 15 s')), 15000); });
    if (status !== 200) fail(`SSE run: status ${status}`);
    if (!finished) fail('SSE run: no RUN_FINISHED');
    return times;
  } finally {
    session.close();
  }
}

async function wsRun(port) {
  const ws = new WebSocket(`wss://127.0.0.1:${port}/v1/agents/echo/ws`, { rejectUnauthorized: false });
  const types = [];
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`WebSocket run: not finished in 10 s (${types.join(',')})`)), 10000);
    ws.on('open', () => ws.send(JSON.stringify(runInput('hello over websocket'))));
    ws.on('message', (m) => {
      const e = JSON.parse(String(m));
      types.push(e.type);
      if (e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR') { clearTimeout(t); resolve(); }
    });
    ws.on('unexpected-response', (_q, res) => { clearTimeout(t); reject(new Error(`WebSocket upgrade: status ${res.statusCode}`)); });
    ws.on('error', (e) => { clearTimeout(t); reject(e); });
  });
  ws.close();
  if (types.at(-1) !== 'RUN_FINISHED' || !types.includes('TEXT_MESSAGE_CONTENT')) fail(`WebSocket run: events ${types.join(',')}`);
  return types.length;
}

async function check(name, port) {
  const times = await pacedRun(port);
  const span = times.at(-1) - times[0];
  const want = (WORDS.length - 1) * PACE_MS;
  // every word arrives; and the first well before the last, as agate sent them
  if (times.length < WORDS.length) fail(`${name}: ${times.length} content events, expected ${WORDS.length}`);
  if (span < want * 0.6) fail(`${name}: content events arrived within ${span} ms, paced over ${want} ms: buffered (${times.join(' ')})`);
  const n = await wsRun(port);
  console.log(`${name}: HTTP/2 SSE ${times.length} events spread over ${span} ms (paced ${want} ms); WebSocket run ${n} events`);
}

async function waitPort(port, proc, what) {
  for (let i = 0; i < 100; i++) {
    if (proc.exitCode !== null) fail(`${what} exited ${proc.exitCode}`);
    const s = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
    const ok = await new Promise((resolve) => { s.once('connect', () => resolve(true)); s.once('error', () => resolve(false)); });
    s.close();
    if (ok) return;
    await sleep(50);
  }
  fail(`${what} not listening on ${port}`);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agate-frontproxy-'));
fs.chmodSync(tmp, 0o755);   // nginx workers may run as nobody
const procs = [];
let live;
let code = 1;
try {
  run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
    '-keyout', `${tmp}/agate.key`, '-out', `${tmp}/agate.crt`]);
  fs.chmodSync(`${tmp}/agate.key`, 0o644);
  fs.writeFileSync(`${tmp}/agate.pem`, fs.readFileSync(`${tmp}/agate.crt`, 'utf8') + fs.readFileSync(`${tmp}/agate.key`, 'utf8'));
  live = await startLive();
  const { port: aport, adminPort } = live.agate;
  const nport = await freePort();
  const hport = await freePort();

  const nginxFile = 'deploy/nginx/agate.conf';
  fs.writeFileSync(`${tmp}/agate.conf`, place(fs.readFileSync(path.join(REPO_ROOT, nginxFile), 'utf8'), nginxFile, [
    ['listen 443 ssl http2;', `listen 127.0.0.1:${nport} ssl http2;`],
    ['/etc/nginx/tls/agate.crt', `${tmp}/agate.crt`],
    ['/etc/nginx/tls/agate.key', `${tmp}/agate.key`],
    ['server 127.0.0.1:8080;', `server 127.0.0.1:${aport};`],
  ]));
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) { fs.mkdirSync(`${tmp}/${d}`); fs.chmodSync(`${tmp}/${d}`, 0o777); }
  fs.writeFileSync(`${tmp}/nginx.conf`, [
    `pid ${tmp}/nginx.pid;`, 'worker_processes 1;', 'events {}', 'http {', '  access_log off;',
    ...['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((d) => `  ${d === 'body' ? 'client_body' : d}_temp_path ${tmp}/${d};`),
    `  include ${tmp}/agate.conf;`, '}', ''].join('\n'));
  const nginxArgs = ['-p', tmp, '-c', `${tmp}/nginx.conf`, '-e', `${tmp}/nginx-error.log`];
  run('nginx', ['-t', ...nginxArgs]);
  console.log('nginx -t: ok');

  const haFile = 'deploy/haproxy/agate.cfg';
  fs.writeFileSync(`${tmp}/haproxy.cfg`, place(fs.readFileSync(path.join(REPO_ROOT, haFile), 'utf8'), haFile, [
    ['bind :443 ssl', `bind 127.0.0.1:${hport} ssl`],
    ['/etc/haproxy/tls/agate.pem', `${tmp}/agate.pem`],
    ['server agate1 127.0.0.1:8080 check port 9090', `server agate1 127.0.0.1:${aport} check port ${adminPort}`],
  ]));
  run('haproxy', ['-c', '-f', `${tmp}/haproxy.cfg`]);
  console.log('haproxy -c: ok');

  const nginx = spawn('nginx', [...nginxArgs, '-g', 'daemon off;'], { stdio: 'inherit' });
  procs.push(nginx);
  const haproxy = spawn('haproxy', ['-db', '-f', `${tmp}/haproxy.cfg`], { stdio: ['ignore', 'ignore', 'inherit'] });
  procs.push(haproxy);
  await waitPort(nport, nginx, 'nginx');
  await waitPort(hport, haproxy, 'haproxy');
  await sleep(2500);   // haproxy's first health check (rise 2, inter 2s) must pass
  await check('nginx', nport);
  await check('haproxy', hport);
  code = 0;
} catch (e) {
  console.error(e.stack || String(e));
} finally {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
  await sleep(200);
  if (live) {
    const stopped = await live.stop();
    if (stopped !== 0) { console.error(`agate exited ${stopped} on SIGTERM`); code = 1; }
  }
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.exit(code);
