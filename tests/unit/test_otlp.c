/* Unit tests for core/otlp.c: endpoint parsing, the span rings (full ring
 * drops and counts), and the exporter against a loopback collector run by the
 * test itself: the OTLP/JSON body (checked with jansson; server and client
 * spans), batch splitting,
 * connection reuse and reconnection, non-2xx answers, no collector at all, and
 * a collector that accepts but never answers (otlp_stop must stay bounded). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <jansson.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/otlp.h"
#include "core/version.h"

/* ---- a loopback collector ---- */

enum mode {
    M_OK,           /* 200, keep-alive */
    M_FAIL,         /* 500, keep-alive */
    M_CLOSE,        /* 200 with Connection: close, then close */
    M_DROP_IDLE,    /* 200, keep-alive, then close without saying so */
    M_HANG,         /* accept, never read or answer */
};

#define MAX_BODIES 64

struct collector {
    enum mode       mode;
    int             lfd;
    uint16_t        port;
    pthread_t       thr;
    _Atomic bool    stop;
    pthread_mutex_t mu;
    char           *bodies[MAX_BODIES];
    size_t          n_bodies;
    char            first_head[1024];
    int             conns;
    size_t          spans;          /* "spanId" keys seen in all bodies */
    int             hung[16];
    int             n_hung;
};

static void coll_lock(struct collector *c) { pthread_mutex_lock(&c->mu); }
static void coll_unlock(struct collector *c) { pthread_mutex_unlock(&c->mu); }

/* waits up to 100 ms for fd to be readable; false on timeout or stop */
static bool wait_readable(struct collector *c, int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return !atomic_load(&c->stop) && poll(&p, 1, 100) == 1;
}

/* Reads one request (head + Content-Length body) from fd into a new string;
 * NULL at EOF or stop. */
static char *read_request(struct collector *c, int fd, char *head_out, size_t head_cap)
{
    char buf[1 << 16];
    size_t have = 0, need = 0;
    char *end = NULL, *body;

    for (;;) {
        ssize_t n;

        if (end && have >= need)
            break;
        if (have == sizeof buf)
            return NULL;
        if (!wait_readable(c, fd)) {
            if (atomic_load(&c->stop))
                return NULL;
            continue;
        }
        n = read(fd, buf + have, sizeof buf - have);
        if (n <= 0)
            return NULL;
        have += (size_t)n;
        if (!end) {
            end = memmem(buf, have, "\r\n\r\n", 4);
            if (end) {
                const char *cl = NULL;
                size_t hlen = (size_t)(end - buf) + 4;

                for (char *p = buf; p < end; p++) {
                    if (strncasecmp(p, "\r\nContent-Length:", 17) == 0) {
                        cl = p + 17;
                        break;
                    }
                }
                if (!cl)
                    return NULL;
                need = hlen + strtoul(cl, NULL, 10);
                if (need > sizeof buf)
                    return NULL;
                if (head_out && !head_out[0])
                    snprintf(head_out, head_cap, "%.*s", (int)hlen, buf);
            }
        }
    }
    body = strndup(end + 4, need - (size_t)(end + 4 - buf));
    return body;
}

