/* access: identity, authorization, limits and CORS on HTTP requests, through
 * fake connections (tests/support/fakeconn.h) with a policy published from
 * each test's configuration. API keys (Bearer and the key header, a wrong
 * one, none, one sent twice, a remembered one and its wipe), HS256 JWTs (sub, scope, expiry),
 * scopes (403 naming the scope, admin for everything and for /metrics), rate
 * limits (RateLimit-* on every answer, 429 with Retry-After, nothing charged
 * by a refused request, per API key buckets, client addresses through trusted
 * proxies), concurrency slots held by a run and released however it ends
 * (run_release), a WebSocket run refused as a RUN_ERROR, a WebSocket upgrade
 * refused 401/403/400 and the browser's ways of sending a token on it (a
 * bearer.agate. protocol entry, base64url or not, and ?access_token=), CORS
 * preflights and response headers, security headers. The limiter table and the JWT verifier
 * have their own tests (test_ratelimit.c, test_jwt.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/digest.h"
#include "net/access.h"
#include "net/access_conf.h"
#include "tests/support/fakeconn.h"
#include "tests/unit/wire.h"

#define BODY  "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"hi there\"}]}"
#define PACED "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"a b c\"}]," \
              "\"forwardedProps\":{\"agate\":{\"tokenIntervalMs\":100}}}"
#define SECRET "an hmac secret of some length, for tests"

static fakeconn_t f, f2;
static gwmetrics_t gm;
static cfg_t *C;   /* the configuration the policy is built from: f.cfg */

static int setup(void **state)
{
    fake_init(&f);
    fake_init(&f2);
    memset(&gm, 0, sizeof gm);
    f.sh.mod[g_gwm_mod] = &gm;
    C = &f.cfg;
    /* a second agent, so scopes can tell agents apart */
    C->agents[1] = C->agents[0];
    snprintf(C->agents[1].name, sizeof C->agents[1].name, "other");
    C->agents[1].slot = 1;
    C->n_agents = 2;
    return 0;
}

static int teardown(void **state)
{
    fake_close(&f);
    fake_close(&f2);
    access_shutdown();
    return 0;
}

static void publish(void)
{
    char err[256];
    f2.cfg = *C;
    if (access_publish(C, err, sizeof err))
        fail_msg("access_publish: %s", err);
}

static void add_key(const char *name, const char *key, const char *scopes[])
{
    access_conf_t *a = access_conf_mut(C);
    access_api_key_t *k = &a->api_keys[a->n_api_keys++];
    snprintf(k->name, sizeof k->name, "%s", name);
    assert_int_equal(digest_sha256(key, strlen(key), k->sha256), 0);
    for (int i = 0; scopes && scopes[i]; i++)
        snprintf(k->scopes.s[k->scopes.n++], ACCESS_SCOPE_MAX, "%s", scopes[i]);
}

static access_rl_rule_t *add_rule(const char *name, access_rl_key_t key)
{
    access_conf_t *a = access_conf_mut(C);
    access_rl_rule_t *r = &a->rules[a->n_rules++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->key = key;
    r->per_agent = true;
    return r;
}

/* A request to fc; returns its one response (the caller frees body). */
static wire_resp_t ask_on(fakeconn_t *fc, const char *req)
{
    fc->wire.len = 0;
    fake_send(fc, req, strlen(req));
    if (getenv("T_DEBUG"))
        fprintf(stderr, "%s\n---\n%s\n", req, fc->wire.data);
    wire_resp_t r;
    size_t pos = 0;
    assert_true(wire_next(fc->wire.data, fc->wire.len, &pos, &r));
    return r;
}

static char reqbuf[8192];

/* POST a run to agent with extra header lines. */
static const char *run_req(const char *agent, const char *extra, const char *body)
{
    snprintf(reqbuf, sizeof reqbuf, "POST /v1/agents/%s/run HTTP/1.1\r\nHost: x\r\n%sContent-Length: %zu\r\n\r\n%s",
             agent, extra, strlen(body), body);
    return reqbuf;
}

static void send_req(fakeconn_t *fc, const char *req) { fake_send(fc, req, strlen(req)); }

static void expect_error(wire_resp_t *r, int status, const char *code)
{
    assert_int_equal(r->status, status);
    json_t *j = json_loads(r->body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "error")), code);
    json_decref(j);
}

/* ---- identity ---- */

