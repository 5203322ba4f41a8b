// `agate --probe [URL]`: the health check an image without a shell or curl runs
// (deploy/image's HEALTHCHECK). Exit 0 on a 2xx answer, 1 on any other answer,
// no answer, or a timeout; 2 for a URL it cannot use.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import {
  startAgate, stopClean, assertCleanExit, agateCommand, agateEnv, REPO_ROOT, streamRun, runInput, paced,
  freePort, waitFor, request,
} from './lib/harness.mjs';

const T = { timeout: 20000 };

/** Runs `agate ...args` without blocking this process (a test server here must keep answering). */
function runProbe(args) {
  const [file, fileArgs] = agateCommand(args);
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(file, fileArgs, { cwd: REPO_ROOT, env: agateEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 }));
  });
}

const noSanitizerReport = (r) => {
  for (const m of ['AddressSanitizer', 'LeakSanitizer', 'runtime error']) assert.ok(!r.stderr.includes(m), r.stderr);
};

describe('--probe against a ready agate', () => {
  let agate;
  before(async () => { agate = await startAgate({ config: 'log: {requests: false}\n' }); });
  after(async () => { if (agate) await stopClean(agate); });

  test('admin /health/ready: exit 0, the status on stdout', T, async () => {
    const url = `http://127.0.0.1:${agate.adminPort}/health/ready`;
    const r = await runProbe(['--probe', url]);
    noSanitizerReport(r);
    assert.equal(r.code, 0, `exit ${r.code}; stderr: ${r.stderr}`);
    assert.equal(r.stdout, `agate: probe ${url}: 200\n`);
  });

  test('--probe=URL, localhost, the main listener: exit 0', T, async () => {
    const r = await runProbe([`--probe=http://localhost:${agate.port}/health/live`]);
    assert.equal(r.code, 0, `exit ${r.code}; stderr: ${r.stderr}`);
  });

  test('a 404 is not healthy: exit 1, the status on stderr', T, async () => {
    const r = await runProbe(['--probe', `http://127.0.0.1:${agate.adminPort}/nope`]);
    noSanitizerReport(r);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /HTTP 404/);
  });

  test('--help names --probe and its default URL', T, async () => {
    const r = await runProbe(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--probe \[URL\].*http:\/\/127\.0\.0\.1:9090\/health\/ready/);
  });
});

test('--probe against a draining agate: exit 1 (503)', T, async () => {
  const agate = await startAgate({ config: 'stream: {drain_timeout: 10s}\nlog: {requests: false}\n' });
  try {
    const url = `http://127.0.0.1:${agate.adminPort}/health/ready`;
    assert.equal((await runProbe(['--probe', url])).code, 0, 'ready before SIGTERM');
    // A paced run keeps it draining (not yet exited) while the probe asks.
    let first;
    const firstEvent = new Promise((r) => { first = r; });
    const run = streamRun(agate.port, runInput(Array.from({ length: 30 }, (_, i) => `w${i}`).join(' '), { forwardedProps: paced(100) }), {
      onFrame: (f) => { if (f.event && f.event.type === 'TEXT_MESSAGE_CONTENT') first(); },
    });
    await firstEvent;
    agate.signal('SIGTERM');
    await waitFor(async () => (await request(agate.adminPort, { path: '/health/ready', timeout: 1000 }).catch(() => null))?.statusCode === 503, 2000);
    const r = await runProbe(['--probe', url]);
    noSanitizerReport(r);
    assert.equal(r.code, 1, `exit ${r.code}; stdout: ${r.stdout}`);
    assert.match(r.stderr, /HTTP 503/);
    assert.equal((await run).statusCode, 200);
    assertCleanExit(agate, await agate.waitExit(10000));
  } finally {
    if (!agate.exitInfo) agate.signal('SIGKILL');
  }
});

test('--probe against a closed port: exit 1, the error named', T, async () => {
  const port = await freePort();
  const r = await runProbe(['--probe', `http://127.0.0.1:${port}/health/ready`]);
  noSanitizerReport(r);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /Connection refused/);
});

test('--probe against a server that never answers: exit 1 at its 3 s timeout', T, async () => {
  const socks = [];
  const srv = net.createServer((s) => { socks.push(s); });   // accepts, reads, never answers
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  try {
    const r = await runProbe(['--probe', `http://127.0.0.1:${srv.address().port}/health/ready`]);
    noSanitizerReport(r);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /timed out/);
    assert.ok(r.ms >= 2500 && r.ms < 10000, `gave up after ${r.ms} ms, expected ~3000`);
    assert.equal(socks.length, 1, 'one connection');
  } finally {
    for (const s of socks) s.destroy();
    srv.close();
  }
});

test('--probe with a URL it cannot use: exit 2, what is wrong named', T, async () => {
  for (const [url, why] of [
    ['https://127.0.0.1:1/x', /https/],
    ['http://example.invalid:9090/health/ready', /numeric address or localhost/],
    ['127.0.0.1:9090', /./],
  ]) {
    const r = await runProbe(['--probe', url]);
    assert.equal(r.code, 2, `${url}: exit ${r.code}`);
    assert.match(r.stderr, /--probe/);
    assert.match(r.stderr, why, `${url}: ${r.stderr}`);
  }
});
