// The Lua scripts of global rate limits and concurrency caps
// (net/rlglobal_lua.h), run as they are against a real redis-server: the
// lease script grants at most the bucket's tokens and says when to retry,
// giving back refills without passing full, idle keys expire, and the slot
// script caps holders across pods, expires a dead holder's slots after its
// ttl and restores a live holder whose entry expired.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, sleep } from './lib/harness.mjs';
import { startRedis } from './lib/redis.mjs';

/** The script between `lua:NAME` and `lua:end` in the header: its C string literals joined. */
function script(name) {
  const src = fs.readFileSync(path.join(REPO_ROOT, 'net/rlglobal_lua.h'), 'utf8');
  const start = src.indexOf(`/* lua:${name} */`);
  assert.ok(start >= 0, `lua:${name} marker`);
  const body = src.slice(start, src.indexOf('/* lua:end */', start));
  return [...body.matchAll(/^\s*"((?:[^"\\]|\\.)*)"/gm)].map((m) => JSON.parse(`"${m[1]}"`)).join('');
}

describe('global limit scripts', () => {
  let redis;
  const T = 3000000;          // 20 a minute: 3 s per token, in µs
  const tau = 20 * T;         // burst 20
  before(async () => { redis = await startRedis(); });
  after(async () => { await redis?.stop(); });
  const take = (key, want) => redis.call('EVAL', script('take'), 1, key, T, tau, want);
  const give = (key, n) => redis.call('EVAL', script('give'), 1, key, T, n);
  const conc = (holder, have, want, max, ttl) =>
    redis.call('EVAL', script('conc'), 2, 'z:c', 'h:c', holder, have, want, max, ttl);

  test('a lease takes at most what the bucket has, then refusals say when to retry', async () => {
    assert.deepEqual(await take('rl:a', 5), [5, 0, 15]);
    assert.deepEqual(await take('rl:a', 1), [1, 0, 14]);
    assert.deepEqual(await take('rl:a', 100), [14, 0, 0]);
    const [n, retry, rem] = await take('rl:a', 1);
    assert.equal(n, 0);
    assert.equal(rem, 0);
    assert.ok(retry > 0 && retry <= T, `retry ${retry} within one emission interval`);
    const pttl = await redis.call('PTTL', 'rl:a');
    assert.ok(pttl > 60000 && pttl <= 62000, `expires when full again (+1 s): ${pttl}`);
    // a per-second bucket: a key left alone vanishes
    assert.deepEqual(await redis.call('EVAL', script('take'), 1, 'rl:fast', 100000, 1000000, 3), [3, 0, 7]);
    const ttl = await redis.call('PTTL', 'rl:fast');
    assert.ok(ttl > 0 && ttl <= 1400, `${ttl}`);
  });

  test('giving back refills without passing full', async () => {
    assert.deepEqual(await take('rl:g', 10), [10, 0, 10]);
    assert.equal(await give('rl:g', 4), 1);
    assert.deepEqual(await take('rl:g', 100), [14, 0, 0]);
    assert.equal(await give('rl:g', 1000), 1);   // more than was ever taken: full, not fuller
    assert.equal(await redis.call('EXISTS', 'rl:g'), 0);
    assert.deepEqual(await take('rl:g', 100), [20, 0, 0]);
    assert.equal(await give('rl:none', 3), 0);
  });

  test('slots: capped across holders, released, renewed, a dead holder expires, a live one is restored', async () => {
    assert.deepEqual(await conc('podA', 0, 2, 3, 600), [2, 2]);
    assert.deepEqual(await conc('podB', 0, 2, 3, 600), [1, 3]);
    assert.deepEqual(await conc('podB', 1, 1, 3, 600), [0, 3]);
    assert.deepEqual(await conc('podA', 1, 0, 3, 600), [0, 2]);    // podA gives one back
    assert.deepEqual(await conc('podB', 1, 1, 3, 600), [1, 3]);
    // podA keeps renewing; podB goes silent and its 2 slots come back after the ttl
    for (let i = 0; i < 4; i++) {
      await sleep(200);
      const r = await conc('podA', 1, 0, 3, 600);
      if (i < 2) assert.deepEqual(r, [0, 3]);
      if (i === 3) assert.deepEqual(r, [0, 1]);
    }
    assert.deepEqual(await conc('podA', 1, 5, 3, 600), [2, 3]);
    // podA's entry vanishes (Redis restarted, or it could not renew): its next call restores what it holds
    await redis.call('DEL', 'z:c', 'h:c');
    assert.deepEqual(await conc('podB', 0, 3, 3, 600), [3, 3]);
    assert.deepEqual(await conc('podA', 3, 0, 3, 600), [0, 6]);
    assert.deepEqual(await conc('podA', 0, 0, 3, 600), [0, 3]);
    assert.equal(await redis.call('HEXISTS', 'h:c', 'podA'), 0);
  });
});
