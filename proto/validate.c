/* validate: the AG-UI events an upstream agent sends, checked the way
 * @ag-ui/client 1.0.0 checks them before anything reaches an application. Its
 * pipeline has three stages:
 *
 *   1. schema (client enforce/ -> @ag-ui/core's zod EventSchema): a JSON object
 *      of a known type whose described fields have the right types; objects are
 *      loose, so unknown keys pass and are never looked at again (the client
 *      strips them before stage 3 reads anything). Here: the event is read in
 *      one pass onto the thread's jtape and its type's table below is checked by
 *      proto/schema.c, which also holds the shapes RunAgentInput shares;
 *   2. chunk expansion (client chunks/transform.ts) and
 *   3. sequence rules (client verify/verify.ts, verifyEvents), both in
 *      validate_seq.c, on the few strings this file reads out of the event.
 *
 * Cost. No allocation per event and no tree: the tape is reused, strings stay
 * in the input (escapes are decoded only in strings that are read, such as ids),
 * and the checks read the tape where it lies. bench/validate_bench.c, the same
 * 44-event run, same machine (2 shared cores), same build: 1190 ns/event with
 * jansson (json_loadb into a per-thread arena, then the tree walk), 75 ns/event
 * now; yajl 2.1 (libyajl-dev) with no-op callbacks alone costs 182 ns/event.
 *
 * Input the tape refuses (not JSON as jansson reads it, or nested deeper than
 * VALIDATE_MAX_DEPTH) is handed to jansson once more only to word the error as
 * before ("not JSON (at byte 7): ..."): that path is cold and its messages are
 * unchanged.
 *
 * Deliberately stricter than @ag-ui/client (schema reading, as zod parses):
 * an unknown event type is a violation (the client drops it with a warning);
 * an unrecognised discriminated-union member (message role, content part,
 * outcome, patch op) is a violation (the client strips it); the pre-1.0 nulls
 * the client's compatibility boundary turns into absence (rawEvent, result,
 * parentMessageId, outcome: null) are violations; invalid UTF-8, lone surrogate
 * escapes and numbers beyond double range are not JSON (jansson refuses them, and
 * so does the tape; the client's decoder would replace or accept them); nesting
 * deeper than VALIDATE_MAX_DEPTH is refused. Duplicate keys are not: the last
 * one counts, as in JSON.parse. */
#include "proto/validate.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/jtape.h"
#include "proto/schema.h"
#include "proto/validate_int.h"

/* ---- stage 1: each event's fields, in zod's key order (type is checked first) ---- */

#define REQ     SCHEMA_REQ
#define OPT     SCHEMA_OPT
#define REQ_OF  SCHEMA_REQ_OF
#define OPT_OF  SCHEMA_OPT_OF
#define ENUM    SCHEMA_ENUM
#define END     SCHEMA_END
#define SHAPE(fields)        { NULL, 0, NULL, fields }
#define UNION(tag, variants) { tag, sizeof(tag) - 1, variants, NULL }
/* BaseEventSchema's optional fields, and AttributableSchema's. */
#define BASE OPT("timestamp", SK_INT), OPT("rawEvent", SK_NONNULL), OPT("metadata", SK_OBJ)
#define ATTR OPT("subagentRunId", SK_STR)

static const char *const ev_tool_lit[] = { "tool", NULL };
static const char *const ev_reasoning_lit[] = { "reasoning", NULL };
static const char *const ev_subtypes[] = { "tool-call", "message", NULL };

/* JsonPatchSchema (STATE_DELTA.delta, ACTIVITY_DELTA.patch). */
static const schema_field_t ev_op_value[] = { REQ("path", SK_PTR), REQ("value", SK_ANY), END };
static const schema_field_t ev_op_path[]  = { REQ("path", SK_PTR), END };
static const schema_field_t ev_op_from[]  = { REQ("from", SK_PTR), REQ("path", SK_PTR), END };
static const schema_variant_t ev_op_variants[] = {
    { "add", ev_op_value }, { "remove", ev_op_path }, { "replace", ev_op_value },
    { "move", ev_op_from }, { "copy", ev_op_from }, { "test", ev_op_value }, { NULL, NULL }
};
static const schema_shape_t ev_patch_op = UNION("op", ev_op_variants);

