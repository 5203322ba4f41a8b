/* http1: requests via llhttp, responses into the connection's output buffer.
 *
 * Parsing is incremental: llhttp calls back with slices of the receive buffer,
 * and the slices that must outlive it are appended to req.raw. The parser is
 * paused at the end of every message (on_message_complete returns HPE_PAUSED),
 * so exactly one request is dispatched at a time and pipelined responses leave
 * in request order. Limits are enforced inside the callbacks, before the bytes
 * are kept, so an oversized request never costs more memory than the limit.
 * Pipelined requests are parsed only while the connection's output is under
 * stream.buffer (net/conn.c): a client that sends requests and reads nothing
 * gets answers up to the bound, and its further requests wait in the kernel. */
#include "net/http1.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "net/access.h"
#include "net/conn.h"
#include "net/http1_head.h"
#include "core/otlp.h"
#include "net/router.h"
#include "net/sse.h"
#include "core/json.h"
#include "net/gwmetrics.h"

static inline conn_t *conn_of(llhttp_t *p) { return (conn_t *)p->data; }

static int stop_with(http_req_t *r, int status, const char *code, const char *msg)
{
    r->err_status = status;
    r->err_code = code;
    r->err_msg = msg;
    return -1;
}

static void req_reset(http_req_t *r)
{
    r->raw.len = 0;
    r->body.len = 0;
    r->url = r->path = r->host = (http_slice_t){0, 0};
    r->n_hdrs = 0;
    r->header_bytes = 0;
    r->keep_alive = r->head = r->expect_continue = r->chunked_resp = false;
    r->last_was_value = false;
    r->head_done = false;
    r->status = 0;
    r->err_code = NULL;
    r->err_status = 0;
    r->err_msg = NULL;
    r->err_extra = NULL;
    r->bytes_out = 0;
    r->events = 0;
    r->gap_zero = 0;
    r->cache = NULL;
    r->id_len = 0;
    r->method = 0;
    r->route = MR_NONE;
    r->traced = false;
    r->last_event_us = 0;
    r->major = 1;
    r->minor = 1;
}

/* Counts request-head bytes against max_header and keeps them. */
static int keep_head_bytes(conn_t *c, const char *at, size_t len)
{
    http_req_t *r = &c->http.req;
    r->header_bytes += (uint32_t)len;
    if (r->header_bytes > c->sh->cfg->max_header_bytes)
        return stop_with(r, 431, "request_header_fields_too_large", "request line and headers exceed the limit");
    if (buf_append(&r->raw, at, len))
        return stop_with(r, 503, "out_of_memory", "out of memory");
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    conn_t *c = conn_of(p);
    http_req_t *r = &c->http.req;
    req_reset(r);
    r->in_message = true;
    r->start_us = c->sh->now_us;
    if (c->timer_kind != CONN_T_HEADER)
        conn_set_timer(c, CONN_T_HEADER, c->sh->cfg->header_timeout_ms);
    return 0;
}

/* 505 for HTTP/2.0, HTTP/3.x, HTTP/0.9 before any header is read. */
static int on_version_complete(llhttp_t *p)
{
    return http_head_version(&conn_of(p)->http.req, llhttp_get_http_major(p));
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    http_req_t *r = &conn_of(p)->http.req;
    if (!r->url.len)
        r->url.off = (uint32_t)r->raw.len;
    r->url.len += (uint32_t)len;
    return keep_head_bytes(conn_of(p), at, len);
}

/* The next header table entry. The table grows with the request (most have
 * under 16 fields) rather than sit in every connection slot at its largest:
 * an idle connection gives it back (http_req_trim). */
