/* runinput: parses a POST body with jansson and validates it as an AG-UI
 * RunAgentInput, the way @ag-ui/core 1.0.0's zod RunAgentInputSchema does.
 *
 * The schema below is a table transcribed from dist/schemas.mjs, in zod's key
 * order; validation stops at the first error, whose path is always one zod
 * reports too (checked against zod on mutated bodies while writing this).
 * Objects are loose (unknown keys pass); discriminated unions (message role,
 * content part type, part source type) report a bad discriminator at the
 * discriminator's own path. Validation never recurses into free-form values
 * (state, forwardedProps, tool parameters, metadata), so its stack depth is fixed
 * by the schema; the body's nesting is capped before jansson sees it.
 *
 * Deliberate differences from JSON.parse + zod: duplicate keys are rejected, as
 * are lone UTF-16 surrogates, NUL in keys and reals past double range such as
 * 1e999 (jansson cannot represent them), and nesting deeper than
 * RUNINPUT_MAX_DEPTH. Error texts are always ASCII so they can
 * be put into an event without re-validation.
 *
 * A runinput_t owns its jansson tree; every string it hands out points into it. */
#include "proto/runinput.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#define RUNINPUT_MAX_DEPTH 64

/* --- the schema, as data -------------------------------------------------- */

enum ri_kind {
    RI_ANY,        /* any value, null included (state) */
    RI_NONNULL,    /* z.any().refine(v => v !== null) */
    RI_STR,
    RI_OBJ,        /* a non-null, non-array object (MetadataSchema, activity content) */
    RI_ENUM,       /* a string from `oneof` */
    RI_SHAPE,      /* an object validated by `shape` */
    RI_ARRAY,      /* an array of `shape` */
    RI_STR_OR_ARRAY, /* z.union([z.string(), z.array(shape)]) */
};

typedef struct ri_shape ri_shape_t;

typedef struct ri_field {
    const char        *key;
    enum ri_kind       kind;
    bool               required;
    const ri_shape_t  *shape;      /* RI_SHAPE, RI_ARRAY, RI_STR_OR_ARRAY */
    const char *const *oneof;      /* RI_ENUM, NULL-terminated */
    const char        *oneof_msg;  /* RI_ENUM */
} ri_field_t;

typedef struct ri_variant {
    const char       *tag;
    const ri_field_t *fields;
} ri_variant_t;

/* A plain loose object (tag == NULL, fields) or a discriminated union on `tag`. */
struct ri_shape {
    const char         *tag;
    const char         *tag_msg;
    const ri_variant_t *variants;  /* terminated by tag == NULL */
    const ri_field_t   *fields;
};

#define REQ(k, kind)         { k, kind, true,  NULL, NULL, NULL }
#define OPT(k, kind)         { k, kind, false, NULL, NULL, NULL }
#define REQ_OF(k, kind, sh)  { k, kind, true,  sh,   NULL, NULL }
#define OPT_OF(k, kind, sh)  { k, kind, false, sh,   NULL, NULL }
#define END                  { NULL, RI_ANY, false, NULL, NULL, NULL }

/* Part sources: DataSourceSchema, UrlSourceSchema, FileSourceSchema. */
static const ri_field_t ri_src_data[] = { REQ("value", RI_STR), REQ("mimeType", RI_STR), END };
static const ri_field_t ri_src_url[]  = { REQ("value", RI_STR), OPT("mimeType", RI_STR), END };
static const ri_field_t ri_src_file[] = {
    REQ("value", RI_STR), OPT("provider", RI_STR), OPT("mimeType", RI_STR), END
};
static const ri_variant_t ri_src_variants[] = {
    { "data", ri_src_data }, { "url", ri_src_url }, { "file", ri_src_file }, { NULL, NULL }
};
static const ri_shape_t ri_part_source = {
    "type", "expected one of data, url, file", ri_src_variants, NULL
};

