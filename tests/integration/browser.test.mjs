// The demo page agate serves at GET /, driven by headless Chromium (Debian's
// /usr/bin/chromium through playwright-core): it runs the echo agent over SSE
// (fetch + a stream reader) and over WebSocket, and the test reads the streamed
// text back from the page. Either transport breaking fails the test. A
// screenshot is saved under tests/output/. Then a page's own `new WebSocket()`
// against an agent that needs credentials: a bearer.agate. subprotocol entry and
// ?access_token= open it and run; a bad token gets the handshake refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startAgate, stopClean, request, runInput, waitFor, REPO_ROOT } from './lib/harness.mjs';

const T = { timeout: 60000 };
const CHROMIUM = '/usr/bin/chromium';
const OUT = path.join(REPO_ROOT, 'tests', 'output');

test('the demo page streams the echo agent over SSE and WebSocket in Chromium', T, async (t) => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing (deploy/install-deps.sh test installs chromium)`);
  const agate = await startAgate();
  t.after(async () => { if (!agate.exitInfo) await agate.stop(5000); });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  const res = await page.goto(`http://127.0.0.1:${agate.port}/`);
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-type'], /^text\/html/);
  assert.equal(await page.title(), 'agate demo');

  const text = 'Streaming from agate to a real browser, one word at a time, over two transports.';
  await page.fill('#text', text);
  await page.fill('#interval', '60');
  await page.click('#run-both');

  // While the runs are paced, the page shows part of the text: it streams.
  await page.waitForFunction(() => {
    const s = document.getElementById('sse-out').textContent, w = document.getElementById('ws-out').textContent;
    return s.length > 0 && w.length > 0 && document.getElementById('sse-status').textContent === 'running';
  }, null, { timeout: 10000 });
  const partial = await page.textContent('#sse-out');
  assert.ok(partial.length < text.length && text.startsWith(partial), `partial SSE text: ${JSON.stringify(partial)}`);

  await page.waitForFunction(() => ['sse', 'ws'].every((n) => document.getElementById(`${n}-status`).textContent !== 'running'),
    null, { timeout: 20000 });
  fs.mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: path.join(OUT, 'demo.png'), fullPage: true });

  for (const name of ['sse', 'ws']) {
    assert.equal(await page.textContent(`#${name}-status`), 'done', `${name} status`);
    assert.equal(await page.textContent(`#${name}-out`), text, `${name} text`);
    const words = text.split(' ').length;
    assert.equal(Number(await page.textContent(`#${name}-events`)), words + 4, `${name}: RUN_STARTED, START, ${words} words, END, FINISHED`);
  }
  assert.deepEqual(consoleErrors, []);

  // The runs really went over both transports.
  const m = (await request(agate.adminPort, { path: '/metrics' })).body.toString();
  assert.match(m, /agate_runs_ended_total\{agent="echo",transport="sse",outcome="finished"\} 1\b/);
  assert.match(m, /agate_runs_ended_total\{agent="echo",transport="ws",outcome="finished"\} 1\b/);
  await page.close();
  await stopClean(agate);
});

test('demo: false turns the page off (404)', { timeout: 15000 }, async () => {
  const agate = await startAgate({ config: 'demo: false\n' });
  const res = await request(agate.port, { path: '/' });
  assert.equal(res.statusCode, 404);
  assert.equal(JSON.parse(res.body.toString()).error, 'not_found');
  const on = await startAgate({ env: { AGATE_DEMO: 'true' } });
  assert.equal((await request(on.port, { path: '/' })).statusCode, 200);
  assert.equal((await request(on.adminPort, { path: '/' })).statusCode, 404, 'main listener only');
  await stopClean(on);
  await stopClean(agate);
});

