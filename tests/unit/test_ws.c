/* ws: AG-UI over WebSocket on a fake connection (tests/support/fakeconn.h).
 * The handshake (101 with the RFC's Sec-WebSocket-Accept, the ag-ui
 * subprotocol only when offered, each refusal's status and code, frames that
 * arrive with the upgrade), runs producing one text frame per event with the
 * runId spliced in, ping -> pong, the close handshake (codes echoed, input
 * after it dropped, the abort 2 s after our close), messages that are not
 * runs (binary 1003, not JSON 1007, invalid input as a RUN_ERROR, too big
 * 1009, unmasked 1002), ws.max_runs and duplicate runIds, CANCEL, drain
 * (no new runs, 1001 once the last ends), the ping timer and pong timeout,
 * the stall close (1008), one pong for the pings of one read, input held
 * while the output is at stream.buffer (answered in order once the client
 * reads, 1008 if it never does), and what the slot gives back when it is
 * reaped.
 * The frame parser itself is tests/unit/test_wsframe.c's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "net/ws.h"
#include "net/wsframe.h"
#include "tests/support/fakeconn.h"
#include "tests/unit/wire.h"

#define KEY     "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT  "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="   /* RFC 6455 1.3's example */
#define UPGRADE "GET /v1/agents/echo/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " KEY "\r\n"

static fakeconn_t f;
static gwmetrics_t gm;

static int setup(void **state)
{
    fake_init(&f);
    memset(&gm, 0, sizeof gm);
    f.sh.mod[g_gwm_mod] = &gm;
    ws_conf_mut(&f.cfg)->ping_interval_ms = 0;   /* tests that want pings turn them on */
    return 0;
}

static int teardown(void **state)
{
    fake_close(&f);
    return 0;
}

static void send_str(const char *s) { fake_send(&f, s, strlen(s)); }

/* ---- frames ---- */

