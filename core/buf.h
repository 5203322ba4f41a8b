/* buf: a growable byte buffer, the unit of output in agate.
 *
 * A buf_t owns its `data` (jemalloc in release builds). Appends never shrink it;
 * buf_reset() keeps the capacity so a connection reuses one allocation for a whole
 * stream. Functions that can fail return 0 or -ENOMEM. */
#ifndef AGATE_BUF_H
#define AGATE_BUF_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct buf {
    char  *data;
    size_t len;
    size_t cap;
} buf_t;

int  buf_grow(buf_t *b, size_t need);      /* ensure cap >= len + need */
void buf_free(buf_t *b);

/* For arrays that grow by doubling (header tables, key sets, tape nodes):
 * reallocates v to twice *cap elements of elem bytes, or to `first` when *cap is
 * 0, and updates *cap. The new array, or NULL with v and *cap unchanged when
 * memory runs out or the count would pass UINT32_MAX. */
void *buf_array_grow(void *v, uint32_t *cap, size_t elem, uint32_t first);

static inline void buf_reset(buf_t *b) { b->len = 0; }

static inline int buf_reserve(buf_t *b, size_t need)
{
    if (b->cap - b->len >= need)
        return 0;
    return buf_grow(b, need);
}

static inline int buf_append(buf_t *b, const void *p, size_t n)
{
    if (!n)
        return 0;
    if (buf_reserve(b, n))
        return -ENOMEM;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

#define buf_append_lit(b, s) buf_append((b), (s), sizeof(s) - 1)

static inline int buf_putc(buf_t *b, char c)
{
    if (buf_reserve(b, 1))
        return -ENOMEM;
    b->data[b->len++] = c;
    return 0;
}

int buf_append_u64(buf_t *b, uint64_t v);   /* decimal */
size_t buf_fmt_u64(char out[20], uint64_t v);   /* decimal digits into out (no NUL); their count */
void buf_fmt_hex(char *out, const void *bytes, size_t n);   /* 2n lowercase hex digits (no NUL) */

#endif
