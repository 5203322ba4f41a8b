/* runinput: parses and validates an AG-UI RunAgentInput request body.
 *
 * The schema is @ag-ui/core 1.0's RunAgentInputSchema: threadId and runId
 * strings, messages an array of messages (discriminated by role), tools, context,
 * state, forwardedProps, resume, all type-checked. A parsed input owns one
 * block holding what it hands out (ids decoded, the last user message's content
 * as JSON text), independent of the body; runinput_free() releases it. */
#ifndef AGATE_RUNINPUT_H
#define AGATE_RUNINPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define RUNINPUT_MAX_DEPTH 64   /* nesting of a body */

typedef struct runinput {
    char       *root;            /* owned block: ids, then user_content; NULL when none */
    const char *user_content;    /* JSON text of the last user message's content, in root */
    size_t      user_content_len;
    const char *thread_id;  size_t thread_id_len;
    const char *run_id;     size_t run_id_len;
    int64_t     token_interval_ms;   /* forwardedProps.agate.tokenIntervalMs, -1 when absent */
    int         last_user_msg;       /* index into messages of the last role:"user" message, -1 when none */
    /* The thread's tape generation (jtape_t.gen) right after the body was
     * parsed: while it is unchanged, the tape holds this body. */
    uint64_t    tape_gen;
} runinput_t;

typedef struct runinput_err {
    char field[128];             /* JSON path of the offending field: "messages[2].content", "" for the body */
    char message[256];           /* human text: "expected a string", "invalid JSON at line 1 column 9: ..." */
} runinput_err_t;

/* 0 on success, -EINVAL with err filled when the body is not a valid RunAgentInput. */
int  runinput_parse(const char *body, size_t len, runinput_t *in, runinput_err_t *err);
void runinput_free(runinput_t *in);
/* Gives back the last user message's content and keeps the ids: the echo agent
 * has read the content, a proxy never does, and a stream may last minutes. */
void runinput_drop_content(runinput_t *in);

/* A message that is not a RunAgentInput (a WebSocket CANCEL, or one to answer
 * with RUN_ERROR), read for what the connection needs: whether it is a JSON
 * object at all (JSON as JSON.parse reads it), and its "type" and "runId" when
 * they are strings, decoded (NULL when not; valid until the thread's tape is
 * next used). -ENOMEM, or 0. */
typedef struct runinput_peek {
    bool        object;
    const char *type;    size_t type_len;
    const char *run_id;  size_t run_id_len;
} runinput_peek_t;
int  runinput_peek(const char *text, size_t len, runinput_peek_t *pk);

/* Appends the text of the last user message to out: the string content, or the
 * "text" parts of a content array concatenated in order (no separator).
 * Returns 1 when there was a user message with text, 0 when none, -ENOMEM. */
int  runinput_user_text(const runinput_t *in, buf_t *out);

#endif
