// Configuration: the YAML file, environment overrides, and the command line.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import {
  runAgateSync, writeTemp, startAgate, stopClean, request, streamRun, runInput, assertError,
  assertEchoEvents, freePort,
} from './lib/harness.mjs';

const T = { timeout: 15000 };

const ENV_VARS = [
  'AGATE_LISTEN', 'AGATE_ADMIN_LISTEN', 'AGATE_SHARDS', 'AGATE_MAX_CONNECTIONS', 'AGATE_MAX_BODY',
  'AGATE_MAX_HEADER', 'AGATE_HEADER_TIMEOUT', 'AGATE_BODY_TIMEOUT', 'AGATE_IDLE_TIMEOUT', 'AGATE_HEARTBEAT',
  'AGATE_MAX_TOKEN_INTERVAL', 'AGATE_STREAM_BUFFER', 'AGATE_DRAIN_TIMEOUT', 'AGATE_LOG_REQUESTS',
  'AGATE_LOG_LEVEL', 'AGATE_CONFIG',
];

const FULL_EXAMPLE = `listen: 0.0.0.0:8080
admin_listen: 0.0.0.0:9090
shards: 0
limits: {max_connections: 10000, max_body: 1MiB, max_header: 16KiB, header_timeout: 10s, body_timeout: 30s, idle_timeout: 60s}
stream: {heartbeat: 15s, max_token_interval: 1s, buffer: 256KiB, drain_timeout: 25s}
log: {requests: true, level: info}
agents:
  echo: {type: echo, token_interval_ms: 0}
`;

/** Loopback addresses for runs that might bind (so a wrongly-successful run cannot collide). */
async function loopbackEnv() {
  return { AGATE_LISTEN: `127.0.0.1:${await freePort()}`, AGATE_ADMIN_LISTEN: `127.0.0.1:${await freePort()}`, AGATE_SHARDS: '1' };
}

/** Runs agate with a config file expected to be rejected; checks exit 2 and `<file>:<line>: <key>:`. */
async function expectConfigError(yaml, line, key, { args = ['--check-config'], env } = {}) {
  const file = writeTemp(yaml);
  const r = runAgateSync(['--config', file, ...args], { env: env ?? await loopbackEnv() });
  assert.equal(r.code, 2, `exit code ${r.code} (signal ${r.signal}); stderr:\n${r.stderr}\nstdout:\n${r.stdout}`);
  const want = `${file}:${line}: ${key}:`;
  assert.ok(r.stderr.includes(want), `stderr should contain "${want}"; got:\n${r.stderr}`);
  for (const m of ['AddressSanitizer', 'LeakSanitizer', 'runtime error']) assert.ok(!r.stderr.includes(m), r.stderr);
  return r;
}