static void write_str(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void serve(struct collector *c, int fd)
{
    for (;;) {
        char *body = read_request(c, fd, c->first_head, sizeof c->first_head);

        if (!body)
            return;
        coll_lock(c);
        for (const char *p = body; (p = strstr(p, "\"spanId\"")); p++)
            c->spans++;
        if (c->n_bodies < MAX_BODIES)
            c->bodies[c->n_bodies++] = body;
        else
            free(body);
        coll_unlock(c);
        switch (c->mode) {
        case M_OK:
            write_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
            break;
        case M_FAIL:
            write_str(fd, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!");
            break;
        case M_CLOSE:
            write_str(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}");
            return;
        case M_DROP_IDLE:
            write_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
            usleep(5000);    /* the client is done with this one; then an idle close */
            return;
        case M_HANG:
            return;
        }
    }
}

static void *collector_main(void *arg)
{
    struct collector *c = arg;

    while (!atomic_load(&c->stop)) {
        int fd;

        if (!wait_readable(c, c->lfd))
            continue;
        fd = accept(c->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        coll_lock(c);
        c->conns++;
        coll_unlock(c);
        if (c->mode == M_HANG) {
            if (c->n_hung < 16)
                c->hung[c->n_hung++] = fd;
            else
                close(fd);
            continue;
        }
        serve(c, fd);
        close(fd);
    }
    return NULL;
}

static struct collector *collector_start(enum mode mode)
{
    struct collector *c = calloc(1, sizeof *c);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    int one = 1;

    assert_non_null(c);
    c->mode = mode;
    pthread_mutex_init(&c->mu, NULL);
    c->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->lfd >= 0);
    setsockopt(c->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    assert_int_equal(bind(c->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(c->lfd, 16), 0);
    assert_int_equal(getsockname(c->lfd, (struct sockaddr *)&sa, &len), 0);
    c->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&c->thr, NULL, collector_main, c), 0);
    return c;
}

static void collector_stop(struct collector *c)
{
    atomic_store(&c->stop, true);
    pthread_join(c->thr, NULL);
    close(c->lfd);
    for (int i = 0; i < c->n_hung; i++)
        close(c->hung[i]);
    for (size_t i = 0; i < c->n_bodies; i++)
        free(c->bodies[i]);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void endpoint_of(const struct collector *c, char *out, size_t n)
{
    snprintf(out, n, "http://127.0.0.1:%u/v1/traces", c->port);
}

static size_t bodies_now(struct collector *c)
{
    size_t n;
    coll_lock(c);
    n = c->n_bodies;
    coll_unlock(c);
    return n;
}

static int conns_now(struct collector *c)
{
    int n;
    coll_lock(c);
    n = c->conns;
    coll_unlock(c);
    return n;
}

static void sleep_ms(unsigned ms)
{
    nanosleep(&(struct timespec){ ms / 1000, (long)(ms % 1000) * 1000000L }, NULL);
}

/* polls stats until pred holds, for up to 5 s */
#define WAIT_FOR(cond)                                                   \
    do {                                                                 \
        uint64_t until_ = clock_mono_ms() + 5000;                        \
        otlp_stats_t st_;                                                \
        for (;;) {                                                       \
            otlp_get_stats(&st_);                                        \
            if (cond)                                                    \
                break;                                                   \
            if (clock_mono_ms() > until_) {                              \
                print_error("timed out waiting for " #cond "\n");        \
                fail();                                                  \
            }                                                            \
            sleep_ms(5);                                                 \
        }                                                                \
    } while (0)

/* ---- spans ---- */

static void make_span(otlp_span_t *s, unsigned i, bool parent)
{
    memset(s, 0, sizeof *s);
    for (int k = 0; k < 16; k++)
        s->trace_id[k] = (uint8_t)(0xa0 + k);
    for (int k = 0; k < 8; k++) {
        s->span_id[k] = (uint8_t)(0x10 + k);
        s->parent_id[k] = (uint8_t)(0xf0 + k);
    }
    s->span_id[7] = (uint8_t)i;
    s->has_parent = parent;
    s->kind = OTLP_KIND_SERVER;
    s->http_status = 200;
    s->events = 6;
    s->start_unix_ns = 1700000000123456789ull + i;
    s->end_unix_ns = 1700000000223456789ull + i;
    snprintf(s->name, sizeof s->name, "POST /v1/agents/{name}/run");
    snprintf(s->method, sizeof s->method, "POST");
    snprintf(s->route, sizeof s->route, "/v1/agents/{name}/run");
    snprintf(s->agent, sizeof s->agent, "echo");
    snprintf(s->request_id, sizeof s->request_id, "req-%u", i);
}

/* Parses a collector body and returns its spans array (owned by *root). */
static json_t *spans_of(const char *body, json_t **root)
{
    json_error_t e;
    json_t *rs, *ss, *spans;

    *root = json_loads(body, 0, &e);
    if (!*root) {
        print_error("bad JSON (%s) in: %s\n", e.text, body);
        fail();
    }
    rs = json_object_get(*root, "resourceSpans");
    assert_true(json_is_array(rs));
    assert_int_equal(json_array_size(rs), 1);
    ss = json_object_get(json_array_get(rs, 0), "scopeSpans");
    assert_true(json_is_array(ss));
    assert_int_equal(json_array_size(ss), 1);
    spans = json_object_get(json_array_get(ss, 0), "spans");
    assert_true(json_is_array(spans));
    return spans;
}

static const char *str_at(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

/* the value object of attribute key, or NULL */
static json_t *attr(json_t *span, const char *key)
{
    json_t *attrs = json_object_get(span, "attributes");
    size_t i;
    json_t *a;

    assert_true(json_is_array(attrs));
    json_array_foreach(attrs, i, a) {
        if (strcmp(str_at(a, "key"), key) == 0)
            return json_object_get(a, "value");
    }
    return NULL;
}

static bool lower_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

/* ---- tests ---- */

static void test_parse_endpoint(void **state)
{
    static const char *const bad[] = {
        "", "https://127.0.0.1:4318/v1/traces", "ftp://127.0.0.1:21/x", "127.0.0.1:4318/v1/traces",
        "http://127.0.0.1/v1/traces", "http://127.0.0.1:4318", "http://127.0.0.1:4318?x",
        "http://example.com:4318/v1/traces", "http://:4318/v1/traces", "http:///v1/traces",
        "http://127.0.0.1:0/x", "http://127.0.0.1:65536/x", "http://[::1:4318/x", "http://::1:4318/x",
        "http://user@127.0.0.1:4318/x", "http://127.0.0.1:4318/a b", "http://127.0.0.1:4318/a#frag",
        "http://127.0.0.1:4318/a\r\nX: y", "http://127.0.0.1:4318/\xc3\xa9", "http://1.2.3:4318/x",
        "http://127.0.0.1:4318x/y",
    };
    otlp_endpoint_t ep;
    char longer[300];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (otlp_parse_endpoint(bad[i], &ep) != -EINVAL) {
            print_error("endpoint \"%s\" was accepted\n", bad[i]);
            fail();
        }
    }
    assert_int_equal(otlp_parse_endpoint(NULL, NULL), -EINVAL);

    assert_int_equal(otlp_parse_endpoint("http://127.0.0.1:4318/v1/traces", &ep), 0);
    assert_int_equal(ep.addr.ss_family, AF_INET);
    assert_int_equal(ep.addr_len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(((struct sockaddr_in *)&ep.addr)->sin_port), 4318);
    assert_string_equal(ep.host, "127.0.0.1:4318");
    assert_string_equal(ep.path, "/v1/traces");

    assert_int_equal(otlp_parse_endpoint("http://[::1]:4318/otlp/v1/traces?x=1", &ep), 0);
    assert_int_equal(ep.addr.ss_family, AF_INET6);
    assert_string_equal(ep.host, "[::1]:4318");
    assert_string_equal(ep.path, "/otlp/v1/traces?x=1");

    assert_int_equal(otlp_parse_endpoint("HTTP://localhost:1/", &ep), 0);
    assert_string_equal(ep.host, "localhost:1");
    assert_string_equal(ep.path, "/");
    assert_int_equal(otlp_parse_endpoint("http://localhost:1/", NULL), 0);

    /* 255 characters is the longest */
    memset(longer, 'a', sizeof longer);
    memcpy(longer, "http://127.0.0.1:1/", 19);
    longer[255] = '\0';
    assert_int_equal(otlp_parse_endpoint(longer, NULL), 0);
    longer[255] = 'a';
    longer[256] = '\0';
    assert_int_equal(otlp_parse_endpoint(longer, NULL), -EINVAL);
}

static void test_disabled(void **state)
{
    otlp_span_t s;
    otlp_stats_t before, after;

    make_span(&s, 1, false);
    assert_false(otlp_enabled());
    otlp_get_stats(&before);
    assert_false(otlp_put(0, &s));
    otlp_get_stats(&after);
    assert_memory_equal(&before, &after, sizeof before);
    assert_int_equal(otlp_start(), -EINVAL);
    otlp_stop();    /* harmless when never initialised */

    /* a bad endpoint leaves it off */
    assert_int_equal(otlp_init("https://127.0.0.1:4318/v1/traces", "agate", 1, 16, 100, 10), -EINVAL);
    assert_false(otlp_enabled());
    assert_false(otlp_put(0, &s));
    assert_int_equal(otlp_init("http://127.0.0.1:4318/v1/traces", "", 1, 16, 100, 10), -EINVAL);
    assert_int_equal(otlp_init("http://127.0.0.1:4318/v1/traces", "agate", 0, 16, 100, 10), -EINVAL);
    assert_int_equal(otlp_init("http://127.0.0.1:4318/v1/traces", "agate", 1, 0, 100, 10), -EINVAL);
    assert_int_equal(otlp_init("http://127.0.0.1:4318/v1/traces", "agate", 1, 16, 0, 10), -EINVAL);
    assert_int_equal(otlp_init("http://127.0.0.1:4318/v1/traces", "agate", 1, 16, 100, 0), -EINVAL);
    assert_false(otlp_enabled());
    otlp_get_stats(&after);
    assert_memory_equal(&before, &after, sizeof before);
}

static void test_export_json(void **state)
{
    struct collector *c = collector_start(M_OK);
    char ep[128], want_host[64];
    otlp_span_t a, b;
    otlp_stats_t st;
    json_t *root, *spans, *res, *scope, *s0, *s1, *v;

    endpoint_of(c, ep, sizeof ep);
    assert_int_equal(otlp_init(ep, "my \"svc\"", 2, 16, 20, 100), 0);
    assert_true(otlp_enabled());
    assert_int_equal(otlp_init(ep, "again", 2, 16, 20, 100), -EALREADY);

    make_span(&a, 1, true);
    make_span(&b, 2, false);
    b.kind = OTLP_KIND_CLIENT;
    b.http_status = 503;
    b.events = 0;
    b.agent[0] = '\0';
    snprintf(b.request_id, sizeof b.request_id, "bad\xff\xfe utf8");    /* ill-formed UTF-8 from a client */
    memset(b.route, 'r', sizeof b.route);             /* full field, no terminator */
    assert_false(otlp_put(2, &a));    /* no such ring */
    assert_true(otlp_put(0, &a));
    assert_true(otlp_put(1, &b));
    assert_int_equal(otlp_start(), 0);
    assert_int_equal(otlp_start(), -EALREADY);
    WAIT_FOR(st_.exported == 2);
    otlp_stop();
    assert_false(otlp_enabled());
    otlp_get_stats(&st);
    assert_int_equal(st.exported, 2);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.failed_batches, 0);

    /* the request itself */
    snprintf(want_host, sizeof want_host, "\r\nHost: 127.0.0.1:%u\r\n", c->port);
    assert_int_equal(strncmp(c->first_head, "POST /v1/traces HTTP/1.1\r\n", 26), 0);
    assert_non_null(strstr(c->first_head, want_host));
    assert_non_null(strstr(c->first_head, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(c->first_head, "\r\nConnection: keep-alive\r\n"));

    assert_int_equal(bodies_now(c), 1);    /* both were queued before the first tick */
    spans = spans_of(c->bodies[0], &root);
    res = json_object_get(json_array_get(json_object_get(root, "resourceSpans"), 0), "resource");
    v = json_array_get(json_object_get(res, "attributes"), 0);
    assert_string_equal(str_at(v, "key"), "service.name");
    assert_string_equal(str_at(json_object_get(v, "value"), "stringValue"), "my \"svc\"");
    scope = json_object_get(json_array_get(json_object_get(json_array_get(json_object_get(root, "resourceSpans"), 0),
                                                           "scopeSpans"), 0), "scope");
    assert_string_equal(str_at(scope, "name"), "agate");
    assert_string_equal(str_at(scope, "version"), AGATE_VERSION);
    assert_int_equal(json_array_size(spans), 2);

    s0 = json_array_get(spans, 0);
    s1 = json_array_get(spans, 1);
    if (strcmp(str_at(s0, "spanId"), "1011121314151601") != 0) {    /* rings may come in either order */
        json_t *t = s0;
        s0 = s1;
        s1 = t;
    }
    /* the server span with a parent */
    assert_string_equal(str_at(s0, "traceId"), "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf");
    assert_true(lower_hex(str_at(s0, "traceId"), 32));
    assert_string_equal(str_at(s0, "spanId"), "1011121314151601");
    assert_string_equal(str_at(s0, "parentSpanId"), "f0f1f2f3f4f5f6f7");
    assert_string_equal(str_at(s0, "name"), "POST /v1/agents/{name}/run");
    assert_int_equal(json_integer_value(json_object_get(s0, "kind")), 2);
    assert_string_equal(str_at(s0, "startTimeUnixNano"), "1700000000123456790");
    assert_string_equal(str_at(s0, "endTimeUnixNano"), "1700000000223456790");
    assert_string_equal(str_at(attr(s0, "http.request.method"), "stringValue"), "POST");
    assert_string_equal(str_at(attr(s0, "http.route"), "stringValue"), "/v1/agents/{name}/run");
    assert_string_equal(str_at(attr(s0, "http.response.status_code"), "intValue"), "200");
    assert_string_equal(str_at(attr(s0, "agate.agent"), "stringValue"), "echo");
    assert_string_equal(str_at(attr(s0, "agate.events"), "intValue"), "6");
    assert_string_equal(str_at(attr(s0, "agate.request_id"), "stringValue"), "req-1");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(s0, "status"), "code")), 0);

    /* the client span without a parent, 5xx */
    assert_string_equal(str_at(s1, "spanId"), "1011121314151602");
    assert_null(json_object_get(s1, "parentSpanId"));
    assert_int_equal(json_integer_value(json_object_get(s1, "kind")), 3);
    assert_string_equal(str_at(attr(s1, "http.response.status_code"), "intValue"), "503");
    assert_null(attr(s1, "agate.agent"));
    assert_null(attr(s1, "agate.events"));    /* a client span's events are its run's */
    assert_null(attr(s0, "server.address"));  /* client-only attributes stay off a server span */
    assert_null(attr(s0, "server.port"));
    assert_null(attr(s0, "url.path"));
    assert_null(attr(s0, "error.type"));
    assert_null(attr(s0, "agate.attempt"));
    assert_string_equal(str_at(attr(s1, "agate.request_id"), "stringValue"), "bad?? utf8");
    assert_int_equal(strlen(str_at(attr(s1, "http.route"), "stringValue")), 48);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(s1, "status"), "code")), 2);
    json_decref(root);
    collector_stop(c);
}

