/* redis: the reply path (core/redis_proto.c: bounded reply objects, FIFO
 * matching) and the client's connection (core/redis.c) on a real engine,
 * once on io_uring and once on epoll, against a fake Redis in this test (a
 * loopback listener it reads and answers by hand), with the clock a number
 * the test moves: commands of one turn leave in one send and are answered in
 * order, a cancelled command's reply is dropped, max_pending and "down"
 * refuse at once, a command past command_timeout gets -ETIMEDOUT and the
 * connection is made again after the backoff, a server that closes fails
 * what is pending with -ECONNRESET, stop completes it with -ECANCELED and
 * leaves nothing in flight, EVALSHA answered NOSCRIPT loads the scripts
 * again. The io_uring ones skip when the kernel has no io_uring. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/redis_int.h"
#include "core/shard.h"

/* ---- the reply path alone ---- */

typedef struct got {
    int      n;
    uint64_t tags[16];
    int      types[16];
    long long ints[16];
} got_t;

static int on_reply(void *arg, const rp_entry_t *e, const redisReply *rep)
{
    got_t *g = arg;
    g->tags[g->n] = e->tag;
    g->types[g->n] = rep->type;
    g->ints[g->n] = rep->type == REDIS_REPLY_INTEGER ? rep->integer : rep->type == REDIS_REPLY_ARRAY ? (long long)rep->elements : (long long)rep->len;
    g->n++;
    return 0;
}

static void queue(rp_fifo_t *f, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        rp_entry_t e = {.tag = 100 + i};
        rp_fifo_push(f, &e);
    }
}

static void test_proto_fifo_order(void **state)
{
    rp_reader_t rd = {0};
    rp_fifo_t f = {0};
    got_t g = {0};
    assert_int_equal(rp_reader_init(&rd, 4096), 0);
    assert_int_equal(rp_fifo_init(&f, 4), 0);
    queue(&f, 3);
    const char *in = ":7\r\n*2\r\n$3\r\nabc\r\n$-1\r\n+OK\r\n";
    /* byte by byte: a reply split anywhere is put together */
    for (size_t i = 0; in[i]; i++)
        assert_int_equal(rp_feed(&rd, &f, in + i, 1, on_reply, &g), 0);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.tags[0], 100);
    assert_int_equal(g.ints[0], 7);
    assert_int_equal(g.tags[1], 101);
    assert_int_equal(g.types[1], REDIS_REPLY_ARRAY);
    assert_int_equal(g.ints[1], 2);
    assert_int_equal(g.tags[2], 102);
    assert_int_equal(g.types[2], REDIS_REPLY_STATUS);
    /* one more reply than commands: out of step */
    assert_int_equal(rp_feed(&rd, &f, ":1\r\n", 4, on_reply, &g), -EPROTO);
    rp_fifo_free(&f);
    rp_reader_free(&rd);
}