/* ContentPartSchema: TextPart and the four media parts. */
static const ri_field_t ri_part_text[] = {
    OPT("id", RI_STR), REQ("text", RI_STR), OPT("metadata", RI_NONNULL), END
};
static const ri_field_t ri_part_media[] = {
    OPT("id", RI_STR), REQ_OF("source", RI_SHAPE, &ri_part_source),
    OPT("metadata", RI_NONNULL), END
};
static const ri_variant_t ri_part_variants[] = {
    { "text", ri_part_text }, { "image", ri_part_media }, { "audio", ri_part_media },
    { "video", ri_part_media }, { "document", ri_part_media }, { NULL, NULL }
};
static const ri_shape_t ri_content_part = {
    "type", "expected one of text, image, audio, video, document", ri_part_variants, NULL
};

/* ToolCallSchema and FunctionCallSchema. */
static const char *const ri_function_lit[] = { "function", NULL };
static const ri_field_t ri_function_fields[] = {
    REQ("name", RI_STR), REQ("arguments", RI_STR), END
};
static const ri_shape_t ri_function = { NULL, NULL, NULL, ri_function_fields };
static const ri_field_t ri_tool_call_fields[] = {
    REQ("id", RI_STR),
    { "type", RI_ENUM, true, NULL, ri_function_lit, "expected one of function" },
    REQ_OF("function", RI_SHAPE, &ri_function),
    OPT("encryptedValue", RI_STR), OPT("metadata", RI_OBJ), END
};
static const ri_shape_t ri_tool_call = { NULL, NULL, NULL, ri_tool_call_fields };

/* MessageSchema: one field list per role, role itself checked first. */
static const ri_field_t ri_msg_text_only[] = {      /* developer, system */
    OPT("subagentRunId", RI_STR), REQ("id", RI_STR), OPT("name", RI_STR),
    OPT("encryptedValue", RI_STR), OPT("metadata", RI_OBJ), REQ("content", RI_STR), END
};
static const ri_field_t ri_msg_assistant[] = {
    OPT("subagentRunId", RI_STR), REQ("id", RI_STR), OPT("name", RI_STR),
    OPT("encryptedValue", RI_STR), OPT("metadata", RI_OBJ), OPT("content", RI_STR),
    OPT_OF("toolCalls", RI_ARRAY, &ri_tool_call), END
};
static const ri_field_t ri_msg_user[] = {
    OPT("subagentRunId", RI_STR), REQ("id", RI_STR), OPT("name", RI_STR),
    OPT("encryptedValue", RI_STR), OPT("metadata", RI_OBJ),
    REQ_OF("content", RI_STR_OR_ARRAY, &ri_content_part), END
};
static const ri_field_t ri_msg_tool[] = {
    OPT("subagentRunId", RI_STR), REQ("id", RI_STR),
    REQ_OF("content", RI_STR_OR_ARRAY, &ri_content_part), REQ("toolCallId", RI_STR),
    OPT("error", RI_STR), OPT("encryptedValue", RI_STR), OPT("metadata", RI_OBJ), END
};
static const ri_field_t ri_msg_activity[] = {
    OPT("subagentRunId", RI_STR), REQ("id", RI_STR), REQ("activityType", RI_STR),
    REQ("content", RI_OBJ), OPT("metadata", RI_OBJ), END
};
static const ri_field_t ri_msg_reasoning[] = {
    OPT("subagentRunId", RI_STR), REQ("id", RI_STR), REQ("content", RI_STR),
    OPT("encryptedValue", RI_STR), OPT("metadata", RI_OBJ), END
};
static const ri_variant_t ri_msg_variants[] = {
    { "developer", ri_msg_text_only }, { "system", ri_msg_text_only },
    { "assistant", ri_msg_assistant }, { "user", ri_msg_user }, { "tool", ri_msg_tool },
    { "activity", ri_msg_activity }, { "reasoning", ri_msg_reasoning }, { NULL, NULL }
};
static const ri_shape_t ri_message = {
    "role", "expected one of developer, system, assistant, user, tool, activity, reasoning",
    ri_msg_variants, NULL
};

