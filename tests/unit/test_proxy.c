/* proxy: runs of agents behind agate (net/proxy.c, with net/upstream.c and
 * net/breaker.c under it), on a real shard (tests/support/shardrun.h) with a
 * real client socket in front and agent services played by the test behind.
 *
 * The upstream request (the body unchanged; Host, Accept, X-Request-ID,
 * X-Forwarded-* (the host an absolute-form target names), a child traceparent,
 * allow-listed headers only), the relay byte for byte; every failure before the
 * first event as its HTTP error (5xx, 429, 400/422, other 4xx, wrong
 * Content-Type, no event, garbage, a broken connection, a refused connect, the
 * first-event timeout), and after it as a RUN_ERROR that ends the stream
 * cleanly (a broken stream, a stream ended early, the idle timeout, strict
 * validation; pass relays); a retry on the next endpoint; the breaker refusing
 * with Retry-After; the client's disconnect seen by the agent as a close; the
 * upstream connection kept alive for the next run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "net/upstream_metrics.h"
#include "tests/support/shardrun.h"
#include "tests/unit/wire.h"

static shardrun_t S;
static uint16_t up_port, dead_port;
static int up_lfd = -1;

#define INPUT "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"hi\"}]}"
#define EV_START "data: {\"type\":\"RUN_STARTED\",\"threadId\":\"t\",\"runId\":\"r\"}\n\n"
#define EV_MSG   "data: {\"type\":\"TEXT_MESSAGE_START\",\"messageId\":\"m1\",\"role\":\"assistant\"}\n\n" \
                 "data: {\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m1\",\"delta\":\"hello\"}\n\n"      \
                 "data: {\"type\":\"TEXT_MESSAGE_END\",\"messageId\":\"m1\"}\n\n"
#define EV_END   "data: {\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\"}\n\n"
#define EVENTS   EV_START EV_MSG EV_END
#define SSE_HEAD "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"

static cfg_agent_t *agent(void) { return &S.cfg.agents[1]; }

/* A proxy agent "up" in slot 1 (echo stays in slot 0) with endpoint 0 the
 * test's agent service; more endpoints by argument. */
static int setup(void **state)
{
    sr_init(&S);
    cache_conf_mut(&S.cfg)->max_bytes = 0;
    up_lfd = sr_listen(&up_port, 16);
    dead_port = sr_free_port();
    uint16_t ports[1] = {up_port};
    sr_proxy_agent(&S, 1, "up", ports, 1);
    return 0;
}

static int teardown(void **state)
{
    sr_stop_with(&S, &up_lfd);
    return 0;
}

static void start(void)
{
    if (sr_start(&S))
        skip();
}

static char reqbuf[4096];

static int client_run(const char *extra, const char *body)
{
    int fd = sr_connect(S.port);
    snprintf(reqbuf, sizeof reqbuf, "POST /v1/agents/up/run HTTP/1.1\r\nHost: x\r\n%sContent-Length: %zu\r\n\r\n%s",
             extra, strlen(body), body);
    sr_write(fd, reqbuf);
    return fd;
}

static bool resp_complete(const buf_t *b)
{
    size_t pos = 0;
    wire_resp_t r;
    if (!wire_next(b->data, b->len, &pos, &r))
        return false;
    free(r.body);
    return true;
}

/* The client's next response (head and dechunked body). */
static wire_resp_t client_response(int fd)
{
    buf_t b = {0};
    bool ok = sr_read_until(fd, &b, resp_complete);
    if (!ok)
        fprintf(stderr, "client got: %s\n", b.data ? b.data : "(nothing)");
    assert_true(ok);
    wire_resp_t r;
    size_t pos = 0;
    assert_true(wire_next(b.data, b.len, &pos, &r));
    buf_free(&b);
    if (getenv("T_DEBUG"))
        fprintf(stderr, "%s%s\n", r.head, r.body);
    return r;
}

static void expect_error(const wire_resp_t *r, int status, const char *code)
{
    assert_int_equal(r->status, status);
    json_t *j = json_loads(r->body, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "error")), code);
    json_decref(j);
}

/* The agent service's side: the next connection and its request. */
static int agent_accept(buf_t *req)
{
    int fd = sr_accept(up_lfd, SR_WAIT_MS);
    assert_true(fd >= 0);
    assert_true(sr_read_request(fd, req));
    return fd;
}