static http_hdr_t *hdr_push(http_req_t *r)
{
    if (r->n_hdrs == r->cap_hdrs) {
        http_hdr_t *v = buf_array_grow(r->hdrs, &r->cap_hdrs, sizeof *v, 16);
        if (!v)
            return NULL;
        r->hdrs = v;
    }
    return &r->hdrs[r->n_hdrs++];
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    http_req_t *r = &conn_of(p)->http.req;
    if (r->n_hdrs && r->hdrs[r->n_hdrs - 1].value.off == UINT32_MAX) {
        r->hdrs[r->n_hdrs - 1].name.len += (uint32_t)len;   /* field continued across reads */
    } else {
        if (r->n_hdrs == HTTP_MAX_HEADERS)
            return stop_with(r, 431, "request_header_fields_too_large", "too many header fields");
        http_hdr_t *h = hdr_push(r);
        if (!h)
            return stop_with(r, 503, "out_of_memory", "out of memory");
        h->name = (http_slice_t){(uint32_t)r->raw.len, (uint32_t)len};
        h->value = (http_slice_t){UINT32_MAX, 0};
    }
    r->last_was_value = false;
    return keep_head_bytes(conn_of(p), at, len);
}

static int on_header_field_complete(llhttp_t *p)
{
    http_req_t *r = &conn_of(p)->http.req;
    r->hdrs[r->n_hdrs - 1].value = (http_slice_t){(uint32_t)r->raw.len, 0};
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    http_req_t *r = &conn_of(p)->http.req;
    r->hdrs[r->n_hdrs - 1].value.len += (uint32_t)len;
    r->last_was_value = true;
    return keep_head_bytes(conn_of(p), at, len);
}

bool http_list_next(const char *v, size_t n, size_t *pos, const char **el, size_t *len)
{
    size_t i = *pos;
    for (;;) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        if (i == n) {
            *pos = i;
            return false;
        }
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e > s) {
            *pos = i;
            *el = v + s;
            *len = e - s;
            return true;
        }
    }
}

uint32_t http_header_count(const http_req_t *r, const char *name)
{
    size_t nl = strlen(name);
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->n_hdrs; i++)
        n += r->hdrs[i].name.len == nl && !strncasecmp(http_str(r, r->hdrs[i].name), name, nl);
    return n;
}

bool http_header(const http_req_t *r, const char *name, const char **val, size_t *len)
{
    size_t nl = strlen(name);
    for (uint32_t i = 0; i < r->n_hdrs; i++) {
        const http_hdr_t *h = &r->hdrs[i];
        if (h->name.len == nl && !strncasecmp(http_str(r, h->name), name, nl)) {
            *val = http_str(r, h->value);
            *len = h->value.len;
            return true;
        }
    }
    return false;
}

/* X-Request-ID is echoed when it is printable ASCII without spaces and short;
 * anything else could smuggle bytes into our logs or headers, so we mint one. */
static void set_request_id(conn_t *c)
{
    http_req_t *r = &c->http.req;
    const char *v;
    size_t n;
    if (http_header(r, "x-request-id", &v, &n) && n && n <= HTTP_REQ_ID_MAX) {
        size_t i = 0;
        while (i < n && v[i] > ' ' && v[i] < 0x7f && v[i] != '"' && v[i] != '\\')
            i++;
        if (i == n) {
            memcpy(r->id, v, n);
            r->id_len = (uint8_t)n;
            r->id[n] = 0;
            return;
        }
    }
    rand_hex128(&c->sh->rng, r->id);
    r->id_len = 32;
    r->id[32] = 0;
}

