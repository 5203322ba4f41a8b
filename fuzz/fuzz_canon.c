/* fuzz_canon: libFuzzer driver for the response cache's parsers of outside
 * bytes: the canonical form of a request body (proto/canon.c) and the id
 * finder and record splicing for upstream events (proto/evids.c,
 * proto/runrec.c).
 *
 * Checks: the canonical text written from the tape is byte for byte the text
 * of the jansson tree walk that defined the cache key until the tape replaced
 * it (kept below as the oracle, unchanged but for o_ names), for every input
 * both read: with and without omit paths, from the root and from the root's
 * members, and for tapes read without duplicate rejection (last value wins,
 * as jansson without JSON_REJECT_DUPLICATES keeps it); the text is JSON that
 * jansson reads back to an equal value (minus the omitted paths) and is a
 * fixed point (canon(canon(x)) == canon(x)); every id span lies inside the
 * text, in order, without overlap, and starts right after a '"'; a record
 * built from the bytes parses back to them, and rendering it with new ids
 * gives JSON that jansson accepts whenever the event itself was JSON.
 *
 * Why the oracle lives here and not in canon.c: it is the key's definition,
 * frozen, and independent of the code under test (a shared helper would hide
 * a bug both made); the server no longer links a second writer. */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/buf.h"
#include "proto/canon.h"
#include "proto/evids.h"
#include "core/json.h"
#include "proto/jtape.h"
#include "proto/runrec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* JSON equality where numbers compare by value: the canonical form writes the
 * real 2e3 as 2000, which reads back as an integer and means the same. */
static int same(json_t *a, json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b) ||
               (json_number_value(a) != json_number_value(a) && json_number_value(b) != json_number_value(b));
    if (json_typeof(a) != json_typeof(b))
        return 0;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        const char *k;
        size_t kl;
        json_t *v;
        json_object_keylen_foreach(a, k, kl, v) {
            json_t *w = json_object_getn(b, k, kl);
            if (!w || !same(v, w))
                return 0;
        }
        return 1;
    }
    return json_equal(a, b);
}

/* --- the oracle: proto/canon.c's jansson walk as of commit 641e378 ----------- */

typedef struct okv {
    const char *k;
    size_t      kl;
    json_t     *v;
} okv_t;

static int okv_cmp(const void *a, const void *b)
{
    const okv_t *x = a, *y = b;
    size_t n = x->kl < y->kl ? x->kl : y->kl;
    int c = memcmp(x->k, y->k, n);
    return c ? c : (x->kl > y->kl) - (x->kl < y->kl);
}

