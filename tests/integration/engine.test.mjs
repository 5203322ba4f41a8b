// The I/O engine and the shard count, as a new user meets them in a hardened
// container: engine.backend (auto, io_uring, epoll) in the file and the
// environment; auto falling back to epoll when a seccomp filter refuses
// io_uring (build/nouring: EPERM as containerd and Docker answer, ENOSYS as
// podman does), with the start-up line, the metric and --check-config saying
// which backend and why; io_uring forced where it is refused failing with a
// message that says so; and the default shard count following the affinity
// mask (taskset) and a cgroup CPU quota (where this machine lets the test make
// a cgroup).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  startAgate, stopClean, runAgateSync, streamRun, runInput, assertEchoEvents, request, writeTemp, REPO_ROOT,
  agateBin, agateEnv, waitFor, freePort,
} from './lib/harness.mjs';

const T = { timeout: 20000 };
const NOURING = path.join(REPO_ROOT, 'build/nouring');
const haveNouring = fs.existsSync(NOURING);
const NEEDS_NOURING = haveNouring ? {} : { skip: 'build/nouring is missing (make build/nouring)' };

async function listening(agate) {
  const l = await waitFor(() => agate.stdoutLines().map((x) => { try { return JSON.parse(x); } catch { return null; } })
    .find((j) => j && j.msg === 'listening'), 3000);
  assert.ok(l, `a "listening" line:\n${agate.stdout()}`);
  return l;
}

async function engineInfo(agate) {
  const m = await request(agate.adminPort, { path: '/metrics' });
  const line = m.text.split('\n').find((l) => l.startsWith('agate_engine_info{'));
  assert.ok(line, `agate_engine_info on /metrics:\n${m.text.slice(0, 400)}`);
  return line;
}

/** A run streams whole on this agate. */
async function echoWorks(agate) {
  const input = runInput('engine check one two');
  const r = await streamRun(agate.port, input);
  assert.equal(r.statusCode, 200, r.text);
  assertEchoEvents(r.events, input);
}

describe('engine.backend', () => {
  test('epoll from the file: the start-up line, the metric and a run', T, async () => {
    const agate = await startAgate({ config: 'engine: {backend: epoll}\n', env: { AGATE_ENGINE_BACKEND: '' } });
    try {
      const l = await listening(agate);
      assert.equal(l.backend, 'epoll', JSON.stringify(l));
      assert.equal(l.backend_why, 'engine.backend: epoll');
      assert.match(await engineInfo(agate), /^agate_engine_info\{backend="epoll",reason="engine.backend: epoll"\} 1$/);
      await echoWorks(agate);
    } finally { await stopClean(agate); }
  });

  test('AGATE_ENGINE_BACKEND overrides the file; --check-config says what would run', T, async () => {
    const file = writeTemp('engine: {backend: io_uring}\n');
    const r = runAgateSync(['--config', file, '--check-config'], { env: { AGATE_ENGINE_BACKEND: 'epoll' }, wrap: [] });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /configuration OK/);
    assert.match(r.stdout, /would run \d+ shards? \(.*\) on epoll \(engine\.backend: epoll\)/, r.stdout);
  });

  test('a backend that is none of auto, io_uring, epoll: exit 2 naming file, line and key', T, async () => {
    const file = writeTemp('shards: 1\nengine:\n  backend: kqueue\n');
    const r = runAgateSync(['--config', file, '--check-config'], { env: { AGATE_ENGINE_BACKEND: '' }, wrap: [] });
    assert.equal(r.code, 2, r.stderr);
    assert.ok(r.stderr.includes(`${file}:3: engine.backend: expected one of auto, io_uring, epoll`), r.stderr);
    const e = runAgateSync(['--check-config'], { env: { AGATE_ENGINE_BACKEND: 'uring' }, wrap: [] });
    assert.equal(e.code, 2, e.stderr);
    assert.match(e.stderr, /AGATE_ENGINE_BACKEND/);
  });

  test('auto on this host: io_uring when the kernel allows it, and --check-config agrees with the start-up line', T, async () => {
    const r = runAgateSync(['--check-config'], { env: { AGATE_ENGINE_BACKEND: 'auto' }, wrap: [] });
    assert.equal(r.code, 0, r.stderr);
    const m = /on (io_uring|epoll) \((auto: [^)]*)\)/.exec(r.stdout);
    assert.ok(m, r.stdout);
    const agate = await startAgate({ env: { AGATE_ENGINE_BACKEND: 'auto' }, wrap: [] });
    try {
      const l = await listening(agate);
      assert.equal(l.backend, m[1]);
      assert.equal(l.backend_why, m[2]);
      if (l.backend === 'io_uring') assert.equal(l.backend_why, 'auto: io_uring works');
    } finally { await stopClean(agate); }
  });
});

