/* canon: the cache key of a RunAgentInput.
 *
 * A request's meaning, not its bytes: the parsed body is written back in one
 * canonical form (object keys sorted bytewise, no whitespace, numbers as
 * jansson holds them: integers in decimal, reals as %.17g (whole ones as the
 * integer they equal), strings with the
 * minimal escapes of proto/json.c) with the fields that name a run rather than
 * ask something left out (threadId, runId, parentRunId by default). The key is
 * SHA-256 over a version tag, the agent's name, the values of the headers the
 * agent forwards upstream (an Authorization that differs must never share an
 * entry) and that canonical text. */
#ifndef AGATE_CANON_H
#define AGATE_CANON_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define CANON_KEY_LEN   32
#define CANON_MAX_DEPTH 128

/* Paths left out of the canonical form: "threadId" (a top-level key),
 * "forwardedProps.session" (a key of a nested object), "messages[].id" (a key
 * of every element of an array). Segments separated by '.', "[]" after a key
 * walks into every array element. */
typedef struct canon_omit {
    const char *const *paths;
    size_t             n;
} canon_omit_t;

/* Writes root (a json_t *) canonically into out. 0, -ENOMEM, or -ELOOP past
 * CANON_MAX_DEPTH nesting. */
int canon_write(buf_t *out, const void *root, const canon_omit_t *omit);

/* SHA-256 of "agate-cache-v1\0" agent "\0" (each extra part, length-prefixed)
 * canonical. parts may be NULL when n_parts is 0. 0 or -EIO (libcrypto). */
typedef struct canon_part { const char *p; size_t n; } canon_part_t;
int canon_key(const char *agent, const canon_part_t *parts, size_t n_parts, const char *canonical, size_t len,
              uint8_t key[CANON_KEY_LEN]);

#endif
