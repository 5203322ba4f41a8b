/* fuzz_validate: libFuzzer driver for proto/validate.c.
 *
 * The input is a stream: split at '\n', each piece is one event fed to the same
 * validate_t, as an upstream's SSE data lines would be. Checks the promises
 * callers rely on: results are 0, -EPROTO or -ENOMEM; messages are
 * NUL-terminated printable ASCII, empty on success and not on failure; the type
 * is set when an event passes; a failed stream stays failed; and
 * validate_run_closed agrees with the run events that passed. ASan and LSan
 * watch the parse arena (poisoned between allocations) and the id tables. */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check_ascii(const char *s)
{
    size_t n = strnlen(s, VALIDATE_MSG_MAX);
    assert(n < VALIDATE_MSG_MAX);
    for (size_t i = 0; i < n; i++)
        assert(s[i] >= 0x20 && s[i] < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    validate_t *v = validate_new();
    assert(v);
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
        char msg[VALIDATE_MSG_MAX];
        agui_type_t type;
        memset(msg, 'x', sizeof msg);   /* the callee must terminate it */
        int rc = validate_event(v, ev, len, &type, msg);
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
    return 0;
}
