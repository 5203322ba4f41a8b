// The Redis client (core/redis.c) against a real redis-server and against
// fake servers: each shard's connection comes up (AUTH with a password, a
// password file, an ACL user), stays down on a wrong password with a clear
// log line while agate keeps serving, drops when Redis dies and comes back by
// itself, reconnects when a paused server lets the idle PING time out, and
// closes (counted) on replies that are not RESP or pass the reply bound,
// without growing. Bad `redis:` settings fail start-up naming the key.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  startAgate, stopClean, request, runInput, runAgateSync, sleep, waitFor, writeTemp, vmRssKiB,
} from './lib/harness.mjs';
import { startRedis } from './lib/redis.mjs';

const T = { timeout: 60000 };
const SHARDS = 2;

async function scrape(agate) {
  const r = await request(agate.adminPort, { path: '/metrics' });
  assert.equal(r.statusCode, 200);
  return r.body.toString('utf8');
}

/** Sum of a metric's samples whose labels include `labels`; undefined when there are none. */
function metric(text, name, labels = {}) {
  let sum;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

const m = async (agate, name, labels) => metric(await scrape(agate), name, labels);

async function waitMetric(agate, name, pred, timeout = 8000, labels = {}) {
  let last;
  try {
    await waitFor(async () => pred(last = await m(agate, name, labels)), timeout, 50);
  } catch {
    assert.fail(`${name}${JSON.stringify(labels)} = ${last}: condition not met within ${timeout} ms`);
  }
  return last;
}

/** An echo run still answers 200 with a whole stream. */
async function assertServes(agate) {
  const r = await request(agate.port, {
    method: 'POST', path: '/v1/agents/echo/run', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(runInput('still here')),
  });
  assert.equal(r.statusCode, 200);
  assert.match(r.body.toString('utf8'), /RUN_FINISHED/);
}

const logs = (agate, msg) => agate.stdoutLines().filter((l) => l.includes(`"msg":"${msg}"`)).map((l) => JSON.parse(l));

/** The log lines of msg once there are at least n (the log writer is a thread of its own). */
async function logsAtLeast(agate, msg, n, timeout = 3000) {
  try {
    await waitFor(() => logs(agate, msg).length >= n, timeout, 20);
  } catch {
    assert.fail(`fewer than ${n} "${msg}" lines:\n${agate.stdout()}`);
  }
  return logs(agate, msg);
}

const redisEnv = (port, extra = {}) => ({ AGATE_REDIS_ADDRESS: `127.0.0.1:${port}`, ...extra });

describe('redis: connecting', () => {
  test('every shard connects: agate_redis_up = shards, one "redis up" line each', T, async () => {
    const redis = await startRedis();
    const agate = await startAgate({ env: redisEnv(redis.port) });
    try {
      await waitMetric(agate, 'agate_redis_up', (v) => v === SHARDS);
      const text = await scrape(agate);
      assert.equal(metric(text, 'agate_redis_connects_total', { result: 'ok' }), SHARDS);
      assert.ok(metric(text, 'agate_redis_round_trips_total') >= SHARDS);   // the handshake's send
      assert.ok(metric(text, 'agate_redis_commands_total', { result: 'ok' }) >= SHARDS);   // its PING
      assert.equal(metric(text, 'agate_redis_protocol_errors_total'), 0);
      const ups = await logsAtLeast(agate, 'redis up', SHARDS);
      assert.deepEqual(ups.map((l) => l.shard).sort(), [0, 1]);
      assert.equal(ups[0].address, `127.0.0.1:${redis.port}`);
      // Both connections are agate's, seen from the server.
      const clients = (await redis.call('CLIENT', 'LIST')).toString();
      assert.ok(clients.split('\n').filter((l) => l.includes('cmd=')).length >= SHARDS + 1, clients);
      await assertServes(agate);
      await stopClean(agate);
    } finally {
      agate.signal('SIGKILL');
      await redis.kill();
    }
  });

  test('off by default: no agate_redis_* families, no connection', T, async () => {
    const agate = await startAgate();
    try {
      assert.equal(await m(agate, 'agate_redis_up'), undefined);
      await assertServes(agate);
      await stopClean(agate);
    } finally {
      agate.signal('SIGKILL');
    }
  });

  test('requirepass: AGATE_REDIS_PASSWORD, and redis.password_file (trailing newline trimmed)', T, async () => {
    const redis = await startRedis({ requirepass: 's3cret pass' });
    const a1 = await startAgate({ env: redisEnv(redis.port, { AGATE_REDIS_PASSWORD: 's3cret pass' }) });
    try {
      await waitMetric(a1, 'agate_redis_up', (v) => v === SHARDS);
      await stopClean(a1);
    } finally {
      a1.signal('SIGKILL');
    }
    const pwfile = writeTemp('s3cret pass\n', 'redis-password');
    const a2 = await startAgate({
      config: `redis:\n  address: 127.0.0.1:${redis.port}\n  password_file: ${pwfile}\n  db: 3\n`,
    });
    try {
      await waitMetric(a2, 'agate_redis_up', (v) => v === SHARDS);
      const clients = (await redis.call('CLIENT', 'LIST')).toString();
      assert.ok(clients.split('\n').filter((l) => / db=3 /.test(l)).length >= SHARDS, `SELECT 3 on both:\n${clients}`);
      await stopClean(a2);
    } finally {
      a2.signal('SIGKILL');
      await redis.kill();
    }
  });

  test('a unix socket path', T, async () => {
    const sock = path.join(os.tmpdir(), `agate-redis-${process.pid}.sock`);
    const redis = await startRedis({ args: ['--unixsocket', sock, '--unixsocketperm', '700'] });
    const agate = await startAgate({ env: { AGATE_REDIS_ADDRESS: sock } });
    try {
      await waitMetric(agate, 'agate_redis_up', (v) => v === SHARDS);
      const clients = (await redis.call('CLIENT', 'LIST')).toString();
      assert.ok(clients.split('\n').filter((l) => l.includes(`addr=${sock}`)).length >= SHARDS, clients);
      await stopClean(agate);
    } finally {
      agate.signal('SIGKILL');
      await redis.kill();
    }
  });

  test('a reload reads password_file again and connects with the new password', T, async () => {
    const redis = await startRedis({ requirepass: 'first' });
    const pwfile = writeTemp('first\n', 'redis-password');
    const agate = await startAgate({ config: `redis:\n  address: 127.0.0.1:${redis.port}\n  password_file: ${pwfile}\n` });
    try {
      await waitMetric(agate, 'agate_redis_up', (v) => v === SHARDS);
      assert.equal(await redis.call('CONFIG', 'SET', 'requirepass', 'second'), 'OK');   // the Secret rotates
      fs.writeFileSync(pwfile, 'second\n');
      agate.signal('SIGHUP');
      // every shard connects again, this time with the new password
      await waitMetric(agate, 'agate_redis_connects_total', (v) => v === 2 * SHARDS, 8000, { result: 'ok' });
      await waitMetric(agate, 'agate_redis_up', (v) => v === SHARDS);
      assert.equal(await m(agate, 'agate_redis_connects_total', { result: 'failed' }), 0);
      await stopClean(agate);
    } finally {
      agate.signal('SIGKILL');
      await redis.kill();
    }
  });

  test('an ACL user: AUTH username password', T, async () => {
    const redis = await startRedis();
    assert.equal(await redis.call('ACL', 'SETUSER', 'agate-u', 'on', '>pw-of-u', '+@all', '~*'), 'OK');
    const agate = await startAgate({
      config: `redis:\n  address: 127.0.0.1:${redis.port}\n  username: agate-u\n  password: pw-of-u\n`,
    });
    try {
      await waitMetric(agate, 'agate_redis_up', (v) => v === SHARDS);
      const clients = (await redis.call('CLIENT', 'LIST')).toString();
      assert.ok(clients.split('\n').filter((l) => l.includes('user=agate-u')).length >= SHARDS, clients);
      await stopClean(agate);
    } finally {
      agate.signal('SIGKILL');
      await redis.kill();
    }
  });

  test('a wrong password: stays down, says why once per shard, keeps serving', T, async () => {
    const redis = await startRedis({ requirepass: 'right' });
    const agate = await startAgate({
      env: redisEnv(redis.port, { AGATE_REDIS_PASSWORD: 'wrong', AGATE_REDIS_RECONNECT_MIN: '50ms',
        AGATE_REDIS_RECONNECT_MAX: '200ms' }),
    });
    try {
      await waitMetric(agate, 'agate_redis_connects_total', (v) => v >= 4 * SHARDS, 8000, { result: 'failed' });
      assert.equal(await m(agate, 'agate_redis_up'), 0);
      const downs = await logsAtLeast(agate, 'redis down', SHARDS);
      assert.equal(downs.length, SHARDS, 'one line per shard, not one per retry');
      for (const d of downs) {
        assert.equal(d.level, 'warn');
        assert.equal(d.reason, 'AUTH refused');
        assert.match(d.detail, /WRONGPASS|invalid password/);
        assert.ok(!JSON.stringify(d).includes('wrong'), 'the password is not logged');
      }
      await assertServes(agate);
      await stopClean(agate);
    } finally {
      agate.signal('SIGKILL');
      await redis.kill();
    }
  });
});

describe('redis: failures', () => {
  test('Redis killed: up drops to 0, serving goes on; restarted on the same port: back by itself', T, async () => {
    let redis = await startRedis();
    const agate = await startAgate({
      env: redisEnv(redis.port, { AGATE_REDIS_RECONNECT_MIN: '50ms', AGATE_REDIS_RECONNECT_MAX: '500ms' }),
    });
    try {
      await waitMetric(agate, 'agate_redis_up', (v) => v === SHARDS);
      await redis.kill();
      await waitMetric(agate, 'agate_redis_up', (v) => v === 0);
      assert.equal((await logsAtLeast(agate, 'redis down', SHARDS)).length, SHARDS);
      await assertServes(agate);
      await sleep(1500);   // several failed attempts while it is gone
      assert.ok(await m(agate, 'agate_redis_connects_total', { result: 'failed' }) >= SHARDS);
      assert.equal(logs(agate, 'redis down').length, SHARDS, 'failed retries log nothing more');
      redis = await startRedis({ port: redis.port });
      await waitMetric(agate, 'agate_redis_up', (v) => v === SHARDS, 5000);
      assert.equal((await logsAtLeast(agate, 'redis up', 2 * SHARDS)).length, 2 * SHARDS);
      await assertServes(agate);
      await stopClean(agate);
    } finally {
      agate.signal('SIGKILL');
      await redis.kill();
    }
  });

  test('CLIENT PAUSE past command_timeout: the idle PING times out (counted), the connection is made again', T, async () => {
    const redis = await startRedis();
    const agate = await startAgate({
      env: redisEnv(redis.port, { AGATE_REDIS_RECONNECT_MIN: '50ms', AGATE_REDIS_RECONNECT_MAX: '200ms' }),
    });
    try {
      await waitMetric(agate, 'agate_redis_up', (v) => v === SHARDS);
      const connects = await m(agate, 'agate_redis_connects_total', { result: 'ok' });
      assert.equal(await redis.call('CLIENT', 'PAUSE', '2500', 'ALL'), 'OK');
      await waitMetric(agate, 'agate_redis_commands_total', (v) => v >= SHARDS, 5000, { result: 'timeout' });
      const downs = await logsAtLeast(agate, 'redis down', 1);
      assert.ok(downs.every((d) => d.reason === 'PING timed out'), JSON.stringify(downs));
      await assertServes(agate);
      // Once the pause ends, each shard is up on a new connection.
      await waitMetric(agate, 'agate_redis_connects_total', (v) => v >= connects + SHARDS, 8000, { result: 'ok' });
      await waitMetric(agate, 'agate_redis_up', (v) => v === SHARDS);
      await stopClean(agate);
    } finally {
      agate.signal('SIGKILL');
      await redis.kill();
    }
  });
});

/** A server that answers the first bytes of each connection with payload(), then keeps what it gets. */
async function fakeRedis(payload) {
  const socks = new Set();
  const srv = net.createServer((s) => {
    socks.add(s);
    s.on('error', () => {});
    s.on('close', () => socks.delete(s));
    s.once('data', () => payload(s));
  });
  srv.listen(0, '127.0.0.1');
  await new Promise((r) => srv.once('listening', r));
  return {
    port: srv.address().port,
    async close() {
      for (const s of socks) s.destroy();
      await new Promise((r) => srv.close(r));
    },
  };
}

describe('redis: a server that does not speak RESP', () => {
  // up: whether a connection comes up in between (the extra PONG follows the
  // one the handshake's PING asked for, so each connection is up for a moment).
  const cases = [
    ['garbage', (s) => s.write('HTTP/1.1 200 OK\r\n\r\n'), false],
    ['a reply nobody asked for', (s) => s.write('+PONG\r\n+PONG\r\n'), true],
    ['a deeply nested array', (s) => s.write('*1\r\n'.repeat(64) + ':1\r\n'), false],
    ['an array of 2^31-1 elements', (s) => s.write('*2147483647\r\n:1\r\n'), false],
  ];
  for (const [name, payload, up] of cases) {
    test(`${name}: a protocol error, counted; agate stays up and serves`, T, async () => {
      const fake = await fakeRedis(payload);
      const agate = await startAgate({
        env: redisEnv(fake.port, { AGATE_REDIS_RECONNECT_MIN: '50ms', AGATE_REDIS_RECONNECT_MAX: '100ms' }),
      });
      try {
        await waitMetric(agate, 'agate_redis_protocol_errors_total', (v) => v >= 2 * SHARDS);
        if (!up) assert.equal(await m(agate, 'agate_redis_up'), 0);
        const downs = await logsAtLeast(agate, 'redis down', SHARDS);
        assert.ok(downs.every((d) => d.reason === 'protocol error'), JSON.stringify(downs));
        if (!up) assert.equal(downs.length, SHARDS, 'one line per shard while it stays down');
        await assertServes(agate);
        await stopClean(agate);
      } finally {
        agate.signal('SIGKILL');
        await fake.close();
      }
    });
  }

  test('a huge bulk length with bytes to match: closed at redis.max_reply_bytes, memory stays bounded', T, async () => {
    const chunk = Buffer.alloc(1 << 20, 0x78);
    const fake = await fakeRedis((s) => {
      s.write('$1000000000\r\n');
      // 64 MiB per connection unless agate hangs up first (it should, at 64 KiB).
      let left = 64;
      const more = () => {
        while (left > 0 && !s.destroyed) {
          left--;
          if (!s.write(chunk)) { s.once('drain', more); return; }
        }
      };
      more();
    });
    const agate = await startAgate({
      config: `redis:\n  address: 127.0.0.1:${fake.port}\n  max_reply_bytes: 64KiB\n  reconnect_min: 20ms\n  reconnect_max: 50ms\n`,
    });
    try {
      const rss0 = vmRssKiB(agate.pid);
      await waitMetric(agate, 'agate_redis_protocol_errors_total', (v) => v >= 10 * SHARDS, 20000);
      const grew = vmRssKiB(agate.pid) - rss0;
      // Ten connections per shard were each offered 64 MiB: what agate kept is
      // bounded by the reply bound (and the allocator's slack), not by the offer.
      assert.ok(grew < 48 * 1024, `RSS grew by ${grew} KiB`);
      const [d] = await logsAtLeast(agate, 'redis down', 1);
      assert.equal(d.detail, 'reply over redis.max_reply_bytes');
      await assertServes(agate);
      await stopClean(agate);
    } finally {
      agate.signal('SIGKILL');
      await fake.close();
    }
  });
});

describe('redis: configuration', () => {
  test('a name that does not resolve is a start-up error naming redis.address', T, async () => {
    const r = runAgateSync(['--check-config'], { env: { AGATE_REDIS_ADDRESS: 'no-such-host.invalid:6379' } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /redis\.address: no-such-host\.invalid:6379 does not resolve/);
  });

  test('bad values name the file, the line and the key', T, async () => {
    const cases = [
      ['redis:\n  address: localhost\n', 2, 'redis.address', /expected host:port/],
      ['redis:\n  address: 127.0.0.1:6379\n  command_timeout: 50\n', 3, 'redis.command_timeout', /unit/],
      ['redis:\n  address: 127.0.0.1:6379\n  max_pending: 0\n', 3, 'redis.max_pending', /./],
      ['redis:\n  adress: 127.0.0.1:6379\n', 2, 'redis.adress', /unknown key/],
    ];
    for (const [yaml, line, key, why] of cases) {
      const file = writeTemp(yaml);
      const r = runAgateSync(['--config', file, '--check-config']);
      assert.equal(r.code, 2, `${yaml}: ${r.stderr}`);
      assert.ok(r.stderr.includes(`${file}:${line}: ${key}:`), `${yaml}\n${r.stderr}`);
      assert.match(r.stderr, why);
    }
    const missing = path.join(os.tmpdir(), `agate-no-such-pw-${process.pid}`);
    const file = writeTemp(`redis:\n  address: 127.0.0.1:6379\n  password_file: ${missing}\n`);
    const r = runAgateSync(['--config', file, '--check-config']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /redis\.password_file: .*No such file/);
    const both = writeTemp('redis:\n  address: 127.0.0.1:6379\n  reconnect_min: 10s\n  reconnect_max: 1s\n');
    const r2 = runAgateSync(['--config', both, '--check-config']);
    assert.equal(r2.code, 2);
    assert.match(r2.stderr, /redis\.reconnect_min: 10000ms is more than redis\.reconnect_max/);
  });
});