/* An upstream attempt as proxy.c fills it. */
static void make_client_span(otlp_span_t *s, unsigned i, uint16_t status, const char *error_type)
{
    make_span(s, i, true);
    s->kind = OTLP_KIND_CLIENT;
    s->events = 0;
    s->route[0] = '\0';
    snprintf(s->name, sizeof s->name, "POST");
    s->http_status = status;
    s->error = error_type != NULL;
    if (error_type)
        snprintf(s->error_type, sizeof s->error_type, "%s", error_type);
    snprintf(s->server_address, sizeof s->server_address, "agent.internal");
    s->server_port = 8000;
    snprintf(s->url_path, sizeof s->url_path, "/v1/run");
    s->attempt = (uint16_t)i;
}

static json_t *span_by_attempt(json_t *spans, const char *attempt)
{
    size_t i;
    json_t *sp;

    json_array_foreach(spans, i, sp) {
        json_t *v = attr(sp, "agate.attempt");
        if (v && strcmp(str_at(v, "intValue"), attempt) == 0)
            return sp;
    }
    print_error("no span of attempt %s\n", attempt);
    fail();
    return NULL;
}

static int64_t status_code(json_t *span)
{
    return json_integer_value(json_object_get(json_object_get(span, "status"), "code"));
}

/* Client spans: the OTel HTTP client attributes, error.type, agate.attempt;
 * status ERROR for a failed attempt and for any 4xx/5xx answer. */
