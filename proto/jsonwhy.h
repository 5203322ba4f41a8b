/* jsonwhy: why a JSON text the tape (proto/jtape.c) refused is not JSON, in
 * jansson's words ("invalid token near ...", at which byte, line and column).
 * Cold: only the error paths of validate.c and runinput.c call it, so their
 * messages stay the ones jansson gave when it parsed every input. */
#ifndef AGATE_JSONWHY_H
#define AGATE_JSONWHY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Whether jansson refuses s[0..n) read with flags (JSON_DECODE_ANY and the
 * like); *je then says why. Read as JSON.parse reads, like the tape: an
 * integer past int64 is a number, and a \u0000 in a key is no error, so the
 * error named is the first one the tape also sees. false when jansson reads
 * the text: the two readers disagree (a jtape bug, which the fuzzers hunt). */
bool jsonwhy_refused(const char *s, size_t n, size_t flags, json_error_t *je);

#endif
