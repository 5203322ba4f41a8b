/* canon: canonical JSON of a RunAgentInput read onto a jtape, and its SHA-256
 * key (see canon.h for the form). Runs once per cacheable request, on the
 * request's shard; nothing here touches shared state.
 *
 * Invariants. The text is the one the jansson tree walk this replaced wrote
 * for the same body (json_loadb with JSON_REJECT_DUPLICATES | JSON_DECODE_ANY |
 * JSON_ALLOW_NUL, retried with JSON_DECODE_INT_AS_REAL on numeric overflow),
 * byte for byte: fuzz/fuzz_canon.c keeps that walk as its oracle and checks
 * every input against it, so a key never changes meaning. A body with U+0000
 * in a key, which jansson refused and the tape reads (as JSON.parse does),
 * is written by the same rules: the key sorts on its bytes, NUL included, and
 * is written as \u0000; no omit path names such a key. Keys sort on their
 * decoded bytes (an escaped key "\u0062" sorts as "b"), strings are read
 * through jtape_str only when they have escapes, integers are copied as
 * written (only -0 changes) and only reals go through strtod (and every
 * number, in the rare document with an integer past int64). No
 * allocation once warm: keys are sorted in a stack array for objects up to 64
 * keys (one heap array above, per object), and numbers over 127 characters are
 * copied to the heap to be NUL-terminated for strtod (both cold).
 *
 * Why the tape and not jansson's tree: the key of bench/echo-body.json costs
 * ~16.9k instructions this way, 10.3k of them SHA-256, against 62.4k through
 * json_loadb and a tree walk (callgrind). A body runinput has just parsed is
 * not parsed again (net/coalesce.c). */
#include "proto/canon.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/digest.h"
#include "core/ratelimit.h"   /* rl_hash: the project's 64-bit hash of bytes */
#include "core/json.h"

typedef struct kv {
    const char *k;
    uint32_t    kl;
    uint32_t    v;      /* value node; 0 (the root, never a member) when left out */
} kv_t;

typedef struct cw {
    buf_t   *b;
    jtape_t *t;
    bool     ints_as_reals;   /* the document has an integer beyond int64 */
} cw_t;

/* Bytewise on the decoded key, shorter first on a tie; equal keys by position
 * so the last of duplicates sorts last. */
static inline int kv_cmp(const kv_t *x, const kv_t *y)
{
    uint32_t n = x->kl < y->kl ? x->kl : y->kl;
    int c = memcmp(x->k, y->k, n);
    if (c)
        return c;
    if (x->kl != y->kl)
        return x->kl < y->kl ? -1 : 1;
    return x->v < y->v ? -1 : x->v > y->v;
}

static int kv_qcmp(const void *a, const void *b) { return kv_cmp(a, b); }

/* Insertion sort below 16 keys: RunAgentInput objects have 2 to 8, where
 * qsort's indirect calls cost more than the sort. */
static void kv_sort(kv_t *kv, size_t n)
{
    if (n > 16) {
        qsort(kv, n, sizeof *kv, kv_qcmp);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        kv_t x = kv[i];
        size_t j = i;
        for (; j && kv_cmp(&kv[j - 1], &x) > 0; j--)
            kv[j] = kv[j - 1];
        kv[j] = x;
    }
}

/* A string's decoded bytes; the common unescaped case without a call. */
static inline const char *cw_str(jtape_t *t, uint32_t i, size_t *n)
{
    const jtape_node_t *nd = &t->nodes[i];
    if (!(nd->flags & JT_F_ESC)) {
        *n = nd->len;
        return t->src + nd->off;
    }
    return jtape_str(t, i, n);
}

/* The omit paths that continue below key k (klen bytes) of the object at
 * this level: each active path is a suffix "k.rest", "k[].rest", "k" or
 * "k[]". Returns true when k itself is omitted (a path ends at k). The
 * suffixes that continue are written into next (up to cap). */