/* RUN_FINISHED's outcome and usage, SUBAGENT_FINISHED's outcome. */
static const schema_field_t ev_interrupt_fields[] = {
    OPT("subagentRunId", SK_STR), REQ("id", SK_STR), REQ("reason", SK_STR),
    OPT("message", SK_STR), OPT("toolCallId", SK_STR), OPT("responseSchema", SK_OBJ),
    OPT("expiresAt", SK_STR), OPT("metadata", SK_OBJ), END
};
static const schema_shape_t ev_interrupt = SHAPE(ev_interrupt_fields);
static const schema_field_t ev_out_success[] = { OPT("pendingToolCallIds", SK_STR_ARRAY), END };
static const schema_field_t ev_out_interrupt[] = {
    SCHEMA_F("interrupts", SK_ARRAY, true, 1, &ev_interrupt, NULL), END
};
static const schema_field_t ev_out_none[] = { END };
static const schema_variant_t ev_run_out_variants[] = {
    { "success", ev_out_success }, { "interrupt", ev_out_interrupt },
    { "cancelled", ev_out_none }, { NULL, NULL }
};
static const schema_shape_t ev_run_outcome = UNION("type", ev_run_out_variants);
static const schema_field_t ev_out_suspended[] = { OPT("interruptIds", SK_STR_ARRAY), END };
static const schema_variant_t ev_sub_out_variants[] = {
    { "success", ev_out_none }, { "suspended", ev_out_suspended }, { NULL, NULL }
};
static const schema_shape_t ev_sub_outcome = UNION("type", ev_sub_out_variants);
static const schema_field_t ev_usage_fields[] = {
    OPT("provider", SK_STR), OPT("model", SK_STR), OPT("inputTokens", SK_UINT),
    OPT("outputTokens", SK_UINT), OPT("totalTokens", SK_UINT), OPT("reasoningTokens", SK_UINT),
    OPT("cachedInputTokens", SK_UINT), OPT("cacheWriteInputTokens", SK_UINT), END
};
static const schema_shape_t ev_usage = SHAPE(ev_usage_fields);

