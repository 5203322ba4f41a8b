/* ws: the WebSocket connection and its runs' sink.
 *
 * A ws_conn_t hangs off an upgraded conn_t. It owns the frame parser
 * (net/wsframe.c), one timer and a fixed array of run slots (ws.max_runs); a
 * slot owns its run's copy of the RunAgentInput text (proxies forward it, maybe
 * on a retry long after the message buffer was reused) and the pre-escaped
 * `"runId":"..."` member injected into its events. Slot buffers keep their
 * capacity across runs, so a warm connection starts runs without allocating.
 *
 * Output: each event is one unmasked text frame appended to the connection's
 * fill buffer; the header is written first because the payload length is known
 * (gateway-built events are encoded into ws->tmp first, upstream JSON is
 * passed through with the runId member spliced in after its opening brace).
 *
 * Backpressure is the SSE rule applied to the whole connection: a run emits
 * only while the connection's queued output is under stream.buffer; blocked
 * runs resume from the send completion that brings it under half. If output
 * stays over the bound with no send progress for ws.stall_timeout, the
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
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/access.h"
#include "net/coalesce.h"
#include "net/http1.h"
#include "net/wsframe.h"
#include "proto/run.h"
#include "core/json.h"
#include "net/gwmetrics.h"

#define WS_GUID          "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_CLOSE_WAIT_MS 2000    /* after our close frame, how long the peer gets to go */

typedef struct ws_slot {
    run_t          *run;          /* NULL when free */
    struct ws_conn *ws;
    buf_t           body;         /* the run's RunAgentInput text, owned */
    buf_t           rid;          /* "runId":"<escaped>" for injection, owned */
    uint64_t        start_us, last_event_us;
    uint32_t        events;       /* sent, for the run's log line */
    uint32_t        gap_zero;     /* events in the same loop turn as the one before, for the gap
                                     histogram at slot_finish (see sse.c's count_event) */
} ws_slot_t;

typedef struct ws_conn {
    conn_t            *c;
    uint8_t            agent;          /* its slot: looked up in the shard's configuration per run */
    wsf_parser_t       parser;
    buf_t              tmp;            /* one gateway-built event's JSON, before framing */
    agate_timer_t      timer;
    uint64_t           last_rx_ms;     /* last byte from the peer */
    uint64_t           ping_sent_ms;   /* our unanswered ping, 0 when none */
    uint64_t           blocked_since_ms;   /* output went over the bound, 0 when under */
    uint64_t           close_at_ms;    /* after our close frame: abort at this time */
    bool               closing;        /* close frame queued: nothing else goes out */
    access_ident_t     ident;          /* who upgraded (net/access.c); each run is admitted against it */
    uint32_t           n_runs, cap, next_resume;
    ws_slot_t          slots[];
} ws_conn_t;

static void ws_timer_fired(agate_timer_t *t);
static void ws_close(ws_conn_t *ws, unsigned code, const char *reason);


/* ---- the handshake ---- */

/* Whether a comma-separated header value holds `token` (case-insensitive). */
static bool has_token(const char *v, size_t n, const char *token)
{
    size_t tl = strlen(token), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && !strncasecmp(v + s, token, tl))
            return true;
    }
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
    const cfg_t *cfg = sh->cfg;
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
    access_decision_t ad;
    if (access_identify(c, r, &ident, &ad)) {   /* bad credentials: 401 instead of the upgrade */
        c->http.req.keep_alive = false;
        access_http_refuse(c, &ad);
        return;
    }
    ws_conn_t *ws = calloc(1, sizeof *ws + cfg->ws_max_runs * sizeof(ws_slot_t));
    if (!ws) {
        refuse(c, 503, "out_of_memory", "out of memory", NULL);
        return;
    }
    ws->c = c;
    ws->agent = agent->slot;
    ws->ident = ident;
    ws->cap = cfg->ws_max_runs;
    for (uint32_t i = 0; i < ws->cap; i++)
        ws->slots[i].ws = ws;
    wsf_init(&ws->parser, cfg->ws_max_message_bytes);
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
    if (cfg->ws_ping_interval_ms)
        timer_arm(&sh->timers, &ws->timer, sh->now_ms + cfg->ws_ping_interval_ms);
}