static bool o_omit_step(const char *const *act, size_t n_act, const char *k, size_t kl, const char **next,
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
                omitted = true;
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

static int o_put_value(buf_t *b, json_t *v, const char *const *act, size_t n_act, bool act_in_array, int depth);

static int o_put_object(buf_t *b, json_t *o, const char *const *act, size_t n_act, int depth)
{
    size_t n = json_object_size(o);
    okv_t small[64], *kv = n <= 64 ? small : malloc(n * sizeof *kv);
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
    qsort(kv, n, sizeof *kv, okv_cmp);
    int rc = buf_putc(b, '{') ? -ENOMEM : 0;
    bool first = true;
    for (i = 0; i < n && !rc; i++) {
        const char *next[16];
        size_t n_next = 0;
        bool arr = false;
        if (n_act && o_omit_step(act, n_act, kv[i].k, kv[i].kl, next, &n_next, 16, &arr))
            continue;
        if ((!first && buf_putc(b, ',')) || json_put_str(b, kv[i].k, kv[i].kl) || buf_putc(b, ':')) {
            rc = -ENOMEM;
            break;
        }
        first = false;
        rc = o_put_value(b, kv[i].v, next, n_next, arr, depth + 1);
    }
    if (!rc && buf_putc(b, '}'))
        rc = -ENOMEM;
    if (kv != small)
        free(kv);
    return rc;
}

static int o_put_value(buf_t *b, json_t *v, const char *const *act, size_t n_act, bool act_in_array, int depth)
{
    char num[32];
    int w;
    if (depth > CANON_MAX_DEPTH)
        return -ELOOP;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return o_put_object(b, v, act_in_array ? NULL : act, act_in_array ? 0 : n_act, depth);
    case JSON_ARRAY: {
        if (buf_putc(b, '['))
            return -ENOMEM;
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i && buf_putc(b, ','))
                return -ENOMEM;
            json_t *el = json_array_get(v, i);
            int rc = act_in_array && json_is_object(el) ? o_put_object(b, el, act, n_act, depth + 1)
                                                        : o_put_value(b, el, NULL, 0, false, depth + 1);
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

static int oracle_write(buf_t *out, json_t *v, const canon_omit_t *omit)
{
    return o_put_value(out, v, omit ? omit->paths : NULL, omit ? omit->n : 0, false, 0);
}

/* What request_key did: the retry reads every integer as a real when one
 * overflows int64. */
static json_t *oracle_load(const char *s, size_t n, size_t flags, json_error_t *je)
{
    json_t *root = json_loadb(s, n, flags, je);
    if (!root && json_error_code(je) == json_error_numeric_overflow)
        root = json_loadb(s, n, flags | JSON_DECODE_INT_AS_REAL, je);
    return root;
}

/* --- checks --------------------------------------------------------------------- */

static const char *const omit_paths[] = {"threadId", "runId", "parentRunId", "messages[].id", "forwardedProps.session",
                                         "messages[].toolCalls[].id", "b", "a[]", "A.z"};

/* The tape writer against the oracle on one value: same result, same bytes. */
static void same_as_oracle(jtape_t *t, uint32_t node, json_t *v, const canon_omit_t *omit)
{
    buf_t a = {0}, b = {0};
    int ra = canon_write_tape(&a, t, node, omit), rb = oracle_write(&b, v, omit);
    assert(ra == rb);
    assert(ra || (a.len == b.len && (!a.len || !memcmp(a.data, b.data, a.len))));
    buf_free(&a);
    buf_free(&b);
}

/* Deeper than jansson's own limit (2048 values, scalars counted) is the only
 * input the tape may read and jansson not, with \u0000 in a key. */
#define TAPE_DEPTH 4096

/* The canonical text of s (on tape t) read back gives itself; with nothing
 * omitted it means root, the oracle's value, when there is one (NULL: a key
 * holding U+0000, which jansson cannot hold); and it hashes. Leaves t holding s. */
static void check_fixed_point(jtape_t *t, const char *s, size_t n, json_t *root)
{
    canon_omit_t omit = {omit_paths, sizeof omit_paths / sizeof omit_paths[0]};
    buf_t a = {0}, b = {0}, c = {0};
    int rc = canon_write_tape(&a, t, 0, &omit);
    assert(rc == 0 || rc == -ELOOP);
    if (rc == 0) {
        /* a fixed point */
        assert(jtape_parse(t, a.data ? a.data : "", a.len, TAPE_DEPTH, JTAPE_REJECT_DUPLICATES) == 0);
        assert(canon_write_tape(&b, t, 0, &omit) == 0);
        assert(a.len == b.len && (!a.len || !memcmp(a.data, b.data, a.len)));
        /* with nothing omitted, the canonical text means the same value */
        assert(jtape_parse(t, s, n, TAPE_DEPTH, JTAPE_REJECT_DUPLICATES) == 0);
        assert(canon_write_tape(&c, t, 0, NULL) == 0);
        if (root) {
            json_error_t je;
            json_t *full = json_loadb(c.data ? c.data : "", c.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            assert(full && same(full, root));
            json_decref(full);
        } else {   /* no oracle: the full text is a fixed point too */
            b.len = 0;
            assert(jtape_parse(t, c.data ? c.data : "", c.len, TAPE_DEPTH, JTAPE_REJECT_DUPLICATES) == 0);
            assert(canon_write_tape(&b, t, 0, NULL) == 0);
            assert(b.len == c.len && (!c.len || !memcmp(b.data, c.data, c.len)));
        }
        uint8_t key[CANON_KEY_LEN];
        assert(canon_key("agent", NULL, 0, a.data ? a.data : "", a.len, key, NULL) == 0);
    }
    buf_free(&a);
    buf_free(&b);
    buf_free(&c);
}

static void check_canon(const char *s, size_t n)
{
    const size_t flags = JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL;
    json_error_t je;
    json_t *root = oracle_load(s, n, flags, &je);
    jtape_t *t = jtape_thread();
    assert(t);
    int trc = jtape_parse(t, s, n, TAPE_DEPTH, JTAPE_REJECT_DUPLICATES);
    assert(trc != -ENOMEM);
    /* Both read the same language, but for two quirks of jansson: its depth
     * limit, and a NUL byte right after a number or literal, which it skips
     * ("[1\0]" is [1]: stream_unget leaves the NUL in its buffer, where NUL
     * means "fetch the next byte"). */
    if (!root)
        assert(trc || json_error_code(&je) == json_error_stack_overflow ||
               json_error_code(&je) == json_error_null_byte_in_key);
    else
        assert(trc == 0 || memchr(s, '\0', n));
    /* \u0000 in a key: the tape reads it (as JSON.parse does), jansson cannot
     * hold it, so there is no oracle; the text must still be a fixed point. */
    if (!root && !trc) {
        check_fixed_point(t, s, n, NULL);
        return;
    }
    if (!root || trc) {
        json_decref(root);
        return;
    }
    canon_omit_t omit = {omit_paths, sizeof omit_paths / sizeof omit_paths[0]};
    same_as_oracle(t, 0, root, &omit);
    same_as_oracle(t, 0, root, NULL);
    if (jtape_kind(t, 0) == JT_OBJ) {   /* from a member: omit paths relative to it */
        int members = 0;
        for (uint32_t k = 1; k < jtape_end(t, 0) && members < 4; k = jtape_end(t, k + 1), members++) {
            size_t kl;
            const char *key = jtape_str(t, k, &kl);
            json_t *v = json_object_getn(root, key, kl);
            assert(v);
            same_as_oracle(t, k + 1, v, &omit);
        }
    }

    check_fixed_point(t, s, n, root);
    json_decref(root);
}

/* Duplicate keys, which request_key refuses: the writer keeps the last value,
 * as jansson does without JSON_REJECT_DUPLICATES. */
static void check_canon_dups(const char *s, size_t n)
{
    if (!memchr(s, '{', n))
        return;
    json_error_t je;
    json_t *root = oracle_load(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    jtape_t *t = jtape_thread();
    if (!root || jtape_parse(t, s, n, TAPE_DEPTH, 0)) {
        json_decref(root);
        return;
    }
    canon_omit_t omit = {omit_paths, sizeof omit_paths / sizeof omit_paths[0]};
    same_as_oracle(t, 0, root, &omit);
    json_decref(root);
}

static void check_event(const char *s, size_t n, agui_type_t type)
{
    evids_span_t sp[32];
    int k = evids_scan(s, n, type, sp, 32);
    assert(k >= -EINVAL);
    if (k < 0)
        return;
    uint32_t end = 0;
    for (int i = 0; i < k && i < 32; i++) {
        assert(sp[i].off >= 1 && sp[i].off >= end && (uint64_t)sp[i].off + sp[i].len < n);
        assert(s[sp[i].off - 1] == '"' && s[sp[i].off + sp[i].len] == '"');
        end = sp[i].off + sp[i].len + 1;
    }
    runrec_ids_t ids = {0};
    buf_t log = {0}, out = {0}, fresh = {0};
    assert(runrec_build(&log, &ids, type, s, n, 7) == 0);
    runrec_t rec = {0};
    assert(runrec_parse(log.data, log.len, &rec) == log.len);
    assert(rec.json_len == n && !memcmp(rec.json, s, n) && rec.gap_ms == 7 && rec.type == type);
    rand_state_t rng = {{1, 2, 3, 4}};
    runrec_subst_t sub;
    buf_t quoted = {0};
    assert(runrec_subst_init(&sub, &quoted, "th\"read", 7, "run\n", 4, &fresh, &rng) == 0);
    assert(runrec_render(&out, &rec, &sub) == 0);
    json_error_t je;
    json_t *orig = json_loadb(s, n, JSON_ALLOW_NUL, &je);
    if (orig) {
        json_t *rew = json_loadb(out.data ? out.data : "", out.len, JSON_ALLOW_NUL, &je);
        assert(rew && json_is_object(rew));
        json_decref(rew);
        json_decref(orig);
    }
    runrec_ids_free(&ids);
    buf_free(&log);
    buf_free(&out);
    buf_free(&fresh);
    buf_free(&quoted);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so ASan sees any read past the input */
    char *s = malloc(size ? size : 1);
    assert(s);
    memcpy(s, data, size);
    check_canon(s, size);
    check_canon_dups(s, size);
    check_event(s, size, size && data[0] % 2 ? AGUI_MESSAGES_SNAPSHOT : AGUI_TOOL_CALL_START);
    free(s);
    return 0;
}
