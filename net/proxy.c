/* proxy: runs of AG-UI agents that live behind agate.
 *
 * A run picks an endpoint (round-robin or least outstanding runs, skipping
 * endpoints whose circuit breaker is open), POSTs the client's RunAgentInput
 * unchanged, and passes the upstream's SSE events through to the client sink
 * after validating them (strict) or as they are (pass).
 *
 * Failure rules: before the first event, a failed attempt (refused, reset,
 * timeout, 5xx, wrong content type) is retried on another endpoint after an
 * exponential backoff with full jitter, up to the agent's retry attempts;
 * after the first event nothing can be retried and the client gets a
 * RUN_ERROR (upstream_failed) and the end of the stream, never a silent cut.
 * The client's response head is sent when an upstream answers 2xx with an
 * event stream; until then failures can still be proper HTTP errors.
 *
 * Endpoints are picked, and their circuit breakers kept, by net/breaker.c:
 * per shard, with no shared state on the request path. An attempt holds its
 * endpoint (breaker_hold_t) from the pick until drop_attempt lets it go.
 *
 * With OTLP on, each attempt is a CLIENT span whose id is the one sent
 * upstream in traceparent; it ends exactly once: when the attempt's response
 * ends, when it fails, or when the run stops under it (cancelled). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/otlp.h"
#include "core/trace.h"
#include "net/breaker.h"
#include "net/coalesce.h"
#include "net/conn.h"
#include "net/http1.h"
#include "net/proxy.h"
#include "net/upstream.h"
#include "proto/run.h"
#include "net/sse.h"
#include "proto/pbjson.h"
#include "proto/pbread.h"
#include "proto/sseread.h"
#include "proto/validate.h"
#include "net/upstream_metrics.h"

/* An event nests as deep from a protobuf upstream as from an SSE one. */
_Static_assert(PBJSON_MAX_DEPTH == VALIDATE_MAX_DEPTH, "one JSON depth bound for both encodings");

enum px_phase { PX_ATTEMPT, PX_BACKOFF, PX_DONE };

typedef struct proxy_run {
    run_t      *r;               /* NULL once the run is stopped */
    ups_t      *u;
    int         ep;              /* endpoint of the current attempt's connection, -1 when none */
    breaker_hold_t hold;         /* the current attempt's endpoint, held from pick to drop_attempt */
    uint32_t    attempts;
    uint64_t    tried;           /* endpoints tried, as bits */
    uint64_t    start_ms, sent_ms, last_event_ms, backoff_until_ms;
    uint8_t     phase;
    bool        head_ok, first_event;
    agui_type_t last_type;
    sseread_t   sse;
    validate_t *val;
    bool        proto;           /* this attempt's upstream answers in protobuf */
    pbread_t    pb;              /* its frames */
    buf_t       pbjson;          /* one frame as JSON text, capacity kept across events */
    uint8_t     span_id[8];      /* the attempt's span id, as sent upstream in traceparent */
    uint16_t    up_status;       /* the attempt's response status, 0 before its head */
    bool        span_open;       /* *span is the running attempt's, not yet exported */
    uint64_t    att_start_us;    /* when the attempt began (shard clock) */
    otlp_span_t *span;           /* OTLP on: allocated on first use, kept across reuse */
    /* This read's whole "data: <json>\n\n" frames not yet written, back to
     * back in the upstream's bytes: an SSE client gets them in one copy when
     * the read ends (or before anything else is written; see relay). */
    const char *held;
    size_t      held_len;
    uint32_t    held_n;
    uint8_t     held_types[64];
} proxy_run_t;

static unsigned g_px_ext;   /* run_t.ext index (proxy_register) */

static inline proxy_run_t *PX(const run_t *r) { return (proxy_run_t *)r->ext[g_px_ext]; }

static inline unsigned agent_idx(const run_t *r) { return r->agent->slot; }

/* --- attempt spans (OTLP) ------------------------------------------------------ */

/* Starts the attempt's CLIENT span. What it needs from the client's request is
 * copied now: by the time the attempt ends the request may be gone. */