static int on_headers_complete(llhttp_t *p)
{
    conn_t *c = conn_of(p);
    http_req_t *r = &c->http.req;
    const cfg_t *cfg = c->sh->cfg;
    r->head_done = true;
    r->method = (uint8_t)llhttp_get_method(p);
    r->major = llhttp_get_http_major(p);
    r->minor = llhttp_get_http_minor(p);
    r->keep_alive = llhttp_should_keep_alive(p);
    r->head = r->method == HTTP_HEAD;
    r->path = r->url;   /* until http_head_check reads the target: a log line has a path */
    set_request_id(c);

    const char *v;
    size_t n;
    bool tp = http_header(r, "traceparent", &v, &n);
    trace_begin(&r->trace, &c->sh->rng, tp ? v : NULL, tp ? n : 0);
    r->traced = true;
    if (c->over_cap)
        return stop_with(r, 503, "too_many_connections", "connection limit reached, retry later");
    if (http_head_check(r, p))   /* target, Host, Transfer- and Content-Encoding */
        return -1;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > cfg->max_body_bytes)
        return stop_with(r, 413, "payload_too_large", "request body exceeds the limit");
    if (http_header(r, "expect", &v, &n)) {
        if (n != 12 || strncasecmp(v, "100-continue", 12))
            return stop_with(r, 417, "expectation_failed", "only Expect: 100-continue is supported");
        if (r->major == 1 && r->minor >= 1) {
            r->expect_continue = true;
            buf_append_lit(conn_fill(c), "HTTP/1.1 100 Continue\r\n\r\n");
            conn_mark_dirty(c);
        }
    }
    bool has_body = (p->flags & (F_CONTENT_LENGTH | F_CHUNKED)) && (p->content_length || (p->flags & F_CHUNKED));
    conn_set_timer(c, has_body ? CONN_T_BODY : CONN_T_NONE,
                   has_body ? cfg->body_timeout_ms : 0);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    conn_t *c = conn_of(p);
    http_req_t *r = &c->http.req;
    if (r->body.len + len > c->sh->cfg->max_body_bytes)
        return stop_with(r, 413, "payload_too_large", "request body exceeds the limit");
    if (buf_append(&r->body, at, len))
        return stop_with(r, 503, "out_of_memory", "out of memory");
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    conn_t *c = conn_of(p);
    c->http.req.in_message = false;
    if (c->timer_kind == CONN_T_HEADER || c->timer_kind == CONN_T_BODY)
        conn_set_timer(c, CONN_T_NONE, 0);
    return HPE_PAUSED;   /* one request at a time: responses leave in order */
}

static const llhttp_settings_t http_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_version_complete = on_version_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http_conn_init(conn_t *c)
{
    llhttp_init(&c->http.parser, HTTP_REQUEST, &http_settings);
    c->http.parser.data = c;
    /* llhttp's own version check makes HTTP/3.0 a 400 and HTTP/1.2 a 400; with it
     * off we answer 505 for other majors and read 1.2+ as 1.1 (RFC 9112 section
     * 2.3). llhttp 8.1 has the flag but not yet its setter. */
    c->http.parser.lenient_flags |= LENIENT_VERSION;
    req_reset(&c->http.req);
    c->http.req.in_message = false;
    c->http.req.responding = false;
}

void http_req_trim(http_req_t *r)
{
    buf_free(&r->raw);
    buf_free(&r->body);
    free(r->hdrs);
    r->hdrs = NULL;
    r->n_hdrs = r->cap_hdrs = 0;
}

void http_conn_free(http_conn_t *h) { http_req_trim(&h->req); }

static enum metrics_reject reject_reason(int status)
{
    switch (status) {
    case 413: return MRJ_BODY_TOO_LARGE;
    case 431: return MRJ_HEADERS_TOO_LARGE;
    case 503: return MRJ_CONNECTION_LIMIT;
    case 417: return MRJ_EXPECTATION;
    default:  return MRJ_BAD_REQUEST;
    }
}

static void bad_request(conn_t *c, llhttp_errno_t e)
{
    http_req_t *r = &c->http.req;
    if (gwm(c->sh))
        metrics_add(&gwm(c->sh)->rejected[reject_reason(r->err_status ? r->err_status : 400)], 1);
    if (r->err_status) {
        http_error(c, r->err_status, r->err_code, r->err_msg, r->err_extra);
        return;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "malformed HTTP request: %s", llhttp_get_error_reason(&c->http.parser));
    http_error(c, 400, "bad_request", msg, NULL);
}

/* Input waits for output (conn_out_full). Between requests the connection is
 * then timed as a stalled stream is, aborted after idle_timeout without send
 * progress, rather than as an idle keep-alive; a request or stream in progress
 * keeps its own timer. */
