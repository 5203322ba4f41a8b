// SIGHUP and JWKS reloads against the real binary: a bad file keeps the running
// configuration and its "reload" log line names file:line:key; a JWKS file that
// fails to load is logged once per change, not every second; agents are added,
// removed and changed by a reload while streams that began before it finish on
// the configuration they started with (SSE, a proxied run on its old upstream,
// WebSocket connections); start-only settings are kept and named.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import WebSocket from 'ws';
import {
  startAgate, stopClean, request, runInput, assertError, writeTemp, waitFor, streamRun, sleep, assertEchoEvents,
} from './lib/harness.mjs';
import { startAguiServer, simpleRun } from './lib/agui-server.mjs';

const T = { timeout: 30000 };
const sha = (s) => crypto.createHash('sha256').update(s).digest('hex');
const KEY = `k-${crypto.randomBytes(12).toString('hex')}`;
const KEY2 = `k2-${crypto.randomBytes(12).toString('hex')}`;
const bearer = (k) => ({ authorization: `Bearer ${k}` });
const run = (agate, headers, agent = 'echo') =>
  request(agate.port, { method: 'POST', path: `/v1/agents/${agent}/run`, headers: { 'content-type': 'application/json', ...headers }, body: runInput('hi') });
const reloadLines = (agate, re) => agate.stdoutLines().filter((l) => /"msg":"reload"/.test(l) && re.test(l));

function config({ keys = [KEY], agents = 'agents:\n  echo:\n    type: echo\n', jwksPath } = {}) {
  return `${agents}auth:
  anonymous: false
  api_keys:
${keys.map((k, i) => `    - {name: k${i}, sha256: ${sha(k)}, scopes: [agents:run]}`).join('\n')}
${jwksPath ? `  jwt:\n    jwks_file: ${jwksPath}\n` : ''}`;
}

