// Access control against the real binary: API keys (Bearer and X-API-Key), JWTs
// signed at test time with node:crypto (HS256 from config, RS256 from a PEM file,
// ES256 from a JWKS file), every refusal path (missing, expired, wrong signature,
// wrong audience, alg none, algorithm confusion, bad key, wrong scope, credentials
// sent twice), CORS
// preflight and headers, security headers, /metrics needing `admin`, SIGHUP
// reload of keys, and that no credential ever reaches the log. WebSocket upgrades:
// refused 401/403 before the 101 when every run would be, and the credential ways a
// browser has (a bearer.agate. Sec-WebSocket-Protocol entry, ?access_token=), never
// echoed, logged or put in a span.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { spawnSync } from 'node:child_process';
import WebSocket from 'ws';
import {
  startAgate, stopClean, request, runInput, assertError, writeTemp, waitFor, streamRun, sleep, RawConn,
  rawRequest, buildRequest, parseResponses,
} from './lib/harness.mjs';

const T = { timeout: 20000 };
const sha = (s) => crypto.createHash('sha256').update(s).digest('hex');
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const HS_SECRET = crypto.randomBytes(32).toString('hex');
const KEY_RUN = `k-run-${crypto.randomBytes(12).toString('hex')}`;
const KEY_ECHO_ONLY = `k-echo-${crypto.randomBytes(12).toString('hex')}`;
const KEY_NONE = `k-none-${crypto.randomBytes(12).toString('hex')}`;
const KEY_ADMIN = `k-admin-${crypto.randomBytes(12).toString('hex')}`;
// A key with bytes a subprotocol token cannot hold ('/', '=', ' ', a quote): sent
// base64url in a protocol entry, percent-encoded in access_token.
const KEY_ODD = `k/odd "${crypto.randomBytes(6).toString('base64')}"+x==`;
// Test keys come from the openssl command, not crypto.generateKeyPairSync: node 20
// can deadlock exporting a generated key (ExportJWK holds the key's mutex while it
// allocates; a GC there finalizes the KeyGenJob, whose destructor takes the same
// mutex). That hung this file silently, before its first test, in about one make
// test in five (gdb: KeyGenJob<EcKeyGenTraits>::~KeyGenJob under ExportJWKEcKey).
// Keys parsed from PEM have no job, and the JWK is exported once, up front.
function opensslKey(...args) {
  const r = spawnSync('openssl', ['genpkey', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl genpkey ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout;
}
const RSA_PRIVATE_PEM = opensslKey('-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048');
const EC_PRIVATE_PEM = opensslKey('-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256');
const rsa = { privateKey: crypto.createPrivateKey(RSA_PRIVATE_PEM), publicKey: crypto.createPublicKey(RSA_PRIVATE_PEM) };
const ec = { privateKey: crypto.createPrivateKey(EC_PRIVATE_PEM), publicKey: crypto.createPublicKey(EC_PRIVATE_PEM) };
const RSA_PEM = rsa.publicKey.export({ type: 'spki', format: 'pem' });
const EC_JWK = ec.publicKey.export({ format: 'jwk' });
const now = () => Math.floor(Date.now() / 1000);

function sign(header, claims, key) {
  const input = `${b64(header)}.${b64(claims)}`;
  let sig;
  if (header.alg === 'HS256') sig = crypto.createHmac('sha256', key).update(input).digest();
  else if (header.alg === 'RS256') sig = crypto.sign('sha256', Buffer.from(input), key);
  else if (header.alg === 'ES256') sig = crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  else sig = Buffer.alloc(0);
  return `${input}.${sig.toString('base64url')}`;
}
const claims = (extra = {}) => ({ sub: 'user-1', iss: 'https://issuer.test', aud: 'agate', exp: now() + 300, scope: 'agents:run', ...extra });
const hs = (c = claims(), h = {}) => sign({ alg: 'HS256', kid: 'hs1', ...h }, c, HS_SECRET);
const rs = (c = claims()) => sign({ alg: 'RS256', kid: 'rs1' }, c, rsa.privateKey);
const es = (c = claims()) => sign({ alg: 'ES256', kid: 'ec1' }, c, ec.privateKey);

function config({ jwksPath, pemPath, keys = [KEY_RUN, KEY_ECHO_ONLY, KEY_NONE, KEY_ADMIN] }) {
  const [run, echoOnly, none, admin] = keys;
  return [
    'metrics: {on_main_listener: true}',
    'agents:',
    '  echo: {type: echo}',
    '  other: {type: echo}',
    '  open: {type: echo}',
    'auth:',
    '  anonymous: false',
    '  agents:',
    '    open: {anonymous: true}',
    '  api_keys:',
    `    - {name: ci, sha256: ${sha(run)}, scopes: [agents:run]}`,
    `    - {name: echo-only, sha256: ${sha(echoOnly)}, scopes: ["agents:run:echo"]}`,
    `    - {name: no-scope, sha256: ${sha(none)}}`,
    `    - {name: ops, sha256: ${sha(admin)}, scopes: [admin]}`,
    `    - {name: odd, sha256: ${sha(KEY_ODD)}, scopes: [agents:run]}`,
    '  jwt:',
    '    issuer: https://issuer.test',
    '    audience: agate',
    '    leeway: 5s',
    `    jwks_file: ${jwksPath}`,
    '    keys:',
    `      - {kid: hs1, secret: "${HS_SECRET}"}`,
    `      - {kid: rs1, public_key_file: ${pemPath}}`,
    'cors:',
    '  allowed_origins: [https://app.example]',
    '  allow_credentials: true',
    '  max_age: 2m',
  ].join('\n') + '\n';
}

const BODY = () => runInput('hello auth');
const run = (agate, headers = {}, agent = 'echo') =>
  request(agate.port, { method: 'POST', path: `/v1/agents/${agent}/run`, headers: { 'Content-Type': 'application/json', ...headers }, body: BODY() });
const bearer = (t) => ({ Authorization: `Bearer ${t}` });

// One keep-alive connection for several runs: credentials are judged per
// request (and per policy after a reload), never remembered per connection.
function keepAlive(port) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const post = (headers, name = 'echo') => new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: `/v1/agents/${name}/run`, agent,
      headers: { 'Content-Type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ statusCode: res.statusCode, text, reused: req.reusedSocket }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('no answer within 5 s')));
    req.on('error', reject);
    req.end(JSON.stringify(BODY()));
  });
  return { post, close: () => agent.destroy() };
}