static void wait_for_output(conn_t *c)
{
    const http_req_t *r = &c->http.req;
    if (c->state == CONN_OPEN && !r->responding && !r->in_message && c->timer_kind != CONN_T_STALL)
        conn_set_timer(c, CONN_T_STALL, c->sh->cfg->idle_timeout_ms);
}

static size_t pending_limit(const conn_t *c)
{
    return (size_t)c->sh->cfg->max_header_bytes + c->sh->cfg->max_body_bytes;
}

void http_feed(conn_t *c, const char *data, size_t len, bool from_pending)
{
    const char *p = data;
    size_t n = len;
    bool full = false;
    c->in_feed = true;
    while (n && c->state == CONN_OPEN) {
        /* Pipelined requests answered at once would queue their responses
         * without end for a client that does not read: stop at stream.buffer. */
        if ((full = conn_out_full(c)))
            break;
        llhttp_errno_t e = llhttp_execute(&c->http.parser, p, n);
        if (e == HPE_OK) {
            n = 0;
            break;
        }
        if (e != HPE_PAUSED) {
            bad_request(c, e);
            n = 0;
            break;
        }
        const char *stop = llhttp_get_error_pos(&c->http.parser);
        n -= (size_t)(stop - p);
        p = stop;
        llhttp_resume(&c->http.parser);
        c->http.req.responding = true;
        router_dispatch(c);
        if (c->http.req.responding)
            break;   /* a stream: what follows waits in pending */
    }
    if (from_pending) {
        memmove(c->pending.data, p, n);
        c->pending.len = c->state == CONN_OPEN ? n : 0;
    } else if (n && c->state == CONN_OPEN) {
        conn_hold_input(c, p, n, pending_limit(c));
    }
    if (full)
        wait_for_output(c);
    c->in_feed = false;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:  return "Unknown";
    }
}

/* Whether this response must end the connection. */
static bool must_close(const conn_t *c, int status)
{
    const http_req_t *r = &c->http.req;
    return !r->keep_alive || r->in_message || status == 408 || status == 503 ||
           (c->sh->draining && !c->admin) || c->http.parser.error != HPE_OK;
}

static void write_head(conn_t *c, int status, const char *ctype, const char *extra, long content_length)
{
    http_req_t *r = &c->http.req;
    buf_t *b = conn_fill(c);
    size_t start = b->len;
    /* by hand: snprintf here was 0.45 % of an echo response's CPU (perf) */
    char line[13] = "HTTP/1.1 000 ";
    line[9] = (char)('0' + status / 100 % 10);
    line[10] = (char)('0' + status / 10 % 10);
    line[11] = (char)('0' + status % 10);
    buf_append(b, line, 13);
    const char *text = http_status_text(status);
    buf_append(b, text, strlen(text));
    buf_append_lit(b, "\r\nDate: ");
    buf_append(b, c->sh->http_date, strlen(c->sh->http_date));
    buf_append_lit(b, "\r\nServer: agate\r\n");
    if (ctype) {
        buf_append_lit(b, "Content-Type: ");
        buf_append(b, ctype, strlen(ctype));
        buf_append_lit(b, "\r\n");
    }
    if (r->id_len) {
        buf_append_lit(b, "X-Request-ID: ");
        buf_append(b, r->id, r->id_len);
        buf_append_lit(b, "\r\n");
    }
    if (r->traced && !buf_reserve(b, 13 + TRACEPARENT_LEN + 2)) {
        buf_append_lit(b, "traceparent: ");
        trace_format(&r->trace, b->data + b->len);
        b->len += TRACEPARENT_LEN;
        buf_append_lit(b, "\r\n");
    }
    access_head_headers(c, b, ctype);   /* security headers, CORS, RateLimit-* */
    if (extra)
        buf_append(b, extra, strlen(extra));
    if (content_length >= 0 && status != 204) {
        buf_append_lit(b, "Content-Length: ");
        buf_append_u64(b, (uint64_t)content_length);
        buf_append_lit(b, "\r\n");
    } else if (r->chunked_resp) {
        buf_append_lit(b, "Transfer-Encoding: chunked\r\n");
    }
    if (!r->keep_alive)
        buf_append_lit(b, "Connection: close\r\n");
    else if (r->major == 1 && r->minor == 0)
        buf_append_lit(b, "Connection: keep-alive\r\n");
    buf_append_lit(b, "\r\n");
    r->status = status;
    r->bytes_out += b->len - start;
}