static bool omit_step(const char *const *act, size_t n_act, const char *k, size_t kl, const char **next,
                      size_t *n_next, size_t cap, bool *into_array)
{
    bool omitted = false;
    *n_next = 0;
    *into_array = false;
    for (size_t i = 0; i < n_act; i++) {
        const char *p = act[i];
        /* A path is a C string, so it names no key holding a NUL; the check
         * is only made on a match, which strncmp also gives for "a" and "a\0b". */
        if (strncmp(p, k, kl) || memchr(k, '\0', kl))
            continue;
        const char *rest = p + kl;
        bool arr = rest[0] == '[' && rest[1] == ']';
        if (arr)
            rest += 2;
        if (*rest == '\0') {
            if (!arr)
                omitted = true;   /* "k[]" alone leaves the array in */
            continue;
        }
        if (*rest != '.')
            continue;
        if (arr)
            *into_array = true;
        if (*n_next < cap)
            next[(*n_next)++] = rest + 1;
    }
    return omitted;
}

/* Integer syntax beyond int64: jansson refused the whole document with a
 * numeric overflow, and request_key's retry with JSON_DECODE_INT_AS_REAL then
 * read every integer of it as a real. */
static bool int_overflows(const char *s, uint32_t n)
{
    bool neg = s[0] == '-';
    s += neg;
    n -= neg;
    for (uint32_t i = 0; i < n; i++)
        if (s[i] == '.' || s[i] == 'e' || s[i] == 'E')
            return false;
    if (n != 19)
        return n > 19;
    return memcmp(s, neg ? "9223372036854775808" : "9223372036854775807", 19) > 0;
}

static bool is_int_syntax(const jtape_node_t *nd, const char *s)
{
    if (nd->flags & JT_F_INT)
        return true;
    for (uint32_t i = 0; i < nd->len; i++)
        if (s[i] == '.' || s[i] == 'e' || s[i] == 'E')
            return false;
    return true;
}

/* A real as jansson held it: a whole one is written as the integer it equals
 * (2e3 and 2000, -0.0 and 0 mean the same number to every JSON reader), so the
 * form is a fixed point: what it writes reads back as what it would write. */
static int put_real(buf_t *b, double d)
{
    char num[32];
    int w;
    if (d > -9007199254740992.0 && d < 9007199254740992.0 && d == (double)(long long)d)
        w = snprintf(num, sizeof num, "%lld", (long long)d);
    else
        w = snprintf(num, sizeof num, "%.17g", d);
    return buf_append(b, num, (size_t)w) ? -ENOMEM : 0;
}

static int put_num(cw_t *w, uint32_t i)
{
    const jtape_node_t *nd = &w->t->nodes[i];
    const char *s = w->t->src + nd->off;
    if (!w->ints_as_reals && is_int_syntax(nd, s)) {
        /* strtoll then %lld gives the text back (JSON has no leading zeros
         * or '+'), except that -0 is 0 */
        if (nd->len == 2 && s[0] == '-' && s[1] == '0')
            return buf_putc(w->b, '0') ? -ENOMEM : 0;
        return buf_append(w->b, s, nd->len) ? -ENOMEM : 0;
    }
    char tmp[128], *z = tmp;
    if (nd->len >= sizeof tmp && !(z = malloc((size_t)nd->len + 1)))
        return -ENOMEM;
    memcpy(z, s, nd->len);
    z[nd->len] = '\0';
    double d = strtod(z, NULL);   /* jansson's own conversion (jsonp_strtod), C locale */
    if (z != tmp)
        free(z);
    return put_real(w->b, d);
}

static int put_value(cw_t *w, uint32_t v, const char *const *act, size_t n_act, bool act_in_array, int depth);

