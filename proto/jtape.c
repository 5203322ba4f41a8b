/* jtape: single-pass JSON onto a reusable tape (see jtape.h).
 *
 * Why not a library. The validators need what jansson accepts, checked in one
 * pass and with no allocation per value. Debian 12 has no yyjson; simdjson is
 * C++; yajl (libyajl-dev) is a SAX parser, but it allocates a handle per
 * document (no reset in 2.1) and its callbacks still leave the key matching and
 * the schema to us. bench/validate_bench.c measures on the same 44-event run:
 * yajl with no-op callbacks costs more than this whole validator (see the
 * numbers there), jansson's json_loadb + json_decref about 10x more.
 *
 * Shape. One loop with gotos instead of a recursive descent: the position, the
 * node array and its length stay in registers, and the open containers are
 * chained through the tape itself (an open container's `next` holds its
 * parent's index until it closes), so nesting needs no stack of its own.
 *
 * Invariants. Strings are scanned 16 bytes at a time for '"', '\\', control
 * bytes and non-ASCII (one signed compare finds both); within 16 bytes of the
 * end the last 16 bytes of the input are loaded instead and the bytes before
 * the position shifted out, so short strings at the end never fall back to a
 * byte loop. Non-ASCII is checked as strict UTF-8, as jansson does (no
 * overlongs, surrogates or > U+10FFFF). \u0000 is read in keys too, as
 * JSON.parse reads it (jansson refuses it there). Escapes are checked when scanned and
 * decoded only when a string is read; a decoded string goes to the scratch
 * area at its own input offset (decoding never lengthens), so strings never
 * overlap and decoding never moves earlier results. Numbers are checked for
 * the one thing beyond syntax jansson refuses, a real that overflows a double
 * (integers past int64 are re-read as reals, as the callers' retry does). */
#include "proto/jtape.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define JT_LIKELY(x)   __builtin_expect(!!(x), 1)
#define JT_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define JT_ROOT        UINT32_MAX   /* the parent "index" of the root container */

