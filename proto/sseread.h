/* sseread: an incremental parser for Server-Sent Events read from an upstream
 * agent, per the WHATWG HTML "event stream" rules.
 *
 * Bytes arrive in arbitrary pieces (a frame may be split at any byte, including
 * between CR and LF); each complete event is handed to a callback. Handles a
 * leading UTF-8 BOM, LF / CRLF / CR line ends, comments, multi-line data (joined
 * with LF), event / id / retry fields, and bounds the size of one event. */
#ifndef AGATE_SSEREAD_H
#define AGATE_SSEREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

typedef struct sseread_event {
    const char *data;   size_t data_len;    /* data lines joined by "\n" (no trailing LF) */
    const char *type;   size_t type_len;    /* the "event:" field; type_len 0 when absent */
    const char *id;     size_t id_len;      /* the last event ID (persists across events, per spec) */
    int64_t     retry_ms;                   /* from a "retry:" line in this event, -1 when none */
    bool        multiline;                  /* more than one data line: only then can data hold a LF */
    /* The event's whole frame in the input when it came as exactly
     * "data: <data>\n\n" (data_len + 8 bytes, data pointing into it), so a
     * relay to an SSE client can copy a run of such frames at once; NULL
     * otherwise (the frame was split, had other fields or other line ends). */
    const char *frame;  size_t frame_len;
} sseread_event_t;
/* The pointers are valid only during the callback (they may point into the bytes
 * passed to sseread_feed or into the parser's buffers); type and id are "" when
 * empty, never NULL. retry_ms: the spec sets the reconnection time as soon as a
 * valid retry line is read, even in a block that dispatches nothing; such a
 * value is reported with the next dispatched event. Values past INT64_MAX
 * saturate; an empty "retry:" is ignored. */

/* Returns 0 to go on; anything else stops sseread_feed, which returns it. */
typedef int (*sseread_event_cb)(void *ctx, const sseread_event_t *ev);
typedef int (*sseread_comment_cb)(void *ctx, const char *text, size_t len);   /* may be NULL */

typedef struct sseread {
    buf_t   line;          /* the current, incomplete line (owned) */
    buf_t   data;          /* the current event's data buffer (owned) */
    buf_t   type;          /* the current event's type (owned) */
    buf_t   id;            /* last event ID (owned) */
    int64_t retry_ms;
    size_t  max_event;     /* bound on one event's buffered bytes */
    uint8_t bom_state;     /* how many BOM bytes matched at stream start; 3 = done */
    bool    after_cr;      /* last byte was CR: a following LF is part of that line end */
    bool    has_data;      /* a data: field was seen in this event */
    bool    multiline;     /* ... and more than one */
} sseread_t;

/* max_event bounds the current line + data buffer + type of one event, counted
 * the same whatever the split of the stream into feeds; 0 means no bound. */
void sseread_init(sseread_t *p, size_t max_event);
/* 0; -EMSGSIZE when one event exceeds max_event; or the callback's non-zero value.
 * (-ENOMEM, if a buffer cannot grow.) On any non-zero return the rest of `bytes`
 * is not read and the event being built is dropped: the stream is meant to end
 * there (sseread_reset before reusing the parser for another stream). */
int  sseread_feed(sseread_t *p, const char *bytes, size_t len, sseread_event_cb on_event,
                  sseread_comment_cb on_comment, void *ctx);
/* The stream ended: reads its unterminated last line and dispatches the event
 * it was building, as @ag-ui/client 1.0.0 does with what follows the last
 * blank line (WHATWG discards that event; an AG-UI client does not, so neither
 * does a relay in front of one). Returns as sseread_feed; the parser is then
 * as after a failed feed (sseread_reset before reuse). */
int  sseread_end(sseread_t *p, sseread_event_cb on_event, sseread_comment_cb on_comment, void *ctx);
void sseread_reset(sseread_t *p);   /* a new stream: BOM state, id and buffers cleared */
void sseread_free(sseread_t *p);

#endif