static void test_client_span_json(void **state)
{
    struct collector *c = collector_start(M_OK);
    char ep[128];
    otlp_span_t ok, refused, rejected, full;
    json_t *root, *spans, *s;

    endpoint_of(c, ep, sizeof ep);
    assert_int_equal(otlp_init(ep, "agate", 1, 16, 20, 100), 0);
    make_client_span(&ok, 2, 200, NULL);
    make_client_span(&refused, 1, 0, "connect");
    make_client_span(&rejected, 3, 404, NULL);    /* not flagged: the status alone makes it an error */
    make_client_span(&full, 4, 200, NULL);
    memset(full.url_path, 'p', sizeof full.url_path);    /* full fields, no terminator */
    memset(full.server_address, 'h', sizeof full.server_address);
    full.server_address[5] = (char)0xff;                  /* ill-formed UTF-8 */
    memset(full.error_type, 'e', sizeof full.error_type);
    full.error = true;
    assert_true(otlp_put(0, &refused));
    assert_true(otlp_put(0, &ok));
    assert_true(otlp_put(0, &rejected));
    assert_true(otlp_put(0, &full));
    assert_int_equal(otlp_start(), 0);
    WAIT_FOR(st_.exported == 4);
    otlp_stop();
    assert_int_equal(bodies_now(c), 1);
    spans = spans_of(c->bodies[0], &root);
    assert_int_equal(json_array_size(spans), 4);

    s = span_by_attempt(spans, "2");
    assert_string_equal(str_at(s, "name"), "POST");
    assert_int_equal(json_integer_value(json_object_get(s, "kind")), 3);
    assert_string_equal(str_at(s, "parentSpanId"), "f0f1f2f3f4f5f6f7");
    assert_string_equal(str_at(attr(s, "http.request.method"), "stringValue"), "POST");
    assert_string_equal(str_at(attr(s, "server.address"), "stringValue"), "agent.internal");
    assert_string_equal(str_at(attr(s, "server.port"), "intValue"), "8000");
    assert_string_equal(str_at(attr(s, "url.path"), "stringValue"), "/v1/run");
    assert_string_equal(str_at(attr(s, "http.response.status_code"), "intValue"), "200");
    assert_string_equal(str_at(attr(s, "agate.agent"), "stringValue"), "echo");
    assert_string_equal(str_at(attr(s, "agate.request_id"), "stringValue"), "req-2");
    assert_null(attr(s, "error.type"));
    assert_null(attr(s, "http.route"));
    assert_null(attr(s, "agate.events"));
    assert_int_equal(status_code(s), 0);

    s = span_by_attempt(spans, "1");    /* no answer: no status code, error.type says why */
    assert_null(attr(s, "http.response.status_code"));
    assert_string_equal(str_at(attr(s, "error.type"), "stringValue"), "connect");
    assert_int_equal(status_code(s), 2);

    s = span_by_attempt(spans, "3");
    assert_string_equal(str_at(attr(s, "http.response.status_code"), "intValue"), "404");
    assert_int_equal(status_code(s), 2);

    s = span_by_attempt(spans, "4");
    assert_int_equal(strlen(str_at(attr(s, "url.path"), "stringValue")), OTLP_URL_PATH_MAX);
    assert_int_equal(strlen(str_at(attr(s, "server.address"), "stringValue")), OTLP_SERVER_ADDR_MAX);
    assert_int_equal(str_at(attr(s, "server.address"), "stringValue")[5], '?');
    assert_int_equal(strlen(str_at(attr(s, "error.type"), "stringValue")), sizeof full.error_type);
    assert_int_equal(status_code(s), 2);
    json_decref(root);
    collector_stop(c);
}

