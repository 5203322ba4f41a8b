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

/* Every byte's two hex digits, "000102...ff": one 2-byte copy per byte instead
 * of two nibble lookups. It formats the traceparent header, the request id and
 * the log line's ids of every request, and the message ids an echo run or a
 * cache hit mints (12 instructions per byte before, callgrind). */
#define HEX_ROW(h) h "0" h "1" h "2" h "3" h "4" h "5" h "6" h "7" \
                   h "8" h "9" h "a" h "b" h "c" h "d" h "e" h "f"
static const char hex_pairs[513] = HEX_ROW("0") HEX_ROW("1") HEX_ROW("2") HEX_ROW("3")
                                   HEX_ROW("4") HEX_ROW("5") HEX_ROW("6") HEX_ROW("7")
                                   HEX_ROW("8") HEX_ROW("9") HEX_ROW("a") HEX_ROW("b")
                                   HEX_ROW("c") HEX_ROW("d") HEX_ROW("e") HEX_ROW("f");

void buf_fmt_hex(char *out, const void *bytes, size_t n)
{
    const uint8_t *b = bytes;
    for (size_t i = 0; i < n; i++)
        memcpy(out + 2 * i, hex_pairs + 2 * b[i], 2);
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
