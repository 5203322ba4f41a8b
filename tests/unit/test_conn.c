/* conn: a client connection's state machine (net/conn.h) through a fake
 * connection (tests/support/fakeconn.h, no I/O): the state table's transitions that need no kernel (OPEN -> CLOSING, input discarded
 * once closing, ABORT from any state, FREE only with nothing in flight, the
 * slot's generation bumped), the keep-alive timers (CONN_T_TRIM then
 * CONN_T_IDLE, counted from the response's end however late TRIM fires;
 * straight to IDLE when idle_timeout is shorter than the trim), the header
 * timer per request and the body timer (408), the stall timer, pipelined input
 * kept verbatim in `pending`, pipelined answers stopped at stream.buffer for
 * a client that reads nothing (and all given, in order, once it reads), chunk
 * framing, the connection cap (503, admin exempt) and draining (admin stays
 * open). What needs a kernel is tests/unit/test_conn_io.c's. */
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

/* Pipelined requests to a client that reads nothing: answers stop at
 * stream.buffer (plus the one that crossed it), the rest of the requests wait
 * in `pending` untouched, and the connection is timed as a stalled stream.
 * Each delivery (a send completion) under half the bound answers more; in the
 * end every request is answered once, in order, and the connection is idle.
 * (Before the bound, all 200 were answered into memory at once.) */
static void test_pipelined_output_bound(void **state)
{
    f.cfg.stream_buffer_bytes = 2048;
    fake_open(&f);
    conn_t *c = fake_conn(&f);
    char req[80], all[200 * 80] = "";
    size_t len = 0;
    for (int i = 0; i < 200; i++) {
        int n = snprintf(req, sizeof req, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: q%03d\r\n\r\n", i);
        memcpy(all + len, req, (size_t)n);
        len += (size_t)n;
    }
    conn_input(c, all, len);                           /* one read, nothing delivered */
    size_t out = conn_out_pending(c), one = c->http.req.bytes_out;   /* the last answer's size */
    assert_true(out >= 2048);
    assert_true(c->pending.len > 0 && c->pending.len < len);
    assert_true(out < 2048 + one);                     /* the bound and the answer that crossed it */
    assert_memory_equal(c->pending.data, all + len - c->pending.len, c->pending.len);
    assert_int_equal(c->timer_kind, CONN_T_STALL);
    conn_input(c, HEALTH, strlen(HEALTH));             /* more while full: held, not answered */
    assert_int_equal(conn_out_pending(c), out);
    advance_unread(f.cfg.idle_timeout_ms);             /* no progress for idle_timeout: dropped */
    assert_int_equal(c->state, CONN_ABORT);
    fake_close(&f);

    fake_init(&f);
    f.cfg.stream_buffer_bytes = 2048;
    fake_open(&f);
    c = fake_conn(&f);
    conn_input(c, all, len);
    for (int i = 0; i < 1000 && (c->pending.len || conn_out_pending(c)); i++) {
        conn_mark_dirty(c);
        fake_flush(&f);                                /* the client reads what was sent */
    }
    assert_int_equal(c->pending.len, 0);
    size_t pos = 0;
    wire_resp_t r;
    int n = 0;
    while (wire_next(f.wire.data, f.wire.len, &pos, &r)) {
        char want[32];
        snprintf(want, sizeof want, "X-Request-ID: q%03d\r\n", n);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.head, want));         /* in order, none lost, none twice */
        free(r.body);
        n++;
    }
    assert_int_equal(n, 200);
    assert_int_equal(c->state, CONN_OPEN);
    assert_int_equal(c->timer_kind, CONN_T_TRIM);      /* idle again: the keep-alive timers */
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
        cmocka_unit_test_setup_teardown(test_pipelined_output_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunk_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_spares_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_draining_spares_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_address, setup, teardown),
    };
    return cmocka_run_group_tests_name("conn", tests, NULL, NULL);
}