/* A client frame (masked unless `unmasked`) into out; its length. */
static size_t client_frame(uint8_t *out, int b0, const void *payload, size_t n, bool unmasked)
{
    static const uint8_t key[4] = {0x5a, 0x01, 0xc3, 0x7e};
    size_t at = 0;
    out[at++] = (uint8_t)b0;
    uint8_t m = unmasked ? 0 : 0x80;
    if (n < 126) {
        out[at++] = (uint8_t)(m | n);
    } else if (n <= 0xffff) {
        out[at++] = m | 126;
        out[at++] = (uint8_t)(n >> 8);
        out[at++] = (uint8_t)n;
    } else {
        out[at++] = m | 127;
        for (int i = 7; i >= 0; i--)
            out[at++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    if (!unmasked) {
        memcpy(out + at, key, 4);
        at += 4;
    }
    for (size_t i = 0; i < n; i++)
        out[at + i] = (uint8_t)(((const uint8_t *)payload)[i] ^ (unmasked ? 0 : key[i % 4]));
    return at + n;
}

static void send_frame(int opcode, const void *payload, size_t n)
{
    uint8_t *b = malloc(n + 14);
    size_t len = client_frame(b, 0x80 | opcode, payload, n, false);
    fake_send(&f, (const char *)b, len);
    free(b);
}

static void send_text(const char *s) { send_frame(WSF_TEXT, s, strlen(s)); }

static void send_close(unsigned code)
{
    char pl[2] = {(char)(code >> 8), (char)code};
    send_frame(WSF_CLOSE, pl, 2);
}

typedef struct frame {
    int    op;
    bool   fin;
    char  *data;   /* NUL-terminated copy */
    size_t len;
} frame_t;

typedef struct frames {
    frame_t f[256];
    int     n;
} frames_t;

static frames_t got;

static void frames_free(void)
{
    for (int i = 0; i < got.n; i++)
        free(got.f[i].data);
    got.n = 0;
}

/* Every server frame on the wire after the 101 head (unmasked, as a server's must be). */
static frames_t *frames(void)
{
    frames_free();
    const char *w = f.wire.data, *end = w + f.wire.len;
    const char *p = strstr(w, "\r\n\r\n");
    assert_non_null(p);
    assert_memory_equal(w, "HTTP/1.1 101 ", 13);
    p += 4;
    while (p < end && got.n < 256) {
        const uint8_t *u = (const uint8_t *)p;
        assert_true(end - p >= 2);
        assert_int_equal(u[1] & 0x80, 0);
        size_t n = u[1] & 0x7f, hl = 2;
        if (n == 126) {
            n = (size_t)u[2] << 8 | u[3];
            hl = 4;
        } else if (n == 127) {
            n = 0;
            for (int i = 0; i < 8; i++)
                n = n << 8 | u[2 + i];
            hl = 10;
        }
        assert_true((size_t)(end - p) >= hl + n);
        frame_t *fr = &got.f[got.n++];
        fr->op = u[0] & 0x0f;
        fr->fin = u[0] & 0x80;
        fr->data = malloc(n + 1);
        memcpy(fr->data, p + hl, n);
        fr->data[n] = 0;
        fr->len = n;
        p += hl + n;
    }
    return &got;
}

static int count_op(int op)
{
    frames_t *fs = frames();
    int n = 0;
    for (int i = 0; i < fs->n; i++)
        n += fs->f[i].op == op;
    return n;
}

/* The last close frame's code and reason; -1 when there is none. */
static int close_code(char *reason, size_t cap)
{
    frames_t *fs = frames();
    for (int i = fs->n - 1; i >= 0; i--) {
        frame_t *fr = &fs->f[i];
        if (fr->op != WSF_CLOSE)
            continue;
        assert_true(fr->len >= 2);
        if (reason)
            snprintf(reason, cap, "%.*s", (int)(fr->len - 2), fr->data + 2);
        return (uint8_t)fr->data[0] << 8 | (uint8_t)fr->data[1];
    }
    return -1;
}

/* The text frames' events (JSON objects) of run `rid`, in order; caller decrefs. */
static json_t *events_of(const char *rid)
{
    frames_t *fs = frames();
    json_t *arr = json_array();
    for (int i = 0; i < fs->n; i++) {
        if (fs->f[i].op != WSF_TEXT)
            continue;
        json_t *j = json_loads(fs->f[i].data, 0, NULL);
        assert_non_null(j);
        const char *r = json_string_value(json_object_get(j, "runId"));
        if (r && !strcmp(r, rid))
            json_array_append(arr, j);
        json_decref(j);
    }
    return arr;
}

/* The RUN_ERROR codes sent for runId rid ("" = all), space-separated into out. */
static void error_codes(const char *rid, char *out, size_t cap)
{
    frames_t *fs = frames();
    out[0] = 0;
    for (int i = 0; i < fs->n; i++) {
        if (fs->f[i].op != WSF_TEXT)
            continue;
        json_t *j = json_loads(fs->f[i].data, 0, NULL);
        const char *type = json_string_value(json_object_get(j, "type"));
        const char *r = json_string_value(json_object_get(j, "runId"));
        if (type && !strcmp(type, "RUN_ERROR") && (!*rid || (r && !strcmp(r, rid))))
            snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? " " : "",
                     json_string_value(json_object_get(j, "code")));
        json_decref(j);
    }
}

static void upgrade(void)
{
    fake_open(&f);
    send_str(UPGRADE "\r\n");
    assert_memory_equal(f.wire.data, "HTTP/1.1 101 Switching Protocols\r\n", 34);
    assert_non_null(fake_conn(&f)->ws);
}

static char body[4096];

static const char *run_input(const char *rid, const char *text, unsigned interval_ms)
{
    snprintf(body, sizeof body,
             "{\"threadId\":\"t\",\"runId\":\"%s\",\"messages\":[{\"id\":\"1\",\"role\":\"user\",\"content\":\"%s\"}],"
             "\"forwardedProps\":{\"agate\":{\"tokenIntervalMs\":%u}}}",
             rid, text, interval_ms);
    return body;
}

/* ---- the handshake ---- */

static void test_handshake(void **state)
{
    fake_open(&f);
    conn_t *c = fake_conn(&f);
    send_str(UPGRADE "\r\n");
    const char *head = f.wire.data, *eoh = strstr(head, "\r\n\r\n");
    assert_non_null(eoh);
    assert_int_equal((size_t)(eoh + 4 - head), f.wire.len);   /* nothing after the head */
    assert_memory_equal(head, "HTTP/1.1 101 Switching Protocols\r\n", 34);
    assert_non_null(strstr(head, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strstr(head, "\r\nConnection: Upgrade\r\n"));
    assert_non_null(strstr(head, "\r\nSec-WebSocket-Accept: " ACCEPT "\r\n"));
    assert_null(strstr(head, "Sec-WebSocket-Protocol"));    /* not offered, not chosen */
    assert_null(strstr(head, "Content-Length"));
    assert_null(strstr(head, "Transfer-Encoding"));
    assert_ptr_equal(c->proto, &ws_proto);
    assert_int_equal(c->state, CONN_OPEN);
    assert_true(c->http.req.responding);                         /* one log line, at the end */
    assert_int_equal(gm.ws_connections, 1);
    fake_close(&f);
    assert_int_equal(gm.ws_connections, 0);

    /* Tokens in lists, any case; several Connection headers are one list. */
    fake_init(&f);
    fake_open(&f);
    send_str("GET /v1/agents/echo/ws HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " KEY "\r\n"
             "Sec-WebSocket-Protocol: chat, ag-ui\r\n\r\n");
    assert_memory_equal(f.wire.data, "HTTP/1.1 101 ", 13);
    assert_non_null(strstr(f.wire.data, "\r\nSec-WebSocket-Protocol: ag-ui\r\n"));
}

struct refusal {
    const char *req;
    int status;
    const char *code;
    const char *header;   /* one the answer must carry, or NULL */
};

static void test_refused_handshakes(void **state)
{
    const struct refusal cases[] = {
        {"GET /v1/agents/echo/ws HTTP/1.1\r\nHost: x\r\n\r\n", 426, "upgrade_required", "\r\nUpgrade: websocket\r\n"},
        {"GET /v1/agents/echo/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " KEY "\r\n\r\n", 426, "upgrade_required", NULL},
        {"GET /v1/agents/echo/ws HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " KEY "\r\n\r\n", 426, "upgrade_required", NULL},
        {"GET /v1/agents/echo/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: " KEY "\r\n\r\n", 426, "unsupported_websocket_version",
         "\r\nSec-WebSocket-Version: 13\r\n"},
        {"GET /v1/agents/echo/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " KEY "\r\n\r\n", 426, "unsupported_websocket_version", NULL},
        {"GET /v1/agents/echo/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n", 400, "bad_request", NULL},
        {"GET /v1/agents/echo/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n\r\n", 400, "bad_request", NULL},
        {"GET /v1/agents/echo/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ*==\r\n\r\n", 400, "bad_request", NULL},
        {"GET /v1/agents/echo/ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " KEY "\r\n\r\n", 400, "bad_request", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_init(&f);
        fake_open(&f);
        send_str(cases[i].req);
        if (getenv("T_DEBUG"))
            fprintf(stderr, "case %zu: %s\n", i, f.wire.data);
        wire_resp_t r;
        size_t pos = 0;
        assert_true(wire_next(f.wire.data, f.wire.len, &pos, &r));
        assert_int_equal(r.status, cases[i].status);
        json_t *j = json_loads(r.body, 0, NULL);
        assert_string_equal(json_string_value(json_object_get(j, "error")), cases[i].code);
        json_decref(j);
        if (cases[i].header)
            assert_non_null(strstr(r.head, cases[i].header));
        assert_non_null(strstr(r.head, "\r\nConnection: close\r\n"));   /* nothing after it is HTTP */
        free(r.body);
        assert_null(fake_conn(&f)->ws);
        assert_int_equal(fake_conn(&f)->state, CONN_LINGER);
        fake_close(&f);
    }
    /* Draining: no new WebSocket sessions. */
    fake_init(&f);
    fake_open(&f);
    f.sh.draining = true;
    send_str(UPGRADE "\r\n");
    assert_memory_equal(f.wire.data, "HTTP/1.1 503 ", 13);
    assert_non_null(strstr(f.wire.data, "\"error\":\"draining\""));
    assert_null(fake_conn(&f)->ws);
}

/* Frames sent in the same read as the upgrade request are the WebSocket's. */
static void test_frames_with_the_upgrade(void **state)
{
    fake_open(&f);
    uint8_t req[512];
    size_t n = strlen(UPGRADE "\r\n");
    memcpy(req, UPGRADE "\r\n", n);
    n += client_frame(req + n, 0x80 | WSF_PING, "early", 5, false);
    fake_send(&f, (const char *)req, n);
    frames_t *fs = frames();
    assert_int_equal(fs->n, 1);
    assert_int_equal(fs->f[0].op, WSF_PONG);
    assert_string_equal(fs->f[0].data, "early");
    assert_int_equal(fake_conn(&f)->pending.len, 0);
}

/* ---- runs ---- */

static void test_run_frames(void **state)
{
    upgrade();
    send_text(run_input("r1", "hello big world", 0));
    frames_t *fs = frames();
    assert_int_equal(fs->n, 7);                                  /* 3 words + start, end, run start, run end */
    for (int i = 0; i < fs->n; i++) {
        assert_int_equal(fs->f[i].op, WSF_TEXT);
        assert_true(fs->f[i].fin);                               /* one unfragmented frame per event */
    }
    json_t *ev = events_of("r1");
    assert_int_equal(json_array_size(ev), 7);                    /* every event names its run */
    assert_string_equal(ev_type(ev, 0), "RUN_STARTED");
    assert_string_equal(ev_type(ev, 1), "TEXT_MESSAGE_START");
    assert_string_equal(ev_type(ev, 6), "RUN_FINISHED");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 3), "delta")), "big ");
    json_decref(ev);
    /* spliced in first, without re-encoding what follows */
    assert_memory_equal(got.f[1].data, "{\"runId\":\"r1\",\"type\":\"TEXT_MESSAGE_START\"", 41);
    assert_int_equal(gm.runs_started[0][MT_WS], 1);
    assert_int_equal(gm.runs_ended[0][MT_WS][MO_FINISHED], 1);
    assert_int_equal(gm.streams[MT_WS], 0);
    assert_int_equal(fake_conn(&f)->state, CONN_OPEN);          /* the connection outlives its runs */
}

