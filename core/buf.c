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

/* Digits counted first, then written from the last, two per division: no
 * copy of a variable length (a libc call) and half the divisions of a digit
 * loop. It formats every number of a request line, a Content-Length and the
 * RateLimit headers: a 7-digit number in ~50 instructions, ~100 with the digit
 * loop and copy (callgrind, 10^8 calls). */
static const char dec_pairs[201] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                   "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                   "8081828384858687888990919293949596979899";

static const uint64_t pow10_u64[20] = {
    1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u, 1000000000u,
    10000000000u, 100000000000u, 1000000000000u, 10000000000000u, 100000000000000u,
    1000000000000000u, 10000000000000000u, 100000000000000000u, 1000000000000000000u,
    10000000000000000000u,
};

size_t buf_fmt_u64(char out[20], uint64_t v)
{
    /* Digits from the bit length: log10(2) ~ 1233/4096 gives the count or one
     * less, and one compare settles it. */
    unsigned t = (unsigned)(64 - __builtin_clzll(v | 1)) * 1233 >> 12;
    size_t n = t + (v >= pow10_u64[t]);
    n += !n;
    char *w = out + n;
    while (v >= 100) {
        uint64_t q = v / 100;
        w -= 2;
        memcpy(w, dec_pairs + 2 * (v - 100 * q), 2);
        v = q;
    }
    if (v >= 10)
        memcpy(w - 2, dec_pairs + 2 * v, 2);
    else
        w[-1] = (char)('0' + v);
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
