/* ws_run: the runs of a WebSocket connection (see ws.h) and the frames
 * written for them. A text message that is a RunAgentInput is admitted in
 * ws_run_start, the one admission point (drain, duplicate runId,
 * ws.max_runs, a removed agent, access_admit), into a free slot; the run's
 * sink (ws_sink) writes its events to the connection; slot_finish accounts
 * for a run and releases it however it ends, and frees its slot.
 *
 * A slot owns its run's copy of the RunAgentInput text (proxies forward it,
 * maybe on a retry long after the message buffer was reused) and the
 * pre-escaped `"runId":"..."` member injected into its events. Slot buffers
 * keep their capacity across runs, so a warm connection starts runs without
 * allocating.
 *
 * Output: each event is one unmasked text frame appended to the connection's
 * fill buffer; the header is written first because the payload length is known
 * (gateway-built events are encoded into ws->tmp first, upstream JSON is
 * passed through with the runId member spliced in after its opening brace).
 * Nothing but the close frame goes out once it is queued (ws->closing). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <jansson.h>

#include "core/json.h"
#include "core/log.h"
#include "net/access.h"
#include "net/rlglobal.h"
#include "net/coalesce.h"
#include "net/gwmetrics.h"
#include "net/http1.h"
#include "net/resume.h"
#include "net/ws_int.h"
#include "net/wsframe.h"
#include "proto/run.h"

/* ---- frames out ---- */

/* Appends one frame whose payload is the concatenation of up to three pieces. */
int ws_put_frame(ws_conn_t *ws, int opcode, const char *a, size_t an, const char *b, size_t bn, const char *d,
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

/* A resumable run's event (r->ev_seq set): "runId" (unless the type carries
 * its own), "seq", and on RUN_STARTED the run's "resumeToken", spliced in
 * after the opening brace. Its run id is at most 127 bytes, so the members
 * fit `pre` escaped. */
static int put_event_seq(ws_slot_t *s, agui_type_t type, const char *p, const char *end)
{
    char pre[1024];
    size_t n = 1;
    const char *tok = type == AGUI_RUN_STARTED ? resume_token_of(s->run) : NULL;
    pre[0] = '{';
    if (type != AGUI_RUN_STARTED && type != AGUI_RUN_FINISHED && s->rid.len < 900) {
        memcpy(pre + n, s->rid.data, s->rid.len);
        n += s->rid.len;
    }
    if (tok)
        n += (size_t)snprintf(pre + n, sizeof pre - n, "\"resumeToken\":\"%s\",", tok);
    n += (size_t)snprintf(pre + n, sizeof pre - n, "\"seq\":%llu,", (unsigned long long)s->run->ev_seq);
    const char *q = p + 1;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
        q++;
    if (q < end && *q == '}')
        n--;   /* an empty object: no comma before its brace */
    int rc = ws_put_frame(s->ws, WSF_TEXT, pre, n, q, (size_t)(end - q), NULL, 0);
    if (!rc)
        count_event(s, type);
    return rc;
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
    if (s->run && s->run->ev_seq && p < end && *p == '{')
        return put_event_seq(s, type, p, end);
    int rc;
    if (type == AGUI_RUN_STARTED || type == AGUI_RUN_FINISHED || p == end || *p != '{') {
        rc = ws_put_frame(ws, WSF_TEXT, json, len, NULL, 0, NULL, 0);
    } else {
        const char *q = p + 1;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
            q++;
        bool empty = q < end && *q == '}';
        rc = ws_put_frame(ws, WSF_TEXT, "{", 1, s->rid.data, s->rid.len - (empty ? 1 : 0), q, (size_t)(end - q));
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
    return ws_put_frame(ws, WSF_TEXT, t->data, t->len, NULL, 0, NULL, 0);
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
    if (r->ev_id)   /* a resumable run's client: the run's input is its producer's */
        json_put_str(b, r->ev_id, r->ev_id_len);
    else
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
void ws_maybe_drained(ws_conn_t *ws)
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
        ws_maybe_drained(ws);
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
    if (!conn_out_full(c))
        return true;
    ws_note_blocked(ws);
    return false;
}

static void ws_sink_end(run_t *r)
{
    ws_slot_t *s = sink_slot(r);
    ws_conn_t *ws = s->ws;
    slot_finish(s, r->errored ? MO_ERROR : MO_FINISHED);
    ws_maybe_drained(ws);
}

/* Before the run's first event (a proxy found no upstream, a global limit
 * refused it): a RUN_ERROR with the HTTP error's code; there is no HTTP status
 * to send on a WebSocket. */
static void ws_sink_fail(run_t *r, int status, const char *code, const char *msg, uint32_t retry_after_s)
{
    ws_slot_t *s = sink_slot(r);
    ws_conn_t *ws = s->ws;
    r->errored = true;
    if (status == 429 && !strcmp(code, "rate_limit_exceeded"))
        code = "rate_limited";   /* a global limit refused it after asking Redis: the code admission uses */
    if (put_error(ws, s, NULL, 0, code, msg)) {
        conn_abort(ws->c);
        return;
    }
    slot_finish(s, MO_ERROR);
    ws_maybe_drained(ws);
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
        if (!r)
            continue;
        const char *rid = r->ev_id ? r->ev_id : r->in.run_id;   /* a resumable run's client: its log's */
        size_t rn = r->ev_id ? r->ev_id_len : r->in.run_id_len;
        if (rn == n && !memcmp(rid, id, n))
            return &ws->slots[i];
    }
    return NULL;
}

/* Admits and starts one run on this connection: the single place a WebSocket
 * run is admitted (limits, and later the rate limiter, hook in here). Takes
 * ownership of `in`. 0, or -ENOMEM when the connection must be dropped. */
int ws_run_start(ws_conn_t *ws, runinput_t *in, const char *text, size_t len)
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
    } else if (access_admit(sh, &ws->ident, sh->cfg, agent, &holds, &ad)) {   /* scopes and rate limits */
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
    if (agent->resume_enabled) {   /* r becomes the client's follower of a producer run */
        uint8_t who[16];
        bool named = ws->ident.kind != ACCESS_ANON && !access_ident_digest(&ws->ident, who);
        if (!(r = resume_wrap(r, named ? who : NULL)))
            return 0;   /* refused with a RUN_ERROR */
    }
    coalesce_prepare(r, &c->http.req);
    rlg_gate(r);    /* a global limit waiting for Redis holds the run here (after the cache's lookup is set up) */
    run_start(r);   /* may emit, end and release the run before returning */
    return 0;
}