static void test_api_keys(void **state)
{
    access_conf_mut(C)->anonymous = false;
    add_key("ci", "sekrit-ci-key", (const char *[]){"agents:run", NULL});
    publish();
    fake_open(&f);
    wire_resp_t r = ask_on(&f, run_req("echo", "Authorization: Bearer sekrit-ci-key\r\n", BODY));
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "RUN_FINISHED"));
    free(r.body);
    r = ask_on(&f, run_req("echo", "authorization: bearer   sekrit-ci-key  \r\n", BODY));   /* scheme any case, spaces */
    assert_int_equal(r.status, 200);
    free(r.body);
    r = ask_on(&f, run_req("echo", "X-API-Key: sekrit-ci-key\r\n", BODY));
    assert_int_equal(r.status, 200);
    free(r.body);

    r = ask_on(&f, run_req("echo", "Authorization: Bearer sekrit-ci-kez\r\n", BODY));
    expect_error(&r, 401, "invalid_token");
    assert_non_null(strstr(r.head, "\r\nWWW-Authenticate: Bearer realm=\"agate\", error=\"invalid_token\", "
                                   "error_description=\"invalid API key\"\r\n"));
    free(r.body);
    r = ask_on(&f, run_req("echo", "", BODY));
    expect_error(&r, 401, "unauthorized");
    assert_non_null(strstr(r.head, "\r\nWWW-Authenticate: Bearer realm=\"agate\"\r\n"));
    free(r.body);
    r = ask_on(&f, run_req("echo", "Authorization: Basic c2Vrcml0\r\n", BODY));
    expect_error(&r, 401, "invalid_request");
    free(r.body);
    r = ask_on(&f, run_req("echo", "Authorization: Bearer    \r\n", BODY));
    expect_error(&r, 401, "invalid_request");
    free(r.body);
    assert_int_equal(gm.rejected[MRJ_UNAUTHORIZED], 4);
    assert_int_equal(fake_conn(&f)->state, CONN_OPEN);   /* refusals keep the connection */
}

/* Credentials twice (two Authorization lines, two key-header lines) are a 400
 * invalid_request, whichever copy is good: not "the first one wins". One of
 * each kind is not a duplicate (Authorization is read first, as before). */
static void test_duplicate_credentials(void **state)
{
    access_conf_mut(C)->anonymous = false;
    C->metrics_on_main = true;
    add_key("ci", "sekrit-ci-key", (const char *[]){"agents:run", "admin", NULL});
    publish();
    fake_open(&f);
    const char *twice[] = {
        "Authorization: Bearer sekrit-ci-key\r\nAuthorization: Bearer someone-else\r\n",
        "Authorization: Bearer someone-else\r\nauthorization: Bearer sekrit-ci-key\r\n",
        "Authorization: Bearer sekrit-ci-key\r\nAuthorization: Bearer sekrit-ci-key\r\n",
        "X-API-Key: sekrit-ci-key\r\nx-api-key: other\r\n",
    };
    for (size_t i = 0; i < sizeof twice / sizeof twice[0]; i++) {
        wire_resp_t r = ask_on(&f, run_req("echo", twice[i], BODY));
        expect_error(&r, 400, "invalid_request");
        assert_non_null(strstr(r.body, "more than once"));
        assert_non_null(strstr(r.head, "\r\nWWW-Authenticate: Bearer realm=\"agate\", error=\"invalid_request\""));
        free(r.body);
    }
    wire_resp_t r = ask_on(&f, "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekrit-ci-key\r\n"
                               "Authorization: Bearer sekrit-ci-key\r\n\r\n");
    expect_error(&r, 400, "invalid_request");
    free(r.body);
    assert_int_equal(gm.rejected[MRJ_BAD_REQUEST], 5);
    assert_int_equal(gm.rejected[MRJ_UNAUTHORIZED], 0);
    r = ask_on(&f, run_req("echo", "Authorization: Bearer sekrit-ci-key\r\nX-API-Key: other\r\n", BODY));
    assert_int_equal(r.status, 200);
    free(r.body);
    assert_int_equal(fake_conn(&f)->state, CONN_OPEN);   /* a refusal like the others: the connection stays */
}

/* A connection remembers the key it presented (no SHA-256 per request), never
 * accepts other bytes for it, and wipes it when it closes. */
static void test_key_memo(void **state)
{
    access_conf_mut(C)->anonymous = false;
    add_key("ci", "sekrit-ci-key", (const char *[]){"agents:run", NULL});
    publish();
    fake_open(&f);
    conn_t *c = fake_conn(&f);
    wire_resp_t r = ask_on(&f, run_req("echo", "Authorization: Bearer sekrit-ci-key\r\n", BODY));
    assert_int_equal(r.status, 200);
    free(r.body);
    assert_int_equal(c->key_memo.len, strlen("sekrit-ci-key"));
    r = ask_on(&f, run_req("echo", "Authorization: Bearer sekrit-ci-kex\r\n", BODY));
    expect_error(&r, 401, "invalid_token");
    free(r.body);
    r = ask_on(&f, run_req("echo", "Authorization: Bearer sekrit-ci-key\r\n", BODY));
    assert_int_equal(r.status, 200);
    free(r.body);
    conn_abort(c);
    conn_reap(c);
    assert_int_equal(c->key_memo.len, 0);
    static const char zero[sizeof c->key_memo.key];
    assert_memory_equal(c->key_memo.key, zero, sizeof zero);
}