/* Spans beyond max_batch go in further requests, over the same connection. */
static void test_batch_split(void **state)
{
    struct collector *c = collector_start(M_OK);
    char ep[128];
    otlp_span_t s;
    size_t sizes[4] = { 3, 3, 3, 1 };

    endpoint_of(c, ep, sizeof ep);
    assert_int_equal(otlp_init(ep, "agate", 1, 16, 20, 3), 0);
    for (unsigned i = 0; i < 10; i++) {
        make_span(&s, i, i % 2);
        assert_true(otlp_put(0, &s));
    }
    assert_int_equal(otlp_start(), 0);
    WAIT_FOR(st_.exported == 10);
    otlp_stop();
    assert_int_equal(bodies_now(c), 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *root, *spans = spans_of(c->bodies[i], &root);
        size_t k;
        json_t *sp;

        assert_int_equal(json_array_size(spans), sizes[i]);
        json_array_foreach(spans, k, sp) {
            unsigned n = (unsigned)(i * 3 + k);
            char want[17];

            snprintf(want, sizeof want, "10111213141516%02x", n);
            assert_string_equal(str_at(sp, "spanId"), want);    /* ring order kept */
            assert_int_equal(json_object_get(sp, "parentSpanId") != NULL, n % 2);
        }
        json_decref(root);
    }
    assert_int_equal(conns_now(c), 1);    /* keep-alive */
    collector_stop(c);
}