static inline const unsigned char *jt_ws(const unsigned char *s, const unsigned char *end)
{
    /* Compact JSON has no whitespace: one compare decides the common case. */
    while (s < end && *s <= ' ' && (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t'))
        s++;
    return s;
}

static int jt_hex4(const unsigned char *s, const unsigned char *end, uint32_t *out)
{
    if (end - s < 4)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            v |= (c | 0x20) - 'a' + 10;
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (first byte >= 0x80), 0 if invalid. */
static size_t jt_utf8(const unsigned char *s, const unsigned char *end)
{
    unsigned c = s[0];
    size_t n;
    uint32_t v;
    if (c < 0xC2)
        return 0;
    else if (c < 0xE0) { n = 2; v = c & 0x1F; }
    else if (c < 0xF0) { n = 3; v = c & 0x0F; }
    else if (c < 0xF5) { n = 4; v = c & 0x07; }
    else
        return 0;
    if ((size_t)(end - s) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10FFFF ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    return n;
}

/* One byte inside a string the fast scan stopped at that is not the closing
 * quote: an escape, a non-ASCII sequence or a control byte. Returns where the
 * scan resumes, or NULL when the string is invalid. Out of line: rare. */
static __attribute__((noinline)) const unsigned char *
jt_str_special(const unsigned char *s, const unsigned char *end, uint8_t *flags)
{
    unsigned c = *s;
    if (c >= 0x80) {
        size_t n;
        /* a run of valid sequences: non-ASCII text tends to come in runs */
        while (s < end && *s >= 0x80 && (n = jt_utf8(s, end)))
            s += n;
        return s < end && *s >= 0x80 ? NULL : s;
    }
    if (c != '\\')
        return NULL;   /* a control byte */
    *flags |= JT_F_ESC;
    if (end - s < 2)
        return NULL;
    switch (s[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        return s + 2;
    case 'u':
        break;
    default:
        return NULL;
    }
    uint32_t v, v2;
    if (jt_hex4(s + 2, end, &v))
        return NULL;
    s += 6;
    if (v >= 0xDC00 && v <= 0xDFFF)
        return NULL;
    if (v >= 0xD800 && v <= 0xDBFF) {
        if (end - s < 6 || s[0] != '\\' || s[1] != 'u' || jt_hex4(s + 2, end, &v2) ||
            v2 < 0xDC00 || v2 > 0xDFFF)
            return NULL;
        return s + 6;
    }
    return s;   /* \u0000 too, in a key as in a value: JSON.parse reads both */
}

#ifdef __SSE2__
/* Bits for the bytes of x that end a plain run: '"', '\\', < 0x20, >= 0x80. */
static inline unsigned jt_special16(__m128i x)
{
    const __m128i q = _mm_set1_epi8('"'), b = _mm_set1_epi8('\\'), sp = _mm_set1_epi8(0x20);
    /* signed: bytes >= 0x80 are negative, so one compare finds them and controls
     * (written as sp > x: gcc turns x < sp into two instructions) */
    __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, q), _mm_cmpeq_epi8(x, b)),
                             _mm_cmpgt_epi8(sp, x));
    return (unsigned)_mm_movemask_epi8(m);
}
#endif

/* The first byte at or after s (inside a string) that is not plain printable
 * ASCII, or end. base is the start of the input, for the overlapping load. */
static inline const unsigned char *jt_plain(const unsigned char *s, const unsigned char *end,
                                            const unsigned char *base)
{
#ifdef __SSE2__
    while (end - s >= 16) {
        unsigned mask = jt_special16(_mm_loadu_si128((const __m128i *)(const void *)s));
        if (mask)
            return s + __builtin_ctz(mask);
        s += 16;
    }
    if (end - base >= 16) {
        /* the input's last 16 bytes, without those before s */
        unsigned mask = jt_special16(_mm_loadu_si128((const __m128i *)(const void *)(end - 16)));
        mask >>= 16 - (end - s);
        return mask ? s + __builtin_ctz(mask) : end;
    }
#else
    (void)base;
#endif
    while (s < end && *s >= 0x20 && *s < 0x80 && *s != '"' && *s != '\\')
        s++;
    return s;
}

/* s: just after an opening quote. Returns the closing quote, or NULL. */
static inline const unsigned char *jt_string(const unsigned char *s, const unsigned char *end,
                                             const unsigned char *base, uint8_t *flags)
{
    for (;;) {
        s = jt_plain(s, end, base);
        if (JT_UNLIKELY(s >= end))
            return NULL;
        if (JT_LIKELY(*s == '"'))
            return s;
        if (!(s = jt_str_special(s, end, flags)))
            return NULL;
    }
}

/* A real jansson would read: refused only when strtod overflows. */
static int jt_real_ok(const unsigned char *s, size_t n)
{
    char tmp[128], *buf = tmp;
    if (n >= sizeof tmp && !(buf = malloc(n + 1)))
        return -ENOMEM;
    memcpy(buf, s, n);
    buf[n] = '\0';
    double d = strtod(buf, NULL);
    if (buf != tmp)
        free(buf);
    return isinf(d) ? -EINVAL : 0;
}

/* A number at s: its end in *out and JT_F_INT or 0 in *flags; -EINVAL, -ENOMEM.
 * Out of line: it would take registers from the loop that strings need. */
static __attribute__((noinline)) int jt_number(const unsigned char *s, const unsigned char *end,
                     const unsigned char **out, uint8_t *flags)
{
    const unsigned char *start = s;
    if (s < end && *s == '-')
        s++;
    const unsigned char *digits = s;
    if (s < end && *s == '0')
        s++;
    else if (s < end && *s >= '1' && *s <= '9')
        while (s < end && *s >= '0' && *s <= '9')
            s++;
    else
        return -EINVAL;
    size_t int_digits = (size_t)(s - digits);
    bool is_int = true, exp = false;
    if (s < end && *s == '.') {
        is_int = false;
        s++;
        if (s >= end || *s < '0' || *s > '9')
            return -EINVAL;
        while (s < end && *s >= '0' && *s <= '9')
            s++;
    }
    if (s < end && (*s == 'e' || *s == 'E')) {
        is_int = false;
        exp = true;
        s++;
        if (s < end && (*s == '+' || *s == '-'))
            s++;
        if (s >= end || *s < '0' || *s > '9')
            return -EINVAL;
        while (s < end && *s >= '0' && *s <= '9')
            s++;
    }
    /* At most 300 integer digits and no exponent cannot overflow a double. */
    if (exp || int_digits > 300) {
        int rc = jt_real_ok(start, (size_t)(s - start));
        if (rc)
            return rc;
    }
    *out = s;
    *flags = is_int && int_digits <= 18 ? JT_F_INT : 0;
    return 0;
}

/* true, false, null: the literal is all of lit, and lit[0] is already known. */
static inline bool jt_lit(const unsigned char *s, const unsigned char *end, const char *lit,
                          size_t n)
{
    return (size_t)(end - s) >= n && !memcmp(s, lit, n);
}

static __attribute__((noinline)) int jt_grow(jtape_t *t)
{
    jtape_node_t *nn = buf_array_grow(t->nodes, &t->cap, sizeof *nn, 64);
    if (!nn)
        return -ENOMEM;
    t->nodes = nn;
    return 0;
}

static int jt_check_dups(jtape_t *t, uint32_t o);

/* A string node for the bytes between first and the closing quote q. */
static inline void jt_str_node(jtape_node_t *nd, uint32_t next, const unsigned char *base,
                               const unsigned char *first, const unsigned char *q, uint8_t fl)
{
    nd->kind = JT_STR;
    nd->flags = fl;
    nd->off = (uint32_t)(first - base);
    nd->len = (uint32_t)(q - first);
    nd->next = next;
}

/* Moves *sp past whitespace and returns the byte there, 0 at the end. 0 is
 * never a byte the grammar wants, so it fails wherever it is read. */
static inline unsigned jt_next(const unsigned char **sp, const unsigned char *end)
{
    const unsigned char *s = *sp;
    if (JT_UNLIKELY(s >= end))
        return 0;
    if (JT_LIKELY(*s > ' '))
        return *s;
    *sp = s = jt_ws(s, end);
    return s < end ? *s : 0;
}

int jtape_parse(jtape_t *t, const char *src, size_t len, unsigned max_depth, unsigned flags)
{
    t->src = src;
    t->src_len = len;
    t->gen++;
    t->n = 0;
    if (len > UINT32_MAX - 1)   /* so offsets and lengths fit the nodes */
        return -EINVAL;
    if (t->scratch_cap < len) {
        size_t cap = len < 1024 ? 1024 : len;
        char *sc = realloc(t->scratch, cap);
        if (!sc)
            return -ENOMEM;
        t->scratch = sc;
        t->scratch_cap = cap;
    }
    const unsigned char *base = (const unsigned char *)src, *s = base, *end = base + len;
    jtape_node_t *nodes = t->nodes, *nd;
    uint32_t n = 0, cur = JT_ROOT;   /* cur: the innermost open container */
    unsigned depth = 0, c = jt_next(&s, end);      /* c: the byte at s, 0 at the end */
    uint8_t fl;
    int rc;

value:   /* a value starts at s */
    if (JT_UNLIKELY(n == t->cap)) {
        if ((rc = jt_grow(t)))
            goto fail;
        nodes = t->nodes;
    }
    nd = &nodes[n];
    nd->off = (uint32_t)(s - base);
    nd->next = n + 1;
    switch (c) {
    case '"': {
        fl = 0;
        const unsigned char *q = jt_string(s + 1, end, base, &fl);
        if (!q)
            goto bad;
        jt_str_node(nd, n + 1, base, s + 1, q, fl);
        s = q + 1;
        break;
    }
    case '{': case '[':
        if (depth >= max_depth)
            goto bad;
        nd->kind = c == '{' ? JT_OBJ : JT_ARR;
        nd->flags = 0;
        nd->aux = 0;
        nd->next = cur;   /* the parent, until this one closes */
        cur = n++;
        depth++;
        s++;
        c = jt_next(&s, end);
        if (c == (nd->kind == JT_OBJ ? '}' : ']')) {
            s++;
            goto close;
        }
        if (nd->kind == JT_OBJ)
            goto key;
        goto value;
    case 't':
        if (!jt_lit(s, end, "true", 4))
            goto bad;
        nd->kind = JT_TRUE, nd->flags = 0, nd->len = 4;
        s += 4;
        break;
    case 'f':
        if (!jt_lit(s, end, "false", 5))
            goto bad;
        nd->kind = JT_FALSE, nd->flags = 0, nd->len = 5;
        s += 5;
        break;
    case 'n':
        if (!jt_lit(s, end, "null", 4))
            goto bad;
        nd->kind = JT_NULL, nd->flags = 0, nd->len = 4;
        s += 4;
        break;
    default: {
        const unsigned char *e;
        if (!c)
            goto bad;
        if ((rc = jt_number(s, end, &e, &fl)))
            goto fail;
        nd->kind = JT_NUM;
        nd->flags = fl;
        nd->len = (uint32_t)(e - s);
        s = e;
        break;
    }
    }
    n++;

after:   /* a value ended just before s */
    if (cur == JT_ROOT)
        goto done;
    nodes[cur].aux++;
    c = jt_next(&s, end);
    if (c == ',') {
        s++;
        c = jt_next(&s, end);
        if (nodes[cur].kind == JT_OBJ)
            goto key;
        goto value;
    }
    if (c != (nodes[cur].kind == JT_OBJ ? '}' : ']'))
        goto bad;
    s++;

close:   /* container cur ended just before s */
    nd = &nodes[cur];
    nd->len = (uint32_t)(s - base) - nd->off;
    depth--;
    {
        uint32_t parent = nd->next;
        nd->next = n;
        if (nd->kind == JT_OBJ && (flags & JTAPE_REJECT_DUPLICATES) && nd->aux > 1) {
            t->n = n;
            if ((rc = jt_check_dups(t, cur)))
                return rc;
        }
        cur = parent;
    }
    goto after;

key:   /* an object member's key starts at s */
    if (JT_UNLIKELY(c != '"'))
        goto bad;
    if (JT_UNLIKELY(t->cap - n < 2)) {   /* room for the key and a string value */
        if ((rc = jt_grow(t)))
            goto fail;
        nodes = t->nodes;
    }
    {
        fl = 0;
        const unsigned char *q = jt_string(s + 1, end, base, &fl);
        if (!q)
            goto bad;
        jt_str_node(&nodes[n], n + 1, base, s + 1, q, fl);
        n++;
        s = q + 1;
    }
    /* Compact JSON's "key":"string", the commonest member, without the
     * whitespace skips and the dispatch of value. */
    if (end - s >= 2 && s[0] == ':' && s[1] == '"') {
        fl = 0;
        const unsigned char *q = jt_string(s + 2, end, base, &fl);
        if (!q)
            goto bad;
        jt_str_node(&nodes[n], n + 1, base, s + 2, q, fl);
        n++;
        s = q + 1;
        goto after;
    }
    if (JT_UNLIKELY(jt_next(&s, end) != ':'))
        goto bad;
    s++;
    c = jt_next(&s, end);
    goto value;

done:
    t->n = n;
    return jt_ws(s, end) == end ? 0 : -EINVAL;
bad:
    rc = -EINVAL;
fail:
    t->n = n;
    return rc;
}

void jtape_free(jtape_t *t)
{
    free(t->nodes);
    free(t->scratch);
    free(t->dup);
    memset(t, 0, sizeof *t);
}

/* ---- reading ---------------------------------------------------------------- */

/* Decodes the escapes of string node i into the scratch area (once). */
static void jt_decode(jtape_t *t, uint32_t i)
{
    jtape_node_t *nd = &t->nodes[i];
    const unsigned char *s = (const unsigned char *)t->src + nd->off, *end = s + nd->len;
    char *out = t->scratch + nd->off, *o = out;
    while (s < end) {
        if (*s != '\\') {
            *o++ = (char)*s++;
            continue;
        }
        unsigned c = s[1];
        s += 2;
        switch (c) {
        case 'b': *o++ = '\b'; continue;
        case 'f': *o++ = '\f'; continue;
        case 'n': *o++ = '\n'; continue;
        case 'r': *o++ = '\r'; continue;
        case 't': *o++ = '\t'; continue;
        case 'u': break;
        default: *o++ = (char)c; continue;
        }
        uint32_t v = 0, v2 = 0xDC00;
        jt_hex4(s, end, &v);   /* checked when parsed */
        s += 4;
        if (v >= 0xD800 && v <= 0xDBFF) {
            jt_hex4(s + 2, end, &v2);
            s += 6;
            v = 0x10000 + ((v - 0xD800) << 10) + (v2 - 0xDC00);
        }
        /* UTF-8 is never longer than the escape it came from (6 or 12 bytes). */
        if (v < 0x80) {
            *o++ = (char)v;
        } else if (v < 0x800) {
            *o++ = (char)(0xC0 | v >> 6);
            *o++ = (char)(0x80 | (v & 0x3F));
        } else if (v < 0x10000) {
            *o++ = (char)(0xE0 | v >> 12);
            *o++ = (char)(0x80 | (v >> 6 & 0x3F));
            *o++ = (char)(0x80 | (v & 0x3F));
        } else {
            *o++ = (char)(0xF0 | v >> 18);
            *o++ = (char)(0x80 | (v >> 12 & 0x3F));
            *o++ = (char)(0x80 | (v >> 6 & 0x3F));
            *o++ = (char)(0x80 | (v & 0x3F));
        }
    }
    nd->aux = (uint32_t)(o - out);
    nd->flags |= JT_F_DEC;
}

const char *jtape_str_decoded(jtape_t *t, uint32_t i, size_t *len)
{
    jtape_node_t *nd = &t->nodes[i];
    if (!(nd->flags & JT_F_ESC)) {
        *len = nd->len;
        return t->src + nd->off;
    }
    if (!(nd->flags & JT_F_DEC))
        jt_decode(t, i);
    *len = nd->aux;
    return t->scratch + nd->off;
}

bool jtape_str_eq(jtape_t *t, uint32_t i, const char *lit, size_t n)
{
    if (t->nodes[i].kind != JT_STR)
        return false;
    size_t len;
    const char *s = jtape_str(t, i, &len);
    return len == n && jtape_bytes_eq(s, lit, n);
}

uint32_t jtape_get(jtape_t *t, uint32_t o, const char *key, size_t klen)
{
    uint32_t found = 0, end = t->nodes[o].next;
    for (uint32_t k = o + 1; k < end; k = t->nodes[k + 1].next) {
        const jtape_node_t *nd = &t->nodes[k];
        if (nd->flags & JT_F_ESC) {
            if (jtape_str_eq(t, k, key, klen))
                found = k + 1;
        } else if (nd->len == klen && jtape_bytes_eq(t->src + nd->off, key, klen)) {
            found = k + 1;
        }
    }
    return found;
}

void jtape_get_keys(jtape_t *t, uint32_t o, const jtape_key_t *keys, size_t n, uint32_t *out)
{
    memset(out, 0, n * sizeof *out);
    for (uint32_t k = o + 1, end = t->nodes[o].next; k < end; k = t->nodes[k + 1].next) {
        const jtape_node_t *nd = &t->nodes[k];
        for (size_t i = 0; i < n; i++)
            if ((nd->flags & JT_F_ESC) ? jtape_str_eq(t, k, keys[i].s, keys[i].len)
                                       : nd->len == keys[i].len && jtape_bytes_eq(t->src + nd->off, keys[i].s, keys[i].len)) {
                out[i] = k + 1;
                break;
            }
    }
}

bool jtape_safe_int(const jtape_t *t, uint32_t i, bool nonneg, int64_t *out)
{
    const jtape_node_t *nd = &t->nodes[i];
    if (nd->kind != JT_NUM)
        return false;
    const char *s = t->src + nd->off;
    const int64_t max = 9007199254740991;
    if (nd->flags & JT_F_INT) {
        bool neg = *s == '-';
        int64_t v = 0;
        for (uint32_t k = neg; k < nd->len; k++)
            v = v * 10 + (s[k] - '0');
        if (neg)
            v = -v;
        if (v > max || v < (nonneg ? 0 : -max))
            return false;
        *out = v;
        return true;
    }
    char tmp[128], *buf = tmp;
    if (nd->len >= sizeof tmp && !(buf = malloc(nd->len + 1u)))
        return false;   /* cold: numbers spelled with over 127 characters */
    memcpy(buf, s, nd->len);
    buf[nd->len] = '\0';
    double d = strtod(buf, NULL);
    if (buf != tmp)
        free(buf);
    double lo = nonneg ? 0.0 : -9007199254740991.0;
    if (!(d >= lo && d <= 9007199254740991.0 && d == (double)(int64_t)d))
        return false;
    *out = (int64_t)d;
    return true;
}

/* ---- duplicate keys (JTAPE_REJECT_DUPLICATES) ---------------------------------- */

static uint32_t jt_hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static __attribute__((noinline)) int jt_check_dups(jtape_t *t, uint32_t o)
{
    uint32_t count = t->nodes[o].aux, end = t->nodes[o].next;
    if (count <= 8) {
        for (uint32_t a = o + 1; a < end; a = t->nodes[a + 1].next) {
            size_t la;
            const char *ka = jtape_str(t, a, &la);
            for (uint32_t b = t->nodes[a + 1].next; b < end; b = t->nodes[b + 1].next)
                if (jtape_str_eq(t, b, ka, la))
                    return -EINVAL;
        }
        return 0;
    }
    size_t cap = 16;
    while (cap < (size_t)count * 2)
        cap *= 2;
    if (t->dup_cap < cap) {
        uint32_t *d = realloc(t->dup, cap * sizeof *d);
        if (!d)
            return -ENOMEM;
        t->dup = d;
        t->dup_cap = cap;
    }
    memset(t->dup, 0, cap * sizeof *t->dup);
    for (uint32_t k = o + 1; k < end; k = t->nodes[k + 1].next) {
        size_t n;
        const char *key = jtape_str(t, k, &n);
        for (size_t j = jt_hash(key, n) & (cap - 1);; j = (j + 1) & (cap - 1)) {
            if (!t->dup[j]) {
                t->dup[j] = k + 1;
                break;
            }
            if (jtape_str_eq(t, t->dup[j] - 1, key, n))
                return -EINVAL;
        }
    }
    return 0;
}

/* ---- the per-thread tape -------------------------------------------------------- */

static pthread_once_t jt_once = PTHREAD_ONCE_INIT;
static pthread_key_t  jt_key;
static bool           jt_key_ok;
__thread jtape_t *jtape_tls_;

static void jt_destroy(void *p)
{
    jtape_t *t = p;
    if (jtape_tls_ == t)
        jtape_tls_ = NULL;
    jtape_free(t);
    free(t);
}

static void jt_init(void)
{
    jt_key_ok = pthread_key_create(&jt_key, jt_destroy) == 0;
}

void jtape_init(void)
{
    pthread_once(&jt_once, jt_init);
}

jtape_t *jtape_thread_new(void)
{
    jtape_t *t = jtape_tls_;
    if (t)
        return t;
    pthread_once(&jt_once, jt_init);
    if (!jt_key_ok || !(t = calloc(1, sizeof *t)))
        return NULL;
    if (pthread_setspecific(jt_key, t)) {
        free(t);
        return NULL;
    }
    jtape_tls_ = t;
    return t;
}

bool jtape_too_deep(const char *p, size_t n, unsigned max_depth)
{
    unsigned depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
            continue;
        }
        switch (ch) {
        case '"':
            in_str = true;
            break;
        case '[': case '{':
            if (++depth > max_depth)
                return true;
            break;
        case ']': case '}':
            if (depth-- == 0)
                return false;
            break;
        }
    }
    return false;
}

const char *jtape_scan_str(const char *s, const char *end, const char *base, bool *escaped)
{
    uint8_t fl = 0;
    const unsigned char *q = jt_string((const unsigned char *)s, (const unsigned char *)end,
                                       (const unsigned char *)base, &fl);
    *escaped = (fl & JT_F_ESC) != 0;
    return (const char *)q;
}