/* base64url without padding */
static size_t b64url(char *out, const void *in, size_t n)
{
    size_t k = (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (k && out[k - 1] == '=')
        k--;
    for (size_t i = 0; i < k; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    out[k] = 0;
    return k;
}

static void hs256(char *tok, size_t cap, const char *claims)
{
    const char *hdr = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    size_t n = b64url(tok, hdr, strlen(hdr));
    tok[n++] = '.';
    n += b64url(tok + n, claims, strlen(claims));
    unsigned char mac[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)tok, n, mac, &ml);
    tok[n++] = '.';
    n += b64url(tok + n, mac, ml);
    assert_true(n < cap);
}

static void test_jwt(void **state)
{
    access_conf_t *a = access_conf_mut(C);
    a->anonymous = false;
    access_jwt_key_t *k = &a->jwt_keys[a->n_jwt_keys++];
    memcpy(k->secret, SECRET, strlen(SECRET));
    k->secret_len = (uint32_t)strlen(SECRET);
    publish();
    fake_open(&f);
    char tok[1024], claims[256], hdr[1200];
    long now = (long)time(NULL);
    snprintf(claims, sizeof claims, "{\"sub\":\"alice\",\"scope\":\"read agents:run:echo\",\"exp\":%ld}", now + 3600);
    hs256(tok, sizeof tok, claims);
    snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", tok);
    wire_resp_t r = ask_on(&f, run_req("echo", hdr, BODY));
    assert_int_equal(r.status, 200);
    free(r.body);
    r = ask_on(&f, run_req("other", hdr, BODY));
    expect_error(&r, 403, "insufficient_scope");
    free(r.body);
    snprintf(claims, sizeof claims, "{\"sub\":\"alice\",\"scope\":\"agents:run\",\"exp\":%ld}", now - 3600);
    hs256(tok, sizeof tok, claims);
    snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", tok);
    r = ask_on(&f, run_req("echo", hdr, BODY));
    expect_error(&r, 401, "invalid_token");
    assert_non_null(strstr(r.head, "error=\"invalid_token\""));
    free(r.body);
    snprintf(claims, sizeof claims, "{\"sub\":\"alice\",\"scope\":\"agents:run\",\"exp\":%ld}", now + 3600);
    hs256(tok, sizeof tok, claims);
    char *sig = tok + strlen(tok) - 20;                      /* inside the signature: all six bits count */
    *sig = *sig == 'A' ? 'Q' : 'A';
    snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", tok);
    r = ask_on(&f, run_req("echo", hdr, BODY));
    expect_error(&r, 401, "invalid_token");
    free(r.body);
}

/* ---- scopes ---- */

static void test_scopes(void **state)
{
    access_conf_mut(C)->anonymous = false;
    add_key("echo-only", "k-echo", (const char *[]){"agents:run:echo", NULL});
    add_key("nothing", "k-none", NULL);
    add_key("ops", "k-admin", (const char *[]){"admin", NULL});
    publish();
    fake_open(&f);
    wire_resp_t r = ask_on(&f, run_req("echo", "Authorization: Bearer k-echo\r\n", BODY));
    assert_int_equal(r.status, 200);
    free(r.body);
    r = ask_on(&f, run_req("other", "Authorization: Bearer k-echo\r\n", BODY));
    expect_error(&r, 403, "insufficient_scope");
    assert_non_null(strstr(r.head, "\r\nWWW-Authenticate: Bearer realm=\"agate\", error=\"insufficient_scope\", "
                                   "scope=\"agents:run:other\"\r\n"));
    json_t *j = json_loads(r.body, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "scope")), "agents:run:other");
    json_decref(j);
    free(r.body);
    r = ask_on(&f, run_req("echo", "Authorization: Bearer k-none\r\n", BODY));
    expect_error(&r, 403, "insufficient_scope");
    free(r.body);
    r = ask_on(&f, run_req("other", "Authorization: Bearer k-admin\r\n", BODY));   /* admin runs anything */
    assert_int_equal(r.status, 200);
    free(r.body);
    assert_int_equal(gm.rejected[MRJ_FORBIDDEN], 2);
}

/* Per-agent overrides: an anonymous agent in an authenticated gateway, and an
 * agent that names its own scope. */
static void test_agent_rules(void **state)
{
    access_conf_t *a = access_conf_mut(C);
    a->anonymous = false;
    add_key("a", "k-a", (const char *[]){"agents:run", NULL});
    add_key("t", "k-t", (const char *[]){"team:blue", NULL});
    snprintf(a->agents[0].agent, sizeof a->agents[0].agent, "echo");
    a->agents[0].anonymous = 1;
    snprintf(a->agents[1].agent, sizeof a->agents[1].agent, "other");
    a->agents[1].anonymous = -1;
    snprintf(a->agents[1].scopes.s[0], ACCESS_SCOPE_MAX, "team:blue");
    a->agents[1].scopes.n = 1;
    a->n_agents = 2;
    publish();
    fake_open(&f);
    wire_resp_t r = ask_on(&f, run_req("echo", "", BODY));
    assert_int_equal(r.status, 200);
    free(r.body);
    r = ask_on(&f, run_req("other", "Authorization: Bearer k-a\r\n", BODY));   /* agents:run is not its scope */
    expect_error(&r, 403, "insufficient_scope");
    assert_non_null(strstr(r.body, "\"scope\":\"team:blue\""));
    free(r.body);
    r = ask_on(&f, run_req("other", "Authorization: Bearer k-t\r\n", BODY));
    assert_int_equal(r.status, 200);
    free(r.body);
}

