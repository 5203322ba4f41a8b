/* ws: the WebSocket connection (see ws.h): the handshake, frames in, and the
 * rules for closing, backpressure and liveness; the runs on it and the frames
 * they write are in ws_run.c.
 *
 * Backpressure is the SSE rule applied to the whole connection: a run emits
 * only while the connection's queued output is under stream.buffer; blocked
 * runs resume from the send completion that brings it under half. What the
 * peer sends is answered into the same output (pongs, RUN_ERRORs, runs'
 * first events), so it is read under the same rule: the parser pauses at the
 * end of a frame once the output is full, and the rest waits in the
 * connection's `pending` with the recv stopped (net/conn.c) until the output
 * is under half. Pings read in one feed get one pong, for the latest. If
 * output stays over the bound with no send progress for ws.stall_timeout, the
 * connection is closed with 1008 and its runs are cancelled.
 *
 * One timer carries the nearest of: ping due (nothing received for
 * ws.ping_interval), pong overdue (ws.pong_timeout after our ping; any byte from
 * the peer counts as an answer), stall, and the wait after our close frame. It
 * is re-armed lazily from the callback, so frames never touch the timer heap.
 *
 * Closing: whichever side starts, agate answers or sends one close frame, stops
 * every run, then half-closes after the flush (conn_close_after_flush), which
 * is the RFC's "server closes the TCP connection first". */
#include "net/ws.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config_sect.h"
#include "net/access.h"
#include "net/gwmetrics.h"
#include "net/http1.h"
#include "net/ws_int.h"
#include "net/wsframe.h"

#define WS_GUID          "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_CLOSE_WAIT_MS 2000    /* after our close frame, how long the peer gets to go */

static void ws_timer_fired(agate_timer_t *t);

/* ---- the handshake ---- */

/* Whether a comma-separated header value holds `token` (case-insensitive). */
static bool has_token(const char *v, size_t n, const char *token)
{
    size_t tl = strlen(token), pos = 0, len;
    const char *el;
    while (http_list_next(v, n, &pos, &el, &len))
        if (len == tl && !strncasecmp(el, token, tl))
            return true;
    return false;
}

static bool header_has_token(const http_req_t *r, const char *name, const char *token)
{
    const char *v;
    size_t n;
    /* Several headers of one name are one list (RFC 9110 5.3): look at each. */
    for (uint32_t i = 0; i < r->n_hdrs; i++) {
        const http_hdr_t *h = &r->hdrs[i];
        if (h->name.len != strlen(name) || strncasecmp(http_str(r, h->name), name, h->name.len))
            continue;
        v = http_str(r, h->value);
        n = h->value.len;
        if (has_token(v, n, token))
            return true;
    }
    return false;
}

static bool b64char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '+' ||
           ch == '/';
}

