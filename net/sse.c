/* sse: the HTTP streaming sink, in two encodings. Frames are written straight
 * into the connection's fill buffer inside one open chunk, so a burst of events
 * becomes one chunk and one send at the end of the loop turn.
 *
 * SSE ("data: <json>\n\n") is the default. A request whose Accept prefers
 * application/vnd.ag-ui.event+proto gets the protobuf encoding instead: each
 * event one length-prefixed ag_ui.Event (proto/pbjson.c), the same chunked
 * stream, buffer bound, backpressure, stall detection and heartbeat interval.
 * The encoding has no comment frame, so its heartbeat is PBJSON_HEARTBEAT, a
 * frame @ag-ui/client drops (with a console warning each time): without one a
 * quiet run is cut by a proxy's or load balancer's idle timeout. */
#include "net/sse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/coalesce.h"
#include "net/resume.h"
#include "net/http1.h"
#include "net/rlglobal.h"
#include "proto/run.h"
#include "proto/pbjson.h"
#include "proto/runrec.h"
#include "net/gwmetrics.h"

static const char SSE_HEADERS[] = "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n";

static void heartbeat_fired(agate_timer_t *t);
static const run_sink_ops_t pb_sink;

/* The stream's head lines: SSE_HEADERS plus the run's own (X-Cache, Age). */
static const char *head_lines(const run_t *r, char *buf, size_t n)
{
    if (!r->head_extra)
        return SSE_HEADERS;
    size_t a = sizeof SSE_HEADERS - 1, e = strlen(r->head_extra);
    if (a + e >= n)
        e = n - a - 1;   /* cannot happen: the extra lines are X-Cache, Age and a resume token */
    memcpy(buf, SSE_HEADERS, a);
    memcpy(buf + a, r->head_extra, e);
    buf[a + e] = '\0';
    return buf;
}

static inline conn_t *sink_conn(run_t *r) { return (conn_t *)r->sink_ctx; }

/* A protobuf stream's keep-alive frame costs a console warning in
 * @ag-ui/client 1.0.0, so it has its own interval (stream.protobuf_heartbeat). */
static uint32_t heartbeat_ms(const conn_t *c)
{
    return c->run && c->run->sink == &pb_sink ? c->sh->cfg->pb_heartbeat_ms : c->sh->cfg->heartbeat_ms;
}

static void heartbeat_arm(conn_t *c)
{
    uint32_t hb = heartbeat_ms(c);
    if (hb)
        timer_arm(&c->sh->timers, &c->hb_timer, c->last_event_ms + hb);
}

static inline unsigned agent_index(const conn_t *c, const run_t *r)
{
    (void)c;
    return r->agent->slot;
}

/* Per-event metrics: time to first event, gap since the last, for n events
 * appended in this loop turn (the type counts are the caller's). The
 * events of one burst (one upstream read, one echo run, one cache replay) share
 * a loop turn, so their gaps are exactly 0 by the turn's clock: those are only
 * counted here and added to the histogram's first bucket in one step when the
 * response ends (http_response_done). A scrape taken mid-stream can miss the
 * current burst's zero gaps; nothing else waits. */
static void count_burst(conn_t *c, run_t *r, uint32_t n)
{
    gwmetrics_t *m = gwm(c->sh);
    http_req_t *req = &c->http.req;
    uint64_t now = c->sh->now_us;
    if (now == req->last_event_us) {
        req->gap_zero += n;
        return;
    }
    unsigned a = agent_index(c, r);
    if (!req->last_event_us)
        metrics_observe_us(&m->first_event[a], now - req->start_us);
    else
        metrics_observe_us(&m->gap[a], now - req->last_event_us);
    req->gap_zero += n - 1;
    req->last_event_us = now;
}

/* Book-keeping after n frames (bytes in all) were appended. */
static void sent_frames(conn_t *c, run_t *r, uint32_t n, size_t bytes)
{
    c->http.req.bytes_out += bytes;
    c->http.req.events += n;
    if (gwm(c->sh))
        count_burst(c, r, n);
    c->last_event_ms = c->sh->now_ms;
    conn_mark_dirty(c);
}

/* Book-keeping after one frame of `bytes` was appended. */
static void sent_frame(conn_t *c, run_t *r, agui_type_t type, size_t bytes)
{
    if (gwm(c->sh) && type < AGUI_TYPE_COUNT)
        metrics_add(&gwm(c->sh)->events[type], 1);
    sent_frames(c, r, 1, bytes);
}

/* "id: <runId>:<seq>\n": the event's id, which EventSource sends back as
 * Last-Event-ID when it reconnects. A run id holding CR or LF, which would
 * split the frame, never gets here: such a run is not resumable (net/resume.c). */
