/* schema: the AG-UI shapes shared by the event validator and the RunAgentInput
 * validator, transcribed from @ag-ui/core 1.0.0 dist/schemas.mjs in zod's key
 * order, and the checker that walks a jtape against a shape.
 *
 * Invariants. Fields are checked in table order and the first failure stops the
 * walk, so the error reported is the one zod reports first. The checker never
 * enters free-form values (state, forwardedProps, metadata, ...): its depth is
 * the schema's, at most SCHEMA_DEPTH. It reads only the tape and writes only the
 * context; error text is built on failure alone. */
#include "proto/schema.h"
#include "proto/schema_tables.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *const schema_text_roles[] = { "developer", "system", "assistant", "user", NULL };
static const char *const function_lit[] = { "function", NULL };
static const char *const resume_status[] = { "resolved", "cancelled", NULL };

/* Content parts and their sources. */
static const schema_field_t src_data[] = { REQ("value", SK_STR), REQ("mimeType", SK_STR), END };
static const schema_field_t src_url[]  = { REQ("value", SK_STR), OPT("mimeType", SK_STR), END };
static const schema_field_t src_file[] = {
    REQ("value", SK_STR), OPT("provider", SK_STR), OPT("mimeType", SK_STR), END
};
static const schema_variant_t src_variants[] = {
    { "data", src_data }, { "url", src_url }, { "file", src_file }, { NULL, NULL }
};
static const schema_shape_t part_source = UNION("type", src_variants);
static const schema_field_t part_text[] = {
    OPT("id", SK_STR), REQ("text", SK_STR), OPT("metadata", SK_NONNULL), END
};
static const schema_field_t part_media[] = {
    OPT("id", SK_STR), REQ_OF("source", SK_SHAPE, &part_source), OPT("metadata", SK_NONNULL), END
};
static const schema_variant_t part_variants[] = {
    { "text", part_text }, { "image", part_media }, { "audio", part_media },
    { "video", part_media }, { "document", part_media }, { NULL, NULL }
};
const schema_shape_t schema_content_part = UNION("type", part_variants);

/* Messages (MessageSchema) and tool calls. */
static const schema_field_t function_fields[] = {
    REQ("name", SK_STR), REQ("arguments", SK_STR), END
};
static const schema_shape_t function_shape = SHAPE(function_fields);
static const schema_field_t tool_call_fields[] = {
    REQ("id", SK_STR), ENUM("type", true, function_lit),
    REQ_OF("function", SK_SHAPE, &function_shape), OPT("encryptedValue", SK_STR),
    OPT("metadata", SK_OBJ), END
};
static const schema_shape_t tool_call = SHAPE(tool_call_fields);
static const schema_field_t msg_text_only[] = {      /* developer, system */
    OPT("subagentRunId", SK_STR), REQ("id", SK_STR), OPT("name", SK_STR),
    OPT("encryptedValue", SK_STR), OPT("metadata", SK_OBJ), REQ("content", SK_STR), END
};
static const schema_field_t msg_assistant[] = {
    OPT("subagentRunId", SK_STR), REQ("id", SK_STR), OPT("name", SK_STR),
    OPT("encryptedValue", SK_STR), OPT("metadata", SK_OBJ), OPT("content", SK_STR),
    OPT_OF("toolCalls", SK_ARRAY, &tool_call), END
};
static const schema_field_t msg_user[] = {
    OPT("subagentRunId", SK_STR), REQ("id", SK_STR), OPT("name", SK_STR),
    OPT("encryptedValue", SK_STR), OPT("metadata", SK_OBJ),
    REQ_OF("content", SK_STR_OR_ARRAY, &schema_content_part), END
};
static const schema_field_t msg_tool[] = {
    OPT("subagentRunId", SK_STR), REQ("id", SK_STR),
    REQ_OF("content", SK_STR_OR_ARRAY, &schema_content_part), REQ("toolCallId", SK_STR),
    OPT("error", SK_STR), OPT("encryptedValue", SK_STR), OPT("metadata", SK_OBJ), END
};
static const schema_field_t msg_activity[] = {
    OPT("subagentRunId", SK_STR), REQ("id", SK_STR), REQ("activityType", SK_STR),
    REQ("content", SK_OBJ), OPT("metadata", SK_OBJ), END
};
static const schema_field_t msg_reasoning[] = {
    OPT("subagentRunId", SK_STR), REQ("id", SK_STR), REQ("content", SK_STR),
    OPT("encryptedValue", SK_STR), OPT("metadata", SK_OBJ), END
};
static const schema_variant_t msg_variants[] = {
    { "developer", msg_text_only }, { "system", msg_text_only },
    { "assistant", msg_assistant }, { "user", msg_user }, { "tool", msg_tool },
    { "activity", msg_activity }, { "reasoning", msg_reasoning }, { NULL, NULL }
};
const schema_shape_t schema_message = UNION("role", msg_variants);

