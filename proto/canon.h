/* canon: the cache key of a RunAgentInput.
 *
 * A request's meaning, not its bytes: the body, read onto a jtape, is written
 * back in one canonical form with the fields that name a run rather than ask
 * something left out (threadId, runId, parentRunId by default):
 *  - object keys sorted bytewise on their decoded bytes, shorter first on a
 *    common prefix; no whitespace;
 *  - strings with the minimal escapes of core/json.c;
 *  - numbers as jansson held them, since the key was first defined on a
 *    jansson tree: an integer (within int64) in decimal, so -0 is 0; a real as
 *    strtod reads it, written as the integer it equals when whole and within
 *    +-2^53 (2e3 is 2000, 1.0 is 1), else as %.17g (1e22 is 1e+22, 1e-400 is
 *    0); and when any integer of the document is past int64, every integer of
 *    it is read as a real (jansson's JSON_DECODE_INT_AS_REAL retry).
 * The key is SHA-256 over a version tag, the agent's name, the values of the
 * headers the agent forwards upstream (an Authorization that differs must
 * never share an entry) and that canonical text. */
#ifndef AGATE_CANON_H
#define AGATE_CANON_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "proto/jtape.h"

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

/* Writes value node of tape t (0: the document) canonically into out; omit
 * paths are relative to it. Numbers are read as part of the whole document on
 * the tape: one integer past int64 anywhere makes every integer a real. A
 * request's tape is parsed with JTAPE_REJECT_DUPLICATES, as jansson parsed
 * it; on a tape parsed without, a repeated key is written once, with its last
 * value. Decodes escaped strings on t (jtape_str), so t is not const. 0,
 * -ENOMEM, or -ELOOP past CANON_MAX_DEPTH nesting (the node is depth 0). */
int canon_write_tape(buf_t *out, jtape_t *t, uint32_t node, const canon_omit_t *omit);

/* How canon_key found a key: this thread's memo of recent keys answered it,
 * it was hashed and remembered, or its preimage was over the memo's 16 KiB. */
enum canon_memo { CANON_MEMO_HIT, CANON_MEMO_MISS, CANON_MEMO_TOO_LARGE, CANON_MEMO_COUNT };

/* SHA-256 of "agate-cache-v1\0" agent "\0" (each extra part, length-prefixed)
 * canonical. parts may be NULL when n_parts is 0. 0 or -EIO (libcrypto).
 * Each thread remembers the keys of its recent preimages up to 16 KiB and
 * answers an identical one from memory (see canon.c, "recent keys"); when memo
 * is not NULL, *memo says which way this key was found (on success). */
typedef struct canon_part { const char *p; size_t n; } canon_part_t;
int canon_key(const char *agent, const canon_part_t *parts, size_t n_parts, const char *canonical, size_t len,
              uint8_t key[CANON_KEY_LEN], enum canon_memo *memo);

#endif