static int put_object(cw_t *w, uint32_t o, const char *const *act, size_t n_act, int depth)
{
    jtape_t *t = w->t;
    buf_t *b = w->b;
    size_t n = jtape_count(t, o);
    kv_t small[64], *kv = n <= 64 ? small : malloc(n * sizeof *kv);
    if (!kv)
        return -ENOMEM;
    size_t i = 0;
    for (uint32_t k = o + 1; k < jtape_end(t, o) && i < n; k = jtape_end(t, k + 1), i++) {
        size_t kl;
        kv[i].k = cw_str(t, k, &kl);
        kv[i].kl = (uint32_t)kl;
        kv[i].v = k + 1;
    }
    n = i;
    kv_sort(kv, n);
    /* A tape read without JTAPE_REJECT_DUPLICATES: the last value wins, as in
     * jansson without that flag and JSON.parse. */
    for (i = 0; i + 1 < n; i++)
        if (kv[i].kl == kv[i + 1].kl && !memcmp(kv[i].k, kv[i + 1].k, kv[i].kl))
            kv[i].v = 0;
    int rc = buf_putc(b, '{') ? -ENOMEM : 0;
    bool first = true;
    for (i = 0; i < n && !rc; i++) {
        const char *next[16];
        size_t n_next = 0;
        bool arr = false;
        if (!kv[i].v || (n_act && omit_step(act, n_act, kv[i].k, kv[i].kl, next, &n_next, 16, &arr)))
            continue;
        if ((!first && buf_putc(b, ',')) || json_put_str(b, kv[i].k, kv[i].kl) || buf_putc(b, ':')) {
            rc = -ENOMEM;
            break;
        }
        first = false;
        rc = put_value(w, kv[i].v, next, n_next, arr, depth + 1);
    }
    if (!rc && buf_putc(b, '}'))
        rc = -ENOMEM;
    if (kv != small)
        free(kv);
    return rc;
}

/* act: omit paths relative to v; act_in_array: they apply to v's elements
 * (v was reached through "key[]"), otherwise to v itself when it is an object.
 * The depth is counted as the jansson walk counted it: an object reached
 * through "key[]" is not checked itself, its members are. */
static int put_value(cw_t *w, uint32_t v, const char *const *act, size_t n_act, bool act_in_array, int depth)
{
    jtape_t *t = w->t;
    buf_t *b = w->b;
    if (depth > CANON_MAX_DEPTH)
        return -ELOOP;
    switch (jtape_kind(t, v)) {
    case JT_OBJ:
        return put_object(w, v, act_in_array ? NULL : act, act_in_array ? 0 : n_act, depth);
    case JT_ARR: {
        if (buf_putc(b, '['))
            return -ENOMEM;
        for (uint32_t e = v + 1; e < jtape_end(t, v); e = jtape_end(t, e)) {
            if (e > v + 1 && buf_putc(b, ','))
                return -ENOMEM;
            /* "k[].x" reaches objects that are elements of k */
            int rc = act_in_array && jtape_kind(t, e) == JT_OBJ ? put_object(w, e, act, n_act, depth + 1)
                                                                : put_value(w, e, NULL, 0, false, depth + 1);
            if (rc)
                return rc;
        }
        return buf_putc(b, ']') ? -ENOMEM : 0;
    }
    case JT_STR: {
        const jtape_node_t *nd = &t->nodes[v];
        if (!(nd->flags & JT_F_ESC)) {
            /* Written as it came: unescaped string text holds no byte that
             * json_put_str would escape (a quote, a backslash or a control byte
             * there is refused by jtape_parse), so this is its output, without
             * the scan (the message text is most of a body's bytes). */
            if (buf_reserve(b, (size_t)nd->len + 2))
                return -ENOMEM;
            char *o = b->data + b->len;
            o[0] = '"';
            memcpy(o + 1, t->src + nd->off, nd->len);
            o[nd->len + 1] = '"';
            b->len += (size_t)nd->len + 2;
            return 0;
        }
        size_t n;
        const char *s = jtape_str(t, v, &n);
        return json_put_str(b, s, n) ? -ENOMEM : 0;
    }
    case JT_NUM:
        return put_num(w, v);
    case JT_TRUE:
        return buf_append_lit(b, "true") ? -ENOMEM : 0;
    case JT_FALSE:
        return buf_append_lit(b, "false") ? -ENOMEM : 0;
    default:
        return buf_append_lit(b, "null") ? -ENOMEM : 0;
    }
}

