/* conn: a client connection's state machine (net/conn.h), two ways.
 *
 * Through a fake connection (tests/support/fakeconn.h, no I/O): the state
 * table's transitions that need no kernel (OPEN -> CLOSING, input discarded
 * once closing, ABORT from any state, FREE only with nothing in flight, the
 * slot's generation bumped), the keep-alive timers (CONN_T_TRIM then
 * CONN_T_IDLE, counted from the response's end however late TRIM fires;
 * straight to IDLE when idle_timeout is shorter than the trim), the header
 * timer per request and the body timer (408), the stall timer, pipelined input
 * kept verbatim in `pending`, chunk framing, the connection cap (503, admin
 * exempt) and draining (admin stays open).
 *
 * On a real engine with a socketpair (completions pumped by hand, the way
 * core/shard.c and net/conns.c dispatch them, the clock still a number), once
 * on io_uring and once on epoll (core/engine.h): the multishot receive and one
 * send per turn, CLOSING -> LINGER with a FIN the peer sees, LINGER ended by
 * the peer's close or by its 2 s timer, ABORT with an operation in flight
 * freed only when it completes, recv paused past max_header + max_body of
 * pipelined input and re-armed once it drains, and a client gone mid-stream.
 * The io_uring ones skip when the kernel has no io_uring. */
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

static fakeconn_t f;
static gwmetrics_t gm;

static int setup(void **state)
{
    fake_init(&f);
    memset(&gm, 0, sizeof gm);
    f.sh.mod[g_gwm_mod] = &gm;   /* counted: trims, rejections, the connection gauge */
    return 0;
}

static int teardown(void **state)
{
    fake_close(&f);
    return 0;
}

static void send_str(const char *s) { fake_send(&f, s, strlen(s)); }

/* Advances the fake clock without delivering output: a client that reads nothing. */
static void advance_unread(uint64_t ms)
{
    f.sh.now_ms += ms;
    timer_run(&f.sh.timers, f.sh.now_ms);
}

static int count_status(int status)
{
    size_t pos = 0;
    wire_resp_t r;
    int n = 0;
    while (wire_next(f.wire.data, f.wire.len, &pos, &r)) {
        n += r.status == status;
        free(r.body);
    }
    return n;
}

/* ---- the state table without I/O ---- */

static void test_close_abort_reap(void **state)
{
    fake_open(&f);
    conn_t *c = fake_conn(&f);
    uint32_t gen = c->item.gen;
    assert_int_equal(c->state, CONN_OPEN);
    assert_int_equal(c->timer_kind, CONN_T_HEADER);   /* from the accept: the first request must come */
    assert_int_equal(f.conns.n_main, 1);
    assert_int_equal(gm.connections[ML_MAIN], 1);

    conn_close_after_flush(c);
    assert_int_equal(c->state, CONN_CLOSING);
    assert_int_equal(c->timer_kind, CONN_T_STALL);   /* a client that never reads cannot hold it */
    assert_true(c->in_flush);
    conn_input(c, HEALTH, strlen(HEALTH));          /* discarded: nothing parsed, nothing kept */
    assert_int_equal(c->pending.len, 0);
    assert_int_equal(c->http.req.n_hdrs, 0);
    assert_int_equal(conn_out_pending(c), 0);
    conn_close_after_flush(c);                      /* only from OPEN */
    assert_int_equal(c->state, CONN_CLOSING);

    c->inflight = 1;                                /* as if a send were with the kernel */
    conn_abort(c);
    assert_int_equal(c->state, CONN_ABORT);
    assert_int_equal(f.sh.timers.n, 0);             /* its timers went with it */
    assert_true(c->in_reap);
    conn_abort(c);                                  /* once */
    conn_reap(c);
    assert_int_equal(c->state, CONN_ABORT);         /* not while an SQE names the slot */
    assert_int_equal(f.conns.n_main, 1);
    c->inflight = 0;
    conn_reap(c);
    assert_int_equal(c->state, CONN_FREE);
    assert_false(c->item.live);
    assert_int_equal(c->item.gen, gen + 1);         /* a late completion for the old slot is stale */
    assert_int_equal(f.conns.n_main, 0);
    assert_int_equal(f.conns.slab.n_free, 1);
    assert_int_equal(gm.connections[ML_MAIN], 0);
    conn_reap(c);                                   /* FREE stays FREE */
    assert_int_equal(f.conns.slab.n_free, 1);
    conn_input(c, HEALTH, strlen(HEALTH));
    assert_int_equal(c->out[0].len + c->out[1].len, 0);
}