/* Two runs at once; each frame carries its own runId. */
static void test_concurrent_runs(void **state)
{
    upgrade();
    send_text(run_input("a", "one two three", 100));
    send_text(run_input("b", "four five", 100));
    for (int i = 0; i < 10 && (gm.runs_ended[0][MT_WS][MO_FINISHED] < 2); i++)
        fake_advance(&f, 100);
    json_t *a = events_of("a"), *b = events_of("b");
    assert_int_equal(json_array_size(a), 7);
    assert_int_equal(json_array_size(b), 6);
    assert_string_equal(ev_type(a, 6), "RUN_FINISHED");
    assert_string_equal(ev_type(b, 5), "RUN_FINISHED");
    json_decref(a);
    json_decref(b);
}

static void test_max_runs_and_duplicates(void **state)
{
    ws_conf_mut(&f.cfg)->max_runs = 2;
    upgrade();
    send_text(run_input("r1", "a b c d", 100));
    send_text(run_input("r1", "again", 0));      /* same runId while it runs */
    send_text(run_input("r2", "a b c d", 100));
    send_text(run_input("r3", "x", 0));          /* a third with two running */
    char codes[256];
    error_codes("r1", codes, sizeof codes);
    assert_string_equal(codes, "duplicate_run");
    error_codes("r3", codes, sizeof codes);
    assert_string_equal(codes, "too_many_runs");
    json_t *r3 = events_of("r3");
    assert_int_equal(json_array_size(r3), 1);    /* refused: only the error */
    json_decref(r3);
    for (int i = 0; i < 10 && gm.runs_ended[0][MT_WS][MO_FINISHED] < 2; i++)
        fake_advance(&f, 100);
    assert_int_equal(gm.runs_ended[0][MT_WS][MO_FINISHED], 2);
    send_text(run_input("r3", "x", 0));          /* slots free again */
    json_t *ev = events_of("r3");
    assert_string_equal(ev_type(ev, json_array_size(ev) - 1), "RUN_FINISHED");
    json_decref(ev);
    error_codes("", codes, sizeof codes);
    assert_string_equal(codes, "duplicate_run too_many_runs");
}

