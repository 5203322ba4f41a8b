/* engine: core/engine.h's operations and the completions they make, on
 * io_uring and on epoll, by the same tests: what a module's handler sees must
 * not depend on the backend. Real sockets on loopback and socketpairs; the
 * loop is pumped here as core/shard.c pumps it (eng_submit_and_wait, then
 * eng_reap), with the shard's timer heap for the connect deadline.
 *
 * Accept (multishot, each fd with MORE, ended by the listener's shutdown and
 * close), multishot receive into the pool's buffers (data with BUFFER and
 * MORE, the peer's close as 0 without MORE, data and close that arrived before
 * the receive was armed, or between two turns), a single receive, a pool run
 * dry (-ENOBUFS ends a multishot receive), send (and a send into a full socket
 * that completes once the peer reads), connect (done, refused, cancelled at
 * its deadline), cancel (-ECANCELED, no MORE), the eventfd read that wakes a
 * shard, and an fd closed with a receive armed. The io_uring group skips when
 * the kernel has no io_uring. */
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
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/engine.h"
#include "core/timer.h"

#define T_WAIT_MS 3000

typedef struct got {
    uint64_t ud;
    int      res;
    uint32_t flags;
    char     data[64];   /* the first bytes of a buffer it carried */
} got_t;

static struct {
    eng_backend_t backend;
    bool          ok;
    eng_t         e;
    eng_bufs_t    b;
    timer_heap_t  timers;
    uint64_t      now_ms;
    bool          keep_bufs;      /* do not give buffers back (to run the pool dry) */
    got_t         got[256];
    unsigned      n, read;        /* recorded; consumed by next() */
} T;

static void on_cqe(void *ctx, eng_cqe_t *c)
{
    if (eng_ud_op(eng_cqe_ud(c)) == UD_IGNORE)
        return;   /* io_uring: a cancel's or a linked timeout's own completion */
    got_t *g = &T.got[T.n++ % 256];
    memset(g, 0, sizeof *g);
    g->ud = eng_cqe_ud(c);
    g->res = c->res;
    g->flags = c->flags;
    if (eng_cqe_has_buf(c)) {
        if (c->res > 0)
            memcpy(g->data, eng_bufs_addr(&T.b, eng_cqe_bid(c)), c->res < 63 ? (size_t)c->res : 63);
        if (!T.keep_bufs)
            eng_bufs_recycle(&T.b, eng_cqe_bid(c));
    }
}

static void turn(unsigned ms)
{
    eng_submit_and_wait(&T.e, ms);
    T.now_ms = clock_mono_us() / 1000;
    eng_reap(&T.e, on_cqe, NULL);
    timer_run(&T.timers, T.now_ms);
}

/* The next completion, waiting up to T_WAIT_MS; NULL if none came. */
static got_t *next(void)
{
    uint64_t until = clock_mono_us() / 1000 + T_WAIT_MS;
    while (T.read == T.n && clock_mono_us() / 1000 < until)
        turn(10);
    return T.read < T.n ? &T.got[T.read++ % 256] : NULL;
}

/* No completion within ms. */
static bool quiet(unsigned ms)
{
    uint64_t until = clock_mono_us() / 1000 + ms;
    while (clock_mono_us() / 1000 < until)
        turn(5);
    return T.read == T.n;
}

static int setup_on(eng_backend_t backend)
{
    memset(&T, 0, sizeof T);
    T.backend = backend;
    T.now_ms = clock_mono_us() / 1000;
    if (eng_init(&T.e, backend, &T.timers, &T.now_ms))
        return backend == ENG_EPOLL ? -1 : 0;   /* no io_uring here: the group skips */
    if (eng_bufs_init(&T.e, &T.b, 1, 4, 64)) {
        eng_exit(&T.e);
        return backend == ENG_EPOLL ? -1 : 0;
    }
    T.ok = true;
    return 0;
}

static int setup_uring(void **state) { return setup_on(ENG_IO_URING); }
static int setup_epoll(void **state) { return setup_on(ENG_EPOLL); }

static int teardown(void **state)
{
    if (T.ok) {
        eng_bufs_free(&T.e, &T.b);
        eng_exit(&T.e);
    }
    timer_heap_free(&T.timers);
    return 0;
}

#define NEED() do { if (!T.ok) skip(); } while (0)

static uint64_t UD(uint32_t slot) { return eng_ud(UD_FIRST_FREE + 1, 7, slot); }