int canon_write_tape(buf_t *out, jtape_t *t, uint32_t node, const canon_omit_t *omit)
{
    cw_t w = {out, t, false};
    /* jansson's int-or-real choice was made per document, whatever was omitted:
     * one integer past int64 anywhere made every integer a real. Only numbers
     * the tape did not mark as short integers need a look. */
    for (uint32_t i = 0; i < t->n && !w.ints_as_reals; i++) {
        const jtape_node_t *nd = &t->nodes[i];
        if (nd->kind == JT_NUM && !(nd->flags & JT_F_INT))
            w.ints_as_reals = int_overflows(t->src + nd->off, nd->len);
    }
    return put_value(&w, node, omit ? omit->paths : NULL, omit ? omit->n : 0, false, 0);
}

/* n as the key's preimage writes integers: 8 bytes, little-endian. */
static char *put_u64le(char *w, uint64_t n)
{
    for (int i = 0; i < 8; i++)
        *w++ = (char)(n >> (8 * i));
    return w;
}

static int digest_u64(EVP_MD_CTX *ctx, uint64_t n)
{
    char le[8];
    put_u64le(le, n);
    return EVP_DigestUpdate(ctx, le, sizeof le) == 1 ? 0 : -EIO;
}

static const char key_tag[] = "agate-cache-v1";

/* SHA-256 of the tag and the preimage, fed piece by piece: agent "\0", the
 * number of parts, each part's length (UINT64_MAX: absent) and bytes, then the
 * canonical text; integers as 8 bytes little-endian. */
static int key_sha(const char *agent, const canon_part_t *parts, size_t n_parts, const char *canonical, size_t len,
                   uint8_t key[CANON_KEY_LEN])
{
    EVP_MD_CTX *ctx = digest_sha256_begin();
    if (!ctx)
        return -ENOMEM;
    if (EVP_DigestUpdate(ctx, key_tag, sizeof key_tag) != 1 || EVP_DigestUpdate(ctx, agent, strlen(agent) + 1) != 1 ||
        digest_u64(ctx, n_parts))
        return -EIO;
    for (size_t i = 0; i < n_parts; i++) {
        if (digest_u64(ctx, parts[i].p ? parts[i].n : UINT64_MAX) ||
            (parts[i].p && parts[i].n && EVP_DigestUpdate(ctx, parts[i].p, parts[i].n) != 1))
            return -EIO;
    }
    if (EVP_DigestUpdate(ctx, canonical, len) != 1)
        return -EIO;
    return digest_sha256_end(ctx, key);
}

/* ---- recent keys ----
 *
 * A cache hit is a request seen before, so the preimage of its key is usually
 * one this thread has just hashed. The memo keeps the keys of recent preimages,
 * direct-mapped by a 64-bit hash, and answers a preimage equal byte for byte
 * to a remembered one: the answer is exactly the SHA-256 it stands for, and a
 * collision only costs the SHA-256. Measured on this project's VM (a loop of
 * canon_key on a 250-byte text, SHA-NI; libcrypto was 5.2 % of agate's CPU per
 * cache hit in perf): 264 ns a key before the memo; with it 82 ns remembered
 * (the preimage's copy, hash and compare) and 333 ns not (SHA-256 and storing
 * it). Per thread: at most MEMO_SLOTS x MEMO_MAX (2 MiB), allocated as slots are
 * first used; freed at thread exit. */
#define MEMO_SLOTS 128
#define MEMO_MAX   (16u << 10)   /* longer preimages are hashed every time */

typedef struct {
    uint64_t h;                  /* hash of the preimage, never 0; 0: empty */
    uint32_t len, cap;
    uint8_t  key[CANON_KEY_LEN];
    char    *bytes;              /* the preimage; owned by the slot */
} memo_slot_t;

typedef struct {
    char        pre[MEMO_MAX];   /* the preimage being looked up */
    memo_slot_t slot[MEMO_SLOTS];
} memo_t;

