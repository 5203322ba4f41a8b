/* http1 + conn + router, driven through a fake connection: keep-alive,
 * pipelining order, every limit and error path, the RFC 9110/9112 head rules
 * (versions, Host, Transfer- and Content-Encoding, request-target forms),
 * timeouts, Expect, HEAD, OPTIONS, HTTP/1.0, request ids, the connection cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "tests/support/fakeconn.h"
#include "tests/unit/wire.h"

#define RUN_BODY "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"hi there\"}]}"
#define RUN_REQ(extra) "POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\n" extra "Content-Length: 87\r\n\r\n" RUN_BODY

static fakeconn_t f;

static int setup(void **state)
{
    fake_init(&f);
    return 0;
}

static int teardown(void **state)
{
    fake_close(&f);
    return 0;
}

static void send_str(const char *s) { fake_send(&f, s, strlen(s)); }

/* Collects the responses on the wire into rs; returns how many. */
static int responses(wire_resp_t *rs, int max)
{
    size_t pos = 0;
    int n = 0;
    while (n < max && wire_next(f.wire.data, f.wire.len, &pos, &rs[n]))
        n++;
    return n;
}

static void free_resps(wire_resp_t *rs, int n)
{
    for (int i = 0; i < n; i++)
        free(rs[i].body);
}

static void assert_error(const wire_resp_t *r, int status, const char *code)
{
    assert_int_equal(r->status, status);
    json_t *j = json_loads(r->body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "error")), code);
    assert_non_null(json_string_value(json_object_get(j, "message")));
    json_decref(j);
}

static void test_health_keepalive(void **state)
{
    fake_open(&f);
    send_str("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /health/ready HTTP/1.1\r\nhOsT: x\r\n\r\n");
    wire_resp_t r[3];
    assert_int_equal(responses(r, 3), 2);
    assert_int_equal(r[0].status, 200);
    assert_string_equal(r[0].body, "{\"status\":\"ok\"}\n");
    assert_string_equal(r[1].body, "{\"status\":\"ready\"}\n");
    assert_non_null(strcasestr(r[0].head, "\r\nDate: "));
    assert_non_null(strcasestr(r[0].head, "\r\nX-Request-ID: "));
    assert_int_equal(fake_conn(&f)->state, CONN_OPEN);
    assert_int_equal(fake_conn(&f)->timer_kind, CONN_T_TRIM);   /* idle: its buffers go first */
    free_resps(r, 2);
}

static void test_pipelined_order_behind_stream(void **state)
{
    fake_open(&f);
    /* A paced stream, then a health check and a 404 in the same write. */
    send_str("POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nContent-Length: 135\r\n\r\n"
             "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"a b c\"}],"
             "\"forwardedProps\":{\"agate\":{\"tokenIntervalMs\":100}}}"
             "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_null(strstr(f.wire.data, "{\"status\":\"ok\"}"));   /* waits behind the stream */
    assert_true(fake_conn(&f)->pending.len > 0);
    fake_settle(&f);
    wire_resp_t r[4];
    assert_int_equal(responses(r, 4), 3);
    assert_int_equal(r[0].status, 200);
    assert_non_null(strstr(r[0].body, "RUN_FINISHED"));
    assert_int_equal(r[1].status, 200);
    assert_string_equal(r[1].body, "{\"status\":\"ok\"}\n");
    assert_error(&r[2], 404, "not_found");
    free_resps(r, 3);
}

static void test_byte_at_a_time(void **state)
{
    fake_open(&f);
    const char *req = RUN_REQ("");
    for (size_t i = 0; req[i]; i++)
        fake_send(&f, req + i, 1);
    wire_resp_t r[2];
    assert_int_equal(responses(r, 2), 1);
    json_t *ev = wire_events(r[0].body, NULL);
    assert_int_equal(json_array_size(ev), 6);
    assert_string_equal(ev_type(ev, 0), "RUN_STARTED");
    assert_string_equal(ev_type(ev, 5), "RUN_FINISHED");
    json_decref(ev);
    free_resps(r, 1);
}

struct bad_case {
    const char *req;
    int status;
    const char *code;
    bool closes;
    const char *says;   /* in the message, when set */
};

/* Each request on a fresh connection: one error response, with the code (and
 * the words) given, and the connection closed or kept as the case says. */
