/* agui: event names and the JSON encoding of agate-originated events. Field
 * names and required fields follow @ag-ui/core 1.0's schemas. */
#include "proto/agui.h"

#include <errno.h>
#include <string.h>

#include "core/json.h"

static const char *const names[AGUI_TYPE_COUNT] = {
    [AGUI_RUN_STARTED] = "RUN_STARTED",
    [AGUI_RUN_FINISHED] = "RUN_FINISHED",
    [AGUI_RUN_ERROR] = "RUN_ERROR",
    [AGUI_TEXT_MESSAGE_START] = "TEXT_MESSAGE_START",
    [AGUI_TEXT_MESSAGE_CONTENT] = "TEXT_MESSAGE_CONTENT",
    [AGUI_TEXT_MESSAGE_END] = "TEXT_MESSAGE_END",
    [AGUI_TEXT_MESSAGE_CHUNK] = "TEXT_MESSAGE_CHUNK",
    [AGUI_TOOL_CALL_START] = "TOOL_CALL_START",
    [AGUI_TOOL_CALL_ARGS] = "TOOL_CALL_ARGS",
    [AGUI_TOOL_CALL_END] = "TOOL_CALL_END",
    [AGUI_TOOL_CALL_CHUNK] = "TOOL_CALL_CHUNK",
    [AGUI_TOOL_CALL_RESULT] = "TOOL_CALL_RESULT",
    [AGUI_STATE_SNAPSHOT] = "STATE_SNAPSHOT",
    [AGUI_STATE_DELTA] = "STATE_DELTA",
    [AGUI_MESSAGES_SNAPSHOT] = "MESSAGES_SNAPSHOT",
    [AGUI_ACTIVITY_SNAPSHOT] = "ACTIVITY_SNAPSHOT",
    [AGUI_ACTIVITY_DELTA] = "ACTIVITY_DELTA",
    [AGUI_RAW] = "RAW",
    [AGUI_CUSTOM] = "CUSTOM",
    [AGUI_STEP_STARTED] = "STEP_STARTED",
    [AGUI_STEP_FINISHED] = "STEP_FINISHED",
    [AGUI_REASONING_START] = "REASONING_START",
    [AGUI_REASONING_MESSAGE_START] = "REASONING_MESSAGE_START",
    [AGUI_REASONING_MESSAGE_CONTENT] = "REASONING_MESSAGE_CONTENT",
    [AGUI_REASONING_MESSAGE_END] = "REASONING_MESSAGE_END",
    [AGUI_REASONING_MESSAGE_CHUNK] = "REASONING_MESSAGE_CHUNK",
    [AGUI_REASONING_END] = "REASONING_END",
    [AGUI_REASONING_ENCRYPTED_VALUE] = "REASONING_ENCRYPTED_VALUE",
    [AGUI_SUBAGENT_STARTED] = "SUBAGENT_STARTED",
    [AGUI_SUBAGENT_FINISHED] = "SUBAGENT_FINISHED",
    [AGUI_SUBAGENT_ERROR] = "SUBAGENT_ERROR",
};

agui_type_t agui_type_from_name(const char *s, size_t n)
{
    for (int t = 0; t < AGUI_TYPE_COUNT; t++)
        if (strlen(names[t]) == n && !memcmp(names[t], s, n))
            return (agui_type_t)t;
    return AGUI_TYPE_COUNT;
}

const char *agui_type_name(agui_type_t t) { return t < AGUI_TYPE_COUNT ? names[t] : "UNKNOWN"; }

static void field(buf_t *b, const char *key_json, size_t key_len, agui_str_t v)
{
    buf_append(b, key_json, key_len);
    json_put_str(b, v.p, v.n);
}
#define FIELD(b, lit, v) field((b), lit, sizeof(lit) - 1, (v))

int agui_write_json(buf_t *b, const agui_event_t *ev)
{
    size_t start = b->len;
    buf_append_lit(b, "{\"type\":\"");
    const char *name = agui_type_name(ev->type);
    buf_append(b, name, strlen(name));
    buf_putc(b, '"');
    switch (ev->type) {
    case AGUI_RUN_STARTED:
    case AGUI_RUN_FINISHED:
        FIELD(b, ",\"threadId\":", ev->thread_id);
        FIELD(b, ",\"runId\":", ev->run_id);
        break;
    case AGUI_RUN_ERROR:
        FIELD(b, ",\"message\":", ev->message);
        if (ev->code.n)
            FIELD(b, ",\"code\":", ev->code);
        break;
    case AGUI_TEXT_MESSAGE_START:
        FIELD(b, ",\"messageId\":", ev->message_id);
        FIELD(b, ",\"role\":", ev->role);
        break;
    case AGUI_TEXT_MESSAGE_CONTENT:
        FIELD(b, ",\"messageId\":", ev->message_id);
        FIELD(b, ",\"delta\":", ev->delta);
        break;
    case AGUI_TEXT_MESSAGE_END:
        FIELD(b, ",\"messageId\":", ev->message_id);
        break;
    default:
        return -EINVAL;   /* pass-through types are never built by agate */
    }
    buf_putc(b, '}');
    /* Appends above only fail on ENOMEM; one check at the end keeps the hot path short. */
    return b->len > start && b->data[b->len - 1] == '}' ? 0 : -ENOMEM;
}
