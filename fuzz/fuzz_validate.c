/* fuzz_validate: libFuzzer driver for proto/validate.c.
 *
 * The input is a stream: split at '\n', each piece is one event fed to the same
 * validate_t, as an upstream's SSE data lines would be. Checks the promises
 * callers rely on: results are 0, -EPROTO or -ENOMEM; messages are
 * NUL-terminated printable ASCII, empty on success and not on failure; the type
 * is set when an event passes; a failed stream stays failed; and
 * validate_run_closed agrees with the run events that passed. ASan and LSan
 * watch the tape and the id tables.
 *
 * Differential: proto/jtape.c must accept exactly what jansson accepts (with the
 * flags validate.c's error path uses; but for \u0000 in keys, which the tape
 * reads as JSON.parse does) and read the same strings, since jansson
 * is only asked to word the errors now. Every piece is parsed by both. And
 * validate_event's shortcut for the delta events must give the verdicts of the
 * tape path: a second validator takes every piece through validate_event_tape
 * and must agree on the result, the type and the message. */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "proto/jtape.h"
#include "proto/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check_ascii(const char *s)
{
    size_t n = strnlen(s, VALIDATE_MSG_MAX);
    assert(n < VALIDATE_MSG_MAX);
    for (size_t i = 0; i < n; i++)
        assert(s[i] >= 0x20 && s[i] < 0x7f);
}

/* Compares every member of jansson object j with tape object o, recursively. */
static void fuzz_same(jtape_t *t, uint32_t o, json_t *j)
{
    size_t n;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        assert(jtape_kind(t, o) == JT_OBJ);
        assert(jtape_count(t, o) >= json_object_size(j));   /* duplicates collapse */
        const char *key;
        json_t *val;
        json_object_foreach(j, key, val) {
            uint32_t x = jtape_get(t, o, key, strlen(key));
            assert(x);
            fuzz_same(t, x, val);
        }
        break;
    }
    case JSON_ARRAY: {
        assert(jtape_kind(t, o) == JT_ARR && jtape_count(t, o) == json_array_size(j));
        uint32_t e = o + 1;
        for (size_t i = 0; i < json_array_size(j); i++, e = jtape_end(t, e))
            fuzz_same(t, e, json_array_get(j, i));
        break;
    }
    case JSON_STRING: {
        const char *s = jtape_str(t, o, &n);
        assert(jtape_kind(t, o) == JT_STR && n == json_string_length(j));
        assert(!memcmp(s, json_string_value(j), n));
        break;
    }
    case JSON_INTEGER:
    case JSON_REAL:
        assert(jtape_kind(t, o) == JT_NUM);
        break;
    case JSON_TRUE:  assert(jtape_kind(t, o) == JT_TRUE); break;
    case JSON_FALSE: assert(jtape_kind(t, o) == JT_FALSE); break;
    case JSON_NULL:  assert(jtape_kind(t, o) == JT_NULL); break;
    }
}

static void fuzz_differential(const char *p, size_t len, size_t flags, unsigned tflags)
{
    static jtape_t t;   /* not the thread's: validate_event uses that one */
    size_t opens = 0;
    for (size_t i = 0; i < len; i++)
        opens += (p[i] | 0x20) == '{';
    if (opens > 1000)
        return;   /* near jansson's depth limit, which counts scalars too */
    json_error_t je;
    json_t *j = json_loadb(p, len, flags, &je);
    if (!j && json_error_code(&je) == json_error_numeric_overflow)
        j = json_loadb(p, len, flags | JSON_DECODE_INT_AS_REAL, &je);
    int rc = jtape_parse(&t, p, len, 2048, tflags);
    assert(rc != -ENOMEM);
    /* The same language but for the jansson quirk fuzz_canon.c describes: it
     * skips a NUL byte right after a number or literal ("[1\0]" is [1]); the
     * tape refuses that, as JSON.parse does (validate says "not JSON"). */
    if (j && rc && memchr(p, '\0', len)) {
        json_decref(j);
        return;
    }
    /* And one difference: the tape reads \u0000 in a key (JSON.parse does),
     * jansson refuses it. The rest of the text must still be what jansson
     * reads: with every \u0000 spelled \u0001 the two must agree again. */
    if (!j && rc == 0 && json_error_code(&je) == json_error_null_byte_in_key) {
        char *q = malloc(len);
        assert(q);
        memcpy(q, p, len);
        for (char *u = q; (u = memmem(u, len - (size_t)(u - q), "\\u0000", 6)); u += 6)
            u[5] = '1';
        fuzz_differential(q, len, flags & ~(size_t)JSON_REJECT_DUPLICATES, 0);
        free(q);
        return;
    }
    assert((rc == 0) == (j != NULL));
    if (j && !(tflags & JTAPE_REJECT_DUPLICATES))
        fuzz_same(&t, 0, j);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    validate_t *v = validate_new(), *vt = validate_new();
    assert(v && vt);
    const char *p = (const char *)data, *end = p + size;
    bool failed = false;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);
        /* an exact-size copy: a read past len is an ASan report, not a read of
         * the next line */
        char *ev = malloc(len ? len : 1);
        assert(ev);
        memcpy(ev, p, len);
        fuzz_differential(ev, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, 0);
        fuzz_differential(ev, len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES,
                          JTAPE_REJECT_DUPLICATES);
        char msg[VALIDATE_MSG_MAX];
        agui_type_t type;
        memset(msg, 'x', sizeof msg);   /* the callee must terminate it */
        int rc = validate_event(v, ev, len, &type, msg);
        char msg_t[VALIDATE_MSG_MAX];
        agui_type_t type_t;
        int rc_t = validate_event_tape(vt, ev, len, &type_t, msg_t);
        assert(rc == rc_t && type == type_t && !strcmp(msg, msg_t));
        free(ev);
        fuzz_check_ascii(msg);
        assert(type <= AGUI_TYPE_COUNT);
        if (rc == 0) {
            assert(msg[0] == '\0');
            assert(type < AGUI_TYPE_COUNT);
            assert(!failed);
            if (type == AGUI_RUN_FINISHED || type == AGUI_RUN_ERROR)
                assert(validate_run_closed(v));
            if (type == AGUI_RUN_STARTED)
                assert(!validate_run_closed(v));
        } else {
            assert(rc == -EPROTO || rc == -ENOMEM);
            assert(msg[0] != '\0');
            if (!strncmp(msg, "stream already failed: ", 23)) {
                failed = true;   /* and it stays so: nothing passes after this */
                assert(type < AGUI_TYPE_COUNT);
                assert(!validate_run_closed(v));
            }
        }
        p += len + 1;
    }
    validate_free(v);
    validate_free(vt);
    return 0;
}
