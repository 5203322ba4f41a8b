/* fuzz_runinput: libFuzzer driver for proto/runinput.c.
 *
 * Feeds arbitrary bytes as a request body through parse, user-text extraction
 * and free, and checks the promises callers rely on: errors are NUL-terminated
 * ASCII, a failed parse leaves nothing to free, a successful one hands out
 * strings in its own block (the body is an exact-size copy, freed before they
 * are read, so ASan sees any pointer into it), and user text is only ever
 * appended. Also differential: the body is valid for runinput only if jansson
 * (with JSON_REJECT_DUPLICATES) reads it, or refuses only a \u0000 in a key. */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>
#include <stdlib.h>

#include "core/buf.h"
#include "proto/runinput.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check_ascii(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    assert(n < cap);
    for (size_t i = 0; i < n; i++)
        assert(s[i] >= 0x20 && s[i] < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    runinput_t in;
    runinput_err_t err;
    char *body = malloc(size ? size : 1);
    assert(body);
    memcpy(body, data, size);
    int rc = runinput_parse(body, size, &in, &err);
    free(body);
    if (!rc) {
        const size_t flags = JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL;
        json_error_t je;
        json_t *j = json_loadb((const char *)data, size, flags, &je);
        if (!j && json_error_code(&je) == json_error_numeric_overflow)
            j = json_loadb((const char *)data, size, flags | JSON_DECODE_INT_AS_REAL, &je);
        /* \u0000 in a key: JSON.parse and runinput read it, jansson does not */
        assert(j || json_error_code(&je) == json_error_null_byte_in_key);
        json_decref(j);
    }
    if (rc) {
        assert(rc == -EINVAL);
        assert(in.root == NULL);
        fuzz_check_ascii(err.field, sizeof err.field);
        fuzz_check_ascii(err.message, sizeof err.message);
        assert(err.message[0]);
        runinput_free(&in);
        return 0;
    }
    assert(in.root && in.thread_id && in.run_id);
    assert(in.token_interval_ms >= -1);

    buf_t b = {0};
    assert(buf_append_lit(&b, "x") == 0);
    int u = runinput_user_text(&in, &b);
    assert(u == 0 || u == 1);
    assert(u == 1 ? b.len > 1 : b.len == 1);
    assert(u == 0 || in.last_user_msg >= 0);
    /* touch every byte handed out so ASan sees a dangling pointer */
    volatile char sink = 0;
    for (size_t i = 0; i < in.thread_id_len; i++)
        sink ^= in.thread_id[i];
    for (size_t i = 0; i < in.run_id_len; i++)
        sink ^= in.run_id[i];
    /* Dropping the content (what a held stream does) keeps the ids, byte for byte. */
    char ids[2][256];
    size_t tl = in.thread_id_len < sizeof ids[0] ? in.thread_id_len : sizeof ids[0];
    size_t rl = in.run_id_len < sizeof ids[1] ? in.run_id_len : sizeof ids[1];
    memcpy(ids[0], in.thread_id, tl);
    memcpy(ids[1], in.run_id, rl);
    runinput_drop_content(&in);
    assert(!in.user_content && !in.user_content_len);
    assert(!memcmp(ids[0], in.thread_id, tl) && !memcmp(ids[1], in.run_id, rl));
    b.len = 1;
    assert(runinput_user_text(&in, &b) == 0 && b.len == 1);
    (void)sink;
    buf_free(&b);
    runinput_free(&in);
    return 0;
}