static void test_cancel(void **state)
{
    upgrade();
    send_text(run_input("keep", "a b c", 100));
    send_text(run_input("stop", "a b c", 100));
    send_text("{\"type\":\"CANCEL\",\"runId\":\"stop\"}");
    char codes[128];
    error_codes("stop", codes, sizeof codes);
    assert_string_equal(codes, "cancelled");
    assert_int_equal(gm.runs_ended[0][MT_WS][MO_CLIENT_CLOSED], 1);
    send_text("{\"type\":\"CANCEL\",\"runId\":\"nobody\"}");   /* nothing to cancel: nothing said */
    send_text("{\"type\":\"CANCEL\"}");
    error_codes("", codes, sizeof codes);
    assert_string_equal(codes, "cancelled invalid_input");
    for (int i = 0; i < 10 && !gm.runs_ended[0][MT_WS][MO_FINISHED]; i++)
        fake_advance(&f, 100);
    json_t *keep = events_of("keep"), *stop = events_of("stop");
    assert_string_equal(ev_type(keep, json_array_size(keep) - 1), "RUN_FINISHED");
    assert_string_equal(ev_type(stop, json_array_size(stop) - 1), "RUN_ERROR");   /* nothing after it */
    json_decref(keep);
    json_decref(stop);
    assert_int_equal(fake_conn(&f)->state, CONN_OPEN);
}