/* ---- frames out ---- */

/* Appends one frame whose payload is the concatenation of up to three pieces. */
static int put_frame(ws_conn_t *ws, int opcode, const char *a, size_t an, const char *b, size_t bn, const char *d,
                     size_t dn)
{
    conn_t *c = ws->c;
    buf_t *out = conn_fill(c);
    uint8_t h[WSF_MAX_HEADER];
    size_t len = an + bn + dn, hl = wsf_header(h, opcode, len);
    if (buf_reserve(out, hl + len))
        return -ENOMEM;
    memcpy(out->data + out->len, h, hl);
    out->len += hl;
    buf_append(out, a, an);
    buf_append(out, b, bn);
    buf_append(out, d, dn);
    c->http.req.bytes_out += hl + len;
    if (gwm(c->sh)) {
        metrics_add(&gwm(c->sh)->ws_messages[1], 1);
        metrics_add(&gwm(c->sh)->ws_bytes[1], hl + len);
    }
    conn_mark_dirty(c);
    return 0;
}

/* Per-event metrics, as the SSE sink counts them, but per run (slot). */
static void count_event(ws_slot_t *s, agui_type_t type)
{
    conn_t *c = s->ws->c;
    c->http.req.events++;
    s->events++;
    c->last_event_ms = c->sh->now_ms;
    gwmetrics_t *m = gwm(c->sh);
    if (!m || type >= AGUI_TYPE_COUNT)
        return;
    uint64_t now = c->sh->now_us;
    metrics_add(&m->events[type], 1);
    if (now == s->last_event_us) {
        s->gap_zero++;
        return;
    }
    unsigned a = s->run->agent->slot;
    if (!s->last_event_us)
        metrics_observe_us(&m->first_event[a], now - s->start_us);
    else
        metrics_observe_us(&m->gap[a], now - s->last_event_us);
    s->last_event_us = now;
}

/* An event's JSON as one text frame, with the run's "runId" spliced in after
 * the opening brace unless the event type carries its own. */
static int put_event(ws_slot_t *s, agui_type_t type, const char *json, size_t len)
{
    ws_conn_t *ws = s->ws;
    if (ws->closing)
        return 0;
    const char *p = json, *end = json + len;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    int rc;
    if (type == AGUI_RUN_STARTED || type == AGUI_RUN_FINISHED || p == end || *p != '{') {
        rc = put_frame(ws, WSF_TEXT, json, len, NULL, 0, NULL, 0);
    } else {
        const char *q = p + 1;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
            q++;
        bool empty = q < end && *q == '}';
        rc = put_frame(ws, WSF_TEXT, "{", 1, s->rid.data, s->rid.len - (empty ? 1 : 0), q, (size_t)(end - q));
    }
    if (rc)
        return rc;
    count_event(s, type);
    return 0;
}

/* A RUN_ERROR frame agate writes itself: for a run slot (runId injected) or,
 * with run_id, for a message that never became a run. */
static int put_error(ws_conn_t *ws, ws_slot_t *s, const char *run_id, size_t rid_len, const char *code,
                     const char *msg)
{
    buf_t *t = &ws->tmp;
    buf_reset(t);
    buf_append_lit(t, "{\"type\":\"RUN_ERROR\"");
    if (!s && run_id) {
        buf_append_lit(t, ",\"runId\":");
        json_put_str(t, run_id, rid_len);
    }
    buf_append_lit(t, ",\"message\":");
    json_put_str(t, msg, strlen(msg));
    buf_append_lit(t, ",\"code\":");
    json_put_str(t, code, strlen(code));
    if (buf_putc(t, '}'))
        return -ENOMEM;
    if (s)
        return put_event(s, AGUI_RUN_ERROR, t->data, t->len);
    if (ws->closing)
        return 0;
    return put_frame(ws, WSF_TEXT, t->data, t->len, NULL, 0, NULL, 0);
}

/* ---- runs ---- */

/* One line per run (log.requests): the upgrade's own line comes only when the
 * connection ends, and sums every run. Errors are always kept, like 4xx/5xx
 * request lines; the rest is sampled by log.sample. Appends after whatever the
 * shard's scratch holds and takes its bytes back: a run can end anywhere. */
