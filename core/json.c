/* json: the JSON string escaper on the per-event hot path.
 *
 * Owns nothing but two tables. Invariants: the output of json_put_str() is a
 * complete quoted JSON string, exactly json_str_len() bytes long; bytes that need
 * no escaping (everything except '"', '\\' and < 0x20) are copied in runs with one
 * memcpy, and space is reserved once per call, never per byte. Input is assumed
 * to be valid UTF-8 and is not checked: bytes >= 0x80 pass through. */
#include "core/json.h"

#include <errno.h>
#include <stdint.h>

/* Extra output bytes per input byte: 0 = copy, 1 = two-byte escape, 5 = \u00XX. */
static const uint8_t json_extra[256] = {
    5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5,   /* \b \t \n \f \r named */
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,   /* '"' */
    [0x5c] = 1,                                        /* '\\' */
};

/* Second byte of the two-byte escapes, indexed by the input byte. */
static const char json_short[256] = {
    ['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n', ['\f'] = 'f', ['\r'] = 'r',
    ['"'] = '"', ['\\'] = '\\',
};

#define JSON_ONES  0x0101010101010101ULL
#define JSON_HIGHS 0x8080808080808080ULL

/* Non-zero when some byte of w is < 0x20, '"' or '\\'. Exact as a yes/no answer
 * (the classic haszero/hasless bit tricks), which is all the caller needs: it
 * then finds the byte with the table. Eight bytes per step is what keeps long
 * model output (mostly plain text) at memcpy speed. */
static inline uint64_t json_word_needs_escape(uint64_t w)
{
    uint64_t lt  = (w - JSON_ONES * 0x20) & ~w;
    uint64_t q   = w ^ (JSON_ONES * '"');
    uint64_t bs  = w ^ (JSON_ONES * '\\');
    uint64_t zq  = (q - JSON_ONES) & ~q;
    uint64_t zbs = (bs - JSON_ONES) & ~bs;
    return (lt | zq | zbs) & JSON_HIGHS;
}

/* Index of the first byte at or after i that needs escaping, or n. */
static inline size_t json_scan(const unsigned char *s, size_t i, size_t n)
{
    while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, s + i, 8);              /* unaligned-safe load */
        if (json_word_needs_escape(w))
            break;
        i += 8;
    }
    while (i < n && !json_extra[s[i]])
        i++;
    return i;
}

size_t json_str_len(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = n + 2;
    for (size_t i = json_scan(p, 0, n); i < n; i = json_scan(p, i + 1, n))
        len += json_extra[p[i]];
    return len;
}

int json_put_str(buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;

    /* Short strings (nearly every token delta) reserve the 6x worst case and skip
     * the sizing pass; long ones are measured first so a 1 MiB tool result does
     * not reserve 6 MiB. */
    size_t need;
    if (n <= 4096)
        need = 6 * n + 2;
    else {
        need = json_str_len(s, n);
        if (need < n)                      /* wrapped: cannot be allocated anyway */
            return -ENOMEM;
    }
    if (buf_reserve(b, need))
        return -ENOMEM;

    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    while (i < n) {
        size_t j = json_scan(p, i, n);
        memcpy(o, p + i, j - i);
        o += j - i;
        if (j == n)
            break;
        unsigned char c = p[j];
        *o++ = '\\';
        if (json_short[c]) {
            *o++ = json_short[c];
        } else {
            o[0] = 'u'; o[1] = '0'; o[2] = '0';
            o[3] = hex[c >> 4]; o[4] = hex[c & 15];
            o += 5;
        }
        i = j + 1;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}