/* An object that is not a valid RunAgentInput: a RUN_ERROR (with its runId
 * when it has one), and the connection stays open. */
static void test_invalid_input(void **state)
{
    upgrade();
    send_text("{\"threadId\":\"t\",\"runId\":\"bad\",\"messages\":[{\"role\":\"bogus\"}]}");
    send_text("{\"hello\":1}");
    char codes[128];
    error_codes("bad", codes, sizeof codes);
    assert_string_equal(codes, "invalid_input");
    error_codes("", codes, sizeof codes);
    assert_string_equal(codes, "invalid_input invalid_input");
    json_t *ev = events_of("bad");
    assert_non_null(strstr(json_string_value(json_object_get(json_array_get(ev, 0), "message")), "messages[0]"));
    json_decref(ev);
    assert_int_equal(gm.rejected[MRJ_INVALID_INPUT], 2);
    assert_int_equal(fake_conn(&f)->state, CONN_OPEN);
    assert_int_equal(count_op(WSF_CLOSE), 0);
}

/* ---- control frames and closing ---- */

static void test_ping_pong(void **state)
{
    upgrade();
    send_frame(WSF_PING, "are you there", 13);
    send_frame(WSF_PONG, "unsolicited", 11);     /* allowed, and unanswered */
    send_frame(WSF_PING, "", 0);
    frames_t *fs = frames();
    assert_int_equal(fs->n, 2);
    assert_int_equal(fs->f[0].op, WSF_PONG);
    assert_string_equal(fs->f[0].data, "are you there");
    assert_int_equal(fs->f[1].op, WSF_PONG);
    assert_int_equal(fs->f[1].len, 0);
}

/* Pings read in one go get one pong, for the latest (RFC 6455 5.5.3): a
 * flood of pings costs a pong per read, not a queue of them. */
static void test_pings_one_pong(void **state)
{
    upgrade();
    uint8_t *b = malloc(50 * 16);
    size_t n = 0;
    for (int i = 0; i < 50; i++) {
        char pl[16];
        snprintf(pl, sizeof pl, "p%02d", i);
        n += client_frame(b + n, 0x80 | WSF_PING, pl, 3, false);
    }
    fake_send(&f, (const char *)b, n);
    free(b);
    frames_t *fs = frames();
    assert_int_equal(fs->n, 1);
    assert_int_equal(fs->f[0].op, WSF_PONG);
    assert_string_equal(fs->f[0].data, "p49");
    send_frame(WSF_PING, "again", 5);              /* a later read: its own pong */
    fs = frames();
    assert_int_equal(fs->n, 2);
    assert_string_equal(fs->f[1].data, "again");
}

/* 100 messages in one read, each answered with a RUN_ERROR, to a client that
 * reads nothing: the parse stops once the output is at stream.buffer, the rest
 * waits in pending; each delivery under half reads more, and in the end every
 * message is answered once, in order. (Before, all 100 were answered at once.) */