static int put_id(buf_t *b, const run_t *r)
{
    if (buf_reserve(b, r->ev_id_len + 32))
        return -1;
    char *w = b->data + b->len;
    memcpy(w, "id: ", 4);
    memcpy(w + 4, r->ev_id, r->ev_id_len);
    w += 4 + r->ev_id_len;
    *w++ = ':';
    w += buf_fmt_u64(w, r->ev_seq);   /* (20 digits at most: reserved) */
    *w++ = '\n';
    b->len = (size_t)(w - b->data);
    return 0;
}

/* The event (with its id line when it is a resumable run's), and where its
 * JSON text landed (the sink's event_json op: a resumable run's log copies it
 * from there rather than render it twice). */
static int sse_event_json(run_t *r, const agui_event_t *ev, const char **json, size_t *len)
{
    conn_t *c = sink_conn(r);
    buf_t *b = conn_fill(c);
    conn_body_open(c);
    size_t start = b->len, at;
    if ((r->ev_seq && put_id(b, r)) || buf_append_lit(b, "data: "))
        goto nomem;
    at = b->len;
    if (agui_write_json(b, ev) || buf_append_lit(b, "\n\n"))
        goto nomem;
    *json = b->data + at;
    *len = b->len - 2 - at;
    sent_frame(c, r, ev->type, b->len - start);
    return 0;
nomem:
    conn_abort(c);   /* releases the run */
    return -ENOMEM;
}

static int sse_event(run_t *r, const agui_event_t *ev)
{
    const char *json;
    size_t len;
    return sse_event_json(r, ev, &json, &len);
}

/* A stored or shared run's records as frames, in one pass (the sink's
 * `records` op): one parse, one reservation and the copies per event, and the
 * book-keeping once, ~195 instructions an event (callgrind). This replaced a
 * pass through pump, the sink and the metrics per event, ~290 each. A record
 * with a line feed stops it: sse_raw splits that. */
static int sse_records(run_t *r, const char *recs, size_t len, const runrec_subst_t *s, size_t *used)
{
    conn_t *c = sink_conn(r);
    buf_t *b = conn_fill(c);
    gwmetrics_t *m = gwm(c->sh);
    size_t bound = c->sh->cfg->stream_buffer_bytes, pending = conn_out_pending(c);
    size_t room = pending < bound ? bound - pending : 0, off = 0, start;
    uint32_t n = 0;
    int rc = 0;
    conn_body_open(c);
    start = b->len;
    while (off < len && b->len - start < room) {
        runrec_t rec;
        size_t size = runrec_parse(recs + off, len - off, &rec);
        if (!size || (rec.flags & RUNREC_F_LF) || (rc = runrec_render_sse(b, &rec, s)))
            break;
        if (m && rec.type < AGUI_TYPE_COUNT)
            metrics_add(&m->events[rec.type], 1);
        off += size;
        n++;
    }
    *used = off;
    if (n)
        sent_frames(c, r, n, b->len - start);
    if (rc == -ENOMEM) {
        conn_abort(c);   /* releases the run */
        return 1;
    }
    return rc;
}

/* A whole stored run from its plan, when it fits (the sink's `stored` op): one
 * reservation, a copy per id or line end. A record at a time (sse_records)
 * took ~195 instructions an event; this takes ~90, the fresh ids minted included. */
static int sse_stored(run_t *r, const runrec_plan_t *pl, const char *recs, size_t recs_len, const runrec_subst_t *s)
{
    conn_t *c = sink_conn(r);
    buf_t *b = conn_fill(c);
    if (conn_out_pending(c) + runrec_plan_room(pl, s) > c->sh->cfg->stream_buffer_bytes)
        return -EAGAIN;
    conn_body_open(c);
    size_t start = b->len;
    int rc = runrec_plan_render_sse(b, pl, recs, recs_len, s);
    if (rc == -ENOMEM) {
        conn_abort(c);   /* releases the run */
        return 1;
    }
    if (rc || !pl->n_events)
        return rc;
    gwmetrics_t *m = gwm(c->sh);
    for (uint32_t i = 0; m && i < pl->n_types; i++) {
        uint32_t type, count;
        runrec_plan_type(pl, i, &type, &count);
        if (type < AGUI_TYPE_COUNT)
            metrics_add(&m->events[type], count);
    }
    sent_frames(c, r, pl->n_events, b->len - start);
    return 0;
}

/* An upstream's event JSON, unchanged. SSE data cannot hold a raw line break,
 * so JSON text that contains one (pretty-printed upstreams) becomes one data:
 * line per text line, which the client's parser joins back with "\n". */