static const char *header_of(const char *head, const char *name, char *out, size_t cap)
{
    const char *p = strcasestr(head, name);
    if (!p)
        return NULL;
    p += strlen(name);
    size_t n = strcspn(p, "\r");
    snprintf(out, cap, "%.*s", (int)n, p);
    return out;
}

/* The run's RUN_ERROR code, and that the stream ended right after it. */
static const char *run_error_code(const wire_resp_t *r, char *code, size_t cap)
{
    json_t *ev = wire_events(r->body, NULL);
    size_t n = json_array_size(ev);
    code[0] = 0;
    if (n && !strcmp(ev_type(ev, n - 1), "RUN_ERROR"))
        snprintf(code, cap, "%s", json_string_value(json_object_get(json_array_get(ev, n - 1), "code")));
    json_decref(ev);
    return code;
}

/* ---- the happy path ---- */

static void test_relay(void **state)
{
    snprintf(agent()->forward_headers[0], CFG_HEADER_MAX, "x-tenant");
    snprintf(agent()->forward_headers[1], CFG_HEADER_MAX, "x-forwarded-for");   /* agate's own: ignored */
    agent()->n_forward = 2;
    start();
    int c = client_run("X-Request-ID: req-1\r\nX-Tenant: blue\r\nAuthorization: Bearer secret\r\n"
                       "X-Forwarded-For: 10.0.0.1\r\n"
                       "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n",
                       INPUT);
    buf_t req = {0};
    int u = agent_accept(&req);
    char v[256], want[64];
    assert_memory_equal(req.data, "POST /agent HTTP/1.1\r\n", 22);
    snprintf(want, sizeof want, "127.0.0.1:%u", up_port);
    assert_string_equal(header_of(req.data, "\r\nHost: ", v, sizeof v), want);
    assert_string_equal(header_of(req.data, "\r\nContent-Type: ", v, sizeof v), "application/json");
    assert_string_equal(header_of(req.data, "\r\nAccept: ", v, sizeof v), "text/event-stream");
    assert_string_equal(header_of(req.data, "\r\nX-Request-ID: ", v, sizeof v), "req-1");
    assert_string_equal(header_of(req.data, "\r\nX-Forwarded-For: ", v, sizeof v), "10.0.0.1, 127.0.0.1");
    assert_string_equal(header_of(req.data, "\r\nX-Forwarded-Proto: ", v, sizeof v), "http");
    assert_string_equal(header_of(req.data, "\r\nX-Forwarded-Host: ", v, sizeof v), "x");
    assert_string_equal(header_of(req.data, "\r\nx-tenant: ", v, sizeof v), "blue");
    header_of(req.data, "\r\ntraceparent: ", v, sizeof v);
    assert_memory_equal(v, "00-0af7651916cd43dd8448eb211c80319c-", 36);   /* the client's trace */
    assert_int_equal(strlen(v), 55);
    assert_memory_not_equal(v + 36, "b7ad6b7169203331", 16);                   /* a span of our own */
    assert_null(strcasestr(req.data, "authorization"));
    const char *xff = strcasestr(req.data, "x-forwarded-for");
    assert_null(strcasestr(xff + 1, "x-forwarded-for"));                      /* written once */
    assert_string_equal(strstr(req.data, "\r\n\r\n") + 4, INPUT);              /* the body unchanged */
    buf_free(&req);

    sr_write(u, SSE_HEAD "Transfer-Encoding: chunked\r\n\r\n");
    char chunk[1024];
    snprintf(chunk, sizeof chunk, "%zx\r\n%s\r\n0\r\n\r\n", strlen(EVENTS), EVENTS);
    sr_write(u, chunk);
    wire_resp_t r = client_response(c);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "\r\nContent-Type: text/event-stream\r\n"));
    assert_non_null(strstr(r.head, "\r\nTransfer-Encoding: chunked\r\n"));
    assert_non_null(strstr(r.head, "\r\nX-Request-ID: req-1\r\n"));
    assert_string_equal(r.body, EVENTS);                                       /* byte for byte */
    free(r.body);
    close(u);
    close(c);
}

/* Two runs on one client connection: the upstream connection is kept alive
 * and pooled, and the second request comes on it. */
