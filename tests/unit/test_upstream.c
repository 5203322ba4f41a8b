/* upstream: HTTP/1.1 client connections to agent services (net/upstream.h),
 * on a real shard (tests/support/shardrun.h: its engine and loop), on io_uring
 * and again on epoll, against
 * agent services played by the test on loopback sockets. ups_acquire,
 * ups_send, ups_release and ups_abort run on the shard thread (sr_call); the
 * owner's callbacks record what the connection heard.
 *
 * Response parsing: Content-Length, chunked and close-delimited bodies, the
 * head's status and Content-Type, keep-alive or not. The idle pool: a clean
 * keep-alive response's connection is reused for the next request, a server
 * close while pooled is noticed, a response with bytes after it is not
 * pooled. Failure classification: refused and timed-out connects
 * (UPS_FAIL_CONNECT, -ETIMEDOUT for the timeout), a close before the response
 * ended (UPS_FAIL_RESET), bytes that are no HTTP response (UPS_FAIL_PROTOCOL).
 * An abort is a close the agent sees; pause stops reading until resume. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "tests/support/shardrun.h"

static shardrun_t S;
static uint16_t up_port;
static int up_lfd = -1;

/* What one owner of an upstream connection heard (written on the shard thread). */
typedef struct owner {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    ups_t     *u;
    bool       reused;           /* ups_acquire gave a pooled connection */
    int        heads, status;
    char       ctype[96];
    char       body[65536];
    size_t     body_len;
    bool       done, keep, failed;
    ups_fail_t why;
    int        err;
    bool       release_in_done;  /* hand the connection back from done(), as a proxied run does
                                    (an owner that does not hears fail(PROTOCOL) right after) */
    bool       pause_in_body;    /* ups_pause from the first body() */
    uint16_t   ep;
} owner_t;

static void owner_init(owner_t *o)
{
    memset(o, 0, sizeof *o);
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    o->release_in_done = true;
}

static void owner_free(owner_t *o)
{
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
}

