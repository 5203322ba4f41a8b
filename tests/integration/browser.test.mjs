// The demo page agate serves at GET /, driven by headless Chromium (Debian's
// /usr/bin/chromium through playwright-core): it runs the echo agent over SSE
// (fetch + a stream reader) and over WebSocket, and the test reads the streamed
// text back from the page. Either transport breaking fails the test. A
// screenshot is saved under tests/output/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startAgate, stopClean, request, REPO_ROOT } from './lib/harness.mjs';

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