static int listener(uint16_t *port, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, backlog), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static struct sockaddr_in loopback(uint16_t port)
{
    return (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

static int dial(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback(port);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void put(int fd, const char *s) { assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s)); }

/* ---- accept ---- */

static void test_accept_multishot(void **state)
{
    NEED();
    uint16_t port;
    int l = listener(&port, 16);
    eng_accept_multishot(&T.e, l, UD(1));
    int c1 = dial(port), c2 = dial(port);
    for (int i = 0; i < 2; i++) {
        got_t *g = next();
        assert_non_null(g);
        assert_int_equal(g->ud, UD(1));
        assert_true(g->res >= 0);                   /* an accepted fd */
        assert_true(g->flags & ENG_CQE_MORE);       /* and still armed */
        close(g->res);
    }
    /* How net/conns.c closes a listener: shutdown, then close. The accept ends. */
    shutdown(l, SHUT_RDWR);
    eng_close(&T.e, l);
    got_t *g = next();
    assert_non_null(g);
    assert_int_equal(g->ud, UD(1));
    assert_true(g->res < 0);
    assert_false(g->flags & ENG_CQE_MORE);
    close(c1);
    close(c2);
}

/* ---- receive ---- */

static void test_recv_multishot(void **state)
{
    NEED();
    int sv[2];
    pair(sv);
    eng_recv_multishot(&T.e, sv[0], &T.b, UD(2));
    assert_true(quiet(30));
    put(sv[1], "hello");
    got_t *g = next();
    assert_non_null(g);
    assert_int_equal(g->ud, UD(2));
    assert_int_equal(g->res, 5);
    assert_true(g->flags & ENG_CQE_BUFFER);
    assert_true(g->flags & ENG_CQE_MORE);
    assert_string_equal(g->data, "hello");
    put(sv[1], "again");
    g = next();
    assert_non_null(g);
    assert_string_equal(g->data, "again");
    assert_true(g->flags & ENG_CQE_MORE);
    close(sv[1]);                                   /* EOF ends it */
    g = next();
    assert_non_null(g);
    assert_int_equal(g->ud, UD(2));
    assert_int_equal(g->res, 0);
    assert_false(g->flags & ENG_CQE_MORE);
    eng_close(&T.e, sv[0]);
}

/* Data then the peer's close, both before the receive is armed, and both
 * between two turns: each byte, then the EOF, whatever the readiness said. */
static void test_recv_data_then_eof(void **state)
{
    NEED();
    for (int armed_first = 0; armed_first < 2; armed_first++) {
        int sv[2];
        pair(sv);
        if (armed_first) {
            eng_recv_multishot(&T.e, sv[0], &T.b, UD(3));
            assert_true(quiet(20));
        }
        put(sv[1], "abc");
        shutdown(sv[1], SHUT_WR);
        if (!armed_first)
            eng_recv_multishot(&T.e, sv[0], &T.b, UD(3));
        got_t *g = next();
        assert_non_null(g);
        assert_int_equal(g->res, 3);
        assert_string_equal(g->data, "abc");
        g = next();
        assert_non_null(g);
        assert_int_equal(g->res, 0);
        assert_false(g->flags & ENG_CQE_MORE);
        eng_close(&T.e, sv[0]);
        close(sv[1]);
    }
}

static void test_recv_single(void **state)
{
    NEED();
    int sv[2];
    pair(sv);
    put(sv[1], "one");
    eng_recv(&T.e, sv[0], &T.b, UD(4));
    got_t *g = next();
    assert_non_null(g);
    assert_int_equal(g->ud, UD(4));
    assert_int_equal(g->res, 3);
    assert_true(g->flags & ENG_CQE_BUFFER);
    assert_false(g->flags & ENG_CQE_MORE);       /* one receive, one completion */
    put(sv[1], "two");
    assert_true(quiet(30));                       /* nothing armed: nothing read */
    eng_recv(&T.e, sv[0], &T.b, UD(4));
    g = next();
    assert_non_null(g);
    assert_string_equal(g->data, "two");
    eng_close(&T.e, sv[0]);
    close(sv[1]);
}

/* Buffers kept by their handlers run the pool dry: the multishot receive
 * ends with -ENOBUFS, as io_uring ends it. */
static void test_recv_pool_dry(void **state)
{
    NEED();
    int sv[2];
    pair(sv);
    T.keep_bufs = true;
    eng_recv_multishot(&T.e, sv[0], &T.b, UD(5));
    got_t *g;
    unsigned data = 0;
    for (int i = 0; i < 8; i++) {
        put(sv[1], "x");
        g = next();
        assert_non_null(g);
        if (g->res == -ENOBUFS)
            break;
        assert_int_equal(g->res, 1);
        data++;
    }
    assert_int_equal(g->res, -ENOBUFS);
    assert_false(g->flags & ENG_CQE_MORE);
    assert_int_equal(data, T.b.count);            /* every buffer, then the refusal */
    eng_close(&T.e, sv[0]);
    close(sv[1]);
}

/* ---- send ---- */

static void test_send(void **state)
{
    NEED();
    int sv[2];
    pair(sv);
    eng_send(&T.e, sv[0], "ping", 4, UD(6));
    got_t *g = next();
    assert_non_null(g);
    assert_int_equal(g->ud, UD(6));
    assert_int_equal(g->res, 4);
    char buf[8] = {0};
    assert_int_equal(read(sv[1], buf, sizeof buf), 4);
    assert_string_equal(buf, "ping");

    /* A full socket: the send waits for room, then completes. */
    static char big[65536];
    while (send(sv[0], big, sizeof big, MSG_DONTWAIT) > 0)
        ;
    eng_send(&T.e, sv[0], "tail", 4, UD(7));
    assert_true(quiet(50));
    int fl = fcntl(sv[1], F_GETFL);
    fcntl(sv[1], F_SETFL, fl | O_NONBLOCK);
    while (read(sv[1], big, sizeof big) > 0)
        ;
    g = next();
    assert_non_null(g);
    assert_int_equal(g->ud, UD(7));
    assert_int_equal(g->res, 4);

    /* The peer gone: the send fails (MSG_NOSIGNAL: no SIGPIPE). */
    close(sv[1]);
    eng_send(&T.e, sv[0], "lost", 4, UD(8));
    g = next();
    assert_non_null(g);
    assert_int_equal(g->res, -EPIPE);
    eng_close(&T.e, sv[0]);
}

/* ---- connect ---- */

static void test_connect(void **state)
{
    NEED();
    uint16_t port;
    int l = listener(&port, 16);
    struct sockaddr_in a = loopback(port);
    struct __kernel_timespec ts = {.tv_sec = 2};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);   /* blocking, as net/upstream.c makes it */
    eng_connect(&T.e, fd, (struct sockaddr *)&a, sizeof a, &ts, UD(9));
    got_t *g = next();
    assert_non_null(g);
    assert_int_equal(g->ud, UD(9));
    assert_int_equal(g->res, 0);
    int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    assert_true(s >= 0);
    eng_send(&T.e, fd, "hi", 2, UD(10));           /* usable once connected */
    g = next();
    assert_non_null(g);
    assert_int_equal(g->res, 2);
    close(s);
    eng_close(&T.e, fd);
    close(l);

    /* Nothing listens: refused. */
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    eng_connect(&T.e, fd, (struct sockaddr *)&a, sizeof a, &ts, UD(11));
    g = next();
    assert_non_null(g);
    assert_int_equal(g->ud, UD(11));
    assert_int_equal(g->res, -ECONNREFUSED);
    eng_close(&T.e, fd);
}

