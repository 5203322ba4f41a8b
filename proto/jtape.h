/* jtape: a single-pass JSON reader that writes a flat "tape" of nodes instead of
 * a tree: no allocation per value, strings and numbers left in the input and read
 * (decoded, converted) only when asked for. The validators of upstream events and
 * of RunAgentInput bodies walk the tape with the accessors below.
 *
 * It reads the language jansson reads with JSON_DECODE_ANY | JSON_ALLOW_NUL
 * (plus JSON_REJECT_DUPLICATES with JTAPE_REJECT_DUPLICATES), and one thing more:
 * U+0000 in an object key, which JSON.parse and AG-UI's clients read and jansson
 * refuses. Callers keep jansson only to word the error for input the tape
 * refuses. fuzz/fuzz_validate.c and fuzz/fuzz_runinput.c check that the two
 * agree on every input they try, but for that key.
 *
 * Layout: node 0 is the root. A container's members follow it; an object's are
 * (key string, value) pairs. Every node's `next` is the index just past its
 * subtree, so siblings are walked without recursion. A tape is reused: its
 * arrays keep their capacity from one parse to the next. */
#ifndef AGATE_JTAPE_H
#define AGATE_JTAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum jtape_kind { JT_NULL, JT_FALSE, JT_TRUE, JT_NUM, JT_STR, JT_OBJ, JT_ARR };

enum {
    JT_F_ESC = 1,   /* string: has escapes, read it with jtape_str */
    JT_F_DEC = 2,   /* string: decoded, into scratch[off ..], aux bytes long */
    JT_F_INT = 4,   /* number: integer syntax of at most 18 digits (fits int64) */
};

typedef struct jtape_node {
    uint8_t  kind, flags;
    uint32_t off, len;   /* where its JSON text is in the input: a string's
                            bytes between the quotes, a container's brackets included */
    uint32_t next;       /* index just past this node's subtree */
    uint32_t aux;        /* container: member count; decoded string: its length;
                            not set on other nodes */
} jtape_node_t;

typedef struct jtape {
    const char   *src;
    size_t        src_len;
    /* Bumped by every jtape_parse. A caller that notes it after its own parse
     * can tell later that the tape still holds exactly that parse. */
    uint64_t      gen;
    jtape_node_t *nodes;
    uint32_t      n, cap;
    char         *scratch;          /* decoded strings, each at its input offset
                                       (never longer than its JSON text) */
    size_t        scratch_cap;
    uint32_t     *dup;              /* key hash set for duplicate detection */
    size_t        dup_cap;
} jtape_t;

#define JTAPE_REJECT_DUPLICATES 1u

/* Reads src[0..n) onto the tape. 0 on success; -EINVAL when jansson would refuse
 * the input (but for a U+0000 in a key), or containers nest deeper than
 * max_depth; -ENOMEM. A key's bytes may hold NUL: read it by its length. */
int  jtape_parse(jtape_t *t, const char *src, size_t n, unsigned max_depth, unsigned flags);
void jtape_free(jtape_t *t);

/* The closing quote of the JSON string whose text starts at s (just after its
 * opening quote) and may run to end, or NULL when jtape_parse would refuse the
 * string (a bad escape, a control byte, invalid UTF-8, no closing quote).
 * base: the start of the whole input, at most s (for the scanner's overlapping
 * loads). *escaped: whether the string holds an escape. */
const char *jtape_scan_str(const char *s, const char *end, const char *base, bool *escaped);

/* Whether src[0..n) opens more than max_depth containers at once, counting
 * brackets outside strings. Cold: for wording a refusal as jansson would
 * ("too deep" before any other error); input that fools the count is
 * malformed and refused anyway. */
bool jtape_too_deep(const char *src, size_t n, unsigned max_depth);

/* Creates the key that frees each thread's tape at its exit; once per process,
 * idempotent (jtape_thread calls it too). */
void jtape_init(void);

/* The calling thread's tape, made on first use (NULL without memory). Freed
 * when the thread exits. Inline: once made, one thread-local load. */
jtape_t *jtape_thread_new(void);           /* the first call's path */
extern __thread jtape_t *jtape_tls_;       /* jtape_thread's cache; nothing else reads it */
static inline jtape_t *jtape_thread(void)
{
    jtape_t *t = jtape_tls_;
    return __builtin_expect(t != NULL, 1) ? t : jtape_thread_new();
}