/* A response that must close: CLOSING, the FIN after the flush (fakeconn's
 * flush plays the kernel), then LINGER discards what the peer still sends. */
static void test_close_after_response(void **state)
{
    fake_open(&f);
    conn_t *c = fake_conn(&f);
    send_str("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" HEALTH);
    assert_int_equal(c->state, CONN_LINGER);
    assert_int_equal(count_status(200), 1);        /* the pipelined one after it is never answered */
    assert_int_equal(c->pending.len, 0);
    f.wire.len = 0;
    send_str(HEALTH);
    assert_int_equal(f.wire.len, 0);
}

/* ---- keep-alive timers ---- */

static void test_trim_then_idle_from_response_end(void **state)
{
    f.cfg.idle_timeout_ms = 10000;
    fake_open(&f);
    conn_t *c = fake_conn(&f);
    send_str(HEALTH);
    assert_int_equal(c->timer_kind, CONN_T_TRIM);
    assert_true(c->out[0].cap + c->out[1].cap > 0);
    /* The loop was busy: TRIM fires 3 s late. The idle deadline still counts
     * from the response, not from the trim. */
    fake_advance(&f, CONN_TRIM_MS + 3000);
    assert_int_equal(c->state, CONN_OPEN);
    assert_int_equal(c->timer_kind, CONN_T_IDLE);
    assert_int_equal(c->out[0].cap + c->out[1].cap + c->http.req.raw.cap, 0);
    assert_int_equal(gm.conn_trims, 1);
    fake_advance(&f, 10000 - CONN_TRIM_MS - 3000 - 1);
    assert_int_equal(c->state, CONN_OPEN);
    fake_advance(&f, 1);
    assert_int_equal(c->state, CONN_ABORT);         /* silently: nothing written */
    assert_int_equal(count_status(200), 1);
    assert_null(strstr(f.wire.data, "408"));
}

/* idle_timeout shorter than the trim: straight to IDLE, buffers kept to the end. */
static void test_short_idle_skips_trim(void **state)
{
    f.cfg.idle_timeout_ms = CONN_TRIM_MS - 500;
    fake_open(&f);
    conn_t *c = fake_conn(&f);
    send_str(HEALTH);
    assert_int_equal(c->timer_kind, CONN_T_IDLE);
    fake_advance(&f, CONN_TRIM_MS - 501);
    assert_int_equal(c->state, CONN_OPEN);
    assert_true(c->out[0].cap + c->out[1].cap > 0);
    fake_advance(&f, 1);
    assert_int_equal(c->state, CONN_ABORT);
    assert_int_equal(gm.conn_trims, 0);
}

/* ---- request timers ---- */

/* A client that connects and sends nothing gets the header timeout's 408 too. */
static void test_header_timeout_without_a_byte(void **state)
{
    fake_open(&f);
    fake_advance(&f, f.cfg.header_timeout_ms - 1);
    assert_int_equal(f.wire.len, 0);
    fake_advance(&f, 1);
    assert_int_equal(count_status(408), 1);
    assert_non_null(strstr(f.wire.data, "request headers not received in time"));
    assert_int_equal(fake_conn(&f)->state, CONN_LINGER);
    assert_int_equal(gm.rejected[MRJ_TIMEOUT], 1);
}

/* On a keep-alive connection the header timer starts at the next request's
 * first byte, not at the end of the last response. */
static void test_header_timer_per_request(void **state)
{
    fake_open(&f);
    conn_t *c = fake_conn(&f);
    send_str(HEALTH);
    fake_advance(&f, 1500);
    send_str("GET /healthz HTT");
    assert_int_equal(c->timer_kind, CONN_T_HEADER);
    fake_advance(&f, f.cfg.header_timeout_ms - 1);
    assert_int_equal(count_status(408), 0);
    send_str("P/1.1\r\nHost: x\r\n\r\n");              /* complete just in time: answered, timer off */
    assert_int_equal(count_status(200), 2);
    assert_int_equal(c->timer_kind, CONN_T_TRIM);
    fake_advance(&f, 1);
    assert_int_equal(count_status(408), 0);
}