/* ToolSchema, ContextSchema, ResumeEntrySchema. */
static const ri_field_t ri_tool_fields[] = {
    REQ("name", RI_STR), REQ("description", RI_STR), OPT("parameters", RI_NONNULL),
    OPT("metadata", RI_OBJ), END
};
static const ri_shape_t ri_tool = { NULL, NULL, NULL, ri_tool_fields };
static const ri_field_t ri_context_fields[] = {
    REQ("description", RI_STR), REQ("value", RI_STR), END
};
static const ri_shape_t ri_context = { NULL, NULL, NULL, ri_context_fields };
static const char *const ri_resume_status[] = { "resolved", "cancelled", NULL };
static const ri_field_t ri_resume_fields[] = {
    REQ("interruptId", RI_STR),
    { "status", RI_ENUM, true, NULL, ri_resume_status, "expected one of resolved, cancelled" },
    OPT("payload", RI_NONNULL), OPT("metadata", RI_OBJ), END
};
static const ri_shape_t ri_resume = { NULL, NULL, NULL, ri_resume_fields };

/* RunAgentInputSchema. state is nullable (null means absent), forwardedProps is
 * not; tools and context default to [] when absent but must be arrays when present. */
static const ri_field_t ri_input_fields[] = {
    REQ("threadId", RI_STR), REQ("runId", RI_STR),
    OPT("protocolVersion", RI_STR), OPT("parentRunId", RI_STR),
    OPT("state", RI_ANY),
    REQ_OF("messages", RI_ARRAY, &ri_message),
    OPT_OF("tools", RI_ARRAY, &ri_tool),
    OPT_OF("context", RI_ARRAY, &ri_context),
    OPT("forwardedProps", RI_NONNULL),
    OPT_OF("resume", RI_ARRAY, &ri_resume),
    END
};
static const ri_shape_t ri_input = { NULL, NULL, NULL, ri_input_fields };

#undef REQ
#undef OPT
#undef REQ_OF
#undef OPT_OF
#undef END

/* --- the validator ---------------------------------------------------------- */

/* The path of the value being checked, grown and cut back as validation descends;
 * a path that does not fit is truncated, never overrun. */
typedef struct ri_ctx {
    runinput_err_t *err;
    size_t          len;
    char            path[sizeof(((runinput_err_t *)0)->field)];
} ri_ctx_t;

static void ri_pop(ri_ctx_t *c, size_t saved)
{
    c->len = saved;
    c->path[saved] = '\0';
}

/* Appends raw bytes to the path, truncating at its capacity. */
static size_t ri_push_raw(ri_ctx_t *c, const char *p, size_t n)
{
    size_t saved = c->len, room = sizeof c->path - 1 - c->len;
    if (n > room)
        n = room;
    memcpy(c->path + c->len, p, n);
    c->len += n;
    c->path[c->len] = '\0';
    return saved;
}

/* Path pushes run for every field of every valid body, so they avoid printf:
 * the profile under load had vsnprintf at 2% of agate's time. */
static size_t ri_push_key(ri_ctx_t *c, const char *key)
{
    size_t saved = c->len;
    if (c->len)
        ri_push_raw(c, ".", 1);
    ri_push_raw(c, key, strlen(key));
    return saved;
}

static size_t ri_push_index(ri_ctx_t *c, size_t i)
{
    char tmp[24];
    int n = 0;
    tmp[sizeof tmp - 1 - n++] = ']';
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + i % 10);
        i /= 10;
    } while (i);
    tmp[sizeof tmp - 1 - n++] = '[';
    return ri_push_raw(c, tmp + sizeof tmp - n, (size_t)n);
}

/* Records the error at the current path; the caller returns at once, so the first
 * error found is the one reported. */
static int ri_fail(ri_ctx_t *c, const char *msg)
{
    memcpy(c->err->field, c->path, c->len + 1);
    snprintf(c->err->message, sizeof c->err->message, "%s", msg);
    return -EINVAL;
}

static int ri_check_shape(ri_ctx_t *c, json_t *v, const ri_shape_t *s);

/* Exact string equality: JSON strings may hold NUL ("user\u0000x" is not "user"). */
static bool ri_str_eq(const json_t *v, const char *lit)
{
    size_t n = strlen(lit);
    return json_is_string(v) && json_string_length(v) == n &&
           memcmp(json_string_value(v), lit, n) == 0;
}

