/* http1: HTTP/1.1 requests parsed with llhttp, and responses written into a
 * connection's output buffer.
 *
 * Request bytes that must outlive a receive buffer (URL, header names and
 * values) are copied once into http_req_t.raw; headers are (offset, length)
 * slices into it. The body is copied into http_req_t.body up to the limit.
 * Responses are written in request order: the parser pauses after each complete
 * request and resumes only when that request's response is fully queued. */
#ifndef AGATE_HTTP1_H
#define AGATE_HTTP1_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/shard.h"
#include "core/trace.h"
#include "net/gwmetrics.h"

#define HTTP_MAX_HEADERS 64
#define HTTP_REQ_ID_MAX  128

struct conn;

typedef struct http_slice { uint32_t off, len; } http_slice_t;
typedef struct http_hdr { http_slice_t name, value; } http_hdr_t;

typedef struct http_req {
    buf_t        raw;                 /* URL and header bytes, owned */
    http_slice_t url, path;           /* path: the target's, without the query (absolute-form too) */
    http_slice_t host;                /* absolute-form target's authority, else the Host header */
    http_hdr_t  *hdrs;                /* owned; grows with the request, up to HTTP_MAX_HEADERS */
    uint32_t     n_hdrs, cap_hdrs;
    uint32_t     header_bytes;
    buf_t        body;                /* owned */
    uint8_t      method;              /* llhttp_method_t */
    uint8_t      major, minor;
    uint8_t      route;               /* enum metrics_route, set by the router */
    bool         keep_alive, head, expect_continue, chunked_resp;
    bool         responding;          /* dispatched, response not yet complete */
    bool         in_message;          /* first byte seen, message not complete */
    bool         last_was_value;
    bool         head_done;           /* request line and headers parsed */
    int          status;              /* response status, for the log */
    const char  *err_code;            /* set by a callback that stops the parser */
    int          err_status;
    const char  *err_msg;
    const char  *err_extra;           /* header lines for that answer ("Name: value\r\n"), or NULL */
    uint64_t     start_us;            /* monotonic, first byte of the request */
    uint64_t     last_event_us;       /* last AG-UI event written, for gap metrics */
    uint64_t     bytes_out;           /* response bytes queued */
    uint32_t     events;              /* AG-UI events written */
    uint32_t     gap_zero;            /* events in the same loop turn as the one before: gap 0,
                                         added to the gap histogram when the response ends */
    const char  *cache;               /* a cached agent's run: HIT, MISS or COALESCED, for the log */
    trace_ctx_t  trace;               /* W3C trace context: caller's trace, our span */
    bool         traced;              /* trace set up (headers parsed, or an early error) */
    char         id[HTTP_REQ_ID_MAX + 1];
    uint8_t      id_len;
} http_req_t;

typedef struct http_conn {
    llhttp_t   parser;
    http_req_t req;
} http_conn_t;

void http_conn_init(struct conn *c);

/* Whether a log line of this status and level is written (log.level, then
 * log.sample for successes; errors are always kept). */
bool http_log_wanted(shard_t *sh, int status, cfg_log_level_t level);
void http_conn_free(http_conn_t *h);
/* Gives back what the request state holds between requests (head bytes, body,
 * header table); the next request grows it again. */
void http_req_trim(http_req_t *r);

/* Feeds received bytes; dispatches each complete request. `from_pending` says
 * the bytes are the connection's own pending buffer. */
void http_feed(struct conn *c, const char *data, size_t len, bool from_pending);
/* A connection's protocol from its accept (net/conn.h): requests parsed here,
 * a streaming run's backpressure and abort handed to net/sse.c. */
extern const struct conn_proto http1_proto;

/* Request accessors. */
static inline const char *http_str(const http_req_t *r, http_slice_t s)
{
    return r->raw.data ? r->raw.data + s.off : "";   /* no request line yet: an empty slice */
}
bool http_header(const http_req_t *r, const char *name, const char **val, size_t *len);
/* How many field lines carry this name: fields whose second copy would be
 * ambiguous (Host, credentials) are refused when it is not 0 or 1. */
uint32_t http_header_count(const http_req_t *r, const char *name);
/* The next element of a comma-separated field value (RFC 9110 5.6.1), from
 * *pos on, without its surrounding spaces; empty elements are skipped. False
 * at the end. */
bool http_list_next(const char *v, size_t n, size_t *pos, const char **el, size_t *len);

/* Responses. extra_headers is zero or more complete "Name: value\r\n" lines. */
void http_respond(struct conn *c, int status, const char *ctype, const char *body, size_t len,
                  const char *extra_headers);
void http_error(struct conn *c, int status, const char *code, const char *msg, const char *extra_headers);
void http_error_field(struct conn *c, int status, const char *code, const char *msg, const char *field);
/* Starts a streamed response (chunked on HTTP/1.1, close-delimited on 1.0). */
void http_stream_begin(struct conn *c, int status, const char *ctype, const char *extra_headers);
void http_stream_end(struct conn *c);
/* 101 Switching Protocols with extra's headers (Upgrade, Connection, ...). The
 * request stays "responding" until the connection ends, so its log line and
 * span cover the whole upgraded session. */
void http_upgrade(struct conn *c, const char *extra);
/* Called when the current response is fully queued: logs it, then keep-alive or close. */
void http_response_done(struct conn *c);

const char *http_status_text(int status);

#endif