// In the page: opens url with protocols, sends one run when open, and resolves
// with what happened: whether it opened, the selected protocol, the events of the
// run, and the close code (1006 when the handshake failed).
function pageSocket({ url, protocols, input }) {
  return new Promise((resolve) => {
    const out = { opened: false, protocol: null, events: [], code: null };
    const ws = protocols === undefined ? new WebSocket(url) : new WebSocket(url, protocols);
    ws.onopen = () => { out.opened = true; out.protocol = ws.protocol; ws.send(JSON.stringify(input)); };
    ws.onmessage = (m) => {
      const e = JSON.parse(m.data);
      out.events.push(e);
      if (e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR') ws.close(1000);
    };
    ws.onclose = (e) => { out.code = e.code; resolve(out); };
  });
}

test('a browser WebSocket authenticates with a bearer.agate. protocol entry or ?access_token=', T, async (t) => {
  const KEY = `k-${crypto.randomBytes(12).toString('hex')}`;
  const SECRET = crypto.randomBytes(24).toString('hex');
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${b64({ alg: 'HS256' })}.${b64({ sub: 'browser', exp: Math.floor(Date.now() / 1000) + 300, scope: 'agents:run' })}`;
  const JWT = `${head}.${crypto.createHmac('sha256', SECRET).update(head).digest('base64url')}`;
  const agate = await startAgate({
    config: [
      'auth:',
      '  anonymous: false',
      `  api_keys: [{name: web, sha256: ${crypto.createHash('sha256').update(KEY).digest('hex')}, scopes: [agents:run]}]`,
      `  jwt: {keys: [{secret: "${SECRET}"}]}`,
    ].join('\n') + '\n',
  });
  t.after(async () => { if (!agate.exitInfo) await agate.stop(5000); });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  assert.equal((await page.goto(`http://127.0.0.1:${agate.port}/`)).status(), 200);   // a page of agate's origin
  const ws = `ws://127.0.0.1:${agate.port}/v1/agents/echo/ws`;
  const open = (url, protocols) => page.evaluate(pageSocket, { url, protocols, input: runInput('from the browser') });
  const text = (r) => r.events.filter((e) => e.type === 'TEXT_MESSAGE_CONTENT').map((e) => e.delta).join('');

  for (const [what, url, protocols] of [
    ['API key in a protocol entry', ws, ['ag-ui', `bearer.agate.${KEY}`]],
    ['JWT in a protocol entry, listed first', ws, [`bearer.agate.${JWT}`, 'ag-ui']],
    ['JWT in access_token', `${ws}?access_token=${JWT}`, 'ag-ui'],
    ['API key in access_token, no subprotocol at all', `${ws}?access_token=${encodeURIComponent(KEY)}`, undefined],
  ]) {
    const r = await open(url, protocols);
    assert.ok(r.opened, `${what}: the handshake failed (${r.code}; ${consoleErrors.join(' | ')})`);
    assert.equal(r.protocol, protocols === undefined ? '' : 'ag-ui', `${what}: selected subprotocol`);
    assert.deepEqual(r.events.map((e) => e.type),
      ['RUN_STARTED', 'TEXT_MESSAGE_START', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_CONTENT',
        'TEXT_MESSAGE_END', 'RUN_FINISHED'], what);
    assert.equal(text(r), 'from the browser', what);
    assert.equal(r.code, 1000, what);
  }
  assert.deepEqual(consoleErrors, []);

  // A bad token: agate answers 401 (with WWW-Authenticate: Bearer, which Chromium
  // takes as an HTTP auth challenge it has nothing for) and the handshake fails (1006).
  const refusedLines = () => agate.stdoutLines().filter((l) => /"path":"\/v1\/agents\/echo\/ws","status":401/.test(l)).length;
  for (const [what, url, protocols] of [
    ['bad key in a protocol entry', ws, ['ag-ui', 'bearer.agate.not-the-key']],
    ['bad JWT in access_token', `${ws}?access_token=${JWT}x`, 'ag-ui'],
    ['no credential', ws, 'ag-ui'],
  ]) {
    consoleErrors.length = 0;
    const before = refusedLines();
    const r = await open(url, protocols);
    assert.equal(r.opened, false, what);
    assert.equal(r.code, 1006, what);
    assert.deepEqual(r.events, [], what);
    assert.ok(consoleErrors.some((m) => /HTTP Authentication failed|Unexpected response code: 401/.test(m)), `${what}: ${consoleErrors.join(' | ')}`);
    assert.ok(await waitFor(() => refusedLines() === before + 1, 5000), `${what}: agate refused it 401`);
  }

  // Offering only the credential entry: agate never selects it (it would echo
  // the token), so the 101 names no subprotocol, and Chromium, having offered
  // one, fails the handshake. Hence 'ag-ui' alongside the entry.
  consoleErrors.length = 0;
  const lonely = await open(ws, [`bearer.agate.${KEY}`]);
  assert.equal(lonely.opened, false);
  assert.equal(lonely.code, 1006);
  assert.ok(consoleErrors.some((m) => /Sent non-empty 'Sec-WebSocket-Protocol' header but no response was received/.test(m)),
    consoleErrors.join(' | '));
  assert.ok(await waitFor(() => agate.stdoutLines().some((l) => /"path":"\/v1\/agents\/echo\/ws","status":101/.test(l)
    && /"events":0/.test(l)), 5000), 'agate did answer that one 101');

  const out = agate.stdout();
  for (const s of [KEY, JWT.split('.')[2]]) assert.ok(!out.includes(s), 'a credential in the log');
  await page.close();
  await stopClean(agate);
});