static int sse_raw(run_t *r, agui_type_t type, const char *json, size_t len, bool has_lf)
{
    conn_t *c = sink_conn(r);
    buf_t *b = conn_fill(c);
    conn_body_open(c);
    size_t start = b->len;
    if (r->ev_seq && put_id(b, r))   /* a resumable run's event */
        goto nomem;
    if (buf_reserve(b, len + 8))
        goto nomem;
    if (!has_lf) {   /* nearly every relayed event: one reservation, three copies */
        char *w = b->data + b->len;
        memcpy(w, "data: ", 6);
        memcpy(w + 6, json, len);
        memcpy(w + 6 + len, "\n\n", 2);
        b->len += len + 8;
        sent_frame(c, r, type, b->len - start);
        return 0;
    }
    int rc = buf_append_lit(b, "data: ");
    for (const char *p = json, *end = json + len; !rc;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        rc = buf_append(b, p, (size_t)((nl ? nl : end) - p));
        if (rc || !nl)
            break;
        rc = buf_append_lit(b, "\ndata: ");
        p = nl + 1;
    }
    if (rc || buf_append_lit(b, "\n\n"))
        goto nomem;
    sent_frame(c, r, type, b->len - start);
    return 0;
nomem:
    conn_abort(c);   /* releases the run */
    return -ENOMEM;
}

/* The proxy's relay of an SSE upstream's frames read together: one copy and
 * the book-keeping once, where sse_raw per event cost ~120 instructions. */
static int sse_frames(run_t *r, const char *p, size_t len, const uint8_t *types, uint32_t n)
{
    conn_t *c = sink_conn(r);
    buf_t *b = conn_fill(c);
    conn_body_open(c);
    if (buf_append(b, p, len)) {
        conn_abort(c);   /* releases the run */
        return -ENOMEM;
    }
    gwmetrics_t *m = gwm(c->sh);
    if (m)
        for (uint32_t i = 0; i < n; i++)
            if (types[i] < AGUI_TYPE_COUNT)
                metrics_add(&m->events[types[i]], 1);
    sent_frames(c, r, n, len);
    return 0;
}

static bool sse_writable(run_t *r)
{
    conn_t *c = sink_conn(r);
    return conn_out_pending(c) < c->sh->cfg->stream_buffer_bytes;
}

static inline enum metrics_transport transport_of(const run_t *r) { return r->sink == &pb_sink ? MT_PROTO : MT_SSE; }
bool sse_run_is_proto(const run_t *r) { return r->sink == &pb_sink; }

void sse_run_ended(conn_t *c, run_t *r, enum metrics_outcome outcome)
{
    gwmetrics_t *m = gwm(c->sh);
    if (!m)
        return;
    unsigned a = agent_index(c, r);
    metrics_add(&m->runs_ended[a][transport_of(r)][outcome], 1);
    metrics_gauge_add(&m->streams[transport_of(r)], -1);
    metrics_observe_us(&m->duration[a], c->sh->now_us - c->http.req.start_us);
}

static void sse_end(run_t *r)
{
    conn_t *c = sink_conn(r);
    sse_run_ended(c, r, r->errored ? MO_ERROR : MO_FINISHED);
    c->run = NULL;
    run_release(r);
    timer_cancel(&c->sh->timers, &c->hb_timer);
    http_stream_end(c);
}

static void sse_start(run_t *r)
{
    conn_t *c = sink_conn(r);
    char head[384];
    http_stream_begin(c, 200, "text/event-stream", head_lines(r, head, sizeof head));
    c->last_event_ms = c->sh->now_ms;
    c->hb_timer.cb = heartbeat_fired;
    heartbeat_arm(c);
}

/* Before start: the client gets an HTTP error instead of a stream. */
static void sse_fail(run_t *r, int status, const char *code, const char *msg, uint32_t retry_after_s)
{
    conn_t *c = sink_conn(r);
    sse_run_ended(c, r, MO_ERROR);
    c->run = NULL;
    run_release(r);
    char extra[48] = "";
    if (retry_after_s)
        snprintf(extra, sizeof extra, "Retry-After: %u\r\n", retry_after_s);
    http_error(c, status, code, msg, extra[0] ? extra : NULL);
}

static const run_sink_ops_t sse_sink = {
    .start = sse_start,
    .event = sse_event,
    .event_json = sse_event_json,
    .raw = sse_raw,
    .frames = sse_frames,
    .records = sse_records,
    .stored = sse_stored,
    .writable = sse_writable,
    .end = sse_end,
    .fail = sse_fail,
};

