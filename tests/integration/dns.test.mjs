// Upstream host names: resolved at start, and re-resolved on upstream.dns_refresh by a
// thread of their own. agate runs in a private mount namespace with a test-owned file
// bind-mounted over /etc/hosts (needs root, as CI has), so the test needs no DNS server:
// "upagent" first means 127.0.0.1, then 127.0.0.2, where a second upstream listens on
// the same port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { startAgate, stopClean, streamRun, runInput, freePort, sleep, waitFor, agateBin } from './lib/harness.mjs';

/** A minimal AG-UI upstream on host:port that names itself in its text. */
async function upstream(host, port, name) {
  const hits = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const input = JSON.parse(body);
      hits.push(input.runId);
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      const ev = [
        { type: 'RUN_STARTED', threadId: input.threadId, runId: input.runId },
        { type: 'TEXT_MESSAGE_START', messageId: 'm', role: 'assistant' },
        { type: 'TEXT_MESSAGE_CONTENT', messageId: 'm', delta: name },
        { type: 'TEXT_MESSAGE_END', messageId: 'm' },
        { type: 'RUN_FINISHED', threadId: input.threadId, runId: input.runId },
      ];
      res.end(ev.map((e) => `data: ${JSON.stringify(e)}\n\n`).join(''));
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, exclusive: true }, resolve);
  });
  return { hits, close: () => new Promise((r) => server.close(r)) };
}

const root = process.getuid && process.getuid() === 0;

test('a host name is re-resolved on dns_refresh and new runs follow it',
  { timeout: 20000, skip: root ? false : 'needs root for a private /etc/hosts (CI runs as root)' }, async () => {
  const port = await freePort();
  const a = await upstream('127.0.0.1', port, 'first');
  const b = await upstream('127.0.0.2', port, 'second');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agate-dns-'));
  const hosts = path.join(dir, 'hosts');
  fs.writeFileSync(hosts, '127.0.0.1 upagent\n');
  // exec all the way down, so the harness's signals reach agate itself.
  const wrapper = path.join(dir, 'agate-ns');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec unshare --mount --propagation private sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' ${hosts} ${agateBin()} "$@"\n`, { mode: 0o755 });
  const realBin = process.env.AGATE_BIN;
  process.env.AGATE_BIN = wrapper;
  const agate = await startAgate({
    config: [
      'upstream: {dns_refresh: 200ms}',
      'agents:',
      '  up:',
      '    type: proxy',
      `    endpoints: [http://upagent:${port}/agent]`,
      '',
    ].join('\n'),
    env: { AGATE_SHARDS: '1' },
  }).finally(() => {
    if (realBin === undefined) delete process.env.AGATE_BIN;
    else process.env.AGATE_BIN = realBin;
  });
  try {
    const text = async () => {
      const r = await streamRun(agate.port, runInput('hi'), { agent: 'up' });
      assert.equal(r.statusCode, 200);
      return r.events.filter((e) => e.type === 'TEXT_MESSAGE_CONTENT').map((e) => e.delta).join('');
    };
    assert.equal(await text(), 'first');
    fs.writeFileSync(hosts, '127.0.0.2 upagent\n');   // same inode: the bind mount sees it
    let got = '';
    for (let i = 0; i < 40 && got !== 'second'; i++) {
      await sleep(100);
      got = await text();
    }
    assert.equal(got, 'second', 'runs go to the new address after a refresh');
    assert.ok(b.hits.length >= 1);
    const changedLine = () => agate.stdoutLines().map((l) => JSON.parse(l)).find((j) => j.msg === 'upstream address changed');
    const changed = await waitFor(changedLine, 2000);   // written by the log thread, up to a poll interval later
    assert.ok(changed, 'the change is logged');
    assert.equal(changed.detail, '127.0.0.2');
    assert.equal(changed.agent, 'up');
  } finally {
    await stopClean(agate);
    await a.close();
    await b.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an unresolvable host name stops start-up with exit 2 naming the endpoint', { timeout: 10000 }, async () => {
  const agate = await startAgate({
    config: 'agents:\n  up:\n    type: proxy\n    endpoints: [http://no-such-host.invalid:80/agent]\n',
    ready: false,
  });
  const code = await agate.waitExit(10000);
  assert.equal(code, 2);
  assert.match(agate.stderr(), /agents\.up\.endpoints\[0\]: cannot resolve no-such-host\.invalid/);
});
