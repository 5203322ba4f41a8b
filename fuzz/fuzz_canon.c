/* fuzz_canon: libFuzzer driver for the response cache's parsers of outside
 * bytes: the canonical form of a request body (proto/canon.c) and the id
 * finder and record splicing for upstream events (proto/evids.c,
 * proto/runrec.c).
 *
 * Checks: the canonical text is JSON that jansson reads back to an equal
 * value (minus the omitted paths) and is a fixed point (canon(canon(x)) ==
 * canon(x)); every id span lies inside the text, in order, without overlap,
 * and starts right after a '"'; a record built from the bytes parses back to
 * them, and rendering it with new ids gives JSON that jansson accepts whenever
 * the event itself was JSON. */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/buf.h"
#include "proto/canon.h"
#include "proto/evids.h"
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

static const char *const omit_paths[] = {"threadId", "runId", "parentRunId", "messages[].id", "forwardedProps.session"};

static void check_canon(const char *s, size_t n)
{
    json_error_t je;
    json_t *root = json_loadb(s, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!root)
        return;
    canon_omit_t omit = {omit_paths, sizeof omit_paths / sizeof omit_paths[0]};
    buf_t a = {0}, b = {0};
    int rc = canon_write(&a, root, &omit);
    assert(rc == 0 || rc == -ELOOP);
    if (rc == 0) {
        json_t *again = json_loadb(a.data ? a.data : "", a.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        assert(again);
        assert(canon_write(&b, again, &omit) == 0);
        assert(a.len == b.len && (!a.len || !memcmp(a.data, b.data, a.len)));   /* a fixed point */
        /* with nothing omitted, the canonical text means the same value */
        buf_t c = {0};
        assert(canon_write(&c, root, NULL) == 0);
        json_t *full = json_loadb(c.data ? c.data : "", c.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        assert(full && same(full, root));
        json_decref(full);
        json_decref(again);
        buf_free(&c);
        uint8_t key[CANON_KEY_LEN];
        assert(canon_key("agent", NULL, 0, a.data ? a.data : "", a.len, key) == 0);
    }
    json_decref(root);
    buf_free(&a);
    buf_free(&b);
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
    runrec_subst_t sub = {"th\"read", "run\n", 7, 4, &fresh, &rng};
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
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so ASan sees any read past the input */
    char *s = malloc(size ? size : 1);
    assert(s);
    memcpy(s, data, size);
    check_canon(s, size);
    check_event(s, size, size && data[0] % 2 ? AGUI_MESSAGES_SNAPSHOT : AGUI_TOOL_CALL_START);
    free(s);
    return 0;
}