static void test_proto_bounds(void **state)
{
    static const struct { const char *in; bool over; } cases[] = {
        {"$5000\r\n", false},                                        /* not yet over: only the header is in */
        {"*100000\r\n", true},                                       /* the element vector alone is over */
        {"*2147483647\r\n", true},
        {"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", false},   /* too deep: hiredis's own error */
        {"?what\r\n", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_reader_t rd = {0};
        rp_fifo_t f = {0};
        got_t g = {0};
        assert_int_equal(rp_reader_init(&rd, 4096), 0);
        assert_int_equal(rp_fifo_init(&f, 4), 0);
        queue(&f, 1);
        int rc = rp_feed(&rd, &f, cases[i].in, strlen(cases[i].in), on_reply, &g);
        if (i == 0) {
            assert_int_equal(rc, 0);
            /* the bulk's bytes past the bound, buffered: refused at the feed */
            char big[5000];
            memset(big, 'x', sizeof big);
            rc = rp_feed(&rd, &f, big, sizeof big, on_reply, &g);
            assert_true(rd.over);
        }
        assert_int_equal(rc, -EPROTO);
        assert_int_equal(rd.over, cases[i].over || i == 0);
        assert_int_equal(g.n, 0);
        rp_fifo_free(&f);
        rp_reader_free(&rd);
    }
    /* many small replies in one feed: each is bounded on its own, not together */
    rp_reader_t rd = {0};
    rp_fifo_t f = {0};
    got_t g = {0};
    assert_int_equal(rp_reader_init(&rd, 1024), 0);
    assert_int_equal(rp_fifo_init(&f, 16), 0);
    queue(&f, 16);
    char in[16 * 120];
    size_t n = 0;
    for (int i = 0; i < 16; i++)
        n += (size_t)sprintf(in + n, "$100\r\n%0100d\r\n", i);
    assert_int_equal(rp_feed(&rd, &f, in, n, on_reply, &g), 0);
    assert_int_equal(g.n, 16);
    assert_false(rd.over);
    rp_fifo_free(&f);
    rp_reader_free(&rd);
}

static void test_proto_handles(void **state)
{
    rp_fifo_t f = {0};
    assert_int_equal(rp_fifo_init(&f, 2), 0);
    rp_entry_t e = {.tag = 1};
    uint64_t h1 = rp_fifo_push(&f, &e), h2 = rp_fifo_push(&f, &e);
    assert_true(h1 && h2 && h1 != h2);
    assert_non_null(rp_fifo_find(&f, h2));
    rp_fifo_pop(&f);
    assert_null(rp_fifo_find(&f, h1));   /* answered: a late cancel finds nothing */
    assert_null(rp_fifo_find(&f, 0));
    assert_null(rp_fifo_find(&f, h2 + 1));
    rp_fifo_free(&f);
}

/* rp_format writes the bytes hiredis's own formatter writes, for every
 * argument shape a command has (empty, binary, long, many). */
static void test_proto_format(void **state)
{
    (void)state;
    static char big[70000];
    memset(big, 'x', sizeof big);
    big[5] = '\0';
    big[6] = '\r';
    const char *argv[300];
    size_t lens[300];
    for (int argc = 1; argc < 300; argc += 37) {
        for (int i = 0; i < argc; i++) {
            lens[i] = (size_t)(i * 7919) % (i % 5 == 4 ? sizeof big : 40);
            argv[i] = big + (i % 3);
            if (lens[i] + (size_t)(i % 3) > sizeof big)
                lens[i] = sizeof big - (size_t)(i % 3);
        }
        char *want = NULL;
        int wn = redisFormatCommandArgv(&want, argc, argv, lens);
        assert_true(wn > 0);
        buf_t b = {0};
        assert_int_equal(buf_append_lit(&b, "PRE"), 0);
        assert_int_equal(rp_format(&b, argc, argv, lens), 0);
        assert_int_equal(b.len, 3 + (size_t)wn);
        assert_memory_equal(b.data + 3, want, (size_t)wn);
        free(want);
        buf_free(&b);
    }
}

/* ---- the connection on a real engine ---- */

typedef struct rig {
    cfg_t    cfg;
    shard_t  sh;
    const shard_mod_ops_t *ops;
    int      lfd;         /* the fake Redis's listener */
    int      sfd;         /* its accepted connection, -1 when none */
    buf_t    in;          /* what the fake Redis read */
    bool     ok;
    /* replies the callbacks saw */
    int      n;
    uint64_t tags[32];
    int      errs[32];
    long long ints[32];
} rig_t;

static rig_t R;
static unsigned g_script;

static void cb(shard_t *sh, void *ctx, uint64_t tag, const redisReply *rep, int err)
{
    assert_ptr_equal(ctx, &R);
    R.tags[R.n] = tag;
    R.errs[R.n] = err;
    R.ints[R.n] = rep ? (rep->type == REDIS_REPLY_INTEGER ? rep->integer : -rep->type) : 0;
    R.n++;
}

static void dispatch(void *ctx, eng_cqe_t *cqe) { redis_dispatch(ctx, cqe); }   /* others: the connect's linked timeout */

/* One loop turn as core/shard.c makes it: wait (bounded), completions,
 * timers at the test's clock, turn_end (the send); then the fake server reads. */
static void rig_turn(unsigned wait_ms)
{
    eng_submit_and_wait(&R.sh.eng, wait_ms);
    eng_reap(&R.sh.eng, dispatch, &R.sh);
    timer_run(&R.sh.timers, R.sh.now_ms);
    R.ops->turn_end(&R.sh);
    eng_submit_and_wait(&R.sh.eng, 0);
    eng_reap(&R.sh.eng, dispatch, &R.sh);
    if (R.sfd < 0) {
        R.sfd = accept4(R.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    }
    char tmp[4096];
    ssize_t k;
    while (R.sfd >= 0 && (k = read(R.sfd, tmp, sizeof tmp)) > 0)
        buf_append(&R.in, tmp, (size_t)k);
}

/* cond is evaluated once per turn (server_got consumes what it matched). */
#define TURN_UNTIL(cond)                                   \
    do {                                                   \
        bool ok_ = false;                                  \
        for (int i_ = 0; i_ < 200 && !(ok_ = (cond)); i_++) \
            rig_turn(5);                                   \
        assert_true(ok_);                                  \
    } while (0)

/* The RESP hiredis makes of the command (what agate must have sent). */
static bool server_got(const char *fmt, ...)
{
    char *want = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = redisvFormatCommand(&want, fmt, ap);
    va_end(ap);
    bool ok = n > 0 && R.in.len >= (size_t)n && !memcmp(R.in.data, want, (size_t)n);
    if (ok) {
        memmove(R.in.data, R.in.data + n, R.in.len - (size_t)n);
        R.in.len -= (size_t)n;
    }
    free(want);
    return ok;
}

static void server_say(const char *s) { assert_int_equal(write(R.sfd, s, strlen(s)), (ssize_t)strlen(s)); }

static bool up(void) { return redis_up(&R.sh); }

/* Accepts agate's connection and answers its handshake: SCRIPT LOAD, PING. */
static void server_handshake(void)
{
    TURN_UNTIL(R.sfd >= 0 && R.in.len > 0 && memmem(R.in.data, R.in.len, "PING", 4));
    assert_true(server_got("SCRIPT LOAD %s", "return 1"));
    assert_true(server_got("PING"));
    char sha[64];
    snprintf(sha, sizeof sha, "$40\r\n%s\r\n+PONG\r\n", redis_script_sha(g_script));
    server_say(sha);
    TURN_UNTIL(up());
}

static int rig_setup_on(eng_backend_t backend)
{
    memset(&R, 0, sizeof R);
    R.lfd = R.sfd = -1;
    redis_register();
    if (!redis_script_count())
        g_script = redis_script_register("return 1");
    R.ops = redis_mod_ops();
    R.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (R.lfd < 0 || bind(R.lfd, (struct sockaddr *)&a, sizeof a) || listen(R.lfd, 8) ||
        getsockname(R.lfd, (struct sockaddr *)&a, &al))
        return -1;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(a.sin_port));
    cfg_defaults(&R.cfg);
    setenv("AGATE_REDIS_ADDRESS", addr, 1);
    setenv("AGATE_REDIS_MAX_PENDING", "3", 1);
    char err[256];
    int rc = cfg_apply_env(&R.cfg, err, sizeof err);
    unsetenv("AGATE_REDIS_ADDRESS");
    unsetenv("AGATE_REDIS_MAX_PENDING");
    if (rc)
        return -1;
    R.sh.cfg = &R.cfg;
    R.sh.now_ms = 1000;
    R.sh.now_us = 1000000;
    R.sh.rng.s[0] = 1;
    if (eng_init(&R.sh.eng, backend, &R.sh.timers, &R.sh.now_ms))
        return backend == ENG_EPOLL ? -1 : 0;   /* no io_uring: each test skips */
    if (R.ops->open(&R.sh, err, sizeof err) || R.ops->init(&R.sh))
        return -1;
    R.ok = true;
    R.ops->start(&R.sh);
    return 0;
}

static int rig_setup(void **state) { return rig_setup_on(ENG_IO_URING); }
static int rig_setup_epoll(void **state) { return rig_setup_on(ENG_EPOLL); }

static int rig_teardown(void **state)
{
    if (R.ok) {
        R.ops->stop(&R.sh);
        for (int i = 0; i < 200 && R.ops->inflight(&R.sh); i++)
            rig_turn(5);
        assert_false(R.ops->inflight(&R.sh));
        R.ops->free(&R.sh);
        R.ops->close(&R.sh);
        eng_exit(&R.sh.eng);
    }
    timer_heap_free(&R.sh.timers);
    if (R.sfd >= 0)
        close(R.sfd);
    if (R.lfd >= 0)
        close(R.lfd);
    buf_free(&R.in);
    return 0;
}

#define SKIP_WITHOUT_ENGINE() do { if (!R.ok) skip(); } while (0)

static uint64_t cmd(uint64_t tag, const char *a0, const char *a1)
{
    const char *argv[] = {a0, a1};
    size_t lens[] = {strlen(a0), a1 ? strlen(a1) : 0};
    return redis_cmd(&R.sh, cb, &R, tag, a1 ? 2 : 1, argv, lens);
}

static const redis_metrics_t *M(void) { return redis_shard_metrics(&R.sh); }

static void test_pipeline_fifo_cancel(void **state)
{
    SKIP_WITHOUT_ENGINE();
    assert_false(up());
    assert_int_equal(cmd(1, "INCR", "a"), 0);   /* not up yet: refused at once, no callback */
    assert_int_equal(M()->commands[RR_REFUSED], 1);
    server_handshake();
    uint64_t trips = M()->round_trips;
    uint64_t h1 = cmd(1, "INCR", "a"), h2 = cmd(2, "INCR", "b"), h3 = cmd(3, "INCR", "c");
    assert_true(h1 && h2 && h3);
    assert_false(up());                           /* max_pending (3) reached */
    assert_int_equal(cmd(4, "INCR", "d"), 0);
    assert_int_equal(R.n, 0);                     /* never inside redis_cmd */
    redis_cancel(&R.sh, h2);
    TURN_UNTIL(R.in.len > 0);
    assert_int_equal(M()->round_trips, trips + 1);   /* the turn's three commands in one send */
    assert_true(server_got("INCR a"));
    assert_true(server_got("INCR b"));
    assert_true(server_got("INCR c"));
    assert_int_equal(M()->pending, 3);
    server_say(":10\r\n:20\r\n:30\r\n");
    TURN_UNTIL(R.n == 2);
    assert_int_equal(R.tags[0], 1);
    assert_int_equal(R.ints[0], 10);
    assert_int_equal(R.tags[1], 3);               /* 2 was cancelled: its reply is dropped */
    assert_int_equal(R.ints[1], 30);
    assert_int_equal(M()->pending, 0);
    assert_int_equal(M()->commands[RR_OK] >= 3, 1);
    assert_true(up());
    redis_cancel(&R.sh, h1);                      /* answered already: nothing happens */
}

static void test_timeout_reconnect(void **state)
{
    SKIP_WITHOUT_ENGINE();
    server_handshake();
    assert_true(cmd(7, "GET", "k"));
    TURN_UNTIL(server_got("GET k"));
    R.sh.now_ms += redis_conf(&R.cfg)->command_timeout_ms;   /* no reply within command_timeout */
    R.sh.now_us += redis_conf(&R.cfg)->command_timeout_ms * 1000u;
    TURN_UNTIL(R.n == 1);
    assert_int_equal(R.errs[0], -ETIMEDOUT);
    assert_false(up());
    assert_int_equal(M()->commands[RR_TIMEOUT], 1);
    assert_int_equal(M()->up, 0);
    /* the connection is closed: the server reads EOF */
    char c;
    TURN_UNTIL(read(R.sfd, &c, 1) == 0);
    close(R.sfd);
    R.sfd = -1;
    R.in.len = 0;
    assert_int_equal(cmd(8, "GET", "k"), 0);      /* down: refused */
    /* after the backoff (at most reconnect_min), a new connection */
    R.sh.now_ms += redis_conf(&R.cfg)->reconnect_min_ms;
    server_handshake();
    assert_int_equal(M()->connects_ok, 2);
    assert_int_equal(M()->up, 1);
}

static void test_server_close_and_stop(void **state)
{
    SKIP_WITHOUT_ENGINE();
    server_handshake();
    assert_true(cmd(1, "GET", "x"));
    TURN_UNTIL(server_got("GET x"));
    shutdown(R.sfd, SHUT_WR);                     /* Redis goes away with a command pending */
    TURN_UNTIL(R.n == 1);
    assert_int_equal(R.errs[0], -ECONNRESET);
    assert_int_equal(M()->commands[RR_FAILED], 1);
    close(R.sfd);
    R.sfd = -1;
    R.in.len = 0;
    R.sh.now_ms += redis_conf(&R.cfg)->reconnect_min_ms;
    server_handshake();
    assert_true(cmd(2, "GET", "y"));
    TURN_UNTIL(server_got("GET y"));
    R.ops->stop(&R.sh);                           /* shutdown with it pending */
    assert_int_equal(R.n, 2);
    assert_int_equal(R.errs[1], -ECANCELED);
    assert_int_equal(cmd(3, "GET", "z"), 0);
}

static void test_evalsha_noscript(void **state)
{
    SKIP_WITHOUT_ENGINE();
    server_handshake();
    const char *argv[] = {"agate:k", "5"};
    size_t lens[] = {7, 1};
    assert_true(redis_evalsha(&R.sh, g_script, cb, &R, 9, 1, 2, argv, lens));
    char want[128];
    snprintf(want, sizeof want, "EVALSHA %s 1 agate:k 5", redis_script_sha(g_script));
    TURN_UNTIL(server_got(want));
    server_say("-NOSCRIPT No matching script. Please use EVAL.\r\n");
    TURN_UNTIL(R.n == 1);
    assert_int_equal(R.errs[0], 0);
    assert_int_equal(R.ints[0], -REDIS_REPLY_ERROR);   /* the caller gets the error and falls back */
    TURN_UNTIL(server_got("SCRIPT LOAD %s", "return 1"));   /* and the scripts are loaded again */
    assert_true(up());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proto_fifo_order),
        cmocka_unit_test(test_proto_bounds),
        cmocka_unit_test(test_proto_handles),
        cmocka_unit_test(test_proto_format),
        cmocka_unit_test_setup_teardown(test_pipeline_fifo_cancel, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_reconnect, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_server_close_and_stop, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_evalsha_noscript, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_fifo_cancel, rig_setup_epoll, rig_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_reconnect, rig_setup_epoll, rig_teardown),
        cmocka_unit_test_setup_teardown(test_server_close_and_stop, rig_setup_epoll, rig_teardown),
        cmocka_unit_test_setup_teardown(test_evalsha_noscript, rig_setup_epoll, rig_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
