/* conn_io: a client connection (net/conn.h) on a real engine, once on
 * io_uring and once on epoll (core/engine.h), with a socketpair (completions pumped by hand, the way core/shard.c and
 * net/conns.c dispatch them, the clock still a number): the multishot
 * receive and one send per turn, CLOSING -> LINGER with a FIN the peer sees,
 * LINGER ended by the peer's close or by its 2 s timer, ABORT with an
 * operation in flight freed only when it completes, recv paused past
 * max_header + max_body of pipelined input and re-armed once it drains,
 * paused while the output of pipelined answers is at stream.buffer for a
 * client that does not read and re-armed once it reads, and a client gone
 * mid-stream. The io_uring ones skip when the kernel has no io_uring. The transitions
 * that need no kernel are tests/unit/test_conn.c's. */
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
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/fakeconn.h"
#include "tests/unit/wire.h"

#define HEALTH "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
#define PACED_BODY "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"a b c\"}]," \
                   "\"forwardedProps\":{\"agate\":{\"tokenIntervalMs\":100}}}"
#define PACED_RUN "POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nContent-Length: 135\r\n\r\n" PACED_BODY

/* ---- on a real engine: io_uring, then epoll ---- */

typedef struct rig {
    cfg_t    cfg;
    shard_t  sh;
    conns_t  cs;
    int      peer;        /* the client's end of the socketpair, non-blocking */
    buf_t    got;         /* what the client read */
    bool     eof;         /* the client read EOF (our FIN) */
    bool     no_read;     /* the client reads nothing: agate's output backs up */
    unsigned stale;       /* completions for a slot that was freed */
} rig_t;

static rig_t R;

static int rig_setup_on(eng_backend_t backend)
{
    modules_register();
    memset(&R, 0, sizeof R);
    cfg_defaults(&R.cfg);
    R.peer = -1;
    if (buf_reserve(&R.got, 1))
        return -1;
    R.got.data[0] = 0;
    R.sh.cfg = &R.cfg;
    R.sh.now_ms = 1000;
    strcpy(R.sh.http_date, "Thu, 01 Jan 1970 00:00:00 GMT");
    R.sh.rng.s[0] = 1;
    if (eng_init(&R.sh.eng, backend, &R.sh.timers, &R.sh.now_ms))
        return backend == ENG_EPOLL ? -1 : 0;         /* no io_uring: each test skips */
    if (eng_bufs_init(&R.sh.eng, &R.sh.rbufs, 1, 16, 4096)) {
        eng_exit(&R.sh.eng);
        return backend == ENG_EPOLL ? -1 : 0;
    }
    if (conns_attach(&R.sh, &R.cs, 4))
        return -1;
    return 0;
}

static int rig_setup(void **state) { return rig_setup_on(ENG_IO_URING); }
static int rig_setup_epoll(void **state) { return rig_setup_on(ENG_EPOLL); }

static bool rig_ok(void) { return R.cs.slab.base != NULL; }

/* Dispatches one completion as core/shard.c would to net/conns.c's handlers. */
static void rig_dispatch(void *ctx, eng_cqe_t *cqe)
{
    uint64_t ud = eng_cqe_ud(cqe);
    uint8_t op = eng_ud_op(ud);
    if (op != g_conns_op_recv && op != g_conns_op_send)
        return;   /* UD_IGNORE: the cancel */
    conn_t *c = slab_lookup(&R.cs.slab, ud);
    if (!c) {
        R.stale++;
        if (eng_cqe_has_buf(cqe))
            eng_bufs_recycle(&R.sh.rbufs, eng_cqe_bid(cqe));
        return;
    }
    if (op == g_conns_op_recv)
        conn_on_recv(c, cqe);
    else
        conn_on_send(c, cqe->res);
    conn_reap(c);
}

/* One loop turn: submit and wait (bounded), completions, the end of the turn
 * (one send per dirty connection, aborted ones freed), then read what the
 * client got. */