static void log_run(ws_slot_t *s, enum metrics_outcome outcome)
{
    static const char *const names[MO_COUNT] = {"finished", "error", "client_closed", "cut"};
    conn_t *c = s->ws->c;
    shard_t *sh = c->sh;
    const run_t *r = s->run;
    const http_req_t *req = &c->http.req;
    bool error = outcome == MO_ERROR;
    cfg_log_level_t level = error ? CFG_LOG_WARN : CFG_LOG_INFO;
    if (!sh->log || !sh->cfg->log_requests || !http_log_wanted(sh, error ? 500 : 200, level))
        return;
    buf_t *b = &sh->scratch;
    size_t mark = b->len;
    log_begin(b, error ? "warn" : "info", "run");
    buf_append_lit(b, ",\"request_id\":");
    json_put_str(b, req->id, req->id_len);
    buf_append_lit(b, ",\"transport\":\"ws\",\"agent\":");
    json_put_str(b, r->agent->name, strlen(r->agent->name));
    buf_append_lit(b, ",\"run_id\":");
    json_put_str(b, r->in.run_id, r->in.run_id_len);
    buf_append_lit(b, ",\"outcome\":\"");
    buf_append(b, names[outcome], strlen(names[outcome]));
    buf_append_lit(b, "\",\"events\":");
    buf_append_u64(b, s->events);
    uint64_t us = sh->now_us - s->start_us;
    buf_append_lit(b, ",\"duration_ms\":");
    buf_append_u64(b, us / 1000);
    buf_append_lit(b, ",\"shard\":");
    buf_append_u64(b, sh->id);
    const char *cache = coalesce_result(r);
    if (cache) {
        buf_append_lit(b, ",\"cache\":\"");
        buf_append(b, cache, strlen(cache));
        buf_putc(b, '"');
    }
    log_end(b);
    log_put(sh->log, b->data + mark, b->len - mark);
    b->len = mark;
}

/* The run in slot s is over, however it ended: account, free the slot, release. */
static void slot_finish(ws_slot_t *s, enum metrics_outcome outcome)
{
    ws_conn_t *ws = s->ws;
    conn_t *c = ws->c;
    run_t *r = s->run;
    gwmetrics_t *m = gwm(c->sh);
    log_run(s, outcome);
    if (m) {
        unsigned a = r->agent->slot;
        metrics_add(&m->runs_ended[a][MT_WS][outcome], 1);
        metrics_gauge_add(&m->streams[MT_WS], -1);
        metrics_observe_us(&m->duration[a], c->sh->now_us - s->start_us);
        metrics_add(&m->gap[a].bucket[0], s->gap_zero);
    }
    s->run = NULL;
    ws->n_runs--;
    run_release(r);
}

/* Closes a draining connection once its last run is over. */
static void maybe_drained(ws_conn_t *ws)
{
    if (ws->c->sh->draining && !ws->n_runs && !ws->closing && ws->c->state == CONN_OPEN)
        ws_close(ws, WSF_CLOSE_GOING_AWAY, "server shutting down");
}

static inline ws_slot_t *sink_slot(run_t *r) { return (ws_slot_t *)r->sink_ctx; }

static void ws_sink_start(run_t *r) {}

static int ws_sink_event(run_t *r, const agui_event_t *ev)
{
    ws_slot_t *s = sink_slot(r);
    buf_t *t = &s->ws->tmp;
    buf_reset(t);
    if (agui_write_json(t, ev) || put_event(s, ev->type, t->data, t->len)) {
        conn_abort(s->ws->c);   /* releases the run */
        return -ENOMEM;
    }
    return 0;
}

static int ws_sink_raw(run_t *r, agui_type_t type, const char *json, size_t len, bool has_lf)
{
    (void)has_lf;   /* a text frame carries line feeds as they are */
    ws_slot_t *s = sink_slot(r);
    ws_conn_t *ws = s->ws;
    /* A text frame must be UTF-8 or the client closes the whole connection
     * (1007); a pass-through upstream could send anything, so one run fails
     * instead. */
    if (!wsf_utf8_valid(json, len)) {
        r->errored = true;
        if (put_error(ws, s, NULL, 0, "upstream_protocol_error", "an upstream event is not valid UTF-8")) {
            conn_abort(ws->c);
            return -ENOMEM;
        }
        slot_finish(s, MO_ERROR);
        maybe_drained(ws);
        return -EINVAL;
    }
    if (put_event(s, type, json, len)) {
        conn_abort(ws->c);
        return -ENOMEM;
    }
    return 0;
}