/* ---- the protobuf encoding ---- */

static int pb_event(run_t *r, const agui_event_t *ev)
{
    conn_t *c = sink_conn(r);
    buf_t *b = conn_fill(c);
    conn_body_open(c);
    size_t start = b->len;
    if (pbjson_frame_event(b, ev)) {
        conn_abort(c);   /* releases the run */
        return -ENOMEM;
    }
    sent_frame(c, r, ev->type, b->len - start);
    return 0;
}

/* An upstream's JSON event, transcoded. One the schema cannot carry (only in
 * validation: pass) is left out rather than sent half-encoded; the rest of the
 * stream goes on. */
static int pb_raw(run_t *r, agui_type_t type, const char *json, size_t len, bool has_lf)
{
    (void)has_lf;
    conn_t *c = sink_conn(r);
    buf_t *b = conn_fill(c);
    conn_body_open(c);
    size_t start = b->len;
    char msg[PBJSON_MSG_MAX];
    int rc;
    if (r->raw_pb) {   /* a protobuf upstream's frame: relayed as it came, like SSE's data */
        uint32_t n = (uint32_t)r->raw_pb_len;
        unsigned char h[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n};
        rc = buf_append(b, h, 4) || buf_append(b, r->raw_pb, r->raw_pb_len) ? -ENOMEM : 0;
    } else {
        rc = pbjson_frame_json(b, json, len, msg);
    }
    if (rc == -ENOMEM) {
        conn_abort(c);
        return -ENOMEM;
    }
    if (rc)
        return 0;
    sent_frame(c, r, type, b->len - start);
    return 0;
}

static void pb_start(run_t *r)
{
    conn_t *c = sink_conn(r);
    char head[384];
    http_stream_begin(c, 200, PBJSON_MEDIA_TYPE, head_lines(r, head, sizeof head));
    c->last_event_ms = c->sh->now_ms;
    c->hb_timer.cb = heartbeat_fired;
    heartbeat_arm(c);
}

static const run_sink_ops_t pb_sink = {
    .start = pb_start,
    .event = pb_event,
    .raw = pb_raw,
    .writable = sse_writable,
    .end = sse_end,
    .fail = sse_fail,
};

/* Whether the Accept header prefers the protobuf encoding to SSE, the way
 * content negotiation ranks media ranges: each type takes the q of the most
 * specific range matching it; protobuf wins on a higher q, or on an equal q
 * from a more specific range, or when both are named with the same q and
 * protobuf comes first. No Accept, or only a wildcard, means SSE. */
static bool accept_prefers_proto(const char *v, size_t n)
{
    static const char *const types[2][2] = {{"text", "event-stream"}, {"application", "vnd.ag-ui.event+proto"}};
    double q[2] = {0, 0};
    int spec[2] = {-1, -1}, pos[2] = {0, 0}, idx = 0;
    const char *p = v, *end = v + n;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p)), *e = comma ? comma : end;
        const char *semi = memchr(p, ';', (size_t)(e - p)), *te = semi ? semi : e;
        while (p < te && (*p == ' ' || *p == '\t'))
            p++;
        while (te > p && (te[-1] == ' ' || te[-1] == '\t'))
            te--;
        const char *slash = te > p ? memchr(p, '/', (size_t)(te - p)) : NULL;
        double qv = 1;
        for (const char *s = semi; s && s < e;) {
            s++;
            while (s < e && (*s == ' ' || *s == '\t'))
                s++;
            if (e - s > 2 && (s[0] == 'q' || s[0] == 'Q') && s[1] == '=') {
                char num[16];
                size_t k = 0;
                for (const char *t = s + 2; t < e && k < sizeof num - 1 && *t != ';' && *t != ' '; t++)
                    num[k++] = *t;
                num[k] = 0;
                qv = strtod(num, NULL);
                break;
            }
            s = s < e ? memchr(s, ';', (size_t)(e - s)) : NULL;
        }
        if (slash) {
            size_t tl = (size_t)(slash - p), sl = (size_t)(te - slash - 1);
            for (int t = 0; t < 2; t++) {
                bool type_star = tl == 1 && *p == '*', sub_star = sl == 1 && slash[1] == '*';
                bool type_ok = type_star || (tl == strlen(types[t][0]) && !strncasecmp(p, types[t][0], tl));
                bool sub_ok = sub_star || (sl == strlen(types[t][1]) && !strncasecmp(slash + 1, types[t][1], sl));
                int sp = type_star ? 0 : sub_star ? 1 : 2;
                if (type_ok && sub_ok && (type_star ? sub_star : true) && sp > spec[t]) {
                    spec[t] = sp, q[t] = qv, pos[t] = idx;
                }
            }
        }
        idx++;
        p = comma ? comma + 1 : end;
    }
    if (q[1] <= 0)
        return false;
    if (q[1] != q[0])
        return q[1] > q[0];
    return spec[1] > spec[0] || (spec[1] == 2 && spec[0] == 2 && pos[1] < pos[0]);
}