/* Sec-WebSocket-Key: base64 of 16 bytes, i.e. 22 characters and "==". */
static bool key_valid(const char *k, size_t n)
{
    if (n != 24 || k[22] != '=' || k[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!b64char(k[i]))
            return false;
    return true;
}

/* base64(SHA-1(key + GUID)): 28 characters and a NUL. */
static int accept_value(const char *key, size_t n, char out[29])
{
    char in[24 + sizeof WS_GUID];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    memcpy(in, key, n);
    memcpy(in + n, WS_GUID, sizeof WS_GUID - 1);
    if (!EVP_Digest(in, n + sizeof WS_GUID - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return -EIO;
    return EVP_EncodeBlock((unsigned char *)out, md, 20) == 28 ? 0 : -EIO;
}

/* A refused upgrade ends the connection: llhttp has taken the request as an
 * upgrade, so nothing after it could be parsed as HTTP anyway. */
static void refuse(conn_t *c, int status, const char *code, const char *msg, const char *extra)
{
    c->http.req.keep_alive = false;
    http_error(c, status, code, msg, extra);
}

void ws_upgrade(conn_t *c, const cfg_agent_t *agent)
{
    http_req_t *r = &c->http.req;
    shard_t *sh = c->sh;
    const ws_conf_t *wc = ws_conf(sh->cfg);
    static const char v13[] = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
    const char *v;
    size_t n;
    if (!header_has_token(r, "upgrade", "websocket") || !header_has_token(r, "connection", "upgrade")) {
        refuse(c, 426, "upgrade_required", "this endpoint speaks WebSocket: send Upgrade: websocket", v13);
        return;
    }
    if (r->major != 1 || r->minor < 1) {
        refuse(c, 400, "bad_request", "a WebSocket upgrade needs HTTP/1.1", NULL);
        return;
    }
    if (!http_header(r, "sec-websocket-version", &v, &n) || n != 2 || memcmp(v, "13", 2)) {
        refuse(c, 426, "unsupported_websocket_version", "only WebSocket version 13 is supported", v13);
        return;
    }
    char acc[29];
    if (!http_header(r, "sec-websocket-key", &v, &n) || !key_valid(v, n) || accept_value(v, n, acc)) {
        refuse(c, 400, "bad_request", "Sec-WebSocket-Key must be 16 bytes in base64", NULL);
        return;
    }
    if (sh->draining) {
        refuse(c, 503, "draining", "the server is shutting down", NULL);
        return;
    }
    access_ident_t ident;
    if (!access_http_upgrade(c, agent, &ident))   /* 400, 401 or 403 instead of the upgrade */
        return;
    ws_conn_t *ws = calloc(1, sizeof *ws + wc->max_runs * sizeof(ws_slot_t));
    if (!ws) {
        refuse(c, 503, "out_of_memory", "out of memory", NULL);
        return;
    }
    ws->c = c;
    ws->agent = agent->slot;
    ws->ident = ident;
    ws->cap = wc->max_runs;
    for (uint32_t i = 0; i < ws->cap; i++)
        ws->slots[i].ws = ws;
    wsf_init(&ws->parser, wc->max_message_bytes);
    ws->timer.cb = ws_timer_fired;
    ws->last_rx_ms = sh->now_ms;

    char extra[160];
    bool agui = header_has_token(r, "sec-websocket-protocol", "ag-ui");
    snprintf(extra, sizeof extra, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s", acc,
             agui ? "Sec-WebSocket-Protocol: ag-ui\r\n" : "");
    http_upgrade(c, extra);
    c->ws = ws;
    conn_set_proto(c, &ws_proto);   /* from here conn.c routes input, sends, abort and reap to us */
    c->run_slot = (int16_t)agent->slot;
    if (gwm(sh))
        metrics_gauge_add(&gwm(sh)->ws_connections, 1);
    if (wc->ping_interval_ms)
        timer_arm(&sh->timers, &ws->timer, sh->now_ms + wc->ping_interval_ms);
}

/* ---- frames in ---- */

static int handle_message(ws_conn_t *ws, int opcode, const char *data, size_t len)
{
    if (ws->closing || ws->c->state != CONN_OPEN)
        return 1;   /* a run's failure closed or dropped the connection mid-feed */
    if (opcode != WSF_TEXT) {
        ws_close(ws, WSF_CLOSE_UNSUPPORTED, "send RunAgentInput as text messages");
        return 1;
    }
    if (gwm(ws->c->sh))
        metrics_add(&gwm(ws->c->sh)->ws_messages[0], 1);
    runinput_t in;
    runinput_err_t err;
    /* A CANCEL is never a valid RunAgentInput (no threadId), so the common case
     * is one parse; only failures look at the message again. A message naming
     * "CANCEL" is checked first in case it also parses as an input. */
    bool maybe_cancel = memmem(data, len, "\"CANCEL\"", 8) != NULL;
    if (!maybe_cancel && !runinput_parse(data, len, &in, &err))
        return ws_run_start(ws, &in, data, len);
    if (maybe_cancel) {
        runinput_peek_t pk;
        runinput_peek(data, len, &pk);   /* (no memory: not a CANCEL, then) */
        bool cancel = pk.type && pk.type_len == 6 && !memcmp(pk.type, "CANCEL", 6);
        if (!cancel && !runinput_parse(data, len, &in, &err))
            return ws_run_start(ws, &in, data, len);
        if (cancel)
            memset(&err, 0, sizeof err);
    }
    return ws_not_a_run(ws, data, len, &err);
}

/* The frame callbacks stop the parse once the output is full: what the peer
 * sent after that frame waits until the client reads. */
static int pause_if_full(ws_conn_t *ws, int rc)
{
    return !rc && conn_out_full(ws->c) ? WSF_PAUSE : rc;
}

static int on_message(void *ctx, int opcode, const char *data, size_t len)
{
    ws_conn_t *ws = ctx;
    return pause_if_full(ws, handle_message(ws, opcode, data, len));
}

static int on_control(void *ctx, int opcode, const char *payload, size_t len)
{
    ws_conn_t *ws = ctx;
    if (ws->closing || ws->c->state != CONN_OPEN)
        return 1;
    if (gwm(ws->c->sh))
        metrics_add(&gwm(ws->c->sh)->ws_messages[0], 1);
    switch (opcode) {
    case WSF_PING:
        /* Answered at the feed's end, once for all the pings it read: a flood
         * of pings costs one pong, not a queue of them. */
        memcpy(ws->pong, payload, len);
        ws->pong_len = (uint8_t)len;
        ws->pong_due = true;
        return 0;
    case WSF_PONG:
        return 0;   /* any byte already counted as an answer */
    default: {
        /* The peer closes: echo its code (RFC 6455 5.5.1), stop the runs, FIN. */
        unsigned code = len >= 2 ? (unsigned)(uint8_t)payload[0] << 8 | (uint8_t)payload[1] : WSF_CLOSE_NORMAL;
        ws_close(ws, code, "");
        return 1;
    }
    }
}

static const wsf_callbacks_t ws_callbacks = {on_message, on_control};

static const char *close_reason(int code)
{
    switch (code) {
    case WSF_CLOSE_PROTOCOL: return "protocol error";
    case WSF_CLOSE_INVALID_DATA: return "invalid UTF-8 in a text message";
    case WSF_CLOSE_TOO_BIG: return "message exceeds ws.max_message";
    default: return "";
    }
}

/* Parses what the peer sent; returns how many bytes were taken: all of them,
 * unless the output filled and the parse paused (the rest is the caller's to
 * hold). Pings read here are answered last, with one pong. */
static size_t feed(ws_conn_t *ws, const char *data, size_t n)
{
    conn_t *c = ws->c;
    size_t used;
    c->in_feed = true;
    int rc = wsf_feed_some(&ws->parser, data, n, &ws_callbacks, ws, &used);
    c->in_feed = false;
    if (ws->pong_due && !ws->closing && c->state == CONN_OPEN &&
        ws_put_frame(ws, WSF_PONG, (const char *)ws->pong, ws->pong_len, NULL, 0, NULL, 0))
        rc = -ENOMEM;
    ws->pong_due = false;
    if (rc < 0)
        conn_abort(c);
    else if (rc >= 1000)
        ws_close(ws, (unsigned)rc, close_reason(rc));
    return rc == WSF_PAUSE ? used : n;
}

/* Input that must wait for the output: in pending, the recv stopped, and the
 * stall clock running, so a peer that never reads is closed with 1008. */
static void hold(ws_conn_t *ws, const char *data, size_t n)
{
    conn_hold_input(ws->c, data, n, 0);
    ws_note_blocked(ws);
}

static void ws_input(conn_t *c, const char *data, size_t n)
{
    ws_conn_t *ws = c->ws;
    ws->last_rx_ms = c->sh->now_ms;
    ws->ping_sent_ms = 0;
    if (gwm(c->sh))
        metrics_add(&gwm(c->sh)->ws_bytes[0], n);
    if (ws->closing)
        return;
    if (c->pending.len || conn_out_full(c)) {
        hold(ws, data, n);
        return;
    }
    size_t used = feed(ws, data, n);
    if (used < n && c->state == CONN_OPEN && !ws->closing)
        hold(ws, data + used, n - used);
}

/* What waited in pending: the bytes after the upgrade request, or input held
 * for the output. The parser copies what it keeps, and nothing appends to
 * pending during a feed, so the bytes are fed in place; what the parse did
 * not take moves to the front. */
static void ws_take_pending(conn_t *c)
{
    ws_conn_t *ws = c->ws;
    if (!ws || !c->pending.len || c->state != CONN_OPEN)
        return;
    size_t n = c->pending.len, used = ws->closing ? n : feed(ws, c->pending.data, n);
    if (c->state != CONN_OPEN || ws->closing)
        used = n;
    memmove(c->pending.data, c->pending.data + used, n - used);
    c->pending.len = n - used;
    if (c->pending.len)
        ws_note_blocked(ws);
}

/* ---- closing, backpressure, timers ---- */

void ws_close(ws_conn_t *ws, unsigned code, const char *reason)
{
    conn_t *c = ws->c;
    if (ws->closing)
        return;
    ws_stop_runs(ws, c->sh->draining ? MO_CUT : MO_CLIENT_CLOSED);
    if (c->state != CONN_OPEN) {
        ws->closing = true;   /* already on its way out: nothing more to say */
        return;
    }
    char pl[2 + 123];
    size_t rl = strlen(reason);
    if (rl > 123)
        rl = 123;
    pl[0] = (char)(code >> 8);
    pl[1] = (char)code;
    memcpy(pl + 2, reason, rl);
    if (ws_put_frame(ws, WSF_CLOSE, pl, 2 + rl, NULL, 0, NULL, 0)) {
        conn_abort(c);
        return;
    }
    ws->closing = true;
    ws->close_at_ms = c->sh->now_ms + WS_CLOSE_WAIT_MS;
    timer_arm(&c->sh->timers, &ws->timer, ws->close_at_ms);
    conn_close_after_flush(c);
}

void ws_note_blocked(ws_conn_t *ws)
{
    conn_t *c = ws->c;
    if (ws->blocked_since_ms)
        return;
    ws->blocked_since_ms = c->sh->now_ms;
    /* The timer may be idle (pings off) or set for a later ping: it must
     * look at the stall by its deadline. */
    uint64_t due = c->sh->now_ms + ws_conf(c->sh->cfg)->stall_timeout_ms;
    if (!timer_armed(&ws->timer) || ws->timer.at > due)
        timer_arm(&c->sh->timers, &ws->timer, due);
}

static void ws_on_sent(conn_t *c)
{
    ws_conn_t *ws = c->ws;
    if (ws->closing || conn_out_pending(c) > c->sh->cfg->stream_buffer_bytes / 2)
        return;
    ws->blocked_since_ms = 0;
    /* Resume from a rotating start, so one busy run does not always go first. */
    uint32_t start = ws->next_resume++ % ws->cap;
    for (uint32_t k = 0; k < ws->cap && !ws->closing; k++) {
        run_t *r = ws->slots[(start + k) % ws->cap].run;
        if (r && r->blocked)
            run_resume(r);
    }
}

static void ws_drain(conn_t *c)
{
    if (c->ws && c->state == CONN_OPEN)
        ws_maybe_drained(c->ws);
}

static void ws_timer_fired(agate_timer_t *t)
{
    ws_conn_t *ws = (ws_conn_t *)((char *)t - offsetof(ws_conn_t, timer));
    conn_t *c = ws->c;
    const ws_conf_t *wc = ws_conf(c->sh->cfg);
    uint64_t now = c->sh->now_ms, next = UINT64_MAX;
    if (ws->closing) {
        if (now >= ws->close_at_ms)
            conn_abort(c);   /* the peer had its time to read our close frame and go */
        else
            timer_arm(&c->sh->timers, &ws->timer, ws->close_at_ms);
        return;
    }
    if (c->state != CONN_OPEN)
        return;
    if (ws->blocked_since_ms && conn_out_pending(c)) {
        uint64_t since = ws->blocked_since_ms > c->last_progress_ms ? ws->blocked_since_ms : c->last_progress_ms;
        if (now - since >= wc->stall_timeout_ms) {
            ws_close(ws, WSF_CLOSE_POLICY, "client too slow: send buffer stuck");
            return;
        }
        next = since + wc->stall_timeout_ms;
    }
    if (c->pending.len || c->recv_paused) {
        /* Input held for the output: the peer's bytes wait unread in the
         * kernel, so its silence proves nothing. The stall rule judges it. */
        ws->last_rx_ms = now;
        ws->ping_sent_ms = 0;
    }
    if (wc->ping_interval_ms) {
        if (ws->ping_sent_ms) {
            if (now - ws->ping_sent_ms >= wc->pong_timeout_ms) {
                ws_close(ws, WSF_CLOSE_GOING_AWAY, "ping timeout");
                return;
            }
            uint64_t due = ws->ping_sent_ms + wc->pong_timeout_ms;
            next = due < next ? due : next;
        } else if (now - ws->last_rx_ms >= wc->ping_interval_ms) {
            if (ws_put_frame(ws, WSF_PING, "agate", 5, NULL, 0, NULL, 0)) {
                conn_abort(c);
                return;
            }
            ws->ping_sent_ms = now;
            uint64_t due = now + wc->pong_timeout_ms;
            next = due < next ? due : next;
        } else {
            uint64_t due = ws->last_rx_ms + wc->ping_interval_ms;
            next = due < next ? due : next;
        }
    }
    if (next != UINT64_MAX && timer_arm(&c->sh->timers, &ws->timer, next))
        conn_abort(c);   /* no memory for a timer: a connection we cannot time out is unsafe */
}

static void ws_abort(conn_t *c)
{
    ws_conn_t *ws = c->ws;
    timer_cancel(&c->sh->timers, &ws->timer);
    ws_stop_runs(ws, c->sh->draining ? MO_CUT : MO_CLIENT_CLOSED);
}

static void ws_free(conn_t *c)
{
    ws_conn_t *ws = c->ws;
    c->ws = NULL;
    timer_cancel(&c->sh->timers, &ws->timer);
    for (uint32_t i = 0; i < ws->cap; i++) {
        buf_free(&ws->slots[i].body);
        buf_free(&ws->slots[i].rid);
    }
    wsf_free(&ws->parser);
    buf_free(&ws->tmp);
    if (gwm(c->sh))
        metrics_gauge_add(&gwm(c->sh)->ws_connections, -1);
    free(ws);
}

static bool ws_busy(const conn_t *c) { return true; }

const conn_proto_t ws_proto = {
    .input = ws_input,
    .pending = ws_take_pending,
    .sent = ws_on_sent,
    .busy = ws_busy,
    .drain = ws_drain,
    .abort = ws_abort,
    .free = ws_free,
};

/* ---- the ws: section of the configuration ---- */

#define W(field) offsetof(ws_conf_t, field)
static const struct cfg_setting ws_rows[] = {
    { "ws", "max_message",   "AGATE_WS_MAX_MESSAGE",   "1MiB", CFG_K_SIZE,     16, 1u << 30,  W(max_message_bytes) },
    { "ws", "ping_interval", "AGATE_WS_PING_INTERVAL", "30s",  CFG_K_DURATION, 0, UINT32_MAX, W(ping_interval_ms) },
    { "ws", "pong_timeout",  "AGATE_WS_PONG_TIMEOUT",  "10s",  CFG_K_DURATION, 1, UINT32_MAX, W(pong_timeout_ms) },
    { "ws", "stall_timeout", "AGATE_WS_STALL_TIMEOUT", "30s",  CFG_K_DURATION, 1, UINT32_MAX, W(stall_timeout_ms) },
    { "ws", "max_runs",      "AGATE_WS_MAX_RUNS",      "16",   CFG_K_UINT,     1, 1024,       W(max_runs) },
};
#undef W

static const char *const ws_keys[] = { "ws", NULL };

/* rank 40: after upstream and cache, before the agents, in messages and --help */
cfg_section_t ws_conf_section = {
    .name = "ws", .keys = ws_keys, .rows = ws_rows, .n_rows = sizeof ws_rows / sizeof ws_rows[0],
    .size = sizeof(ws_conf_t), .rank = 40,
};

void ws_register(void) { cfg_section_register(&ws_conf_section); }