describe('where io_uring is refused (seccomp, build/nouring)', NEEDS_NOURING, () => {
  test('auto falls back to epoll (EPERM): says why, serves runs, exits 0', T, async () => {
    const agate = await startAgate({ env: { AGATE_ENGINE_BACKEND: 'auto' }, wrap: [NOURING] });
    try {
      const l = await listening(agate);
      assert.equal(l.backend, 'epoll', JSON.stringify(l));
      assert.equal(l.backend_why, 'auto: io_uring_setup: Operation not permitted');
      assert.match(await engineInfo(agate), /backend="epoll",reason="auto: io_uring_setup: Operation not permitted"/);
      await echoWorks(agate);
      await echoWorks(agate);
    } finally { await stopClean(agate); }
  });

  test('auto falls back to epoll (ENOSYS, as podman answers); --check-config says so', T, async () => {
    const r = runAgateSync(['--check-config'], { env: { AGATE_ENGINE_BACKEND: 'auto' }, wrap: [NOURING, '--errno', 'ENOSYS'] });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /on epoll \(auto: io_uring_setup: Function not implemented\)/, r.stdout);
    const agate = await startAgate({ env: { AGATE_ENGINE_BACKEND: 'auto' }, wrap: [NOURING, '--errno', 'ENOSYS'] });
    try {
      assert.equal((await listening(agate)).backend_why, 'auto: io_uring_setup: Function not implemented');
      await echoWorks(agate);
    } finally { await stopClean(agate); }
  });

  test('engine.backend io_uring where it is refused: exit 1, the reason and the way out', T, async () => {
    const env = { AGATE_ENGINE_BACKEND: 'io_uring', AGATE_LISTEN: `127.0.0.1:${await freePort()}`, AGATE_ADMIN_LISTEN: 'off' };
    const r = runAgateSync([], { env, wrap: [NOURING] });
    assert.equal(r.code, 1, `exit ${r.code}; stderr:\n${r.stderr}`);
    assert.match(r.stderr, /shard 0: io_uring set-up failed: Operation not permitted \(engine\.backend: io_uring\); engine\.backend: auto would use epoll/);
  });
});

/** What --check-config prints for an agate started through wrap, shards unset. */
function checkConfig(wrap) {
  const r = spawnSync(wrap[0], [...wrap.slice(1), agateBin(), '--check-config'],
    { cwd: REPO_ROOT, env: agateEnv({ AGATE_ENGINE_BACKEND: 'auto' }), encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

describe('shards default to the CPUs the process may use', () => {
  const taskset = spawnSync('taskset', ['--version']).status === 0;
  test('taskset -c 0: one shard, and the start-up line says why', { ...T, skip: taskset ? false : 'no taskset' }, async () => {
    assert.match(checkConfig(['taskset', '-c', '0']), /would run 1 shard \(1 CPU in the affinity mask, no cgroup CPU quota\)/);
    const agate = await startAgate({ env: { AGATE_SHARDS: '0' }, wrap: ['taskset', '-c', '0'] });
    try {
      const l = await listening(agate);
      assert.equal(l.shards, 1, JSON.stringify(l));
      assert.match(l.shards_from, /^1 CPU in the affinity mask/);
      const m = await request(agate.adminPort, { path: '/metrics' });
      const shards = new Set([...m.text.matchAll(/^agate_shard_loop_iterations_total\{shard="(\d+)"\}/gm)].map((x) => x[1]));
      assert.deepEqual([...shards], ['0']);
      await echoWorks(agate);
    } finally { await stopClean(agate); }
  });

  test('shards: N still wins over the CPUs', T, async () => {
    const agate = await startAgate({ env: { AGATE_SHARDS: '3' }, wrap: ['taskset', '-c', '0'] });
    try {
      const l = await listening(agate);
      assert.equal(l.shards, 3);
      assert.equal(l.shards_from, 'shards: 3');
    } finally { await stopClean(agate); }
  });

  // A cgroup with a quota of half a CPU, made for the test where the machine
  // allows it (root, a writable cgroup v1 cpu hierarchy or a v2 one with the
  // cpu controller delegated); core/cpus.c's parsing is unit-tested either way.
  test('a cgroup CPU quota of 0.5 CPU: one shard', T, async (t) => {
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' '));
    const v1 = mounts.find((f) => f.includes('cgroup') && f[f.length - 1]?.split(',').includes('cpu'));
    const v2 = mounts.find((f) => f.includes('cgroup2'));
    let dir = null;
    let files = null;
    for (const [m, kind] of [[v1, 'v1'], [v2, 'v2']]) {
      if (!m) continue;
      const d = path.join(m[4], `agate-test-${process.pid}`);
      try { fs.mkdirSync(d); } catch { continue; }
      try {
        if (kind === 'v1') fs.writeFileSync(path.join(d, 'cpu.cfs_quota_us'), '50000');
        else fs.writeFileSync(path.join(d, 'cpu.max'), '50000 100000');
        dir = d;
        files = kind === 'v1' ? 'cpu.cfs_quota_us' : 'cpu.max';
        break;
      } catch { fs.rmdirSync(d); }
    }
    if (!dir) {
      t.skip('this machine lets the test make no cgroup with a CPU quota (tests/unit/test_cpus.c covers the parsing)');
      return;
    }
    try {
      const procs = path.join(dir, 'cgroup.procs');
      const out = checkConfig(['sh', '-c', `echo $$ > '${procs}' && exec "$@"`, 'sh']);
      assert.match(out, new RegExp(`would run 1 shard \\(\\d+ CPUs? in the affinity mask, cgroup quota 0\\.50 CPU \\(${files.replace('.', '\\.')}\\)\\)`), out);
    } finally {
      fs.rmdirSync(dir);
    }
  });
});