/* /metrics on the main listener with auth on needs scope admin. */
static void test_metrics_needs_admin(void **state)
{
    access_conf_mut(C)->anonymous = false;
    C->metrics_on_main = true;
    add_key("a", "k-a", (const char *[]){"agents:run", NULL});
    add_key("ops", "k-admin", (const char *[]){"admin", NULL});
    publish();
    fake_open(&f);
    wire_resp_t r = ask_on(&f, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_error(&r, 401, "unauthorized");
    free(r.body);
    r = ask_on(&f, "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k-a\r\n\r\n");
    expect_error(&r, 403, "insufficient_scope");
    assert_non_null(strstr(r.body, "\"scope\":\"admin\""));
    free(r.body);
    r = ask_on(&f, "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k-admin\r\n\r\n");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "agate_build_info"));
    free(r.body);
}

/* ---- limits ---- */

static unsigned header_u(const char *head, const char *name)
{
    const char *p = strstr(head, name);
    assert_non_null(p);
    return (unsigned)strtoul(p + strlen(name), NULL, 10);
}

static void test_rate_limit(void **state)
{
    access_rl_rule_t *rule = add_rule("everyone", ACCESS_RLK_GLOBAL);
    rule->rate[1] = 2;   /* per minute */
    publish();
    fake_open(&f);
    for (unsigned i = 0; i < 2; i++) {
        wire_resp_t r = ask_on(&f, run_req("echo", "", BODY));
        assert_int_equal(r.status, 200);
        assert_int_equal(header_u(r.head, "\r\nRateLimit-Limit: "), 2);
        assert_int_equal(header_u(r.head, "\r\nRateLimit-Remaining: "), 1 - i);
        assert_int_equal(header_u(r.head, "\r\nX-RateLimit-Remaining: "), 1 - i);
        assert_true(header_u(r.head, "\r\nRateLimit-Reset: ") <= 60);
        free(r.body);
    }
    wire_resp_t r = ask_on(&f, run_req("echo", "", BODY));
    expect_error(&r, 429, "rate_limit_exceeded");
    unsigned retry = header_u(r.head, "\r\nRetry-After: ");
    assert_true(retry >= 1 && retry <= 30);
    assert_int_equal(header_u(r.head, "\r\nRateLimit-Remaining: "), 0);
    json_t *j = json_loads(r.body, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "retry_after")), retry);
    assert_int_equal(json_integer_value(json_object_get(j, "limit")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "remaining")), 0);
    json_decref(j);
    free(r.body);
    assert_int_equal(gm.rejected[MRJ_RATE_LIMITED], 1);
    /* per agent (the default): the other agent has its own bucket */
    r = ask_on(&f, run_req("other", "", BODY));
    assert_int_equal(r.status, 200);
    free(r.body);
    /* a response after an unlimited route carries no quota */
    r = ask_on(&f, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_null(strstr(r.head, "RateLimit"));
    free(r.body);
}

/* A request refused by one rule is not charged by the others. */
static void test_refusal_charges_nothing(void **state)
{
    access_rl_rule_t *wide = add_rule("wide", ACCESS_RLK_GLOBAL);
    wide->rate[1] = 3;
    wide->per_agent = false;
    access_rl_rule_t *narrow = add_rule("narrow", ACCESS_RLK_GLOBAL);
    narrow->rate[1] = 1;
    snprintf(narrow->agents[0], sizeof narrow->agents[0], "echo");
    narrow->n_agents = 1;
    publish();
    fake_open(&f);
    wire_resp_t r = ask_on(&f, run_req("echo", "", BODY));
    assert_int_equal(r.status, 200);                 /* wide 2 left, narrow 0 */
    free(r.body);
    for (int i = 0; i < 3; i++) {
        r = ask_on(&f, run_req("echo", "", BODY));   /* refused by narrow: wide keeps its 2 */
        assert_int_equal(r.status, 429);
        free(r.body);
    }
    r = ask_on(&f, run_req("other", "", BODY));
    assert_int_equal(r.status, 200);
    assert_int_equal(header_u(r.head, "\r\nRateLimit-Remaining: "), 1);
    free(r.body);
    r = ask_on(&f, run_req("other", "", BODY));
    assert_int_equal(r.status, 200);
    free(r.body);
    r = ask_on(&f, run_req("other", "", BODY));
    assert_int_equal(r.status, 429);
    free(r.body);
}