static void span_begin(proxy_run_t *px, const cfg_endpoint_t *ep)
{
    if (!otlp_enabled())
        return;
    if (!px->span && !(px->span = malloc(sizeof *px->span)))
        return;   /* a run without its span rather than no run */
    run_t *r = px->r;
    const http_req_t *req = &r->conn->http.req;
    otlp_span_t *s = px->span;
    _Static_assert(sizeof s->server_address >= CFG_HOST_MAX && sizeof s->url_path >= CFG_UPATH_MAX,
                   "an endpoint's host and path fit a span");
    memset(s, 0, sizeof *s);
    memcpy(s->trace_id, req->trace.trace_id, 16);
    memcpy(s->span_id, px->span_id, 8);
    memcpy(s->parent_id, req->trace.span_id, 8);   /* the request's server span */
    s->has_parent = true;
    s->kind = OTLP_KIND_CLIENT;
    memcpy(s->name, "POST", 5);   /* OTel: an HTTP client span is named by its method */
    memcpy(s->method, "POST", 5);
    snprintf(s->agent, sizeof s->agent, "%s", r->agent->name);
    snprintf(s->request_id, sizeof s->request_id, "%.*s", (int)req->id_len, req->id);
    snprintf(s->server_address, sizeof s->server_address, "%s", ep->host);
    s->server_port = ep->port;
    snprintf(s->url_path, sizeof s->url_path, "%.*s", (int)strcspn(ep->path, "?"), ep->path);
    s->attempt = (uint16_t)px->attempts;
    px->att_start_us = r->sh->now_us;
    px->span_open = true;
}

/* Ends the running attempt's span, once: error_type NULL for success. */
static void span_end(proxy_run_t *px, const char *error_type)
{
    if (!px->span_open)
        return;
    px->span_open = false;
    otlp_span_t *s = px->span;
    shard_t *sh = px->r->sh;
    struct timespec now;
    s->http_status = px->up_status;
    s->error = error_type != NULL;
    if (error_type)
        snprintf(s->error_type, sizeof s->error_type, "%s", error_type);
    /* As the server span (net/http1.c): wall clock at the end, the duration on
     * the shard's monotonic clock, so both spans are timed the same way. */
    clock_gettime(CLOCK_REALTIME, &now);
    s->end_unix_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    s->start_unix_ns = s->end_unix_ns - (sh->now_us - px->att_start_us) * 1000u;
    otlp_put(sh->id, s);
}


/* An attempt failed before or after its first event: error.type is the kind of
 * failure, or (OTel) the status code when the upstream answered with an error. */
static void span_failed(proxy_run_t *px, enum upm_fail kind)
{
    char code[8];
    if (!px->span_open)
        return;
    if (kind == MUF_STATUS && px->up_status) {
        snprintf(code, sizeof code, "%u", px->up_status);
        span_end(px, code);
    } else {
        span_end(px, upm_fail_name(kind));
    }
}

/* error.type for a run ended with a client-facing error code. */
static const char *span_code_type(const char *code)
{
    if (!strcmp(code, "upstream_timeout"))
        return "timeout";
    if (!strcmp(code, "upstream_protocol_error"))
        return "protocol";
    if (!strcmp(code, "out_of_memory"))
        return "out_of_memory";
    return "_OTHER";   /* OTel's value for a class it has no name for */
}

/* --- the run ------------------------------------------------------------------- */

static void attempt(proxy_run_t *px);
static void schedule_timer(proxy_run_t *px);

static const char *const ctype_sse = "text/event-stream";

/* Whether a Content-Type is AG-UI's binary encoding (parameters allowed). */
static bool ctype_is_proto(const char *ctype, size_t len)
{
    size_t n = strlen(PBJSON_MEDIA_TYPE);
    return len >= n && !strncasecmp(ctype, PBJSON_MEDIA_TYPE, n) && (len == n || ctype[n] == ';' || ctype[n] == ' ');
}

/* Ends the current attempt's hold on its endpoint and connection. */
static void drop_attempt(proxy_run_t *px, bool reusable)
{
    if (px->u) {
        if (reusable)
            ups_release(px->u, true);
        else
            ups_abort(px->u);
        px->u = NULL;
    }
    px->ep = -1;
    breaker_end(px->r->sh, &px->hold);   /* the one place an attempt lets go of its endpoint */
}

/* After the head was sent: a RUN_ERROR event, then the end of the stream.
 * When the last event relayed was the upstream's own RUN_ERROR the client's
 * run is over already, and a second RUN_ERROR would break the protocol
 * (verifyEvents allows only RUN_STARTED after one): the stream just ends, and
 * a coalesced flight ends as the upstream's failed run, not stored. */