/* Equality of short byte strings without a call: keys, ids and type names are
 * mostly 4 to 32 bytes, where libc's memcmp costs more than the compare. */
static inline bool jtape_bytes_eq(const char *a, const char *b, size_t n)
{
    uint64_t x, y, x2, y2;
    if (n >= 8) {
        __builtin_memcpy(&x, a, 8); __builtin_memcpy(&y, b, 8);
        __builtin_memcpy(&x2, a + n - 8, 8); __builtin_memcpy(&y2, b + n - 8, 8);
        if (x != y || x2 != y2)
            return false;
        if (n <= 16)
            return true;
        if (n > 64)
            return !__builtin_memcmp(a + 8, b + 8, n - 16);
        if (n > 32) {   /* 33..64 (a UUID is 36): [8, 32) and [n - 32, n - 8) */
            for (size_t o = 8; o < 32; o += 8) {
                __builtin_memcpy(&x, a + o, 8); __builtin_memcpy(&y, b + o, 8);
                __builtin_memcpy(&x2, a + n - 8 - o, 8); __builtin_memcpy(&y2, b + n - 8 - o, 8);
                if (x != y || x2 != y2)
                    return false;
            }
            return true;
        }
        /* 17..32: the middle is covered by [8, 16) and [n - 16, n - 8) */
        __builtin_memcpy(&x, a + 8, 8); __builtin_memcpy(&y, b + 8, 8);
        __builtin_memcpy(&x2, a + n - 16, 8); __builtin_memcpy(&y2, b + n - 16, 8);
        return x == y && x2 == y2;
    }
    if (n >= 4) {
        uint32_t u, v, u2, v2;
        __builtin_memcpy(&u, a, 4); __builtin_memcpy(&v, b, 4);
        __builtin_memcpy(&u2, a + n - 4, 4); __builtin_memcpy(&v2, b + n - 4, 4);
        return u == v && u2 == v2;
    }
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

static inline uint8_t jtape_kind(const jtape_t *t, uint32_t i) { return t->nodes[i].kind; }
static inline uint32_t jtape_end(const jtape_t *t, uint32_t i) { return t->nodes[i].next; }
static inline uint32_t jtape_count(const jtape_t *t, uint32_t i) { return t->nodes[i].aux; }

/* Walks: for (e = a + 1; e < jtape_end(t, a); e = jtape_end(t, e)) for an array;
 * for (k = o + 1; k < jtape_end(t, o); k = jtape_end(t, k + 1)) for an object,
 * value at k + 1. */

/* The value of the last member of object o named key (JSON.parse keeps the last
 * of duplicates), or 0 when there is none (0 is the root, never a member). */
uint32_t jtape_get(jtape_t *t, uint32_t o, const char *key, size_t klen);

/* jtape_get for n keys, reading the members once: out[i] is keys[i]'s value
 * (the last of duplicates), or 0. */
typedef struct jtape_key {
    const char *s;
    size_t      len;
} jtape_key_t;
#define JTAPE_KEY(lit) { lit, sizeof(lit) - 1 }
void jtape_get_keys(jtape_t *t, uint32_t o, const jtape_key_t *keys, size_t n, uint32_t *out);

/* A string's bytes, decoded; valid until the next parse. Inline for the common
 * string without escapes, which is read where it lies in the input. */
const char *jtape_str_decoded(jtape_t *t, uint32_t i, size_t *len);
static inline const char *jtape_str(jtape_t *t, uint32_t i, size_t *len)
{
    const jtape_node_t *nd = &t->nodes[i];
    if (__builtin_expect(nd->flags & JT_F_ESC, 0))
        return jtape_str_decoded(t, i, len);
    *len = nd->len;
    return t->src + nd->off;
}
bool        jtape_str_eq(jtape_t *t, uint32_t i, const char *lit, size_t n);

/* Number.isSafeInteger (and >= 0 when nonneg), on the number JSON.parse would
 * make: 1.0 and 1e3 count. *out gets the value when true. */
bool jtape_safe_int(const jtape_t *t, uint32_t i, bool nonneg, int64_t *out);

#endif