void http_respond(conn_t *c, int status, const char *ctype, const char *body, size_t len, const char *extra)
{
    http_req_t *r = &c->http.req;
    if (c->state != CONN_OPEN)
        return;
    if (!r->id_len)
        set_request_id(c);
    if (!r->traced) {
        trace_begin(&r->trace, &c->sh->rng, NULL, 0);   /* an error before the headers were read */
        r->traced = true;
    }
    if (must_close(c, status))
        r->keep_alive = false;
    r->chunked_resp = false;
    write_head(c, status, ctype, extra, (long)len);
    if (!r->head && len) {
        buf_append(conn_fill(c), body, len);
        r->bytes_out += len;
    }
    conn_mark_dirty(c);
    r->responding = true;
    http_response_done(c);
}

static void error_body(buf_t *b, const char *code, const char *msg, const char *field)
{
    buf_reset(b);
    buf_append_lit(b, "{\"error\":");
    json_put_str(b, code, strlen(code));
    buf_append_lit(b, ",\"message\":");
    json_put_str(b, msg, strlen(msg));
    if (field && *field) {
        buf_append_lit(b, ",\"field\":");
        json_put_str(b, field, strlen(field));
    }
    buf_append_lit(b, "}\n");
}

void http_error(conn_t *c, int status, const char *code, const char *msg, const char *extra)
{
    buf_t *b = &c->sh->scratch;
    error_body(b, code, msg, NULL);
    http_respond(c, status, "application/json", b->data, b->len, extra);
}

void http_error_field(conn_t *c, int status, const char *code, const char *msg, const char *field)
{
    buf_t *b = &c->sh->scratch;
    error_body(b, code, msg, field);
    http_respond(c, status, "application/json", b->data, b->len, NULL);
}

void http_stream_begin(conn_t *c, int status, const char *ctype, const char *extra)
{
    http_req_t *r = &c->http.req;
    /* HTTP/1.0 has no chunked encoding: the stream is delimited by closing. */
    r->chunked_resp = r->major == 1 && r->minor >= 1;
    if (!r->chunked_resp || must_close(c, status))
        r->keep_alive = false;
    write_head(c, status, ctype, extra, -1);
    conn_mark_dirty(c);
    conn_set_timer(c, CONN_T_STALL, c->sh->cfg->idle_timeout_ms);
}

void http_upgrade(conn_t *c, const char *extra)
{
    http_req_t *r = &c->http.req;
    r->keep_alive = true;       /* no Connection: close; the caller's extra says Upgrade */
    r->chunked_resp = false;
    write_head(c, 101, NULL, extra, -1);
    conn_mark_dirty(c);
}

void http_stream_end(conn_t *c)
{
    http_req_t *r = &c->http.req;
    if (r->chunked_resp) {
        conn_body_close(c);
        buf_append_lit(conn_fill(c), "0\r\n\r\n");
        r->bytes_out += 5;
    }
    conn_mark_dirty(c);
    http_response_done(c);
}

static const char *method_name(const http_req_t *r)
{
    return r->head_done ? llhttp_method_name((llhttp_method_t)r->method) : "-";
}

/* The path as a JSON string's contents, at most LOG_PATH_MAX bytes of it; bytes
 * outside printable ASCII become '?', so a hostile URL cannot put invalid UTF-8
 * or control bytes into a log line. Writes at most 2 * LOG_PATH_MAX bytes. */
#define LOG_PATH_MAX 256
static char *put_path(char *w, const char *p, size_t n)
{
    if (n > LOG_PATH_MAX)
        n = LOG_PATH_MAX;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '"' || ch == '\\')
            *w++ = '\\';
        *w++ = ch >= 0x20 && ch < 0x7f ? ch : '?';
    }
    return w;
}

