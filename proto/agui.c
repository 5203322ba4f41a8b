/* agui: event names and the JSON encoding of agate-originated events. Field
 * names and required fields follow @ag-ui/core 1.0's schemas. */
#include "proto/agui.h"

#include <errno.h>
#include <string.h>

#include "proto/json.h"

static const char *const names[AGUI_TYPE_COUNT] = {
    [AGUI_RUN_STARTED] = "RUN_STARTED",
    [AGUI_RUN_FINISHED] = "RUN_FINISHED",
    [AGUI_RUN_ERROR] = "RUN_ERROR",
    [AGUI_TEXT_MESSAGE_START] = "TEXT_MESSAGE_START",
    [AGUI_TEXT_MESSAGE_CONTENT] = "TEXT_MESSAGE_CONTENT",
    [AGUI_TEXT_MESSAGE_END] = "TEXT_MESSAGE_END",
};

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
    case AGUI_TYPE_COUNT:
        break;
    }
    buf_putc(b, '}');
    /* Appends above only fail on ENOMEM; one check at the end keeps the hot path short. */
    return b->len > start && b->data[b->len - 1] == '}' ? 0 : -ENOMEM;
}