static bool ws_sink_writable(run_t *r)
{
    ws_conn_t *ws = sink_slot(r)->ws;
    conn_t *c = ws->c;
    if (conn_out_pending(c) < c->sh->cfg->stream_buffer_bytes)
        return true;
    if (!ws->blocked_since_ms) {
        ws->blocked_since_ms = c->sh->now_ms;
        /* The timer may be idle (pings off) or set for a later ping: it must
         * look at the stall by its deadline. */
        uint64_t due = c->sh->now_ms + c->sh->cfg->ws_stall_timeout_ms;
        if (!timer_armed(&ws->timer) || ws->timer.at > due)
            timer_arm(&c->sh->timers, &ws->timer, due);
    }
    return false;
}

static void ws_sink_end(run_t *r)
{
    ws_slot_t *s = sink_slot(r);
    ws_conn_t *ws = s->ws;
    slot_finish(s, r->errored ? MO_ERROR : MO_FINISHED);
    maybe_drained(ws);
}

/* Before the run's first event (a proxy found no upstream): a RUN_ERROR with the
 * HTTP error's code; there is no HTTP status to send on a WebSocket. */
static void ws_sink_fail(run_t *r, int status, const char *code, const char *msg, uint32_t retry_after_s)
{
    ws_slot_t *s = sink_slot(r);
    ws_conn_t *ws = s->ws;
    r->errored = true;
    if (put_error(ws, s, NULL, 0, code, msg)) {
        conn_abort(ws->c);
        return;
    }
    slot_finish(s, MO_ERROR);
    maybe_drained(ws);
}

static const run_sink_ops_t ws_sink = {
    .start = ws_sink_start,
    .event = ws_sink_event,
    .raw = ws_sink_raw,
    .writable = ws_sink_writable,
    .end = ws_sink_end,
    .fail = ws_sink_fail,
};

static ws_slot_t *find_run(ws_conn_t *ws, const char *id, size_t n)
{
    for (uint32_t i = 0; i < ws->cap; i++) {
        run_t *r = ws->slots[i].run;
        if (r && r->in.run_id_len == n && !memcmp(r->in.run_id, id, n))
            return &ws->slots[i];
    }
    return NULL;
}

/* Admits and starts one run on this connection: the single place a WebSocket
 * run is admitted (limits, and later the rate limiter, hook in here). Takes
 * ownership of `in`. 0, or -ENOMEM when the connection must be dropped. */