/* Keyed by API key: each key its own bucket; a request without one skips the rule. */
static void test_rate_limit_per_key(void **state)
{
    add_key("a", "k-a", (const char *[]){"agents:run", NULL});
    add_key("b", "k-b", (const char *[]){"agents:run", NULL});
    access_rl_rule_t *rule = add_rule("per-key", ACCESS_RLK_API_KEY);
    rule->rate[1] = 1;
    publish();
    fake_open(&f);
    const char *a = "Authorization: Bearer k-a\r\n", *b = "Authorization: Bearer k-b\r\n";
    wire_resp_t r = ask_on(&f, run_req("echo", a, BODY));
    assert_int_equal(r.status, 200);
    free(r.body);
    r = ask_on(&f, run_req("echo", a, BODY));
    assert_int_equal(r.status, 429);
    free(r.body);
    r = ask_on(&f, run_req("echo", b, BODY));
    assert_int_equal(r.status, 200);
    free(r.body);
    for (int i = 0; i < 3; i++) {
        r = ask_on(&f, run_req("echo", "", BODY));   /* anonymous: no key, no limit */
        assert_int_equal(r.status, 200);
        assert_null(strstr(r.head, "RateLimit"));
        free(r.body);
    }
}

/* A loopback TCP connection's server end, so the fake connection has a peer
 * address (127.0.0.1) to key on; fake_close closes it with the slot. */
static int loopback_fd(int *client)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    *client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(*client, (struct sockaddr *)&a, sizeof a), 0);
    int fd = accept(l, NULL, NULL);
    assert_true(fd >= 0);
    close(l);
    return fd;
}

/* By client address: X-Forwarded-For counts only from a trusted proxy, and
 * then its right-most address that is not itself a trusted proxy. */
static void test_client_ip_and_trusted_proxies(void **state)
{
    access_conf_t *a = access_conf_mut(C);
    access_rl_rule_t *rule = add_rule("per-ip", ACCESS_RLK_CLIENT_IP);
    rule->rate[1] = 1;
    access_cidr_t *t = &a->trusted[a->n_trusted++];
    t->addr[10] = t->addr[11] = 0xff;                 /* 127.0.0.0/8 as ::ffff:127.0.0.0/104 */
    t->addr[12] = 127;
    t->bits = 104;
    publish();
    fake_open(&f);
    int client;
    fake_conn(&f)->fd = loopback_fd(&client);
    const char *x1 = "X-Forwarded-For: 198.51.100.7, 127.0.0.5\r\n";   /* 127.0.0.5: another of our proxies */
    wire_resp_t r = ask_on(&f, run_req("echo", x1, BODY));
    assert_int_equal(r.status, 200);
    free(r.body);
    r = ask_on(&f, run_req("echo", "X-Forwarded-For: 198.51.100.7\r\n", BODY));
    assert_int_equal(r.status, 429);                  /* the same client */
    free(r.body);
    r = ask_on(&f, run_req("echo", "X-Forwarded-For: 203.0.113.9\r\n", BODY));
    assert_int_equal(r.status, 200);                  /* another client */
    free(r.body);
    r = ask_on(&f, run_req("echo", "", BODY));
    assert_int_equal(r.status, 200);                  /* the proxy itself */
    free(r.body);
    close(client);
    fake_close(&f);
    access_shutdown();

    /* No trusted proxies: the header is the client's to write, and is ignored. */
    fake_init(&f);
    C = &f.cfg;
    rule = add_rule("per-ip", ACCESS_RLK_CLIENT_IP);
    rule->rate[1] = 1;
    publish();
    fake_open(&f);
    fake_conn(&f)->fd = loopback_fd(&client);
    r = ask_on(&f, run_req("echo", "X-Forwarded-For: 198.51.100.1\r\n", BODY));
    assert_int_equal(r.status, 200);
    free(r.body);
    r = ask_on(&f, run_req("echo", "X-Forwarded-For: 198.51.100.2\r\n", BODY));
    assert_int_equal(r.status, 429);
    free(r.body);
    close(client);
}

/* A run holds its concurrency slot until it ends, however it ends. */
static void test_concurrency_released(void **state)
{
    access_rl_rule_t *rule = add_rule("one-at-a-time", ACCESS_RLK_GLOBAL);
    rule->concurrent = 1;
    publish();
    fake_open(&f);
    fake_open(&f2);
    send_req(&f, run_req("echo", "", PACED));
    assert_non_null(fake_conn(&f)->run);
    wire_resp_t r = ask_on(&f2, run_req("echo", "", BODY));
    expect_error(&r, 429, "rate_limit_exceeded");
    assert_int_equal(header_u(r.head, "\r\nRetry-After: "), 1);
    assert_int_equal(header_u(r.head, "\r\nRateLimit-Limit: "), 1);
    free(r.body);
    fake_settle(&f);                                   /* the first run finishes */
    assert_null(fake_conn(&f)->run);
    r = ask_on(&f2, run_req("echo", "", BODY));
    assert_int_equal(r.status, 200);                   /* its slot is free again */
    free(r.body);

    /* A run cut short by its client gives the slot back too. */
    send_req(&f2, run_req("echo", "", PACED));
    assert_non_null(fake_conn(&f2)->run);
    r = ask_on(&f, run_req("echo", "", BODY));
    assert_int_equal(r.status, 429);
    free(r.body);
    conn_abort(fake_conn(&f2));
    r = ask_on(&f, run_req("echo", "", BODY));
    assert_int_equal(r.status, 200);
    free(r.body);
}