describe('config file errors', () => {
  test('bad YAML syntax: exit 2, file:line: dotted.key', T, async () => {
    await expectConfigError('limits:\n  max_body: 1MiB\n  header_timeout: 10s: x\n', 3, 'limits.header_timeout');
  });

  test('bad YAML syntax also fails a real start (not only --check-config)', T, async () => {
    await expectConfigError('log: {level: info}\nstream:\n  heartbeat: 15s\n  buffer: 1KiB: 2\n', 4, 'stream.buffer', { args: [] });
  });

  test('unknown top-level key', T, async () => {
    await expectConfigError('listen: 127.0.0.1:8080\nlisten_adress: 127.0.0.1:9\n', 2, 'listen_adress');
  });

  test('unknown nested key', T, async () => {
    await expectConfigError('# limits\nlimits:\n  max_body: 1MiB\n  max_bodyy: 2MiB\n', 4, 'limits.max_bodyy');
  });

  test('unknown key inside an agent', T, async () => {
    await expectConfigError('agents:\n  echo:\n    type: echo\n    tokens_per_second: 5\n', 4, 'agents.echo.tokens_per_second');
  });

  const badValues = [
    ['duration without a unit', 'stream:\n  heartbeat: 15\n', 2, 'stream.heartbeat'],
    ['duration with an unknown unit', 'limits:\n  header_timeout: 10 parsecs\n', 2, 'limits.header_timeout'],
    ['negative duration', 'stream:\n  max_token_interval: 1s\n  drain_timeout: -3s\n', 3, 'stream.drain_timeout'],
    ['size that is not a size', 'limits:\n  max_body: lots\n', 2, 'limits.max_body'],
    ['size with a bad unit', 'limits: {max_body: 1MiB, max_header: 16KB-ish}\n', 1, 'limits.max_header'],
    ['negative shards', 'shards: -1\n', 1, 'shards'],
    ['non-numeric shards', 'listen: 127.0.0.1:8080\nshards: many\n', 2, 'shards'],
    ['non-numeric max_connections', 'limits:\n  max_connections: lots\n', 2, 'limits.max_connections'],
    ['bad log level', 'log:\n  level: chatty\n', 2, 'log.level'],
    ['bad boolean', 'log:\n  requests: maybe\n', 2, 'log.requests'],
    ['unknown agent type', 'agents:\n  echo: {type: parrot}\n', 2, 'agents.echo.type'],
    ['negative token_interval_ms', 'agents:\n  echo:\n    type: echo\n    token_interval_ms: -5\n', 4, 'agents.echo.token_interval_ms'],
    ['a sequence where a mapping belongs', 'limits: [1, 2]\n', 1, 'limits'],
    ['a mapping where a scalar belongs', 'listen: 127.0.0.1:8080\nshards: {a: 1}\n', 2, 'shards'],
    ['bad listen address', 'log: {level: info}\nlisten: not-an-address\n', 2, 'listen'],
  ];
  for (const [name, yaml, line, key] of badValues) {
    test(`bad value: ${name} → exit 2, ${key} at line ${line}`, T, async () => {
      const env = await loopbackEnv();
      if (key === 'listen') delete env.AGATE_LISTEN; // the file's value must be the one in force
      await expectConfigError(yaml, line, key, { env });
    });
  }

  test('missing config file: exit 2, stderr names the file', T, async () => {
    const missing = `/nonexistent/agate-${process.pid}.yaml`;
    const r = runAgateSync(['--config', missing, '--check-config'], { env: await loopbackEnv() });
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes(missing), r.stderr);
  });
});

describe('environment errors', () => {
  const badEnv = [
    ['AGATE_SHARDS', 'abc'],
    ['AGATE_SHARDS', '-1'],
    ['AGATE_HEARTBEAT', '15'],
    ['AGATE_IDLE_TIMEOUT', 'soon'],
    ['AGATE_MAX_BODY', 'huge'],
    ['AGATE_MAX_CONNECTIONS', 'x'],
    ['AGATE_LOG_LEVEL', 'loud'],
    ['AGATE_LOG_REQUESTS', 'perhaps'],
    ['AGATE_LISTEN', 'not-an-address'],
  ];
  for (const [name, value] of badEnv) {
    test(`bad env ${name}=${value} → exit 2 naming the variable`, T, async () => {
      const env = { ...await loopbackEnv(), [name]: value };
      const r = runAgateSync(['--check-config'], { env });
      assert.equal(r.code, 2, `exit ${r.code}; stderr:\n${r.stderr}`);
      assert.ok(r.stderr.includes(name), `stderr names ${name}:\n${r.stderr}`);
      // Also on a real start.
      const r2 = runAgateSync([], { env });
      assert.equal(r2.code, 2, `real start: exit ${r2.code}; stderr:\n${r2.stderr}`);
      assert.ok(r2.stderr.includes(name));
    });
  }

  test('bad AGATE_CONFIG file: exit 2 naming the file', T, async () => {
    const file = writeTemp('limits:\n  max_body: lots\n');
    const r = runAgateSync(['--check-config'], { env: { ...await loopbackEnv(), AGATE_CONFIG: file } });
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes(`${file}:2: limits.max_body:`), r.stderr);
  });
});