/* The 31 events, each in zod's key order (type itself is checked first). */
static const schema_field_t ev_run_started[] = {
    BASE, REQ("threadId", SK_STR), REQ("runId", SK_STR), OPT("protocolVersion", SK_STR),
    OPT("parentRunId", SK_STR), OPT_OF("input", SK_SHAPE, &schema_input), END
};
static const schema_field_t ev_run_finished[] = {
    BASE, REQ("threadId", SK_STR), REQ("runId", SK_STR), OPT("result", SK_NONNULL),
    OPT_OF("outcome", SK_SHAPE, &ev_run_outcome), OPT_OF("usage", SK_ARRAY, &ev_usage), END
};
static const schema_field_t ev_run_error[] = {
    BASE, REQ("message", SK_STR), OPT("code", SK_STR), OPT_OF("usage", SK_ARRAY, &ev_usage), END
};
static const schema_field_t ev_text_start[] = {
    BASE, ATTR, REQ("messageId", SK_STR), ENUM("role", false, schema_text_roles),
    OPT("name", SK_STR), END
};
static const schema_field_t ev_id_delta[] = {       /* TEXT_MESSAGE_CONTENT, REASONING_MESSAGE_CONTENT */
    BASE, ATTR, REQ("messageId", SK_STR), REQ("delta", SK_STR), END
};
static const schema_field_t ev_id_only[] = {        /* TEXT_MESSAGE_END, REASONING_START/_MESSAGE_END/_END */
    BASE, ATTR, REQ("messageId", SK_STR), END
};
static const schema_field_t ev_text_chunk[] = {
    BASE, ATTR, OPT("messageId", SK_STR), ENUM("role", false, schema_text_roles),
    OPT("delta", SK_STR), OPT("name", SK_STR), END
};
static const schema_field_t ev_tool_start[] = {
    BASE, ATTR, REQ("toolCallId", SK_STR), REQ("toolCallName", SK_STR),
    OPT("parentMessageId", SK_STR), END
};
static const schema_field_t ev_tool_args[] = {
    BASE, ATTR, REQ("toolCallId", SK_STR), REQ("delta", SK_STR), END
};
static const schema_field_t ev_tool_end[] = { BASE, ATTR, REQ("toolCallId", SK_STR), END };
static const schema_field_t ev_tool_chunk[] = {
    BASE, ATTR, OPT("toolCallId", SK_STR), OPT("toolCallName", SK_STR),
    OPT("parentMessageId", SK_STR), OPT("delta", SK_STR), END
};
static const schema_field_t ev_tool_result[] = {
    BASE, ATTR, REQ("messageId", SK_STR), REQ("toolCallId", SK_STR),
    REQ_OF("content", SK_STR_OR_ARRAY, &schema_content_part),
    ENUM("role", false, ev_tool_lit), END
};
static const schema_field_t ev_state_snapshot[] = { BASE, ATTR, REQ("snapshot", SK_ANY), END };
static const schema_field_t ev_state_delta[] = {
    BASE, ATTR, REQ_OF("delta", SK_ARRAY, &ev_patch_op), END
};
static const schema_field_t ev_messages_snapshot[] = {
    BASE, REQ_OF("messages", SK_ARRAY, &schema_message), END
};
static const schema_field_t ev_activity_snapshot[] = {
    BASE, ATTR, REQ("messageId", SK_STR), REQ("activityType", SK_STR), REQ("content", SK_OBJ),
    OPT("replace", SK_BOOL), END
};
static const schema_field_t ev_activity_delta[] = {
    BASE, ATTR, REQ("messageId", SK_STR), REQ("activityType", SK_STR),
    REQ_OF("patch", SK_ARRAY, &ev_patch_op), END
};
static const schema_field_t ev_raw[] = { BASE, ATTR, REQ("event", SK_ANY), OPT("source", SK_STR), END };
static const schema_field_t ev_custom[] = { BASE, ATTR, REQ("name", SK_STR), REQ("value", SK_ANY), END };
static const schema_field_t ev_step[] = { BASE, ATTR, REQ("stepName", SK_STR), END };
static const schema_field_t ev_reasoning_msg_start[] = {
    BASE, ATTR, REQ("messageId", SK_STR), ENUM("role", true, ev_reasoning_lit),
    END
};
static const schema_field_t ev_reasoning_chunk[] = {
    BASE, ATTR, OPT("messageId", SK_STR), OPT("delta", SK_STR), END
};
static const schema_field_t ev_reasoning_encrypted[] = {
    BASE, ATTR, ENUM("subtype", true, ev_subtypes),
    REQ("entityId", SK_STR), REQ("encryptedValue", SK_STR), END
};
static const schema_field_t ev_subagent_started[] = {
    BASE, REQ("subagentRunId", SK_STR), REQ("name", SK_STR), OPT("description", SK_STR),
    OPT("parentSubagentRunId", SK_STR), OPT("parentToolCallId", SK_STR),
    OPT("parentMessageId", SK_STR), END
};
static const schema_field_t ev_subagent_finished[] = {
    BASE, REQ("subagentRunId", SK_STR), OPT("result", SK_NONNULL),
    OPT_OF("outcome", SK_SHAPE, &ev_sub_outcome), END
};
static const schema_field_t ev_subagent_error[] = {
    BASE, REQ("subagentRunId", SK_STR), REQ("message", SK_STR), OPT("code", SK_STR), END
};

