// Faults of the host, not of the client: running out of file descriptors
// (RLIMIT_NOFILE), and a port another process already listens on.
//
// The descriptor tests start agate under a low limit (/bin/sh's ulimit, then
// exec) and fill it with idle connections. CPU time is read from
// /proc/PID/stat: the bound (< 30% of one CPU while nothing but the flood is
// going on) is a correctness bound on spinning, not a performance timing; the
// old code, which re-armed a failed accept at once, used ~190% (both CPUs).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  startAgate, stopClean, request, RawConn, buildRequest, sleep, waitFor, uid, cpuSeconds, nofileOf,
} from './lib/harness.mjs';

const T = { timeout: 30000 };
const LIMIT = 256;          // descriptors: soft and hard
const FLOOD = 400;          // idle connections to the main listener, well past LIMIT
const MAX_CPU = 0.3;        // of one CPU, over the measuring window
const MAX_TURNS = 1000;     // loop turns of both shards over the 2 s window (two scrapes, timers, back-offs)

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

/** An admin connection opened before the flood and kept: requests on it need no new descriptor. */
async function keptAdmin(agate) {
  const c = await RawConn.connect(agate.adminPort);
  let n = 0;
  return {
    async get(path) {
      await c.write(buildRequest({ path }));
      const rs = await c.waitResponses(++n, { timeout: 3000 });
      assert.equal(rs.length, n, `no answer to GET ${path} on the kept admin connection`);
      return rs[n - 1];
    },
    destroy: () => c.destroy(),
  };
}

/** Opens n idle connections (nothing sent); errors (resets of refused ones) are expected. */
function flood(port, n) {
  const socks = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    socks.push(s);
  }
  return { close: () => { for (const s of socks) s.destroy(); } };
}

/** Over `ms`: the CPU agate used, as a fraction of one CPU, and its shards' loop
 * turns (a count: a spinning loop turns thousands of times a second however
 * little CPU a busy machine lets it have). */
async function spinOver(agate, admin, ms) {
  const turns = async () => metric((await admin.get('/metrics')).body.toString('utf8'), 'agate_shard_loop_iterations_total');
  const n0 = await turns();
  const t0 = cpuSeconds(agate.pid);
  const w0 = Date.now();
  await sleep(ms);
  const cpu = (cpuSeconds(agate.pid) - t0) / ((Date.now() - w0) / 1000);
  return { cpu, turns: (await turns()) - n0 };
}

/** Waits (bounded) until a fresh connection to port gets GET /healthz answered 200. */
async function servedAgain(port, timeout = 5000) {
  return waitFor(async () => {
    try { return (await request(port, { path: '/healthz', timeout: 1000 })).statusCode === 200; } catch { return false; }
  }, timeout, 50);
}

const jsonLines = (agate) => agate.stdoutLines().map((l) => { try { return JSON.parse(l); } catch { return {}; } });

