/* canon: canonical JSON of a parsed RunAgentInput and its SHA-256 key (see
 * canon.h for the form). Runs once per cacheable request, on the request's
 * shard; nothing here touches shared state. Keys are sorted with a small
 * array on the stack for objects up to 64 keys and one heap array above,
 * per object, on this cold-ish path. */
#include "proto/canon.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/digest.h"
#include "proto/json.h"

typedef struct kv {
    const char *k;
    size_t      kl;
    json_t     *v;
} kv_t;

static int kv_cmp(const void *a, const void *b)
{
    const kv_t *x = a, *y = b;
    size_t n = x->kl < y->kl ? x->kl : y->kl;
    int c = memcmp(x->k, y->k, n);
    return c ? c : (x->kl > y->kl) - (x->kl < y->kl);
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
        if (strncmp(p, k, kl))
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

static int put_value(buf_t *b, json_t *v, const char *const *act, size_t n_act, bool act_in_array, int depth);

static int put_object(buf_t *b, json_t *o, const char *const *act, size_t n_act, int depth)
{
    size_t n = json_object_size(o);
    kv_t small[64], *kv = n <= 64 ? small : malloc(n * sizeof *kv);
    if (!kv)
        return -ENOMEM;
    size_t i = 0;
    void *it = json_object_iter(o);
    while (it && i < n) {
        kv[i].k = json_object_iter_key(it);
        kv[i].kl = json_object_iter_key_len(it);
        kv[i].v = json_object_iter_value(it);
        i++;
        it = json_object_iter_next(o, it);
    }
    n = i;
    qsort(kv, n, sizeof *kv, kv_cmp);
    int rc = buf_putc(b, '{') ? -ENOMEM : 0;
    bool first = true;
    for (i = 0; i < n && !rc; i++) {
        const char *next[16];
        size_t n_next = 0;
        bool arr = false;
        if (n_act && omit_step(act, n_act, kv[i].k, kv[i].kl, next, &n_next, 16, &arr))
            continue;
        if ((!first && buf_putc(b, ',')) || json_put_str(b, kv[i].k, kv[i].kl) || buf_putc(b, ':')) {
            rc = -ENOMEM;
            break;
        }
        first = false;
        rc = put_value(b, kv[i].v, next, n_next, arr, depth + 1);
    }
    if (!rc && buf_putc(b, '}'))
        rc = -ENOMEM;
    if (kv != small)
        free(kv);
    return rc;
}

/* act: omit paths relative to v; act_in_array: they apply to v's elements
 * (v was reached through "key[]"), otherwise to v itself when it is an object. */
static int put_value(buf_t *b, json_t *v, const char *const *act, size_t n_act, bool act_in_array, int depth)
{
    char num[32];
    int w;
    if (depth > CANON_MAX_DEPTH)
        return -ELOOP;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return put_object(b, v, act_in_array ? NULL : act, act_in_array ? 0 : n_act, depth);
    case JSON_ARRAY: {
        if (buf_putc(b, '['))
            return -ENOMEM;
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i && buf_putc(b, ','))
                return -ENOMEM;
            json_t *el = json_array_get(v, i);
            /* "k[].x" reaches objects that are elements of k */
            int rc = act_in_array && json_is_object(el) ? put_object(b, el, act, n_act, depth + 1)
                                                        : put_value(b, el, NULL, 0, false, depth + 1);
            if (rc)
                return rc;
        }
        return buf_putc(b, ']') ? -ENOMEM : 0;
    }
    case JSON_STRING:
        return json_put_str(b, json_string_value(v), json_string_length(v)) ? -ENOMEM : 0;
    case JSON_INTEGER:
        w = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf_append(b, num, (size_t)w) ? -ENOMEM : 0;
    case JSON_REAL: {
        /* A whole real is written as the integer it equals (2e3 and 2000, -0.0
         * and 0 mean the same number to every JSON reader), so the form is a
         * fixed point: what it writes reads back as what it would write. */
        double d = json_real_value(v);
        if (d > -9007199254740992.0 && d < 9007199254740992.0 && d == (double)(long long)d)
            w = snprintf(num, sizeof num, "%lld", (long long)d);
        else
            w = snprintf(num, sizeof num, "%.17g", d);
        return buf_append(b, num, (size_t)w) ? -ENOMEM : 0;
    }
    case JSON_TRUE:
        return buf_append_lit(b, "true") ? -ENOMEM : 0;
    case JSON_FALSE:
        return buf_append_lit(b, "false") ? -ENOMEM : 0;
    default:
        return buf_append_lit(b, "null") ? -ENOMEM : 0;
    }
}

int canon_write(buf_t *out, const void *root, const canon_omit_t *omit)
{
    json_t *v = (json_t *)root;
    if (!v)
        return buf_append_lit(out, "null") ? -ENOMEM : 0;
    return put_value(out, v, omit ? omit->paths : NULL, omit ? omit->n : 0, false, 0);
}

static int digest_u64(EVP_MD_CTX *ctx, uint64_t n)
{
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(n >> (8 * i));
    return EVP_DigestUpdate(ctx, le, sizeof le) == 1 ? 0 : -EIO;
}

int canon_key(const char *agent, const canon_part_t *parts, size_t n_parts, const char *canonical, size_t len,
              uint8_t key[CANON_KEY_LEN])
{
    static const char tag[] = "agate-cache-v1";
    _Static_assert(CANON_KEY_LEN == DIGEST_SHA256_LEN, "the key is a SHA-256");
    EVP_MD_CTX *ctx = digest_sha256_begin();
    if (!ctx)
        return -ENOMEM;
    if (EVP_DigestUpdate(ctx, tag, sizeof tag) != 1 || EVP_DigestUpdate(ctx, agent, strlen(agent) + 1) != 1 ||
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