static const schema_field_t *const vd_events[AGUI_TYPE_COUNT] = {
    [AGUI_RUN_STARTED] = ev_run_started,
    [AGUI_RUN_FINISHED] = ev_run_finished,
    [AGUI_RUN_ERROR] = ev_run_error,
    [AGUI_TEXT_MESSAGE_START] = ev_text_start,
    [AGUI_TEXT_MESSAGE_CONTENT] = ev_id_delta,
    [AGUI_TEXT_MESSAGE_END] = ev_id_only,
    [AGUI_TEXT_MESSAGE_CHUNK] = ev_text_chunk,
    [AGUI_TOOL_CALL_START] = ev_tool_start,
    [AGUI_TOOL_CALL_ARGS] = ev_tool_args,
    [AGUI_TOOL_CALL_END] = ev_tool_end,
    [AGUI_TOOL_CALL_CHUNK] = ev_tool_chunk,
    [AGUI_TOOL_CALL_RESULT] = ev_tool_result,
    [AGUI_STATE_SNAPSHOT] = ev_state_snapshot,
    [AGUI_STATE_DELTA] = ev_state_delta,
    [AGUI_MESSAGES_SNAPSHOT] = ev_messages_snapshot,
    [AGUI_ACTIVITY_SNAPSHOT] = ev_activity_snapshot,
    [AGUI_ACTIVITY_DELTA] = ev_activity_delta,
    [AGUI_RAW] = ev_raw,
    [AGUI_CUSTOM] = ev_custom,
    [AGUI_STEP_STARTED] = ev_step,
    [AGUI_STEP_FINISHED] = ev_step,
    [AGUI_REASONING_START] = ev_id_only,
    [AGUI_REASONING_MESSAGE_START] = ev_reasoning_msg_start,
    [AGUI_REASONING_MESSAGE_CONTENT] = ev_id_delta,
    [AGUI_REASONING_MESSAGE_END] = ev_id_only,
    [AGUI_REASONING_MESSAGE_CHUNK] = ev_reasoning_chunk,
    [AGUI_REASONING_END] = ev_id_only,
    [AGUI_REASONING_ENCRYPTED_VALUE] = ev_reasoning_encrypted,
    [AGUI_SUBAGENT_STARTED] = ev_subagent_started,
    [AGUI_SUBAGENT_FINISHED] = ev_subagent_finished,
    [AGUI_SUBAGENT_ERROR] = ev_subagent_error,
};


/* ---- reading an event ---------------------------------------------------------- */

/* Every top-level key any event table names. An event's members are classified
 * once each (a hash on length and three bytes, then one compare), so checking a
 * table of n fields costs n array reads rather than n scans of the members:
 * this halved validate_event's key matching in bench/validate_bench.c. */
enum {
    K_TYPE, K_TIMESTAMP, K_RAW_EVENT, K_METADATA, K_SUBAGENT_RUN_ID, K_THREAD_ID, K_RUN_ID,
    K_PROTOCOL_VERSION, K_PARENT_RUN_ID, K_INPUT, K_RESULT, K_OUTCOME, K_USAGE, K_MESSAGE,
    K_CODE, K_MESSAGE_ID, K_ROLE, K_NAME, K_DELTA, K_TOOL_CALL_ID, K_TOOL_CALL_NAME,
    K_PARENT_MESSAGE_ID, K_CONTENT, K_SNAPSHOT, K_MESSAGES, K_ACTIVITY_TYPE, K_REPLACE,
    K_PATCH, K_EVENT, K_SOURCE, K_VALUE, K_STEP_NAME, K_SUBTYPE, K_ENTITY_ID,
    K_ENCRYPTED_VALUE, K_DESCRIPTION, K_PARENT_SUBAGENT_RUN_ID, K_PARENT_TOOL_CALL_ID,
    K_COUNT
};
static const char *const vd_key_name[K_COUNT] = {
    "type", "timestamp", "rawEvent", "metadata", "subagentRunId", "threadId", "runId",
    "protocolVersion", "parentRunId", "input", "result", "outcome", "usage", "message",
    "code", "messageId", "role", "name", "delta", "toolCallId", "toolCallName",
    "parentMessageId", "content", "snapshot", "messages", "activityType", "replace",
    "patch", "event", "source", "value", "stepName", "subtype", "entityId",
    "encryptedValue", "description", "parentSubagentRunId", "parentToolCallId",
};
#define VD_FIELDS_MAX 16

static uint8_t vd_key_len[K_COUNT];
static uint8_t vd_key_slot[256];                            /* hash -> key + 1 */
static uint8_t vd_field_key[AGUI_TYPE_COUNT][VD_FIELDS_MAX]; /* each table field's key */
static uint8_t vd_type_len[AGUI_TYPE_COUNT];
static pthread_once_t vd_once = PTHREAD_ONCE_INIT;

