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
 * and the checks read the tape where it lies. Why not jansson or yajl, which
 * parse JSON too: on bench/validate_bench.c's 44-event run jansson's tree
 * cost 1190 ns an event and yajl's callbacks alone 182, the tape 75; today an
 * event costs ~460 instructions (make validate-instr).
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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/jsonwhy.h"
#include "proto/jtape.h"
#include "proto/schema.h"
#include "proto/schema_tables.h"
#include "proto/validate_int.h"

/* ---- stage 1: each event's fields, in zod's key order (type is checked first) ---- */

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
 * once each (a hash of its first and last 8 bytes, then a compare of the same
 * two words: vd_dict_t) into bit sets:
 * the keys present, and those whose value is a string. Each type's table is
 * summed up in the same bits (required keys, string fields, fields that need
 * more than a kind test), so a typical event passes stage 1 on three mask
 * tests. Only when a test fails does the ordered walk of the table run
 * (schema_check_values), to report the failure zod would report first. */
enum {
    K_TYPE, K_TIMESTAMP, K_RAW_EVENT, K_METADATA, K_SUBAGENT_RUN_ID, K_THREAD_ID, K_RUN_ID,
    K_PROTOCOL_VERSION, K_PARENT_RUN_ID, K_INPUT, K_RESULT, K_OUTCOME, K_USAGE, K_MESSAGE,
    K_CODE, K_MESSAGE_ID, K_ROLE, K_NAME, K_DELTA, K_TOOL_CALL_ID, K_TOOL_CALL_NAME,
    K_PARENT_MESSAGE_ID, K_CONTENT, K_SNAPSHOT, K_MESSAGES, K_ACTIVITY_TYPE, K_REPLACE,
    K_PATCH, K_EVENT, K_SOURCE, K_VALUE, K_STEP_NAME, K_SUBTYPE, K_ENTITY_ID,
    K_ENCRYPTED_VALUE, K_DESCRIPTION, K_PARENT_SUBAGENT_RUN_ID, K_PARENT_TOOL_CALL_ID,
    K_COUNT
};
_Static_assert(K_COUNT <= 64, "a key set is a uint64_t");
static const char *const vd_key_name[K_COUNT] = {
    "type", "timestamp", "rawEvent", "metadata", "subagentRunId", "threadId", "runId",
    "protocolVersion", "parentRunId", "input", "result", "outcome", "usage", "message",
    "code", "messageId", "role", "name", "delta", "toolCallId", "toolCallName",
    "parentMessageId", "content", "snapshot", "messages", "activityType", "replace",
    "patch", "event", "source", "value", "stepName", "subtype", "entityId",
    "encryptedValue", "description", "parentSubagentRunId", "parentToolCallId",
};
#define VD_FIELDS_MAX 16
#define VD_BIT(k) (UINT64_C(1) << (k))

/* One event type's table as key sets. */
typedef struct vd_tsum {
    uint64_t req;                 /* required */
    uint64_t str;                 /* SK_STR: the value's kind is the whole check */
    uint64_t deep;                /* neither SK_STR nor SK_ANY: schema_check_value */
    uint8_t  field[K_COUNT];      /* a deep key's index in the table */
} vd_tsum_t;

/* A name as two words: bytes [0, 8) and [n - 8, n) from 8 bytes on (they
 * overlap below 16), the same with 4-byte halves from 4 to 7 bytes, and the
 * first, middle and last byte below 4. With n, the words are the whole name
 * up to 16 bytes, so a lookup loads each name once, hashes what it loaded and
 * compares two words; only longer names compare their middle bytes too. */
typedef struct vd_word {
    uint64_t a, b;
    uint32_t n;
    uint8_t  id;
} vd_word_t;

typedef struct vd_dict {
    const char *const *names;
    uint8_t            slot[256];   /* hash -> index + 1 into w */
    vd_word_t          w[64];
} vd_dict_t;

