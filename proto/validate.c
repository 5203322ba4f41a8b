/* validate: the AG-UI events an upstream agent sends, checked the way
 * @ag-ui/client 1.0.0 checks them before anything reaches an application. Its
 * pipeline has three stages and so does this file:
 *
 *   1. schema (client enforce/ -> @ag-ui/core's zod EventSchema): a JSON object
 *      of a known type whose described fields have the right types; objects are
 *      loose, so unknown keys pass and are never looked at again (the client
 *      strips them before stage 3 reads anything);
 *   2. chunk expansion (client chunks/transform.ts): TEXT_MESSAGE_CHUNK,
 *      TOOL_CALL_CHUNK and REASONING_MESSAGE_CHUNK become the START / CONTENT /
 *      END events they stand for, per "lane" (the subagent a chunk belongs to);
 *   3. sequence rules (client verify/verify.ts, verifyEvents) on what stage 2
 *      produced. The rules are listed at vq_event().
 *
 * Invariants. A validate_t owns everything it remembers: run flags, a table of
 * ids (owner records, open flags) in its own storage, and the chunk lanes. No
 * jansson value outlives validate_event(): the tree is built in a per-thread
 * bump arena (or malloc'd when the arena is full or absent) and dropped before
 * return, so ids that must be remembered are copied. What is remembered is
 * bounded (VALIDATE_MAX_*) and reset at each new run, as verify resets its maps.
 *
 * Allocation. json_set_alloc_funcs is process-wide, so the hooks serve every
 * jansson user: they bump-allocate only while validate_event has activated the
 * calling thread's arena, and otherwise call malloc. The free hook ignores
 * pointers inside the calling thread's arena and passes all others to free, so
 * trees made before the hooks went in, or on other threads, are unaffected.
 * Measured with bench/validate_bench.c (see there for numbers).
 *
 * Deliberately stricter than @ag-ui/client (schema reading, as zod parses):
 * an unknown event type is a violation (the client drops it with a warning);
 * an unrecognised discriminated-union member (message role, content part,
 * outcome, patch op) is a violation (the client strips it); the pre-1.0 nulls
 * the client's compatibility boundary turns into absence (rawEvent, result,
 * parentMessageId, outcome: null) are violations; invalid UTF-8, lone surrogate
 * escapes and numbers beyond double range are not JSON (jansson refuses them;
 * the client's decoder would replace or accept them); nesting deeper than
 * VALIDATE_MAX_DEPTH is refused before parsing. */
#include "proto/validate.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Compile with -DVALIDATE_ARENA=0 for plain malloc (the benchmark's baseline). */
#ifndef VALIDATE_ARENA
#define VALIDATE_ARENA 1
#endif

/* ---- the per-thread parse arena --------------------------------------------- */

#if defined(__SANITIZE_ADDRESS__)
#define VD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VD_ASAN 1
#endif
#endif
#ifdef VD_ASAN
#include <sanitizer/asan_interface.h>
/* Under ASan each allocation gets a poisoned size header, which doubles as a
 * redzone, and freed or reset memory is poisoned: overruns and use after free
 * inside the arena are reported as they would be with malloc. */
#define VD_HDR 16
#else
#define VD_HDR 0
#endif

/* A 44-event text run needs under 2 KiB per event; a large MESSAGES_SNAPSHOT
 * spills to malloc, which is correct, only slower (cold path). */
#define VD_ARENA_SIZE (64 * 1024)

typedef struct vd_arena {
    uintptr_t lo, hi;       /* [lo, hi): every pointer the arena hands out */
    char     *next;
    size_t    spilled;      /* allocations in this activation that went to malloc */
    bool      active;       /* inside validate_event on this thread */
} vd_arena_t;

static pthread_once_t vd_once = PTHREAD_ONCE_INIT;

#if VALIDATE_ARENA
static __thread vd_arena_t *vd_tls;
static pthread_key_t  vd_key;          /* frees a thread's arena when it exits */
static bool           vd_key_ok;

static void *vd_malloc(size_t n)
{
    vd_arena_t *a = vd_tls;
    if (a && a->active) {
        size_t need = VD_HDR + ((n + 15) & ~(size_t)15);
        if (n <= VD_ARENA_SIZE && need <= a->hi - (uintptr_t)a->next) {
            char *p = a->next + VD_HDR;
#ifdef VD_ASAN
            ASAN_UNPOISON_MEMORY_REGION(a->next, VD_HDR);
            memcpy(a->next, &n, sizeof n);
            ASAN_POISON_MEMORY_REGION(a->next, VD_HDR);
            ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
            a->next += need;
            return p;
        }
        a->spilled++;
    }
    return malloc(n);
}

static void vd_free(void *ptr)
{
    vd_arena_t *a = vd_tls;
    uintptr_t u = (uintptr_t)ptr;
    if (a && u >= a->lo && u < a->hi) {
#ifdef VD_ASAN
        size_t n;
        char *h = (char *)ptr - VD_HDR;
        ASAN_UNPOISON_MEMORY_REGION(h, VD_HDR);
        memcpy(&n, h, sizeof n);
        ASAN_POISON_MEMORY_REGION(h, VD_HDR + n);
#endif
        return;   /* arena memory goes back all at once, in vd_arena_reset */
    }
    free(ptr);
}

static void vd_arena_destroy(void *p)
{
    vd_arena_t *a = p;
    if (vd_tls == a)
        vd_tls = NULL;
#ifdef VD_ASAN
    ASAN_UNPOISON_MEMORY_REGION((void *)a->lo, VD_ARENA_SIZE);
#endif
    free((void *)a->lo);
    free(a);
}

static void vd_init_arena(void)
{
    vd_key_ok = pthread_key_create(&vd_key, vd_arena_destroy) == 0;
    json_set_alloc_funcs(vd_malloc, vd_free);
}

/* The calling thread's arena, made on first use; NULL means plain malloc. */
static vd_arena_t *vd_arena_get(void)
{
    vd_arena_t *a = vd_tls;
    if (a || !vd_key_ok)
        return a;
    a = malloc(sizeof *a);
    char *base = malloc(VD_ARENA_SIZE);
    if (!a || !base || pthread_setspecific(vd_key, a)) {
        free(base);
        free(a);
        return NULL;
    }
    *a = (vd_arena_t){ .lo = (uintptr_t)base, .hi = (uintptr_t)base + VD_ARENA_SIZE,
                       .next = base };
#ifdef VD_ASAN
    ASAN_POISON_MEMORY_REGION(base, VD_ARENA_SIZE);
#endif
    vd_tls = a;
    return a;
}

static void vd_arena_rewind(vd_arena_t *a)
{
#ifdef VD_ASAN
    ASAN_POISON_MEMORY_REGION((void *)a->lo, (size_t)((uintptr_t)a->next - a->lo));
#endif
    a->next = (char *)a->lo;
    a->spilled = 0;
}
#endif

static uint8_t vd_type_len[AGUI_TYPE_COUNT];

static void vd_init_once(void)
{
    for (int t = 0; t < AGUI_TYPE_COUNT; t++)
        vd_type_len[t] = (uint8_t)strlen(agui_type_name((agui_type_t)t));
#if VALIDATE_ARENA
    vd_init_arena();
#endif
}

void validate_init(void)
{
    pthread_once(&vd_once, vd_init_once);
}

/* ---- violation messages: short, ASCII, always NUL-terminated ----------------- */

#define VD_ID_SHOW 32   /* characters of an id shown before "..." */

typedef struct vd_msg {
    char  *buf;         /* VALIDATE_MSG_MAX bytes */
    size_t len;
} vd_msg_t;

/* s must be printable ASCII; what does not fit is cut. */
static void m_raw(vd_msg_t *m, const char *s, size_t n)
{
    size_t room = VALIDATE_MSG_MAX - 1 - m->len;
    if (n > room)
        n = room;
    memcpy(m->buf + m->len, s, n);
    m->len += n;
    m->buf[m->len] = '\0';
}

static void m_str(vd_msg_t *m, const char *s) { m_raw(m, s, strlen(s)); }