static inline unsigned vd_key_hash(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    return (unsigned)(n * 61 + u[0] * 7 + u[n / 2] * 3 + u[n - 1]) & 255;
}

/* The key id of s, or -1 for a key no event table names. */
static inline int vd_key(const char *s, size_t n)
{
    if (!n)
        return -1;
    for (unsigned h = vd_key_hash(s, n);; h = (h + 1) & 255) {
        unsigned k = vd_key_slot[h];
        if (!k)
            return -1;
        if (vd_key_len[k - 1] == n && jtape_bytes_eq(vd_key_name[k - 1], s, n))
            return (int)k - 1;
    }
}

static void vd_init_once(void)
{
    for (int t = 0; t < AGUI_TYPE_COUNT; t++)
        vd_type_len[t] = (uint8_t)strlen(agui_type_name((agui_type_t)t));
    for (int k = 0; k < K_COUNT; k++) {
        vd_key_len[k] = (uint8_t)strlen(vd_key_name[k]);
        unsigned h = vd_key_hash(vd_key_name[k], vd_key_len[k]);
        while (vd_key_slot[h])
            h = (h + 1) & 255;
        vd_key_slot[h] = (uint8_t)(k + 1);
    }
    for (int t = 0; t < AGUI_TYPE_COUNT; t++) {
        int i = 0;
        for (const schema_field_t *f = vd_events[t]; f->key; f++, i++) {
            int k = vd_key(f->key, f->klen);
            if (k < 0 || i + 1 >= VD_FIELDS_MAX) {   /* the tables above and the list disagree */
                fprintf(stderr, "validate: event key %s is not in vd_key_name\n", f->key);
                abort();
            }
            vd_field_key[t][i] = (uint8_t)k;
        }
    }
}

void validate_init(void)
{
    pthread_once(&vd_once, vd_init_once);
    jtape_init();
}

/* agui_type_from_name without a strlen per candidate. */
static agui_type_t vd_type(const char *s, size_t n)
{
    for (int t = 0; t < AGUI_TYPE_COUNT; t++)
        if (vd_type_len[t] == n && jtape_bytes_eq(agui_type_name((agui_type_t)t), s, n))
            return (agui_type_t)t;
    return AGUI_TYPE_COUNT;
}

/* The string at value node x, decoded; unset when absent (x == 0). Schema-valid
 * events have strings wherever this is asked. */
static vd_s_t vd_sv(jtape_t *t, uint32_t x)
{
    if (!x || jtape_kind(t, x) != JT_STR)
        return VD_UNSET;
    vd_s_t s = { NULL, 0, true };
    s.p = jtape_str(t, x, &s.n);
    return s;
}

#define GET(k) vd_sv(t, kv[k])
#define HAS(k) (kv[k] != 0)

/* Reads what stages 2 and 3 need from a schema-valid event; kv holds the value
 * node of each key present. */