static void test_ring_full(void **state)
{
    struct collector *c = collector_start(M_OK);
    char ep[128];
    otlp_span_t s;
    otlp_stats_t st;

    endpoint_of(c, ep, sizeof ep);
    assert_int_equal(otlp_init(ep, "agate", 2, 5, 20, 100), 0);    /* 5 -> 8 slots */
    make_span(&s, 0, false);
    for (int i = 0; i < 8; i++)
        assert_true(otlp_put(0, &s));
    assert_false(otlp_put(0, &s));
    assert_false(otlp_put(0, &s));
    assert_true(otlp_put(1, &s));    /* rings are independent */
    otlp_get_stats(&st);
    assert_int_equal(st.dropped, 2);
    assert_int_equal(st.exported, 0);

    assert_int_equal(otlp_start(), 0);
    WAIT_FOR(st_.exported == 9);
    for (int i = 0; i < 8; i++)    /* room again once drained */
        assert_true(otlp_put(0, &s));
    WAIT_FOR(st_.exported == 17);
    otlp_stop();
    otlp_get_stats(&st);
    assert_int_equal(st.dropped, 2);    /* still there after stop */
    assert_int_equal(st.failed_batches, 0);
    collector_stop(c);
}

/* A non-2xx answer fails the batch, drops its spans, and is not retried. */
static void test_server_error(void **state)
{
    struct collector *c = collector_start(M_FAIL);
    char ep[128];
    otlp_span_t s;
    otlp_stats_t st;

    endpoint_of(c, ep, sizeof ep);
    assert_int_equal(otlp_init(ep, "agate", 1, 16, 20, 2), 0);
    make_span(&s, 0, false);
    for (int i = 0; i < 4; i++)
        assert_true(otlp_put(0, &s));
    assert_int_equal(otlp_start(), 0);
    WAIT_FOR(st_.dropped == 4);
    sleep_ms(100);    /* a few more ticks: nothing is sent again */
    otlp_stop();
    otlp_get_stats(&st);
    assert_int_equal(st.exported, 0);
    assert_int_equal(st.dropped, 4);
    assert_int_equal(st.failed_batches, 2);
    assert_int_equal(bodies_now(c), 2);
    assert_int_equal(conns_now(c), 1);    /* a 500 with a length keeps the connection */
    collector_stop(c);
}