/* ToolSchema, ContextSchema, ResumeEntrySchema. */
static const schema_field_t tool_fields[] = {
    REQ("name", SK_STR), REQ("description", SK_STR), OPT("parameters", SK_NONNULL),
    OPT("metadata", SK_OBJ), END
};
const schema_shape_t schema_tool = SHAPE(tool_fields);
static const schema_field_t context_fields[] = {
    REQ("description", SK_STR), REQ("value", SK_STR), END
};
const schema_shape_t schema_context = SHAPE(context_fields);
static const schema_field_t resume_fields[] = {
    REQ("interruptId", SK_STR), ENUM("status", true, resume_status),
    OPT("payload", SK_NONNULL), OPT("metadata", SK_OBJ), END
};
const schema_shape_t schema_resume = SHAPE(resume_fields);

/* RunAgentInputSchema. state is nullable (null means absent), forwardedProps is
 * not; tools and context default to [] when absent but must be arrays when present. */
static const schema_field_t input_fields[] = {
    REQ("threadId", SK_STR), REQ("runId", SK_STR), OPT("protocolVersion", SK_STR),
    OPT("parentRunId", SK_STR), OPT("state", SK_ANY),
    REQ_OF("messages", SK_ARRAY, &schema_message), OPT_OF("tools", SK_ARRAY, &schema_tool),
    OPT_OF("context", SK_ARRAY, &schema_context), OPT("forwardedProps", SK_NONNULL),
    OPT_OF("resume", SK_ARRAY, &schema_resume), END
};
const schema_shape_t schema_input = SHAPE(input_fields);

/* ---- the checker ---------------------------------------------------------------- */

static int fail(schema_ctx_t *c, const char *problem)
{
    snprintf(c->problem, sizeof c->problem, "%s", problem);
    return -EINVAL;
}

/* "expected one of a, b, c" from a list (cold: failures only). */
static int fail_list(schema_ctx_t *c, const char *const *names, size_t stride, bool one_of)
{
    size_t n = 0, len;
    for (const char *const *o = names; *o; o = (const char *const *)((const char *)o + stride))
        n++;
    len = (size_t)snprintf(c->problem, sizeof c->problem, "%s",
                           n > 1 || one_of ? "expected one of " : "expected ");
    size_t i = 0;
    for (const char *const *o = names; *o; o = (const char *const *)((const char *)o + stride), i++)
        if (len < sizeof c->problem)
            len += (size_t)snprintf(c->problem + len, sizeof c->problem - len, "%s%s",
                                    i ? ", " : "", *o);
    return -EINVAL;
}

static inline void push_key(schema_ctx_t *c, const char *key)
{
    c->at[c->depth].key = key;
    c->depth++;
}

static bool json_pointer(const char *s, size_t n)
{
    if (n && s[0] != '/')
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '~' && (i + 1 == n || (s[i + 1] != '0' && s[i + 1] != '1')))
            return false;
    return true;
}

