/* pbread: an incremental reader for AG-UI's binary stream (content type
 * application/vnd.ag-ui.event+proto): a sequence of frames, each a 4-byte
 * big-endian length and that many bytes of one packed ag_ui.Event.
 *
 * Bytes arrive in arbitrary pieces (split anywhere, including inside the
 * length); each complete frame is handed to a callback, straight from the
 * input when it lies whole in one piece, else from the reader's buffer. */
#ifndef AGATE_PBREAD_H
#define AGATE_PBREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* Returns 0 to go on; anything else stops pbread_feed, which returns it. The
 * bytes are valid only during the call. */
typedef int (*pbread_frame_cb)(void *ctx, const uint8_t *msg, size_t len);

typedef struct pbread {
    buf_t    partial;      /* the current frame's bytes so far (owned) */
    uint8_t  hdr[4];
    uint8_t  hdr_n;        /* length bytes read of the current frame */
    uint32_t need;         /* the current frame's length, once hdr_n == 4 */
    size_t   max_frame;
} pbread_t;

/* max_frame bounds one frame's length (0: no bound beyond 4 GiB). */
void pbread_init(pbread_t *p, size_t max_frame);
/* 0; -EMSGSIZE when a frame announces more than max_frame; -ENOMEM; or the
 * callback's non-zero value. On a non-zero return the rest is not read: the
 * stream is meant to end there (pbread_reset before another stream). */
int  pbread_feed(pbread_t *p, const char *bytes, size_t len, pbread_frame_cb cb, void *ctx);
/* True when the stream stopped inside a frame (its end would lose bytes). */
bool pbread_mid_frame(const pbread_t *p);
void pbread_reset(pbread_t *p);
void pbread_free(pbread_t *p);

#endif