static void test_input_held_while_output_full(void **state)
{
    f.cfg.stream_buffer_bytes = 1024;
    upgrade();
    conn_t *c = fake_conn(&f);
    fake_flush(&f);
    uint8_t *b = malloc(100 * 40);
    size_t n = 0;
    for (int i = 0; i < 100; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "{\"runId\":\"m%03d\"}", i);
        n += client_frame(b + n, 0x80 | WSF_TEXT, msg, strlen(msg), false);
    }
    conn_input(c, (const char *)b, n);             /* nothing delivered */
    uint64_t answered = gm.rejected[MRJ_INVALID_INPUT];
    assert_true(answered > 0 && answered < 20);
    assert_true(conn_out_pending(c) >= 1024 && conn_out_pending(c) < 1024 + 256);
    assert_true(c->pending.len > 0);
    assert_memory_equal(c->pending.data, b + n - c->pending.len, c->pending.len);
    uint8_t ping[16];
    size_t pn = client_frame(ping, 0x80 | WSF_PING, "held", 4, false);
    conn_input(c, (const char *)ping, pn);         /* behind the held input: held too */
    assert_int_equal(gm.rejected[MRJ_INVALID_INPUT], answered);
    assert_memory_equal(c->pending.data + c->pending.len - pn, ping, pn);
    free(b);
    for (int i = 0; i < 100 && c->pending.len; i++) {
        conn_mark_dirty(c);
        fake_flush(&f);                            /* the client reads: more is parsed */
    }
    assert_int_equal(c->pending.len, 0);
    assert_int_equal(gm.rejected[MRJ_INVALID_INPUT], 100);
    frames_t *fs = frames();
    int k = 0;
    for (int i = 0; i < fs->n; i++) {
        if (fs->f[i].op != WSF_TEXT)
            continue;
        char want[16];
        snprintf(want, sizeof want, "\"m%03d\"", k++);
        assert_non_null(strstr(fs->f[i].data, want));   /* in order, none lost, none twice */
    }
    assert_int_equal(k, 100);
    assert_int_equal(fs->f[fs->n - 1].op, WSF_PONG);
    assert_string_equal(fs->f[fs->n - 1].data, "held");
    assert_int_equal(c->state, CONN_OPEN);
}

/* The same client never reads: its held input starts the stall clock, and
 * ws.stall_timeout later the connection is closed with 1008. */
static void test_held_input_stall_close(void **state)
{
    f.cfg.stream_buffer_bytes = 1024;
    ws_conf_mut(&f.cfg)->stall_timeout_ms = 3000;
    upgrade();
    conn_t *c = fake_conn(&f);
    fake_flush(&f);
    uint8_t *b = malloc(100 * 16);
    size_t n = 0;
    for (int i = 0; i < 100; i++)
        n += client_frame(b + n, 0x80 | WSF_TEXT, "{}", 2, false);
    conn_input(c, (const char *)b, n);
    free(b);
    assert_true(c->pending.len > 0);
    f.sh.now_ms += 2999;
    timer_run(&f.sh.timers, f.sh.now_ms);
    assert_int_equal(c->state, CONN_OPEN);
    f.sh.now_ms += 1;
    timer_run(&f.sh.timers, f.sh.now_ms);
    assert_int_equal(c->state, CONN_CLOSING);
    fake_flush(&f);
    char why[64];
    assert_int_equal(close_code(why, sizeof why), WSF_CLOSE_POLICY);
    assert_string_equal(why, "client too slow: send buffer stuck");
    assert_true(gm.rejected[MRJ_INVALID_INPUT] < 100);   /* the held messages were never answered */
}

/* The peer closes: its code is echoed, running runs stop, our FIN follows the
 * close frame, and nothing it sends after is answered. */
static void test_peer_close(void **state)
{
    static const struct { unsigned code; int expect; } cases[] = {{1000, 1000}, {1001, 1001}, {4000, 4000}, {0, 1000}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake_init(&f);
        f.sh.mod[g_gwm_mod] = &gm;
        memset(&gm, 0, sizeof gm);
        ws_conf_mut(&f.cfg)->ping_interval_ms = 0;
        upgrade();
        send_text(run_input("r", "a b c", 100));
        if (cases[i].code)
            send_close(cases[i].code);
        else
            send_frame(WSF_CLOSE, "", 0);        /* no status: answered 1000 */
        assert_int_equal(close_code(NULL, 0), cases[i].expect);
        assert_int_equal(gm.runs_ended[0][MT_WS][MO_CLIENT_CLOSED], 1);
        assert_int_equal(fake_conn(&f)->state, CONN_LINGER);
        size_t before = f.wire.len;
        send_frame(WSF_PING, "x", 1);
        assert_int_equal(f.wire.len, before);
        assert_int_equal(count_op(WSF_CLOSE), 1);
        fake_close(&f);
    }
    fake_init(&f);
}

