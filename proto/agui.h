/* agui: the AG-UI events agate itself originates (built-in agents, errors), as
 * one struct that every encoder reads: JSON for SSE and WebSocket here, the
 * protobuf framing later. Strings are borrowed (pointer, length) slices. */
#ifndef AGATE_AGUI_H
#define AGATE_AGUI_H

#include <stddef.h>

#include "core/buf.h"

/* Every event type of AG-UI 1.0 (@ag-ui/core EventType). agate writes the first
 * six itself; the rest it only passes through, counts and validates. */
typedef enum agui_type {
    AGUI_RUN_STARTED,
    AGUI_RUN_FINISHED,
    AGUI_RUN_ERROR,
    AGUI_TEXT_MESSAGE_START,
    AGUI_TEXT_MESSAGE_CONTENT,
    AGUI_TEXT_MESSAGE_END,
    AGUI_TEXT_MESSAGE_CHUNK,
    AGUI_TOOL_CALL_START,
    AGUI_TOOL_CALL_ARGS,
    AGUI_TOOL_CALL_END,
    AGUI_TOOL_CALL_CHUNK,
    AGUI_TOOL_CALL_RESULT,
    AGUI_STATE_SNAPSHOT,
    AGUI_STATE_DELTA,
    AGUI_MESSAGES_SNAPSHOT,
    AGUI_ACTIVITY_SNAPSHOT,
    AGUI_ACTIVITY_DELTA,
    AGUI_RAW,
    AGUI_CUSTOM,
    AGUI_STEP_STARTED,
    AGUI_STEP_FINISHED,
    AGUI_REASONING_START,
    AGUI_REASONING_MESSAGE_START,
    AGUI_REASONING_MESSAGE_CONTENT,
    AGUI_REASONING_MESSAGE_END,
    AGUI_REASONING_MESSAGE_CHUNK,
    AGUI_REASONING_END,
    AGUI_REASONING_ENCRYPTED_VALUE,
    AGUI_SUBAGENT_STARTED,
    AGUI_SUBAGENT_FINISHED,
    AGUI_SUBAGENT_ERROR,
    AGUI_TYPE_COUNT
} agui_type_t;

typedef struct agui_str { const char *p; size_t n; } agui_str_t;

typedef struct agui_event {
    agui_type_t type;
    agui_str_t  thread_id, run_id;     /* RUN_* */
    agui_str_t  message_id, role;      /* TEXT_MESSAGE_* */
    agui_str_t  delta;                 /* TEXT_MESSAGE_CONTENT */
    agui_str_t  message, code;         /* RUN_ERROR */
} agui_event_t;

const char *agui_type_name(agui_type_t t);
/* The type named by s, or AGUI_TYPE_COUNT when s names none. */
agui_type_t agui_type_from_name(const char *s, size_t n);
/* Appends the event as one JSON object (no trailing newline). 0 or -ENOMEM. */
int agui_write_json(buf_t *b, const agui_event_t *ev);

#endif
