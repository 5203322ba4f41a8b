/* buf: growable byte buffers. Growth doubles (min 256 bytes) so a stream of small
 * appends costs amortised O(1) and, after the first few events, no allocation. */
#include "core/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int buf_grow(buf_t *b, size_t need)
{
    size_t want = b->len + need;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

void buf_free(buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

size_t buf_fmt_u64(char out[20], uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(out, tmp + sizeof tmp - n, n);
    return n;
}

int buf_append_u64(buf_t *b, uint64_t v)
{
    char tmp[20];
    return buf_append(b, tmp, buf_fmt_u64(tmp, v));
}

void *buf_array_grow(void *v, uint32_t *cap, size_t elem, uint32_t first)
{
    if (*cap > UINT32_MAX / 2)
        return NULL;
    uint32_t n = *cap ? *cap * 2 : first;
    void *nv = realloc(v, (size_t)n * elem);
    if (nv)
        *cap = n;
    return nv;
}
