/* schema: @ag-ui/core 1.0's zod schemas as data, and one checker that walks a
 * jtape against them. proto/validate (events) and proto/runinput (request
 * bodies) share it: both read the same messages, tools, context and resume
 * entries, and both must report the first error zod would, at zod's path. */
#ifndef AGATE_SCHEMA_H
#define AGATE_SCHEMA_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/jtape.h"

enum schema_kind {
    SK_ANY,          /* present, any value, null included */
    SK_NONNULL,      /* z.any().refine(v => v !== null) */
    SK_STR,
    SK_BOOL,
    SK_INT,          /* z.int() within +-(2^53 - 1) */
    SK_UINT,         /* z.int().min(0).max(2^53 - 1) */
    SK_OBJ,          /* a non-null, non-array object (MetadataSchema and the like) */
    SK_ENUM,         /* a string from `oneof` */
    SK_PTR,          /* JsonPointerSchema: ^(/([^/~]|~[01])*)*$ */
    SK_SHAPE,        /* an object checked against `shape` */
    SK_ARRAY,        /* an array of `shape`, at least min_items long */
    SK_STR_ARRAY,
    SK_STR_OR_ARRAY, /* z.union([z.string(), z.array(shape)]) */
};

typedef struct schema_shape schema_shape_t;

typedef struct schema_field {
    const char           *key;
    uint8_t               klen;
    uint8_t               kind;
    bool                  required;
    uint8_t               min_items;
    const schema_shape_t *shape;
    const char *const    *oneof;    /* SK_ENUM, NULL-terminated */
} schema_field_t;

typedef struct schema_variant {
    const char           *tag;
    const schema_field_t *fields;
} schema_variant_t;

/* A loose object (tag == NULL: fields) or a discriminated union on `tag`;
 * unknown keys pass and are never looked at. */
struct schema_shape {
    const char             *tag;
    uint8_t                 tag_len;
    const schema_variant_t *variants;   /* ends with tag == NULL */
    const schema_field_t   *fields;
};

#define SCHEMA_F(k, kd, rq, mi, sh, of) { k, sizeof(k) - 1, kd, rq, mi, sh, of }
#define SCHEMA_REQ(k, kd)        SCHEMA_F(k, kd, true, 0, NULL, NULL)
#define SCHEMA_OPT(k, kd)        SCHEMA_F(k, kd, false, 0, NULL, NULL)
#define SCHEMA_REQ_OF(k, kd, sh) SCHEMA_F(k, kd, true, 0, sh, NULL)
#define SCHEMA_OPT_OF(k, kd, sh) SCHEMA_F(k, kd, false, 0, sh, NULL)
#define SCHEMA_ENUM(k, rq, l)    SCHEMA_F(k, SK_ENUM, rq, 0, NULL, l)
#define SCHEMA_END               { NULL, 0, SK_ANY, false, 0, NULL, NULL }

/* Shapes both validators use. */
extern const schema_shape_t schema_message;       /* MessageSchema, on role */
extern const schema_shape_t schema_content_part;  /* ContentPartSchema, on type */
extern const schema_shape_t schema_tool;
extern const schema_shape_t schema_context;
extern const schema_shape_t schema_resume;
extern const schema_shape_t schema_input;          /* RunAgentInputSchema */
extern const char *const    schema_text_roles[];   /* developer, system, assistant, user */

/* Where the checker is, kept as frames (a key, or an index when key is NULL)
 * and formatted only when a check fails: the success path does no formatting.
 * Depth is fixed by the schema (free-form values are not entered). */
#define SCHEMA_DEPTH 12

typedef struct schema_ctx {
    jtape_t    *t;
    bool        one_of_always;   /* "expected one of x" for a one-literal enum (runinput's
                                    wording), else "expected x" (validate's) */
    int         depth;
    struct { const char *key; uint32_t index; } at[SCHEMA_DEPTH];
    char        problem[96];     /* set on failure: "expected a string", "required", ... */
} schema_ctx_t;

/* 0, or -EINVAL with c->at[0..depth) the path and c->problem the complaint.
 * o must be an object for schema_check_fields. schema_check_value checks one
 * present value v against field f (f's key is not pushed on the path). */
int schema_check_value(schema_ctx_t *c, uint32_t v, const schema_field_t *f);
int schema_check_fields(schema_ctx_t *c, uint32_t o, const schema_field_t *f);
int schema_check_shape(schema_ctx_t *c, uint32_t v, const schema_shape_t *s);
/* The same as schema_check_fields, with the caller having found each field's
 * value already: vals[i] for f[i], 0 when absent. */
int schema_check_values(schema_ctx_t *c, const schema_field_t *f, const uint32_t *vals);

/* The failing path, "messages[2].content" ("" at the top), NUL-terminated and
 * cut to fit; returns its length. */
size_t schema_path(const schema_ctx_t *c, char *out, size_t cap);

#endif