static int ri_check_value(ri_ctx_t *c, json_t *v, const ri_field_t *f)
{
    switch (f->kind) {
    case RI_ANY:
        return 0;
    case RI_NONNULL:
        return json_is_null(v) ? ri_fail(c, "must not be null") : 0;
    case RI_STR:
        return json_is_string(v) ? 0 : ri_fail(c, "expected a string");
    case RI_OBJ:
        return json_is_object(v) ? 0 : ri_fail(c, "expected an object");
    case RI_ENUM:
        for (const char *const *o = f->oneof; *o; o++)
            if (ri_str_eq(v, *o))
                return 0;
        return ri_fail(c, f->oneof_msg);
    case RI_SHAPE:
        return ri_check_shape(c, v, f->shape);
    case RI_STR_OR_ARRAY:
        if (json_is_string(v))
            return 0;
        if (!json_is_array(v))
            return ri_fail(c, "expected a string or an array");
        /* fall through */
    case RI_ARRAY: {
        if (!json_is_array(v))
            return ri_fail(c, "expected an array");
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            size_t saved = ri_push_index(c, i);
            int rc = ri_check_shape(c, e, f->shape);
            if (rc)
                return rc;
            ri_pop(c, saved);
        }
        return 0;
    }
    }
    return 0;
}

static int ri_check_fields(ri_ctx_t *c, json_t *obj, const ri_field_t *f)
{
    for (; f->key; f++) {
        json_t *v = json_object_get(obj, f->key);
        if (!v && !f->required)
            continue;
        size_t saved = ri_push_key(c, f->key);
        int rc = v ? ri_check_value(c, v, f) : ri_fail(c, "required");
        if (rc)
            return rc;
        ri_pop(c, saved);
    }
    return 0;
}

static int ri_check_shape(ri_ctx_t *c, json_t *v, const ri_shape_t *s)
{
    if (!json_is_object(v))
        return ri_fail(c, "expected an object");
    if (!s->tag)
        return ri_check_fields(c, v, s->fields);

    json_t *tag = json_object_get(v, s->tag);
    size_t saved = ri_push_key(c, s->tag);
    if (!tag)
        return ri_fail(c, "required");
    for (const ri_variant_t *o = s->variants; o->tag; o++)
        if (ri_str_eq(tag, o->tag)) {
            ri_pop(c, saved);
            return ri_check_fields(c, v, o->fields);
        }
    return ri_fail(c, s->tag_msg);
}

/* --- parsing ------------------------------------------------------------------ */

/* Rejects bodies nested deeper than RUNINPUT_MAX_DEPTH before jansson builds (and
 * later recursively frees) them. Counts brackets outside strings; a malformed body
 * that fools the count is rejected by jansson anyway, whose own limit is 2048. */
static bool ri_too_deep(const char *p, size_t n)
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
            if (++depth > RUNINPUT_MAX_DEPTH)
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

/* jansson quotes the offending token, which may be any bytes; keep messages ASCII. */
static void ri_json_error(runinput_err_t *err, const json_error_t *je)
{
    char text[sizeof je->text];
    size_t i;
    for (i = 0; i < sizeof text - 1 && je->text[i]; i++) {
        unsigned char ch = (unsigned char)je->text[i];
        text[i] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
    }
    text[i] = '\0';
    err->field[0] = '\0';
    snprintf(err->message, sizeof err->message, "invalid JSON at line %d column %d: %s",
             je->line, je->column, text);
}

/* forwardedProps.agate.tokenIntervalMs: an integer >= 0 within JavaScript's safe
 * range (what z.int() accepts). 1e3 and 5.0 arrive as reals and count as integers,
 * as they do in JavaScript. */