static void test_upstream_keepalive(void **state)
{
    start();
    int c = client_run("", INPUT);
    buf_t req = {0};
    int u = agent_accept(&req);
    char resp[1024];
    snprintf(resp, sizeof resp, SSE_HEAD "Content-Length: %zu\r\n\r\n%s", strlen(EVENTS), EVENTS);
    sr_write(u, resp);
    wire_resp_t r = client_response(c);
    assert_int_equal(r.status, 200);
    free(r.body);
    snprintf(reqbuf, sizeof reqbuf, "POST /v1/agents/up/run HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(INPUT), INPUT);
    sr_write(c, reqbuf);
    assert_true(sr_read_request(u, &req));                                    /* on the same connection */
    assert_false(sr_readable(up_lfd, 0));
    sr_write(u, resp);
    r = client_response(c);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, EVENTS);
    free(r.body);
    buf_free(&req);
    close(u);
    close(c);
}

/* An absolute-form target (RFC 9112 section 3.2.2) is routed by its path, and
 * its authority, not the Host line, is the host the agent is told of. */
static void test_absolute_form_host(void **state)
{
    start();
    int c = sr_connect(S.port);
    snprintf(reqbuf, sizeof reqbuf, "POST http://gw.example:8443/v1/agents/up/run?x=1 HTTP/1.1\r\nHost: x\r\n"
             "Content-Length: %zu\r\n\r\n%s", strlen(INPUT), INPUT);
    sr_write(c, reqbuf);
    buf_t req = {0};
    int u = agent_accept(&req);
    char v[256];
    assert_memory_equal(req.data, "POST /agent HTTP/1.1\r\n", 22);
    assert_string_equal(header_of(req.data, "\r\nX-Forwarded-Host: ", v, sizeof v), "gw.example:8443");
    buf_free(&req);
    close(u);
    close(c);
}

/* ---- failures before the first event: HTTP errors ---- */

struct early {
    const char *resp;   /* the agent's answer; NULL: it closes without one */
    int status;
    const char *code, *msg;
};

static void test_errors_before_first_event(void **state)
{
    start();
    const struct early cases[] = {
        {"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", 502, "upstream_failed", "upstream answered 500"},
        {"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", 502, "upstream_failed", "upstream answered 503"},
        {"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n", 429, "upstream_rate_limited", "upstream answered 429"},
        {"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", 400, "upstream_rejected", "upstream answered 400"},
        {"HTTP/1.1 422 Unprocessable\r\nContent-Length: 0\r\n\r\n", 400, "upstream_rejected", "upstream answered 422"},
        {"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 502, "upstream_error", "upstream answered 404"},
        {"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nhi", 502, "upstream_failed",
         "text/html\\\", not text/event-stream"},   /* (JSON-escaped quote) */
        {"SSH-2.0-OpenSSH\r\n\r\n", 502, "upstream_failed", "invalid HTTP response"},
        {NULL, 502, "upstream_failed", "connection broke"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int c = client_run("", INPUT);
        buf_t req = {0};
        int u = agent_accept(&req);
        buf_free(&req);
        if (cases[i].resp)
            sr_write(u, cases[i].resp);
        else
            close(u);
        wire_resp_t r = client_response(c);
        if (getenv("T_DEBUG"))
            fprintf(stderr, "case %zu: %d %s\n", i, r.status, r.body);
        expect_error(&r, cases[i].status, cases[i].code);
        assert_non_null(strstr(r.body, cases[i].msg));
        free(r.body);
        if (cases[i].resp) {
            assert_true(sr_sees_eof(u, SR_WAIT_MS));   /* a failed attempt's connection is not kept */
            close(u);
        }
        close(c);
    }
}

static void test_connect_refused(void **state)
{
    agent()->endpoints[0].port = dead_port;
    start();
    int c = client_run("", INPUT);
    wire_resp_t r = client_response(c);
    expect_error(&r, 502, "upstream_failed");
    assert_non_null(strstr(r.body, "connection failed"));
    free(r.body);
    close(c);
}

/* No answer within first_event_timeout: 504, and the agent sees the attempt
 * dropped. (With a 2xx head but no event, the client has its 200 by then:
 * see test_head_without_event.) */
static void test_first_event_timeout(void **state)
{
    agent()->first_event_timeout_ms = 150;
    start();
    int c = client_run("", INPUT);
    buf_t req = {0};
    int u = agent_accept(&req);
    buf_free(&req);
    wire_resp_t r = client_response(c);
    expect_error(&r, 504, "upstream_timeout");
    assert_non_null(strstr(r.body, "no event from the upstream within 150 ms"));
    free(r.body);
    assert_true(sr_sees_eof(u, SR_WAIT_MS));
    close(u);
    close(c);
}

/* A 2xx event-stream head starts the client's 200; an attempt that then
 * brings no event ends it with a RUN_ERROR (the only event), cleanly. */
static void head_without_event(bool quiet)
{
    if (quiet)
        agent()->first_event_timeout_ms = 150;
    start();
    static const struct { const char *resp, *code, *msg; } cases[] = {
        {SSE_HEAD "Content-Length: 0\r\n\r\n", "upstream_failed", "without an event"},
        {SSE_HEAD "Content-Length: 11\r\n\r\n: comment\n\n", "upstream_failed", "without an event"},
        {SSE_HEAD "Transfer-Encoding: chunked\r\n\r\n", "upstream_timeout", "no event from the upstream within 150 ms"},
    };
    for (size_t i = quiet ? 2 : 0; i < (quiet ? 3 : 2); i++) {
        int c = client_run("", INPUT);
        buf_t req = {0};
        int u = agent_accept(&req);
        buf_free(&req);
        sr_write(u, cases[i].resp);
        wire_resp_t r = client_response(c);
        assert_int_equal(r.status, 200);
        json_t *ev = wire_events(r.body, NULL);
        assert_int_equal(json_array_size(ev), 1);
        assert_string_equal(ev_type(ev, 0), "RUN_ERROR");
        assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "code")), cases[i].code);
        assert_non_null(strstr(json_string_value(json_object_get(json_array_get(ev, 0), "message")), cases[i].msg));
        json_decref(ev);
        free(r.body);
        close(u);
        close(c);
    }
}