static inline char *put_mem(char *w, const void *s, size_t n)
{
    memcpy(w, s, n);
    return w + n;
}
#define PUT_LIT(w, s) put_mem(w, s, sizeof s - 1)

static inline char *put_u64(char *w, uint64_t v) { return w + buf_fmt_u64(w, v); }

/* Whether this request's line is written: the level filter first, then, for
 * successful requests only, sampling (errors are always kept). */
bool http_log_wanted(shard_t *sh, int status, cfg_log_level_t level)
{
    const cfg_t *cfg = sh->cfg;
    if (level < cfg->log_level)
        return false;
    if (status >= 400 || cfg->log_sample >= 1.0)
        return true;
    return (double)(rand_next(&sh->rng) >> 11) * 0x1.0p-53 < cfg->log_sample;
}

/* The bytes of a request line besides its path: the head, three ids of at most
 * HTTP_REQ_ID_MAX, 32 and 16 bytes, the method, five numbers, the flags. */
#define LOG_REQ_FIXED (LOG_HEAD_MAX + HTTP_REQ_ID_MAX + 512)

/* One JSON line per request. Written by hand into one reservation: every value
 * but the path is a number or a string known not to need escaping (the request
 * id is minted hex or checked by set_request_id, the method and cache result are
 * our constants). Appended field by field it cost 2.1 k instructions per line;
 * this way 1.1 k (callgrind, echo run). */
static void log_request(conn_t *c)
{
    http_req_t *r = &c->http.req;
    shard_t *sh = c->sh;
    cfg_log_level_t level = r->status >= 500 ? CFG_LOG_ERROR : r->status >= 400 ? CFG_LOG_WARN : CFG_LOG_INFO;
    if (!http_log_wanted(sh, r->status, level))
        return;
    static const char *const level_names[] = {"debug", "info", "warn", "error"};
    buf_t *b = &sh->scratch;
    buf_reset(b);
    if (buf_reserve(b, LOG_REQ_FIXED + 2 * LOG_PATH_MAX))
        return;
    char *w = log_head(b->data, level_names[level]);
    w = PUT_LIT(w, "\"request\",\"request_id\":\"");
    w = put_mem(w, r->id, r->id_len);
    if (r->traced) {
        w = PUT_LIT(w, "\",\"trace_id\":\"");
        buf_fmt_hex(w, r->trace.trace_id, 16);
        w = PUT_LIT(w + 32, "\",\"span_id\":\"");
        buf_fmt_hex(w, r->trace.span_id, 8);
        w += 16;
    }
    const char *m = method_name(r);
    w = PUT_LIT(w, "\",\"method\":\"");
    w = put_mem(w, m, strlen(m));
    w = PUT_LIT(w, "\",\"path\":\"");
    w = put_path(w, http_str(r, r->path), r->path.len);
    w = PUT_LIT(w, "\",\"status\":");
    w = put_u64(w, (uint64_t)r->status);
    w = PUT_LIT(w, ",\"bytes\":");
    w = put_u64(w, r->bytes_out);
    uint64_t us = r->start_us ? clock_mono_us() - r->start_us : 0;   /* real time, not the turn-cached one */
    w = PUT_LIT(w, ",\"duration_ms\":");
    w = put_u64(w, us / 1000);
    *w++ = '.';
    *w++ = (char)('0' + us / 100 % 10);
    *w++ = (char)('0' + us / 10 % 10);
    *w++ = (char)('0' + us % 10);
    w = PUT_LIT(w, ",\"events\":");
    w = put_u64(w, r->events);
    w = PUT_LIT(w, ",\"shard\":");
    w = put_u64(w, sh->id);
    if (r->cache) {
        w = PUT_LIT(w, ",\"cache\":\"");
        w = put_mem(w, r->cache, strlen(r->cache));
        *w++ = '"';
    }
    if (c->admin)
        w = PUT_LIT(w, ",\"listener\":\"admin\"");
    if (c->state == CONN_ABORT)
        w = PUT_LIT(w, ",\"aborted\":true");
    w = PUT_LIT(w, "}\n");
    b->len = (size_t)(w - b->data);
    shard_log_line(sh, b);
}