static inline uint64_t vd_ld64(const char *p) { uint64_t x; memcpy(&x, p, 8); return x; }
static inline uint64_t vd_ld32(const char *p) { uint32_t x; memcpy(&x, p, 4); return x; }

static inline void vd_words(const char *s, size_t n, uint64_t *a, uint64_t *b)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n >= 8) {
        *a = vd_ld64(s);
        *b = vd_ld64(s + n - 8);
    } else if (n >= 4) {
        *a = vd_ld32(s) | vd_ld32(s + n - 4) << 32;
        *b = 0;
    } else {
        *a = n ? (uint64_t)u[0] | (uint64_t)u[n / 2] << 8 | (uint64_t)u[n - 1] << 16 : 0;
        *b = 0;
    }
}

static inline unsigned vd_whash(uint64_t a, uint64_t b, size_t n)
{
    return (unsigned)(((a ^ (b >> 3) ^ n) * 0x9e3779b97f4a7c15ull) >> 56);
}

/* The id of s in d, or -1. */
static inline __attribute__((always_inline)) int
vd_lookup(const vd_dict_t *d, const char *s, size_t n)
{
    uint64_t a, b;
    vd_words(s, n, &a, &b);
    for (unsigned h = vd_whash(a, b, n);; h = (h + 1) & 255) {
        unsigned k = d->slot[h];
        if (!k)
            return -1;
        const vd_word_t *w = &d->w[k - 1];
        if (w->a == a && w->b == b && w->n == n &&
            (n <= 16 || jtape_bytes_eq(d->names[w->id] + 8, s + 8, n - 16)))
            return w->id;
    }
}

static void vd_dict_init(vd_dict_t *d, const char *const *names, int count)
{
    d->names = names;
    for (int i = 0; i < count; i++) {
        vd_word_t *w = &d->w[i];
        w->n = (uint32_t)strlen(names[i]);
        w->id = (uint8_t)i;
        vd_words(names[i], w->n, &w->a, &w->b);
        unsigned h = vd_whash(w->a, w->b, w->n);
        while (d->slot[h])
            h = (h + 1) & 255;
        d->slot[h] = (uint8_t)(i + 1);
    }
}

static vd_dict_t   vd_keys_dict, vd_types_dict;
static const char *vd_type_name[AGUI_TYPE_COUNT];
static uint8_t     vd_field_key[AGUI_TYPE_COUNT][VD_FIELDS_MAX]; /* each table field's key */
static vd_tsum_t   vd_tsum[AGUI_TYPE_COUNT];
static pthread_once_t vd_once = PTHREAD_ONCE_INIT;

/* The key id of s, or -1 for a key no event table names. */
static inline int vd_key(const char *s, size_t n) { return vd_lookup(&vd_keys_dict, s, n); }

/* agui_type_from_name, by hash. */
static inline agui_type_t vd_type(const char *s, size_t n)
{
    int t = vd_lookup(&vd_types_dict, s, n);
    return t < 0 ? AGUI_TYPE_COUNT : (agui_type_t)t;
}

static void vd_init_once(void)
{
    _Static_assert(AGUI_TYPE_COUNT <= 64 && K_COUNT <= 64, "names fit vd_dict_t");
    for (int t = 0; t < AGUI_TYPE_COUNT; t++)
        vd_type_name[t] = agui_type_name((agui_type_t)t);
    vd_dict_init(&vd_types_dict, vd_type_name, AGUI_TYPE_COUNT);
    vd_dict_init(&vd_keys_dict, vd_key_name, K_COUNT);
    for (int t = 0; t < AGUI_TYPE_COUNT; t++) {
        int i = 0;
        vd_tsum_t *ts = &vd_tsum[t];
        for (const schema_field_t *f = vd_events[t]; f->key; f++, i++) {
            int k = vd_key(f->key, f->klen);
            if (k < 0 || i + 1 >= VD_FIELDS_MAX || (ts->req | ts->str | ts->deep) & VD_BIT(k)) {
                /* the tables above and the key list disagree */
                fprintf(stderr, "validate: event key %s is not in vd_key_name\n", f->key);
                abort();
            }
            vd_field_key[t][i] = (uint8_t)k;
            if (f->required)
                ts->req |= VD_BIT(k);
            if (f->kind == SK_STR)
                ts->str |= VD_BIT(k);
            else if (f->kind != SK_ANY)
                ts->deep |= VD_BIT(k);
            ts->field[k] = (uint8_t)i;
        }
    }
}