static void test_reconnects(void **state)
{
    static const enum mode modes[] = { M_CLOSE, M_DROP_IDLE };

    for (size_t m = 0; m < 2; m++) {
        struct collector *c = collector_start(modes[m]);
        char ep[128];
        otlp_span_t s;
        otlp_stats_t st;

        endpoint_of(c, ep, sizeof ep);
        assert_int_equal(otlp_init(ep, "agate", 1, 16, 10, 100), 0);
        assert_int_equal(otlp_start(), 0);
        make_span(&s, 0, false);
        for (int i = 1; i <= 3; i++) {
            assert_true(otlp_put(0, &s));
            WAIT_FOR(st_.exported == (uint64_t)i);
            sleep_ms(30);    /* let the collector's close land before the next batch */
        }
        otlp_stop();
        otlp_get_stats(&st);
        assert_int_equal(st.failed_batches, 0);
        assert_int_equal(st.dropped, 0);
        assert_int_equal(conns_now(c), 3);
        collector_stop(c);
    }
}

static void test_no_collector(void **state)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char ep[128];
    otlp_span_t s;
    otlp_stats_t st;

    /* a port that was free a moment ago: connection refused */
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    snprintf(ep, sizeof ep, "http://localhost:%u/v1/traces", ntohs(sa.sin_port));
    assert_int_equal(otlp_init(ep, "agate", 1, 16, 10, 100), 0);
    make_span(&s, 0, false);
    assert_true(otlp_put(0, &s));
    assert_int_equal(otlp_start(), 0);
    WAIT_FOR(st_.failed_batches == 1);
    assert_true(otlp_put(0, &s));
    assert_true(otlp_put(0, &s));
    otlp_stop();    /* the final attempt fails too */
    otlp_get_stats(&st);
    assert_int_equal(st.exported, 0);
    assert_int_equal(st.dropped, 3);
    assert_true(st.failed_batches >= 2);
}