/* Takes a free slot for a run of this connection's agent: s, or a RUN_ERROR
 * (for run id) sent and NULL. *rc: what the caller returns then. */
static ws_slot_t *slot_for(ws_conn_t *ws, const char *id, size_t n, int *rc)
{
    const char *code = NULL, *msg = NULL;
    if (ws->c->sh->draining) {
        code = "shutting_down";
        msg = "the server is shutting down";
    } else if (find_run(ws, id, n)) {
        code = "duplicate_run";
        msg = "a run with this runId is already running on this connection";
    } else if (ws->n_runs == ws->cap) {
        code = "too_many_runs";
        msg = "too many concurrent runs on this connection (ws.max_runs)";
    }
    *rc = code ? put_error(ws, NULL, id, n, code, msg) : 0;
    if (code)
        return NULL;
    for (uint32_t i = 0; i < ws->cap; i++)
        if (!ws->slots[i].run)
            return &ws->slots[i];
    return NULL;
}

/* A client run of a RESUME in slot s (taken by slot_for), counted as a run
 * of the connection; NULL when out of memory. */
static run_t *resume_slot_run(ws_conn_t *ws, ws_slot_t *s, const cfg_agent_t *agent, const char *id, size_t idn)
{
    conn_t *c = ws->c;
    runinput_t none = {0};
    rl_holds_t holds = {0};
    run_t *r = NULL;
    buf_reset(&s->rid);
    if (buf_append_lit(&s->rid, "\"runId\":") || json_put_str(&s->rid, id, idn) || buf_putc(&s->rid, ',') ||
        !(r = run_new(c->sh, agent, &none, &holds, &ws_sink, s)))
        return NULL;
    r->conn = c;
    s->run = r;
    s->start_us = c->sh->now_us;
    s->last_event_us = 0;
    s->events = 0;
    s->gap_zero = 0;
    ws->n_runs++;
    if (gwm(c->sh)) {
        metrics_add(&gwm(c->sh)->runs_started[agent->slot][MT_WS], 1);
        metrics_gauge_add(&gwm(c->sh)->streams[MT_WS], 1);
    }
    return r;
}

/* {"type":"RESUME","runId":"...","lastEventId":"<runId>:<seq>" or <seq>,
 * "token":"..."}: a resumable run of this connection's agent followed on a
 * new slot from after lastEventId (none: from RUN_STARTED), then live. Who
 * may: the token, or the connection's identity when it started the run.
 * A run this process does not have is followed from Redis (another pod's),
 * with the same checks, answered from the shard loop. */
