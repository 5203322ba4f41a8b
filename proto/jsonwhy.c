/* jsonwhy: jansson's wording for JSON the tape refused (see jsonwhy.h).
 *
 * jansson reads the tape's language but for two things the tape reads as
 * JSON.parse does: integers past int64 (jansson wants JSON_DECODE_INT_AS_REAL,
 * which it is asked for on a numeric overflow) and \u0000 in an object key
 * (refused outright). For the latter the text is read again with each
 * \u0000 spelled \u0001: the same length, so the byte, line and column of the
 * next error are the input's, and the quoted token is put back as it was. */
#include "proto/jsonwhy.h"

#include <stdlib.h>
#include <string.h>

static json_t *jw_load(const char *s, size_t n, size_t flags, json_error_t *je)
{
    json_t *root = json_loadb(s, n, flags, je);
    if (!root && json_error_code(je) == json_error_numeric_overflow)
        root = json_loadb(s, n, flags | JSON_DECODE_INT_AS_REAL, je);
    return root;
}

bool jsonwhy_refused(const char *s, size_t n, size_t flags, json_error_t *je)
{
    json_t *root = jw_load(s, n, flags, je);
    if (!root && json_error_code(je) == json_error_null_byte_in_key) {
        char *t = malloc(n ? n : 1);
        if (!t)
            return true;   /* jansson's first answer, then */
        memcpy(t, s, n);
        for (char *u = t; (u = memmem(u, n - (size_t)(u - t), "\\u0000", 6)); u += 6)
            u[5] = '1';
        root = jw_load(t, n, flags, je);
        free(t);
        /* the token jansson quotes is the respelled text; when the input had no
         * \u0001 of its own, every one in the quote was a \u0000 */
        if (!root && !memmem(s, n, "\\u0001", 6))
            for (char *u = je->text; (u = strstr(u, "\\u0001")); u += 6)
                u[5] = '0';
    }
    json_decref(root);
    return root == NULL;
}