static void vd_extract(jtape_t *t, const uint32_t *kv, agui_type_t type, vd_ev_t *e)
{
    /* Field by field: a compound literal zeroes the whole struct with rep stos,
     * which showed up at 5% of validate_event under perf. */
    e->type = e->from = type;
    e->id = e->tag = e->parent = e->name = e->role = VD_UNSET;
    e->subtype_tool = e->replace_false = false;
    e->has_delta = e->has_raw = e->has_meta = false;
    e->t = t;
    e->messages = 0;
    switch (type) {
    case AGUI_RUN_STARTED:
        e->messages = kv[K_INPUT] ? jtape_get(t, kv[K_INPUT], "messages", 8) : 0;
        return;
    case AGUI_MESSAGES_SNAPSHOT:
        e->messages = kv[K_MESSAGES];
        return;
    case AGUI_RUN_FINISHED:
    case AGUI_RUN_ERROR:   /* run-scoped: a subagentRunId here is stripped, unread */
        return;
    default:
        break;
    }
    e->tag = GET(K_SUBAGENT_RUN_ID);
    switch (type) {
    case AGUI_TOOL_CALL_CHUNK:
        e->name = GET(K_TOOL_CALL_NAME);
        e->has_delta = HAS(K_DELTA);
        e->has_raw = HAS(K_RAW_EVENT);
        e->has_meta = HAS(K_METADATA);
        /* fall through */
    case AGUI_TOOL_CALL_START:
        e->parent = GET(K_PARENT_MESSAGE_ID);
        /* fall through */
    case AGUI_TOOL_CALL_ARGS:
    case AGUI_TOOL_CALL_END:
        e->id = GET(K_TOOL_CALL_ID);
        break;
    case AGUI_STEP_STARTED:
    case AGUI_STEP_FINISHED:
        e->id = GET(K_STEP_NAME);
        break;
    case AGUI_REASONING_ENCRYPTED_VALUE:
        e->id = GET(K_ENTITY_ID);
        e->subtype_tool = jtape_str_eq(t, kv[K_SUBTYPE], "tool-call", 9);
        break;
    case AGUI_SUBAGENT_STARTED:
        e->parent = GET(K_PARENT_SUBAGENT_RUN_ID);
        /* fall through */
    case AGUI_SUBAGENT_FINISHED:
    case AGUI_SUBAGENT_ERROR:
        e->id = e->tag;
        break;
    case AGUI_ACTIVITY_SNAPSHOT:
        e->id = GET(K_MESSAGE_ID);
        e->replace_false = kv[K_REPLACE] && jtape_kind(t, kv[K_REPLACE]) == JT_FALSE;
        break;
    case AGUI_STATE_SNAPSHOT:
    case AGUI_STATE_DELTA:
    case AGUI_RAW:
    case AGUI_CUSTOM:
        break;
    case AGUI_TEXT_MESSAGE_CHUNK:
        e->name = GET(K_NAME);
        e->role = GET(K_ROLE);
        /* fall through */
    case AGUI_REASONING_MESSAGE_CHUNK:
        e->has_delta = HAS(K_DELTA);
        e->has_raw = HAS(K_RAW_EVENT);
        e->has_meta = HAS(K_METADATA);
        /* fall through */
    default:   /* TEXT_*, REASONING_*, TOOL_CALL_RESULT, ACTIVITY_DELTA */
        e->id = GET(K_MESSAGE_ID);
        break;
    }
}

#undef GET
#undef HAS

/* Each key's value node for the event being checked (0: absent). Per thread and
 * cleared after each event, key by key: zeroing it on the stack per event was a
 * rep stos that perf showed at 5% of validate_event. */
static __thread uint32_t vd_kv[K_COUNT];

static int vd_check_kv(validate_t *v, jtape_t *t, const uint32_t *kv, agui_type_t *type,
                       vd_msg_t *m);

static int vd_check(validate_t *v, jtape_t *t, agui_type_t *type, vd_msg_t *m)
{
    if (jtape_kind(t, 0) != JT_OBJ)
        return m_fail(m, "not a JSON object");
    uint32_t *kv = vd_kv;
    uint8_t set[K_COUNT];
    unsigned n_set = 0;
    for (uint32_t k = 1; k < jtape_end(t, 0); k = jtape_end(t, k + 1)) {
        size_t n;
        const char *name = jtape_str(t, k, &n);
        int id = vd_key(name, n);
        if (id < 0)
            continue;
        if (!kv[id])
            set[n_set++] = (uint8_t)id;
        kv[id] = k + 1;   /* the last of duplicates counts */
    }
    int rc = vd_check_kv(v, t, kv, type, m);
    for (unsigned i = 0; i < n_set; i++)
        kv[set[i]] = 0;
    return rc;
}