int schema_check_value(schema_ctx_t *c, uint32_t v, const schema_field_t *f)
{
    jtape_t *t = c->t;
    uint8_t k = jtape_kind(t, v);
    int64_t ignored;
    switch ((enum schema_kind)f->kind) {
    case SK_ANY:
        return 0;
    case SK_NONNULL:
        return k == JT_NULL ? fail(c, "must not be null") : 0;
    case SK_STR:
        return k == JT_STR ? 0 : fail(c, "expected a string");
    case SK_BOOL:
        return k == JT_TRUE || k == JT_FALSE ? 0 : fail(c, "expected a boolean");
    case SK_INT:
        return jtape_safe_int(t, v, false, &ignored) ? 0 : fail(c, "expected a safe integer");
    case SK_UINT:
        return jtape_safe_int(t, v, true, &ignored) ? 0 : fail(c, "expected a safe integer >= 0");
    case SK_OBJ:
        return k == JT_OBJ ? 0 : fail(c, "expected an object");
    case SK_ENUM:
        for (const char *const *o = f->oneof; *o; o++)
            if (jtape_str_eq(t, v, *o, strlen(*o)))
                return 0;
        return fail_list(c, f->oneof, sizeof(const char *), c->one_of_always);
    case SK_PTR: {
        if (k != JT_STR)
            return fail(c, "expected a string");
        size_t n;
        const char *s = jtape_str(t, v, &n);
        return json_pointer(s, n) ? 0 : fail(c, "expected a JSON pointer");
    }
    case SK_SHAPE:
        return schema_check_shape(c, v, f->shape);
    case SK_STR_ARRAY:
    case SK_STR_OR_ARRAY:
    case SK_ARRAY:
        break;
    }
    if (f->kind == SK_STR_OR_ARRAY && k == JT_STR)
        return 0;
    if (k != JT_ARR)
        return fail(c, f->kind == SK_STR_OR_ARRAY ? "expected a string or an array" :
                       "expected an array");
    if (jtape_count(t, v) < f->min_items)
        return fail(c, "expected at least one item");
    uint32_t i = 0;
    for (uint32_t e = v + 1; e < jtape_end(t, v); e = jtape_end(t, e), i++) {
        c->at[c->depth].key = NULL;
        c->at[c->depth].index = i;
        c->depth++;
        int rc = f->kind == SK_STR_ARRAY
                 ? (jtape_kind(t, e) == JT_STR ? 0 : fail(c, "expected a string"))
                 : schema_check_shape(c, e, f->shape);
        if (rc)
            return rc;
        c->depth--;
    }
    return 0;
}

static int check_values(schema_ctx_t *c, const schema_field_t *f, const uint32_t *vals, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!vals[i] && !f[i].required)
            continue;
        push_key(c, f[i].key);
        int rc = vals[i] ? schema_check_value(c, vals[i], &f[i]) : fail(c, "required");
        if (rc)
            return rc;
        c->depth--;
    }
    return 0;
}

int schema_check_values(schema_ctx_t *c, const schema_field_t *f, const uint32_t *vals)
{
    size_t n = 0;
    while (f[n].key)
        n++;
    return check_values(c, f, vals, n);
}

#define FIELDS_AT_ONCE 16   /* the longest field list (input_fields) has 10 */

/* The object's members are read once per FIELDS_AT_ONCE fields
 * (jtape_get_keys) instead of a jtape_get per field, which reads every member
 * each time: that was ~1.9 k instructions of a RunAgentInput's check
 * (callgrind). Fields are checked in list order either way, so the first
 * failure is zod's. */
int schema_check_fields(schema_ctx_t *c, uint32_t o, const schema_field_t *f)
{
    for (size_t n; f->key; f += n) {
        jtape_key_t keys[FIELDS_AT_ONCE];
        uint32_t vals[FIELDS_AT_ONCE];
        for (n = 0; n < FIELDS_AT_ONCE && f[n].key; n++)
            keys[n] = (jtape_key_t){f[n].key, f[n].klen};
        jtape_get_keys(c->t, o, keys, n, vals);
        int rc = check_values(c, f, vals, n);
        if (rc)
            return rc;
    }
    return 0;
}

int schema_check_shape(schema_ctx_t *c, uint32_t v, const schema_shape_t *s)
{
    if (jtape_kind(c->t, v) != JT_OBJ)
        return fail(c, "expected an object");
    if (!s->tag)
        return schema_check_fields(c, v, s->fields);
    uint32_t tag = jtape_get(c->t, v, s->tag, s->tag_len);
    push_key(c, s->tag);
    if (!tag)
        return fail(c, "required");
    for (const schema_variant_t *o = s->variants; o->tag; o++)
        if (jtape_str_eq(c->t, tag, o->tag, strlen(o->tag))) {
            c->depth--;
            return schema_check_fields(c, v, o->fields);
        }
    return fail_list(c, &s->variants[0].tag, sizeof(schema_variant_t), true);
}

size_t schema_path(const schema_ctx_t *c, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < c->depth && len < cap; i++) {
        int n = c->at[i].key
                ? snprintf(out + len, cap - len, "%s%s", len ? "." : "", c->at[i].key)
                : snprintf(out + len, cap - len, "[%u]", c->at[i].index);
        if (n < 0)
            break;
        len += (size_t)n;
    }
    return len < cap ? len : cap - 1;
}
