/* fuzz_pbread: libFuzzer driver for AG-UI's binary stream as agate reads it
 * from an upstream: proto/pbread.c (length-prefixed frames) and, for each
 * frame, proto/pbjson.c's protobuf -> JSON conversion (the wire walk, protobuf-c's
 * unpack, the JSON writer).
 *
 * Input: one control byte, then the stream.
 *   byte 0  how the stream is cut into feeds: < 128 fixed pieces of byte0+1
 *           bytes; otherwise pseudo-random sizes 1..(byte0 & 63)+1
 *
 * Checked (else trap):
 *   - the frames do not depend on the split: the same stream fed whole gives the
 *     same sequence of frame lengths and conversion results;
 *   - a converted event is valid JSON (jansson loads it: UTF-8, escapes, numbers;
 *     the tape when a key holds U+0000, which jansson refuses) whose "type"
 *     names the type pbjson_to_json reported;
 *   - on error the output buffer is as it was;
 *   - JSON -> protobuf -> JSON reaches a fixed point after one round: the event
 *     decoded from a frame, when re-encoded and decoded again, re-encodes to the
 *     same event (jansson's equality). */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "proto/jtape.h"
#include "proto/pbjson.h"
#include "proto/pbread.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

typedef struct fz {
    buf_t  log;    /* per frame: length, rc, JSON text */
    buf_t  json;
} fz_t;

/* JSON -> frame -> JSON; returns 0 and the JSON in out, or non-zero. */
static int reencode(const char *j, size_t n, buf_t *out)
{
    buf_t f = {0};
    char msg[PBJSON_MSG_MAX];
    agui_type_t t;
    int rc = pbjson_frame_json(&f, j, n, msg);
    if (!rc) {
        buf_reset(out);
        rc = pbjson_to_json(out, (const uint8_t *)f.data + 4, f.len - 4, &t, msg);
    }
    buf_free(&f);
    return rc;
}

static void check_fixpoint(const char *j, size_t n)
{
    buf_t a = {0}, b = {0};
    if (reencode(j, n, &a) == 0 && reencode(a.data, a.len, &b) == 0) {
        json_t *x = json_loadb(a.data, a.len, JSON_ALLOW_NUL, NULL), *y = json_loadb(b.data, b.len, JSON_ALLOW_NUL, NULL);
        if (x || y)
            FZ_CHECK(x && y && json_equal(x, y));
        else   /* a key holding U+0000, which jansson cannot hold: the text itself is fixed */
            FZ_CHECK(a.len == b.len && !memcmp(a.data, b.data, a.len));
        json_decref(x);
        json_decref(y);
    }
    buf_free(&a);
    buf_free(&b);
}

static int on_frame(void *ctx, const uint8_t *msg, size_t len)
{
    fz_t *f = ctx;
    char why[PBJSON_MSG_MAX];
    agui_type_t type;
    buf_reset(&f->json);
    FZ_CHECK(buf_append_lit(&f->json, "keep") == 0);
    int rc = pbjson_to_json(&f->json, msg, len, &type, why);
    FZ_CHECK(buf_append(&f->log, &len, sizeof len) == 0 && buf_append(&f->log, &rc, sizeof rc) == 0);
    if (rc) {
        FZ_CHECK(rc == -EPROTO || rc == -ENOENT);
        FZ_CHECK(f->json.len == 4);
        return 0;
    }
    const char *j = f->json.data + 4;
    size_t n = f->json.len - 4;
    FZ_CHECK(buf_append(&f->log, j, n) == 0);
    json_error_t je;
    json_t *root = json_loadb(j, n, JSON_ALLOW_NUL, &je);
    if (root) {
        FZ_CHECK(json_is_object(root));
        const char *t = json_string_value(json_object_get(root, "type"));
        FZ_CHECK(t && type < AGUI_TYPE_COUNT && !strcmp(t, agui_type_name(type)));
        json_decref(root);
    } else {   /* only a key holding U+0000 (JSON.parse reads it) may stop jansson; the tape reads it */
        FZ_CHECK(json_error_code(&je) == json_error_null_byte_in_key);
        static jtape_t tape;
        FZ_CHECK(jtape_parse(&tape, j, n, 1u << 12, 0) == 0 && jtape_kind(&tape, 0) == JT_OBJ);
        const char *name = agui_type_name(type);
        FZ_CHECK(jtape_str_eq(&tape, jtape_get(&tape, 0, "type", 4), name, strlen(name)));
    }
    check_fixpoint(j, n);
    return 0;
}

static void run(const uint8_t *s, size_t n, uint8_t split, buf_t *log)
{
    fz_t f = {0};
    pbread_t p;
    pbread_init(&p, 1u << 20);
    int rc = 0;
    if (!split) {
        rc = pbread_feed(&p, (const char *)s, n, on_frame, &f);
    } else {
        uint32_t seed = split;
        for (size_t i = 0; i < n && !rc;) {
            size_t k;
            if (split < 128) {
                k = (size_t)split + 1;
            } else {
                seed = seed * 1103515245u + 12345u;
                k = 1 + (seed >> 16) % ((size_t)(split & 63) + 1);
            }
            if (k > n - i)
                k = n - i;
            rc = pbread_feed(&p, (const char *)s + i, k, on_frame, &f);
            i += k;
        }
    }
    FZ_CHECK(buf_append(&f.log, &rc, sizeof rc) == 0);
    buf_reset(log);
    FZ_CHECK(buf_append(log, f.log.data ? f.log.data : "", f.log.len) == 0);
    buf_free(&f.log);
    buf_free(&f.json);
    pbread_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static buf_t whole, split;
    run(data + 1, size - 1, 0, &whole);
    run(data + 1, size - 1, data[0] ? data[0] : 1, &split);
    FZ_CHECK(whole.len == split.len && (!whole.len || !memcmp(whole.data, split.data, whole.len)));
    return 0;
}