static void m_fmt(vd_msg_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void m_fmt(vd_msg_t *m, const char *fmt, ...)
{
    char tmp[VALIDATE_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        m_raw(m, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Bytes from the wire: quoted, anything but printable ASCII shown as '?'. */
static void m_id(vd_msg_t *m, const char *p, size_t n)
{
    char tmp[VD_ID_SHOW + 5];
    size_t k = 0;
    tmp[k++] = '\'';
    for (size_t i = 0; i < n && i < VD_ID_SHOW; i++) {
        unsigned char c = (unsigned char)p[i];
        tmp[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (n > VD_ID_SHOW) {
        memcpy(tmp + k, "...", 3);
        k += 3;
    }
    tmp[k++] = '\'';
    m_raw(m, tmp, k);
}

/* Text from elsewhere (jansson's error), printable ASCII only. */
static void m_safe(vd_msg_t *m, const char *p, size_t n)
{
    for (size_t i = 0; i < n && m->len < VALIDATE_MSG_MAX - 1; i++) {
        unsigned char c = (unsigned char)p[i];
        m->buf[m->len++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    m->buf[m->len] = '\0';
}

static int m_fail(vd_msg_t *m, const char *s)
{
    m_str(m, s);
    return -EPROTO;
}

/* ---- stage 1: the schema, as data (transcribed from @ag-ui/core dist/schemas.mjs) */

enum vs_kind {
    VS_ANY,          /* present, any value, null included */
    VS_NONNULL,      /* z.any().refine(v => v !== null) */
    VS_STR,
    VS_BOOL,
    VS_INT,          /* z.int() within +-(2^53 - 1) */
    VS_UINT,         /* z.int().min(0).max(2^53 - 1) */
    VS_OBJ,          /* a non-null, non-array object (MetadataSchema and the like) */
    VS_ENUM,         /* a string from `oneof` */
    VS_PTR,          /* JsonPointerSchema: ^(/([^/~]|~[01])*)*$ */
    VS_SHAPE,        /* an object checked against `shape` */
    VS_ARRAY,        /* an array of `shape`, at least min_items long */
    VS_STR_ARRAY,
    VS_STR_OR_ARRAY, /* z.union([z.string(), z.array(shape)]) */
};

typedef struct vs_shape vs_shape_t;

typedef struct vs_field {
    const char        *key;
    uint8_t            kind;
    bool               required;
    uint8_t            min_items;
    const vs_shape_t  *shape;
    const char *const *oneof;
    const char        *oneof_msg;
} vs_field_t;

typedef struct vs_variant {
    const char       *tag;
    const vs_field_t *fields;
} vs_variant_t;

/* A loose object (tag == NULL: fields) or a discriminated union on `tag`. */
struct vs_shape {
    const char         *tag;
    const char         *tag_msg;
    const vs_variant_t *variants;   /* ends with tag == NULL */
    const vs_field_t   *fields;
};

#define REQ(k, kd)          { k, kd, true, 0, NULL, NULL, NULL }
#define OPT(k, kd)          { k, kd, false, 0, NULL, NULL, NULL }
#define REQ_OF(k, kd, sh)   { k, kd, true, 0, sh, NULL, NULL }
#define OPT_OF(k, kd, sh)   { k, kd, false, 0, sh, NULL, NULL }
#define ENUM(k, rq, l, msg) { k, VS_ENUM, rq, 0, NULL, l, msg }
#define END                 { NULL, VS_ANY, false, 0, NULL, NULL, NULL }
/* BaseEventSchema's optional fields, and AttributableSchema's. */
#define BASE OPT("timestamp", VS_INT), OPT("rawEvent", VS_NONNULL), OPT("metadata", VS_OBJ)
#define ATTR OPT("subagentRunId", VS_STR)

static const char *const vs_text_roles[] = { "developer", "system", "assistant", "user", NULL };
static const char *const vs_tool_lit[] = { "tool", NULL };
static const char *const vs_reasoning_lit[] = { "reasoning", NULL };
static const char *const vs_function_lit[] = { "function", NULL };
static const char *const vs_subtypes[] = { "tool-call", "message", NULL };
static const char *const vs_resume_status[] = { "resolved", "cancelled", NULL };
#define TEXT_ROLES_MSG "expected one of developer, system, assistant, user"

/* Content parts and their sources. */
static const vs_field_t vs_src_data[] = { REQ("value", VS_STR), REQ("mimeType", VS_STR), END };
static const vs_field_t vs_src_url[]  = { REQ("value", VS_STR), OPT("mimeType", VS_STR), END };
static const vs_field_t vs_src_file[] = {
    REQ("value", VS_STR), OPT("provider", VS_STR), OPT("mimeType", VS_STR), END
};
static const vs_variant_t vs_src_variants[] = {
    { "data", vs_src_data }, { "url", vs_src_url }, { "file", vs_src_file }, { NULL, NULL }
};
static const vs_shape_t vs_part_source = {
    "type", "expected one of data, url, file", vs_src_variants, NULL
};
static const vs_field_t vs_part_text[] = {
    OPT("id", VS_STR), REQ("text", VS_STR), OPT("metadata", VS_NONNULL), END
};
static const vs_field_t vs_part_media[] = {
    OPT("id", VS_STR), REQ_OF("source", VS_SHAPE, &vs_part_source), OPT("metadata", VS_NONNULL), END
};
static const vs_variant_t vs_part_variants[] = {
    { "text", vs_part_text }, { "image", vs_part_media }, { "audio", vs_part_media },
    { "video", vs_part_media }, { "document", vs_part_media }, { NULL, NULL }
};
static const vs_shape_t vs_content_part = {
    "type", "expected one of text, image, audio, video, document", vs_part_variants, NULL
};

/* Messages (MessageSchema) and tool calls. */
static const vs_field_t vs_function_fields[] = { REQ("name", VS_STR), REQ("arguments", VS_STR), END };
static const vs_shape_t vs_function = { NULL, NULL, NULL, vs_function_fields };
static const vs_field_t vs_tool_call_fields[] = {
    REQ("id", VS_STR), ENUM("type", true, vs_function_lit, "expected function"),
    REQ_OF("function", VS_SHAPE, &vs_function), OPT("encryptedValue", VS_STR),
    OPT("metadata", VS_OBJ), END
};
static const vs_shape_t vs_tool_call = { NULL, NULL, NULL, vs_tool_call_fields };
static const vs_field_t vs_msg_text_only[] = {      /* developer, system */
    OPT("subagentRunId", VS_STR), REQ("id", VS_STR), OPT("name", VS_STR),
    OPT("encryptedValue", VS_STR), OPT("metadata", VS_OBJ), REQ("content", VS_STR), END
};
static const vs_field_t vs_msg_assistant[] = {
    OPT("subagentRunId", VS_STR), REQ("id", VS_STR), OPT("name", VS_STR),
    OPT("encryptedValue", VS_STR), OPT("metadata", VS_OBJ), OPT("content", VS_STR),
    OPT_OF("toolCalls", VS_ARRAY, &vs_tool_call), END
};
static const vs_field_t vs_msg_user[] = {
    OPT("subagentRunId", VS_STR), REQ("id", VS_STR), OPT("name", VS_STR),
    OPT("encryptedValue", VS_STR), OPT("metadata", VS_OBJ),
    REQ_OF("content", VS_STR_OR_ARRAY, &vs_content_part), END
};
static const vs_field_t vs_msg_tool[] = {
    OPT("subagentRunId", VS_STR), REQ("id", VS_STR),
    REQ_OF("content", VS_STR_OR_ARRAY, &vs_content_part), REQ("toolCallId", VS_STR),
    OPT("error", VS_STR), OPT("encryptedValue", VS_STR), OPT("metadata", VS_OBJ), END
};
static const vs_field_t vs_msg_activity[] = {
    OPT("subagentRunId", VS_STR), REQ("id", VS_STR), REQ("activityType", VS_STR),
    REQ("content", VS_OBJ), OPT("metadata", VS_OBJ), END
};
static const vs_field_t vs_msg_reasoning[] = {
    OPT("subagentRunId", VS_STR), REQ("id", VS_STR), REQ("content", VS_STR),
    OPT("encryptedValue", VS_STR), OPT("metadata", VS_OBJ), END
};
static const vs_variant_t vs_msg_variants[] = {
    { "developer", vs_msg_text_only }, { "system", vs_msg_text_only },
    { "assistant", vs_msg_assistant }, { "user", vs_msg_user }, { "tool", vs_msg_tool },
    { "activity", vs_msg_activity }, { "reasoning", vs_msg_reasoning }, { NULL, NULL }
};
static const vs_shape_t vs_message = {
    "role", "expected one of developer, system, assistant, user, tool, activity, reasoning",
    vs_msg_variants, NULL
};

/* RunAgentInputSchema (RUN_STARTED.input). */
static const vs_field_t vs_tool_fields[] = {
    REQ("name", VS_STR), REQ("description", VS_STR), OPT("parameters", VS_NONNULL),
    OPT("metadata", VS_OBJ), END
};
static const vs_shape_t vs_tool = { NULL, NULL, NULL, vs_tool_fields };
static const vs_field_t vs_context_fields[] = { REQ("description", VS_STR), REQ("value", VS_STR), END };
static const vs_shape_t vs_context = { NULL, NULL, NULL, vs_context_fields };
static const vs_field_t vs_resume_fields[] = {
    REQ("interruptId", VS_STR),
    ENUM("status", true, vs_resume_status, "expected one of resolved, cancelled"),
    OPT("payload", VS_NONNULL), OPT("metadata", VS_OBJ), END
};
static const vs_shape_t vs_resume = { NULL, NULL, NULL, vs_resume_fields };
static const vs_field_t vs_input_fields[] = {
    REQ("threadId", VS_STR), REQ("runId", VS_STR), OPT("protocolVersion", VS_STR),
    OPT("parentRunId", VS_STR), OPT("state", VS_ANY),
    REQ_OF("messages", VS_ARRAY, &vs_message), OPT_OF("tools", VS_ARRAY, &vs_tool),
    OPT_OF("context", VS_ARRAY, &vs_context), OPT("forwardedProps", VS_NONNULL),
    OPT_OF("resume", VS_ARRAY, &vs_resume), END
};
static const vs_shape_t vs_input = { NULL, NULL, NULL, vs_input_fields };

/* JsonPatchSchema (STATE_DELTA.delta, ACTIVITY_DELTA.patch). */
static const vs_field_t vs_op_value[] = { REQ("path", VS_PTR), REQ("value", VS_ANY), END };
static const vs_field_t vs_op_path[]  = { REQ("path", VS_PTR), END };
static const vs_field_t vs_op_from[]  = { REQ("from", VS_PTR), REQ("path", VS_PTR), END };
static const vs_variant_t vs_op_variants[] = {
    { "add", vs_op_value }, { "remove", vs_op_path }, { "replace", vs_op_value },
    { "move", vs_op_from }, { "copy", vs_op_from }, { "test", vs_op_value }, { NULL, NULL }
};
static const vs_shape_t vs_patch_op = {
    "op", "expected one of add, remove, replace, move, copy, test", vs_op_variants, NULL
};

/* RUN_FINISHED's outcome and usage, SUBAGENT_FINISHED's outcome. */
static const vs_field_t vs_interrupt_fields[] = {
    OPT("subagentRunId", VS_STR), REQ("id", VS_STR), REQ("reason", VS_STR),
    OPT("message", VS_STR), OPT("toolCallId", VS_STR), OPT("responseSchema", VS_OBJ),
    OPT("expiresAt", VS_STR), OPT("metadata", VS_OBJ), END
};
static const vs_shape_t vs_interrupt = { NULL, NULL, NULL, vs_interrupt_fields };
static const vs_field_t vs_out_success[] = { OPT("pendingToolCallIds", VS_STR_ARRAY), END };
static const vs_field_t vs_out_interrupt[] = {
    { "interrupts", VS_ARRAY, true, 1, &vs_interrupt, NULL, NULL }, END
};
static const vs_field_t vs_out_none[] = { END };
static const vs_variant_t vs_run_out_variants[] = {
    { "success", vs_out_success }, { "interrupt", vs_out_interrupt },
    { "cancelled", vs_out_none }, { NULL, NULL }
};
static const vs_shape_t vs_run_outcome = {
    "type", "expected one of success, interrupt, cancelled", vs_run_out_variants, NULL
};
static const vs_field_t vs_out_suspended[] = { OPT("interruptIds", VS_STR_ARRAY), END };
static const vs_variant_t vs_sub_out_variants[] = {
    { "success", vs_out_none }, { "suspended", vs_out_suspended }, { NULL, NULL }
};
static const vs_shape_t vs_sub_outcome = {
    "type", "expected one of success, suspended", vs_sub_out_variants, NULL
};
static const vs_field_t vs_usage_fields[] = {
    OPT("provider", VS_STR), OPT("model", VS_STR), OPT("inputTokens", VS_UINT),
    OPT("outputTokens", VS_UINT), OPT("totalTokens", VS_UINT), OPT("reasoningTokens", VS_UINT),
    OPT("cachedInputTokens", VS_UINT), OPT("cacheWriteInputTokens", VS_UINT), END
};
static const vs_shape_t vs_usage = { NULL, NULL, NULL, vs_usage_fields };

/* The 31 events, each in zod's key order (type itself is checked first). */
static const vs_field_t ev_run_started[] = {
    BASE, REQ("threadId", VS_STR), REQ("runId", VS_STR), OPT("protocolVersion", VS_STR),
    OPT("parentRunId", VS_STR), OPT_OF("input", VS_SHAPE, &vs_input), END
};
static const vs_field_t ev_run_finished[] = {
    BASE, REQ("threadId", VS_STR), REQ("runId", VS_STR), OPT("result", VS_NONNULL),
    OPT_OF("outcome", VS_SHAPE, &vs_run_outcome), OPT_OF("usage", VS_ARRAY, &vs_usage), END
};
static const vs_field_t ev_run_error[] = {
    BASE, REQ("message", VS_STR), OPT("code", VS_STR), OPT_OF("usage", VS_ARRAY, &vs_usage), END
};
static const vs_field_t ev_text_start[] = {
    BASE, ATTR, REQ("messageId", VS_STR), ENUM("role", false, vs_text_roles, TEXT_ROLES_MSG),
    OPT("name", VS_STR), END
};
static const vs_field_t ev_id_delta[] = {       /* TEXT_MESSAGE_CONTENT, REASONING_MESSAGE_CONTENT */
    BASE, ATTR, REQ("messageId", VS_STR), REQ("delta", VS_STR), END
};
static const vs_field_t ev_id_only[] = {        /* TEXT_MESSAGE_END, REASONING_START/_MESSAGE_END/_END */
    BASE, ATTR, REQ("messageId", VS_STR), END
};
static const vs_field_t ev_text_chunk[] = {
    BASE, ATTR, OPT("messageId", VS_STR), ENUM("role", false, vs_text_roles, TEXT_ROLES_MSG),
    OPT("delta", VS_STR), OPT("name", VS_STR), END
};
static const vs_field_t ev_tool_start[] = {
    BASE, ATTR, REQ("toolCallId", VS_STR), REQ("toolCallName", VS_STR),
    OPT("parentMessageId", VS_STR), END
};
static const vs_field_t ev_tool_args[] = {
    BASE, ATTR, REQ("toolCallId", VS_STR), REQ("delta", VS_STR), END
};
static const vs_field_t ev_tool_end[] = { BASE, ATTR, REQ("toolCallId", VS_STR), END };
static const vs_field_t ev_tool_chunk[] = {
    BASE, ATTR, OPT("toolCallId", VS_STR), OPT("toolCallName", VS_STR),
    OPT("parentMessageId", VS_STR), OPT("delta", VS_STR), END
};
static const vs_field_t ev_tool_result[] = {
    BASE, ATTR, REQ("messageId", VS_STR), REQ("toolCallId", VS_STR),
    REQ_OF("content", VS_STR_OR_ARRAY, &vs_content_part),
    ENUM("role", false, vs_tool_lit, "expected tool"), END
};
static const vs_field_t ev_state_snapshot[] = { BASE, ATTR, REQ("snapshot", VS_ANY), END };
static const vs_field_t ev_state_delta[] = {
    BASE, ATTR, REQ_OF("delta", VS_ARRAY, &vs_patch_op), END
};
static const vs_field_t ev_messages_snapshot[] = {
    BASE, REQ_OF("messages", VS_ARRAY, &vs_message), END
};
static const vs_field_t ev_activity_snapshot[] = {
    BASE, ATTR, REQ("messageId", VS_STR), REQ("activityType", VS_STR), REQ("content", VS_OBJ),
    OPT("replace", VS_BOOL), END
};
static const vs_field_t ev_activity_delta[] = {
    BASE, ATTR, REQ("messageId", VS_STR), REQ("activityType", VS_STR),
    REQ_OF("patch", VS_ARRAY, &vs_patch_op), END
};
static const vs_field_t ev_raw[] = { BASE, ATTR, REQ("event", VS_ANY), OPT("source", VS_STR), END };
static const vs_field_t ev_custom[] = { BASE, ATTR, REQ("name", VS_STR), REQ("value", VS_ANY), END };
static const vs_field_t ev_step[] = { BASE, ATTR, REQ("stepName", VS_STR), END };
static const vs_field_t ev_reasoning_msg_start[] = {
    BASE, ATTR, REQ("messageId", VS_STR), ENUM("role", true, vs_reasoning_lit, "expected reasoning"),
    END
};
static const vs_field_t ev_reasoning_chunk[] = {
    BASE, ATTR, OPT("messageId", VS_STR), OPT("delta", VS_STR), END
};
static const vs_field_t ev_reasoning_encrypted[] = {
    BASE, ATTR, ENUM("subtype", true, vs_subtypes, "expected one of tool-call, message"),
    REQ("entityId", VS_STR), REQ("encryptedValue", VS_STR), END
};
static const vs_field_t ev_subagent_started[] = {
    BASE, REQ("subagentRunId", VS_STR), REQ("name", VS_STR), OPT("description", VS_STR),
    OPT("parentSubagentRunId", VS_STR), OPT("parentToolCallId", VS_STR),
    OPT("parentMessageId", VS_STR), END
};
static const vs_field_t ev_subagent_finished[] = {
    BASE, REQ("subagentRunId", VS_STR), OPT("result", VS_NONNULL),
    OPT_OF("outcome", VS_SHAPE, &vs_sub_outcome), END
};
static const vs_field_t ev_subagent_error[] = {
    BASE, REQ("subagentRunId", VS_STR), REQ("message", VS_STR), OPT("code", VS_STR), END
};

static const vs_field_t *const vs_events[AGUI_TYPE_COUNT] = {
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

#undef REQ
#undef OPT
#undef REQ_OF
#undef OPT_OF
#undef ENUM
#undef END
#undef BASE
#undef ATTR

/* ---- stage 1: the checker ------------------------------------------------------ */

/* The path of the value being checked, kept as frames (a key, or an index when
 * key is NULL) and formatted only when a check fails: the success path, every
 * event, does no formatting. Depth is fixed by the schema (free-form values are
 * not entered), well under VS_DEPTH. */
#define VS_DEPTH 12

typedef struct vs_ctx {
    vd_msg_t   *m;
    const char *type;
    int         depth;
    struct { const char *key; size_t index; } at[VS_DEPTH];
} vs_ctx_t;

static void vs_push_key(vs_ctx_t *c, const char *key)
{
    assert(c->depth < VS_DEPTH);
    c->at[c->depth].key = key;
    c->depth++;
}

static void vs_push_index(vs_ctx_t *c, size_t i)
{
    assert(c->depth < VS_DEPTH);
    c->at[c->depth].key = NULL;
    c->at[c->depth].index = i;
    c->depth++;
}

static int vs_fail(vs_ctx_t *c, const char *problem)
{
    m_str(c->m, c->type);
    m_str(c->m, ": ");
    for (int i = 0; i < c->depth; i++) {
        if (c->at[i].key) {
            if (i)
                m_str(c->m, ".");
            m_str(c->m, c->at[i].key);
        } else {
            m_fmt(c->m, "[%zu]", c->at[i].index);
        }
    }
    m_str(c->m, ": ");
    return m_fail(c->m, problem);
}

/* Exact equality: JSON strings may hold NUL ("user\u0000x" is not "user"). */
static bool vs_str_eq(const json_t *v, const char *lit)
{
    size_t n = strlen(lit);
    return json_is_string(v) && json_string_length(v) == n &&
           memcmp(json_string_value(v), lit, n) == 0;
}

/* Number.isSafeInteger, optionally >= 0. JSON.parse makes every number a double,
 * so 1.0 and 1e3 are integers too. */
static bool vs_safe_int(const json_t *v, bool nonneg)
{
    const double max = 9007199254740991.0;
    double lo = nonneg ? 0.0 : -max;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        return i >= (json_int_t)lo && i <= (json_int_t)max;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        return d >= lo && d <= max && d == (double)(int64_t)d;   /* range first */
    }
    return false;
}

static bool vs_pointer(const char *s, size_t n)
{
    if (n && s[0] != '/')
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '~' && (i + 1 == n || (s[i + 1] != '0' && s[i + 1] != '1')))
            return false;
    return true;
}

static int vs_check_shape(vs_ctx_t *c, json_t *v, const vs_shape_t *s);

static int vs_check_value(vs_ctx_t *c, json_t *v, const vs_field_t *f)
{
    switch ((enum vs_kind)f->kind) {
    case VS_ANY:
        return 0;
    case VS_NONNULL:
        return json_is_null(v) ? vs_fail(c, "must not be null") : 0;
    case VS_STR:
        return json_is_string(v) ? 0 : vs_fail(c, "expected a string");
    case VS_BOOL:
        return json_is_boolean(v) ? 0 : vs_fail(c, "expected a boolean");
    case VS_INT:
        return vs_safe_int(v, false) ? 0 : vs_fail(c, "expected a safe integer");
    case VS_UINT:
        return vs_safe_int(v, true) ? 0 : vs_fail(c, "expected a safe integer >= 0");
    case VS_OBJ:
        return json_is_object(v) ? 0 : vs_fail(c, "expected an object");
    case VS_ENUM:
        for (const char *const *o = f->oneof; *o; o++)
            if (vs_str_eq(v, *o))
                return 0;
        return vs_fail(c, f->oneof_msg);
    case VS_PTR:
        if (!json_is_string(v))
            return vs_fail(c, "expected a string");
        return vs_pointer(json_string_value(v), json_string_length(v)) ? 0 :
               vs_fail(c, "expected a JSON pointer");
    case VS_SHAPE:
        return vs_check_shape(c, v, f->shape);
    case VS_STR_ARRAY:
    case VS_STR_OR_ARRAY:
    case VS_ARRAY:
        break;
    }
    if (f->kind == VS_STR_OR_ARRAY && json_is_string(v))
        return 0;
    if (!json_is_array(v))
        return vs_fail(c, f->kind == VS_STR_OR_ARRAY ? "expected a string or an array" :
                          "expected an array");
    if (json_array_size(v) < f->min_items)
        return vs_fail(c, "expected at least one item");
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        vs_push_index(c, i);
        int rc = f->kind == VS_STR_ARRAY ? (json_is_string(e) ? 0 : vs_fail(c, "expected a string"))
                                         : vs_check_shape(c, e, f->shape);
        if (rc)
            return rc;
        c->depth--;
    }
    return 0;
}

static int vs_check_fields(vs_ctx_t *c, json_t *obj, const vs_field_t *f)
{
    for (; f->key; f++) {
        json_t *v = json_object_get(obj, f->key);
        if (!v && !f->required)
            continue;
        vs_push_key(c, f->key);
        int rc = v ? vs_check_value(c, v, f) : vs_fail(c, "required");
        if (rc)
            return rc;
        c->depth--;
    }
    return 0;
}

static int vs_check_shape(vs_ctx_t *c, json_t *v, const vs_shape_t *s)
{
    if (!json_is_object(v))
        return vs_fail(c, "expected an object");
    if (!s->tag)
        return vs_check_fields(c, v, s->fields);
    json_t *tag = json_object_get(v, s->tag);
    vs_push_key(c, s->tag);
    if (!tag)
        return vs_fail(c, "required");
    for (const vs_variant_t *o = s->variants; o->tag; o++)
        if (vs_str_eq(tag, o->tag)) {
            c->depth--;
            return vs_check_fields(c, v, o->fields);
        }
    return vs_fail(c, s->tag_msg);
}

/* ---- what a validator remembers ------------------------------------------------ */

/* Kinds of remembered ids. Each of verify's maps is one kind, keyed by id alone
 * except steps, keyed by (owner, name). An entry outlives the close of what it
 * names, as verify's owner maps do; only its open flags are cleared. */
enum { VK_MSG, VK_TOOL, VK_ACT, VK_RSN, VK_STEP, VK_TAG };
enum {
    VF_OPEN = 1,      /* VK_MSG, VK_TOOL, VK_STEP: in progress */
    VF_SPAN = 2,      /* VK_RSN: REASONING_START .. REASONING_END */
    VF_RMSG = 4,      /* VK_RSN: REASONING_MESSAGE_START .. _END */
    VF_ACTIVE = 8,    /* VK_TAG: SUBAGENT_STARTED, not yet finished */
    VF_CLOSED = 16,   /* VK_TAG: finished or errored in this run */
};
enum { VO_TEXT, VO_TOOL, VO_SPAN, VO_RMSG, VO_STEP, VO_SUB, VO_LANE, VO_COUNT };
static const char *const vo_names[VO_COUNT] = {
    "text messages", "tool calls", "reasoning spans", "reasoning messages", "steps",
    "subagents", "chunk streams",
};

/* Owners: 0 is the parent agent (no subagentRunId), else the index + 1 of the
 * VK_TAG entry holding the subagentRunId. VD_NO_OWNER: a tag nothing recorded,
 * which therefore equals no recorded owner. */
#define VD_NO_OWNER UINT32_MAX

typedef struct vd_ent {
    const char *key;        /* in the run's string store */
    uint32_t    len, hash;
    uint32_t    owner;      /* recorded owner; for VK_STEP part of the identity */
    uint32_t    order;      /* VK_TAG: when it first had a step (0: never) */
    uint8_t     kind, flags;
} vd_ent_t;

typedef struct vd_chunk {
    struct vd_chunk *next;
    size_t           cap, used;
    char             data[];
} vd_chunk_t;

/* A stream being assembled from chunks (transformChunks' PendingStream). */
enum { LANE_TEXT, LANE_TOOL, LANE_RSN };
typedef struct vd_lane {
    uint32_t    owner;          /* the lane: whose chunks these are */
    uint8_t     kind, role;     /* role: index into vs_text_roles */
    bool        has_name, has_parent;
    const char *id, *name, *parent;     /* name: text name or toolCallName */
    uint32_t    id_len, name_len, parent_len;
} vd_lane_t;

struct validate {
    bool        first_seen, run_started, run_finished, run_error;
    bool        failed;
    char        fail_msg[VALIDATE_MSG_MAX];

    /* per run */
    vd_ent_t   *ents;
    uint32_t    n_ents, cap_ents;
    uint32_t   *slots;          /* open addressing: entry index + 1, 0 empty */
    uint32_t    n_slots;        /* a power of two, or 0 */
    vd_chunk_t *chunks;         /* newest first; the oldest is kept across runs */
    size_t      id_bytes;
    uint32_t    n_open[VO_COUNT];
    uint32_t    step_seq, parent_step_order;

    /* chunk lanes, in the order they opened; closed by every run event */
    vd_lane_t  *lanes;
    uint32_t    cap_lanes;
};

/* An event as the sequence rules see it: read from JSON, or made by chunk
 * expansion (then `from` is the chunk, or the event whose arrival closed a lane). */
typedef struct vd_s {
    const char *p;
    size_t      n;
    bool        set;
} vd_s_t;

typedef struct vd_ev {
    agui_type_t type, from;
    vd_s_t      id;             /* messageId, toolCallId, stepName, entityId or subagentRunId */
    vd_s_t      tag;            /* subagentRunId on attributable events */
    vd_s_t      parent;         /* parentMessageId, parentSubagentRunId */
    bool        subtype_tool;   /* REASONING_ENCRYPTED_VALUE subtype "tool-call" */
    bool        replace_false;  /* ACTIVITY_SNAPSHOT replace: false */
    json_t     *messages;       /* MESSAGES_SNAPSHOT.messages, RUN_STARTED.input.messages */
} vd_ev_t;

/* Unset strings point at "" so that memcmp and memcpy never see NULL. */
#define VD_UNSET ((vd_s_t){ "", 0, false })

static bool s_eq(vd_s_t a, const char *p, size_t n) { return a.n == n && !memcmp(a.p, p, n); }

static vd_s_t vd_get(json_t *o, const char *key)
{
    json_t *x = json_object_get(o, key);
    if (!json_is_string(x))
        return VD_UNSET;
    return (vd_s_t){ json_string_value(x), json_string_length(x), true };
}

static uint32_t vd_hash(int kind, uint32_t owner, const char *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)kind << 32 | owner) ^ ((uint64_t)n << 40);
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    if (n)
        memcpy(&w, p, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return (uint32_t)h;
}

/* The entry for (kind, id), and for steps (kind, owner, name); -1 when none. */
static int32_t vd_find(const validate_t *v, int kind, const char *p, size_t n, uint32_t owner)
{
    if (!v->n_slots || owner == VD_NO_OWNER)
        return -1;
    uint32_t h = vd_hash(kind, owner, p, n), mask = v->n_slots - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t s = v->slots[i];
        if (!s)
            return -1;
        const vd_ent_t *e = &v->ents[s - 1];
        if (e->hash == h && e->kind == kind && e->len == n &&
            (kind != VK_STEP || e->owner == owner) && !memcmp(e->key, p, n))
            return (int32_t)(s - 1);
    }
}

static int32_t vd_find_s(const validate_t *v, int kind, vd_s_t id)
{
    return vd_find(v, kind, id.p, id.n, 0);
}

static int vd_oom(vd_msg_t *m)
{
    m_str(m, "out of memory");
    return -ENOMEM;
}

/* A copy of p in the run's string store, which only grows until the run ends. */
static const char *vd_store(validate_t *v, const char *p, size_t n)
{
    vd_chunk_t *c = v->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        vd_chunk_t *nc = malloc(sizeof *nc + cap);
        if (!nc)
            return NULL;
        *nc = (vd_chunk_t){ .next = c, .cap = cap, .used = 0 };
        v->chunks = c = nc;
    }
    char *d = c->data + c->used;
    if (n)
        memcpy(d, p, n);
    c->used += n;
    return d;
}

static int vd_grow(validate_t *v)
{
    if (v->n_ents == v->cap_ents) {
        uint32_t cap = v->cap_ents ? v->cap_ents * 2 : 32;
        vd_ent_t *e = realloc(v->ents, cap * sizeof *e);
        if (!e)
            return -ENOMEM;
        v->ents = e;
        v->cap_ents = cap;
    }
    if ((v->n_ents + 1) * 2 > v->n_slots) {
        uint32_t n = v->n_slots ? v->n_slots * 2 : 64, mask = n - 1;
        uint32_t *s = calloc(n, sizeof *s);
        if (!s)
            return -ENOMEM;
        for (uint32_t i = 0; i < v->n_ents; i++) {
            uint32_t j = v->ents[i].hash & mask;
            while (s[j])
                j = (j + 1) & mask;
            s[j] = i + 1;
        }
        free(v->slots);
        v->slots = s;
        v->n_slots = n;
    }
    return 0;
}

/* Records a new (kind, id); the caller has checked it is not there yet. */
static int vd_add(validate_t *v, int kind, const char *p, size_t n, uint32_t owner,
                  int32_t *out, vd_msg_t *m)
{
    if (v->n_ents >= VALIDATE_MAX_IDS) {
        m_fmt(m, "too many ids in one run (limit %d)", VALIDATE_MAX_IDS);
        return -EPROTO;
    }
    if (n > VALIDATE_MAX_ID_BYTES - v->id_bytes) {
        m_fmt(m, "ids in one run exceed %u bytes", VALIDATE_MAX_ID_BYTES);
        return -EPROTO;
    }
    const char *key = vd_store(v, p, n);
    if (!key || vd_grow(v))
        return vd_oom(m);
    uint32_t h = vd_hash(kind, kind == VK_STEP ? owner : 0, p, n), mask = v->n_slots - 1;
    uint32_t i = h & mask;
    while (v->slots[i])
        i = (i + 1) & mask;
    v->slots[i] = v->n_ents + 1;
    v->ents[v->n_ents] = (vd_ent_t){ .key = key, .len = (uint32_t)n, .hash = h, .owner = owner,
                                     .kind = (uint8_t)kind };
    v->id_bytes += n;
    *out = (int32_t)v->n_ents++;
    return 0;
}

static uint32_t vd_owner_find(const validate_t *v, vd_s_t tag)
{
    if (!tag.set)
        return 0;
    int32_t i = vd_find_s(v, VK_TAG, tag);
    return i < 0 ? VD_NO_OWNER : (uint32_t)i + 1;
}

static int vd_intern(validate_t *v, vd_s_t tag, uint32_t *owner, vd_msg_t *m)
{
    *owner = 0;
    if (!tag.set)
        return 0;
    int32_t i = vd_find_s(v, VK_TAG, tag);
    if (i < 0) {
        int rc = vd_add(v, VK_TAG, tag.p, tag.n, 0, &i, m);
        if (rc)
            return rc;
    }
    *owner = (uint32_t)i + 1;
    return 0;
}

/* Sets owners[kind][id] = owner of tag, recording id if new. */
static int vd_set_owner(validate_t *v, int kind, vd_s_t id, vd_s_t tag, int32_t *out, vd_msg_t *m)
{
    uint32_t owner;
    int rc = vd_intern(v, tag, &owner, m);
    int32_t i = vd_find_s(v, kind, id);
    if (!rc && i < 0)
        rc = vd_add(v, kind, id.p, id.n, owner, &i, m);
    if (rc)
        return rc;
    v->ents[i].owner = owner;
    if (out)
        *out = i;
    return 0;
}

static int vd_open(validate_t *v, int32_t i, uint8_t flag, int counter, vd_msg_t *m)
{
    if (v->n_open[counter] >= VALIDATE_MAX_OPEN) {
        m_fmt(m, "too many open %s (limit %d)", vo_names[counter], VALIDATE_MAX_OPEN);
        return -EPROTO;
    }
    v->ents[i].flags |= flag;
    v->n_open[counter]++;
    return 0;
}

static void vd_close(validate_t *v, int32_t i, uint8_t flag, int counter)
{
    assert(v->ents[i].flags & flag);
    v->ents[i].flags &= (uint8_t)~flag;
    v->n_open[counter]--;
}

static vd_s_t vd_owner_tag(const validate_t *v, uint32_t owner)
{
    if (!owner || owner == VD_NO_OWNER)
        return VD_UNSET;
    const vd_ent_t *e = &v->ents[owner - 1];
    return (vd_s_t){ e->key, e->len, true };
}

/* verify's resetRunState: a new run forgets everything about the last one. */
static void vd_reset_run(validate_t *v)
{
    assert(v->n_open[VO_LANE] == 0);   /* run events close every lane first */
    v->n_ents = 0;
    if (v->slots)
        memset(v->slots, 0, v->n_slots * sizeof *v->slots);
    while (v->chunks && v->chunks->next) {
        vd_chunk_t *c = v->chunks;
        v->chunks = c->next;
        free(c);
    }
    if (v->chunks)
        v->chunks->used = 0;
    v->id_bytes = 0;
    memset(v->n_open, 0, sizeof v->n_open);
    v->step_seq = v->parent_step_order = 0;
    v->run_finished = v->run_error = false;
    v->run_started = true;
}

/* ---- stage 3: the sequence rules (verifyEvents) --------------------------------- */

/* "TYPE", or "CHUNK_TYPE (as TYPE)" for an event chunk expansion made. */
static void m_type(vd_msg_t *m, const vd_ev_t *e)
{
    m_str(m, agui_type_name(e->from));
    if (e->from != e->type) {
        m_str(m, " (as ");
        m_str(m, agui_type_name(e->type));
        m_str(m, ")");
    }
}

static void m_owner(vd_msg_t *m, const validate_t *v, uint32_t owner)
{
    if (!owner) {
        m_str(m, "the parent agent");
        return;
    }
    vd_s_t t = vd_owner_tag(v, owner);
    m_str(m, "subagent ");
    m_id(m, t.p, t.n);
}

static void m_tag(vd_msg_t *m, vd_s_t tag)
{
    if (!tag.set) {
        m_str(m, "the parent agent");
        return;
    }
    m_str(m, "subagent ");
    m_id(m, tag.p, tag.n);
}

/* "<T> for <what> '<id>' <why>" */
static int vq_fail_id(vd_msg_t *m, const vd_ev_t *e, const char *what, vd_s_t id, const char *why)
{
    m_type(m, e);
    m_str(m, " for ");
    m_str(m, what);
    m_str(m, " ");
    m_id(m, id.p, id.n);
    m_str(m, " ");
    return m_fail(m, why);
}

/* subagentTagError: a tagged continuation must agree with its entity's recorded
 * owner (the parent agent counts as an owner); an untagged one always agrees. */
static int vq_tag(const validate_t *v, const vd_ev_t *e, int32_t ent, const char *what,
                  vd_s_t id, vd_msg_t *m)
{
    if (!e->tag.set || ent < 0 || vd_owner_find(v, e->tag) == v->ents[ent].owner)
        return 0;
    m_type(m, e);
    m_str(m, ": subagentRunId ");
    m_id(m, e->tag.p, e->tag.n);
    m_str(m, " does not match the owner of ");
    m_str(m, what);
    m_str(m, " ");
    m_id(m, id.p, id.n);
    m_str(m, " (");
    m_owner(m, v, v->ents[ent].owner);
    return m_fail(m, ")");
}

/* A list of what is still open, for RUN_FINISHED. */
static int vq_still_open(const validate_t *v, vd_msg_t *m, int counter, int kind, uint8_t flag)
{
    m_str(m, "RUN_FINISHED while ");
    m_str(m, vo_names[counter]);
    m_str(m, " are still active: ");
    bool first = true;
    for (uint32_t i = 0; i < v->n_ents; i++) {
        const vd_ent_t *e = &v->ents[i];
        if (e->kind != kind || !(e->flags & flag))
            continue;
        if (m->len > VALIDATE_MSG_MAX - 12) {
            m_str(m, ", ...");
            break;
        }
        if (!first)
            m_str(m, ", ");
        m_id(m, e->key, e->len);
        if (kind == VK_STEP && e->owner) {
            m_str(m, " (");
            m_owner(m, v, e->owner);
            m_str(m, ")");
        }
        first = false;
    }
    return -EPROTO;
}

/* seedOwnersFromMessages: replayed history (MESSAGES_SNAPSHOT, authoritative;
 * RUN_STARTED.input, only for ids not yet recorded) records the owner of each
 * message, in the bucket its role streams through, and of each assistant tool call. */
static int vq_seed(validate_t *v, json_t *msgs, bool authoritative, vd_msg_t *m)
{
    size_t i;
    json_t *msg;
    json_array_foreach(msgs, i, msg) {
        json_t *role = json_object_get(msg, "role");
        int kind = vs_str_eq(role, "reasoning") ? VK_RSN : vs_str_eq(role, "activity") ? VK_ACT : VK_MSG;
        vd_s_t id = vd_get(msg, "id"), tag = vd_get(msg, "subagentRunId");
        int rc;
        if ((authoritative || vd_find_s(v, kind, id) < 0) &&
            (rc = vd_set_owner(v, kind, id, tag, NULL, m)))
            return rc;
        if (!vs_str_eq(role, "assistant"))
            continue;   /* other roles have no toolCalls; enforcement strips the key */
        json_t *calls = json_object_get(msg, "toolCalls"), *tc;
        size_t j;
        json_array_foreach(calls, j, tc) {
            vd_s_t tcid = vd_get(tc, "id");
            if ((authoritative || vd_find_s(v, VK_TOOL, tcid) < 0) &&
                (rc = vd_set_owner(v, VK_TOOL, tcid, tag, NULL, m)))
                return rc;
        }
    }
    return 0;
}

static int vq_text(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    int32_t i = vd_find_s(v, VK_MSG, e->id);
    int rc;
    if (e->type == AGUI_TEXT_MESSAGE_START) {
        if (i >= 0 && (v->ents[i].flags & VF_OPEN))
            return vq_fail_id(m, e, "message", e->id, "which is already in progress");
        if ((rc = vq_tag(v, e, i, "message", e->id, m)))   /* first writer keeps it */
            return rc;
        if (i < 0 && (rc = vd_set_owner(v, VK_MSG, e->id, e->tag, &i, m)))
            return rc;
        return vd_open(v, i, VF_OPEN, VO_TEXT, m);
    }
    if (i < 0 || !(v->ents[i].flags & VF_OPEN))
        return vq_fail_id(m, e, "message", e->id,
                          i < 0 ? "which was not started" : "which is not in progress");
    if ((rc = vq_tag(v, e, i, "message", e->id, m)))
        return rc;
    if (e->type == AGUI_TEXT_MESSAGE_END)
        vd_close(v, i, VF_OPEN, VO_TEXT);
    return 0;
}

static int vq_tool_start(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    int32_t i = vd_find_s(v, VK_TOOL, e->id), p = -1;
    int rc;
    if (i >= 0 && (v->ents[i].flags & VF_OPEN))
        return vq_fail_id(m, e, "tool call", e->id, "which is already in progress");
    /* A tool call lives in the message parentMessageId names and inherits its owner. */
    if (e->parent.set && (p = vd_find_s(v, VK_MSG, e->parent)) >= 0 && e->tag.set &&
        vd_owner_find(v, e->tag) != v->ents[p].owner) {
        m_type(m, e);
        m_str(m, ": subagentRunId ");
        m_id(m, e->tag.p, e->tag.n);
        m_str(m, " does not match the owner of parent message ");
        m_id(m, e->parent.p, e->parent.n);
        m_str(m, " (");
        m_owner(m, v, v->ents[p].owner);
        return m_fail(m, ")");
    }
    if (i >= 0) {
        if ((rc = vq_tag(v, e, i, "tool call", e->id, m)))
            return rc;
        if (!e->tag.set && p >= 0 && v->ents[p].owner != v->ents[i].owner) {
            m_type(m, e);
            m_str(m, ": tool call ");
            m_id(m, e->id.p, e->id.n);
            m_str(m, " is owned by ");
            m_owner(m, v, v->ents[i].owner);
            m_str(m, " but its parent message ");
            m_id(m, e->parent.p, e->parent.n);
            m_str(m, " by ");
            m_owner(m, v, v->ents[p].owner);
            return -EPROTO;
        }
    } else if (e->tag.set || p < 0) {
        if ((rc = vd_set_owner(v, VK_TOOL, e->id, e->tag, &i, m)))
            return rc;
    } else {
        uint32_t owner = v->ents[p].owner;
        if ((rc = vd_add(v, VK_TOOL, e->id.p, e->id.n, owner, &i, m)))
            return rc;
    }
    return vd_open(v, i, VF_OPEN, VO_TOOL, m);
}

static int vq_tool(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    int32_t i = vd_find_s(v, VK_TOOL, e->id);
    if (i < 0 || !(v->ents[i].flags & VF_OPEN))
        return vq_fail_id(m, e, "tool call", e->id,
                          i < 0 ? "which was not started" : "which is not in progress");
    int rc = vq_tag(v, e, i, "tool call", e->id, m);
    if (!rc && e->type == AGUI_TOOL_CALL_END)
        vd_close(v, i, VF_OPEN, VO_TOOL);
    return rc;
}

/* Steps are keyed by (owner, name): a subagent may run a step its parent runs too. */
static int vq_step(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    uint32_t owner = vd_owner_find(v, e->tag);
    int32_t i = vd_find(v, VK_STEP, e->id.p, e->id.n, owner);
    int rc;
    if (e->type == AGUI_STEP_STARTED) {
        if (i >= 0 && (v->ents[i].flags & VF_OPEN)) {
            m_type(m, e);
            m_str(m, " for step ");
            m_id(m, e->id.p, e->id.n);
            m_str(m, " which is already active");
            if (e->tag.set) {
                m_str(m, " in subagent ");
                m_id(m, e->tag.p, e->tag.n);
            }
            return -EPROTO;
        }
        if ((rc = vd_intern(v, e->tag, &owner, m)))
            return rc;
        uint32_t *order = owner ? &v->ents[owner - 1].order : &v->parent_step_order;
        if (!*order)
            *order = ++v->step_seq;
        if (i < 0 && (rc = vd_add(v, VK_STEP, e->id.p, e->id.n, owner, &i, m)))
            return rc;
        return vd_open(v, i, VF_OPEN, VO_STEP, m);
    }
    if (i >= 0 && (v->ents[i].flags & VF_OPEN)) {
        vd_close(v, i, VF_OPEN, VO_STEP);
        return 0;
    }
    /* Open under someone else? The owner that first had a step is named, as
     * verify's walk of its owner map in insertion order does. */
    int32_t other = -1;
    uint32_t best = UINT32_MAX;
    for (uint32_t k = 0; k < v->n_ents; k++) {
        const vd_ent_t *s = &v->ents[k];
        if (s->kind != VK_STEP || !(s->flags & VF_OPEN) || s->owner == owner ||
            s->len != e->id.n || memcmp(s->key, e->id.p, e->id.n))
            continue;
        uint32_t ord = s->owner ? v->ents[s->owner - 1].order : v->parent_step_order;
        if (ord < best) {
            best = ord;
            other = (int32_t)k;
        }
    }
    if (other < 0)
        return vq_fail_id(m, e, "step", e->id, "which was not started");
    m_type(m, e);
    m_str(m, " for step ");
    m_id(m, e->id.p, e->id.n);
    m_str(m, " by ");
    m_tag(m, e->tag);
    m_str(m, ": it is open under ");
    m_owner(m, v, v->ents[other].owner);
    return -EPROTO;
}

/* Reasoning has two bracketed entities that may share an id: the span
 * (REASONING_START .. _END) and the message (REASONING_MESSAGE_START .. _END),
 * with one owner record for both. */
static int vq_reasoning(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    bool span = e->type == AGUI_REASONING_START || e->type == AGUI_REASONING_END;
    uint8_t flag = span ? VF_SPAN : VF_RMSG;
    int counter = span ? VO_SPAN : VO_RMSG;
    const char *what = span ? "reasoning span" : "reasoning message";
    int32_t i = vd_find_s(v, VK_RSN, e->id);
    int rc;
    if (e->type == AGUI_REASONING_START || e->type == AGUI_REASONING_MESSAGE_START) {
        if (i >= 0 && (v->ents[i].flags & flag))
            return vq_fail_id(m, e, what, e->id, "which is already in progress");
        if ((rc = vq_tag(v, e, i, "reasoning message", e->id, m)))
            return rc;
        if (i < 0 && (rc = vd_set_owner(v, VK_RSN, e->id, e->tag, &i, m)))
            return rc;
        return vd_open(v, i, flag, counter, m);
    }
    if (i < 0 || !(v->ents[i].flags & flag))
        return vq_fail_id(m, e, what, e->id,
                          i < 0 ? "which was not started" : "which is not in progress");
    if ((rc = vq_tag(v, e, i, "reasoning message", e->id, m)))
        return rc;
    if (e->type != AGUI_REASONING_MESSAGE_CONTENT)
        vd_close(v, i, flag, counter);
    return 0;
}

static int vq_subagent(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    int32_t i = vd_find_s(v, VK_TAG, e->id);
    uint8_t fl = i >= 0 ? v->ents[i].flags : 0;
    int rc;
    if (e->type != AGUI_SUBAGENT_STARTED) {
        if (!(fl & VF_ACTIVE))
            return vq_fail_id(m, e, "subagent", e->id, "which is not active");
        v->ents[i].flags |= VF_CLOSED;
        vd_close(v, i, VF_ACTIVE, VO_SUB);
        return 0;
    }
    if (fl & VF_ACTIVE)
        return vq_fail_id(m, e, "subagent", e->id, "which is already active");
    if (fl & VF_CLOSED)   /* ids are per invocation */
        return vq_fail_id(m, e, "subagent", e->id, "which already finished in this run");
    if (e->parent.set) {
        int32_t p = vd_find_s(v, VK_TAG, e->parent);
        if (p < 0 || !(v->ents[p].flags & (VF_ACTIVE | VF_CLOSED))) {
            m_type(m, e);
            m_str(m, ": parentSubagentRunId ");
            m_id(m, e->parent.p, e->parent.n);
            return m_fail(m, " was not started in this run");
        }
    }
    uint32_t owner;
    if ((rc = vd_intern(v, e->id, &owner, m)))
        return rc;
    return vd_open(v, (int32_t)owner - 1, VF_ACTIVE, VO_SUB, m);
}

/* verifyEvents, one event. Each rule is named where verify.ts states it. */
static int vq_event(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    agui_type_t t = e->type;

    /* Nothing but a new run after RUN_ERROR; nothing but RUN_ERROR or a new run
     * after RUN_FINISHED; RUN_STARTED (or RUN_ERROR) first; no RUN_STARTED while
     * a run is active. */
    if (v->run_error && t != AGUI_RUN_STARTED) {
        m_type(m, e);
        return m_fail(m, " after RUN_ERROR: only RUN_STARTED may follow");
    }
    if (v->run_finished && t != AGUI_RUN_ERROR && t != AGUI_RUN_STARTED) {
        m_type(m, e);
        return m_fail(m, " after RUN_FINISHED: only RUN_STARTED or RUN_ERROR may follow");
    }
    if (!v->first_seen) {
        v->first_seen = true;
        if (t != AGUI_RUN_STARTED && t != AGUI_RUN_ERROR) {
            m_str(m, "first event must be RUN_STARTED, got ");
            m_type(m, e);
            return -EPROTO;
        }
    } else if (t == AGUI_RUN_STARTED) {
        if (v->run_started && !v->run_finished && !v->run_error)
            return m_fail(m, "RUN_STARTED while a run is still active: send RUN_FINISHED first");
        if (v->run_finished || v->run_error)
            vd_reset_run(v);
    }

    switch (t) {
    case AGUI_TEXT_MESSAGE_START:
    case AGUI_TEXT_MESSAGE_CONTENT:
    case AGUI_TEXT_MESSAGE_END:
        return vq_text(v, e, m);
    case AGUI_TOOL_CALL_START:
        return vq_tool_start(v, e, m);
    case AGUI_TOOL_CALL_ARGS:
    case AGUI_TOOL_CALL_END:
        return vq_tool(v, e, m);
    case AGUI_STEP_STARTED:
    case AGUI_STEP_FINISHED:
        return vq_step(v, e, m);
    case AGUI_ACTIVITY_SNAPSHOT: {
        /* Only a replacing snapshot (replace absent or true) re-owns a known activity. */
        if (vd_find_s(v, VK_ACT, e->id) >= 0 && e->replace_false)
            return 0;
        return vd_set_owner(v, VK_ACT, e->id, e->tag, NULL, m);
    }
    case AGUI_ACTIVITY_DELTA:
        return vq_tag(v, e, vd_find_s(v, VK_ACT, e->id), "activity", e->id, m);
    case AGUI_TOOL_CALL_RESULT:   /* mints a tool message; the newest mint owns it */
        return vd_set_owner(v, VK_MSG, e->id, e->tag, NULL, m);
    case AGUI_REASONING_START:
    case AGUI_REASONING_MESSAGE_START:
    case AGUI_REASONING_MESSAGE_CONTENT:
    case AGUI_REASONING_MESSAGE_END:
    case AGUI_REASONING_END:
        return vq_reasoning(v, e, m);
    case AGUI_REASONING_ENCRYPTED_VALUE: {
        int32_t i;
        const char *what;
        if (e->subtype_tool) {
            i = vd_find_s(v, VK_TOOL, e->id);
            what = "tool call";
        } else {
            i = vd_find_s(v, VK_MSG, e->id);
            if (i < 0)
                i = vd_find_s(v, VK_RSN, e->id);
            what = "message";
        }
        return vq_tag(v, e, i, what, e->id, m);
    }
    case AGUI_SUBAGENT_STARTED:
    case AGUI_SUBAGENT_FINISHED:
    case AGUI_SUBAGENT_ERROR:
        return vq_subagent(v, e, m);
    case AGUI_MESSAGES_SNAPSHOT:
        return vq_seed(v, e->messages, true, m);
    case AGUI_RUN_STARTED:
        v->run_started = true;
        return vq_seed(v, e->messages, false, m);
    case AGUI_RUN_FINISHED: {
        /* Everything opened in the run must be closed, checked in verify's order. */
        static const struct { int counter, kind; uint8_t flag; } open[] = {
            { VO_STEP, VK_STEP, VF_OPEN }, { VO_TEXT, VK_MSG, VF_OPEN },
            { VO_RMSG, VK_RSN, VF_RMSG }, { VO_SPAN, VK_RSN, VF_SPAN },
            { VO_TOOL, VK_TOOL, VF_OPEN }, { VO_SUB, VK_TAG, VF_ACTIVE },
        };
        for (size_t k = 0; k < sizeof open / sizeof open[0]; k++)
            if (v->n_open[open[k].counter])
                return vq_still_open(v, m, open[k].counter, open[k].kind, open[k].flag);
        v->run_finished = true;
        return 0;
    }
    case AGUI_RUN_ERROR:
        v->run_error = true;
        return 0;
    default:   /* STATE_*, RAW, CUSTOM; chunks never get here */
        return 0;
    }
}

/* ---- stage 2: chunk expansion (transformChunks) --------------------------------- */

static const agui_type_t lane_start[] = {
    AGUI_TEXT_MESSAGE_START, AGUI_TOOL_CALL_START, AGUI_REASONING_MESSAGE_START
};
static const agui_type_t lane_content[] = {
    AGUI_TEXT_MESSAGE_CONTENT, AGUI_TOOL_CALL_ARGS, AGUI_REASONING_MESSAGE_CONTENT
};
static const agui_type_t lane_end[] = {
    AGUI_TEXT_MESSAGE_END, AGUI_TOOL_CALL_END, AGUI_REASONING_MESSAGE_END
};
static const char *const lane_what[] = { "message", "tool call", "reasoning message" };

static int vx_lane_at(const validate_t *v, uint32_t owner)
{
    for (uint32_t i = 0; i < v->n_open[VO_LANE]; i++)
        if (v->lanes[i].owner == owner)
            return (int)i;
    return -1;
}

/* Ends the stream lane li was assembling: its END goes through the rules, with
 * the opener's subagentRunId. */
static int vx_close(validate_t *v, uint32_t li, agui_type_t trigger, vd_msg_t *m)
{
    vd_lane_t l = v->lanes[li];
    memmove(&v->lanes[li], &v->lanes[li + 1], (v->n_open[VO_LANE] - li - 1) * sizeof l);
    v->n_open[VO_LANE]--;
    vd_ev_t end = { .type = lane_end[l.kind], .from = trigger, .id = { l.id, l.id_len, true },
                    .tag = vd_owner_tag(v, l.owner), .parent = VD_UNSET };
    return vq_event(v, &end, m);
}

/* resolveLane: the lane a chunk belongs to. An id already open continues where it
 * is, whoever sends it; a new id opens in the lane its tag names; an id-less chunk
 * continues its tag's lane, else the parent's, else the only open one of its kind. */
static int vx_resolve(validate_t *v, int kind, const vd_ev_t *e, uint32_t *lane, vd_msg_t *m)
{
    *lane = 0;
    if (e->id.set) {
        for (uint32_t i = 0; i < v->n_open[VO_LANE]; i++) {
            const vd_lane_t *l = &v->lanes[i];
            if (l->kind != kind || l->id_len != e->id.n || memcmp(l->id, e->id.p, e->id.n))
                continue;
            if (e->tag.set && vd_owner_find(v, e->tag) != l->owner) {
                m_type(m, e);
                m_fmt(m, " for %s ", lane_what[kind]);
                m_id(m, e->id.p, e->id.n);
                m_str(m, ": subagentRunId ");
                m_id(m, e->tag.p, e->tag.n);
                m_str(m, " does not match the open stream's owner (");
                m_owner(m, v, l->owner);
                return m_fail(m, ")");
            }
            *lane = l->owner;
            return 0;
        }
        return vd_intern(v, e->tag, lane, m);
    }
    if (e->tag.set) {
        *lane = vd_owner_find(v, e->tag);
        return 0;
    }
    int p = vx_lane_at(v, 0);
    if (p >= 0 && v->lanes[p].kind == kind)
        return 0;
    uint32_t found = 0;
    for (uint32_t i = 0; i < v->n_open[VO_LANE]; i++)
        if (v->lanes[i].kind == kind && found++ == 0)
            *lane = v->lanes[i].owner;
    if (found > 1) {
        m_type(m, e);
        m_fmt(m, " without %s or subagentRunId is ambiguous: %u subagents have an open %s",
              kind == LANE_TOOL ? "toolCallId" : "messageId", found, lane_what[kind]);
        return -EPROTO;
    }
    return 0;
}

/* A continuation may repeat what its opener said, only with the same value. */
static int vx_agree(const vd_lane_t *l, const vd_ev_t *e, const char *field, vd_s_t in,
                    bool had, const char *was, size_t was_len, vd_msg_t *m)
{
    if (!in.set || (had && s_eq(in, was, was_len)))
        return 0;
    m_type(m, e);
    m_fmt(m, " for %s ", lane_what[l->kind]);
    m_id(m, l->id, l->id_len);
    m_fmt(m, ": %s ", field);
    m_id(m, in.p, in.n);
    m_str(m, " does not match the open stream's ");
    if (had)
        m_id(m, was, was_len);
    else
        m_str(m, "(absent)");
    return -EPROTO;
}

static int vx_chunk(validate_t *v, json_t *root, const vd_ev_t *e, int kind, vd_msg_t *m)
{
    vd_s_t name = kind == LANE_TOOL ? vd_get(root, "toolCallName") :
                  kind == LANE_TEXT ? vd_get(root, "name") : VD_UNSET;
    vd_s_t role = kind == LANE_TEXT ? vd_get(root, "role") : VD_UNSET;
    uint8_t role_ix = 2;   /* absent means assistant */
    for (uint8_t r = 0; role.set && vs_text_roles[r]; r++)
        if (s_eq(role, vs_text_roles[r], strlen(vs_text_roles[r])))
            role_ix = r;
    uint32_t lane;
    int rc = vx_resolve(v, kind, e, &lane, m);
    if (rc)
        return rc;

    int li = vx_lane_at(v, lane);
    vd_lane_t *l = li >= 0 ? &v->lanes[li] : NULL;
    bool emitted = false;
    if (l && l->kind == kind && (!e->id.set || s_eq(e->id, l->id, l->id_len))) {
        const char *r = vs_text_roles[l->role];
        if (kind == LANE_TEXT &&
            ((rc = vx_agree(l, e, "role", role, true, r, strlen(r), m)) ||
             (rc = vx_agree(l, e, "name", name, l->has_name, l->name, l->name_len, m))))
            return rc;
        if (kind == LANE_TOOL &&
            ((rc = vx_agree(l, e, "toolCallName", name, true, l->name, l->name_len, m)) ||
             (rc = vx_agree(l, e, "parentMessageId", e->parent, l->has_parent, l->parent,
                            l->parent_len, m))))
            return rc;
    } else {
        if (!e->id.set) {
            m_type(m, e);
            return m_fail(m, kind == LANE_TOOL ? ": the first chunk must have a toolCallId" :
                                                 ": the first chunk must have a messageId");
        }
        if (kind == LANE_TOOL && !name.set) {
            m_type(m, e);
            return m_fail(m, ": the first chunk must have a toolCallName");
        }
        if (l && (rc = vx_close(v, (uint32_t)li, e->from, m)))   /* this lane's last stream */
            return rc;
        if (v->n_open[VO_LANE] >= VALIDATE_MAX_OPEN) {
            m_fmt(m, "too many open %s (limit %d)", vo_names[VO_LANE], VALIDATE_MAX_OPEN);
            return -EPROTO;
        }
        if (v->n_open[VO_LANE] == v->cap_lanes) {
            uint32_t cap = v->cap_lanes ? v->cap_lanes * 2 : 4;
            vd_lane_t *nl = realloc(v->lanes, cap * sizeof *nl);
            if (!nl)
                return vd_oom(m);
            v->lanes = nl;
            v->cap_lanes = cap;
        }
        size_t bytes = e->id.n + name.n + e->parent.n;
        if (bytes > VALIDATE_MAX_ID_BYTES - v->id_bytes) {
            m_fmt(m, "ids in one run exceed %u bytes", VALIDATE_MAX_ID_BYTES);
            return -EPROTO;
        }
        vd_lane_t nl = { .owner = lane, .kind = (uint8_t)kind, .role = role_ix,
                         .has_name = name.set, .has_parent = kind == LANE_TOOL && e->parent.set,
                         .id = vd_store(v, e->id.p, e->id.n), .id_len = (uint32_t)e->id.n,
                         .name = vd_store(v, name.p, name.n), .name_len = (uint32_t)name.n };
        if (nl.has_parent) {
            nl.parent = vd_store(v, e->parent.p, e->parent.n);
            nl.parent_len = (uint32_t)e->parent.n;
        }
        if (!nl.id || !nl.name || (nl.has_parent && !nl.parent))
            return vd_oom(m);
        v->id_bytes += bytes;
        l = &v->lanes[v->n_open[VO_LANE]++];
        *l = nl;
        vd_ev_t start = { .type = lane_start[kind], .from = e->from, .id = e->id, .tag = e->tag,
                          .parent = kind == LANE_TOOL ? e->parent : VD_UNSET };
        if ((rc = vq_event(v, &start, m)))
            return rc;
        emitted = true;
    }
    /* CONTENT when the chunk has a delta or a rawEvent, or carries only metadata. */
    if (json_object_get(root, "delta") || json_object_get(root, "rawEvent") ||
        (!emitted && json_object_get(root, "metadata"))) {
        vd_ev_t content = { .type = lane_content[kind], .from = e->from,
                            .id = { l->id, l->id_len, true }, .tag = vd_owner_tag(v, l->owner),
                            .parent = VD_UNSET };
        return vq_event(v, &content, m);
    }
    return 0;
}

/* transformChunks, then verifyEvents on each event it yields. */
static int vx_event(validate_t *v, json_t *root, const vd_ev_t *e, vd_msg_t *m)
{
    int rc = 0, li;
    switch (e->type) {
    case AGUI_TEXT_MESSAGE_CHUNK:
        return vx_chunk(v, root, e, LANE_TEXT, m);
    case AGUI_TOOL_CALL_CHUNK:
        return vx_chunk(v, root, e, LANE_TOOL, m);
    case AGUI_REASONING_MESSAGE_CHUNK:
        return vx_chunk(v, root, e, LANE_RSN, m);
    case AGUI_RUN_STARTED:
    case AGUI_RUN_FINISHED:
    case AGUI_RUN_ERROR:
    case AGUI_MESSAGES_SNAPSHOT:   /* run-wide: every lane ends */
        while (!rc && v->n_open[VO_LANE])
            rc = vx_close(v, 0, e->type, m);
        break;
    case AGUI_RAW:
    case AGUI_ACTIVITY_SNAPSHOT:
    case AGUI_ACTIVITY_DELTA:
    case AGUI_REASONING_ENCRYPTED_VALUE:
    case AGUI_SUBAGENT_STARTED:
        break;
    default:   /* an explicit event (or a subagent's end) ends its own lane's stream */
        if ((li = vx_lane_at(v, vd_owner_find(v, e->tag))) >= 0)
            rc = vx_close(v, (uint32_t)li, e->type, m);
        break;
    }
    return rc ? rc : vq_event(v, e, m);
}

/* ---- the entry points ------------------------------------------------------------ */

/* Rejects events nested deeper than VALIDATE_MAX_DEPTH before jansson builds them.
 * Counts brackets outside strings; input that fools the count is malformed and
 * jansson rejects it anyway (its own limit is 2048). */
static bool vd_too_deep(const char *p, size_t n)
{
    /* Fast path: with at most VALIDATE_MAX_DEPTH opening brackets anywhere, the
     * nesting cannot be deeper ('[' | 0x20 == '{'; the count vectorises). */
    size_t opens = 0;
    for (size_t i = 0; i < n; i++)
        opens += (p[i] | 0x20) == '{';
    if (opens <= VALIDATE_MAX_DEPTH)
        return false;
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

/* Reads what the rules need from a schema-valid event. */
static void vd_extract(json_t *root, agui_type_t t, vd_ev_t *e)
{
    *e = (vd_ev_t){ .type = t, .from = t, .id = VD_UNSET, .tag = VD_UNSET, .parent = VD_UNSET };
    switch (t) {
    case AGUI_RUN_STARTED:
        e->messages = json_object_get(json_object_get(root, "input"), "messages");
        return;
    case AGUI_MESSAGES_SNAPSHOT:
        e->messages = json_object_get(root, "messages");
        return;
    case AGUI_RUN_FINISHED:
    case AGUI_RUN_ERROR:   /* run-scoped: a subagentRunId here is stripped, unread */
        return;
    default:
        break;
    }
    e->tag = vd_get(root, "subagentRunId");
    switch (t) {
    case AGUI_TOOL_CALL_START:
    case AGUI_TOOL_CALL_CHUNK:
        e->parent = vd_get(root, "parentMessageId");
        /* fall through */
    case AGUI_TOOL_CALL_ARGS:
    case AGUI_TOOL_CALL_END:
        e->id = vd_get(root, "toolCallId");
        break;
    case AGUI_STEP_STARTED:
    case AGUI_STEP_FINISHED:
        e->id = vd_get(root, "stepName");
        break;
    case AGUI_REASONING_ENCRYPTED_VALUE:
        e->id = vd_get(root, "entityId");
        e->subtype_tool = vs_str_eq(json_object_get(root, "subtype"), "tool-call");
        break;
    case AGUI_SUBAGENT_STARTED:
        e->parent = vd_get(root, "parentSubagentRunId");
        /* fall through */
    case AGUI_SUBAGENT_FINISHED:
    case AGUI_SUBAGENT_ERROR:
        e->id = e->tag;
        break;
    case AGUI_ACTIVITY_SNAPSHOT:
        e->id = vd_get(root, "messageId");
        e->replace_false = json_is_false(json_object_get(root, "replace"));
        break;
    case AGUI_STATE_SNAPSHOT:
    case AGUI_STATE_DELTA:
    case AGUI_RAW:
    case AGUI_CUSTOM:
        break;
    default:   /* TEXT_*, REASONING_*, TOOL_CALL_RESULT, ACTIVITY_DELTA */
        e->id = vd_get(root, "messageId");
        break;
    }
}

/* agui_type_from_name without a strlen per candidate: lengths (set once, in
 * vd_init_once) are compared first. */

static agui_type_t vd_type(const char *s, size_t n)
{
    for (int t = 0; t < AGUI_TYPE_COUNT; t++)
        if (vd_type_len[t] == n && !memcmp(agui_type_name((agui_type_t)t), s, n))
            return (agui_type_t)t;
    return AGUI_TYPE_COUNT;
}

static int vd_check(validate_t *v, json_t *root, agui_type_t *type, vd_msg_t *m)
{
    if (!json_is_object(root))
        return m_fail(m, "not a JSON object");
    json_t *jt = json_object_get(root, "type");
    if (!jt)
        return m_fail(m, "type: required");
    if (!json_is_string(jt))
        return m_fail(m, "type: expected a string");
    agui_type_t t = vd_type(json_string_value(jt), json_string_length(jt));
    if (t == AGUI_TYPE_COUNT) {
        m_str(m, "unknown event type ");
        m_id(m, json_string_value(jt), json_string_length(jt));
        return -EPROTO;
    }
    *type = t;

    vs_ctx_t c = { .m = m, .type = agui_type_name(t), .depth = 0 };
    int rc = vs_check_fields(&c, root, vs_events[t]);
    if (rc)
        return rc;

    if (v->failed) {
        m_str(m, "stream already failed: ");
        m_str(m, v->fail_msg);
        return -EPROTO;
    }
    vd_ev_t e;
    vd_extract(root, t, &e);
    rc = vx_event(v, root, &e, m);
    if (rc) {
        v->failed = true;
        memcpy(v->fail_msg, m->buf, m->len + 1);
    }
    return rc;
}

/* jansson quotes the offending token, which may be any bytes; keep messages ASCII. */
static int vd_not_json(vd_msg_t *m, const json_error_t *je)
{
    m_fmt(m, "not JSON (at byte %d): ", je->position);
    m_safe(m, je->text, strnlen(je->text, sizeof je->text));
    return -EPROTO;
}

int validate_event(validate_t *v, const char *json, size_t len, agui_type_t *type,
                   char msg[VALIDATE_MSG_MAX])
{
    vd_msg_t m = { msg, 0 };
    msg[0] = '\0';
    *type = AGUI_TYPE_COUNT;
    if (vd_too_deep(json, len)) {
        m_fmt(&m, "not JSON: nesting deeper than %d", VALIDATE_MAX_DEPTH);
        return -EPROTO;
    }
#if VALIDATE_ARENA
    vd_arena_t *a = vd_arena_get();
    if (a)
        a->active = true;
#endif
    /* Duplicate keys are not rejected: JSON.parse keeps the last, as jansson does. */
    const size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_error_t je;
    json_t *root = json_loadb(json, len, flags, &je);
    /* JSON.parse reads an integer of any size as a double; jansson refuses one
     * past int64. Retry with every number a real (rare events, cold path). */
    if (!root && json_error_code(&je) == json_error_numeric_overflow) {
#if VALIDATE_ARENA
        if (a)
            vd_arena_rewind(a);
#endif
        root = json_loadb(json, len, flags | JSON_DECODE_INT_AS_REAL, &je);
    }
    int rc = root ? vd_check(v, root, type, &m) : vd_not_json(&m, &je);
#if VALIDATE_ARENA
    /* Arena values need no decref; a spill to malloc means some do. Either way
     * nothing of the tree survives this call. */
    if (!a || a->spilled)
        json_decref(root);
    if (a) {
        vd_arena_rewind(a);
        a->active = false;
    }
#else
    json_decref(root);
#endif
    return rc;
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