static void rig_turn(unsigned wait_ms)
{
    eng_submit_and_wait(&R.sh.eng, wait_ms);
    eng_reap(&R.sh.eng, rig_dispatch, NULL);
    while (R.cs.flush_head) {
        conn_t *c = R.cs.flush_head;
        R.cs.flush_head = c->flush_next;
        conn_flush(c);
        conn_reap(c);
    }
    while (R.cs.reap_head) {
        conn_t *c = R.cs.reap_head;
        R.cs.reap_head = c->reap_next;
        c->in_reap = false;
        conn_reap(c);
    }
    /* What this turn queued (the sends) is issued now, as the loop's next
     * wait would: io_uring submits it; epoll makes the syscalls. */
    eng_submit_and_wait(&R.sh.eng, 0);
    eng_reap(&R.sh.eng, rig_dispatch, NULL);
    char tmp[8192];
    for (;;) {
        ssize_t k = R.peer >= 0 && !R.no_read ? read(R.peer, tmp, sizeof tmp) : -1;
        if (k > 0) {
            buf_append(&R.got, tmp, (size_t)k);
            continue;
        }
        if (k == 0)
            R.eof = true;
        break;
    }
    if (!buf_reserve(&R.got, 1))
        R.got.data[R.got.len] = 0;
}

#define TURN_UNTIL(cond)                                          \
    do {                                                          \
        for (int i_ = 0; i_ < 200 && !(cond); i_++)              \
            rig_turn(5);                                          \
        assert_true(cond);                                        \
    } while (0)

static void rig_advance(uint64_t ms)
{
    R.sh.now_ms += ms;
    timer_run(&R.sh.timers, R.sh.now_ms);
    rig_turn(0);
}

static conn_t *rig_accept(void)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
    R.peer = sv[1];
    uint32_t before = R.cs.slab.n_free;
    conn_accept(&R.sh, sv[0], false);
    assert_int_equal(R.cs.slab.n_free, before - 1);
    for (uint32_t i = 0; i < R.cs.slab.cap; i++) {
        conn_t *c = slab_at(&R.cs.slab, i);
        if (c->item.live && c->fd == sv[0])
            return c;
    }
    fail();
    return NULL;
}

static void peer_write(const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(write(R.peer, s, n), (ssize_t)n);
}

static int rig_teardown(void **state)
{
    if (rig_ok()) {
        for (uint32_t i = 0; i < R.cs.slab.cap; i++) {
            conn_t *c = slab_at(&R.cs.slab, i);
            if (c->state != CONN_FREE)
                conn_abort(c);
        }
        if (R.peer >= 0)
            close(R.peer);
        R.peer = -1;
        for (int i = 0; i < 100; i++) {
            bool busy = false;
            for (uint32_t k = 0; k < R.cs.slab.cap; k++)
                busy |= ((conn_t *)slab_at(&R.cs.slab, k))->state != CONN_FREE;
            if (!busy)
                break;
            rig_turn(5);
        }
        conns_detach(&R.sh);
        R.cs.slab.base = NULL;
    }
    if (R.sh.rbufs.br)
        eng_bufs_free(&R.sh.eng, &R.sh.rbufs);
    eng_exit(&R.sh.eng);
    run_pool_free(&R.sh);
    timer_heap_free(&R.sh.timers);
    buf_free(&R.sh.scratch);
    buf_free(&R.got);
    return 0;
}

static int got_status(int status)
{
    size_t pos = 0;
    wire_resp_t r;
    int n = 0;
    while (wire_next(R.got.data, R.got.len, &pos, &r)) {
        n += r.status == status;
        free(r.body);
    }
    return n;
}

static void test_io_keepalive(void **state)
{
    if (!rig_ok())
        skip();
    conn_t *c = rig_accept();
    assert_true(c->recv_armed);
    assert_int_equal(c->inflight, 1);                 /* one multishot recv, for the connection's life */
    peer_write(HEALTH);
    TURN_UNTIL(got_status(200) == 1);
    assert_int_equal(c->state, CONN_OPEN);
    assert_true(c->recv_armed);
    TURN_UNTIL(!c->send_inflight);
    assert_int_equal(c->inflight, 1);
    assert_int_equal(conn_out_pending(c), 0);
    peer_write(HEALTH HEALTH);
    TURN_UNTIL(got_status(200) == 3);
    assert_false(R.eof);
    assert_int_equal(c->timer_kind, CONN_T_TRIM);
}