describe('command line', () => {
  test('--check-config on a good file: exit 0, prints a line, binds nothing', T, async () => {
    const port = await freePort();
    const file = writeTemp(`listen: 127.0.0.1:${port}\nadmin_listen: 127.0.0.1:${await freePort()}\nlimits: {max_body: 64KiB, header_timeout: 500ms}\n`);
    const r = runAgateSync(['--config', file, '--check-config']);
    assert.equal(r.code, 0, `exit ${r.code}; stderr:\n${r.stderr}`);
    assert.ok((r.stdout + r.stderr).trim().length > 0, 'prints a line');
    assert.ok((r.stdout + r.stderr).trim().split('\n').length <= 3, `a line, not a dump:\n${r.stdout}${r.stderr}`);
    // the port is still free: --check-config did not bind it (and did not linger)
    const s = net.createServer();
    s.listen(port, '127.0.0.1');
    await once(s, 'listening');
    s.close();
  });

  test('--check-config accepts the full documented example', T, async () => {
    const file = writeTemp(FULL_EXAMPLE);
    const r = runAgateSync(['--config', file, '--check-config']);
    assert.equal(r.code, 0, `exit ${r.code}; stderr:\n${r.stderr}`);
  });

  test('--check-config accepts an empty file and a comment-only file (all keys optional)', T, async () => {
    for (const text of ['', '# nothing here\n']) {
      const r = runAgateSync(['--config', writeTemp(text), '--check-config']);
      assert.equal(r.code, 0, `file ${JSON.stringify(text)}: exit ${r.code}; stderr:\n${r.stderr}`);
    }
  });

  test('AGATE_CONFIG names the file', T, async () => {
    const file = writeTemp('limits: {max_body: 64KiB}\n');
    const r = runAgateSync(['--check-config'], { env: { AGATE_CONFIG: file } });
    assert.equal(r.code, 0, r.stderr);
  });

  test('--help: exit 0, lists the AGATE_* variables', T, async () => {
    const r = runAgateSync(['--help']);
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout + r.stderr;
    assert.ok(out.includes('AGATE_LISTEN'), out);
    const missing = ENV_VARS.filter((v) => !out.includes(v));
    assert.deepEqual(missing, [], `--help does not mention ${missing.join(', ')}`);
    assert.ok(out.includes('--config') && out.includes('--check-config'), 'options listed');
  });

  test('--version: exit 0, prints a version', T, async () => {
    const r = runAgateSync(['--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /\d+\.\d+/);
  });
});

describe('config in effect', () => {
  test('agents in the file replace the default list', T, async () => {
    const agate = await startAgate({ config: 'agents:\n  parrot: {type: echo}\n  slowpoke: {type: echo, token_interval_ms: 50}\n' });
    try {
      const r = await streamRun(agate.port, runInput('polly wants'), { agent: 'parrot' });
      assert.equal(r.statusCode, 200, r.text);
      assertEchoEvents(r.events, { text: 'polly wants' });
      const s = await streamRun(agate.port, runInput('a b c d e'), { agent: 'slowpoke' });
      assert.equal(s.statusCode, 200);
      assert.ok(s.elapsed >= 200, `slowpoke paced: ${s.elapsed} ms`);
      const e = await request(agate.port, { method: 'POST', path: '/v1/agents/echo/run', body: runInput('x') });
      assertError(e, 404, 'agent_not_found');
    } finally { await stopClean(agate); }
  });

  test('environment overrides the file (AGATE_MAX_BODY over limits.max_body)', T, async () => {
    const agate = await startAgate({ config: 'limits: {max_body: 1MiB}\n', env: { AGATE_MAX_BODY: '200' } });
    try {
      const small = JSON.stringify(runInput('ok', { threadId: 't', runId: 'r' }));
      assert.ok(small.length <= 200);
      const ok = await request(agate.port, { method: 'POST', path: '/v1/agents/echo/run', body: small });
      assert.equal(ok.statusCode, 200, ok.text);
      const big = JSON.stringify(runInput('x'.repeat(300)));
      const r = await request(agate.port, { method: 'POST', path: '/v1/agents/echo/run', body: big });
      assertError(r, 413, 'payload_too_large');
    } finally { await stopClean(agate); }
  });

  test('AGATE_SHARDS and sizes/durations with units start fine', T, async () => {
    const agate = await startAgate({
      config: 'limits: {max_header: 8KiB, header_timeout: 2s, idle_timeout: 1500ms}\nstream: {buffer: 64KiB, heartbeat: 5s}\n',
      env: { AGATE_SHARDS: '3', AGATE_HEARTBEAT: '250ms', AGATE_DRAIN_TIMEOUT: '2s' },
    });
    try {
      const r = await request(agate.port, { path: '/health/ready' });
      assert.equal(r.statusCode, 200);
      // AGATE_HEARTBEAT=250ms in force: a quiet stream gets a ping.
      const s = await streamRun(agate.port, runInput('x y', { forwardedProps: { agate: { tokenIntervalMs: 600 } } }));
      assert.ok(s.frames.some((f) => f.data === null && f.comments.includes('ping')), 'heartbeat from AGATE_HEARTBEAT');
    } finally { await stopClean(agate); }
  });
});