static int ws_run_start(ws_conn_t *ws, runinput_t *in, const char *text, size_t len)
{
    conn_t *c = ws->c;
    shard_t *sh = c->sh;
    const char *err_code = NULL, *err_msg = NULL;
    access_decision_t ad;
    rl_holds_t holds = {0};
    const cfg_agent_t *agent = &sh->cfg->agents[ws->agent];   /* this generation's settings for it */
    if (sh->draining) {
        err_code = "shutting_down";
        err_msg = "the server is shutting down";
    } else if (find_run(ws, in->run_id, in->run_id_len)) {
        err_code = "duplicate_run";
        err_msg = "a run with this runId is already running on this connection";
    } else if (ws->n_runs == ws->cap) {
        err_code = "too_many_runs";
        err_msg = "too many concurrent runs on this connection (ws.max_runs)";
    } else if (agent->removed) {   /* a reload dropped the agent: the connection stays, its runs do not */
        err_code = "agent_not_found";
        err_msg = "this agent is no longer configured";
    } else if (access_admit(&ws->ident, sh->cfg, agent, &holds, &ad)) {   /* scopes and rate limits */
        err_code = ad.verdict == ACCESS_RATE_LIMITED ? "rate_limited" : ad.error;
        err_msg = ad.message;
    }
    if (err_code) {
        int rc = put_error(ws, NULL, in->run_id, in->run_id_len, err_code, err_msg);
        runinput_free(in);
        return rc;
    }
    ws_slot_t *s = NULL;
    for (uint32_t i = 0; i < ws->cap && !s; i++)
        if (!ws->slots[i].run)
            s = &ws->slots[i];
    buf_reset(&s->body);
    buf_reset(&s->rid);
    if (buf_append(&s->body, text, len) || buf_append_lit(&s->rid, "\"runId\":") ||
        json_put_str(&s->rid, in->run_id, in->run_id_len) || buf_putc(&s->rid, ',')) {
        access_release(&holds);
        runinput_free(in);
        return -ENOMEM;
    }
    run_t *r = run_new(sh, agent, in, &holds, &ws_sink, s);   /* the slots move into the run */
    if (!r) {
        access_release(&holds);
        return -ENOMEM;
    }
    r->conn = c;
    r->body = s->body.data;
    r->body_len = s->body.len;
    r->body_buf = &s->body;
    s->run = r;
    s->start_us = sh->now_us;
    s->last_event_us = 0;
    s->events = 0;
    s->gap_zero = 0;
    ws->n_runs++;
    if (gwm(sh)) {
        metrics_add(&gwm(sh)->runs_started[agent->slot][MT_WS], 1);
        metrics_gauge_add(&gwm(sh)->streams[MT_WS], 1);
    }
    /* Cached agents: HIT, COALESCED or MISS, as for HTTP runs. There are no
     * per-message headers, so the upgrade request stands in for each run's:
     * its Cache-Control and forwarded headers count for every run on the
     * connection. Nothing in the message is read as a directive: the body is
     * the key, so a directive inside it would make another question. ENOMEM
     * just means uncached. */
    coalesce_prepare(r, &c->http.req);
    run_start(r);   /* may emit, end and release the run before returning */
    return 0;
}

static int cancel_run(ws_conn_t *ws, const char *id, size_t n)
{
    ws_slot_t *s = find_run(ws, id, n);
    if (!s)
        return 0;   /* already over, or never ran: nothing to do */
    s->run->errored = true;
    int rc = put_error(ws, s, NULL, 0, "cancelled", "run cancelled by the client");
    slot_finish(s, MO_CLIENT_CLOSED);   /* stops the agent; a proxy drops its upstream */
    maybe_drained(ws);
    return rc;
}

/* A message that is not a RunAgentInput: a CANCEL, an invalid input (RUN_ERROR,
 * with its runId when it has one), or not a JSON object at all (close 1007). */
static int not_a_run(ws_conn_t *ws, const char *text, size_t len, const runinput_err_t *err)
{
    json_t *root = json_loadb(text, len, 0, NULL);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        ws_close(ws, WSF_CLOSE_INVALID_DATA, "a message must be a JSON object");
        return 1;
    }
    json_t *type = json_object_get(root, "type"), *rid = json_object_get(root, "runId");
    const char *id = json_is_string(rid) ? json_string_value(rid) : NULL;
    size_t id_len = id ? json_string_length(rid) : 0;
    int rc;
    if (json_is_string(type) && !strcmp(json_string_value(type), "CANCEL")) {
        rc = id ? cancel_run(ws, id, id_len)
                : put_error(ws, NULL, NULL, 0, "invalid_input", "CANCEL needs a runId string");
    } else {
        char msg[sizeof err->field + sizeof err->message + 32];
        snprintf(msg, sizeof msg, "invalid RunAgentInput: %s%s%s", err->field, err->field[0] ? ": " : "",
                 err->message);
        if (gwm(ws->c->sh))
            metrics_add(&gwm(ws->c->sh)->rejected[MRJ_INVALID_INPUT], 1);
        rc = put_error(ws, NULL, id, id_len, "invalid_input", msg);
    }
    json_decref(root);
    return rc;
}

/* ---- frames in ---- */