describe('reload', () => {
  test('a bad file is refused with file:line:key in the log and the running configuration stays', T, async () => {
    const agate = await startAgate({ config: config() });
    try {
      assert.equal((await run(agate, bearer(KEY))).statusCode, 200);
      fs.writeFileSync(agate.configPath, config({ keys: [KEY2] }).replace('anonymous: false', 'anonymous: maybe'));
      agate.signal('SIGHUP');
      await waitFor(() => reloadLines(agate, /"status":"failed"/).length === 1, 5000);
      const line = reloadLines(agate, /"status":"failed"/)[0];
      assert.ok(line.includes(`${agate.configPath}:5: auth.anonymous:`), line);
      // still the old keys, still no anonymous access
      assert.equal((await run(agate, bearer(KEY))).statusCode, 200);
      assertError(await run(agate, bearer(KEY2)), 401, 'invalid_token');
      assertError(await run(agate, {}), 401, 'unauthorized');
      // a good file afterwards applies
      fs.writeFileSync(agate.configPath, config({ keys: [KEY2] }));
      agate.signal('SIGHUP');
      await waitFor(() => reloadLines(agate, /"status":"ok"/).length === 1, 5000);
      assert.equal((await run(agate, bearer(KEY2))).statusCode, 200);
      assertError(await run(agate, bearer(KEY)), 401, 'invalid_token');
    } finally {
      await stopClean(agate);
    }
  });

  test('a JWKS file that fails to load is logged once per change, not every second', T, async () => {
    const jwksPath = writeTemp(JSON.stringify({ keys: [] }), 'jwks.json');
    const agate = await startAgate({ config: config({ jwksPath }) });
    try {
      const failed = () => reloadLines(agate, /"what":"jwks","status":"failed"/);
      fs.writeFileSync(jwksPath, '{"keys": [');
      await waitFor(() => failed().length === 1, 5000);
      assert.ok(failed()[0].includes(jwksPath), failed()[0]);
      await sleep(3000);   // the watch runs every second: still one line
      assert.equal(failed().length, 1, 'the same failure logged again');
      fs.writeFileSync(jwksPath, '{"keys": 7}');   // changed, still broken: logged again, once
      await waitFor(() => failed().length === 2, 5000);
      await sleep(2000);
      assert.equal(failed().length, 2);
      fs.writeFileSync(jwksPath, JSON.stringify({ keys: [] }));
      await waitFor(() => reloadLines(agate, /"what":"jwks","status":"ok"/).length === 1, 5000);
      assert.equal((await run(agate, bearer(KEY))).statusCode, 200);   // API keys never stopped working
    } finally {
      await stopClean(agate);
    }
  });

  test('agents added, removed and changed by SIGHUP; a stream open across it finishes as it began', T, async () => {
    const agents = (a) => `agents:\n${a}`;
    const agate = await startAgate({ config: config({ agents: agents('  echo: {type: echo}\n  gone: {type: echo}\n') }) });
    try {
      const text = 'one two three four five six seven eight';
      const paced = { forwardedProps: { agate: { tokenIntervalMs: 120 } } };
      const onGone = streamRun(agate.port, runInput(text, paced), { agent: 'gone', headers: bearer(KEY) });
      await sleep(200);   // mid-stream
      const metric = async (re) => {
        const m = (await request(agate.adminPort, { path: '/metrics' })).text.match(re);
        return m ? Number(m[1]) : 0;
      };
      const startedBefore = await metric(/agate_runs_started_total\{agent="echo",transport="sse"\} (\d+)/);
      const before = (await run(agate, bearer(KEY))).statusCode;
      assert.equal(before, 200);
      fs.writeFileSync(agate.configPath, config({
        keys: [KEY, KEY2],
        agents: agents('  fresh: {type: echo}\n  echo: {type: echo, token_interval_ms: 40}\n'),
      }));
      agate.signal('SIGHUP');
      await waitFor(() => reloadLines(agate, /"status":"ok"/).length === 1, 5000);
      const line = reloadLines(agate, /"status":"ok"/)[0];
      assert.ok(line.includes('"agents_added":["fresh"]'), line);
      assert.ok(line.includes('"agents_removed":["gone"]'), line);
      assert.ok(line.includes('"agents_changed":["echo"]'), line);
      assert.ok(!line.includes('restart_required'), line);

      // the new agent serves, the removed one is gone for new runs, the access part applied
      const fresh = await streamRun(agate.port, runInput('hi there'), { agent: 'fresh', headers: bearer(KEY2) });
      assert.equal(fresh.statusCode, 200);
      assertEchoEvents(fresh.events, { text: 'hi there' });
      assertError(await run(agate, bearer(KEY), 'gone'), 404, 'agent_not_found');
      // the changed agent paces by its new token_interval_ms: 5 words, 4 gaps of 40 ms
      const t0 = Date.now();
      const slow = await streamRun(agate.port, runInput('a b c d e'), { headers: bearer(KEY) });
      assert.equal(slow.statusCode, 200);
      assert.ok(Date.now() - t0 >= 150, `echo now paced: ${Date.now() - t0} ms`);
      // the run on the removed agent, started before the reload, finished whole
      const g = await onGone;
      assert.equal(g.statusCode, 200);
      assertEchoEvents(g.events, { text });
      // per-agent counters carried over (same slot): before + the paced run
      assert.equal(await metric(/agate_runs_started_total\{agent="echo",transport="sse"\} (\d+)/), startedBefore + 2);
    } finally {
      await stopClean(agate);
    }
  });

  test('a proxy agent re-pointed by SIGHUP: new runs go to the new upstream, a run in flight finishes on the old', T, async () => {
    const a = await startAguiServer({ script: { interval: 100 } });
    const b = await startAguiServer({});
    const agents = (url) => `agents:\n  up:\n    type: proxy\n    endpoints: [${url}]\n`;
    const agate = await startAgate({ config: config({ agents: agents(a.url) }) });
    try {
      const input = runInput('x');
      const inflight = streamRun(agate.port, input, { agent: 'up', headers: bearer(KEY) });
      await waitFor(() => a.requests.length === 1, 5000);
      fs.writeFileSync(agate.configPath, config({ agents: agents(b.url) }));
      agate.signal('SIGHUP');
      await waitFor(() => reloadLines(agate, /"status":"ok"/).length === 1, 5000);
      assert.ok(reloadLines(agate, /"status":"ok"/)[0].includes('"agents_changed":["up"]'));
      const next = await streamRun(agate.port, runInput('y'), { agent: 'up', headers: bearer(KEY) });
      assert.equal(next.statusCode, 200);
      assert.equal(b.requests.length, 1, 'the new run went to the new endpoint');
      assert.equal(a.requests.length, 1, 'nothing more to the old one');
      const old = await inflight;
      assert.equal(old.statusCode, 200);
      assert.deepEqual(old.events, simpleRun(input));   // every event of the old upstream, in order
      assert.ok(a.requests[0].finished && !a.requests[0].aborted, 'the old upstream run was not cut');
    } finally {
      await stopClean(agate);
      await a.close();
      await b.close();
    }
  });

  test('WebSocket connections stay open across a reload; their next runs use the new agents', T, async () => {
    const agents = (a) => `agents:\n${a}`;
    const agate = await startAgate({ config: config({ agents: agents('  echo: {type: echo}\n  gone: {type: echo}\n') }) });
    try {
      const open = (agent) => new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${agate.port}/v1/agents/${agent}/ws`, 'ag-ui', { headers: bearer(KEY) });
        ws.events = [];
        ws.on('message', (m) => ws.events.push(JSON.parse(m.toString())));
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      });
      const ends = (ws, runId) => waitFor(() => ws.events.some((e) => e.runId === runId && /^RUN_(FINISHED|ERROR)$/.test(e.type)), 5000);
      const wsGone = await open('gone');
      const wsEcho = await open('echo');
      fs.writeFileSync(agate.configPath, config({ agents: agents('  echo: {type: echo, token_interval_ms: 30}\n') }));
      agate.signal('SIGHUP');
      await waitFor(() => reloadLines(agate, /"status":"ok"/).length === 1, 5000);
      wsGone.send(JSON.stringify(runInput('hello', { runId: 'r-gone' })));
      await ends(wsGone, 'r-gone');
      const err = wsGone.events.find((e) => e.runId === 'r-gone');
      assert.equal(err.type, 'RUN_ERROR');
      assert.equal(err.code, 'agent_not_found');
      assert.equal(wsGone.readyState, WebSocket.OPEN, 'the connection stays open');
      const t0 = Date.now();
      wsEcho.send(JSON.stringify(runInput('a b c d', { runId: 'r-echo' })));
      await ends(wsEcho, 'r-echo');
      assert.ok(Date.now() - t0 >= 80, `paced by the new token_interval_ms: ${Date.now() - t0} ms`);
      assert.equal(wsEcho.events.filter((e) => e.type === 'TEXT_MESSAGE_CONTENT').map((e) => e.delta).join(''), 'a b c d');
      wsGone.close();
      wsEcho.close();
    } finally {
      await stopClean(agate);
    }
  });

  test('settings read only at start are kept and named in the reload line; the rest applies', T, async () => {
    const agate = await startAgate({ config: config() });
    try {
      fs.writeFileSync(agate.configPath, `limits: {max_connections: 77}\nstream: {heartbeat: 300ms}\nlog: {buffer: 8MiB}\n${config()}`);
      agate.signal('SIGHUP');
      await waitFor(() => reloadLines(agate, /"status":"ok"/).length === 1, 5000);
      const line = reloadLines(agate, /"status":"ok"/)[0];
      assert.ok(line.includes('"restart_required":true'), line);
      assert.ok(line.includes('"restart_keys":"limits.max_connections,log.buffer"'), line);
      assert.ok(line.includes('"level":"warn"'), line);
      // stream.heartbeat applied: a paced run with a 1 s gap gets a ": ping" comment
      const s = await streamRun(agate.port, runInput('a b', { forwardedProps: { agate: { tokenIntervalMs: 1000 } } }), { headers: bearer(KEY) });
      assert.equal(s.statusCode, 200);
      assert.ok(s.frames.some((f) => f.comments.includes('ping')), 'a heartbeat within the 1 s gap');
    } finally {
      await stopClean(agate);
    }
  });
});