static void run_error(proxy_run_t *px, const char *code, const char *msg)
{
    run_t *r = px->r;
    span_end(px, span_code_type(code));
    drop_attempt(px, false);
    px->phase = PX_DONE;
    if (px->last_type == AGUI_RUN_ERROR) {
        r->errored = true;
        if (coalesce_active(r))
            coalesce_leader_done(r, false);
        r->sink->end(r);
        return;
    }
    agui_event_t ev = {.type = AGUI_RUN_ERROR};
    ev.message = (agui_str_t){msg, strlen(msg)};
    ev.code = (agui_str_t){code, strlen(code)};
    r->errored = true;
    if (coalesce_active(r))
        coalesce_leader_failed(r, 502, code, msg);
    if (r->sink->event(r, &ev) == 0)
        r->sink->end(r);
}

/* No attempt left: an HTTP error when the client has seen nothing yet. */
static void give_up(proxy_run_t *px, int status, const char *code, const char *msg, uint32_t retry_after_s)
{
    run_t *r = px->r;
    span_end(px, span_code_type(code));
    drop_attempt(px, false);
    px->phase = PX_DONE;
    if (r->started) {
        run_error(px, code, msg);
    } else {
        if (coalesce_active(r))
            coalesce_leader_failed(r, status, code, msg);
        r->sink->fail(r, status, code, msg, retry_after_s);
    }
}

/* An attempt failed before any event: retry elsewhere, or give up. */
static void attempt_failed(proxy_run_t *px, enum upm_fail kind, bool count_in_breaker, bool retryable,
                           int status, const char *code, const char *msg)
{
    run_t *r = px->r;
    const cfg_agent_t *ag = r->agent;
    if (upm(r->sh) && px->ep >= 0)
        metrics_add(&upm(r->sh)->failures[agent_idx(r)][px->ep][kind], 1);
    if (count_in_breaker)
        breaker_record(r->sh, &px->hold, true);
    span_failed(px, kind);
    drop_attempt(px, false);
    if (px->first_event) {
        run_error(px, "upstream_failed", msg);
        return;
    }
    if (!retryable || px->attempts > ag->retry_attempts) {
        give_up(px, status, code, msg, 0);
        return;
    }
    /* Full jitter: uniform in [0, min(max, base * 2^attempt)). */
    uint64_t cap = (uint64_t)ag->retry_backoff_ms << (px->attempts < 20 ? px->attempts - 1 : 20);
    if (cap > ag->retry_backoff_max_ms)
        cap = ag->retry_backoff_max_ms;
    uint64_t delay = cap ? rand_next(&r->sh->rng) % cap : 0;
    px->phase = PX_BACKOFF;
    px->backoff_until_ms = r->sh->now_ms + delay;
    if (upm(r->sh))
        metrics_add(&upm(r->sh)->retries[agent_idx(r)], 1);
    schedule_timer(px);
}

static void tick_fired(agate_timer_t *t)
{
    run_t *r = (run_t *)((char *)t - offsetof(run_t, tick));
    proxy_run_t *px = PX(r);
    const cfg_agent_t *ag = r->agent;
    uint64_t now = r->sh->now_ms;
    char msg[128];
    if (now >= px->start_ms + ag->run_timeout_ms) {
        snprintf(msg, sizeof msg, "the run exceeded %u ms", ag->run_timeout_ms);
        give_up(px, 504, "upstream_timeout", msg, 0);
        return;
    }
    if (px->phase == PX_BACKOFF) {
        if (now >= px->backoff_until_ms)
            attempt(px);
        else
            schedule_timer(px);
        return;
    }
    if (!px->first_event && now >= px->sent_ms + ag->first_event_timeout_ms) {
        snprintf(msg, sizeof msg, "no event from the upstream within %u ms", ag->first_event_timeout_ms);
        attempt_failed(px, MUF_TIMEOUT, true, true, 504, "upstream_timeout", msg);
        return;
    }
    if (px->first_event && now >= px->last_event_ms + ag->idle_timeout_ms) {
        snprintf(msg, sizeof msg, "no event from the upstream for %u ms", ag->idle_timeout_ms);
        run_error(px, "upstream_timeout", msg);
        return;
    }
    schedule_timer(px);
}