static pthread_once_t   memo_once = PTHREAD_ONCE_INIT;
static pthread_key_t    memo_key;
static bool             memo_key_ok;
static __thread memo_t *memo_tls;

static void memo_destroy(void *p)
{
    memo_t *m = p;
    if (memo_tls == m)
        memo_tls = NULL;
    for (unsigned i = 0; i < MEMO_SLOTS; i++)
        free(m->slot[i].bytes);
    free(m);
}

static void memo_init(void) { memo_key_ok = pthread_key_create(&memo_key, memo_destroy) == 0; }

static memo_t *memo_thread(void)
{
    if (memo_tls)
        return memo_tls;
    pthread_once(&memo_once, memo_init);
    memo_t *m;
    if (!memo_key_ok || !(m = calloc(1, sizeof *m)))
        return NULL;
    if (pthread_setspecific(memo_key, m)) {
        free(m);
        return NULL;
    }
    return memo_tls = m;
}

/* The preimage written into m->pre; its length, or 0 when it is over MEMO_MAX. */
static size_t memo_preimage(memo_t *m, const char *agent, const canon_part_t *parts, size_t n_parts,
                            const char *canonical, size_t len)
{
    size_t al = strlen(agent) + 1, total = al + 8 + 8 * n_parts + len;
    for (size_t i = 0; i < n_parts; i++)
        total += parts[i].p ? parts[i].n : 0;
    if (total > MEMO_MAX)
        return 0;
    char *w = m->pre;
    memcpy(w, agent, al);
    w = put_u64le(w + al, n_parts);
    for (size_t i = 0; i < n_parts; i++) {
        w = put_u64le(w, parts[i].p ? parts[i].n : UINT64_MAX);
        if (parts[i].p && parts[i].n) {
            memcpy(w, parts[i].p, parts[i].n);
            w += parts[i].n;
        }
    }
    memcpy(w, canonical, len);
    return total;
}

int canon_key(const char *agent, const canon_part_t *parts, size_t n_parts, const char *canonical, size_t len,
              uint8_t key[CANON_KEY_LEN], enum canon_memo *memo)
{
    _Static_assert(CANON_KEY_LEN == DIGEST_SHA256_LEN, "the key is a SHA-256");
    enum canon_memo ignored;
    if (!memo)
        memo = &ignored;
    memo_t *m = memo_thread();
    size_t n = m ? memo_preimage(m, agent, parts, n_parts, canonical, len) : 0;
    if (!n) {
        *memo = CANON_MEMO_TOO_LARGE;   /* or no memo for this thread: either way, hashed whole */
        return key_sha(agent, parts, n_parts, canonical, len, key);
    }
    uint64_t h = rl_hash(m->pre, n, 0) | 1;
    memo_slot_t *s = &m->slot[h & (MEMO_SLOTS - 1)];
    if (s->h == h && s->len == n && !memcmp(s->bytes, m->pre, n)) {
        memcpy(key, s->key, CANON_KEY_LEN);
        *memo = CANON_MEMO_HIT;
        return 0;
    }
    *memo = CANON_MEMO_MISS;
    EVP_MD_CTX *ctx = digest_sha256_begin();
    if (!ctx)
        return -ENOMEM;
    if (EVP_DigestUpdate(ctx, key_tag, sizeof key_tag) != 1 || EVP_DigestUpdate(ctx, m->pre, n) != 1)
        return -EIO;
    int rc = digest_sha256_end(ctx, key);
    if (rc)
        return rc;
    if (s->cap < n) {
        char *nb = realloc(s->bytes, n);
        if (!nb) {
            s->h = 0;   /* keep the old bytes, remember nothing */
            return 0;
        }
        s->bytes = nb;
        s->cap = (uint32_t)n;
    }
    memcpy(s->bytes, m->pre, n);
    memcpy(s->key, key, CANON_KEY_LEN);
    s->len = (uint32_t)n;
    s->h = h;
    return 0;
}
