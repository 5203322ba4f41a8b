// HTTP/1.1 conformance and every error path, over raw sockets.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  startAgate, stopClean, RawConn, rawRequest, request, buildRequest, parseResponses, parseResponse,
  sseEvents, runInput, paced, assertError, assertCommonHeaders, assertEchoEvents, sleep,
  streamRun, waitFor, agateBin,
} from './lib/harness.mjs';

const T = { timeout: 15000 };
const RUN = '/v1/agents/echo/run';

function allowSet(res) {
  const a = res.headers.allow;
  assert.ok(a, `Allow header missing on ${res.statusCode}`);
  return new Set(a.split(',').map((s) => s.trim().toUpperCase()).filter(Boolean));
}

/** Sends bytes on a fresh connection, expects one error response and the connection closed. */
async function expectErrorAndClose(port, bytes, status, code, { timeout = 4000 } = {}) {
  const r = await rawRequest(port, bytes, { timeout });
  assert.ok(r.data.length > 0, `no response at all (${r.error ? r.error.code : r.timedOut ? 'timeout' : 'closed'})`);
  const res = parseResponse(r.data, { eof: r.closed });
  assertError(res, status, code);
  assertCommonHeaders(res);
  assert.ok(r.closed, `connection not closed after ${status} ${code}`);
  return res;
}