describe('at the descriptor limit', () => {
  test(`ulimit -n ${LIMIT}, ${FLOOD} connections: no spinning, the admin listener answers, service comes back`, T, async () => {
    const agate = await startAgate({ config: 'log: {requests: false}\n', nofile: { soft: LIMIT, hard: LIMIT } });
    const admin = await keptAdmin(agate);
    const f = flood(agate.port, FLOOD);
    try {
      await sleep(1000);   // the flood is accepted, refused or queued by now
      const { cpu, turns } = await spinOver(agate, admin, 2000);
      assert.ok(cpu < MAX_CPU, `agate used ${(cpu * 100).toFixed(0)}% of a CPU with every descriptor taken (spinning on accept?)`);
      assert.ok(turns < MAX_TURNS, `${turns} loop turns in 2 s with every descriptor taken (spinning on accept?)`);
      // A new admin connection still gets a descriptor: the top of the limit is kept for it.
      const health = await request(agate.adminPort, { path: '/healthz', timeout: 2000 });
      assert.equal(health.statusCode, 200, `admin /healthz during the flood: ${health.statusCode}`);
      // The limit was reached: connections were refused or accepts failed.
      const m = (await admin.get('/metrics')).body.toString('utf8');
      const refused = metric(m, 'agate_connections_refused_total') + metric(m, 'agate_accept_errors_total');
      assert.ok(refused > 0, `no refusals and no accept errors: the flood did not reach the limit?\n${m.split('\n').filter((l) => /^agate_(connections|accept)/.test(l)).join('\n')}`);
      f.close();
      assert.ok(await servedAgain(agate.port), 'main listener does not serve again after the flood closed');
    } finally {
      f.close();
      admin.destroy();
      await stopClean(agate);
    }
  });

  test('admin connections hold the reserve too: both accepts fail with EMFILE, back off, and recover', T, async () => {
    const agate = await startAgate({ config: 'log: {requests: false}\n', nofile: { soft: LIMIT, hard: LIMIT } });
    const admin = await keptAdmin(agate);
    const floods = [flood(agate.port, FLOOD)];
    try {
      await sleep(1000);                              // main holds every descriptor below the reserve
      floods.push(flood(agate.adminPort, 40));        // admin connections take the reserve (32) and more
      await sleep(500);
      floods.push(flood(agate.port, 20));             // main connections that meet no descriptor at all
      await sleep(500);
      const { cpu, turns } = await spinOver(agate, admin, 2000);
      assert.ok(cpu < MAX_CPU, `agate used ${(cpu * 100).toFixed(0)}% of a CPU with no descriptor left (spinning on accept?)`);
      assert.ok(turns < MAX_TURNS, `${turns} loop turns in 2 s with no descriptor left (spinning on accept?)`);
      const h = await admin.get('/healthz');
      assert.equal(h.statusCode, 200, 'health on the kept admin connection');
      const m = (await admin.get('/metrics')).body.toString('utf8');
      for (const listener of ['main', 'admin']) {
        const n = metric(m, 'agate_accept_errors_total', { listener, reason: 'emfile' });
        assert.ok(n > 0, `${listener} accept never failed with EMFILE (${n})`);
        // Backing off: a few failures a second per shard, not one per loop turn.
        assert.ok(n < 100, `${listener}: ${n} EMFILE accepts in ~3 s: not backing off`);
      }
      for (const fl of floods) fl.close();
      assert.ok(await servedAgain(agate.adminPort), 'admin listener does not serve again');
      assert.ok(await servedAgain(agate.port), 'main listener does not serve again');
    } finally {
      for (const fl of floods) fl.close();
      admin.destroy();
      await stopClean(agate);
    }
  });

  test('start-up: max_connections × shards past the limit is lowered, with a warning; a reload keeps it', T, async () => {
    const agate = await startAgate({ nofile: { soft: LIMIT, hard: LIMIT } });
    try {
      // The log thread writes it a few ms after start-up.
      const w = await waitFor(() => jsonLines(agate).find((j) => j.msg === 'max_connections lowered to fit the descriptor limit'), 3000);
      assert.ok(w, `no warning in the log:\n${agate.stdout()}`);
      assert.equal(w.level, 'warn');
      assert.equal(w.configured, 10000);
      assert.equal(w.shards, 2);
      assert.equal(w.nofile, LIMIT);
      assert.equal(w.nofile_hard, LIMIT);
      assert.ok(w.max_connections >= 1 && w.max_connections * 2 <= LIMIT - 32,
        `max_connections ${w.max_connections} per shard does not leave the admin reserve free`);
      // A reload of an unchanged file: the lowered value is not a change needing a restart.
      agate.signal('SIGHUP');
      const r = await waitFor(() => jsonLines(agate).find((j) => j.msg === 'reload' && j.what === 'config'), 5000);
      assert.ok(r, 'no reload line');
      assert.equal(r.status, 'ok');
      assert.equal(r.restart_required, undefined, `reload asks for a restart: ${JSON.stringify(r)}`);
    } finally {
      await stopClean(agate);
    }
  });

  test('start-up: a soft limit under what is needed is raised to the hard limit, nothing lowered', T, async (t) => {
    const hard = nofileOf().hard;
    if (hard < 4096) return t.skip(`this process's hard limit (${hard}) is too low to show a raise`);
    const agate = await startAgate({ config: 'limits: {max_connections: 1000}\n', nofile: { soft: LIMIT } });
    try {
      const lim = nofileOf(agate.pid);
      assert.equal(lim.soft, lim.hard, `soft limit not raised: ${JSON.stringify(lim)}`);
      const raised = await waitFor(() => jsonLines(agate).find((j) => j.msg === 'descriptor limit raised'), 3000);
      assert.ok(raised, `no "descriptor limit raised" line:\n${agate.stdout()}`);
      assert.equal(raised.was, LIMIT);
      assert.equal(raised.nofile, lim.hard);
      assert.ok(await waitFor(() => jsonLines(agate).some((j) => j.msg === 'listening'), 3000), 'no listening line');
      assert.ok(!jsonLines(agate).some((j) => j.msg === 'max_connections lowered to fit the descriptor limit'),
        'max_connections lowered although the raised limit fits it');
    } finally {
      await stopClean(agate);
    }
  });
});

describe('port in use', () => {
  /** Starts an agate meant to fail; returns its exit code and stderr. */
  async function startFailing(opts) {
    const a = await startAgate({ ...opts, ready: false });
    const code = await a.waitExit(5000);
    return { code, stderr: a.stderr(), stdout: a.stdout() };
  }

  test('a second agate on the same ports exits 1 naming the address; the first keeps every request', T, async () => {
    const first = await startAgate();
    try {
      const same = await startFailing({ port: first.port, adminPort: first.adminPort });
      assert.equal(same.code, 1, `second agate on the same ports: exit ${same.code}; stderr:\n${same.stderr}`);
      assert.match(same.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${first.port}: address already in use`));
      assert.ok(!same.stdout.includes('"msg":"listening"'), 'the second agate said it was listening');

      // Only the admin port taken: refused as well, naming the admin address.
      const adminOnly = await startFailing({ adminPort: first.adminPort });
      assert.equal(adminOnly.code, 1, `second agate on the same admin port: exit ${adminOnly.code}`);
      assert.match(adminOnly.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${first.adminPort}: address already in use`));

      // The wildcard address overlaps the first's: refused too.
      const wild = await startFailing({ port: first.port, env: { AGATE_LISTEN: `0.0.0.0:${first.port}` } });
      assert.equal(wild.code, 1, `second agate on 0.0.0.0:${first.port}: exit ${wild.code}`);
      assert.match(wild.stderr, new RegExp(`cannot listen on 0\\.0\\.0\\.0:${first.port}: address already in use`));

      // Every request, each on a new connection, is the first's (its log has every id).
      const ids = [];
      for (let i = 0; i < 40; i++) {
        const id = uid('only-first');
        ids.push(id);
        const r = await request(first.port, { path: '/healthz', headers: { 'X-Request-ID': id } });
        assert.equal(r.statusCode, 200);
      }
      const logged = await waitFor(() => ids.every((id) => first.stdout().includes(`"request_id":"${id}"`)), 3000);
      assert.ok(logged, `requests missing from the first agate's log: ${ids.filter((id) => !first.stdout().includes(id)).length} of 40`);
    } finally {
      await stopClean(first);
    }
    // Its ports are free again at exit (connections it closed may be in TIME_WAIT): a restart binds them.
    const again = await startAgate({ port: first.port, adminPort: first.adminPort });
    await stopClean(again);
  });
});