/* CLOSING -> LINGER: the last response, then our FIN; the peer's further
 * bytes are read and dropped; its close ends LINGER; ABORT -> FREE once the
 * recv has completed. */
static void test_io_close_linger_free(void **state)
{
    if (!rig_ok())
        skip();
    conn_t *c = rig_accept();
    uint64_t old_ud = slab_ud(c, g_conns_op_recv);
    peer_write("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    TURN_UNTIL(R.eof);
    assert_int_equal(got_status(200), 1);
    assert_non_null(strstr(R.got.data, "\r\nConnection: close\r\n"));
    assert_int_equal(c->state, CONN_LINGER);
    assert_int_equal(c->timer_kind, CONN_T_LINGER);
    assert_true(c->recv_armed);                       /* still reading, to drain the peer */
    size_t got = R.got.len;
    peer_write(HEALTH);
    rig_turn(5);
    rig_turn(5);
    assert_int_equal(c->state, CONN_LINGER);
    assert_int_equal(R.got.len, got);                 /* discarded, unanswered */
    close(R.peer);
    R.peer = -1;
    TURN_UNTIL(c->state == CONN_FREE);
    assert_int_equal(c->inflight, 0);
    assert_int_equal(c->fd, -1);
    assert_int_equal(R.cs.n_main, 0);
    assert_int_equal(R.cs.slab.n_free, R.cs.slab.cap);
    assert_null(slab_lookup(&R.cs.slab, old_ud));     /* what still names the old slot is stale */
    assert_int_equal(R.sh.timers.n, 0);
}

/* A peer that never closes: LINGER ends after 2 s of the shard's clock; the
 * armed recv completes after the shutdown and only then is the slot freed. */
static void test_io_linger_timeout(void **state)
{
    if (!rig_ok())
        skip();
    conn_t *c = rig_accept();
    peer_write("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    TURN_UNTIL(R.eof);
    assert_int_equal(c->state, CONN_LINGER);
    rig_advance(1999);
    assert_int_equal(c->state, CONN_LINGER);
    R.sh.now_ms += 1;
    timer_run(&R.sh.timers, R.sh.now_ms);
    assert_int_equal(c->state, CONN_ABORT);
    assert_int_equal(c->inflight, 1);                 /* the recv is still the kernel's: not freed yet */
    conn_reap(c);
    assert_int_equal(c->state, CONN_ABORT);
    TURN_UNTIL(c->state == CONN_FREE);
    assert_int_equal(R.cs.n_main, 0);
}

/* Pipelined input past max_header + max_body stops the recv (the kernel
 * holds the rest, TCP pushes back); once the stream ends and pending is
 * answered, the recv is armed again and the held bytes are read. */
static void test_io_pause_pipelined(void **state)
{
    if (!rig_ok())
        skip();
    R.cfg.max_header_bytes = 256;
    R.cfg.max_body_bytes = 256;
    conn_t *c = rig_accept();
    peer_write(PACED_RUN);
    TURN_UNTIL(c->run && strstr(R.got.data, "\"delta\":\"a \""));
    char burst[20 * sizeof HEALTH];
    burst[0] = 0;
    for (int i = 0; i < 20; i++)
        strcat(burst, HEALTH);                        /* 700 bytes > 512 */
    peer_write(burst);
    TURN_UNTIL(c->recv_paused && !c->recv_armed);
    assert_int_equal(c->pending.len, strlen(burst));
    assert_int_equal(c->state, CONN_OPEN);
    peer_write("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    rig_turn(5);
    rig_turn(5);
    assert_int_equal(c->pending.len, strlen(burst)); /* left in the socket */
    assert_int_equal(got_status(200), 0);             /* the stream is still open */
    for (int i = 0; i < 5 && c->run; i++)
        rig_advance(100);
    assert_null(c->run);
    TURN_UNTIL(got_status(404) == 1);
    assert_int_equal(got_status(200), 21);            /* the stream and the 20, in order, then the 404 */
    const char *last200 = R.got.data, *p;
    while ((p = strstr(last200 + 1, "HTTP/1.1 200")))
        last200 = p;
    assert_true(strstr(R.got.data, "HTTP/1.1 404") > last200);
    assert_true(c->recv_armed);
    assert_false(c->recv_paused);
    assert_int_equal(c->pending.len, 0);
}

/* A pipelining client that reads nothing, on a real socket: once the output
 * is at stream.buffer and the kernel's send buffer is full, agate cancels the
 * recv and the client's further requests stay in the socket (its writes stop
 * being taken); once it reads, every request is answered in order and the
 * recv is armed again. */
static void test_io_pause_for_output(void **state)
{
    if (!rig_ok())
        skip();
    R.cfg.stream_buffer_bytes = 4096;
    conn_t *c = rig_accept();
    int small = 4096;
    assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    R.no_read = true;
    char req[80];
    int sent = 0;
    size_t wrote = 0;
    for (int round = 0; round < 400 && !(c->recv_paused && !c->recv_armed); round++) {
        for (int k = 0; k < 20; k++, sent++) {
            int n = snprintf(req, sizeof req, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: q%05d\r\n\r\n", sent);
            ssize_t w = write(R.peer, req, (size_t)n);
            if (w != n) {
                assert_true(w < 0 && errno == EAGAIN);   /* a request is never split here: the socket was full */
                goto full;
            }
            wrote += (size_t)n;
        }
        rig_turn(2);
    }
full:
    TURN_UNTIL(c->recv_paused && !c->recv_armed);
    assert_true(conn_out_pending(c) >= 4096);
    size_t held = c->pending.len;
    for (int i = 0; i < 5; i++)
        rig_turn(2);
    assert_int_equal(c->pending.len, held);            /* nothing more is read */
    assert_true(conn_out_pending(c) < 4096 + 1024);    /* the bound and the answer that crossed it */
    R.no_read = false;
    for (int i = 0; i < 20000 && got_status(200) < sent; i++)
        rig_turn(1);
    assert_int_equal(got_status(200), sent);
    const char *p = R.got.data;
    for (int i = 0; i < sent; i++) {
        char want[32];
        snprintf(want, sizeof want, "X-Request-ID: q%05d\r\n", i);
        p = strstr(p, want);
        assert_non_null(p);                             /* in order, none lost */
    }
    TURN_UNTIL(c->recv_armed && !c->recv_paused);
    assert_int_equal(c->pending.len, 0);
    assert_int_equal(c->state, CONN_OPEN);
    assert_true(wrote > 0);
}

/* The client goes away mid-stream: the recv's EOF aborts the connection, the
 * run is released, and the slot is freed once nothing is in flight. */
static void test_io_eof_mid_stream(void **state)
{
    if (!rig_ok())
        skip();
    conn_t *c = rig_accept();
    peer_write(PACED_RUN);
    TURN_UNTIL(c->run && strstr(R.got.data, "\"delta\":\"a \""));
    run_t *r = c->run;
    close(R.peer);
    R.peer = -1;
    TURN_UNTIL(c->state == CONN_FREE);
    assert_ptr_equal(run_pool_head(&R.sh), r);        /* released, back in the pool */
    assert_int_equal(R.sh.timers.n, 0);               /* the pacing tick went with it */
    assert_int_equal(R.cs.n_main, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_io_keepalive, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_close_linger_free, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_linger_timeout, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_pause_pipelined, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_pause_for_output, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_eof_mid_stream, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_keepalive, rig_setup_epoll, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_close_linger_free, rig_setup_epoll, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_linger_timeout, rig_setup_epoll, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_pause_pipelined, rig_setup_epoll, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_pause_for_output, rig_setup_epoll, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_eof_mid_stream, rig_setup_epoll, rig_teardown),
    };
    return cmocka_run_group_tests_name("conn_io", tests, NULL, NULL);
}