static void test_body_timeout(void **state)
{
    fake_open(&f);
    conn_t *c = fake_conn(&f);
    send_str("POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"a");
    assert_int_equal(c->timer_kind, CONN_T_BODY);   /* the head is in: the body timer replaces the header's */
    fake_advance(&f, f.cfg.body_timeout_ms - 1);
    assert_int_equal(f.wire.len, 0);
    fake_advance(&f, 1);
    assert_int_equal(count_status(408), 1);
    assert_non_null(strstr(f.wire.data, "request body not received in time"));
    assert_non_null(strstr(f.wire.data, "\r\nConnection: close\r\n"));
    assert_int_equal(c->state, CONN_LINGER);
    assert_int_equal(gm.rejected[MRJ_TIMEOUT], 1);
}

/* A stream whose client takes nothing for idle_timeout is aborted; a quiet
 * stream with nothing queued is not. */
static void test_stall(void **state)
{
    f.cfg.idle_timeout_ms = 3000;
    f.cfg.heartbeat_ms = 0;
    f.cfg.max_token_interval_ms = 100000;
    fake_open(&f);
    conn_t *c = fake_conn(&f);
    const char *slow = "POST /v1/agents/echo/run HTTP/1.1\r\nHost: x\r\nContent-Length: 134\r\n\r\n"
                       "{\"threadId\":\"t\",\"runId\":\"r\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"a b\"}],"
                       "\"forwardedProps\":{\"agate\":{\"tokenIntervalMs\":9000}}}";
    send_str(slow);                                  /* read at once: nothing queued */
    assert_non_null(c->run);
    assert_int_equal(c->timer_kind, CONN_T_STALL);
    fake_advance(&f, 3000);
    fake_advance(&f, 3000);
    assert_int_equal(c->state, CONN_OPEN);           /* quiet, but the client keeps up */
    assert_int_equal(c->timer_kind, CONN_T_STALL);
    fake_close(&f);

    fake_init(&f);
    f.cfg.idle_timeout_ms = 3000;
    f.cfg.heartbeat_ms = 0;
    f.cfg.max_token_interval_ms = 100000;
    fake_open(&f);
    c = fake_conn(&f);
    conn_input(c, slow, strlen(slow));               /* nothing delivered: the client reads nothing */
    assert_true(conn_out_pending(c) > 0);
    advance_unread(2999);
    assert_int_equal(c->state, CONN_OPEN);
    advance_unread(1);
    assert_int_equal(c->state, CONN_ABORT);
    assert_null(c->run);                             /* the run went with it */
}

/* ---- input behind a running response ---- */

static void test_pending_kept_verbatim(void **state)
{
    fake_open(&f);
    conn_t *c = fake_conn(&f);
    send_str(PACED_RUN);
    assert_non_null(c->run);
    send_str(HEALTH "GET /nope HT");
    send_str("TP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(c->pending.len, strlen(HEALTH "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_memory_equal(c->pending.data, HEALTH "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", c->pending.len);
    assert_int_equal(count_status(200), 0);          /* the stream's head is out, not complete */
    fake_settle(&f);
    assert_int_equal(c->pending.len, 0);
    assert_int_equal(count_status(200), 2);
    assert_int_equal(count_status(404), 1);
}

/* The keep-alive timers after requests answered from `pending` (pipelined
 * behind a stream): the connection must still give its buffers back and
 * close after idle_timeout. (It did not: conn_response_finished arms them
 * only when pending is empty, and while http_feed answers from pending its
 * bytes still count, so the last answer armed nothing and idle_timeout was
 * never enforced; process_pending now arms them once the connection is idle.) */
static void test_idle_timer_after_pending(void **state)
{
    fake_open(&f);
    conn_t *c = fake_conn(&f);
    send_str(PACED_RUN);
    send_str(HEALTH);
    fake_settle(&f);
    assert_int_equal(count_status(200), 2);
    assert_int_equal(c->timer_kind, CONN_T_TRIM);
    fake_advance(&f, f.cfg.idle_timeout_ms);
    assert_int_equal(c->state, CONN_ABORT);
}

/* ---- chunk framing ---- */

static void test_chunk_framing(void **state)
{
    fake_open(&f);
    conn_t *c = fake_conn(&f);
    c->http.req.chunked_resp = true;
    buf_t *b = conn_fill(c);
    conn_body_open(c);
    conn_body_open(c);                                /* one chunk at a time */
    buf_append_lit(b, "hello, world: 21 bytes");
    conn_body_close(c);
    assert_int_equal(b->len, 10 + 22 + 2);
    assert_memory_equal(b->data, "00000016\r\nhello, world: 21 bytes\r\n", b->len);
    conn_body_open(c);
    conn_body_close(c);                               /* an empty chunk leaves nothing (0 would end the body) */
    assert_int_equal(b->len, 34);
    conn_body_close(c);
    assert_int_equal(b->len, 34);
    c->http.req.chunked_resp = false;
    conn_body_open(c);                                /* not chunked: no framing at all */
    assert_false(c->chunk_open);
    assert_int_equal(b->len, 34);
    /* what is queued: the rest of the sending buffer plus the fill buffer */
    buf_append_lit(&c->out[c->sending], "0123456789");
    c->sent = 4;
    assert_int_equal(conn_out_pending(c), 6 + 34);
    c->sent = 0;
    c->out[0].len = c->out[1].len = 0;
}

/* ---- the connection cap and draining ---- */

static void test_cap_spares_admin(void **state)
{
    f.cfg.max_connections = 1;
    f.conns.n_main = 1;                               /* the main listener's one is taken */
    f.admin = true;
    fake_open(&f);
    assert_false(fake_conn(&f)->over_cap);
    send_str(HEALTH);
    assert_int_equal(count_status(200), 1);
    assert_int_equal(fake_conn(&f)->state, CONN_OPEN);
    assert_int_equal(f.conns.n_admin, 1);
    fake_close(&f);

    fake_init(&f);
    f.sh.mod[g_gwm_mod] = &gm;
    f.cfg.max_connections = 1;
    f.conns.n_main = 1;
    fake_open(&f);
    assert_true(fake_conn(&f)->over_cap);
    assert_int_equal(f.conns.n_main, 2);              /* counted while it is answered */
    send_str(HEALTH);
    assert_int_equal(count_status(503), 1);
    assert_non_null(strstr(f.wire.data, "\r\nConnection: close\r\n"));
    assert_int_equal(gm.rejected[MRJ_CONNECTION_LIMIT], 1);
    conn_abort(fake_conn(&f));
    conn_reap(fake_conn(&f));
    assert_int_equal(f.conns.n_main, 1);
}

static void test_draining_spares_admin(void **state)
{
    f.admin = true;
    fake_open(&f);
    f.sh.draining = true;
    send_str(HEALTH HEALTH);
    assert_int_equal(count_status(200), 2);
    assert_null(strstr(f.wire.data, "Connection: close"));
    assert_int_equal(fake_conn(&f)->state, CONN_OPEN);
}

/* ---- the peer's address ---- */

static void test_peer_address(void **state)
{
    conn_t c;
    memset(&c, 0, sizeof c);
    c.fd = -1;
    assert_false(conn_peer(&c));
    assert_string_equal(c.peer, "unknown");
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    int cl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(cl, (struct sockaddr *)&a, sizeof a), 0);
    memset(&c, 0, sizeof c);
    c.fd = accept(l, NULL, NULL);
    assert_true(c.fd >= 0);
    assert_true(conn_peer(&c));
    assert_string_equal(c.peer, "127.0.0.1");
    assert_int_equal(c.peer_len, 9);
    close(c.fd);
    c.fd = -1;
    assert_true(conn_peer(&c));                       /* looked up once per connection */
    assert_string_equal(c.peer, "127.0.0.1");
    close(cl);
    close(l);
}

/* ---- on a real engine: io_uring, then epoll ---- */

typedef struct rig {
    cfg_t    cfg;
    shard_t  sh;
    conns_t  cs;
    int      peer;        /* the client's end of the socketpair, non-blocking */
    buf_t    got;         /* what the client read */
    bool     eof;         /* the client read EOF (our FIN) */
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
        ssize_t k = R.peer >= 0 ? read(R.peer, tmp, sizeof tmp) : -1;
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
        cmocka_unit_test_setup_teardown(test_close_abort_reap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_after_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_then_idle_from_response_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_idle_skips_trim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_timeout_without_a_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_timer_per_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_kept_verbatim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timer_after_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunk_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_spares_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_draining_spares_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_io_keepalive, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_close_linger_free, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_linger_timeout, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_pause_pipelined, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_eof_mid_stream, rig_setup, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_keepalive, rig_setup_epoll, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_close_linger_free, rig_setup_epoll, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_linger_timeout, rig_setup_epoll, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_pause_pipelined, rig_setup_epoll, rig_teardown),
        cmocka_unit_test_setup_teardown(test_io_eof_mid_stream, rig_setup_epoll, rig_teardown),
    };
    return cmocka_run_group_tests_name("conn", tests, NULL, NULL);
}