/* A close code that may not appear on the wire is a protocol error. */
static void test_bad_close_code(void **state)
{
    upgrade();
    send_close(1005);
    char why[128];
    assert_int_equal(close_code(why, sizeof why), WSF_CLOSE_PROTOCOL);
    assert_string_equal(why, "protocol error");
}

static void test_protocol_closes(void **state)
{
    /* binary: 1003 */
    upgrade();
    send_frame(WSF_BINARY, "{}", 2);
    char why[128];
    assert_int_equal(close_code(why, sizeof why), WSF_CLOSE_UNSUPPORTED);
    assert_string_equal(why, "send RunAgentInput as text messages");
    fake_close(&f);
    /* not a JSON object: 1007 */
    fake_init(&f);
    upgrade();
    send_text("[1,2,3]");
    assert_int_equal(close_code(why, sizeof why), WSF_CLOSE_INVALID_DATA);
    assert_string_equal(why, "a message must be a JSON object");
    fake_close(&f);
    /* invalid UTF-8 in a text message: 1007 */
    fake_init(&f);
    upgrade();
    send_frame(WSF_TEXT, "{\"a\":\"\xc3\x28\"}", 10);
    assert_int_equal(close_code(why, sizeof why), WSF_CLOSE_INVALID_DATA);
    assert_string_equal(why, "invalid UTF-8 in a text message");
    fake_close(&f);
    /* an unmasked client frame: 1002 */
    fake_init(&f);
    upgrade();
    uint8_t fr[64];
    size_t n = client_frame(fr, 0x80 | WSF_TEXT, "{}", 2, true);
    fake_send(&f, (const char *)fr, n);
    assert_int_equal(close_code(why, sizeof why), WSF_CLOSE_PROTOCOL);
    fake_close(&f);
    /* a message over ws.max_message: 1009, before the rest arrives */
    fake_init(&f);
    ws_conf_mut(&f.cfg)->max_message_bytes = 64;
    upgrade();
    uint8_t hdr[6] = {0x80 | WSF_TEXT, 0x80 | 100, 1, 2, 3, 4};   /* a 100-byte text frame's header */
    fake_send(&f, (const char *)hdr, 6);
    assert_int_equal(close_code(why, sizeof why), WSF_CLOSE_TOO_BIG);
    assert_string_equal(why, "message exceeds ws.max_message");
    assert_int_equal(fake_conn(&f)->state, CONN_LINGER);
}

/* After our close frame the peer has 2 s to go; then it is cut. */
static void test_close_wait(void **state)
{
    upgrade();
    send_frame(WSF_BINARY, "x", 1);
    assert_int_equal(close_code(NULL, 0), WSF_CLOSE_UNSUPPORTED);
    conn_t *c = fake_conn(&f);
    fake_advance(&f, 1999);
    assert_int_equal(c->state, CONN_LINGER);
    fake_advance(&f, 1);
    assert_int_equal(c->state, CONN_ABORT);
}

/* ---- drain ---- */

static void test_drain(void **state)
{
    upgrade();
    conn_t *c = fake_conn(&f);
    send_text(run_input("r1", "a b c", 100));
    f.sh.draining = true;
    c->proto->drain(c);                            /* what net/conns.c's drain does */
    assert_int_equal(count_op(WSF_CLOSE), 0);      /* a run is still going */
    send_text(run_input("r2", "x", 0));
    char codes[64];
    error_codes("r2", codes, sizeof codes);
    assert_string_equal(codes, "shutting_down");
    for (int i = 0; i < 10 && gm.runs_ended[0][MT_WS][MO_FINISHED] < 1; i++)
        fake_advance(&f, 100);
    json_t *ev = events_of("r1");
    assert_string_equal(ev_type(ev, json_array_size(ev) - 1), "RUN_FINISHED");   /* it finished */
    json_decref(ev);
    char why[64];
    assert_int_equal(close_code(why, sizeof why), WSF_CLOSE_GOING_AWAY);
    assert_string_equal(why, "server shutting down");
    assert_int_equal(c->state, CONN_LINGER);
    fake_close(&f);

    /* An idle connection closes at once. */
    fake_init(&f);
    upgrade();
    f.sh.draining = true;
    fake_conn(&f)->proto->drain(fake_conn(&f));
    fake_flush(&f);
    assert_int_equal(close_code(NULL, 0), WSF_CLOSE_GOING_AWAY);
}