describe('HTTP/1.1', () => {
  let agate;
  before(async () => {
    agate = await startAgate({
      config: 'limits: {max_body: 4KiB, max_header: 2KiB}\n',
    });
  });
  after(async () => { if (agate) await stopClean(agate); });

  test('keep-alive: several requests in turn on one connection', T, async () => {
    const c = await RawConn.connect(agate.port);
    try {
      const reqs = [
        { method: 'GET', path: '/health/live' },
        { method: 'POST', path: RUN, body: runInput('keep alive') },
        { method: 'GET', path: '/healthz' },
        { method: 'GET', path: '/nope' },
        { method: 'GET', path: '/health/ready' },
      ];
      const methods = [];
      for (const [i, rq] of reqs.entries()) {
        methods.push(rq.method);
        await c.write(buildRequest({ ...rq, headers: { 'X-Request-ID': `ka-${i}` } }));
        const rs = await c.waitResponses(i + 1, { methods, timeout: 4000 });
        assert.equal(rs.length, i + 1, `response ${i} missing; got ${JSON.stringify(c.text.slice(-300))}`);
        const res = rs[i];
        assert.ok(res.complete, `response ${i} incomplete`);
        assert.equal(res.headers['x-request-id'], `ka-${i}`);
        assert.notEqual((res.headers.connection || '').toLowerCase(), 'close', `response ${i} says Connection: close`);
        assert.ok(!c.ended, `connection closed after request ${i}`);
      }
      const rs = parseResponses(c.data, { methods }).responses;
      assert.deepEqual(rs.map((r) => r.statusCode), [200, 200, 200, 404, 200]);
      assertEchoEvents(sseEvents(rs[1].text), { text: 'keep alive' });
    } finally { c.destroy(); }
  });

  test('pipelining: requests written at once are answered in order (stream, then health)', T, async () => {
    const reqs = [
      { method: 'GET', path: '/health/live', headers: { 'X-Request-ID': 'p1' } },
      { method: 'POST', path: RUN, headers: { 'X-Request-ID': 'p2' }, body: runInput('pipelined stream of words') },
      { method: 'GET', path: '/health/ready', headers: { 'X-Request-ID': 'p3' } },
      { method: 'HEAD', path: '/health/live', headers: { 'X-Request-ID': 'p4' } },
      { method: 'POST', path: RUN, headers: { 'X-Request-ID': 'p5' }, body: runInput('second', { forwardedProps: paced(20) }) },
      { method: 'GET', path: '/nope', headers: { 'X-Request-ID': 'p6', Connection: 'close' } },
    ];
    const bytes = Buffer.concat(reqs.map(buildRequest));
    const methods = reqs.map((r) => r.method);
    const r = await rawRequest(agate.port, bytes, { timeout: 6000 });
    const { responses } = parseResponses(r.data, { methods, eof: r.closed });
    assert.equal(responses.length, 6, `got ${responses.length} responses: ${JSON.stringify(r.text.slice(0, 2000))}`);
    assert.deepEqual(responses.map((x) => x.headers['x-request-id']), ['p1', 'p2', 'p3', 'p4', 'p5', 'p6']);
    assert.deepEqual(responses.map((x) => x.statusCode), [200, 200, 200, 200, 200, 404]);
    assertEchoEvents(sseEvents(responses[1].text), { text: 'pipelined stream of words' });
    assert.equal(responses[3].body.length, 0, 'HEAD has no body');
    assertEchoEvents(sseEvents(responses[4].text), { text: 'second' });
    assert.ok(r.closed, 'closed after Connection: close');
  });

  test('pipelining: requests split at odd byte boundaries', T, async () => {
    const reqs = [
      { method: 'POST', path: RUN, headers: { 'X-Request-ID': 's1' }, body: runInput('split across writes') },
      { method: 'GET', path: '/healthz', headers: { 'X-Request-ID': 's2' } },
      { method: 'GET', path: '/health/live', headers: { 'X-Request-ID': 's3', Connection: 'close' } },
    ];
    const bytes = Buffer.concat(reqs.map(buildRequest));
    const c = await RawConn.connect(agate.port);
    try {
      for (let i = 0; i < bytes.length; i += 37) {
        await c.write(bytes.subarray(i, i + 37));
        if (i % (37 * 8) === 0) await sleep(5);
      }
      const rs = await c.waitResponses(3, { methods: reqs.map((x) => x.method), timeout: 6000 });
      assert.deepEqual(rs.map((x) => x.headers['x-request-id']), ['s1', 's2', 's3']);
      assert.deepEqual(rs.map((x) => x.statusCode), [200, 200, 200]);
      assertEchoEvents(sseEvents(rs[0].text), { text: 'split across writes' });
    } finally { c.destroy(); }
  });

  test('chunked request body', T, async () => {
    const body = Buffer.from(JSON.stringify(runInput('chunked body works')));
    const c = await RawConn.connect(agate.port);
    try {
      await c.write(buildRequest({
        method: 'POST', path: RUN,
        headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', Connection: 'close' },
      }));
      const parts = [body.subarray(0, 10), body.subarray(10, 11), body.subarray(11, 60), body.subarray(60)];
      for (const p of parts) {
        await c.write(Buffer.concat([Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n')]));
        await sleep(20);
      }
      await c.write('0\r\n\r\n');
      const [res] = await c.waitResponses(1, { methods: ['POST'], timeout: 4000 });
      assert.ok(res, `no response: ${JSON.stringify(c.text)}`);
      assert.equal(res.statusCode, 200, res.text);
      assertEchoEvents(sseEvents(res.text), { text: 'chunked body works' });
    } finally { c.destroy(); }
  });

  test('chunked request body with chunk extensions and upper-case hex', T, async () => {
    const body = Buffer.from(JSON.stringify(runInput('ext ok')));
    const half = Math.floor(body.length / 2);
    const enc = (b, ext = '') => Buffer.concat([Buffer.from(`${b.length.toString(16).toUpperCase()}${ext}\r\n`), b, Buffer.from('\r\n')]);
    const bytes = Buffer.concat([
      buildRequest({ method: 'POST', path: RUN, headers: { 'Transfer-Encoding': 'chunked', Connection: 'close' } }),
      enc(body.subarray(0, half), ';name=value'), enc(body.subarray(half)), Buffer.from('0\r\n\r\n'),
    ]);
    const r = await rawRequest(agate.port, bytes, { timeout: 4000 });
    const res = parseResponse(r.data, { methods: ['POST'], eof: r.closed });
    assert.equal(res.statusCode, 200, res.text);
    assertEchoEvents(sseEvents(res.text), { text: 'ext ok' });
  });

  test('Expect: 100-continue gets an interim 100 before the body is sent', T, async () => {
    const body = JSON.stringify(runInput('continue please'));
    const c = await RawConn.connect(agate.port);
    try {
      await c.write(buildRequest({
        method: 'POST', path: RUN,
        headers: { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)), Expect: '100-continue', Connection: 'close' },
      }));
      const got100 = await c.waitFor((x) => x.data.includes('\r\n\r\n'), 2000);
      assert.ok(got100, 'no interim response within 2 s of the headers');
      assert.match(c.text, /^HTTP\/1\.1 100 Continue\r\n/, `first bytes: ${JSON.stringify(c.text.slice(0, 100))}`);
      await c.write(body);
      await c.waitFor((x) => x.ended, 4000);
      const { responses, interim } = parseResponses(c.data, { methods: ['POST'], eof: true });
      assert.equal(interim.length, 1);
      assert.equal(interim[0].statusCode, 100);
      assert.equal(responses.length, 1);
      assert.equal(responses[0].statusCode, 200, responses[0].text);
      assertEchoEvents(sseEvents(responses[0].text), { text: 'continue please' });
    } finally { c.destroy(); }
  });

  test('Expect other than 100-continue: 417 expectation_failed', T, async () => {
    const res = await request(agate.port, {
      method: 'POST', path: RUN, headers: { Expect: 'something-else' }, body: runInput('x'),
    });
    assertError(res, 417, 'expectation_failed');
    assertCommonHeaders(res);
  });

  test('header names are case-insensitive', T, async () => {
    const body = JSON.stringify(runInput('case blind'));
    const raw = `POST ${RUN} HTTP/1.1\r\nhOsT: x\r\ncontent-LENGTH: ${Buffer.byteLength(body)}\r\nCONTENT-TYPE: application/json\r\nx-REQUEST-id: CaseId\r\nconnection: CLOSE\r\n\r\n${body}`;
    const r = await rawRequest(agate.port, raw, { timeout: 4000 });
    const res = parseResponse(r.data, { methods: ['POST'], eof: r.closed });
    assert.equal(res.statusCode, 200, res.text);
    assert.equal(res.headers['x-request-id'], 'CaseId');
    assertEchoEvents(sseEvents(res.text), { text: 'case blind' });
    assert.ok(r.closed, '"connection: CLOSE" honoured');

    const te = `POST ${RUN} HTTP/1.1\r\nHost: x\r\ntransfer-ENCODING: Chunked\r\nConnection: close\r\n\r\n${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    const r2 = await rawRequest(agate.port, te, { timeout: 4000 });
    const res2 = parseResponse(r2.data, { methods: ['POST'], eof: r2.closed });
    assert.equal(res2.statusCode, 200, res2.text);
    assertEchoEvents(sseEvents(res2.text), { text: 'case blind' });
  });

  test('HEAD: headers with Content-Length, no body (checked by a pipelined GET)', T, async () => {
    for (const p of ['/health/live', '/healthz', '/health/ready', '/health/startup']) {
      const bytes = Buffer.concat([
        buildRequest({ method: 'HEAD', path: p, headers: { 'X-Request-ID': 'h1' } }),
        buildRequest({ method: 'GET', path: p, headers: { 'X-Request-ID': 'h2', Connection: 'close' } }),
      ]);
      const r = await rawRequest(agate.port, bytes, { timeout: 4000 });
      const { responses, rest } = parseResponses(r.data, { methods: ['HEAD', 'GET'], eof: r.closed });
      assert.equal(responses.length, 2, `${p}: ${JSON.stringify(r.text)}`);
      const [head, get] = responses;
      assert.equal(head.statusCode, 200);
      assert.equal(head.headers['x-request-id'], 'h1');
      assert.equal(get.headers['x-request-id'], 'h2', `${p}: HEAD must not send a body (GET response misparsed)`);
      assert.ok(head.headers['content-length'] !== undefined, `${p}: HEAD has Content-Length`);
      assert.equal(Number(head.headers['content-length']), get.body.length, `${p}: HEAD Content-Length equals GET body length`);
      assert.equal(rest.length, 0, `${p}: trailing bytes after the GET response`);
      assertCommonHeaders(head);
    }
  });

  test('HTTP/1.0: response is not chunked and the connection closes', T, async () => {
    for (const raw of ['GET /health/live HTTP/1.0\r\n\r\n', 'GET /nope HTTP/1.0\r\nHost: x\r\n\r\n']) {
      const r = await rawRequest(agate.port, raw, { timeout: 3000 });
      assert.ok(r.closed, `connection closed after HTTP/1.0 request ${JSON.stringify(raw)}`);
      const res = parseResponse(r.data, { eof: true });
      assert.ok([200, 404].includes(res.statusCode));
      assert.equal(res.headers['transfer-encoding'], undefined);
      assertCommonHeaders(res);
      JSON.parse(res.text);
    }
  });

  test('unknown paths: 404 not_found', T, async () => {
    for (const [method, p] of [['GET', '/nope'], ['GET', '/index.html'], ['GET', '/v1/agents'], ['GET', '/v1/agents/echo'],
      ['POST', '/v1/agents/echo/run/extra'], ['POST', '/v1/agents//run'], ['GET', '/health/live/x']]) {
      const res = await request(agate.port, { method, path: p, body: method === 'POST' ? runInput('x') : undefined });
      assertError(res, 404, 'not_found');
      assertCommonHeaders(res);
    }
  });

  test('unknown agent: 404 agent_not_found', T, async () => {
    const res = await request(agate.port, { method: 'POST', path: '/v1/agents/nosuchagent/run', body: runInput('x') });
    assertError(res, 404, 'agent_not_found');
    assertCommonHeaders(res);
  });

  test('wrong method: 405 method_not_allowed with Allow', T, async () => {
    const cases = [
      ['DELETE', '/health/live', ['GET', 'HEAD']],
      ['POST', '/healthz', ['GET', 'HEAD']],
      ['PUT', '/health/ready', ['GET', 'HEAD']],
      ['POST', '/health/startup', ['GET', 'HEAD']],
      ['GET', RUN, ['POST']],
      ['PUT', RUN, ['POST']],
    ];
    for (const [method, p, must] of cases) {
      const res = await request(agate.port, { method, path: p, body: method !== 'GET' ? '{}' : undefined });
      assertError(res, 405, 'method_not_allowed');
      assertCommonHeaders(res);
      const allow = allowSet(res);
      for (const m of must) assert.ok(allow.has(m), `${method} ${p}: Allow "${res.headers.allow}" lacks ${m}`);
      assert.ok(!allow.has(method), `${method} ${p}: Allow "${res.headers.allow}" includes the refused method`);
    }
  });

  test('OPTIONS on a known route: 204 with Allow; on an unknown one: 404', T, async () => {
    for (const [p, must] of [['/health/live', ['GET', 'HEAD']], ['/healthz', ['GET', 'HEAD']], [RUN, ['POST']]]) {
      const res = await request(agate.port, { method: 'OPTIONS', path: p });
      assert.equal(res.statusCode, 204, `OPTIONS ${p}: ${res.statusCode} ${res.text}`);
      assert.equal(res.body.length, 0);
      const allow = allowSet(res);
      for (const m of must) assert.ok(allow.has(m), `OPTIONS ${p}: Allow "${res.headers.allow}" lacks ${m}`);
      assert.ok(allow.has('OPTIONS'), `OPTIONS ${p}: Allow "${res.headers.allow}" lacks OPTIONS`);
      // Content-Type is not required on a 204 (it has no content).
      assertCommonHeaders(res, { contentType: false });
    }
    const res = await request(agate.port, { method: 'OPTIONS', path: '/nope' });
    assertError(res, 404, 'not_found');
  });

  const malformed = [
    ['garbage request line', 'GARBAGE\r\n\r\n'],
    ['header line without a colon', 'GET /health/live HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n'],
    ['space before the colon', 'GET /health/live HTTP/1.1\r\nHost : x\r\n\r\n'],
    ['non-numeric Content-Length', `POST ${RUN} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n`],
    ['two different Content-Lengths', `POST ${RUN} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}`],
    ['Content-Length with chunked (smuggling)', `POST ${RUN} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
    ['invalid chunk size', `POST ${RUN} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`],
    ['NUL in a header value', 'GET /health/live HTTP/1.1\r\nHost: x\r\nX-Bad: a\u0000b\r\n\r\n'],
    ['bare LF in the request line', 'GET /health/live\nHTTP/1.1\r\n\r\n'],
    ['Content-Length with gzip, chunked (smuggling)',
      `POST ${RUN} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`],
  ];
  for (const [name, raw] of malformed) {
    test(`malformed HTTP: ${name} → 400 bad_request, then close`, T, async () => {
      const res = await expectErrorAndClose(agate.port, Buffer.from(raw, 'latin1'), 400, 'bad_request');
      assert.ok(res.headers['x-request-id'], 'a generated X-Request-ID');
    });
  }

  // RFC 9110/9112 rules llhttp leaves to agate (net/http1_head.c): each was
  // served, or refused with another status, before.
  const chunkedBody = (text) => {
    const b = JSON.stringify(runInput(text));
    return `${b.length.toString(16)}\r\n${b}\r\n0\r\n\r\n`;
  };
  const runBody = JSON.stringify(runInput('strict'));
  const strict = [
    ['HTTP/2.0 on an HTTP/1 request line', 'GET /health/live HTTP/2.0\r\nHost: x\r\n\r\n', 505, 'http_version_not_supported'],
    ['HTTP/3.0', 'GET /health/live HTTP/3.0\r\nHost: x\r\n\r\n', 505, 'http_version_not_supported'],
    ['the HTTP/2 connection preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 505, 'http_version_not_supported'],
    ['two Host headers', 'GET /health/live HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n', 400, 'bad_request',
      /more than one Host/],
    ['Transfer-Encoding: gzip, chunked', `POST ${RUN} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n${chunkedBody('gz')}`,
      501, 'not_implemented', /chunked/],
    ['Transfer-Encoding: gzip then chunked on two lines',
      `POST ${RUN} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n${chunkedBody('gz')}`,
      501, 'not_implemented'],
    ['an empty Transfer-Encoding beside Content-Length',
      `POST ${RUN} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\nContent-Length: ${runBody.length}\r\n\r\n${runBody}`, 400, 'bad_request'],
    ['Transfer-Encoding on HTTP/1.0', `POST ${RUN} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n${chunkedBody('ten')}`, 400, 'bad_request'],
    ['Content-Encoding: gzip on the body',
      `POST ${RUN} HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: ${runBody.length}\r\n\r\n${runBody}`,
      415, 'unsupported_media_type', /Content-Encoding/],
    ['CONNECT (authority-form)', 'CONNECT gw.example:443 HTTP/1.1\r\nHost: gw.example:443\r\n\r\n', 501, 'not_implemented'],
    ['asterisk-form with GET', 'GET * HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'bad_request'],
    ['absolute-form with another scheme', 'GET ftp://gw.example/health/live HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'bad_request'],
    ['absolute-form with user information', 'GET http://u:p@gw.example/health/live HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'bad_request'],
  ];
  for (const [name, raw, status, code, says] of strict) {
    test(`strict HTTP: ${name} → ${status} ${code}, then close`, T, async () => {
      const res = await expectErrorAndClose(agate.port, Buffer.from(raw, 'latin1'), status, code);
      if (says) assert.match(JSON.parse(res.text).message, says);
      if (status === 415) assert.equal(res.headers['accept-encoding'], 'identity');
    });
  }

  test('strict HTTP: chunked in any case and spacing, Content-Encoding identity, HTTP/1.2 as 1.1 are served', T, async () => {
    const body = JSON.stringify(runInput('still fine'));
    const reqs = [
      `POST ${RUN} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:   ChUnKeD \r\n\r\n${chunkedBody('still fine')}`,
      `POST ${RUN} HTTP/1.1\r\nHost: x\r\nContent-Encoding: identity\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      `POST ${RUN} HTTP/1.2\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    ];
    const methods = ['POST', 'POST', 'POST', 'OPTIONS'];
    const r = await rawRequest(agate.port, Buffer.from(reqs.join('')), { timeout: 6000 });
    const { responses } = parseResponses(r.data, { methods, eof: r.closed });
    assert.deepEqual(responses.map((x) => x.statusCode), [200, 200, 200, 404], r.text.slice(0, 500));
    for (const res of responses.slice(0, 3)) assertEchoEvents(sseEvents(res.text), { text: 'still fine' });
    assert.equal(responses[2].headers['transfer-encoding'], 'chunked', 'HTTP/1.2 answered as 1.1');
  });

  test('absolute-form request target: routed by its path, query apart, any case of http(s)', T, async () => {
    const reqs = [
      buildRequest({ method: 'POST', path: `http://gw.example${RUN}`, host: 'gw.example', body: runInput('absolute') }),
      buildRequest({ method: 'GET', path: 'HTTPS://gw.example:8443/health/live?probe=1', host: 'gw.example:8443' }),
      buildRequest({ method: 'GET', path: 'http://gw.example/nope', host: 'gw.example', headers: { Connection: 'close' } }),
    ];
    const methods = ['POST', 'GET', 'GET'];
    const r = await rawRequest(agate.port, Buffer.concat(reqs), { timeout: 6000 });
    const { responses } = parseResponses(r.data, { methods, eof: r.closed });
    assert.deepEqual(responses.map((x) => x.statusCode), [200, 200, 404], r.text.slice(0, 500));
    assertEchoEvents(sseEvents(responses[0].text), { text: 'absolute' });
    assert.deepEqual(JSON.parse(responses[1].text), { status: 'ok' });
    assertError(responses[2], 404, 'not_found');
  });

  test('malformed request after a good one on a keep-alive connection: 200 then 400 and close', T, async () => {
    const bytes = Buffer.concat([
      buildRequest({ method: 'GET', path: '/health/live', headers: { 'X-Request-ID': 'good' } }),
      Buffer.from('BROKEN LINE\r\n\r\n'),
    ]);
    const r = await rawRequest(agate.port, bytes, { timeout: 4000 });
    const { responses } = parseResponses(r.data, { eof: r.closed });
    assert.equal(responses.length, 2, JSON.stringify(r.text));
    assert.equal(responses[0].statusCode, 200);
    assertError(responses[1], 400, 'bad_request');
    assert.ok(r.closed);
  });

  test('413 payload_too_large from Content-Length, before the body is sent', T, async () => {
    const c = await RawConn.connect(agate.port);
    try {
      await c.write(buildRequest({ method: 'POST', path: RUN, headers: { 'Content-Type': 'application/json', 'Content-Length': '100000' } }));
      const got = await c.waitFor((x) => x.data.includes('\r\n\r\n'), 2000);
      assert.ok(got, 'no response within 2 s while the body was withheld');
      await c.waitFor((x) => x.ended, 1000);
      const res = parseResponse(c.data, { methods: ['POST'], eof: c.ended });
      assertError(res, 413, 'payload_too_large');
      assertCommonHeaders(res);
    } finally { c.destroy(); }
  });

  test('413 payload_too_large while reading a chunked body', T, async () => {
    const chunk = Buffer.alloc(1024, 0x20);
    const c = await RawConn.connect(agate.port);
    try {
      await c.write(buildRequest({ method: 'POST', path: RUN, headers: { 'Transfer-Encoding': 'chunked' } }));
      await c.write('1\r\n{\r\n');
      for (let i = 0; i < 8 && !c.ended && !c.data.length; i++) {
        await c.write(Buffer.concat([Buffer.from('400\r\n'), chunk, Buffer.from('\r\n')]));
        await sleep(10);
      }
      await c.waitFor((x) => x.data.includes('\r\n\r\n'), 3000);
      await c.waitFor((x) => x.ended, 1000);
      const res = parseResponse(c.data, { methods: ['POST'], eof: c.ended });
      assertError(res, 413, 'payload_too_large');
    } finally { c.destroy(); }
  });

  test('a body of exactly max_body is accepted; one byte more is 413', T, async () => {
    const make = (size) => {
      const base = runInput('at the limit', { threadId: 't', runId: 'r' });
      base.state = { pad: '' };
      const over = Buffer.byteLength(JSON.stringify(base));
      base.state.pad = 'x'.repeat(size - over);
      const s = JSON.stringify(base);
      assert.equal(Buffer.byteLength(s), size);
      return s;
    };
    const ok = await request(agate.port, { method: 'POST', path: RUN, body: make(4096) });
    assert.equal(ok.statusCode, 200, `4096-byte body: ${ok.statusCode} ${ok.text.slice(0, 200)}`);
    assertEchoEvents(sseEvents(ok.text), { text: 'at the limit' });
    const big = await request(agate.port, { method: 'POST', path: RUN, body: make(4097) });
    assertError(big, 413, 'payload_too_large');
  });

  test('431 request_header_fields_too_large: one huge header', T, async () => {
    const r = await rawRequest(agate.port, buildRequest({ path: '/health/live', headers: { 'X-Big': 'a'.repeat(3000) } }), { timeout: 4000 });
    assert.ok(r.data.length > 0, 'no response');
    const res = parseResponse(r.data, { eof: r.closed });
    assertError(res, 431, 'request_header_fields_too_large');
    assertCommonHeaders(res);
  });

  test('431 request_header_fields_too_large: many small headers', T, async () => {
    const headers = {};
    for (let i = 0; i < 100; i++) headers[`X-H${i}`] = 'v'.repeat(30);
    const r = await rawRequest(agate.port, buildRequest({ path: '/health/live', headers }), { timeout: 4000 });
    const res = parseResponse(r.data, { eof: r.closed });
    assertError(res, 431, 'request_header_fields_too_large');
  });

  test('431 for a long request target', T, async () => {
    const r = await rawRequest(agate.port, buildRequest({ path: `/health/live?${'q'.repeat(3000)}` }), { timeout: 4000 });
    const res = parseResponse(r.data, { eof: r.closed });
    assertError(res, 431, 'request_header_fields_too_large');
  });

  test('headers just under max_header are accepted', T, async () => {
    const res = await request(agate.port, { path: '/health/live', headers: { 'X-Pad': 'p'.repeat(1500) } });
    assert.equal(res.statusCode, 200);
  });

  test('X-Request-ID: echoed when sane, generated otherwise', T, async () => {
    const sane = ['abc-123', 'req_01HZX4Y8Q2:foo/bar.baz~!@#$%^&*()', 'A'.repeat(128)];
    for (const id of sane) {
      const res = await request(agate.port, { path: '/health/live', headers: { 'X-Request-ID': id } });
      assert.equal(res.headers['x-request-id'], id, `sane id ${JSON.stringify(id)} echoed`);
    }
    const generated = new Set();
    for (let i = 0; i < 5; i++) {
      const res = await request(agate.port, { path: '/health/live' });
      const id = res.headers['x-request-id'];
      assert.ok(id && id.length > 0 && id.length <= 128, `generated id ${JSON.stringify(id)}`);
      assert.match(id, /^[\x21-\x7e]+$/, 'generated id is printable ASCII');
      generated.add(id);
    }
    assert.equal(generated.size, 5, 'generated ids differ per request');
    const insane = ['B'.repeat(129), 'caf\u00e9', ''];
    for (const id of insane) {
      const res = await request(agate.port, {
        path: '/health/live', headers: { 'X-Request-ID': Buffer.from(id, 'utf8').toString('latin1') },
      });
      assert.equal(res.statusCode, 200);
      const got = res.headers['x-request-id'];
      assert.ok(got && got.length > 0, `insane id ${JSON.stringify(id)}: a generated one is returned`);
      assert.notEqual(got, id, `insane id ${JSON.stringify(id).slice(0, 40)} not echoed`);
      assert.ok(got.length <= 128);
      assert.match(got, /^[\x21-\x7e]+$/);
    }
  });

  test('X-Request-ID on error and streaming responses', T, async () => {
    const e404 = await request(agate.port, { path: '/nope', headers: { 'X-Request-ID': 'err-404' } });
    assert.equal(e404.headers['x-request-id'], 'err-404');
    const e405 = await request(agate.port, { method: 'DELETE', path: '/healthz', headers: { 'X-Request-ID': 'err-405' } });
    assert.equal(e405.headers['x-request-id'], 'err-405');
    const s = await streamRun(agate.port, runInput('id me'), { headers: { 'X-Request-ID': 'stream-1' } });
    assert.equal(s.headers['x-request-id'], 'stream-1');
    const inv = await request(agate.port, { method: 'POST', path: RUN, body: '{', headers: { 'X-Request-ID': 'err-400' } });
    assert.equal(inv.headers['x-request-id'], 'err-400');
  });

  test('the server survives all of the above', T, async () => {
    const res = await request(agate.port, { path: '/health/ready' });
    assert.equal(res.statusCode, 200);
  });
});

describe('HTTP/1.1 timeouts', () => {
  let agate;
  before(async () => {
    agate = await startAgate({
      config: 'limits: {header_timeout: 500ms, body_timeout: 500ms, idle_timeout: 500ms}\nstream: {max_token_interval: 1s}\n',
    });
  });
  after(async () => { if (agate) await stopClean(agate); });

  test('slowloris: partial headers then silence → 408 request_timeout, then close', T, async () => {
    const c = await RawConn.connect(agate.port);
    try {
      const t0 = Date.now();
      await c.write('GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ');
      const closed = await c.waitClose(2500);
      const dt = Date.now() - t0;
      assert.ok(closed, `connection still open after ${dt} ms`);
      assert.ok(dt >= 400, `closed after ${dt} ms, before header_timeout`);
      assert.ok(c.data.length > 0, 'no 408 response before the close');
      const res = parseResponse(c.data, { eof: true });
      assertError(res, 408, 'request_timeout');
      assertCommonHeaders(res);
    } finally { c.destroy(); }
  });

  test('slowloris: headers trickled a byte every 100 ms → 408 within ~2 s', T, async () => {
    const c = await RawConn.connect(agate.port);
    try {
      const t0 = Date.now();
      const req = 'GET /health/live HTTP/1.1\r\nHost: x\r\nX-Trickle: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n';
      for (const ch of req) {
        if (c.ended || Date.now() - t0 > 3000) break;
        await c.write(ch);
        await sleep(100);
      }
      const closed = await c.waitClose(1000);
      const dt = Date.now() - t0;
      assert.ok(closed, 'connection not closed');
      assert.ok(c.closedAt - t0 < 2500, `closed only after ${c.closedAt - t0} ms`);
      const res = parseResponse(c.data, { eof: true });
      assertError(res, 408, 'request_timeout');
      assert.ok(dt < 4000);
    } finally { c.destroy(); }
  });

  test('body_timeout: body stalls after the headers → 408 request_timeout, then close', T, async () => {
    const c = await RawConn.connect(agate.port);
    try {
      await c.write(buildRequest({ method: 'POST', path: RUN, headers: { 'Content-Length': '200' } }));
      await c.write('{"threadId":');
      const closed = await c.waitClose(2500);
      assert.ok(closed, 'connection still open 2.5 s after the body stalled');
      const res = parseResponse(c.data, { methods: ['POST'], eof: true });
      assertError(res, 408, 'request_timeout');
    } finally { c.destroy(); }
  });

  test('idle keep-alive connection closes after idle_timeout', T, async () => {
    const c = await RawConn.connect(agate.port);
    try {
      await c.write(buildRequest({ path: '/health/live' }));
      const rs = await c.waitResponses(1, { timeout: 2000 });
      assert.equal(rs[0].statusCode, 200);
      const t0 = Date.now();
      const closed = await c.waitClose(3000);
      const dt = Date.now() - t0;
      assert.ok(closed, 'idle connection still open 3 s later');
      assert.ok(dt >= 300, `closed ${dt} ms after the response, before idle_timeout 500ms`);
      assert.ok(dt < 2000, `closed ${dt} ms after the response`);
      const { responses, rest } = parseResponses(c.data, { eof: true });
      assert.equal(responses.length, 1, 'nothing but the one response (no 408 on an idle keep-alive connection)');
      assert.equal(rest.length, 0, `unexpected bytes after the response: ${JSON.stringify(rest.toString())}`);
    } finally { c.destroy(); }
  });

  test('a connection that never sends anything is closed', T, async () => {
    const c = await RawConn.connect(agate.port);
    try {
      const closed = await c.waitClose(2500);
      assert.ok(closed, 'silent connection still open after 2.5 s');
    } finally { c.destroy(); }
  });

  test('a stream longer than idle_timeout is not cut by it', T, async () => {
    const text = 'one two three four five six seven eight';
    const r = await streamRun(agate.port, runInput(text, { forwardedProps: paced(200) }), { timeout: 6000 });
    assert.equal(r.statusCode, 200);
    assert.ok(r.complete, `stream cut after ${r.elapsed} ms (closed: ${r.closed}, ${r.conn.error ? r.conn.error.code : 'no socket error'}); `
      + `frames at ms: ${r.frames.map((f) => `${f.at}:${f.event ? f.event.type : 'comment'}`).join(' ')}`);
    assertEchoEvents(r.events, { text });
    assert.ok(r.elapsed >= 1400, `stream of 8 × 200 ms took ${r.elapsed} ms`);
  });

  test('a keep-alive connection that is used keeps working past idle_timeout', T, async () => {
    const c = await RawConn.connect(agate.port);
    try {
      for (let i = 0; i < 6; i++) {
        await c.write(buildRequest({ path: '/health/live', headers: { 'X-Request-ID': `k${i}` } }));
        const rs = await c.waitResponses(i + 1, { timeout: 2000 });
        assert.equal(rs.length, i + 1, `response ${i} missing (closed: ${c.ended})`);
        await sleep(200);
      }
    } finally { c.destroy(); }
  });
});

describe('idle keep-alive connections', () => {
  test('give their buffers back after 2 s idle, stay open, and serve the next request', { timeout: 30000 }, async () => {
    const agate = await startAgate({});   // idle_timeout 60 s: the connections stay open
    const N = 50;
    const text = 'one two three four five six seven eight nine ten '.repeat(8).trim();   // a 5 KB response
    const post = () => {
      const body = JSON.stringify(runInput(text));
      return buildRequest({ method: 'POST', path: RUN, headers: { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) }, body });
    };
    const scrape = async () => (await request(agate.adminPort, { path: '/metrics' })).body.toString('utf8');
    const num = (txt, re) => { const m = re.exec(txt); return m ? Number(m[1]) : undefined; };
    const trims = (txt) => num(txt, /^agate_connection_trims_total (\d+)$/m);
    const allocated = (txt) => num(txt, /^agate_memory_bytes\{kind="allocated"\} (\d+)$/m);
    const conns = await Promise.all(Array.from({ length: N }, () => RawConn.connect(agate.port)));
    try {
      const sent = Date.now();
      await Promise.all(conns.map((c) => c.write(post())));
      for (const c of conns) {
        const [res] = await c.waitResponses(1, { methods: ['POST'] });
        assert.equal(res.statusCode, 200);
        assertEchoEvents(sseEvents(res.body.toString('utf8')), { text });
      }
      const fresh = await scrape();
      // Within 2 s of its response a connection keeps its buffers (a slower machine
      // cannot tell, so it is only asserted when the scrape came in time).
      if (Date.now() - sent < 1500) assert.equal(trims(fresh), 0, 'a connection that has just answered keeps its buffers for the next request');
      assert.ok(await waitFor(async () => trims(await scrape()) >= N, 8000), 'every idle connection gave its buffers back');
      const trimmed = await scrape();
      if (agateBin().endsWith('/build/agate') && trims(fresh) === 0) {   // jemalloc's counters (the ASan build has its own allocator)
        const perConn = (allocated(fresh) - allocated(trimmed)) / N;
        assert.ok(perConn >= 4096, `${perConn.toFixed(0)} bytes given back per idle connection (its 5 KB response's buffer)`);
        // ...and jemalloc's background threads hand the pages to the kernel (core/main.c's malloc_conf).
        const threads = fs.readdirSync(`/proc/${agate.pid}/task`).map((id) => fs.readFileSync(`/proc/${agate.pid}/task/${id}/comm`, 'utf8').trim());
        assert.ok(threads.includes('jemalloc_bg_thd'), `no jemalloc background thread among ${threads.join(', ')}`);
      }
      // Still open, and a second request on each is answered as the first was.
      await Promise.all(conns.map((c) => c.write(post())));
      for (const c of conns) {
        const rs = await c.waitResponses(2, { methods: ['POST', 'POST'] });
        assert.equal(rs.length, 2, `the second response is missing (closed: ${c.ended})`);
        assert.equal(rs[1].statusCode, 200);
        assertEchoEvents(sseEvents(rs[1].body.toString('utf8')), { text });
      }
    } finally {
      for (const c of conns) c.destroy();
      await stopClean(agate);
    }
  });
});

describe('connection cap', () => {
  let agate;
  before(async () => {
    agate = await startAgate({
      config: 'shards: 1\nlimits: {max_connections: 2}\n',
      env: { AGATE_SHARDS: '1' },
    });
    await sleep(200); // let the readiness probe's connection go away
  });
  after(async () => { if (agate) await stopClean(agate); });

  test('past max_connections per shard: 503 too_many_connections, then close; capacity comes back', T, async () => {
    const conns = [];
    try {
      for (let i = 0; i < 2; i++) {
        const c = await RawConn.connect(agate.port);
        conns.push(c);
        await c.write(buildRequest({ path: '/health/live', headers: { 'X-Request-ID': `held-${i}` } }));
        const rs = await c.waitResponses(1, { timeout: 2000 });
        assert.equal(rs.length, 1, `held connection ${i} got no response`);
        assert.equal(rs[0].statusCode, 200);
        assert.ok(!c.ended, `held connection ${i} closed`);
      }
      const third = await RawConn.connect(agate.port);
      conns.push(third);
      await third.write(buildRequest({ path: '/health/live' }));
      const closed = await third.waitClose(3000);
      assert.ok(third.data.length > 0, `3rd connection got no response (closed: ${closed})`);
      const res = parseResponse(third.data, { eof: true });
      assertError(res, 503, 'too_many_connections');
      assertCommonHeaders(res);
      assert.ok(closed, '3rd connection closed after the 503');

      // The held connections still work.
      await conns[0].write(buildRequest({ path: '/healthz' }));
      const rs0 = await conns[0].waitResponses(2, { timeout: 2000 });
      assert.equal(rs0[1].statusCode, 200);

      // Free one: a new connection is served.
      conns[1].destroy();
      await sleep(300);
      const res2 = await request(agate.port, { path: '/health/live' });
      assert.equal(res2.statusCode, 200);
    } finally {
      for (const c of conns) c.destroy();
    }
  });
});