/* Lazy re-arm: events do not touch the timer; when it fires early because events
 * flowed, it moves to last_event + heartbeat. */
static void heartbeat_fired(agate_timer_t *t)
{
    conn_t *c = (conn_t *)((char *)t - offsetof(conn_t, hb_timer));
    if (c->state != CONN_OPEN || !c->run)
        return;
    if (c->sh->now_ms - c->last_event_ms >= heartbeat_ms(c)) {
        conn_body_open(c);
        buf_t *b = conn_fill(c);
        bool pb = c->run->sink == &pb_sink;
        if (pb ? buf_append(b, PBJSON_HEARTBEAT, PBJSON_HEARTBEAT_LEN) : buf_append_lit(b, ": ping\n\n")) {
            conn_abort(c);
            return;
        }
        c->http.req.bytes_out += pb ? PBJSON_HEARTBEAT_LEN : 8;
        c->last_event_ms = c->sh->now_ms;
        conn_mark_dirty(c);
    }
    heartbeat_arm(c);
}

/* A client run on c (its sink by the Accept header), counted as started;
 * NULL after answering 503. Takes `in` and the slots in *holds. */
static run_t *client_run(conn_t *c, const cfg_agent_t *agent, runinput_t *in, rl_holds_t *holds)
{
    http_req_t *req = &c->http.req;
    const char *accept;
    size_t accept_len;
    bool pb = http_header(req, "accept", &accept, &accept_len) && accept_prefers_proto(accept, accept_len);
    run_t *r = run_new(c->sh, agent, in, holds, pb ? &pb_sink : &sse_sink, c);
    if (!r) {
        http_error(c, 503, "out_of_memory", "out of memory", NULL);
        return NULL;
    }
    r->conn = c;
    c->run = r;
    c->run_slot = (int16_t)agent->slot;
    if (gwm(c->sh)) {
        metrics_add(&gwm(c->sh)->runs_started[agent_index(c, r)][transport_of(r)], 1);
        metrics_gauge_add(&gwm(c->sh)->streams[transport_of(r)], 1);
    }
    return r;
}

run_t *sse_client_run(conn_t *c, const cfg_agent_t *agent)
{
    runinput_t in = {0};
    rl_holds_t holds = {0};
    return client_run(c, agent, &in, &holds);
}

void sse_run(conn_t *c, const cfg_agent_t *agent, rl_holds_t *holds)
{
    http_req_t *req = &c->http.req;
    runinput_t in;
    runinput_err_t err;
    if (runinput_parse(req->body.data ? req->body.data : "", req->body.len, &in, &err)) {
        char msg[sizeof err.field + sizeof err.message + 32];
        snprintf(msg, sizeof msg, "invalid RunAgentInput: %s%s%s", err.field, err.field[0] ? ": " : "",
                 err.message);
        if (gwm(c->sh))
            metrics_add(&gwm(c->sh)->rejected[MRJ_INVALID_INPUT], 1);
        http_error_field(c, 400, "invalid_request", msg, err.field);
        return;
    }
    run_t *r = client_run(c, agent, &in, holds);
    if (!r)
        return;
    r->body = req->body.data;
    r->body_len = req->body.len;
    r->body_buf = &req->body;
    /* A resumable agent: r becomes the client's follower of a producer run,
     * which is the one the cache and the agent see. */
    if (agent->resume_enabled && !(r = resume_wrap(r, c->who_set ? c->who : NULL)))
        return;   /* answered */
    coalesce_prepare(r, req);   /* cached agents: HIT, COALESCED or MISS; ENOMEM just means uncached */
    req->cache = coalesce_result(r);   /* for the log line: the run may be released by then */
    rlg_gate(r);   /* a global limit waiting for Redis holds the stream's head until the answer */
    run_start(r);
}

void sse_conn_sent(conn_t *c)
{
    if (c->run && c->run->blocked && conn_out_pending(c) <= c->sh->cfg->stream_buffer_bytes / 2)
        run_resume(c->run);
}

void sse_conn_abort(conn_t *c)
{
    if (!c->run)
        return;
    run_t *r = c->run;
    c->run = NULL;
    sse_run_ended(c, r, c->sh->draining ? MO_CUT : MO_CLIENT_CLOSED);
    run_abort(r);
}