static int resume_run(ws_conn_t *ws, const char *text, size_t len)
{
    conn_t *c = ws->c;
    const cfg_agent_t *agent = &c->sh->cfg->agents[ws->agent];
    json_error_t jerr;
    json_t *m = json_loadb(text, len, 0, &jerr);
    const char *id = m ? json_string_value(json_object_get(m, "runId")) : NULL;
    json_t *last = m ? json_object_get(m, "lastEventId") : NULL;
    const char *tok = m ? json_string_value(json_object_get(m, "token")) : NULL;
    size_t idn = id ? json_string_length(json_object_get(m, "runId")) : 0;
    char lastbuf[192], agent_name[CFG_NAME_MAX];
    uint8_t who[16];
    int rc = 0;
    if (!id || !idn || idn > 127 || (last && !json_is_string(last) && !json_is_integer(last))) {
        rc = put_error(ws, NULL, id, id ? idn : 0, "invalid_input",
                       "RESUME needs a runId string (at most 127 bytes) and, if any, a lastEventId string or number");
        json_decref(m);
        return rc;
    }
    resume_req_t q = {.id = id, .id_len = idn, .token = tok, .token_len = tok ? strlen(tok) : 0,
                      .agent = agent->name, .agent_out = agent_name};
    if (ws->ident.kind != ACCESS_ANON && !access_ident_digest(&ws->ident, who))
        q.who = who;
    if (json_is_integer(last) && json_integer_value(last) >= 0) {
        int k = snprintf(lastbuf, sizeof lastbuf, "%.*s:%lld", (int)idn, id, (long long)json_integer_value(last));
        q.last_id = lastbuf;
        q.last_len = (size_t)k;
    } else if (json_is_string(last)) {
        q.last_id = json_string_value(last);
        q.last_len = json_string_length(last);
    }
    struct rs_log *lg = NULL;
    uint64_t after;
    resume_refusal_t no;
    ws_slot_t *s;
    run_t *r;
    int open = resume_open(&q, &lg, &after, &no);
    bool remote = open == -ENOENT && rsx_enabled(c->sh);   /* another pod's run: followed from Redis */
    if (open && !remote) {
        rc = put_error(ws, NULL, id, idn, no.code, no.msg);
    } else if (!(s = slot_for(ws, id, idn, &rc))) {
        if (lg)
            resume_close(lg);
    } else if (!(r = resume_slot_run(ws, s, agent, id, idn))) {
        if (lg)
            resume_close(lg);
        rc = -ENOMEM;
    } else if (remote) {
        rsx_follow(r, id, idn, q.token, q.token_len, q.who, after);   /* answers (or fails) from the shard loop */
    } else {
        resume_follow(r, lg, after);   /* may emit, end and release the run before returning */
    }
    json_decref(m);
    return rc;
}

static int cancel_run(ws_conn_t *ws, const char *id, size_t n)
{
    ws_slot_t *s = find_run(ws, id, n);
    if (!s)
        return 0;   /* already over, or never ran: nothing to do */
    s->run->errored = true;
    resume_cancel_followed(s->run);   /* a resumable run: cancel it, not only this client's view */
    rsx_cancel_followed(s->run);      /* (another pod's, through Redis) */
    int rc = put_error(ws, s, NULL, 0, "cancelled", "run cancelled by the client");
    slot_finish(s, MO_CLIENT_CLOSED);   /* stops the agent; a proxy drops its upstream */
    ws_maybe_drained(ws);
    return rc;
}

/* A message that is not a RunAgentInput: a CANCEL, an invalid input (RUN_ERROR,
 * with its runId when it has one), or not a JSON object at all (close 1007). */
int ws_not_a_run(ws_conn_t *ws, const char *text, size_t len, const runinput_err_t *err)
{
    runinput_peek_t pk;
    if (runinput_peek(text, len, &pk)) {
        ws_close(ws, WSF_CLOSE_INTERNAL, "out of memory");
        return 1;
    }
    if (!pk.object) {
        ws_close(ws, WSF_CLOSE_INVALID_DATA, "a message must be a JSON object");
        return 1;
    }
    const char *id = pk.run_id;
    size_t id_len = pk.run_id_len;
    int rc;
    if (pk.type && pk.type_len == 6 && !memcmp(pk.type, "RESUME", 6)) {
        rc = resume_run(ws, text, len);
    } else if (pk.type && pk.type_len == 6 && !memcmp(pk.type, "CANCEL", 6)) {
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
    return rc;
}

/* Stops every run (the agents see the cancel: a proxy drops its upstream). */
void ws_stop_runs(ws_conn_t *ws, enum metrics_outcome outcome)
{
    for (uint32_t i = 0; i < ws->cap; i++)
        if (ws->slots[i].run)
            slot_finish(&ws->slots[i], outcome);
}