describe('auth', () => {
  let agate;
  let jwksPath;
  before(async () => {
    jwksPath = writeTemp(JSON.stringify({ keys: [{ ...EC_JWK, kid: 'ec1', use: 'sig', alg: 'ES256' }] }), 'jwks.json');
    const pemPath = writeTemp(RSA_PEM, 'rsa.pem');
    agate = await startAgate({ config: config({ jwksPath, pemPath }) });
  });
  after(async () => { if (agate) await stopClean(agate); });

  test('keys change on one keep-alive connection: each request is judged by the key it carries', T, async () => {
    const ka = keepAlive(agate.port);
    try {
      const seq = [
        [bearer(KEY_RUN), 'echo', 200], [bearer(KEY_RUN), 'echo', 200],
        [bearer(KEY_ECHO_ONLY), 'other', 403], [bearer(KEY_RUN), 'other', 200],
        [bearer(`${KEY_RUN}x`), 'echo', 401], [bearer(KEY_RUN.slice(0, -1)), 'echo', 401],
        [{}, 'echo', 401], [{ 'X-API-Key': KEY_NONE }, 'echo', 403], [bearer(KEY_RUN), 'echo', 200],
      ];
      for (const [i, [h, name, status]] of seq.entries()) {
        const r = await ka.post(h, name);
        assert.equal(r.statusCode, status, `request ${i}: ${r.text.slice(0, 200)}`);
        if (i > 0) assert.ok(r.reused, `request ${i} went over the same connection`);
      }
    } finally {
      ka.close();
    }
  });

  test('no credentials: 401 with WWW-Authenticate Bearer', T, async () => {
    const res = await run(agate);
    assertError(res, 401, 'unauthorized');
    assert.match(res.headers['www-authenticate'], /^Bearer realm="agate"/);
  });

  test('API key as Bearer and as X-API-Key streams the run', T, async () => {
    for (const h of [bearer(KEY_RUN), { 'X-API-Key': KEY_RUN }]) {
      const res = await run(agate, h);
      assert.equal(res.statusCode, 200, res.text);
      assert.match(res.headers['content-type'], /text\/event-stream/);
      assert.match(res.text, /RUN_FINISHED/);
    }
  });

  test('credentials sent twice are 400 invalid_request, not "the first one wins"', T, async () => {
    const twice = [
      { Authorization: [`Bearer ${KEY_RUN}`, 'Bearer not-a-key'] },
      { Authorization: ['Bearer not-a-key', `Bearer ${KEY_RUN}`] },
      { 'X-API-Key': [KEY_RUN, KEY_RUN] },
    ];
    const reqs = twice.map((headers) => buildRequest({ method: 'POST', path: '/v1/agents/echo/run', headers, body: BODY() }));
    reqs.push(buildRequest({ path: '/metrics', headers: { Authorization: [`Bearer ${KEY_ADMIN}`, `Bearer ${KEY_ADMIN}`] } }));
    reqs.push(buildRequest({ method: 'POST', path: '/v1/agents/echo/run', headers: { ...bearer(KEY_RUN), Connection: 'close' }, body: BODY() }));
    const methods = ['POST', 'POST', 'POST', 'GET', 'POST'];
    const r = await rawRequest(agate.port, Buffer.concat(reqs), { timeout: 6000 });
    const { responses } = parseResponses(r.data, { methods, eof: r.closed });
    assert.equal(responses.length, 5, r.text.slice(0, 600));
    for (const res of responses.slice(0, 4)) {
      const body = assertError(res, 400, 'invalid_request');
      assert.match(body.message, /more than once/);
      assert.match(res.headers['www-authenticate'], /^Bearer realm="agate", error="invalid_request"/);
    }
    assert.equal(responses[4].statusCode, 200, 'the connection serves the next request');
    assert.match(responses[4].text, /RUN_FINISHED/);
  });

  test('a wrong API key is 401 invalid_token', T, async () => {
    const res = await run(agate, bearer('not-a-key'));
    assertError(res, 401, 'invalid_token');
    assert.match(res.headers['www-authenticate'], /error="invalid_token"/);
  });

  test('scopes: agents:run:<name> allows that agent only; no scope is 403; admin allows all', T, async () => {
    assert.equal((await run(agate, bearer(KEY_ECHO_ONLY), 'echo')).statusCode, 200);
    const other = await run(agate, bearer(KEY_ECHO_ONLY), 'other');
    const body = assertError(other, 403, 'insufficient_scope');
    assert.equal(body.scope, 'agents:run:other');
    assert.match(other.headers['www-authenticate'], /error="insufficient_scope", scope="agents:run:other"/);
    assertError(await run(agate, bearer(KEY_NONE)), 403, 'insufficient_scope');
    assert.equal((await run(agate, bearer(KEY_ADMIN), 'other')).statusCode, 200);
  });

  test('anonymous where the config allows it, for that agent only', T, async () => {
    assert.equal((await run(agate, {}, 'open')).statusCode, 200);
    assertError(await run(agate, {}, 'other'), 401, 'unauthorized');
  });

  test('JWT HS256, RS256 (PEM file) and ES256 (JWKS file) verify', T, async () => {
    for (const tok of [hs(), rs(), es()]) {
      const res = await run(agate, bearer(tok));
      assert.equal(res.statusCode, 200, `${res.statusCode} ${res.text}`);
    }
  });

  test('JWT refusals: expired, wrong signature, wrong audience, wrong issuer, not yet valid, none, confusion', T, async () => {
    const cases = {
      expired: hs(claims({ exp: now() - 60 })),
      'wrong signature': sign({ alg: 'HS256', kid: 'hs1' }, claims(), 'some-other-secret-some-other-secret'),
      'wrong audience': hs(claims({ aud: 'somebody-else' })),
      'wrong issuer': hs(claims({ iss: 'https://evil.test' })),
      'not yet valid': hs(claims({ nbf: now() + 120 })),
      'alg none': `${b64({ alg: 'none' })}.${b64(claims())}.`,
      'alg none signed': sign({ alg: 'none' }, claims(), ''),
      // HS256 keyed with the RSA public key's PEM text: the RSA key pins RS256
      'algorithm confusion': sign({ alg: 'HS256', kid: 'rs1' }, claims(), RSA_PEM),
      'algorithm confusion, no kid': sign({ alg: 'HS256' }, claims(), RSA_PEM),
      'tampered payload': (() => { const [h, , s] = hs().split('.'); return `${h}.${b64(claims({ scope: 'admin' }))}.${s}`; })(),
      'unknown kid': hs(claims(), { kid: 'nope' }),
    };
    for (const [name, tok] of Object.entries(cases)) {
      const res = await run(agate, bearer(tok));
      assert.equal(res.statusCode, 401, `${name}: ${res.statusCode} ${res.text}`);
      assert.equal(JSON.parse(res.text).error, 'invalid_token', name);
      assert.match(res.headers['www-authenticate'], /error="invalid_token"/, name);
    }
  });

  test('JWT scope claim decides: no scope is 403, scope array works', T, async () => {
    assertError(await run(agate, bearer(hs(claims({ scope: 'profile' })))), 403, 'insufficient_scope');
    assert.equal((await run(agate, bearer(hs(claims({ scope: ['agents:run:other'] }))), 'other')).statusCode, 200);
  });

  test('CORS preflight is answered without credentials and without running an agent', T, async () => {
    const res = await request(agate.port, {
      method: 'OPTIONS', path: '/v1/agents/echo/run',
      headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' },
    });
    assert.equal(res.statusCode, 204);
    assert.equal(res.headers['access-control-allow-origin'], 'https://app.example');
    assert.equal(res.headers['access-control-allow-credentials'], 'true');
    assert.match(res.headers['access-control-allow-methods'], /POST/);
    assert.match(res.headers['access-control-allow-headers'], /Authorization/i);
    assert.equal(res.headers['access-control-max-age'], '120');
    assert.match(res.headers.vary, /Origin/);
    const bad = await request(agate.port, {
      method: 'OPTIONS', path: '/v1/agents/echo/run', headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' },
    });
    assertError(bad, 403, 'origin_not_allowed');
    assert.equal(bad.headers['access-control-allow-origin'], undefined);
    // an actual request from the allowed origin carries the CORS headers
    const ok = await run(agate, { ...bearer(KEY_RUN), Origin: 'https://app.example' });
    assert.equal(ok.headers['access-control-allow-origin'], 'https://app.example');
    assert.match(ok.headers['access-control-expose-headers'], /RateLimit-Remaining/);
    const runs = (await request(agate.adminPort, { path: '/metrics' })).text;
    assert.match(runs, /agate_http_requests_total\{listener="main",route="run",method="OPTIONS",code="2xx"\} [1-9]/);
  });

  test('security headers on every response', T, async () => {
    for (const res of [await request(agate.port, { path: '/healthz' }), await run(agate), await run(agate, bearer(KEY_RUN))]) {
      assert.equal(res.headers['x-content-type-options'], 'nosniff');
      assert.equal(res.headers['referrer-policy'], 'no-referrer');
      assert.equal(res.headers['x-frame-options'], 'DENY');
      assert.match(res.headers['content-security-policy'], /frame-ancestors 'none'/);
    }
    assert.equal((await request(agate.port, { path: '/healthz' })).headers['cache-control'], 'no-store');
  });

  test('/metrics on the main listener needs scope admin; the admin listener does not', T, async () => {
    assertError(await request(agate.port, { path: '/metrics' }), 401, 'unauthorized');
    assertError(await request(agate.port, { path: '/metrics', headers: bearer(KEY_RUN) }), 403, 'insufficient_scope');
    assert.equal((await request(agate.port, { path: '/metrics', headers: bearer(KEY_ADMIN) })).statusCode, 200);
    const m = await request(agate.adminPort, { path: '/metrics' });
    assert.equal(m.statusCode, 200);
    assert.match(m.text, /agate_http_rejected_requests_total\{reason="unauthorized"\} [1-9]/);
    assert.match(m.text, /agate_http_rejected_requests_total\{reason="forbidden"\} [1-9]/);
  });

  test('no secret in the log', T, async () => {
    const out = agate.stdout();
    for (const s of [KEY_RUN, KEY_ECHO_ONLY, KEY_NONE, KEY_ADMIN, HS_SECRET, hs().split('.')[2]]) assert.ok(!out.includes(s), 'a credential in the log');
  });
});

