/* trace: W3C Trace Context (traceparent / tracestate) for one request.
 *
 * agate takes part in a trace as a server span: it adopts the caller's trace id
 * and uses the caller's span id as its parent, or starts a new trace when the
 * header is absent or invalid. Its own span id is fresh per request; upstream
 * calls get a fresh span id each (trace_child). */
#ifndef AGATE_TRACE_H
#define AGATE_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/rand.h"

#define TRACEPARENT_LEN 55          /* "00-" 32 "-" 16 "-" 2 */
#define TRACESTATE_MAX  512

typedef struct trace_ctx {
    uint8_t trace_id[16];
    uint8_t span_id[8];             /* this request's span */
    uint8_t parent_id[8];           /* the caller's span; all zero when none */
    uint8_t flags;                  /* trace-flags; bit 0 = sampled */
    bool    has_parent;             /* a valid traceparent came in */
} trace_ctx_t;

/* Parses a traceparent header value per W3C Trace Context level 1: version 00
 * exactly 55 chars; a higher version (not ff) is parsed by its first 55 chars,
 * which must be followed by '-' when longer; lowercase hex only; trace-id and
 * parent-id not all zero. 0 or -EINVAL. */
int  trace_parse(const char *v, size_t n, uint8_t trace_id[16], uint8_t parent_id[8], uint8_t *flags);

/* Sets up a request's context: adopts a valid traceparent (v may be NULL),
 * else a new random trace id with flags 01 (sampled). Always a fresh span id. */
void trace_begin(trace_ctx_t *t, rand_state_t *rng, const char *v, size_t n);

/* Writes "00-<trace>-<span>-<flags>" (55 chars, no terminator). */
void trace_format(const trace_ctx_t *t, char out[TRACEPARENT_LEN]);
/* A traceparent for a child call (an upstream attempt): same trace, new span id
 * written to child_span. */
void trace_child(const trace_ctx_t *t, rand_state_t *rng, uint8_t child_span[8], char out[TRACEPARENT_LEN]);

/* tracestate is passed through when it is a plausible list: at most 512 bytes,
 * printable ASCII, no more than 32 comma-separated members. */
bool trace_state_valid(const char *v, size_t n);


#endif
