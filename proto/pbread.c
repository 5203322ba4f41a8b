/* pbread: length-prefixed frames out of a byte stream.
 *
 * Invariants: hdr_n counts the length bytes of the current frame (0..4); once it
 * is 4, `need` is that frame's length and `partial` holds the body bytes seen so
 * far (always fewer than need). A frame that lies whole in one input piece is
 * passed to the callback in place, without a copy; only frames split across
 * pieces are assembled in `partial`, whose capacity is kept across frames. */
#include "proto/pbread.h"

#include <errno.h>
#include <string.h>

void pbread_init(pbread_t *p, size_t max_frame)
{
    memset(p, 0, sizeof *p);
    p->max_frame = max_frame;
}

void pbread_reset(pbread_t *p)
{
    buf_reset(&p->partial);
    p->hdr_n = 0;
    p->need = 0;
}

void pbread_free(pbread_t *p)
{
    buf_free(&p->partial);
    p->hdr_n = 0;
}

bool pbread_mid_frame(const pbread_t *p) { return p->hdr_n > 0; }

int pbread_feed(pbread_t *p, const char *bytes, size_t len, pbread_frame_cb cb, void *ctx)
{
    const uint8_t *s = (const uint8_t *)bytes, *end = s + len;
    while (s < end) {
        if (p->hdr_n < 4) {
            p->hdr[p->hdr_n++] = *s++;
            if (p->hdr_n < 4)
                continue;
            p->need = (uint32_t)p->hdr[0] << 24 | (uint32_t)p->hdr[1] << 16 | (uint32_t)p->hdr[2] << 8 | p->hdr[3];
            if (p->max_frame && p->need > p->max_frame)
                return -EMSGSIZE;
            buf_reset(&p->partial);
        }
        size_t have = p->partial.len, avail = (size_t)(end - s), want = p->need - have;
        const uint8_t *msg;
        if (have == 0 && avail >= want) {
            msg = s;   /* whole in this piece: no copy */
        } else {
            size_t take = avail < want ? avail : want;
            if (buf_append(&p->partial, s, take))
                return -ENOMEM;
            s += take;
            if (p->partial.len < p->need)
                return 0;
            msg = (const uint8_t *)p->partial.data;
            want = 0;
        }
        s += want;
        p->hdr_n = 0;
        int rc = cb(ctx, msg, p->need);
        buf_reset(&p->partial);
        if (rc)
            return rc;
    }
    return 0;
}