static void test_head_then_end(void **state) { head_without_event(false); }
static void test_head_then_silence(void **state) { head_without_event(true); }

/* ---- after the first event: RUN_ERROR, and the stream ends cleanly ---- */

struct late {
    const char *tail;   /* after the head and RUN_STARTED */
    bool        close_after;
    bool        dropped;   /* the attempt's connection is closed (not pooled) */
    const char *code, *msg;
};

/* The head and RUN_STARTED, then `tail`: the client's stream must end with a
 * RUN_ERROR of code/msg and be terminated (the response completes). */
static void late_failure(const struct late *l)
{
    int c = client_run("", INPUT);
    buf_t req = {0};
    int u = agent_accept(&req);
    buf_free(&req);
    char chunk[512];
    snprintf(chunk, sizeof chunk, SSE_HEAD "Transfer-Encoding: chunked\r\n\r\n%zx\r\n%s\r\n%s", strlen(EV_START),
             EV_START, l->tail);
    sr_write(u, chunk);
    if (l->close_after)
        close(u);
    wire_resp_t r = client_response(c);
    assert_int_equal(r.status, 200);
    json_t *ev = wire_events(r.body, NULL);
    assert_int_equal(json_array_size(ev), 2);
    assert_string_equal(ev_type(ev, 0), "RUN_STARTED");
    assert_string_equal(ev_type(ev, 1), "RUN_ERROR");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 1), "code")), l->code);
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(ev, 1), "message")), l->msg));
    json_decref(ev);
    free(r.body);
    if (l->dropped)
        assert_true(sr_sees_eof(u, SR_WAIT_MS));
    if (!l->close_after)
        close(u);
    close(c);
}

static void test_errors_after_first_event(void **state)
{
    start();
    const struct late cut = {"", true, false, "upstream_failed", "connection broke"};
    /* (a response that ended cleanly leaves a reusable connection, finished run or not) */
    const struct late unfinished = {"0\r\n\r\n", false, false, "upstream_failed", "before the run finished"};
    late_failure(&cut);
    late_failure(&unfinished);
}

static void test_idle_timeout(void **state)
{
    agent()->idle_timeout_ms = 150;
    start();
    const struct late quiet = {"", false, true, "upstream_timeout", "no event from the upstream for 150 ms"};
    late_failure(&quiet);
}

static void test_strict_validation(void **state)
{
    start();
    int c = client_run("", INPUT);
    buf_t req = {0};
    int u = agent_accept(&req);
    buf_free(&req);
    const char *bad = EV_START "data: {\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"nope\",\"delta\":\"x\"}\n\n" EV_END;
    char resp[1024];
    snprintf(resp, sizeof resp, SSE_HEAD "Content-Length: %zu\r\n\r\n%s", strlen(bad), bad);
    sr_write(u, resp);
    wire_resp_t r = client_response(c);
    char code[64];
    assert_string_equal(run_error_code(&r, code, sizeof code), "upstream_protocol_error");
    assert_non_null(strstr(r.body, EV_START));             /* what came before it went first */
    assert_null(strstr(r.body, "\"delta\":\"x\""));        /* the bad event did not */
    free(r.body);
    close(u);
    close(c);
}

