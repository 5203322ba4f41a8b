// SIGHUP and JWKS reloads against the real binary: a bad file keeps the running
// configuration and its "reload" log line names file:line:key; a JWKS file that
// fails to load is logged once per change, not every second; a reload that
// changes agents keeps open streams running and says a restart is required
// (agents are not swapped by a reload yet: see docs/CONFIG.md, "Reload").
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import {
  startAgate, stopClean, request, runInput, assertError, writeTemp, waitFor, streamRun, sleep,
} from './lib/harness.mjs';

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

  test('a reload that changes agents keeps open streams and asks for a restart', T, async () => {
    const agate = await startAgate({ config: config() });
    try {
      const streaming = streamRun(agate.port, runInput('one two three four five six seven eight', { forwardedProps: { agate: { tokenIntervalMs: 150 } } }), { headers: bearer(KEY) });
      await sleep(200);
      fs.writeFileSync(agate.configPath, config({ keys: [KEY, KEY2], agents: 'agents:\n  echo:\n    type: echo\n    token_interval_ms: 5\n  echo2:\n    type: echo\n' }));
      agate.signal('SIGHUP');
      await waitFor(() => reloadLines(agate, /"status":"ok"/).length === 1, 5000);
      assert.ok(reloadLines(agate, /"status":"ok"/)[0].includes('"restart_required":true'));
      assert.equal((await run(agate, bearer(KEY2))).statusCode, 200);   // the access part applied
      const s = await streaming;
      assert.equal(s.statusCode ?? s.head?.statusCode ?? 200, 200);
      assert.ok(s.events.some((e) => e.type === 'RUN_FINISHED'), 'the stream open across the reload finished');
    } finally {
      await stopClean(agate);
    }
  });
});