/* A collector that accepts and then says nothing must not hold otlp_stop. */
static void test_hung_collector_stop_bounded(void **state)
{
    struct collector *c = collector_start(M_HANG);
    char ep[128];
    otlp_span_t s;
    otlp_stats_t st;
    uint64_t t0, took;
    int conns = 0;

    endpoint_of(c, ep, sizeof ep);
    assert_int_equal(otlp_init(ep, "agate", 1, 64, 10, 2), 0);
    make_span(&s, 0, false);
    for (int i = 0; i < 4; i++)
        assert_true(otlp_put(0, &s));
    assert_int_equal(otlp_start(), 0);
    for (uint64_t until = clock_mono_ms() + 3000; !conns && clock_mono_ms() < until; sleep_ms(5)) {
        conns = conns_now(c);
    }
    assert_true(conns >= 1);
    for (int i = 0; i < 10; i++)
        assert_true(otlp_put(0, &s));
    t0 = clock_mono_ms();
    otlp_stop();
    took = clock_mono_ms() - t0;
    if (took > 7000) {
        print_error("otlp_stop took %llu ms\n", (unsigned long long)took);
        fail();
    }
    otlp_get_stats(&st);
    assert_int_equal(st.exported, 0);
    assert_int_equal(st.dropped, 14);    /* every span accounted for */
    assert_true(st.failed_batches >= 1);
    collector_stop(c);
}

struct producer {
    unsigned ring, n, accepted;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    otlp_span_t s;

    for (unsigned i = 0; i < p->n; i++) {
        make_span(&s, i, i & 1);
        p->accepted += otlp_put(p->ring, &s);
        if (i % 64 == 0)
            sleep_ms(1);    /* bursts, so that some get through and some do not */
    }
    return NULL;
}

/* Producers racing the exporter: every span is exported or dropped, exactly once. */
static void test_concurrent_producers(void **state)
{
    struct collector *c = collector_start(M_OK);
    struct producer p[3];
    pthread_t t[3];
    char ep[128];
    otlp_stats_t st;
    unsigned accepted = 0;

    endpoint_of(c, ep, sizeof ep);
    assert_int_equal(otlp_init(ep, "agate", 3, 64, 1, 50), 0);
    assert_int_equal(otlp_start(), 0);
    for (unsigned i = 0; i < 3; i++) {
        p[i] = (struct producer){ .ring = i, .n = 3000 };
        assert_int_equal(pthread_create(&t[i], NULL, produce, &p[i]), 0);
    }
    for (unsigned i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        accepted += p[i].accepted;
    }
    otlp_stop();
    otlp_get_stats(&st);
    assert_true(accepted > 0);
    assert_int_equal(st.exported + st.dropped, 9000);
    assert_int_equal(st.dropped, 9000 - accepted);    /* the collector answers: only full rings drop */
    coll_lock(c);
    assert_int_equal(c->spans, st.exported);
    coll_unlock(c);
    collector_stop(c);
}

/* otlp_stop without otlp_start: queued spans are dropped, counted, freed. */
static void test_stop_without_start(void **state)
{
    otlp_span_t s;
    otlp_stats_t st;

    assert_int_equal(otlp_init("http://127.0.0.1:9/v1/traces", "agate", 3, 4, 1000, 10), 0);
    make_span(&s, 0, false);
    assert_true(otlp_put(0, &s));
    assert_true(otlp_put(2, &s));
    otlp_stop();
    assert_false(otlp_enabled());
    assert_false(otlp_put(0, &s));
    otlp_get_stats(&st);
    assert_int_equal(st.dropped, 2);
    assert_int_equal(st.exported, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_endpoint),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_export_json),
        cmocka_unit_test(test_client_span_json),
        cmocka_unit_test(test_batch_split),
        cmocka_unit_test(test_ring_full),
        cmocka_unit_test(test_server_error),
        cmocka_unit_test(test_reconnects),
        cmocka_unit_test(test_no_collector),
        cmocka_unit_test(test_hung_collector_stop_bounded),
        cmocka_unit_test(test_stop_without_start),
        cmocka_unit_test(test_concurrent_producers),
    };
    return cmocka_run_group_tests_name("otlp", tests, NULL, NULL);
}