static void on_head(void *p, int status, const char *ctype, size_t n)
{
    owner_t *o = p;
    pthread_mutex_lock(&o->mu);
    o->heads++;
    o->status = status;
    snprintf(o->ctype, sizeof o->ctype, "%.*s", (int)n, ctype);
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static void on_body(void *p, const char *d, size_t n)
{
    owner_t *o = p;
    pthread_mutex_lock(&o->mu);
    if (o->body_len + n < sizeof o->body) {
        memcpy(o->body + o->body_len, d, n);
        o->body_len += n;
        o->body[o->body_len] = 0;
    }
    if (o->pause_in_body) {
        o->pause_in_body = false;
        ups_pause(o->u);
    }
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static void on_done(void *p, bool keep)
{
    owner_t *o = p;
    pthread_mutex_lock(&o->mu);
    o->done = true;
    o->keep = keep;
    if (o->release_in_done) {
        ups_release(o->u, keep);
        o->u = NULL;
    }
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static void on_fail(void *p, ups_fail_t why, int err)
{
    owner_t *o = p;
    pthread_mutex_lock(&o->mu);
    o->failed = true;
    o->why = why;
    o->err = err;
    o->u = NULL;   /* already gone */
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

static const ups_ops_t ops = {on_head, on_body, on_done, on_fail};

#define REQUEST "POST /agent HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}"

/* Shard thread: a connection for endpoint o->ep, and the request on it. */
static void do_acquire(shard_t *sh, void *arg)
{
    owner_t *o = arg;
    pthread_mutex_lock(&o->mu);
    o->u = ups_acquire(sh, 0, o->ep, o, &ops);   /* (no cmocka asserts on this thread) */
    if (!o->u) {
        o->failed = true;
        o->err = -ENOMEM;
        pthread_mutex_unlock(&o->mu);
        return;
    }
    o->reused = o->u->reused;
    buf_append_lit(ups_out(o->u), REQUEST);
    ups_send(o->u);
    pthread_mutex_unlock(&o->mu);
}

static void do_abort(shard_t *sh, void *arg)
{
    owner_t *o = arg;
    pthread_mutex_lock(&o->mu);
    ups_abort(o->u);
    o->u = NULL;
    pthread_mutex_unlock(&o->mu);
}

static void do_resume(shard_t *sh, void *arg)
{
    owner_t *o = arg;
    pthread_mutex_lock(&o->mu);
    ups_resume(o->u);
    pthread_mutex_unlock(&o->mu);
}

/* Waits until the owner is done or failed. */
static void wait_end(owner_t *o)
{
    struct timespec until;
    sr_deadline(&until, SR_WAIT_MS);
    pthread_mutex_lock(&o->mu);
    while (!o->done && !o->failed)
        if (pthread_cond_timedwait(&o->cv, &o->mu, &until) == ETIMEDOUT)
            break;
    bool ended = o->done || o->failed;
    pthread_mutex_unlock(&o->mu);
    assert_true(ended);
}

static void wait_body(owner_t *o, size_t n)
{
    struct timespec until;
    sr_deadline(&until, SR_WAIT_MS);
    pthread_mutex_lock(&o->mu);
    while (o->body_len < n && !o->failed)
        if (pthread_cond_timedwait(&o->cv, &o->mu, &until) == ETIMEDOUT)
            break;
    size_t got = o->body_len;
    pthread_mutex_unlock(&o->mu);
    assert_true(got >= n);
}

static int setup(void **state)
{
    sr_init(&S);
    up_lfd = sr_listen(&up_port, 16);
    uint16_t ports[2] = {up_port, sr_free_port()};   /* endpoint 1: nothing listens there */
    sr_proxy_agent(&S, 0, "up", ports, 2)->connect_timeout_ms = 2000;
    cache_conf_mut(&S.cfg)->max_bytes = 0;
    if (sr_start(&S))
        return 0;
    return 0;
}

static int teardown(void **state)
{
    sr_stop_with(&S, &up_lfd);
    return 0;
}

#define NEED_SHARD() do { if (!S.running) skip(); } while (0)

/* One exchange: acquire + send, accept (or reuse *sfd), read the request, answer `resp`. */
static void exchange(owner_t *o, int *sfd, const char *resp)
{
    sr_call(&S, do_acquire, o);
    if (*sfd < 0)
        *sfd = sr_accept(up_lfd, SR_WAIT_MS);
    assert_true(*sfd >= 0);
    buf_t req = {0};
    assert_true(sr_read_request(*sfd, &req));
    assert_string_equal(req.data, REQUEST);          /* sent as the owner wrote it */
    buf_free(&req);
    sr_write(*sfd, resp);
}

static void test_content_length(void **state)
{
    NEED_SHARD();
    owner_t o;
    owner_init(&o);
    int sfd = -1;
    exchange(&o, &sfd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nContent-Length: 11\r\n\r\n"
                       "hello world");
    wait_end(&o);
    assert_false(o.failed);
    assert_int_equal(o.heads, 1);
    assert_int_equal(o.status, 200);
    assert_string_equal(o.ctype, "text/event-stream; charset=utf-8");
    assert_string_equal(o.body, "hello world");
    assert_true(o.keep);
    assert_false(o.reused);
    close(sfd);
    owner_free(&o);
}

static void test_chunked(void **state)
{
    NEED_SHARD();
    owner_t o;
    owner_init(&o);
    int sfd = -1;
    exchange(&o, &sfd, "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\ncontent-type: text/plain\r\n\r\n"
                       "5\r\nhello\r\n1;ext=1\r\n \r\n");
    wait_body(&o, 6);
    assert_false(o.done);                             /* the body has not ended */
    sr_write(sfd, "5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n");
    wait_end(&o);
    assert_int_equal(o.status, 201);
    assert_string_equal(o.ctype, "text/plain");
    assert_string_equal(o.body, "hello world");
    assert_true(o.keep);
    close(sfd);
    owner_free(&o);
}

/* No length, not chunked: the body ends with the connection, which is then not reusable. */
static void test_close_delimited(void **state)
{
    NEED_SHARD();
    owner_t o;
    owner_init(&o);
    int sfd = -1;
    exchange(&o, &sfd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: 1\n\n");
    wait_body(&o, 9);
    assert_false(o.done);
    sr_write(sfd, "data: 2\n\n");
    shutdown(sfd, SHUT_WR);
    wait_end(&o);
    assert_false(o.failed);
    assert_string_equal(o.body, "data: 1\n\ndata: 2\n\n");
    assert_false(o.keep);
    close(sfd);
    owner_free(&o);
}

/* A clean keep-alive response: the connection goes to the pool and serves the
 * next request (no new connection); a pooled connection the server closes is
 * dropped, and the next request connects again. */
static void test_pool(void **state)
{
    NEED_SHARD();
    owner_t a, b, c;
    owner_init(&a);
    owner_init(&b);
    owner_init(&c);
    int sfd = -1;
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 2\r\n\r\nok";
    exchange(&a, &sfd, ok);
    wait_end(&a);
    assert_true(a.keep);
    int first = sfd;
    exchange(&b, &sfd, ok);                            /* sfd kept: the request must come on it */
    wait_end(&b);
    assert_true(b.reused);
    assert_string_equal(b.body, "ok");
    assert_false(sr_readable(up_lfd, 0));             /* no second connection */
    close(first);                                      /* the server closes the idle connection */
    for (int i = 0; i < 3; i++)
        sr_call(&S, sr_nothing, NULL);                 /* turns in which its EOF is read */
    sfd = -1;
    exchange(&c, &sfd, ok);
    wait_end(&c);
    assert_false(c.reused);                            /* that one was noticed and dropped */
    assert_string_equal(c.body, "ok");
    close(sfd);
    owner_free(&a);
    owner_free(&b);
    owner_free(&c);
}

/* Not reusable: a response that says close, and one followed by bytes nobody asked for. */
static void test_not_pooled(void **state)
{
    NEED_SHARD();
    owner_t a, b, c;
    owner_init(&a);
    owner_init(&b);
    owner_init(&c);
    int sfd = -1;
    exchange(&a, &sfd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    wait_end(&a);
    assert_false(a.keep);
    assert_true(sr_sees_eof(sfd, SR_WAIT_MS));        /* closed, not pooled */
    close(sfd);
    sfd = -1;
    exchange(&b, &sfd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 2\r\n\r\nokEXTRA");
    wait_end(&b);
    assert_true(b.keep);                               /* it looked reusable ... */
    assert_true(sr_sees_eof(sfd, SR_WAIT_MS));        /* ... but the extra bytes close it */
    close(sfd);
    sfd = -1;
    exchange(&c, &sfd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 2\r\n\r\nok");
    wait_end(&c);
    assert_false(c.reused);
    close(sfd);
    owner_free(&a);
    owner_free(&b);
    owner_free(&c);
}

static void test_connect_refused(void **state)
{
    NEED_SHARD();
    owner_t o;
    owner_init(&o);
    o.ep = 1;
    sr_call(&S, do_acquire, &o);
    wait_end(&o);
    assert_true(o.failed);
    assert_int_equal(o.why, UPS_FAIL_CONNECT);
    assert_int_equal(o.err, -ECONNREFUSED);
    assert_int_equal(o.heads, 0);
    owner_free(&o);
}

/* A connect the far side never completes ends at the agent's connect timeout,
 * reported as -ETIMEDOUT (the linked timeout cancelled it). */
static void test_connect_timeout(void **state)
{
    NEED_SHARD();
    sr_stop(&S);
    /* A listener that never accepts, its queue full: further SYNs are dropped. */
    uint16_t bh_port;
    int bh = sr_listen(&bh_port, 0);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(bh_port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    usleep(50000);
    sr_init(&S);
    uint16_t ports[1] = {bh_port};
    sr_proxy_agent(&S, 0, "up", ports, 1)->connect_timeout_ms = 150;
    cache_conf_mut(&S.cfg)->max_bytes = 0;
    if (sr_start(&S))
        skip();
    owner_t o;
    owner_init(&o);
    sr_call(&S, do_acquire, &o);
    wait_end(&o);
    assert_true(o.failed);
    assert_int_equal(o.why, UPS_FAIL_CONNECT);
    assert_int_equal(o.err, -ETIMEDOUT);
    owner_free(&o);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(bh);
}

struct fail_case {
    const char *resp;    /* what the server writes before it closes */
    ups_fail_t  why;
    int         err;
    int         heads;   /* heads heard before the failure */
};

static void test_failures(void **state)
{
    NEED_SHARD();
    const struct fail_case cases[] = {
        {"", UPS_FAIL_RESET, -ECONNRESET, 0},                                          /* closed, nothing said */
        {"HTTP/1.1 200 OK\r\nContent-Type: te", UPS_FAIL_RESET, -ECONNRESET, 0},       /* half a head */
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345", UPS_FAIL_RESET, -ECONNRESET, 1},   /* short body */
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", UPS_FAIL_RESET, -ECONNRESET, 1},
        {"HELLO WORLD\r\n\r\n", UPS_FAIL_PROTOCOL, -EPROTO, 0},                        /* not HTTP */
        {"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", UPS_FAIL_PROTOCOL, -EPROTO, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        owner_t o;
        owner_init(&o);
        int sfd = -1;
        exchange(&o, &sfd, cases[i].resp);
        if (cases[i].why == UPS_FAIL_RESET)
            close(sfd);
        wait_end(&o);
        if (getenv("T_DEBUG"))
            fprintf(stderr, "case %zu: failed %d why %d err %d heads %d\n", i, o.failed, o.why, o.err, o.heads);
        assert_true(o.failed);
        assert_int_equal(o.why, cases[i].why);
        assert_int_equal(o.err, cases[i].err);
        assert_int_equal(o.heads, cases[i].heads);
        assert_false(o.done);
        if (cases[i].why != UPS_FAIL_RESET) {
            assert_true(sr_sees_eof(sfd, SR_WAIT_MS));   /* a connection that spoke garbage is closed */
            close(sfd);
        }
        owner_free(&o);
    }
}

/* The owner aborts: the agent sees the connection close (its run was cancelled). */
static void test_abort_is_seen(void **state)
{
    NEED_SHARD();
    owner_t o;
    owner_init(&o);
    o.release_in_done = false;
    int sfd = -1;
    exchange(&o, &sfd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n");
    wait_body(&o, 5);
    sr_call(&S, do_abort, &o);
    assert_true(sr_sees_eof(sfd, SR_WAIT_MS));
    assert_false(o.done);
    assert_false(o.failed);                            /* an owner that let go hears nothing more */
    close(sfd);
    owner_free(&o);
}

/* Paused, the connection reads nothing more (TCP pushes back on the agent);
 * resumed, the rest arrives. */
static void test_pause_resume(void **state)
{
    NEED_SHARD();
    owner_t o;
    owner_init(&o);
    o.pause_in_body = true;
    int sfd = -1;
    exchange(&o, &sfd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 10\r\n\r\nfirst");
    wait_body(&o, 5);
    usleep(20000);                                     /* the first read is over: the pause holds from here */
    sr_write(sfd, "again");
    for (int i = 0; i < 20; i++)
        sr_call(&S, sr_nothing, NULL);                 /* turns go by, nothing is read */
    usleep(30000);
    sr_call(&S, sr_nothing, NULL);
    pthread_mutex_lock(&o.mu);
    char seen[32];
    snprintf(seen, sizeof seen, "%.31s", o.body);
    bool done = o.done;
    pthread_mutex_unlock(&o.mu);   /* (no assert under the lock: a failure must not leave the shard blocked) */
    assert_string_equal(seen, "first");
    assert_false(done);
    sr_call(&S, do_resume, &o);
    wait_end(&o);
    assert_string_equal(o.body, "firstagain");
    close(sfd);
    owner_free(&o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_content_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_delimited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_pooled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_is_seen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("upstream on io_uring", tests, NULL, NULL);
    sr_backend = CFG_BACKEND_EPOLL;   /* the same, every connect, send and receive made by core/engine_epoll.c */
    return failed + cmocka_run_group_tests_name("upstream on epoll", tests, NULL, NULL);
}