/* ---- timers ---- */

static void test_ping_timer(void **state)
{
    ws_conf_mut(&f.cfg)->ping_interval_ms = 1000;
    ws_conf_mut(&f.cfg)->pong_timeout_ms = 500;
    upgrade();
    conn_t *c = fake_conn(&f);
    fake_advance(&f, 999);
    assert_int_equal(count_op(WSF_PING), 0);
    fake_advance(&f, 1);
    assert_int_equal(count_op(WSF_PING), 1);
    assert_string_equal(got.f[0].data, "agate");
    fake_advance(&f, 400);
    send_frame(WSF_PONG, "agate", 5);             /* answered: no close */
    fake_advance(&f, 200);
    assert_int_equal(count_op(WSF_CLOSE), 0);
    /* quiet again: the next ping comes ping_interval after the last byte received */
    fake_advance(&f, 799);
    assert_int_equal(count_op(WSF_PING), 1);
    fake_advance(&f, 1);
    assert_int_equal(count_op(WSF_PING), 2);
    fake_advance(&f, 499);
    assert_int_equal(count_op(WSF_CLOSE), 0);
    fake_advance(&f, 1);                           /* no answer within pong_timeout */
    char why[64];
    assert_int_equal(close_code(why, sizeof why), WSF_CLOSE_GOING_AWAY);
    assert_string_equal(why, "ping timeout");
    assert_int_equal(c->state, CONN_LINGER);
}

/* Output held over stream.buffer with no send progress for ws.stall_timeout:
 * close 1008 and the runs are cancelled. */
static void test_stall_close(void **state)
{
    f.cfg.stream_buffer_bytes = 512;
    ws_conf_mut(&f.cfg)->stall_timeout_ms = 3000;
    upgrade();
    conn_t *c = fake_conn(&f);
    char words[2048] = "";
    for (int i = 0; i < 200; i++)
        strcat(words, "word ");
    uint8_t *fr = malloc(4096);
    const char *in = run_input("big", words, 0);
    size_t n = client_frame(fr, 0x80 | WSF_TEXT, in, strlen(in), false);
    conn_input(c, (const char *)fr, n);            /* the client reads nothing from here */
    free(fr);
    assert_true(conn_out_pending(c) >= 512);
    assert_int_equal(gm.runs_ended[0][MT_WS][MO_FINISHED], 0);   /* blocked, not finished */
    f.sh.now_ms += 2999;
    timer_run(&f.sh.timers, f.sh.now_ms);
    assert_int_equal(c->state, CONN_OPEN);
    f.sh.now_ms += 1;
    timer_run(&f.sh.timers, f.sh.now_ms);
    assert_int_equal(c->state, CONN_CLOSING);
    assert_int_equal(gm.runs_ended[0][MT_WS][MO_CLIENT_CLOSED], 1);
    fake_flush(&f);
    char why[64];
    assert_int_equal(close_code(why, sizeof why), WSF_CLOSE_POLICY);
    assert_string_equal(why, "client too slow: send buffer stuck");
}

/* Reaping an upgraded connection: the upgrade request is answered once (101,
 * counted under the ws route), the session's state is freed (ASan checks). */
static void test_reap(void **state)
{
    upgrade();
    send_text(run_input("r1", "a b c", 100));
    conn_t *c = fake_conn(&f);
    conn_abort(c);
    assert_int_equal(gm.runs_ended[0][MT_WS][MO_CLIENT_CLOSED], 1);
    assert_int_equal(gm.streams[MT_WS], 0);
    conn_reap(c);
    assert_int_equal(c->state, CONN_FREE);
    assert_null(c->ws);
    assert_int_equal(gm.ws_connections, 0);
    assert_int_equal(gm.requests[ML_MAIN][MR_WS][MM_GET][0], 1);
    assert_int_equal(f.sh.timers.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_handshakes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frames_with_the_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_runs_and_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_pong, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pings_one_pong, setup, teardown),
        cmocka_unit_test_setup_teardown(test_input_held_while_output_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_input_stall_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_close_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stall_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reap, setup, teardown),
    };
    int rc = cmocka_run_group_tests_name("ws", tests, NULL, NULL);
    frames_free();
    return rc;
}