/* A request refused before its run starts (invalid input) takes no slot. */
static void test_refused_run_takes_no_slot(void **state)
{
    access_rl_rule_t *rule = add_rule("one-at-a-time", ACCESS_RLK_GLOBAL);
    rule->concurrent = 1;
    publish();
    fake_open(&f);
    for (int i = 0; i < 3; i++) {
        wire_resp_t r = ask_on(&f, run_req("echo", "", "{\"threadId\":1}"));
        expect_error(&r, 400, "invalid_request");
        free(r.body);
    }
    wire_resp_t r = ask_on(&f, run_req("echo", "", BODY));
    assert_int_equal(r.status, 200);
    free(r.body);
}

/* On WebSocket, each run is admitted against the upgrade's identity; a
 * refusal is the run's RUN_ERROR, not the connection's end. */
static void test_websocket_admission(void **state)
{
    access_rl_rule_t *rule = add_rule("one-at-a-time", ACCESS_RLK_GLOBAL);
    rule->concurrent = 1;
    publish();
    fake_open(&f);
    const char *up = "GET /v1/agents/echo/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    fake_send(&f, up, strlen(up));
    assert_non_null(fake_conn(&f)->ws);
    uint8_t fr[512];
    const char *runs[2] = {"{\"threadId\":\"t\",\"runId\":\"w1\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"a b\"}],"
                           "\"forwardedProps\":{\"agate\":{\"tokenIntervalMs\":100}}}",
                           "{\"threadId\":\"t\",\"runId\":\"w2\",\"messages\":[]}"};
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(runs[i]), at = 0;
        fr[at++] = 0x81;
        if (n < 126) {
            fr[at++] = (uint8_t)(0x80 | n);
        } else {
            fr[at++] = (uint8_t)(0x80 | 126);
            fr[at++] = (uint8_t)(n >> 8);
            fr[at++] = (uint8_t)n;
        }
        memset(fr + at, 0, 4);                        /* a zero mask: payload as is */
        at += 4;
        memcpy(fr + at, runs[i], n);
        fake_send(&f, (const char *)fr, at + n);
    }
    assert_non_null(strstr(f.wire.data, "{\"type\":\"RUN_ERROR\",\"runId\":\"w2\""));
    assert_non_null(strstr(f.wire.data, "\"code\":\"rate_limited\""));
    assert_int_equal(fake_conn(&f)->state, CONN_OPEN);
    assert_int_equal(gm.runs_started[0][MT_WS], 1);
}

/* One upgrade to agent on a fresh connection (a refused upgrade closes it),
 * built from `base`; returns its answer, whose head the caller checks. */
static cfg_t base_cfg;
static wire_resp_t upgrade_on(const char *target, const char *extra)
{
    fake_close(&f);
    fake_init(&f);
    f.cfg = base_cfg;
    f.sh.mod[g_gwm_mod] = &gm;
    fake_open(&f);
    snprintf(reqbuf, sizeof reqbuf,
             "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s\r\n", target, extra);
    return ask_on(&f, reqbuf);
}

static void expect_upgraded(wire_resp_t *r, const char *what)
{
    if (r->status != 101)
        fail_msg("%s: %d %s", what, r->status, r->body ? r->body : "");
    assert_non_null(fake_conn(&f)->ws);
    free(r->body);
}

/* The upgrade names one agent: a caller who may not run it is refused before
 * the 101, in the HTTP path's words. The token may come in a header, a
 * Sec-WebSocket-Protocol entry (plain or base64url; never echoed) or
 * access_token (percent-decoded, '+' kept); one way only. */