void validate_init(void)
{
    pthread_once(&vd_once, vd_init_once);
    jtape_init();
}

/* An event's top-level members, by key id. */
typedef struct vd_keys {
    uint64_t present;         /* keys present */
    uint64_t strs;            /* ... whose (last) value is a string */
    uint32_t kv[K_COUNT];     /* value node of each present key (the last of duplicates,
                                 as JSON.parse keeps); the rest is not initialised */
} vd_keys_t;

static inline void vd_read_keys(jtape_t *t, vd_keys_t *ks)
{
    uint64_t present = 0, strs = 0;
    const jtape_node_t *nd = t->nodes;
    for (uint32_t k = 1, end = nd[0].next; k < end; k = nd[k + 1].next) {
        size_t n;
        const char *name = jtape_str(t, k, &n);
        /* every event has a type, mostly first: no hashing for it */
        int id = n == 4 && vd_ld32(name) == vd_ld32("type") ? K_TYPE : vd_key(name, n);
        if (id < 0)
            continue;
        uint64_t bit = VD_BIT(id);
        present |= bit;
        strs = (strs & ~bit) | (nd[k + 1].kind == JT_STR ? bit : 0);
        ks->kv[id] = k + 1;
    }
    ks->present = present;
    ks->strs = strs;
}

/* The string value of key k, decoded; unset when absent or not a string. */
static inline vd_s_t vd_sv(jtape_t *t, const vd_keys_t *ks, int k)
{
    if (!(ks->strs & VD_BIT(k)))
        return VD_UNSET;
    vd_s_t s = { NULL, 0, true };
    s.p = jtape_str(t, ks->kv[k], &s.n);
    return s;
}

#define GET(k) vd_sv(t, ks, k)
#define HAS(k) ((ks->present & VD_BIT(k)) != 0)
#define VAL(k) (HAS(k) ? ks->kv[k] : 0)

/* An event of this type with nothing read yet. Field by field: a compound
 * literal zeroes the whole struct with rep stos, which showed up at 5% of
 * validate_event under perf. */
static inline void vd_ev_init(vd_ev_t *e, agui_type_t type, jtape_t *t)
{
    e->type = e->from = type;
    e->id = e->tag = e->parent = e->name = e->role = VD_UNSET;
    e->subtype_tool = e->replace_false = false;
    e->has_delta = e->has_raw = e->has_meta = false;
    e->t = t;
    e->messages = 0;
}