static void test_pass_validation(void **state)
{
    agent()->validation = CFG_VALIDATION_PASS;
    start();
    int c = client_run("", INPUT);
    buf_t req = {0};
    int u = agent_accept(&req);
    buf_free(&req);
    const char *odd = EV_START "data: {\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"nope\",\"delta\":\"x\"}\n\n" EV_END;
    char resp[1024];
    snprintf(resp, sizeof resp, SSE_HEAD "Content-Length: %zu\r\n\r\n%s", strlen(odd), odd);
    sr_write(u, resp);
    wire_resp_t r = client_response(c);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, odd);                       /* relayed as it came */
    free(r.body);
    close(u);
    close(c);
}

/* ---- endpoints: retry, breaker ---- */

static void read_metrics(shard_t *sh, void *arg) { memcpy(arg, upm(sh), sizeof(upm_t)); }

/* Endpoint 0 refuses, endpoint 1 answers: with one retry both runs succeed,
 * each attempt on the dead endpoint retried on the other (counted). */
static void test_retry_next_endpoint(void **state)
{
    uint16_t ports[2] = {dead_port, up_port};
    sr_proxy_agent(&S, 1, "up", ports, 2)->retry_attempts = 1;
    start();
    char resp[1024];
    snprintf(resp, sizeof resp, SSE_HEAD "Content-Length: %zu\r\n\r\n%s", strlen(EVENTS), EVENTS);
    for (int i = 0; i < 2; i++) {
        int c = client_run("", INPUT);
        buf_t req = {0};
        int u = agent_accept(&req);
        buf_free(&req);
        sr_write(u, resp);
        wire_resp_t r = client_response(c);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, EVENTS);
        free(r.body);
        close(u);
        close(c);
    }
    upm_t *m = calloc(1, sizeof *m);
    sr_call(&S, read_metrics, m);
    assert_true(m->retries[1] >= 1);                       /* round robin sent a run to the dead one */
    assert_int_equal(m->attempts[1][0], m->retries[1]);   /* every attempt there was retried */
    assert_int_equal(m->failures[1][0][MUF_CONNECT], m->retries[1]);
    assert_int_equal(m->attempts[1][1], 2);
    free(m);
}

/* A breaker that opens after one failure: the next run is refused at once with
 * 503 and Retry-After, without an attempt. */
static void test_breaker_refuses(void **state)
{
    agent()->endpoints[0].port = dead_port;
    agent()->breaker_failures = 1;
    agent()->breaker_open_ms = 10000;
    start();
    int c = client_run("", INPUT);
    wire_resp_t r = client_response(c);
    expect_error(&r, 502, "upstream_failed");
    free(r.body);
    close(c);
    c = client_run("", INPUT);
    r = client_response(c);
    expect_error(&r, 503, "upstream_unavailable");
    char v[32];
    assert_non_null(header_of(r.head, "\r\nRetry-After: ", v, sizeof v));
    assert_true(atoi(v) >= 1 && atoi(v) <= 10);
    free(r.body);
    close(c);
    upm_t *m = calloc(1, sizeof *m);
    sr_call(&S, read_metrics, m);
    assert_int_equal(m->attempts[1][0], 1);              /* the refusal made no attempt */
    assert_int_equal(m->breaker_open[1][0], 1);
    free(m);
}

/* ---- the client leaves ---- */

static void test_client_disconnect(void **state)
{
    start();
    int c = client_run("", INPUT);
    buf_t req = {0};
    int u = agent_accept(&req);
    buf_free(&req);
    char chunk[512];
    snprintf(chunk, sizeof chunk, SSE_HEAD "Transfer-Encoding: chunked\r\n\r\n%zx\r\n%s\r\n", strlen(EV_START), EV_START);
    sr_write(u, chunk);
    struct pollfd p = {.fd = c, .events = POLLIN};
    assert_int_equal(poll(&p, 1, SR_WAIT_MS), 1);           /* the stream began */
    close(c);
    assert_true(sr_sees_eof(u, SR_WAIT_MS));                /* the agent sees the cancel */
    close(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_relay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absolute_form_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_before_first_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_event_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_then_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_then_silence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_after_first_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strict_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pass_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_next_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_breaker_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_disconnect, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("proxy on io_uring", tests, NULL, NULL);
    sr_backend = CFG_BACKEND_EPOLL;   /* the same on core/engine_epoll.c */
    return failed + cmocka_run_group_tests_name("proxy on epoll", tests, NULL, NULL);
}
