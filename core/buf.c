/* buf: growable byte buffers. Growth doubles (min 256 bytes) so a stream of small
 * appends costs amortised O(1) and, after the first few events, no allocation. */
#include "core/buf.h"

#include <errno.h>
#include <stdlib.h>

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

int buf_append_u64(buf_t *b, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return buf_append(b, tmp + sizeof tmp - n, (size_t)n);
}