static void expect_cases(const struct bad_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fake_init(&f);
        fake_open(&f);
        send_str(cases[i].req);
        if (getenv("T_DEBUG"))
            fprintf(stderr, "case %zu: %s\n", i, f.wire.data);
        wire_resp_t r[2];
        assert_int_equal(responses(r, 2), 1);
        assert_error(&r[0], cases[i].status, cases[i].code);
        if (cases[i].status == 405)
            assert_non_null(strstr(r[0].head, "\r\nAllow: "));
        if (cases[i].says)
            assert_non_null(strstr(r[0].body, cases[i].says));
        assert_int_equal(fake_conn(&f)->state, cases[i].closes ? CONN_LINGER : CONN_OPEN);
        if (cases[i].closes)
            assert_non_null(strstr(r[0].head, "\r\nConnection: close\r\n"));
        free_resps(r, 1);
        fake_close(&f);
    }
    fake_init(&f);
    fake_open(&f);
}

static void test_bad_input(void **state)
{
    static char big_header[20000];
    memset(big_header, 'a', sizeof big_header - 1);
    char *huge = malloc(sizeof big_header + 64);
    snprintf(huge, sizeof big_header + 64, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", big_header);
    char many[4096] = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 70; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "X-H%d: v\r\n", i);
    strcat(many, "\r\n");
    const struct bad_case cases[] = {
        {"GARBAGE\r\n\r\n", 400, "bad_request", true, NULL},
        {"GET /healthz HTTP/1.1\r\n\r\n", 400, "bad_request", true, "missing Host"},   /* no Host */
        {"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found", false, NULL},
        {"POST /v1/agents/nobody/run HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 404, "agent_not_found", false, NULL},
        {"DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed", false, NULL},
        {"GET /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed", false, NULL},
        {"POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", 413, "payload_too_large", true, NULL},
        {"POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n{}", 417, "expectation_failed", true, NULL},
        {"POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{bad}", 400, "invalid_request", false, NULL},
        {"POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]", 400, "invalid_request", false, NULL},
        {huge, 431, "request_header_fields_too_large", true, NULL},
        {many, 431, "request_header_fields_too_large", true, NULL},
    };
    expect_cases(cases, sizeof cases / sizeof cases[0]);
    free(huge);
}

#define RUN_LINE "POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\n"
#define CHUNKED_BODY "57\r\n" RUN_BODY "\r\n0\r\n\r\n"

/* RFC 9110/9112 rules llhttp leaves to us (net/http1_head.c): every one of
 * these was served, or refused with the wrong status, before. */
static void test_strict_head(void **state)
{
    const struct bad_case cases[] = {
        /* versions: 505, before the headers are read */
        {"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505, "http_version_not_supported", true, "HTTP/1.1"},
        {"GET /healthz HTTP/3.0\r\nHost: x\r\n\r\n", 505, "http_version_not_supported", true, NULL},
        {"GET /healthz HTTP/0.9\r\n\r\n", 505, "http_version_not_supported", true, NULL},
        {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "http_version_not_supported", true, NULL},   /* h2 preface */
        /* Host */
        {"GET /healthz HTTP/1.1\r\nHost: x\r\nhost: x\r\n\r\n", 400, "bad_request", true, "more than one Host"},
        {"GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad_request", true, "more than one Host"},
        /* Transfer-Encoding: chunked, exactly */
        {RUN_LINE "Transfer-Encoding: gzip, chunked\r\n\r\n" CHUNKED_BODY, 501, "not_implemented", true, "chunked"},
        {RUN_LINE "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" CHUNKED_BODY, 501, "not_implemented", true, NULL},
        {RUN_LINE "Transfer-Encoding: gzip\r\n\r\n" RUN_BODY, 501, "not_implemented", true, NULL},
        {RUN_LINE "Transfer-Encoding: \r\nContent-Length: 87\r\n\r\n" RUN_BODY, 400, "bad_request", true, "chunked, once"},
        {"POST /v1/agents/echo/run HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" CHUNKED_BODY, 400, "bad_request", true,
         "HTTP/1.0"},
        /* Content-Encoding on a body: agate decodes none */
        {RUN_LINE "Content-Encoding: gzip\r\nContent-Length: 87\r\n\r\n" RUN_BODY, 415, "unsupported_media_type", true,
         "Content-Encoding"},
        {RUN_LINE "Content-Encoding: identity, br\r\nContent-Length: 87\r\n\r\n" RUN_BODY, 415, "unsupported_media_type", true,
         NULL},
        {RUN_LINE "Content-Encoding: GZIP\r\nTransfer-Encoding: chunked\r\n\r\n" CHUNKED_BODY, 415, "unsupported_media_type",
         true, NULL},
        /* request-target forms */
        {"CONNECT gw.example:443 HTTP/1.1\r\nHost: gw.example:443\r\n\r\n", 501, "not_implemented", true, "CONNECT"},
        {"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request", true, "only for OPTIONS"},
        {"GET ftp://x/healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request", true, "http(s)"},
        {"GET http://u:p@x/healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request", true, "user information"},
        {"GET http:///healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request", true, "no host"},
        {"GET http://x/healthz HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n", 400, "bad_request", true, "more than one Host"},
    };
    expect_cases(cases, sizeof cases / sizeof cases[0]);

    fake_open(&f);   /* 415 says which codings are taken */
    send_str(RUN_LINE "Content-Encoding: gzip\r\nContent-Length: 87\r\n\r\n" RUN_BODY);
    assert_non_null(strstr(f.wire.data, "\r\nAccept-Encoding: identity\r\n"));
}

/* What stays accepted: chunked in any case with OWS, Content-Encoding identity
 * or on a request without a body, HTTP/1.x past 1.1 read as 1.1; and what
 * stays refused as before: Content-Length beside Transfer-Encoding (request
 * smuggling) and OPTIONS * (no such resource). */
static void test_strict_head_accepts(void **state)
{
    const char *ok[] = {
        RUN_LINE "Transfer-Encoding:  Chunked \r\n\r\n" CHUNKED_BODY,
        RUN_LINE "Transfer-Encoding: ,CHUNKED\r\n\r\n" CHUNKED_BODY,
        RUN_LINE "Content-Encoding: identity\r\nContent-Length: 87\r\n\r\n" RUN_BODY,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n\r\n",
        "POST /v1/agents/echo/run HTTP/1.2\r\nHost: x\r\nContent-Length: 87\r\n\r\n" RUN_BODY,
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        fake_init(&f);
        fake_open(&f);
        send_str(ok[i]);
        wire_resp_t r[2];
        assert_int_equal(responses(r, 2), 1);
        assert_int_equal(r[0].status, 200);
        assert_int_equal(fake_conn(&f)->state, CONN_OPEN);
        free_resps(r, 1);
        fake_close(&f);
    }
    fake_init(&f);
    fake_open(&f);   /* 1.2 as 1.1: a chunked stream on a kept connection */
    send_str("POST /v1/agents/echo/run HTTP/1.2\r\nHost: x\r\nContent-Length: 87\r\n\r\n" RUN_BODY);
    assert_non_null(strstr(f.wire.data, "\r\nTransfer-Encoding: chunked\r\n"));
    assert_non_null(strstr(f.wire.data, "RUN_FINISHED"));
    fake_close(&f);

    const struct bad_case cases[] = {
        {RUN_LINE "Transfer-Encoding: chunked\r\nContent-Length: 87\r\n\r\n" CHUNKED_BODY, 400, "bad_request", true,
         "Content-Length"},
        {RUN_LINE "Content-Length: 87\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" CHUNKED_BODY, 400, "bad_request", true,
         "Content-Length"},
        {"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found", false, NULL},
    };
    expect_cases(cases, sizeof cases / sizeof cases[0]);
}

/* absolute-form (RFC 9112 section 3.2.2) is routed by its path: any case of
 * http or https, a port, the query apart, "/" for no path. */
static void test_absolute_form(void **state)
{
    fake_open(&f);
    send_str("POST http://gw.example/v1/agents/echo/run HTTP/1.1\r\nHost: gw.example\r\nContent-Length: 87\r\n\r\n" RUN_BODY
             "GET HTTPS://gw.example:8443/healthz?probe=1 HTTP/1.1\r\nHost: gw.example:8443\r\n\r\n"
             "OPTIONS http://gw.example?x=1 HTTP/1.1\r\nHost: gw.example\r\n\r\n"
             "GET http://gw.example/nope HTTP/1.1\r\nHost: gw.example\r\n\r\n");
    wire_resp_t r[5];
    assert_int_equal(responses(r, 5), 4);
    assert_int_equal(r[0].status, 200);
    assert_non_null(strstr(r[0].body, "RUN_FINISHED"));
    assert_int_equal(r[1].status, 200);
    assert_string_equal(r[1].body, "{\"status\":\"ok\"}\n");
    assert_int_equal(r[2].status, 204);                          /* "/": the demo page's route */
    assert_non_null(strstr(r[2].head, "\r\nAllow: GET, HEAD, OPTIONS\r\n"));
    assert_error(&r[3], 404, "not_found");
    assert_int_equal(fake_conn(&f)->state, CONN_OPEN);
    free_resps(r, 4);
    fake_close(&f);

    fake_init(&f);   /* the query of an absolute-form target is read (admin: ?agent=) */
    f.admin = true;
    fake_open(&f);
    send_str("DELETE http://gw.example/admin/cache?agent=nobody HTTP/1.1\r\nHost: gw.example\r\n\r\n"
             "DELETE http://gw.example/admin/cache?agent=echo HTTP/1.1\r\nHost: gw.example\r\n\r\n");
    assert_int_equal(responses(r, 5), 2);
    assert_error(&r[0], 404, "agent_not_found");
    assert_int_equal(r[1].status, 200);
    assert_string_equal(r[1].body, "{\"purged\":0}\n");
    free_resps(r, 2);
}

static void test_chunked_body_limit(void **state)
{
    f.cfg.max_body_bytes = 16;
    fake_open(&f);
    send_str("POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "10\r\n0123456789abcdef\r\n1\r\nX\r\n0\r\n\r\n");
    wire_resp_t r[2];
    assert_int_equal(responses(r, 2), 1);
    assert_error(&r[0], 413, "payload_too_large");
    assert_int_equal(fake_conn(&f)->state, CONN_LINGER);
    free_resps(r, 1);
}

static void test_invalid_field_named(void **state)
{
    fake_open(&f);
    send_str("POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nContent-Length: 58\r\n\r\n"
             "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"role\":\"bogus\"}]}");
    wire_resp_t r[2];
    assert_int_equal(responses(r, 2), 1);
    assert_error(&r[0], 400, "invalid_request");
    json_t *j = json_loads(r[0].body, 0, NULL);
    assert_non_null(strstr(json_string_value(json_object_get(j, "field")), "messages[0]"));
    json_decref(j);
    free_resps(r, 1);
}

static void test_header_timeout(void **state)
{
    fake_open(&f);
    send_str("GET /healthz HTTP/1.1\r\nHo");
    fake_advance(&f, f.cfg.header_timeout_ms - 1);
    assert_int_equal(f.wire.len, 0);
    fake_advance(&f, 1);
    wire_resp_t r[2];
    assert_int_equal(responses(r, 2), 1);
    assert_error(&r[0], 408, "request_timeout");
    assert_int_equal(fake_conn(&f)->state, CONN_LINGER);
    free_resps(r, 1);
}

static void test_idle_timeout(void **state)
{
    fake_open(&f);
    send_str("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    fake_advance(&f, f.cfg.idle_timeout_ms - 1);
    assert_int_equal(fake_conn(&f)->state, CONN_OPEN);
    fake_advance(&f, 1);
    assert_int_equal(fake_conn(&f)->state, CONN_ABORT);
}

/* The header table grows with the request: HTTP_MAX_HEADERS fields (Host, 62
 * fillers, X-Request-ID last) are all kept and found; one more is a 431 (above). */
static void test_many_headers(void **state)
{
    fake_open(&f);
    char req[4096] = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < HTTP_MAX_HEADERS - 2; i++)
        snprintf(req + strlen(req), sizeof req - strlen(req), "X-H%d: v\r\n", i);
    snprintf(req + strlen(req), sizeof req - strlen(req), "X-Request-ID: the-last-one\r\n\r\n");
    send_str(req);
    wire_resp_t r[2];
    assert_int_equal(responses(r, 2), 1);
    assert_int_equal(r[0].status, 200);
    assert_non_null(strstr(r[0].head, "\r\nX-Request-ID: the-last-one\r\n"));
    assert_int_equal(fake_conn(&f)->http.req.cap_hdrs, HTTP_MAX_HEADERS);
    free_resps(r, 1);
}

/* An idle keep-alive connection gives its buffers back after CONN_TRIM_MS, stays
 * open, answers its next request, and still closes idle_timeout after it. */
static void test_idle_trim(void **state)
{
    fake_open(&f);
    send_str("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    conn_t *c = fake_conn(&f);
    assert_true(c->out[0].cap + c->out[1].cap > 0);
    assert_true(c->http.req.raw.cap > 0);
    fake_advance(&f, CONN_TRIM_MS - 1);
    assert_true(c->out[0].cap + c->out[1].cap > 0);   /* not yet */
    fake_advance(&f, 1);
    assert_int_equal(c->state, CONN_OPEN);
    assert_int_equal(c->out[0].cap + c->out[1].cap, 0);
    assert_int_equal(c->http.req.raw.cap + c->http.req.body.cap + c->pending.cap, 0);
    assert_null(c->http.req.hdrs);
    assert_int_equal(c->http.req.cap_hdrs, 0);
    assert_int_equal(c->timer_kind, CONN_T_IDLE);
    f.wire.len = 0;   /* only the second response from here */
    send_str("GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n");
    wire_resp_t r[2];
    assert_int_equal(responses(r, 2), 1);
    assert_int_equal(r[0].status, 200);
    assert_string_equal(r[0].body, "{\"status\":\"ready\"}\n");
    free_resps(r, 1);
    fake_advance(&f, f.cfg.idle_timeout_ms - 1);   /* the clock restarts at the second response */
    assert_int_equal(c->state, CONN_OPEN);
    fake_advance(&f, 1);
    assert_int_equal(c->state, CONN_ABORT);
}

static void test_expect_continue(void **state)
{
    fake_open(&f);
    send_str("POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 87\r\n\r\n");
    assert_true(f.wire.len > 0);
    assert_memory_equal(f.wire.data, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    send_str(RUN_BODY);
    wire_resp_t r[3];
    assert_int_equal(responses(r, 3), 2);
    assert_int_equal(r[0].status, 100);
    assert_int_equal(r[1].status, 200);
    free_resps(r, 2);
}

static void test_head_options_http10(void **state)
{
    fake_open(&f);
    send_str("HEAD /health/live HTTP/1.1\r\nHost: x\r\n\r\nOPTIONS /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_non_null(strstr(f.wire.data, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(f.wire.data, "Content-Length: 16\r\n"));
    assert_null(strstr(f.wire.data, "{\"status\""));   /* HEAD: no body */
    const char *opt = strstr(f.wire.data, "HTTP/1.1 204");
    assert_non_null(opt);
    assert_non_null(strstr(opt, "Allow: POST, OPTIONS\r\n"));
    assert_null(strstr(opt, "Content-Length"));
    fake_close(&f);

    fake_init(&f);
    fake_open(&f);
    send_str("POST /v1/agents/echo/run HTTP/1.0\r\nContent-Length: 87\r\n\r\n" RUN_BODY);
    assert_null(strcasestr(f.wire.data, "transfer-encoding"));
    assert_non_null(strstr(f.wire.data, "Connection: close\r\n"));
    assert_non_null(strstr(f.wire.data, "RUN_FINISHED"));
    assert_int_equal(fake_conn(&f)->state, CONN_LINGER);
}

static void test_request_id(void **state)
{
    fake_open(&f);
    send_str("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: abc-123\r\n\r\n"
             "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: has space\r\n\r\n");
    wire_resp_t r[3];
    assert_int_equal(responses(r, 3), 2);
    assert_non_null(strstr(r[0].head, "X-Request-ID: abc-123\r\n"));
    const char *id = strstr(r[1].head, "X-Request-ID: ");
    assert_non_null(id);
    assert_null(strstr(r[1].head, "has space"));
    assert_int_equal(strcspn(id + 14, "\r"), 32);
    free_resps(r, 2);
}

static void test_connection_cap(void **state)
{
    f.cfg.max_connections = 1;
    f.conns.n_main = 1;                    /* one connection already open on this shard */
    fake_open(&f);
    send_str("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    wire_resp_t r[2];
    assert_int_equal(responses(r, 2), 1);
    assert_error(&r[0], 503, "too_many_connections");
    assert_int_equal(fake_conn(&f)->state, CONN_LINGER);
    free_resps(r, 1);
}

static void test_draining_closes_after_response(void **state)
{
    fake_open(&f);
    f.sh.draining = true;
    send_str("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_non_null(strstr(f.wire.data, "Connection: close\r\n"));
    assert_int_equal(fake_conn(&f)->state, CONN_LINGER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_order_behind_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byte_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strict_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strict_head_accepts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absolute_form, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_body_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_field_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_trim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_options_http10, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_draining_closes_after_response, setup, teardown),
    };
    return cmocka_run_group_tests_name("http1", tests, NULL, NULL);
}