static int ri_token_interval(json_t *root, int64_t *out, runinput_err_t *err)
{
    *out = -1;
    json_t *agate = json_object_get(json_object_get(root, "forwardedProps"), "agate");
    json_t *v = json_object_get(agate, "tokenIntervalMs");   /* NULL-safe chain */
    if (!v)
        return 0;
    const double max_safe = 9007199254740991.0;
    if (json_is_integer(v) && json_integer_value(v) >= 0 &&
        json_integer_value(v) <= (json_int_t)max_safe) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* range first: the cast is only defined for values that fit */
        if (d >= 0 && d <= max_safe && d == (double)(int64_t)d) {
            *out = (int64_t)d;
            return 0;
        }
    }
    snprintf(err->field, sizeof err->field, "forwardedProps.agate.tokenIntervalMs");
    snprintf(err->message, sizeof err->message, "expected an integer >= 0");
    return -EINVAL;
}

int runinput_parse(const char *body, size_t len, runinput_t *in, runinput_err_t *err)
{
    memset(in, 0, sizeof *in);
    in->token_interval_ms = -1;
    in->last_user_msg = -1;
    err->field[0] = err->message[0] = '\0';

    if (ri_too_deep(body, len)) {
        snprintf(err->message, sizeof err->message, "nesting deeper than %d",
                 RUNINPUT_MAX_DEPTH);
        return -EINVAL;
    }

    const size_t flags = JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_error_t je;
    json_t *root = json_loadb(body, len, flags, &je);
    /* JSON.parse reads an integer of any size as a double; jansson refuses one
     * past int64. Retry with every number a real (rare bodies, cold path). */
    if (!root && json_error_code(&je) == json_error_numeric_overflow)
        root = json_loadb(body, len, flags | JSON_DECODE_INT_AS_REAL, &je);
    if (!root) {
        ri_json_error(err, &je);
        return -EINVAL;
    }

    ri_ctx_t c = { .err = err, .len = 0, .path = "" };
    int rc = ri_check_shape(&c, root, &ri_input);
    if (!rc)
        rc = ri_token_interval(root, &in->token_interval_ms, err);
    if (rc) {
        json_decref(root);
        in->token_interval_ms = -1;
        return rc;
    }

    json_t *tid = json_object_get(root, "threadId"), *rid = json_object_get(root, "runId");
    in->thread_id = json_string_value(tid);
    in->thread_id_len = json_string_length(tid);
    in->run_id = json_string_value(rid);
    in->run_id_len = json_string_length(rid);

    json_t *msgs = json_object_get(root, "messages");
    for (size_t i = json_array_size(msgs); i-- > 0; ) {
        if (ri_str_eq(json_object_get(json_array_get(msgs, i), "role"), "user")) {
            in->last_user_msg = i <= (size_t)INT_MAX ? (int)i : -1;
            break;
        }
    }
    in->root = root;   /* ownership moves to in; runinput_free() releases it */
    return 0;
}

void runinput_free(runinput_t *in)
{
    if (!in)
        return;
    json_decref(in->root);
    in->root = NULL;
    in->thread_id = in->run_id = NULL;
    in->thread_id_len = in->run_id_len = 0;
}

int runinput_user_text(const runinput_t *in, buf_t *out)
{
    if (!in->root || in->last_user_msg < 0)
        return 0;
    json_t *msg = json_array_get(json_object_get(in->root, "messages"),
                                 (size_t)in->last_user_msg);
    json_t *content = json_object_get(msg, "content");

    if (json_is_string(content)) {
        size_t n = json_string_length(content);
        if (!n)
            return 0;
        if (buf_reserve(out, n))
            return -ENOMEM;
        memcpy(out->data + out->len, json_string_value(content), n);
        out->len += n;
        return 1;
    }

    /* Parts: size first so the text lands with one reservation. */
    size_t i, total = 0;
    json_t *part;
    json_array_foreach(content, i, part) {
        if (ri_str_eq(json_object_get(part, "type"), "text"))
            total += json_string_length(json_object_get(part, "text"));
    }
    if (!total)
        return 0;
    if (buf_reserve(out, total))
        return -ENOMEM;
    json_array_foreach(content, i, part) {
        if (ri_str_eq(json_object_get(part, "type"), "text")) {
            json_t *t = json_object_get(part, "text");
            memcpy(out->data + out->len, json_string_value(t), json_string_length(t));
            out->len += json_string_length(t);
        }
    }
    return 1;
}