/* A connect the far side never completes is cancelled at its deadline. */
static void test_connect_deadline(void **state)
{
    NEED();
    uint16_t port;
    int l = listener(&port, 0), fill[4];
    struct sockaddr_in a = loopback(port);
    for (int i = 0; i < 4; i++) {   /* its queue full: further SYNs are dropped */
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    usleep(50000);
    struct __kernel_timespec ts = {.tv_nsec = 100 * 1000000};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    uint64_t t0 = clock_mono_us();
    eng_connect(&T.e, fd, (struct sockaddr *)&a, sizeof a, &ts, UD(12));
    got_t *g = next();
    assert_non_null(g);
    assert_int_equal(g->ud, UD(12));
    assert_int_equal(g->res, -ECANCELED);
    assert_true(clock_mono_us() - t0 >= 90000);   /* not before its deadline */
    eng_close(&T.e, fd);

    /* Aborted while connecting (net/upstream.c: shutdown, then wait for the
     * completion): it ends now, well before a 5 s deadline. */
    struct __kernel_timespec five = {.tv_sec = 5};
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    eng_connect(&T.e, fd, (struct sockaddr *)&a, sizeof a, &five, UD(17));
    assert_true(quiet(50));
    t0 = clock_mono_us();
    shutdown(fd, SHUT_RDWR);
    g = next();
    assert_non_null(g);
    assert_int_equal(g->ud, UD(17));
    assert_true(g->res < 0);
    assert_true(clock_mono_us() - t0 < 2000000);
    eng_close(&T.e, fd);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(l);
}

/* ---- cancel, wake, close ---- */

static void test_cancel(void **state)
{
    NEED();
    int sv[2];
    pair(sv);
    eng_recv_multishot(&T.e, sv[0], &T.b, UD(13));
    assert_true(quiet(20));
    eng_cancel(&T.e, sv[0], UD(13));
    got_t *g = next();
    assert_non_null(g);
    assert_int_equal(g->ud, UD(13));
    assert_int_equal(g->res, -ECANCELED);
    assert_false(g->flags & ENG_CQE_MORE);
    put(sv[1], "late");
    assert_true(quiet(30));                        /* nothing is read after the cancel */
    eng_recv_multishot(&T.e, sv[0], &T.b, UD(14)); /* re-armed: what waited comes */
    g = next();
    assert_non_null(g);
    assert_string_equal(g->data, "late");
    eng_close(&T.e, sv[0]);
    close(sv[1]);
}

static void test_wake(void **state)
{
    NEED();
    int efd = eventfd(0, EFD_CLOEXEC);             /* blocking, as shard_open makes it */
    uint64_t val = 0, one = 1;
    eng_read(&T.e, efd, &val, sizeof val, eng_ud(UD_WAKE, 0, 0));
    assert_true(quiet(30));
    assert_int_equal(write(efd, &one, sizeof one), 8);
    got_t *g = next();
    assert_non_null(g);
    assert_int_equal(eng_ud_op(g->ud), UD_WAKE);
    assert_int_equal(g->res, 8);
    assert_int_equal(val, 1);
    eng_read(&T.e, efd, &val, sizeof val, eng_ud(UD_WAKE, 0, 0));   /* re-armed, as the shard does */
    assert_int_equal(write(efd, &one, sizeof one), 8);
    g = next();
    assert_non_null(g);
    assert_int_equal(g->res, 8);
    eng_close(&T.e, efd);
}

/* How a connection is aborted with its receive armed: shutdown, and the
 * receive ends; then the fd is closed and a new one on its number works. */
static void test_shutdown_then_close(void **state)
{
    NEED();
    int sv[2];
    pair(sv);
    eng_recv_multishot(&T.e, sv[0], &T.b, UD(15));
    assert_true(quiet(20));
    shutdown(sv[0], SHUT_RDWR);
    got_t *g = next();
    assert_non_null(g);
    assert_int_equal(g->ud, UD(15));
    assert_true(g->res <= 0);
    assert_false(g->flags & ENG_CQE_MORE);
    int num = sv[0];
    eng_close(&T.e, sv[0]);
    close(sv[1]);
    pair(sv);                                      /* the lowest free numbers: the same again */
    assert_int_equal(sv[0], num);
    eng_recv_multishot(&T.e, sv[0], &T.b, UD(16));
    put(sv[1], "new");
    g = next();
    assert_non_null(g);
    assert_int_equal(g->ud, UD(16));
    assert_string_equal(g->data, "new");
    eng_close(&T.e, sv[0]);
    close(sv[1]);
}

#define BOTH(fn) cmocka_unit_test_setup_teardown(fn, S_, teardown)

int main(void)
{
#define S_ setup_uring
    const struct CMUnitTest uring[] = {
        BOTH(test_accept_multishot), BOTH(test_recv_multishot), BOTH(test_recv_data_then_eof),
        BOTH(test_recv_single), BOTH(test_recv_pool_dry), BOTH(test_send), BOTH(test_connect),
        BOTH(test_connect_deadline), BOTH(test_cancel), BOTH(test_wake), BOTH(test_shutdown_then_close),
    };
#undef S_
#define S_ setup_epoll
    const struct CMUnitTest epoll[] = {
        BOTH(test_accept_multishot), BOTH(test_recv_multishot), BOTH(test_recv_data_then_eof),
        BOTH(test_recv_single), BOTH(test_recv_pool_dry), BOTH(test_send), BOTH(test_connect),
        BOTH(test_connect_deadline), BOTH(test_cancel), BOTH(test_wake), BOTH(test_shutdown_then_close),
    };
#undef S_
    int failed = cmocka_run_group_tests_name("engine on io_uring", uring, NULL, NULL);
    return failed + cmocka_run_group_tests_name("engine on epoll", epoll, NULL, NULL);
}