static int vd_check_kv(validate_t *v, jtape_t *t, const uint32_t *kv, agui_type_t *type,
                       vd_msg_t *m)
{
    uint32_t jt = kv[K_TYPE];
    if (!jt)
        return m_fail(m, "type: required");
    if (jtape_kind(t, jt) != JT_STR)
        return m_fail(m, "type: expected a string");
    size_t n;
    const char *name = jtape_str(t, jt, &n);
    agui_type_t ty = vd_type(name, n);
    if (ty == AGUI_TYPE_COUNT) {
        m_str(m, "unknown event type ");
        m_id(m, name, n);
        return -EPROTO;
    }
    *type = ty;

    uint32_t fv[VD_FIELDS_MAX];
    const schema_field_t *f = vd_events[ty];
    for (int i = 0; f[i].key; i++)
        fv[i] = kv[vd_field_key[ty][i]];
    schema_ctx_t c;   /* not zeroed: only the path frames in use are read */
    c.t = t;
    c.one_of_always = false;
    c.depth = 0;
    if (schema_check_values(&c, f, fv)) {
        char path[128];
        schema_path(&c, path, sizeof path);
        m_str(m, agui_type_name(ty));
        m_str(m, ": ");
        m_str(m, path);
        m_str(m, ": ");
        return m_fail(m, c.problem);
    }

    if (v->failed) {
        m_str(m, "stream already failed: ");
        m_str(m, v->fail_msg);
        return -EPROTO;
    }
    vd_ev_t e;
    vd_extract(t, kv, ty, &e);
    int rc = vd_sequence(v, &e, m);
    if (rc) {
        v->failed = true;
        memcpy(v->fail_msg, m->buf, m->len + 1);
    }
    return rc;
}

/* ---- input the tape refused (cold): the words jansson would use ------------------ */

/* Counts brackets outside strings; input that fools the count is malformed and
 * jansson rejects it anyway (its own limit is 2048). */
static bool vd_too_deep(const char *p, size_t n)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
            continue;
        }
        switch (ch) {
        case '"':
            in_str = true;
            break;
        case '[': case '{':
            if (++depth > VALIDATE_MAX_DEPTH)
                return true;
            break;
        case ']': case '}':
            if (--depth < 0)
                return false;
            break;
        }
    }
    return false;
}

static int vd_refused(const char *json, size_t len, int rc, vd_msg_t *m)
{
    if (rc == -ENOMEM) {
        m_str(m, "out of memory");
        return -ENOMEM;
    }
    if (vd_too_deep(json, len)) {
        m_fmt(m, "not JSON: nesting deeper than %d", VALIDATE_MAX_DEPTH);
        return -EPROTO;
    }
    const size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_error_t je;
    json_t *root = json_loadb(json, len, flags, &je);
    /* JSON.parse reads an integer of any size as a double; jansson refuses one
     * past int64 unless asked to read every number as a real. */
    if (!root && json_error_code(&je) == json_error_numeric_overflow)
        root = json_loadb(json, len, flags | JSON_DECODE_INT_AS_REAL, &je);
    if (root) {   /* the readers disagree: a jtape bug, which the fuzzer hunts */
        json_decref(root);
        return m_fail(m, "not JSON");
    }
    /* jansson quotes the offending token, which may be any bytes; keep messages ASCII. */
    m_fmt(m, "not JSON (at byte %d): ", je.position);
    m_safe(m, je.text, strnlen(je.text, sizeof je.text));
    return -EPROTO;
}

/* ---- the entry points ------------------------------------------------------------ */

int validate_event(validate_t *v, const char *json, size_t len, agui_type_t *type,
                   char msg[VALIDATE_MSG_MAX])
{
    vd_msg_t m = { msg, 0 };
    msg[0] = '\0';
    *type = AGUI_TYPE_COUNT;
    jtape_t *t = jtape_thread();
    int rc = t ? jtape_parse(t, json, len, VALIDATE_MAX_DEPTH, 0) : -ENOMEM;
    if (rc)
        return vd_refused(json, len, rc, &m);
    return vd_check(v, t, type, &m);
}

validate_t *validate_new(void)
{
    validate_init();
    return calloc(1, sizeof(validate_t));
}

void validate_free(validate_t *v)
{
    if (!v)
        return;
    while (v->chunks) {
        vd_chunk_t *c = v->chunks;
        v->chunks = c->next;
        free(c);
    }
    free(v->ents);
    free(v->slots);
    free(v->lanes);
    free(v);
}

bool validate_run_closed(const validate_t *v)
{
    return !v->failed && (v->run_finished || v->run_error);
}
