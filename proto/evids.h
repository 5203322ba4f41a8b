/* evids: where the ids are in an AG-UI event's JSON text, so a stored run can
 * be replayed under a new request's threadId/runId and with fresh message and
 * tool-call ids by splicing, without parsing anything at replay time.
 *
 * Found (string values only; other values are left alone):
 *   top level:  threadId, runId                      -> EVIDS_THREAD, EVIDS_RUN
 *               messageId, parentMessageId, toolCallId -> EVIDS_ID
 *   input:      threadId, runId (RUN_STARTED.input)   -> EVIDS_THREAD, EVIDS_RUN
 *   MESSAGES_SNAPSHOT: messages[].id, messages[].toolCallId,
 *               messages[].toolCalls[].id             -> EVIDS_ID
 * Nothing inside state, deltas, raw or custom values is touched: those are the
 * agent's data. A span covers the string's content between its quotes, as
 * written (escapes included), so equal ids in the text are equal spans. */
#ifndef AGATE_EVIDS_H
#define AGATE_EVIDS_H

#include <stddef.h>
#include <stdint.h>

#include "proto/agui.h"

#define EVIDS_MAX_DEPTH 64

typedef enum evids_kind { EVIDS_THREAD, EVIDS_RUN, EVIDS_ID } evids_kind_t;

typedef struct evids_span {
    uint32_t off, len;   /* into the event text */
    uint8_t  kind;       /* evids_kind_t */
} evids_span_t;

/* Scans one event (len bytes of JSON). Writes up to max spans, in text order,
 * and returns how many there are (may exceed max: the caller retries bigger),
 * or -EINVAL when the text is not one well-formed JSON object (or nests past
 * EVIDS_MAX_DEPTH). */
int evids_scan(const char *json, size_t len, agui_type_t type, evids_span_t *spans, size_t max);

#endif