describe('auth reload', () => {
  test('SIGHUP swaps API keys and JWKS changes are picked up without a restart', T, async () => {
    const jwksPath = writeTemp(JSON.stringify({ keys: [] }), 'jwks.json');
    const pemPath = writeTemp(RSA_PEM, 'rsa.pem');
    const agate = await startAgate({ config: config({ jwksPath, pemPath }) });
    let ka;
    try {
      assert.equal((await run(agate, bearer(KEY_RUN))).statusCode, 200);
      assert.equal((await run(agate, bearer(es()))).statusCode, 401);
      // JWKS: the file gains the EC key; agate notices within a couple of seconds
      fs.writeFileSync(jwksPath, JSON.stringify({ keys: [{ ...EC_JWK, kid: 'ec1' }] }));
      await waitFor(async () => (await run(agate, bearer(es()))).statusCode === 200, 5000);
      // the line is written by the log thread, which may be a poll interval behind the request
      assert.ok(await waitFor(() => agate.stdoutLines().some((l) => /"msg":"reload","what":"jwks","status":"ok"/.test(l)), 2000));
      // SIGHUP: the ci key is replaced by a new one (keep a long stream open across it)
      const NEW = `k-new-${crypto.randomBytes(8).toString('hex')}`;
      ka = keepAlive(agate.port);   // a connection that presented the ci key before the reload
      assert.equal((await ka.post(bearer(KEY_RUN))).statusCode, 200);
      const streaming = streamRun(agate.port, runInput('one two three four five six', { forwardedProps: { agate: { tokenIntervalMs: 150 } } }), { headers: bearer(KEY_RUN) });
      await sleep(200);
      fs.writeFileSync(agate.configPath, config({ jwksPath, pemPath, keys: [NEW, KEY_ECHO_ONLY, KEY_NONE, KEY_ADMIN] }));
      agate.signal('SIGHUP');
      await waitFor(() => agate.stdoutLines().some((l) => /"msg":"reload","what":"config","status":"ok"/.test(l)), 5000);
      assertError(await run(agate, bearer(KEY_RUN)), 401, 'invalid_token');
      const again = await ka.post(bearer(KEY_RUN));
      assert.ok(again.reused, 'the same connection as before the reload');
      assert.equal(again.statusCode, 401, 'a removed key is refused on a connection that used it before');
      assert.equal((await run(agate, bearer(NEW))).statusCode, 200);
      const s = await streaming;   // the stream begun before the reload was not dropped
      assert.equal(s.statusCode ?? s.head?.statusCode ?? 200, 200);
      assert.ok(s.events.some((e) => e.type === 'RUN_FINISHED'), 'the open stream finished');
      // a broken file is refused and the running keys stay
      fs.writeFileSync(agate.configPath, 'auth: [not, a, mapping]\n');
      agate.signal('SIGHUP');
      await waitFor(() => agate.stdoutLines().some((l) => /"msg":"reload","what":"config","status":"failed"/.test(l)), 5000);
      assert.equal((await run(agate, bearer(NEW))).statusCode, 200);
    } finally {
      ka?.close();
      await stopClean(agate);
    }
  });
});

