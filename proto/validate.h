/* validate: checks the AG-UI events an upstream agent sends before they reach a
 * client: each event is a JSON object of a known type with that type's required
 * fields (as @ag-ui/core 1.0's schemas say), and the stream obeys the sequence
 * rules that @ag-ui/client's verifyEvents enforces.
 *
 * One validate_t per stream; it keeps what the rules need (run state, open
 * messages, tool calls, steps, reasoning, ...) and nothing more. */
#ifndef AGATE_VALIDATE_H
#define AGATE_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/agui.h"

#define VALIDATE_MSG_MAX 200

typedef struct validate validate_t;   /* opaque; see validate.c */

/* Bounds on what one stream may make a validator remember; past them an event
 * is a violation ("too many open text messages (limit 1024)", ...). */
#define VALIDATE_MAX_DEPTH    64          /* JSON nesting of one event */
#define VALIDATE_MAX_OPEN     1024        /* open at once, per kind: text messages, tool
                                             calls, reasoning spans and messages, steps,
                                             subagents, chunk streams */
#define VALIDATE_MAX_IDS      16384       /* ids (and subagent tags) kept for one run */
#define VALIDATE_MAX_ID_BYTES (1u << 20)  /* their total size */

/* Process-wide set-up, once (validate_new calls it too): the type-name table
 * and the key that frees each thread's parse tape when the thread exits. Call
 * it from main before starting the shards. */
void validate_init(void);

validate_t *validate_new(void);
void        validate_free(validate_t *v);
/* A new stream on v: what validate_new gives, but the tables' memory is kept
 * (the proxy keeps one validator per pooled run, so a run allocates nothing). */
void        validate_reset(validate_t *v);

/* Checks one event, given as its JSON text. On success returns 0 and sets *type.
 * On a violation returns -EPROTO (schema or sequence) with msg naming the rule,
 * e.g. "TEXT_MESSAGE_CONTENT for message m1 which was not started", "first event
 * must be RUN_STARTED, got TEXT_MESSAGE_START", "TOOL_CALL_ARGS: delta: expected
 * a string", "not JSON: ...". *type is set whenever the type was recognised. */
int validate_event(validate_t *v, const char *json, size_t len, agui_type_t *type, char msg[VALIDATE_MSG_MAX]);
/* The same, always through the tape (validate_event takes a shortcut for the
 * usual shape of the delta events); for the fuzzer's comparison. */
int validate_event_tape(validate_t *v, const char *json, size_t len, agui_type_t *type,
                        char msg[VALIDATE_MSG_MAX]);

/* A sequence violation is final, as it is for @ag-ui/client, whose run fails at
 * its first error: every later event gets -EPROTO "stream already failed: ...".
 * A schema violation (not JSON, unknown type, bad field) changes no state.
 * -ENOMEM (msg "out of memory") is final too. */

/* True once the stream is in a state where ending is correct (the run finished
 * or errored); false while a run is open. */
bool validate_run_closed(const validate_t *v);

#endif