static void test_websocket_upgrade(void **state)
{
    access_conf_mut(C)->anonymous = false;
    add_key("ci", "k/odd=+", (const char *[]){"agents:run:echo", NULL});
    publish();
    base_cfg = *C;
    fake_open(&f);

    wire_resp_t r = upgrade_on("/v1/agents/echo/ws", "");
    expect_error(&r, 401, "unauthorized");
    assert_non_null(strstr(r.head, "\r\nWWW-Authenticate: Bearer realm=\"agate\"\r\n"));
    assert_null(fake_conn(&f)->ws);
    free(r.body);
    r = upgrade_on("/v1/agents/other/ws", "X-API-Key: k/odd=+\r\n");   /* a key without other's scope */
    expect_error(&r, 403, "insufficient_scope");
    assert_null(fake_conn(&f)->ws);
    free(r.body);
    assert_int_equal(gm.rejected[MRJ_UNAUTHORIZED], 1);
    assert_int_equal(gm.rejected[MRJ_FORBIDDEN], 1);

    r = upgrade_on("/v1/agents/echo/ws", "Authorization: Bearer k/odd=+\r\n");
    expect_upgraded(&r, "Authorization");
    /* base64url("k/odd=+") = "ay9vZGQ9Kw"; the entry among others, in a second header line */
    r = upgrade_on("/v1/agents/echo/ws", "Sec-WebSocket-Protocol: x\r\nSec-WebSocket-Protocol: ag-ui ,\t"
                                         "base64url.bearer.agate.ay9vZGQ9Kw\r\n");
    assert_non_null(strstr(r.head, "\r\nSec-WebSocket-Protocol: ag-ui\r\n"));
    assert_null(strstr(r.head, "bearer"));
    expect_upgraded(&r, "base64url entry");
    r = upgrade_on("/v1/agents/echo/ws?access_token=k%2fodd%3D+", "");
    assert_null(strstr(r.head, "Sec-WebSocket-Protocol"));   /* none offered, none selected */
    expect_upgraded(&r, "access_token");
    r = upgrade_on("/v1/agents/echo/ws?a=b&access_token=k%2Fodd%3d%2B&c", "");
    expect_upgraded(&r, "access_token among others");

    static const struct { const char *target, *extra; int status; const char *code; } bad[] = {
        {"/v1/agents/echo/ws", "Sec-WebSocket-Protocol: ag-ui, bearer.agate.k/odd=\r\n", 401, "invalid_token"},
        {"/v1/agents/echo/ws?access_token=k/odd=", "", 401, "invalid_token"},   /* '+' is not a space */
        {"/v1/agents/echo/ws?access_token=k%2Godd", "", 401, "invalid_request"},
        {"/v1/agents/echo/ws?access_token=k%2", "", 401, "invalid_request"},
        {"/v1/agents/echo/ws?access_token", "", 401, "invalid_request"},
        {"/v1/agents/echo/ws", "Sec-WebSocket-Protocol: base64url.bearer.agate.ay9vZGQ9K\r\n", 401, "invalid_request"},
        {"/v1/agents/echo/ws", "Sec-WebSocket-Protocol: bearer.agate.\r\n", 401, "invalid_request"},
        {"/v1/agents/echo/ws?access_token=k", "Authorization: Bearer k\r\n", 400, "invalid_request"},
        {"/v1/agents/echo/ws?access_token=k", "Sec-WebSocket-Protocol: bearer.agate.k\r\n", 400, "invalid_request"},
        {"/v1/agents/echo/ws", "Sec-WebSocket-Protocol: bearer.agate.k, bearer.agate.k\r\n", 400, "invalid_request"},
        {"/v1/agents/echo/ws", "X-API-Key: k\r\nSec-WebSocket-Protocol: bearer.agate.k\r\n", 400, "invalid_request"},
        {"/v1/agents/echo/ws?access_token=a&access_token=a", "", 400, "invalid_request"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = upgrade_on(bad[i].target, bad[i].extra);
        if (r.status != bad[i].status)
            fail_msg("case %zu: %d %s", i, r.status, r.body);
        expect_error(&r, bad[i].status, bad[i].code);
        char want[96];
        snprintf(want, sizeof want, "\r\nWWW-Authenticate: Bearer realm=\"agate\", error=\"%s\"", bad[i].code);
        assert_non_null(strstr(r.head, want));
        assert_non_null(strstr(r.head, "\r\nConnection: close\r\n"));
        assert_null(fake_conn(&f)->ws);
        free(r.body);
    }
    assert_int_equal(gm.rejected[MRJ_BAD_REQUEST], 5);

    /* Outside an upgrade, access_token is refused: a request that can send a header must. */
    fake_close(&f);
    fake_init(&f);
    f.cfg = base_cfg;
    fake_open(&f);
    r = ask_on(&f, "POST /v1/agents/echo/run?access_token=k%2Fodd%3D%2B HTTP/1.1\r\nHost: x\r\nContent-Length: "
                   "2\r\n\r\n{}");
    expect_error(&r, 400, "invalid_request");
    free(r.body);
    /* and a protocol entry on a POST is not a credential at all */
    r = ask_on(&f, run_req("echo", "Sec-WebSocket-Protocol: bearer.agate.k/odd=+\r\n", BODY));
    expect_error(&r, 401, "unauthorized");
    free(r.body);
}

/* ---- CORS and security headers ---- */

static void test_cors(void **state)
{
    access_conf_t *a = access_conf_mut(C);
    snprintf(a->origins[a->n_origins++], ACCESS_ORIGIN_MAX, "https://app.example");
    snprintf(a->cors_expose, sizeof a->cors_expose, "X-Request-ID");
    a->cors_max_age_ms = 120000;
    publish();
    fake_open(&f);
    wire_resp_t r = ask_on(&f, "OPTIONS /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
                               "Access-Control-Request-Method: POST\r\n\r\n");
    assert_int_equal(r.status, 204);
    assert_non_null(strstr(r.head, "\r\nAllow: POST, OPTIONS\r\n"));
    assert_non_null(strstr(r.head, "\r\nAccess-Control-Allow-Origin: https://app.example\r\n"));
    assert_non_null(strstr(r.head, "\r\nAccess-Control-Allow-Methods: GET, POST, OPTIONS\r\n"));
    assert_non_null(strstr(r.head, "\r\nAccess-Control-Allow-Headers: "));
    assert_non_null(strstr(r.head, "\r\nAccess-Control-Max-Age: 120\r\n"));
    assert_non_null(strstr(r.head, "\r\nVary: Origin\r\n"));
    free(r.body);
    r = ask_on(&f, "OPTIONS /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n"
                   "Access-Control-Request-Method: POST\r\n\r\n");
    expect_error(&r, 403, "origin_not_allowed");
    assert_null(strstr(r.head, "Access-Control-Allow-Origin"));
    free(r.body);
    r = ask_on(&f, "OPTIONS /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n\r\n");
    assert_int_equal(r.status, 204);                   /* not a preflight: the plain OPTIONS answer */
    assert_null(strstr(r.head, "Access-Control-Allow-Methods"));
    free(r.body);
    /* an actual request from the allowed origin: allowed, and what it may read */
    r = ask_on(&f, run_req("echo", "Origin: https://app.example\r\n", BODY));
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "\r\nAccess-Control-Allow-Origin: https://app.example\r\n"));
    assert_non_null(strstr(r.head, "\r\nAccess-Control-Expose-Headers: X-Request-ID\r\n"));
    assert_null(strstr(r.head, "Allow-Credentials"));
    free(r.body);
    r = ask_on(&f, run_req("echo", "Origin: https://evil.example\r\n", BODY));
    assert_int_equal(r.status, 200);                   /* CORS is the browser's to enforce on simple responses */
    assert_null(strstr(r.head, "Access-Control-Allow-Origin"));
    assert_non_null(strstr(r.head, "\r\nVary: Origin\r\n"));
    free(r.body);
}