// ---------------------------------------------------------------------------
// WebSocket upgrades

/** Opens /v1/agents/{agent}/ws with the `ws` client: {ws} once open, or the refusal
 * {status, headers, body} when agate answers the upgrade with an error. */
function upgrade(port, { agent = 'echo', query = '', protocols = ['ag-ui'], headers = {} } = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/agents/${agent}/ws${query}`, protocols, { headers });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text, body: JSON.parse(text) }));
    });
    ws.once('error', reject);
  });
}

/** One echo run over an open socket: its events, ending with RUN_FINISHED or RUN_ERROR. */
function wsRun(ws, text = 'hello over ws') {
  const input = runInput(text);
  const events = [];
  return new Promise((resolve, reject) => {
    ws.on('message', (m) => {
      const e = JSON.parse(m.toString());
      if (e.runId !== input.runId) return;
      events.push(e);
      if (e.type === 'RUN_FINISHED' || e.type === 'RUN_ERROR') resolve(events);
    });
    ws.once('close', () => reject(new Error('closed before the run ended')));
    ws.send(JSON.stringify(input));
  });
}

const proto = (tok) => `bearer.agate.${tok}`;
const proto64 = (tok) => `base64url.bearer.agate.${Buffer.from(tok).toString('base64url')}`;
const qs = (tok) => `?access_token=${encodeURIComponent(tok)}`;

/** A refused upgrade: status, JSON error body, and the Bearer challenge for 400/401/403. */
function assertRefused(r, status, code, what) {
  assert.equal(r.status, status, `${what}: ${r.status} ${r.text}`);
  assert.match(r.headers['content-type'], /^application\/json/, what);
  assert.equal(r.body.error, code, `${what}: ${r.text}`);
  assert.equal(typeof r.body.message, 'string', what);
  assert.match(r.headers['www-authenticate'], /^Bearer realm="agate"/, what);
  assert.equal(r.headers.upgrade, undefined, `${what}: no upgrade`);
}

describe('WebSocket upgrade credentials', () => {
  let agate;
  let collector;
  const spansSeen = [];
  before(async () => {
    collector = http.createServer((req, res) => {
      let data = '';
      req.on('data', (d) => { data += d; });
      req.on('end', () => { spansSeen.push(data); res.writeHead(200, { 'Content-Type': 'application/json' }); res.end('{}'); });
    });
    await new Promise((r) => collector.listen(0, '127.0.0.1', r));
    const jwksPath = writeTemp(JSON.stringify({ keys: [{ ...EC_JWK, kid: 'ec1', use: 'sig', alg: 'ES256' }] }), 'jwks.json');
    const pemPath = writeTemp(RSA_PEM, 'rsa.pem');
    agate = await startAgate({
      config: `${config({ jwksPath, pemPath })}trace: {otlp_endpoint: "http://127.0.0.1:${collector.address().port}/v1/traces", export_interval: 100ms}\n`,
    });
  });
  after(async () => {
    if (agate) await stopClean(agate);
    collector?.close();
  });

  test('no credentials: the upgrade itself is refused 401 (not a 101 whose runs all fail)', T, async () => {
    const r = await upgrade(agate.port);
    assertRefused(r, 401, 'unauthorized', 'no credentials');
    assert.equal(r.headers['www-authenticate'], 'Bearer realm="agate"');
    // an agent open to anonymous callers still upgrades without any
    const open = await upgrade(agate.port, { agent: 'open' });
    assert.ok(open.ws, 'anonymous agent upgrades');
    assert.equal((await wsRun(open.ws)).at(-1).type, 'RUN_FINISHED');
    open.ws.close();
    const m = (await request(agate.adminPort, { path: '/metrics' })).text;
    assert.match(m, /agate_http_requests_total\{listener="main",route="ws",method="GET",code="4xx"\} [1-9]/);
  });

  test('valid credentials without the agent\'s scope: 403 insufficient_scope naming the scope', T, async () => {
    for (const [what, opts] of [
      ['header', { headers: bearer(KEY_ECHO_ONLY) }],
      ['protocol entry', { protocols: ['ag-ui', proto(KEY_ECHO_ONLY)] }],
      ['access_token', { query: qs(KEY_ECHO_ONLY) }],
      ['JWT without a run scope', { query: qs(hs(claims({ scope: 'profile' }))) }],
    ]) {
      const r = await upgrade(agate.port, { agent: 'other', ...opts });
      assertRefused(r, 403, 'insufficient_scope', what);
      assert.equal(r.body.scope, 'agents:run:other', what);
      assert.match(r.headers['www-authenticate'], /error="insufficient_scope", scope="agents:run:other"/, what);
    }
    // the same key may run echo: the refusal is per agent
    const ok = await upgrade(agate.port, { agent: 'echo', protocols: ['ag-ui', proto(KEY_ECHO_ONLY)] });
    assert.ok(ok.ws);
    ok.ws.close();
  });

  test('every credential way upgrades and runs; only ag-ui is echoed, never the credential entry', T, async () => {
    const ways = [
      ['Authorization', { headers: bearer(KEY_RUN) }],
      ['X-API-Key', { headers: { 'X-API-Key': KEY_RUN } }],
      ['bearer.agate. entry, API key', { protocols: ['ag-ui', proto(KEY_RUN)] }],
      ['bearer.agate. entry first, JWT', { protocols: [proto(hs()), 'ag-ui'] }],
      ['base64url.bearer.agate. entry, odd key', { protocols: [proto64(KEY_ODD), 'ag-ui'] }],
      ['base64url.bearer.agate. entry, JWT', { protocols: ['ag-ui', proto64(es())] }],
      ['access_token, API key', { query: qs(KEY_RUN) }],
      ['access_token percent-encoded, odd key', { query: `?x=1&access_token=${encodeURIComponent(KEY_ODD)}&y` }],
      ['access_token, JWT', { query: qs(rs()) }],
    ];
    for (const [what, opts] of ways) {
      const r = await upgrade(agate.port, opts);
      assert.ok(r.ws, `${what}: ${r.status} ${r.text}`);
      assert.equal(r.ws.protocol, 'ag-ui', `${what}: the server selected ag-ui`);
      const events = await wsRun(r.ws);
      assert.equal(events.at(-1).type, 'RUN_FINISHED', `${what}: ${JSON.stringify(events.at(-1))}`);
      r.ws.close();
    }
    // The 101 on the wire: Sec-WebSocket-Protocol is exactly ag-ui, the token nowhere.
    const conn = await RawConn.connect(agate.port);
    await conn.write(buildRequest({
      path: '/v1/agents/echo/ws',
      headers: {
        Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Protocol': `${proto(KEY_RUN)}, ag-ui`,
      },
    }));
    assert.ok(await conn.waitFor((c) => c.data.indexOf('\r\n\r\n') >= 0, 5000), 'no response head');
    const head = conn.data.toString('latin1');
    conn.destroy();
    assert.match(head, /^HTTP\/1\.1 101 /, head.slice(0, 200));
    assert.match(head, /\r\nSec-WebSocket-Protocol: ag-ui\r\n/i);
    assert.ok(!head.includes(KEY_RUN) && !head.includes('bearer.agate'), 'the credential entry is not echoed');
  });

  test('bad credentials in a browser way are 401 invalid_token; malformed ones 401 invalid_request', T, async () => {
    for (const [what, opts, code] of [
      ['wrong key in an entry', { protocols: ['ag-ui', proto('not-a-key')] }, 'invalid_token'],
      ['wrong key in access_token', { query: qs('not-a-key') }, 'invalid_token'],
      ['expired JWT in access_token', { query: qs(hs(claims({ exp: now() - 60 }))) }, 'invalid_token'],
      ['tampered JWT in an entry', { protocols: ['ag-ui', proto(`${hs()}x`)] }, 'invalid_token'],
      ['an entry that is not base64url', { protocols: ['ag-ui', 'base64url.bearer.agate.a'] }, 'invalid_request'],
      ['an empty entry', { protocols: ['ag-ui', 'bearer.agate.'] }, 'invalid_request'],
      ['an empty access_token', { query: '?access_token=' }, 'invalid_request'],
      ['a broken escape in access_token', { query: '?access_token=ab%zz' }, 'invalid_request'],
      // bad credentials are refused even where anonymous callers may run
      ['wrong key, anonymous agent', { agent: 'open', query: qs('not-a-key') }, 'invalid_token'],
    ]) {
      const r = await upgrade(agate.port, opts);
      assertRefused(r, 401, code, what);
      assert.match(r.headers['www-authenticate'], new RegExp(`error="${code}"`), what);
    }
  });

  test('a credential sent two ways is 400 invalid_request; access_token on a POST run is 400', T, async () => {
    for (const [what, opts] of [
      ['Authorization and an entry', { headers: bearer(KEY_RUN), protocols: ['ag-ui', proto(KEY_RUN)] }],
      ['X-API-Key and access_token', { headers: { 'X-API-Key': KEY_RUN }, query: qs(KEY_RUN) }],
      ['an entry and access_token', { protocols: ['ag-ui', proto(KEY_RUN)], query: qs(KEY_RUN) }],
      ['two entries', { protocols: ['ag-ui', proto(KEY_RUN), proto64(KEY_RUN)] }],
      ['access_token twice', { query: `${qs(KEY_RUN)}&access_token=${KEY_RUN}` }],
    ]) {
      const r = await upgrade(agate.port, opts);
      assertRefused(r, 400, 'invalid_request', what);
      assert.match(r.headers['www-authenticate'], /error="invalid_request"/, what);
    }
    const post = await request(agate.port, {
      method: 'POST', path: `/v1/agents/echo/run${qs(KEY_RUN)}`, headers: { 'Content-Type': 'application/json' }, body: BODY(),
    });
    assertError(post, 400, 'invalid_request');
    assert.match(JSON.parse(post.text).message, /WebSocket upgrade only/);
  });

  test('no credential given in a URL or a protocol entry reaches the log, a span or an answer', T, async () => {
    const jwt = hs(claims({ sub: 'span-check' }));
    const wsLines = () => agate.stdoutLines().filter((l) => l.includes('"path":"/v1/agents/echo/ws"')).length;
    const wsSpans = () => spansSeen.join('\n').split('/v1/agents/{name}/ws').length - 1;
    const [lines0, spans0] = [wsLines(), wsSpans()];
    const ok = await upgrade(agate.port, { query: `?access_token=${jwt}` });
    assert.ok(ok.ws);
    assert.equal((await wsRun(ok.ws)).at(-1).type, 'RUN_FINISHED');
    ok.ws.close();
    const bad = `k-bad-${crypto.randomBytes(12).toString('hex')}`;
    const refused = await upgrade(agate.port, { query: qs(bad) });
    assertRefused(refused, 401, 'invalid_token', 'bad access_token');
    const refused2 = await upgrade(agate.port, { protocols: ['ag-ui', proto(bad)] });
    assertRefused(refused2, 401, 'invalid_token', 'bad entry');
    for (const r of [refused, refused2]) assert.ok(!JSON.stringify(r.headers).includes(bad) && !r.text.includes(bad), 'not in the answer');
    // the log lines (the upgrade's, written when the socket closes, and the run's) and the spans
    assert.ok(await waitFor(() => wsLines() >= lines0 + 3, 5000), 'the three upgrades were logged');
    assert.ok(await waitFor(() => wsSpans() >= spans0 + 3, 5000), 'the three upgrades\' spans were exported');
    const out = agate.stdout();
    const spans = spansSeen.join('\n');
    for (const s of [jwt, jwt.split('.')[2], bad, KEY_RUN, KEY_ECHO_ONLY, 'access_token']) {
      assert.ok(!out.includes(s), `a credential in the log: ${s.slice(0, 12)}`);
      assert.ok(!spans.includes(s), `a credential in a span: ${s.slice(0, 12)}`);
    }
  });
});