/* Arms the run's one timer at its nearest deadline; events never touch it, a
 * firing that finds the deadline moved just re-arms. */
static void schedule_timer(proxy_run_t *px)
{
    run_t *r = px->r;
    const cfg_agent_t *ag = r->agent;
    uint64_t at = px->start_ms + ag->run_timeout_ms;
    uint64_t d = px->phase == PX_BACKOFF ? px->backoff_until_ms
               : !px->first_event       ? px->sent_ms + ag->first_event_timeout_ms
                                        : px->last_event_ms + ag->idle_timeout_ms;
    if (d < at)
        at = d;
    r->tick.cb = tick_fired;
    if (timer_arm(&r->sh->timers, &r->tick, at))
        give_up(px, 503, "out_of_memory", "out of memory", 0);
}

/* The type of an event, for metrics, when validation is off: the value of its
 * first "type" key, found by a scan instead of a parse. */
static agui_type_t sniff_type(const char *json, size_t len)
{
    /* Every AG-UI encoder writes type first, so try there before scanning
     * (memmem per event was 5% of agate's CPU in pass mode). */
    if (len > 9 && !memcmp(json, "{\"type\":\"", 9)) {
        const char *q = memchr(json + 9, '"', len - 9);
        agui_type_t t = q ? agui_type_from_name(json + 9, (size_t)(q - json - 9)) : AGUI_TYPE_COUNT;
        if (t != AGUI_TYPE_COUNT)
            return t;
    }
    const char *k = memmem(json, len, "\"type\"", 6);
    if (!k)
        return AGUI_TYPE_COUNT;
    const char *p = k + 6, *end = json + len;
    while (p < end && (*p == ' ' || *p == ':' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    if (p >= end || *p != '"')
        return AGUI_TYPE_COUNT;
    const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
    return q ? agui_type_from_name(p + 1, (size_t)(q - p - 1)) : AGUI_TYPE_COUNT;
}

/* Writes the held frames. 0, or 1 when the client is gone (the run was released). */
static int held_flush(proxy_run_t *px)
{
    uint32_t n = px->held_n;
    if (!n)
        return 0;
    px->held_n = 0;
    run_t *r = px->r;
    return r->sink->frames(r, px->held, px->held_len, px->held_types, n) ? 1 : 0;
}

/* One validated event to the client. A whole frame the SSE sink would write
 * byte for byte is held and written with the rest of its read (held_flush
 * from up_body): a copy and the book-keeping per read instead of per event,
 * ~84 instructions an event saved (callgrind: 49.9 k -> 46.2 k per 44-event
 * run). Anything else is written now, after what is held, so the order stays
 * the upstream's. */
static int relay(proxy_run_t *px, agui_type_t type, const sseread_event_t *ev)
{
    run_t *r = px->r;
    if (ev->frame && r->sink->frames) {
        if (px->held_n && (px->held_n == sizeof px->held_types || ev->frame != px->held + px->held_len) &&
            held_flush(px))
            return 1;
        if (!px->held_n) {
            px->held = ev->frame;
            px->held_len = 0;
        }
        px->held_len += ev->frame_len;
        px->held_types[px->held_n++] = (uint8_t)type;
        return 0;
    }
    if (held_flush(px) || r->sink->raw(r, type, ev->data, ev->data_len, ev->multiline))
        return 1;   /* the client connection is gone; the run was stopped */
    return 0;
}

static int on_sse_event(void *ctx, const sseread_event_t *ev)
{
    proxy_run_t *px = ctx;
    run_t *r = px->r;
    /* The event: field is not read: @ag-ui/client takes the data of every
     * frame, whatever its name, and so does agate. */
    agui_type_t type;
    if (r->agent->validation == CFG_VALIDATION_STRICT) {
        char msg[VALIDATE_MSG_MAX];
        if (validate_event(px->val, ev->data, ev->data_len, &type, msg)) {
            if (held_flush(px))   /* the events before it reach the client first */
                return 1;
            char full[VALIDATE_MSG_MAX + 48];
            snprintf(full, sizeof full, "upstream broke the AG-UI protocol: %s", msg);
            run_error(px, "upstream_protocol_error", full);
            return 1;
        }
    } else {
        type = sniff_type(ev->data, ev->data_len);
    }
    px->last_event_ms = r->sh->now_ms;
    if (!px->first_event) {
        px->first_event = true;
        run_drop_body(r);   /* no retry from here on */
        breaker_record(r->sh, &px->hold, false);
        schedule_timer(px);   /* the idle deadline may be earlier than the first-event one */
        if (!px->r)
            return 1;   /* (only if the timer could not be armed: the run was ended) */
    }
    px->last_type = type;
    if (coalesce_active(r))
        coalesce_record(r, type, ev->data, ev->data_len);   /* cached agent: for the cache and the followers */
    return relay(px, type, ev);   /* the buffer bound is checked once per read (up_body) */
}

/* A protobuf upstream's frame: decoded to the event's JSON form and passed to
 * on_sse_event, so validation, metrics and the sink see what an SSE upstream's
 * event would give them. Bytes that are no event end the run as a protocol
 * error; an event of a kind newer than agate's schema is a violation under
 * strict validation and skipped under pass (as @ag-ui/client drops it). */
static int on_pb_frame(void *ctx, const uint8_t *msg, size_t len)
{
    proxy_run_t *px = ctx;
    agui_type_t type;
    char why[PBJSON_MSG_MAX];
    if (pbjson_is_heartbeat(msg, len))
        return 0;   /* an upstream agate's keep-alive: no event (as ": ping" is none on SSE) */
    buf_reset(&px->pbjson);
    int rc = pbjson_to_json(&px->pbjson, msg, len, &type, why);
    if (rc == -ENOENT && px->r->agent->validation != CFG_VALIDATION_STRICT)
        return 0;
    if (rc) {
        char full[PBJSON_MSG_MAX + 48];
        snprintf(full, sizeof full, "upstream broke the AG-UI protocol: %s", rc == -ENOMEM ? "out of memory" : why);
        run_error(px, "upstream_protocol_error", full);
        return 1;
    }
    /* pbjson writes compact JSON with escaped strings: no line feed (multiline false) */
    sseread_event_t ev = {.data = px->pbjson.data, .data_len = px->pbjson.len, .type = "", .id = "", .retry_ms = -1};
    run_t *r = px->r;
    r->raw_pb = msg, r->raw_pb_len = len;
    rc = on_sse_event(px, &ev);
    r->raw_pb = NULL;   /* (r may be back in the pool by now; NULL is what it needs there too) */
    return rc;
}

static void up_head(void *owner, int status, const char *ctype, size_t ctype_len)
{
    proxy_run_t *px = owner;
    run_t *r = px->r;
    char msg[160];
    px->up_status = (uint16_t)status;
    if (status >= 200 && status < 300) {
        size_t n = strlen(ctype_sse);
        px->proto = ctype_is_proto(ctype, ctype_len);
        if (!px->proto && (ctype_len < n || strncasecmp(ctype, ctype_sse, n))) {
            snprintf(msg, sizeof msg, "upstream answered %d with Content-Type \"%.*s\", not %s", status,
                     (int)(ctype_len > 60 ? 60 : ctype_len), ctype, ctype_sse);
            attempt_failed(px, MUF_CONTENT_TYPE, true, true, 502, "upstream_failed", msg);
            return;
        }
        px->head_ok = true;
        if (!r->started) {
            r->sink->start(r);
            r->started = true;
        }
        return;
    }
    snprintf(msg, sizeof msg, "upstream answered %d %s", status, http_status_text(status));
    if (status >= 500)
        attempt_failed(px, MUF_STATUS, true, true, 502, "upstream_failed", msg);
    else if (status == 429)
        attempt_failed(px, MUF_STATUS, false, false, 429, "upstream_rate_limited", msg);
    else if (status == 400 || status == 422)
        attempt_failed(px, MUF_STATUS, false, false, 400, "upstream_rejected", msg);
    else
        attempt_failed(px, MUF_STATUS, false, false, 502, "upstream_error", msg);
}

/* After the parser returned rc: the held frames go out, and a parser error
 * ends the run. 0 when the run goes on, 1 when it has ended (or the client is
 * gone), else rc (< 0) once the run has been ended for it. */
static int after_feed(proxy_run_t *px, int rc)
{
    /* An error below ends the run with a RUN_ERROR: the events before it go first. */
    if (rc <= 0 && px->r && held_flush(px))
        return 1;   /* the client is gone: the run was released */
    if (rc > 0 || !px->r)
        return 1;   /* an event handler already ended the run (it returns 1) */
    if (rc == 0)
        return 0;
    /* The parser dropped the event it was building and stopped: carrying on
     * would lose that event silently and read the rest from inside it. */
    if (rc == -EMSGSIZE) {
        char msg[96];
        snprintf(msg, sizeof msg, "an upstream event exceeds the agent's max_event (%" PRIu32 " bytes)",
                 px->r->agent->max_event_bytes);
        run_error(px, "upstream_protocol_error", msg);
    } else {   /* -ENOMEM: a buffer could not grow */
        span_end(px, "out_of_memory");
        run_error(px, "upstream_failed", "out of memory");
    }
    return rc;
}

static void up_body(void *owner, const char *p, size_t n)
{
    proxy_run_t *px = owner;
    if (!px->head_ok)
        return;
    int rc = px->proto ? pbread_feed(&px->pb, p, n, on_pb_frame, px)
                       : sseread_feed(&px->sse, p, n, on_sse_event, NULL, px);
    if (after_feed(px, rc) == 0) {
        /* Over the client's buffer bound: read no more from the upstream until
         * it drains. Once per read, not per event: the events of this read
         * are in memory already and all go on, so only the next read can wait
         * (a check per event cost ~16 instructions each and changed nothing). */
        run_t *r = px->r;
        if (r && !r->blocked && !r->sink->writable(r)) {
            r->blocked = true;
            ups_pause(px->u);
        }
    }
}

static bool run_closed(const proxy_run_t *px)
{
    if (px->r->agent->validation == CFG_VALIDATION_STRICT)
        return validate_run_closed(px->val);
    return px->last_type == AGUI_RUN_FINISHED || px->last_type == AGUI_RUN_ERROR;
}

static void up_done(void *owner, bool keep_alive)
{
    proxy_run_t *px = owner;
    if (!px->head_ok)
        return;
    /* An SSE stream may end inside its last event (no blank line after it):
     * @ag-ui/client reads that event, so it is relayed too. */
    if (!px->proto && after_feed(px, sseread_end(&px->sse, on_sse_event, NULL, px)))
        return;
    run_t *r = px->r;
    if (!px->first_event) {   /* counted against its endpoint (metrics, breaker) before it is let go */
        attempt_failed(px, MUF_PROTOCOL, true, true, 502, "upstream_failed", "upstream ended the stream without an event");
        return;
    }
    drop_attempt(px, keep_alive);
    if (!run_closed(px)) {
        span_end(px, "protocol");
        run_error(px, "upstream_failed", "upstream ended the stream before the run finished");
        return;
    }
    span_end(px, NULL);
    px->phase = PX_DONE;
    if (coalesce_active(r))
        coalesce_leader_done(r, px->last_type == AGUI_RUN_FINISHED);   /* only a finished run is stored */
    r->sink->end(r);
}

static void up_fail(void *owner, ups_fail_t why, int err)
{
    proxy_run_t *px = owner;
    px->u = NULL;   /* the connection is already gone */
    char msg[160];
    snprintf(msg, sizeof msg, "upstream %s: %s",
             why == UPS_FAIL_CONNECT ? "connection failed" : why == UPS_FAIL_RESET ? "connection broke" : "sent an invalid HTTP response",
             strerror(-err));
    bool timeout = err == -ETIMEDOUT;
    enum upm_fail kind = timeout ? MUF_TIMEOUT : why == UPS_FAIL_CONNECT ? MUF_CONNECT
                             : why == UPS_FAIL_RESET ? MUF_RESET : MUF_PROTOCOL;
    attempt_failed(px, kind, true, true, timeout ? 504 : 502, timeout ? "upstream_timeout" : "upstream_failed", msg);
}

static const ups_ops_t px_ups_ops = {up_head, up_body, up_done, up_fail};

/* Headers agate writes itself; an allow-list entry naming one is ignored. */
static bool agate_sets(const char *name)
{
    static const char *const own[] = {"content-type", "accept", "x-request-id", "x-forwarded-for",
                                       "x-forwarded-proto", "x-forwarded-host", "traceparent", "tracestate"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (!strcmp(name, own[i]))
            return true;
    return false;
}

/* The upstream request: the client's body unchanged, with forwarding headers. */
static void build_request(proxy_run_t *px, buf_t *b, const cfg_endpoint_t *ep)
{
    run_t *r = px->r;
    conn_t *c = r->conn;   /* SSE or WebSocket: the client's connection */
    http_req_t *req = &c->http.req;
    const cfg_agent_t *ag = r->agent;
    bool v6 = strchr(ep->host, ':') != NULL;   /* stored without brackets */
    buf_append_lit(b, "POST ");
    buf_append(b, ep->path, strlen(ep->path));
    buf_append_lit(b, " HTTP/1.1\r\nHost: ");
    if (v6)
        buf_putc(b, '[');
    buf_append(b, ep->host, strlen(ep->host));
    if (v6)
        buf_putc(b, ']');
    if (ep->port != 80) {
        buf_putc(b, ':');
        buf_append_u64(b, ep->port);
    }
    /* Ask for the client's encoding first, so the common case passes events
     * through; either answer is read and transcoded as needed. */
    if (sse_run_is_proto(r))
        buf_append_lit(b, "\r\nContent-Type: application/json\r\nAccept: " PBJSON_MEDIA_TYPE ", text/event-stream;q=0.5\r\nContent-Length: ");
    else
        buf_append_lit(b, "\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: ");
    buf_append_u64(b, r->body_len);
    buf_append_lit(b, "\r\nX-Request-ID: ");
    buf_append(b, req->id, req->id_len);
    /* X-Forwarded-For: what came in, plus our client's address. */
    const char *v;
    size_t vl;
    buf_append_lit(b, "\r\nX-Forwarded-For: ");
    if (http_header(req, "x-forwarded-for", &v, &vl) && vl) {
        buf_append(b, v, vl);
        buf_append_lit(b, ", ");
    }
    conn_peer(c);
    buf_append(b, c->peer, c->peer_len);
    buf_append_lit(b, "\r\nX-Forwarded-Proto: http");
    if (req->host.len) {   /* Host, or an absolute-form target's authority (RFC 9112 section 3.2.2) */
        buf_append_lit(b, "\r\nX-Forwarded-Host: ");
        buf_append(b, http_str(req, req->host), req->host.len);
    }
    /* traceparent: our trace, a new span id for this attempt. */
    char tp[TRACEPARENT_LEN];
    trace_child(&req->trace, &r->sh->rng, px->span_id, tp);
    buf_append_lit(b, "\r\ntraceparent: ");
    buf_append(b, tp, TRACEPARENT_LEN);
    if (http_header(req, "tracestate", &v, &vl) && trace_state_valid(v, vl)) {
        buf_append_lit(b, "\r\ntracestate: ");
        buf_append(b, v, vl);
    }
    for (uint32_t i = 0; i < ag->n_forward; i++) {
        if (agate_sets(ag->forward_headers[i]) || !http_header(req, ag->forward_headers[i], &v, &vl))
            continue;
        buf_append_lit(b, "\r\n");
        buf_append(b, ag->forward_headers[i], strlen(ag->forward_headers[i]));
        buf_append_lit(b, ": ");
        buf_append(b, v, vl);
    }
    buf_append_lit(b, "\r\n\r\n");
    buf_append(b, r->body, r->body_len);
}

static void attempt(proxy_run_t *px)
{
    run_t *r = px->r;
    uint32_t retry_after = 0;
    int ep = breaker_pick(r->sh, r->agent, px->tried, &px->hold, &retry_after);
    if (ep < 0) {
        give_up(px, 503, "upstream_unavailable", "every upstream endpoint is failing; try again later", retry_after);
        return;
    }
    px->attempts++;
    px->tried |= 1ull << ep;
    px->phase = PX_ATTEMPT;
    px->head_ok = false;
    px->held_n = 0;   /* (already: nothing is held between reads) */
    sseread_reset(&px->sse);
    pbread_reset(&px->pb);
    px->sse.max_event = px->pb.max_frame = r->agent->max_event_bytes;   /* the run's generation's */
    px->proto = false;
    px->up_status = 0;
    ups_t *u = ups_acquire(r->sh, agent_idx(r), (unsigned)ep, px, &px_ups_ops);
    if (!u) {
        px->ep = -1;
        attempt_failed(px, MUF_CONNECT, false, true, 503, "upstream_failed", "no upstream connection available on this shard");
        return;
    }
    px->u = u;
    px->ep = ep;
    if (upm(r->sh))
        metrics_add(&upm(r->sh)->attempts[agent_idx(r)][ep], 1);
    build_request(px, ups_out(u), &r->agent->endpoints[ep]);
    span_begin(px, &r->agent->endpoints[ep]);
    ups_send(u);
    px->sent_ms = r->sh->now_ms;
    schedule_timer(px);
}

static void px_start(run_t *r)
{
    if (!breaker_shard_ready(r->sh)) {   /* the shard could not set up proxy state when the agent appeared */
        r->sink->fail(r, 503, "out_of_memory", "out of memory", 0);
        return;
    }
    if (!PX(r)) {
        r->ext[g_px_ext] = calloc(1, sizeof(proxy_run_t));
        if (!PX(r)) {
            r->sink->fail(r, 503, "out_of_memory", "out of memory", 0);
            return;
        }
        sseread_init(&PX(r)->sse, 0);   /* bounded per attempt: the agent's max_event */
        pbread_init(&PX(r)->pb, 0);
    }
    proxy_run_t *px = PX(r);
    px->r = r;
    px->u = NULL;
    px->ep = -1;
    px->hold = BREAKER_HOLD_NONE;
    px->attempts = 0;
    px->tried = 0;
    px->first_event = false;
    px->span_open = false;
    px->last_type = AGUI_TYPE_COUNT;
    px->start_ms = r->sh->now_ms;
    if (r->agent->validation == CFG_VALIDATION_STRICT) {
        /* kept with the pooled run between runs (freed by px_destroy) */
        if (px->val)
            validate_reset(px->val);
        else if (!(px->val = validate_new())) {
            r->sink->fail(r, 503, "out_of_memory", "out of memory", 0);
            return;
        }
    }
    attempt(px);
}

static void px_resume(run_t *r)
{
    proxy_run_t *px = PX(r);
    if (px && px->u)
        ups_resume(px->u);
}

/* The run ends (normally, by error, or because the client left): drop the
 * upstream connection at once so the agent sees the cancel. */
static void px_stop(run_t *r)
{
    proxy_run_t *px = PX(r);
    if (!px || !px->r)
        return;
    span_end(px, "cancelled");   /* still running: the client left, or cancelled the run */
    drop_attempt(px, false);
    px->r = NULL;
}

static void px_destroy(run_t *r)
{
    proxy_run_t *px = PX(r);
    if (!px)
        return;
    sseread_free(&px->sse);
    pbread_free(&px->pb);
    buf_free(&px->pbjson);
    free(px->span);
    validate_free(px->val);
    free(px);
    r->ext[g_px_ext] = NULL;
}

static const run_kind_ops_t proxy_agent_ops = {px_start, px_resume, px_stop};

static int proxy_shard_init(shard_t *sh)
{
    bool any = false;
    for (uint32_t a = 0; a < sh->cfg->n_agents; a++)
        any |= sh->cfg->agents[a].kind == CFG_AGENT_PROXY;
    if (!any)
        return 0;
    int rc = breaker_shard_init(sh);
    if (rc)
        return rc;
    return ups_shard_init(sh);   /* on failure the shard frees the breakers with itself */
}

/* A new configuration generation (sh->cfg is the new one): sets up proxy state
 * if the first proxy agent appeared, and starts the breakers of every agent
 * whose endpoints changed afresh. */
static void proxy_shard_adopt(shard_t *sh, const cfg_t *old)
{
    if (!breaker_shard_ready(sh) && proxy_shard_init(sh))
        return;   /* out of memory: proxy runs fail with 503 until a later adoption succeeds */
    if (breaker_shard_ready(sh))   /* else still no proxy agent */
        breaker_adopt(sh, old);
}

static const shard_mod_ops_t proxy_mod = {.name = "proxy", .init = proxy_shard_init, .adopt = proxy_shard_adopt};
static const run_ext_ops_t proxy_ext = {.destroy = px_destroy};

void proxy_register(void)
{
    shard_mod_register(&proxy_mod);
    g_px_ext = run_ext_register(&proxy_ext);
    run_kind_register(CFG_AGENT_PROXY, &proxy_agent_ops);
}