/* One server span per request, to the OTLP exporter's ring for this shard. */
static void export_span(conn_t *c)
{
    http_req_t *r = &c->http.req;
    otlp_span_t s;
    memset(&s, 0, sizeof s);
    memcpy(s.trace_id, r->trace.trace_id, 16);
    memcpy(s.span_id, r->trace.span_id, 8);
    memcpy(s.parent_id, r->trace.parent_id, 8);
    s.has_parent = r->trace.has_parent;
    s.kind = OTLP_KIND_SERVER;
    s.http_status = (uint16_t)r->status;
    s.error = r->status >= 500 || c->state == CONN_ABORT;
    s.events = r->events;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    s.end_unix_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    uint64_t dur_ns = r->start_us ? (c->sh->now_us - r->start_us) * 1000u : 0;
    s.start_unix_ns = s.end_unix_ns - dur_ns;
    const char *m = method_name(r), *route = router_template(r->route, http_str(r, r->path), r->path.len);
    snprintf(s.method, sizeof s.method, "%s", m);
    snprintf(s.route, sizeof s.route, "%s", route);
    snprintf(s.name, sizeof s.name, "%s %s", m, route);
    if (c->run_slot >= 0)   /* a slot names one agent for the life of the process */
        snprintf(s.agent, sizeof s.agent, "%s", c->sh->cfg->agents[c->run_slot].name);
    snprintf(s.request_id, sizeof s.request_id, "%.*s", (int)r->id_len, r->id);
    otlp_put(c->sh->id, &s);
}

void http_response_done(conn_t *c)
{
    http_req_t *r = &c->http.req;
    if (!r->responding)
        return;
    r->responding = false;
    gwmetrics_t *m = gwm(c->sh);
    if (m && r->gap_zero && c->run_slot >= 0)
        metrics_add(&m->gap[c->run_slot].bucket[0], r->gap_zero);   /* the bursts' zero gaps */
    if (m && r->status >= 100 && r->status < 600)
        metrics_add(&m->requests[c->admin][r->route][metrics_method_of(r->head_done ? r->method : -1)]
                                [r->status / 100 - 1], 1);
    if (c->sh->cfg->log_requests)
        log_request(c);
    if (r->traced && otlp_enabled())
        export_span(c);
    c->run_slot = -1;
    if (c->state != CONN_OPEN)
        return;
    conn_set_timer(c, CONN_T_NONE, 0);
    if (!r->keep_alive)
        conn_close_after_flush(c);
    else
        conn_response_finished(c);
}

/* ---- the connection's protocol until an upgrade (conn_proto_t) ---- */

/* An upgrade inside the bytes just parsed handed the connection on: what came
 * after the upgrade request is the new protocol's. */
static void hand_over(conn_t *c)
{
    if (c->proto != &http1_proto && c->pending.len && c->state == CONN_OPEN)
        c->proto->pending(c);
}

static void http1_input(conn_t *c, const char *data, size_t n)
{
    if (c->http.req.responding || c->pending.len || conn_out_full(c)) {
        /* Pipelined behind a running response, or behind output the client
         * has not read: kept until that is done. */
        conn_hold_input(c, data, n, pending_limit(c));
        if (c->state == CONN_OPEN && conn_out_full(c))
            wait_for_output(c);
        return;
    }
    http_feed(c, data, n, false);
    hand_over(c);
}

static void http1_pending(conn_t *c)
{
    if (c->http.req.responding)
        return;   /* the output went down under a stream: its requests wait for its end */
    http_feed(c, c->pending.data, c->pending.len, true);
    hand_over(c);
}

static bool http1_busy(const conn_t *c) { return c->run != NULL; }

const conn_proto_t http1_proto = {
    .input = http1_input,
    .pending = http1_pending,
    .sent = sse_conn_sent,
    .busy = http1_busy,
    .abort = sse_conn_abort,
};