static int on_message(void *ctx, int opcode, const char *data, size_t len)
{
    ws_conn_t *ws = ctx;
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
        json_t *root = json_loadb(data, len, 0, NULL);
        json_t *type = root ? json_object_get(root, "type") : NULL;
        bool cancel = json_is_string(type) && !strcmp(json_string_value(type), "CANCEL");
        json_decref(root);
        if (!cancel && !runinput_parse(data, len, &in, &err))
            return ws_run_start(ws, &in, data, len);
        if (cancel)
            memset(&err, 0, sizeof err);
    }
    return not_a_run(ws, data, len, &err);
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
        return ws->closing ? 0 : put_frame(ws, WSF_PONG, payload, len, NULL, 0, NULL, 0);
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

static void feed(ws_conn_t *ws, const char *data, size_t n)
{
    conn_t *c = ws->c;
    c->in_feed = true;
    int rc = wsf_feed(&ws->parser, data, n, &ws_callbacks, ws);
    c->in_feed = false;
    if (rc < 0)
        conn_abort(c);
    else if (rc >= 1000)
        ws_close(ws, (unsigned)rc, close_reason(rc));
}

static void ws_input(conn_t *c, const char *data, size_t n)
{
    ws_conn_t *ws = c->ws;
    ws->last_rx_ms = c->sh->now_ms;
    ws->ping_sent_ms = 0;
    if (gwm(c->sh))
        metrics_add(&gwm(c->sh)->ws_bytes[0], n);
    if (!ws->closing)
        feed(ws, data, n);
}

static void ws_take_pending(conn_t *c)
{
    if (!c->ws || !c->pending.len || c->state != CONN_OPEN)
        return;
    /* The parser copies what it keeps, and nothing appends to pending in WS
     * mode, so the bytes can be fed in place and dropped after. */
    size_t n = c->pending.len;
    ws_input(c, c->pending.data, n);
    c->pending.len = 0;
}

/* ---- closing, backpressure, timers ---- */

/* Stops every run (the agents see the cancel: a proxy drops its upstream). */
static void stop_runs(ws_conn_t *ws, enum metrics_outcome outcome)
{
    for (uint32_t i = 0; i < ws->cap; i++)
        if (ws->slots[i].run)
            slot_finish(&ws->slots[i], outcome);
}

static void ws_close(ws_conn_t *ws, unsigned code, const char *reason)
{
    conn_t *c = ws->c;
    if (ws->closing)
        return;
    stop_runs(ws, c->sh->draining ? MO_CUT : MO_CLIENT_CLOSED);
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
    if (put_frame(ws, WSF_CLOSE, pl, 2 + rl, NULL, 0, NULL, 0)) {
        conn_abort(c);
        return;
    }
    ws->closing = true;
    ws->close_at_ms = c->sh->now_ms + WS_CLOSE_WAIT_MS;
    timer_arm(&c->sh->timers, &ws->timer, ws->close_at_ms);
    conn_close_after_flush(c);
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
        maybe_drained(c->ws);
}

static void ws_timer_fired(agate_timer_t *t)
{
    ws_conn_t *ws = (ws_conn_t *)((char *)t - offsetof(ws_conn_t, timer));
    conn_t *c = ws->c;
    const cfg_t *cfg = c->sh->cfg;
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
        if (now - since >= cfg->ws_stall_timeout_ms) {
            ws_close(ws, WSF_CLOSE_POLICY, "client too slow: send buffer stuck");
            return;
        }
        next = since + cfg->ws_stall_timeout_ms;
    }
    if (cfg->ws_ping_interval_ms) {
        if (ws->ping_sent_ms) {
            if (now - ws->ping_sent_ms >= cfg->ws_pong_timeout_ms) {
                ws_close(ws, WSF_CLOSE_GOING_AWAY, "ping timeout");
                return;
            }
            uint64_t due = ws->ping_sent_ms + cfg->ws_pong_timeout_ms;
            next = due < next ? due : next;
        } else if (now - ws->last_rx_ms >= cfg->ws_ping_interval_ms) {
            if (put_frame(ws, WSF_PING, "agate", 5, NULL, 0, NULL, 0)) {
                conn_abort(c);
                return;
            }
            ws->ping_sent_ms = now;
            uint64_t due = now + cfg->ws_pong_timeout_ms;
            next = due < next ? due : next;
        } else {
            uint64_t due = ws->last_rx_ms + cfg->ws_ping_interval_ms;
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
    stop_runs(ws, c->sh->draining ? MO_CUT : MO_CLIENT_CLOSED);
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