/* Reads what stages 2 and 3 need from a schema-valid event. */
static void vd_extract(jtape_t *t, const vd_keys_t *ks, agui_type_t type, vd_ev_t *e)
{
    vd_ev_init(e, type, t);
    switch (type) {
    case AGUI_RUN_STARTED:
        e->messages = HAS(K_INPUT) ? jtape_get(t, ks->kv[K_INPUT], "messages", 8) : 0;
        return;
    case AGUI_MESSAGES_SNAPSHOT:
        e->messages = VAL(K_MESSAGES);
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
        e->subtype_tool = HAS(K_SUBTYPE) && jtape_str_eq(t, ks->kv[K_SUBTYPE], "tool-call", 9);
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
        e->replace_false = HAS(K_REPLACE) && jtape_kind(t, ks->kv[K_REPLACE]) == JT_FALSE;
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

/* Stage 1 for type ty: 0, or -EPROTO with m naming the first failing field. */
static int vd_check_fields(jtape_t *t, const vd_keys_t *ks, agui_type_t ty, vd_msg_t *m)
{
    const vd_tsum_t *ts = &vd_tsum[ty];
    const schema_field_t *f = vd_events[ty];
    schema_ctx_t c;   /* not zeroed: only the path frames in use are read */
    c.t = t;
    c.one_of_always = false;
    c.depth = 0;
    if ((ks->present & ts->req) == ts->req && !(ks->present & ts->str & ~ks->strs)) {
        uint64_t deep = ks->present & ts->deep;
        for (; deep; deep &= deep - 1) {
            int k = __builtin_ctzll(deep);
            if (schema_check_value(&c, ks->kv[k], &f[ts->field[k]]))
                goto ordered;
        }
        return 0;
    }
ordered:;   /* a field fails: walk the table in zod's order for the first failure */
    uint32_t fv[VD_FIELDS_MAX];
    for (int i = 0; f[i].key; i++)
        fv[i] = VAL(vd_field_key[ty][i]);
    c.depth = 0;
    if (!schema_check_values(&c, f, fv))
        return 0;
    char path[128];
    schema_path(&c, path, sizeof path);
    m_str(m, agui_type_name(ty));
    m_str(m, ": ");
    m_str(m, path);
    m_str(m, ": ");
    return m_fail(m, c.problem);
}

#undef GET
#undef HAS
#undef VAL

/* Stages 2 and 3 of an event that passed stage 1. */
static inline __attribute__((always_inline)) int vd_after_fields(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    if (v->failed) {
        m_str(m, "stream already failed: ");
        m_str(m, v->fail_msg);
        return -EPROTO;
    }
    int rc = vd_sequence(v, e, m);
    if (rc) {
        v->failed = true;
        memcpy(v->fail_msg, m->buf, m->len + 1);
    }
    return rc;
}

/* Inlined into validate_event: a call and its register saves cost more than
 * stage 1 of a typical event. */
static inline __attribute__((always_inline)) int
vd_check(validate_t *v, jtape_t *t, agui_type_t *type, vd_msg_t *m)
{
    if (jtape_kind(t, 0) != JT_OBJ)
        return m_fail(m, "not a JSON object");
    vd_keys_t ks;
    vd_read_keys(t, &ks);
    if (!(ks.present & VD_BIT(K_TYPE)))
        return m_fail(m, "type: required");
    if (!(ks.strs & VD_BIT(K_TYPE)))
        return m_fail(m, "type: expected a string");
    size_t n;
    const char *name = jtape_str(t, ks.kv[K_TYPE], &n);
    agui_type_t ty = vd_type(name, n);
    if (ty == AGUI_TYPE_COUNT) {
        m_str(m, "unknown event type ");
        m_id(m, name, n);
        return -EPROTO;
    }
    *type = ty;
    int rc = vd_check_fields(t, &ks, ty, m);
    if (rc)
        return rc;
    vd_ev_t e;
    vd_extract(t, &ks, ty, &e);
    return vd_after_fields(v, &e, m);
}

/* ---- the delta events' usual shape, without the tape --------------------------- */

/* TEXT_MESSAGE_CONTENT and TOOL_CALL_ARGS, one per token or argument piece,
 * are most of any stream, and agents write them in one shape: the TypeScript
 * encoder's JSON.stringify and the Python SDK's pydantic dump both give
 * {"type":"TEXT_MESSAGE_CONTENT","messageId":"...","delta":"..."}. That exact
 * shape passes stage 1 by construction, so only its two strings need reading.
 * Anything else (whitespace, another key order, more keys, an escaped id, a
 * string the scanner refuses) returns AGUI_TYPE_COUNT and takes the tape, so
 * both paths give the same verdicts: fuzz_validate runs every input through
 * both (validate_event_tape) and compares. */
#define VD_FAST(ty, id, type) { "{\"type\":\"" ty "\",\"" id "\":\"", sizeof("{\"type\":\"" ty "\",\"" id "\":\"") - 1, type }
static const struct vd_fast { const char *head; uint8_t n; agui_type_t type; } vd_fast[] = {
    VD_FAST("TEXT_MESSAGE_CONTENT", "messageId", AGUI_TEXT_MESSAGE_CONTENT),
    VD_FAST("TOOL_CALL_ARGS", "toolCallId", AGUI_TOOL_CALL_ARGS),
};
#undef VD_FAST

static agui_type_t vd_fast_shape(const char *json, size_t len, vd_s_t *id)
{
    static const char mid[] = "\",\"delta\":\"";
    const size_t mn = sizeof mid - 1;
    const char *end = json + len;
    if (len < 16 || len >= UINT32_MAX || json[9] != 'T')   /* after {"type":" both names start with T */
        return AGUI_TYPE_COUNT;
    for (size_t i = 0; i < sizeof vd_fast / sizeof vd_fast[0]; i++) {
        const struct vd_fast *f = &vd_fast[i];
        if (len < (size_t)f->n + mn + 2 || memcmp(json, f->head, f->n))
            continue;
        bool esc;
        const char *q = jtape_scan_str(json + f->n, end, json, &esc);
        if (!q || esc || (size_t)(end - q) < mn + 2 || memcmp(q, mid, mn))
            return AGUI_TYPE_COUNT;
        const char *d = jtape_scan_str(q + mn, end, json, &esc);
        if (!d || d + 2 != end || d[1] != '}')
            return AGUI_TYPE_COUNT;
        *id = (vd_s_t){ json + f->n, (size_t)(q - json - f->n), true };
        return f->type;
    }
    return AGUI_TYPE_COUNT;
}

static int vd_fast_check(validate_t *v, agui_type_t ty, vd_s_t id, vd_msg_t *m)
{
    vd_ev_t e;
    vd_ev_init(&e, ty, NULL);   /* no tape: read only for RUN_STARTED and MESSAGES_SNAPSHOT */
    e.id = id;
    return vd_after_fields(v, &e, m);
}

/* ---- input the tape refused (cold): the words jansson would use ------------------ */

static int vd_refused(const char *json, size_t len, int rc, vd_msg_t *m)
{
    if (rc == -ENOMEM) {
        m_str(m, "out of memory");
        return -ENOMEM;
    }
    if (jtape_too_deep(json, len, VALIDATE_MAX_DEPTH)) {
        m_fmt(m, "not JSON: nesting deeper than %d", VALIDATE_MAX_DEPTH);
        return -EPROTO;
    }
    json_error_t je;
    if (!jsonwhy_refused(json, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je))
        return m_fail(m, "not JSON");   /* the readers disagree: a jtape bug, which the fuzzer hunts */
    /* jansson quotes the offending token, which may be any bytes; keep messages ASCII. */
    m_fmt(m, "not JSON (at byte %d): ", je.position);
    m_safe(m, je.text, strnlen(je.text, sizeof je.text));
    return -EPROTO;
}

/* ---- the entry points ------------------------------------------------------------ */

int validate_event_tape(validate_t *v, const char *json, size_t len, agui_type_t *type,
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

int validate_event(validate_t *v, const char *json, size_t len, agui_type_t *type,
                   char msg[VALIDATE_MSG_MAX])
{
    vd_s_t id;
    agui_type_t ty = vd_fast_shape(json, len, &id);
    if (ty == AGUI_TYPE_COUNT)
        return validate_event_tape(v, json, len, type, msg);
    vd_msg_t m = { msg, 0 };
    msg[0] = '\0';
    *type = ty;
    return vd_fast_check(v, ty, id, &m);
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