static void test_cors_any_origin(void **state)
{
    access_conf_t *a = access_conf_mut(C);
    snprintf(a->origins[a->n_origins++], ACCESS_ORIGIN_MAX, "*");
    publish();
    fake_open(&f);
    wire_resp_t r = ask_on(&f, "GET /healthz HTTP/1.1\r\nHost: x\r\nOrigin: https://any.example\r\n\r\n");
    assert_non_null(strstr(r.head, "\r\nAccess-Control-Allow-Origin: *\r\n"));
    free(r.body);
    fake_close(&f);
    access_shutdown();
    /* with credentials, "*" is not allowed by browsers: the origin is echoed */
    fake_init(&f);
    C = &f.cfg;
    a = access_conf_mut(C);
    snprintf(a->origins[a->n_origins++], ACCESS_ORIGIN_MAX, "*");
    a->cors_credentials = true;
    publish();
    fake_open(&f);
    r = ask_on(&f, "GET /healthz HTTP/1.1\r\nHost: x\r\nOrigin: https://any.example\r\n\r\n");
    assert_non_null(strstr(r.head, "\r\nAccess-Control-Allow-Origin: https://any.example\r\n"));
    assert_non_null(strstr(r.head, "\r\nAccess-Control-Allow-Credentials: true\r\n"));
    free(r.body);
}

static void test_security_headers(void **state)
{
    publish();   /* defaults: security_headers on, nothing else */
    fake_open(&f);
    wire_resp_t r = ask_on(&f, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_non_null(strstr(r.head, "\r\nX-Content-Type-Options: nosniff\r\n"));
    assert_non_null(strstr(r.head, "\r\nReferrer-Policy: no-referrer\r\n"));
    assert_non_null(strstr(r.head, "\r\nX-Frame-Options: DENY\r\n"));
    assert_non_null(strstr(r.head, "\r\nContent-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"));
    assert_non_null(strstr(r.head, "\r\nCache-Control: no-store\r\n"));
    assert_null(strstr(r.head, "Vary: Origin"));       /* CORS off */
    free(r.body);
    r = ask_on(&f, run_req("echo", "", BODY));
    assert_non_null(strstr(r.head, "\r\nX-Content-Type-Options: nosniff\r\n"));
    assert_non_null(strstr(r.head, "\r\nCache-Control: no-cache\r\n"));   /* the stream's own */
    assert_null(strstr(r.head, "no-store"));
    free(r.body);
    fake_close(&f);
    access_shutdown();

    fake_init(&f);
    C = &f.cfg;
    access_conf_mut(C)->security_headers = false;
    publish();
    fake_open(&f);
    r = ask_on(&f, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_null(strstr(r.head, "X-Content-Type-Options"));
    assert_null(strstr(r.head, "Content-Security-Policy"));
    free(r.body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_api_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_credentials, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_memo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jwt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scopes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_needs_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_charges_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit_per_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_ip_and_trusted_proxies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrency_released, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_run_takes_no_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_websocket_admission, setup, teardown),
        cmocka_unit_test_setup_teardown(test_websocket_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cors_any_origin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_security_headers, setup, teardown),
    };
    return cmocka_run_group_tests_name("access", tests, NULL, NULL);
}
