/* pbjson: AG-UI events between their protobuf encoding and their JSON form.
 *
 * The packing and unpacking are libprotobuf-c's, driven by the code protoc-c
 * generates from proto/agui.proto; this file only moves values between
 * protobuf-c structs and JSON. Most of that is generic, walking the message
 * descriptors: a JSON key is a field's name in camelCase, a string is a string,
 * a google.protobuf.Value is any JSON value. The places where AG-UI's JSON and
 * its protobuf schema differ are hooks, each following @ag-ui/proto 1.0.0:
 *   - the envelope: "type", "timestamp", "rawEvent", "metadata" live in
 *     BaseEvent, the rest in the arm the type names;
 *   - RUN_FINISHED / SUBAGENT_FINISHED: the outcome object is flattened;
 *   - Message and TOOL_CALL_RESULT: content is a string, a list of parts
 *     (content_parts) or, for the activity role, an object (activity_content);
 *   - content parts and their sources: the "type" member picks a oneof arm;
 *   - JSON Patch: op names are an enum.
 * Decoding writes what @ag-ui/proto's decode returns: implicit (proto3) fields
 * with their defaults, repeated fields as arrays, optional ones only when set.
 *
 * Invariants. Nothing here allocates per event once a thread is warm: protobuf-c
 * structs, strings and arrays come from a per-thread bump arena that is rewound
 * after each conversion (the first chunk is kept); JSON input is read onto a
 * per-thread jtape (proto/jtape.c), whose arrays keep their capacity. Input
 * nesting is bounded (PBJSON_MAX_DEPTH) before any recursive code sees it: on
 * the wire by a descriptor-guided walk, in JSON by the tape's depth bound and
 * ours. */
#include "proto/pbjson.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agui.pb-c.h"
#include "core/json.h"
#include "proto/jtape.h"

typedef const ProtobufCMessageDescriptor pbd_t;
typedef const ProtobufCFieldDescriptor pbf_t;

/* ---- per-thread arena -------------------------------------------------------- */

#define PB_CHUNK (64 * 1024)

typedef struct pb_chunk {
    struct pb_chunk *next;
    size_t cap, used;
    _Alignas(16) char data[];
} pb_chunk_t;

/* head: the chunk being filled; keep: the first chunk, the one kept across rewinds. */
typedef struct pb_arena {
    pb_chunk_t *head, *keep;
    jtape_t     tape;         /* the JSON side's reader, capacity kept */
} pb_arena_t;

static __thread pb_arena_t *pb_tls;
static pthread_key_t pb_key;
static pthread_once_t pb_once = PTHREAD_ONCE_INIT;

static void pb_arena_destroy(void *p)
{
    pb_arena_t *a = p;
    jtape_free(&a->tape);
    while (a->head) {
        pb_chunk_t *c = a->head;
        a->head = c->next;
        free(c);
    }
    free(a);
}

/* Names the arm and EventType value of every agui_type_t (filled once). */
static int type_arm[AGUI_TYPE_COUNT];     /* Event oneof field number, 0 when none */
static int type_pb[AGUI_TYPE_COUNT];      /* ag_ui.EventType value */

static void pb_init(void)
{
    pthread_key_create(&pb_key, pb_arena_destroy);
    for (int t = 0; t < AGUI_TYPE_COUNT; t++) {
        const char *name = agui_type_name((agui_type_t)t);
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(&ag_ui__event_type__descriptor, name);
        char lower[64];
        size_t n = strlen(name);
        if (!v || n >= sizeof lower)
            continue;
        for (size_t i = 0; i <= n; i++)
            lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(&ag_ui__event__descriptor, lower);
        type_pb[t] = v->value;
        type_arm[t] = f ? (int)f->id : 0;
    }
}

static pb_arena_t *arena_get(void)
{
    pthread_once(&pb_once, pb_init);
    if (!pb_tls) {
        pb_arena_t *a = calloc(1, sizeof *a);
        if (!a)
            return NULL;
        pthread_setspecific(pb_key, a);
        pb_tls = a;
    }
    return pb_tls;
}

/* Back to the first chunk; a big event's extra chunks go back to the system. */
static void arena_rewind(pb_arena_t *a)
{
    while (a->head && a->head != a->keep) {
        pb_chunk_t *c = a->head;
        a->head = c->next;
        free(c);
    }
    if (a->keep)
        a->keep->used = 0;
}

static void *arena_alloc(void *ud, size_t n)
{
    pb_arena_t *a = ud;
    n = (n + 15) & ~(size_t)15;
    pb_chunk_t *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > PB_CHUNK ? n : PB_CHUNK;
        if (!(c = malloc(sizeof *c + cap)))
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
        if (!a->keep)
            a->keep = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static void arena_free(void *ud, void *p) { (void)ud, (void)p; }

/* ---- conversion state --------------------------------------------------------- */

typedef struct conv {
    ProtobufCAllocator alloc;
    buf_t *b;            /* JSON output (decode) */
    int    err;          /* first error: -EINVAL / -EPROTO / -ENOMEM */
    char  *msg;          /* PBJSON_MSG_MAX bytes */
    jtape_t *t;          /* JSON input (encode) */
    int    depth;
} conv_t;

static void fail(conv_t *cv, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(conv_t *cv, int err, const char *fmt, ...)
{
    if (cv->err)
        return;
    cv->err = err;
    if (cv->msg) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(cv->msg, PBJSON_MSG_MAX, fmt, ap);
        va_end(ap);
    }
}

static void *cv_alloc(conv_t *cv, size_t n)
{
    void *p = arena_alloc(cv->alloc.allocator_data, n ? n : 1);
    if (!p)
        fail(cv, -ENOMEM, "out of memory");
    return p;
}

static char *cv_strndup(conv_t *cv, const char *s, size_t n)
{
    char *p = cv_alloc(cv, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

static ProtobufCMessage *cv_new(conv_t *cv, pbd_t *d)
{
    ProtobufCMessage *m = cv_alloc(cv, d->sizeof_message);
    if (m)
        d->message_init(m);
    return m;
}

static inline void *member(void *m, unsigned off) { return (char *)m + off; }

/* A field is in a real (several-member) oneof, not a synthetic one standing for
 * proto3 `optional`. */
static bool real_oneof(pbd_t *d, pbf_t *f)
{
    if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
        return false;
    unsigned n = 0;
    for (unsigned i = 0; i < d->n_fields; i++)
        n += (d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && d->fields[i].quantifier_offset == f->quantifier_offset;
    return n > 1;
}

static pbf_t *fld(pbd_t *d, const char *name) { return protobuf_c_message_descriptor_get_field_by_name(d, name); }

static size_t elem_size(pbf_t *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    case PROTOBUF_C_TYPE_INT64: return sizeof(int64_t);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    default: return sizeof(int32_t);
    }
}

/* ==== JSON -> protobuf ============================================================ */

/* The JSON is read onto a jtape (proto/jtape.h): a flat array of nodes, no
 * allocation per value once the thread's tape has grown. Nodes are indices,
 * 0 is the root; JN_NONE stands for an absent member. */
typedef uint32_t jn_t;
#define JN_NONE UINT32_MAX

static inline uint8_t jk(conv_t *cv, jn_t i) { return jtape_kind(cv->t, i); }

static jn_t jget(conv_t *cv, jn_t o, const char *key)
{
    if (o == JN_NONE || jk(cv, o) != JT_OBJ)
        return JN_NONE;
    jn_t v = jtape_get(cv->t, o, key, strlen(key));
    return v ? v : JN_NONE;
}

static bool jstr_is(conv_t *cv, jn_t i, const char *lit)
{
    return i != JN_NONE && jk(cv, i) == JT_STR && jtape_str_eq(cv->t, i, lit, strlen(lit));
}

/* A JSON number as JSON.parse reads it: a double. */
static double jnum(conv_t *cv, jn_t i)
{
    const jtape_node_t *n = &cv->t->nodes[i];
    char tmp[64];
    const char *s = cv->t->src + n->off;
    if (n->len < sizeof tmp) {
        memcpy(tmp, s, n->len);
        tmp[n->len] = 0;
        return strtod(tmp, NULL);
    }
    char *big = cv_strndup(cv, s, n->len);   /* a long spelling: rare */
    return big ? strtod(big, NULL) : 0;
}

/* A JSON string as a protobuf-c string: NUL-terminated, so one holding U+0000
 * cannot be carried. */
static char *jstrdup(conv_t *cv, jn_t i, const char *what)
{
    size_t n;
    const char *s = jtape_str(cv->t, i, &n);
    if (memchr(s, 0, n)) {
        fail(cv, -EINVAL, "%s: a string holds U+0000, which protobuf-c strings cannot carry", what);
        return NULL;
    }
    return cv_strndup(cv, s, n);
}

static ProtobufCMessage *msg_from_json(conv_t *cv, pbd_t *d, jn_t obj);
static Google__Protobuf__Value *value_from_json(conv_t *cv, jn_t v);

static Google__Protobuf__Struct *struct_from_json(conv_t *cv, jn_t o)
{
    Google__Protobuf__Struct *s = (Google__Protobuf__Struct *)cv_new(cv, &google__protobuf__struct__descriptor);
    if (!s || !(s->fields = cv_alloc(cv, jtape_count(cv->t, o) * sizeof *s->fields)))
        return NULL;
    size_t i = 0;
    for (jn_t k = o + 1; k < jtape_end(cv->t, o) && !cv->err; k = jtape_end(cv->t, k + 1)) {
        Google__Protobuf__Struct__FieldsEntry *e =
            (void *)cv_new(cv, &google__protobuf__struct__fields_entry__descriptor);
        if (!e || !(e->key = jstrdup(cv, k, "a key")) || !(e->value = value_from_json(cv, k + 1)))
            return NULL;
        s->fields[i++] = e;
    }
    s->n_fields = i;
    return cv->err ? NULL : s;
}

static Google__Protobuf__Value *value_from_json(conv_t *cv, jn_t v)
{
    if (++cv->depth > PBJSON_MAX_DEPTH) {
        fail(cv, -EINVAL, "nested deeper than %d", PBJSON_MAX_DEPTH);
        return NULL;
    }
    Google__Protobuf__Value *p = (Google__Protobuf__Value *)cv_new(cv, &google__protobuf__value__descriptor);
    if (!p)
        return NULL;
    switch (jk(cv, v)) {
    case JT_NULL:
        p->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
        p->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
        break;
    case JT_TRUE: case JT_FALSE:
        p->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
        p->bool_value = jk(cv, v) == JT_TRUE;
        break;
    case JT_NUM:
        p->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        p->number_value = jnum(cv, v);
        break;
    case JT_STR:
        p->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        p->string_value = jstrdup(cv, v, "a value");
        break;
    case JT_OBJ:
        p->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
        p->struct_value = struct_from_json(cv, v);
        break;
    case JT_ARR: {
        p->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        Google__Protobuf__ListValue *l = (void *)cv_new(cv, &google__protobuf__list_value__descriptor);
        if (!l || !(l->values = cv_alloc(cv, jtape_count(cv->t, v) * sizeof *l->values)))
            break;
        size_t i = 0;
        for (jn_t e = v + 1; e < jtape_end(cv->t, v) && !cv->err; e = jtape_end(cv->t, e))
            l->values[i++] = value_from_json(cv, e);
        l->n_values = i;
        p->list_value = l;
        break;
    }
    }
    cv->depth--;
    return cv->err ? NULL : p;
}

/* Sets a oneof's case (synthetic or real) when f is in one. */
static void mark_present(void *m, pbf_t *f)
{
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)member(m, f->quantifier_offset) = f->id;
}

static bool scalar_from_json(conv_t *cv, pbf_t *f, jn_t v, void *dst)
{
    uint8_t kind = jk(cv, v);
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        if (kind != JT_STR)
            break;
        return (*(char **)dst = jstrdup(cv, v, f->name)) != NULL;
    case PROTOBUF_C_TYPE_INT64: {
        /* the number JSON.parse makes, as ts-proto's int64 writer takes it */
        double d = kind == JT_NUM ? jnum(cv, v) : 0.5;
        if (d != floor(d) || fabs(d) >= 9.2e18)
            break;
        *(int64_t *)dst = (int64_t)d;
        return true;
    }
    case PROTOBUF_C_TYPE_BOOL:
        if (kind != JT_TRUE && kind != JT_FALSE)
            break;
        *(protobuf_c_boolean *)dst = kind == JT_TRUE;
        return true;
    case PROTOBUF_C_TYPE_DOUBLE:
        if (kind != JT_NUM)
            break;
        *(double *)dst = jnum(cv, v);
        return true;
    case PROTOBUF_C_TYPE_ENUM: {
        /* JSON Patch ops: "add" is ADD. */
        char up[32];
        size_t n = 0;
        const char *s = kind == JT_STR ? jtape_str(cv->t, v, &n) : NULL;
        if (!n || n >= sizeof up)
            break;
        for (size_t i = 0; i < n; i++)
            up[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
        up[n] = 0;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, up);
        if (!ev)
            break;
        *(int32_t *)dst = ev->value;
        return true;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        pbd_t *sd = f->descriptor;
        void *sub;
        if (sd == &google__protobuf__value__descriptor) {
            sub = value_from_json(cv, v);
        } else if (sd == &google__protobuf__struct__descriptor) {
            if (kind != JT_OBJ)
                return true;   /* a Struct is an object or nothing (@ag-ui/proto drops the rest) */
            sub = struct_from_json(cv, v);
        } else {
            if (kind != JT_OBJ)
                break;
            sub = msg_from_json(cv, sd, v);
        }
        *(void **)dst = sub;
        return sub != NULL;
    }
    default:
        break;
    }
    fail(cv, -EINVAL, "%s: a value of the wrong type", f->name);
    return false;
}

/* One JSON member into its field. A null is left out, as @ag-ui/core's
 * omitOptionalNulls leaves out optional nulls, except where the field is a
 * required any-value (snapshot, event, value), where null is the value. */
static void field_from_json(conv_t *cv, void *m, pbf_t *f, jn_t v)
{
    if (cv->err || v == JN_NONE)
        return;
    if (jk(cv, v) == JT_NULL && !(f->type == PROTOBUF_C_TYPE_MESSAGE && f->descriptor == &google__protobuf__value__descriptor &&
                                  (!strcmp(f->name, "snapshot") || !strcmp(f->name, "event") || !strcmp(f->name, "value"))))
        return;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        if (jk(cv, v) != JT_ARR) {
            fail(cv, -EINVAL, "%s: expected an array", f->name);
            return;
        }
        size_t es = elem_size(f), k = 0;
        char *arr = cv_alloc(cv, jtape_count(cv->t, v) * es);
        if (!arr)
            return;
        for (jn_t e = v + 1; e < jtape_end(cv->t, v) && !cv->err; e = jtape_end(cv->t, e)) {
            if (f->type == PROTOBUF_C_TYPE_MESSAGE && f->descriptor == &ag_ui__input_content__descriptor) {
                /* A part with no wire form is dropped, as @ag-ui/proto does (with a warning). */
                void *part = msg_from_json(cv, f->descriptor, e);
                if (part && ((AgUi__InputContent *)part)->part_case != AG_UI__INPUT_CONTENT__PART__NOT_SET)
                    ((void **)arr)[k++] = part;
                continue;
            }
            if (scalar_from_json(cv, f, e, arr + k * es))
                k++;
        }
        *(size_t *)member(m, f->quantifier_offset) = k;
        *(void **)member(m, f->offset) = arr;
        return;
    }
    if (scalar_from_json(cv, f, v, member(m, f->offset)))
        mark_present(m, f);
}

/* "message_id" names the JSON key "messageId" (n bytes, not NUL-terminated). */
static bool camel_eqn(const char *snake, const char *key, size_t n)
{
    size_t i = 0;
    for (; *snake && i < n; snake++, i++) {
        if (*snake == '_' && snake[1]) {
            snake++;
            char up = (char)(*snake >= 'a' && *snake <= 'z' ? *snake - 32 : *snake);
            if (key[i] != up)
                return false;
        } else if (*snake != key[i]) {
            return false;
        }
    }
    return !*snake && i == n;
}

static void fields_from_json(conv_t *cv, pbd_t *d, void *m, jn_t o, const char *const *skip)
{
    for (jn_t k = o + 1; k < jtape_end(cv->t, o) && !cv->err; k = jtape_end(cv->t, k + 1)) {
        size_t n;
        const char *key = jtape_str(cv->t, k, &n);
        bool skipped = false;
        for (const char *const *s = skip; s && *s && !skipped; s++)
            skipped = strlen(*s) == n && !memcmp(*s, key, n);
        if (skipped)
            continue;
        for (unsigned i = 0; i < d->n_fields; i++)
            if (camel_eqn(d->fields[i].name, key, n)) {   /* keys the schema does not know are dropped, as by ts-proto */
                field_from_json(cv, m, &d->fields[i], k + 1);
                break;
            }
    }
}

/* The field of a oneof arm named by a JSON string ("text", "url", ...), or NULL. */
static pbf_t *arm_named(conv_t *cv, pbd_t *d, jn_t t)
{
    char name[16];
    size_t n = 0;
    const char *s = t != JN_NONE && jk(cv, t) == JT_STR ? jtape_str(cv->t, t, &n) : NULL;
    if (!s || n >= sizeof name || memchr(s, 0, n))
        return NULL;
    memcpy(name, s, n);
    name[n] = 0;
    return protobuf_c_message_descriptor_get_field_by_name(d, name);
}

static void set_arm(conv_t *cv, void *m, pbf_t *f, jn_t obj)
{
    ProtobufCMessage *arm = msg_from_json(cv, f->descriptor, obj);
    if (arm) {
        *(void **)member(m, f->offset) = arm;
        mark_present(m, f);
    }
}

/* A string Value (for the legacy binary part's metadata). */
static Google__Protobuf__Value *str_value(conv_t *cv, jn_t s)
{
    Google__Protobuf__Value *v = (Google__Protobuf__Value *)cv_new(cv, &google__protobuf__value__descriptor);
    if (v && (v->string_value = jstrdup(cv, s, "a value")))
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    return v;
}

/* The retired "binary" part as @ag-ui/proto carries it: a document part whose
 * source is its data (or url, or id as a url) and whose metadata marks it. */
static void binary_from_json(conv_t *cv, AgUi__InputContent *ic, jn_t obj)
{
    jn_t data = jget(cv, obj, "data"), url = jget(cv, obj, "url"), id = jget(cv, obj, "id");
    jn_t mime = jget(cv, obj, "mimeType"), file = jget(cv, obj, "filename");
    size_t n;
#define NONEMPTY(x) ((x) != JN_NONE && jk(cv, (x)) == JT_STR && (jtape_str(cv->t, (x), &n), n))
    jn_t val = NONEMPTY(data) ? data : NONEMPTY(url) ? url : NONEMPTY(id) ? id : JN_NONE;
#undef NONEMPTY
    if (val == JN_NONE)
        return;
    AgUi__DocumentInputPart *doc = (void *)cv_new(cv, &ag_ui__document_input_part__descriptor);
    AgUi__InputContentSource *src = (void *)cv_new(cv, &ag_ui__input_content_source__descriptor);
    Google__Protobuf__Value *meta = (void *)cv_new(cv, &google__protobuf__value__descriptor);
    Google__Protobuf__Struct *ms = (void *)cv_new(cv, &google__protobuf__struct__descriptor);
    Google__Protobuf__Struct__FieldsEntry **fe = cv_alloc(cv, 3 * sizeof *fe);
    if (!doc || !src || !meta || !ms || !fe)
        return;
    char *mime_s = mime != JN_NONE && jk(cv, mime) == JT_STR ? jstrdup(cv, mime, "mimeType") : NULL;
    if (val == data) {
        AgUi__InputContentDataSource *ds = (void *)cv_new(cv, &ag_ui__input_content_data_source__descriptor);
        if (!ds || !(ds->value = jstrdup(cv, val, "data")))
            return;
        if (mime_s)
            ds->mime_type = mime_s;
        src->data = ds;
        src->source_case = AG_UI__INPUT_CONTENT_SOURCE__SOURCE_DATA;
    } else {
        AgUi__InputContentUrlSource *us = (void *)cv_new(cv, &ag_ui__input_content_url_source__descriptor);
        if (!us || !(us->value = jstrdup(cv, val, "url")))
            return;
        if (mime_s) {
            us->mime_type = mime_s;
            us->_mime_type_case = AG_UI__INPUT_CONTENT_URL_SOURCE___MIME_TYPE_MIME_TYPE;
        }
        src->url = us;
        src->source_case = AG_UI__INPUT_CONTENT_SOURCE__SOURCE_URL;
    }
    static const char *const keys[] = {"legacyBinary", "filename", "id"};
    jn_t vals[] = {JN_NONE, file != JN_NONE && jk(cv, file) == JT_STR ? file : JN_NONE,
                   id != JN_NONE && jk(cv, id) == JT_STR ? id : JN_NONE};
    size_t k = 0;
    for (size_t i = 0; i < 3; i++) {
        if (i && vals[i] == JN_NONE)
            continue;
        Google__Protobuf__Struct__FieldsEntry *e = (void *)cv_new(cv, &google__protobuf__struct__fields_entry__descriptor);
        if (!e)
            return;
        e->key = (char *)keys[i];
        if (i == 0) {
            e->value = (void *)cv_new(cv, &google__protobuf__value__descriptor);
            if (!e->value)
                return;
            e->value->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
            e->value->bool_value = 1;
        } else if (!(e->value = str_value(cv, vals[i]))) {
            return;
        }
        fe[k++] = e;
    }
    ms->fields = fe;
    ms->n_fields = k;
    meta->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
    meta->struct_value = ms;
    doc->source = src;
    doc->metadata = meta;
    ic->document = doc;
    ic->part_case = AG_UI__INPUT_CONTENT__PART_DOCUMENT;
}

/* A message's content: a string, a list of parts, or (role activity) an object. */
static void message_from_json(conv_t *cv, AgUi__Message *msg, jn_t obj)
{
    static const char *const skip[] = {"content", NULL};
    fields_from_json(cv, &ag_ui__message__descriptor, msg, obj, skip);
    jn_t content = jget(cv, obj, "content");
    if (content != JN_NONE && jk(cv, content) == JT_ARR) {
        field_from_json(cv, msg, fld(&ag_ui__message__descriptor, "content_parts"), content);
    } else if (jstr_is(cv, jget(cv, obj, "role"), "activity")) {
        msg->activity_content = content != JN_NONE && jk(cv, content) == JT_OBJ
                                    ? struct_from_json(cv, content)
                                    : (Google__Protobuf__Struct *)cv_new(cv, &google__protobuf__struct__descriptor);
    } else {
        field_from_json(cv, msg, fld(&ag_ui__message__descriptor, "content"), content);
    }
}

static ProtobufCMessage *msg_from_json(conv_t *cv, pbd_t *d, jn_t obj)
{
    if (jk(cv, obj) != JT_OBJ) {
        fail(cv, -EINVAL, "%s: expected an object", d->short_name);
        return NULL;
    }
    if (++cv->depth > PBJSON_MAX_DEPTH) {
        fail(cv, -EINVAL, "nested deeper than %d", PBJSON_MAX_DEPTH);
        return NULL;
    }
    ProtobufCMessage *m = cv_new(cv, d);
    if (!m)
        return NULL;
    if (d == &ag_ui__input_content__descriptor) {
        /* {"type":"text"|"image"|..., ...}: the type picks the arm; an unknown
         * type leaves it NOT_SET and the caller drops the part */
        jn_t t = jget(cv, obj, "type");
        pbf_t *f;
        if (jstr_is(cv, t, "binary"))
            binary_from_json(cv, (AgUi__InputContent *)m, obj);
        else if ((f = arm_named(cv, d, t)))
            set_arm(cv, m, f, obj);
    } else if (d == &ag_ui__input_content_source__descriptor) {
        pbf_t *f = arm_named(cv, d, jget(cv, obj, "type"));
        if (f)
            set_arm(cv, m, f, obj);
    } else if (d == &ag_ui__message__descriptor) {
        message_from_json(cv, (AgUi__Message *)m, obj);
    } else {
        fields_from_json(cv, d, m, obj, NULL);
    }
    cv->depth--;
    return cv->err ? NULL : m;
}

/* The outcome object's type, as a protobuf-c string ("" when there is none). */
static char *outcome_name(conv_t *cv, jn_t outcome)
{
    jn_t t = jget(cv, outcome, "type");
    return t != JN_NONE && jk(cv, t) == JT_STR ? jstrdup(cv, t, "outcome.type") : cv_strndup(cv, "", 0);
}

/* The event's own members, with the outcome and tool-result content mapped. */
static void arm_from_json(conv_t *cv, agui_type_t type, pbd_t *d, void *m, jn_t obj)
{
    static const char *const base[] = {"type", "timestamp", "rawEvent", "metadata", NULL};
    static const char *const fin[] = {"type", "timestamp", "rawEvent", "metadata", "outcome", "pendingToolCallIds",
                                      "interrupts", NULL};
    static const char *const sub[] = {"type", "timestamp", "rawEvent", "metadata", "outcome", "interruptIds", NULL};
    static const char *const res[] = {"type", "timestamp", "rawEvent", "metadata", "content", NULL};
    jn_t outcome = jget(cv, obj, "outcome");
    switch (type) {
    case AGUI_RUN_FINISHED: {
        fields_from_json(cv, d, m, obj, fin);
        AgUi__RunFinishedEvent *e = m;
        e->outcome = outcome_name(cv, outcome);
        if (e->outcome && !strcmp(e->outcome, "success"))
            field_from_json(cv, m, fld(d, "pending_tool_call_ids"), jget(cv, outcome, "pendingToolCallIds"));
        if (e->outcome && !strcmp(e->outcome, "interrupt"))
            field_from_json(cv, m, fld(d, "interrupts"), jget(cv, outcome, "interrupts"));
        return;
    }
    case AGUI_SUBAGENT_FINISHED: {
        fields_from_json(cv, d, m, obj, sub);
        AgUi__SubagentFinishedEvent *e = m;
        e->outcome = outcome_name(cv, outcome);
        if (e->outcome && !strcmp(e->outcome, "suspended"))
            field_from_json(cv, m, fld(d, "interrupt_ids"), jget(cv, outcome, "interruptIds"));
        return;
    }
    case AGUI_TOOL_CALL_RESULT: {
        fields_from_json(cv, d, m, obj, res);
        jn_t content = jget(cv, obj, "content");
        if (content != JN_NONE && jk(cv, content) == JT_ARR)
            field_from_json(cv, m, fld(d, "content_parts"), content);
        else
            field_from_json(cv, m, fld(d, "content"), content);
        return;
    }
    default:
        fields_from_json(cv, d, m, obj, base);
    }
}

/* ---- packing and framing -------------------------------------------------------- */

/* Appends the 4-byte big-endian length and the packed message. */
static int frame_pack(buf_t *b, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > PBJSON_MAX_FRAME)
        return -EMSGSIZE;
    if (buf_reserve(b, n + 4))
        return -ENOMEM;
    unsigned char *p = (unsigned char *)b->data + b->len;
    p[0] = (unsigned char)(n >> 24), p[1] = (unsigned char)(n >> 16), p[2] = (unsigned char)(n >> 8), p[3] = (unsigned char)n;
    size_t w = protobuf_c_message_pack(m, p + 4);
    if (w != n)
        return -EINVAL;
    b->len += n + 4;
    return 0;
}

static void conv_init(conv_t *cv, pb_arena_t *a, buf_t *b, char *msg)
{
    *cv = (conv_t){.alloc = {arena_alloc, arena_free, a}, .b = b, .msg = msg};
    if (msg)
        msg[0] = 0;
}

/* Wraps an arm into the envelope and frames it. Every arm's field 1 is its
 * base_event (looked up by number: by name costs a bsearch of strcmps). */
static int frame_arm(conv_t *cv, buf_t *b, agui_type_t type, void *arm, AgUi__BaseEvent *be)
{
    AgUi__Event env = AG_UI__EVENT__INIT;
    pbf_t *af = protobuf_c_message_descriptor_get_field(&ag_ui__event__descriptor, (unsigned)type_arm[type]);
    be->type = (AgUi__EventType)type_pb[type];
    *(AgUi__BaseEvent **)member(arm, protobuf_c_message_descriptor_get_field(af->descriptor, 1)->offset) = be;
    *(void **)member(&env, af->offset) = arm;
    env.event_case = (AgUi__Event__EventCase)af->id;
    int rc = frame_pack(b, &env.base);
    if (rc == -EMSGSIZE)
        fail(cv, -EINVAL, "the event is larger than %u bytes encoded", PBJSON_MAX_FRAME);
    return rc;
}

int pbjson_frame_event(buf_t *b, const agui_event_t *ev)
{
    pb_arena_t *a = arena_get();
    if (!a)
        return -ENOMEM;
    if (ev->type >= AGUI_TYPE_COUNT || !type_arm[ev->type])
        return -EINVAL;
    conv_t cv;
    conv_init(&cv, a, NULL, NULL);
#define S(x) cv_strndup(&cv, (x).p ? (x).p : "", (x).n)
    AgUi__BaseEvent be = AG_UI__BASE_EVENT__INIT;
    union {
        AgUi__RunStartedEvent rs; AgUi__RunFinishedEvent rf; AgUi__RunErrorEvent re;
        AgUi__TextMessageStartEvent ts; AgUi__TextMessageContentEvent tc; AgUi__TextMessageEndEvent te;
    } u;
    switch (ev->type) {
    case AGUI_RUN_STARTED:
        u.rs = (AgUi__RunStartedEvent)AG_UI__RUN_STARTED_EVENT__INIT;
        u.rs.thread_id = S(ev->thread_id), u.rs.run_id = S(ev->run_id);
        break;
    case AGUI_RUN_FINISHED:
        u.rf = (AgUi__RunFinishedEvent)AG_UI__RUN_FINISHED_EVENT__INIT;
        u.rf.thread_id = S(ev->thread_id), u.rf.run_id = S(ev->run_id);
        break;
    case AGUI_RUN_ERROR:
        u.re = (AgUi__RunErrorEvent)AG_UI__RUN_ERROR_EVENT__INIT;
        u.re.message = S(ev->message);
        if (ev->code.n) {
            u.re.code = S(ev->code);
            u.re._code_case = AG_UI__RUN_ERROR_EVENT___CODE_CODE;
        }
        break;
    case AGUI_TEXT_MESSAGE_START:
        u.ts = (AgUi__TextMessageStartEvent)AG_UI__TEXT_MESSAGE_START_EVENT__INIT;
        u.ts.message_id = S(ev->message_id);
        u.ts.role = S(ev->role);
        u.ts._role_case = AG_UI__TEXT_MESSAGE_START_EVENT___ROLE_ROLE;
        break;
    case AGUI_TEXT_MESSAGE_CONTENT:
        u.tc = (AgUi__TextMessageContentEvent)AG_UI__TEXT_MESSAGE_CONTENT_EVENT__INIT;
        u.tc.message_id = S(ev->message_id), u.tc.delta = S(ev->delta);
        break;
    case AGUI_TEXT_MESSAGE_END:
        u.te = (AgUi__TextMessageEndEvent)AG_UI__TEXT_MESSAGE_END_EVENT__INIT;
        u.te.message_id = S(ev->message_id);
        break;
    default:
        return -EINVAL;   /* pass-through types are never built by agate */
    }
#undef S
    int rc = cv.err ? cv.err : frame_arm(&cv, b, ev->type, &u, &be);
    arena_rewind(a);
    return rc == -EMSGSIZE ? -EINVAL : rc;
}

int pbjson_frame_json(buf_t *b, const char *json, size_t len, char msg[PBJSON_MSG_MAX])
{
    pb_arena_t *a = arena_get();
    if (!a)
        return -ENOMEM;
    conv_t cv;
    conv_init(&cv, a, NULL, msg);
    cv.t = &a->tape;
    /* The tape's own depth bound is looser: ours, counted per message and value
     * below, names the problem. */
    int prc = jtape_parse(cv.t, json, len, 4 * PBJSON_MAX_DEPTH, 0);
    if (prc) {
        fail(&cv, prc == -ENOMEM ? -ENOMEM : -EINVAL, prc == -ENOMEM ? "out of memory" : "not JSON");
        return cv.err;
    }
    size_t start = b->len;
    agui_type_t type = AGUI_TYPE_COUNT;
    jn_t t = jget(&cv, 0, "type");
    if (t != JN_NONE && jk(&cv, t) == JT_STR) {
        size_t n;
        const char *s = jtape_str(cv.t, t, &n);
        type = agui_type_from_name(s, n);
    }
    if (type == AGUI_TYPE_COUNT || !type_arm[type]) {
        fail(&cv, -EINVAL, "not an event of a known type");
    } else {
        pbf_t *af = protobuf_c_message_descriptor_get_field(&ag_ui__event__descriptor, (unsigned)type_arm[type]);
        AgUi__BaseEvent *be = (AgUi__BaseEvent *)cv_new(&cv, &ag_ui__base_event__descriptor);
        void *arm = cv_new(&cv, af->descriptor);
        if (be && arm) {
            field_from_json(&cv, be, fld(&ag_ui__base_event__descriptor, "timestamp"), jget(&cv, 0, "timestamp"));
            field_from_json(&cv, be, fld(&ag_ui__base_event__descriptor, "raw_event"), jget(&cv, 0, "rawEvent"));
            field_from_json(&cv, be, fld(&ag_ui__base_event__descriptor, "metadata"), jget(&cv, 0, "metadata"));
            arm_from_json(&cv, type, af->descriptor, arm, 0);
            int rc = cv.err ? 0 : frame_arm(&cv, b, type, arm, be);
            if (rc && !cv.err)
                fail(&cv, rc, rc == -ENOMEM ? "out of memory" : "protobuf-c could not pack the event");
        }
    }
    arena_rewind(a);
    if (cv.err)
        b->len = start;
    return cv.err;
}

/* ==== protobuf -> JSON ============================================================= */

static void put(conv_t *cv, const char *s, size_t n)
{
    if (!cv->err && buf_append(cv->b, s, n))
        fail(cv, -ENOMEM, "out of memory");
}
#define PUT(cv, lit) put((cv), (lit), sizeof(lit) - 1)

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 when the bytes
 * there start no well-formed sequence; *bad: how many bytes the ill-formed
 * maximal subpart spans (Unicode's "maximal subpart" rule, as WHATWG decodes). */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad)
{
    unsigned c = s[0];
    *bad = 1;
    if (c < 0x80)
        return 1;
    size_t need = c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : 0;
    if (!need)
        return 0;
    unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    size_t k = 1;
    for (; k <= need && k < n; k++) {
        unsigned cc = s[k];
        if (cc < (k == 1 ? lo : 0x80) || cc > (k == 1 ? hi : 0xBF))
            break;
    }
    if (k > need)
        return need + 1;
    *bad = k;
    return 0;
}

/* A protobuf string as a JSON string. Invalid UTF-8 becomes U+FFFD per maximal
 * subpart, as the WHATWG decoder behind @bufbuild/protobuf's reader does. */
static void put_str(conv_t *cv, const char *s)
{
    size_t n = strlen(s), i = 0, bad;
    const unsigned char *u = (const unsigned char *)s;
    while (i < n) {
        size_t k = utf8_seq(u + i, n - i, &bad);
        if (!k)
            break;
        i += k;
    }
    if (i < n) {   /* rare: rebuild with replacements (at most 3 bytes per input byte) */
        char *t = cv_alloc(cv, 3 * n + 1);
        if (!t)
            return;
        size_t o = 0;
        for (i = 0; i < n;) {
            size_t k = utf8_seq(u + i, n - i, &bad);
            if (k) {
                memcpy(t + o, s + i, k);
                o += k, i += k;
            } else {
                memcpy(t + o, "\xEF\xBF\xBD", 3);
                o += 3, i += bad;
            }
        }
        s = t, n = o;
    }
    if (!cv->err && json_put_str(cv->b, s, n))
        fail(cv, -ENOMEM, "out of memory");
}

/* A double as JSON, shortest text that reads back the same. NaN and the
 * infinities have no JSON form; they become null, as JSON.stringify writes them. */
static void put_double(conv_t *cv, double d)
{
    char t[40];
    if (!isfinite(d)) {
        PUT(cv, "null");
        return;
    }
    if (d == floor(d) && fabs(d) < 1e15) {
        snprintf(t, sizeof t, "%.0f", d);
        if (d == 0 && signbit(d))
            snprintf(t, sizeof t, "-0");
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(t, sizeof t, "%.*g", prec, d);
            if (strtod(t, NULL) == d)
                break;
        }
    }
    put(cv, t, strlen(t));
}

static void put_i64(conv_t *cv, int64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%lld", (long long)v);
    put(cv, t, (size_t)n);
}

/* ---- JSON object writing: a comma before every member but the first ---- */

static void key(conv_t *cv, bool *first, const char *name_snake)
{
    put(cv, *first ? "\"" : ",\"", *first ? 1 : 2);
    *first = false;
    for (const char *p = name_snake; *p; p++) {
        if (*p == '_' && p[1]) {
            p++;
            char up = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
            put(cv, &up, 1);
        } else {
            put(cv, p, 1);
        }
    }
    PUT(cv, "\":");
}

static void value_to_json(conv_t *cv, const Google__Protobuf__Value *v);
static void msg_to_json(conv_t *cv, const ProtobufCMessage *m);
static void fields_to_json(conv_t *cv, const ProtobufCMessage *m, bool *first, const char *const *skip);

static bool value_set(const Google__Protobuf__Value *v)
{
    return v && v->kind_case != GOOGLE__PROTOBUF__VALUE__KIND__NOT_SET;
}

static void struct_to_json(conv_t *cv, const Google__Protobuf__Struct *s)
{
    PUT(cv, "{");
    bool first = true;
    for (size_t i = 0; i < s->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *e = s->fields[i];
        if (!value_set(e->value))
            continue;   /* an undefined member is no member */
        if (!first)
            PUT(cv, ",");
        first = false;
        put_str(cv, e->key);
        PUT(cv, ":");
        value_to_json(cv, e->value);
    }
    PUT(cv, "}");
}

static void value_to_json(conv_t *cv, const Google__Protobuf__Value *v)
{
    if (!value_set(v)) {
        PUT(cv, "null");   /* only inside lists; fields and members skip it */
        return;
    }
    switch (v->kind_case) {
    case GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE: PUT(cv, "null"); break;
    case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE: put_double(cv, v->number_value); break;
    case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE: put_str(cv, v->string_value); break;
    case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE: if (v->bool_value) PUT(cv, "true"); else PUT(cv, "false"); break;
    case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
        if (v->struct_value)
            struct_to_json(cv, v->struct_value);
        else
            PUT(cv, "{}");
        break;
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
        PUT(cv, "[");
        for (size_t i = 0; v->list_value && i < v->list_value->n_values; i++) {
            if (i)
                PUT(cv, ",");
            value_to_json(cv, v->list_value->values[i]);
        }
        PUT(cv, "]");
        break;
    default: PUT(cv, "null"); break;
    }
}

/* Whether a singular field is there: a oneof (or proto3 optional) by its case,
 * a message by its pointer, an implicit scalar always (decode writes its default). */
static bool present(const ProtobufCMessage *m, pbf_t *f)
{
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)member((void *)m, f->quantifier_offset) == f->id;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        const void *p = *(void *const *)member((void *)m, f->offset);
        return p && (f->descriptor != &google__protobuf__value__descriptor || value_set(p));
    }
    return true;
}

static void scalar_to_json(conv_t *cv, pbf_t *f, const void *src)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: put_str(cv, *(char *const *)src ? *(char *const *)src : ""); break;
    case PROTOBUF_C_TYPE_INT64: put_i64(cv, *(const int64_t *)src); break;
    case PROTOBUF_C_TYPE_BOOL: if (*(const protobuf_c_boolean *)src) PUT(cv, "true"); else PUT(cv, "false"); break;
    case PROTOBUF_C_TYPE_DOUBLE: put_double(cv, *(const double *)src); break;
    case PROTOBUF_C_TYPE_ENUM: {
        /* JSON Patch: ADD is "add"; a value without a name stays its decimal
         * spelling, which enforcement then rejects by name (as @ag-ui/proto). */
        int32_t v = *(const int32_t *)src;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        if (ev) {
            char low[32];
            size_t n = strlen(ev->name);
            for (size_t i = 0; i < n && i < sizeof low; i++)
                low[i] = (char)(ev->name[i] >= 'A' && ev->name[i] <= 'Z' ? ev->name[i] + 32 : ev->name[i]);
            PUT(cv, "\"");
            put(cv, low, n < sizeof low ? n : sizeof low);
            PUT(cv, "\"");
        } else {
            char t[16];
            int k = snprintf(t, sizeof t, "\"%d\"", v);
            put(cv, t, (size_t)k);
        }
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const void *p = *(void *const *)src;
        if (f->descriptor == &google__protobuf__value__descriptor)
            value_to_json(cv, p);
        else if (f->descriptor == &google__protobuf__struct__descriptor)
            struct_to_json(cv, p);
        else
            msg_to_json(cv, p);
        break;
    }
    default:
        PUT(cv, "null");
    }
}

static void field_to_json(conv_t *cv, const ProtobufCMessage *m, pbf_t *f, bool *first)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n = *(const size_t *)member((void *)m, f->quantifier_offset);
        const char *arr = *(char *const *)member((void *)m, f->offset);
        key(cv, first, f->name);
        PUT(cv, "[");
        for (size_t i = 0; i < n; i++) {
            if (i)
                PUT(cv, ",");
            scalar_to_json(cv, f, arr + i * elem_size(f));
        }
        PUT(cv, "]");
        return;
    }
    if (!present(m, f))
        return;
    key(cv, first, f->name);
    scalar_to_json(cv, f, member((void *)m, f->offset));
}

static bool skipped(const char *name, const char *const *skip)
{
    for (const char *const *s = skip; s && *s; s++)
        if (!strcmp(*s, name))
            return true;
    return false;
}

/* ---- the hooks, decode side ---- */

static void source_to_json(conv_t *cv, const AgUi__InputContentSource *src)
{
    static const char *const names[] = {"", "data", "url", "file"};
    const ProtobufCMessage *arm = src->source_case == AG_UI__INPUT_CONTENT_SOURCE__SOURCE_DATA ? &src->data->base
                                : src->source_case == AG_UI__INPUT_CONTENT_SOURCE__SOURCE_URL  ? &src->url->base
                                                                                                : &src->file->base;
    PUT(cv, "{\"type\":\"");
    put(cv, names[src->source_case], strlen(names[src->source_case]));
    PUT(cv, "\"");
    bool first = false;
    fields_to_json(cv, arm, &first, NULL);
    PUT(cv, "}");
}

/* A part whose arm this schema does not know, or whose source names no arm,
 * is dropped (the caller checks part_ok first). */
static bool part_ok(const AgUi__InputContent *ic)
{
    if (ic->part_case == AG_UI__INPUT_CONTENT__PART__NOT_SET)
        return false;
    if (ic->part_case == AG_UI__INPUT_CONTENT__PART_TEXT)
        return true;
    const AgUi__InputContentSource *src = ic->part_case == AG_UI__INPUT_CONTENT__PART_IMAGE ? ic->image->source
                                        : ic->part_case == AG_UI__INPUT_CONTENT__PART_AUDIO ? ic->audio->source
                                        : ic->part_case == AG_UI__INPUT_CONTENT__PART_VIDEO ? ic->video->source
                                                                                           : ic->document->source;
    return !src || src->source_case != AG_UI__INPUT_CONTENT_SOURCE__SOURCE__NOT_SET;
}

static void part_to_json(conv_t *cv, const AgUi__InputContent *ic)
{
    pbf_t *f = protobuf_c_message_descriptor_get_field(&ag_ui__input_content__descriptor, ic->part_case);
    const ProtobufCMessage *arm = *(void *const *)member((void *)ic, f->offset);
    PUT(cv, "{\"type\":\"");
    put(cv, f->name, strlen(f->name));
    PUT(cv, "\"");
    bool first = false;
    pbd_t *d = arm->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        pbf_t *af = &d->fields[i];
        if (af->type == PROTOBUF_C_TYPE_MESSAGE && af->descriptor == &ag_ui__input_content_source__descriptor) {
            const AgUi__InputContentSource *src = *(void *const *)member((void *)arm, af->offset);
            if (src) {
                key(cv, &first, "source");
                source_to_json(cv, src);
            }
            continue;
        }
        field_to_json(cv, arm, af, &first);
    }
    PUT(cv, "}");
}

static void parts_to_json(conv_t *cv, AgUi__InputContent *const *parts, size_t n)
{
    PUT(cv, "[");
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (!part_ok(parts[i]))
            continue;   /* a part this build cannot name (@ag-ui/proto warns and drops it) */
        if (any)
            PUT(cv, ",");
        any = true;
        part_to_json(cv, parts[i]);
    }
    PUT(cv, "]");
}

static bool known_role(const char *r)
{
    static const char *const roles[] = {"developer", "system", "assistant", "user", "tool", "activity", "reasoning"};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (!strcmp(r, roles[i]))
            return true;
    return false;
}

/* One Message: which carrier feeds "content" depends on the role, and a
 * message carrying a carrier its role does not use is malformed (@ag-ui/proto). */
static void message_to_json(conv_t *cv, const AgUi__Message *m)
{
    const char *role = m->role ? m->role : "";
    bool has_str = m->_content_case == AG_UI__MESSAGE___CONTENT_CONTENT;
    bool has_parts = m->n_content_parts > 0, has_map = m->activity_content != NULL;
    bool known = known_role(role);
    bool parts = known ? !strcmp(role, "user") || !strcmp(role, "tool") : has_parts;
    bool map = known ? !strcmp(role, "activity") : !parts && has_map;
    if (!known && has_str + has_parts + has_map > 1)
        fail(cv, -EPROTO, "message carries more than one content form");
    if (known && ((!parts && has_parts) || (has_map && !map) || (map && has_str) || (parts && has_str && has_parts)))
        fail(cv, -EPROTO, "message %s carries a content form its role (%s) does not use", m->id, role);
    static const char *const skip[] = {"content", "content_parts", "activity_content", "tool_calls", NULL};
    PUT(cv, "{");
    bool first = true;
    fields_to_json(cv, &m->base, &first, skip);
    if (parts && !has_str) {
        key(cv, &first, "content");
        parts_to_json(cv, m->content_parts, m->n_content_parts);
    } else if (map && has_map) {
        key(cv, &first, "content");
        struct_to_json(cv, m->activity_content);
    } else if (has_str) {
        key(cv, &first, "content");
        put_str(cv, m->content);
    }
    if (m->n_tool_calls)
        field_to_json(cv, &m->base, fld(&ag_ui__message__descriptor, "tool_calls"), &first);
    PUT(cv, "}");
}

static void msg_to_json(conv_t *cv, const ProtobufCMessage *m)
{
    if (!m) {
        PUT(cv, "null");
        return;
    }
    if (m->descriptor == &ag_ui__message__descriptor) {
        message_to_json(cv, (const AgUi__Message *)m);
        return;
    }
    PUT(cv, "{");
    bool first = true;
    fields_to_json(cv, m, &first, NULL);
    PUT(cv, "}");
}

static void fields_to_json(conv_t *cv, const ProtobufCMessage *m, bool *first, const char *const *skip)
{
    pbd_t *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields && !cv->err; i++)
        if (!skipped(d->fields[i].name, skip))
            field_to_json(cv, m, &d->fields[i], first);
}

/* An outcome object rebuilt from the flattened fields; the lists ride along
 * only when they hold something. */
static void outcome_to_json(conv_t *cv, bool *first, const char *outcome, const ProtobufCMessage *m,
                            const char *list1, size_t n1, const char *list2, size_t n2)
{
    key(cv, first, "outcome");
    PUT(cv, "{\"type\":");
    put_str(cv, outcome);
    bool f = false;
    pbd_t *d = m->descriptor;
    if (n1)
        field_to_json(cv, m, fld(d, list1), &f);
    if (n2)
        field_to_json(cv, m, fld(d, list2), &f);
    PUT(cv, "}");
}

/* The arm's members, as @ag-ui/proto's decode shapes them. */
static void arm_to_json(conv_t *cv, agui_type_t type, const ProtobufCMessage *arm, bool *first)
{
    static const char *const base[] = {"base_event", NULL};
    switch (type) {
    case AGUI_RUN_FINISHED: {
        const AgUi__RunFinishedEvent *e = (const void *)arm;
        static const char *const skip[] = {"base_event", "outcome", "interrupts", "usage", "pending_tool_call_ids", NULL};
        fields_to_json(cv, arm, first, skip);
        if (e->n_usage)
            field_to_json(cv, arm, fld(arm->descriptor, "usage"), first);
        if (e->outcome && e->outcome[0]) {
            if (!strcmp(e->outcome, "interrupt")) {   /* interrupts always, even empty */
                key(cv, first, "outcome");
                PUT(cv, "{\"type\":\"interrupt\"");
                bool f = false;
                field_to_json(cv, arm, fld(arm->descriptor, "interrupts"), &f);
                if (e->n_pending_tool_call_ids)
                    field_to_json(cv, arm, fld(arm->descriptor, "pending_tool_call_ids"), &f);
                PUT(cv, "}");
            } else {
                outcome_to_json(cv, first, e->outcome, arm, "pending_tool_call_ids", e->n_pending_tool_call_ids,
                                "interrupts", e->n_interrupts);
            }
        } else {
            if (e->n_pending_tool_call_ids)
                field_to_json(cv, arm, fld(arm->descriptor, "pending_tool_call_ids"), first);
            if (e->n_interrupts)
                field_to_json(cv, arm, fld(arm->descriptor, "interrupts"), first);
        }
        return;
    }
    case AGUI_SUBAGENT_FINISHED: {
        const AgUi__SubagentFinishedEvent *e = (const void *)arm;
        static const char *const skip[] = {"base_event", "outcome", "interrupt_ids", NULL};
        fields_to_json(cv, arm, first, skip);
        if (e->outcome && e->outcome[0])
            outcome_to_json(cv, first, e->outcome, arm, "interrupt_ids", e->n_interrupt_ids, NULL, 0);
        else if (e->n_interrupt_ids)
            field_to_json(cv, arm, fld(arm->descriptor, "interrupt_ids"), first);
        return;
    }
    case AGUI_RUN_ERROR: {
        static const char *const skip[] = {"base_event", "usage", NULL};
        fields_to_json(cv, arm, first, skip);
        if (((const AgUi__RunErrorEvent *)arm)->n_usage)
            field_to_json(cv, arm, fld(arm->descriptor, "usage"), first);
        return;
    }
    case AGUI_TOOL_CALL_RESULT: {
        const AgUi__ToolCallResultEvent *e = (const void *)arm;
        static const char *const skip[] = {"base_event", "content", "content_parts", NULL};
        bool has_str = e->_content_case == AG_UI__TOOL_CALL_RESULT_EVENT___CONTENT_CONTENT;
        if (has_str && e->n_content_parts)
            fail(cv, -EPROTO, "TOOL_CALL_RESULT carries both string content and content parts");
        fields_to_json(cv, arm, first, skip);
        key(cv, first, "content");
        if (has_str)
            put_str(cv, e->content);
        else
            parts_to_json(cv, e->content_parts, e->n_content_parts);
        return;
    }
    default:
        fields_to_json(cv, arm, first, base);
    }
}

/* ---- the wire walk: bounds nesting and rejects what @ag-ui/proto rejects ---- */

static int rd_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*i >= n)
            return -1;
        uint8_t c = p[(*i)++];
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return 0;
    }
    return -1;
}

/* Walks one message level: every tag well formed, no groups, messages nested at
 * most PBJSON_MAX_DEPTH deep, and no two different arms of a real oneof sent as
 * length-delimited fields (protobuf-c would keep the last one silently; the
 * JavaScript decoder refuses the frame). */
static int walk(const uint8_t *p, size_t n, pbd_t *d, int depth)
{
    if (depth > PBJSON_MAX_DEPTH)
        return -1;
    uint32_t arm_off = UINT32_MAX, arm_id = 0;
    size_t i = 0;
    while (i < n) {
        uint64_t tag, len;
        if (rd_varint(p, n, &i, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
            return -1;
        switch (tag & 7) {
        case 0: if (rd_varint(p, n, &i, &len)) return -1; continue;
        case 1: if (n - i < 8) return -1; i += 8; continue;
        case 5: if (n - i < 4) return -1; i += 4; continue;
        case 2: break;
        default: return -1;   /* groups: no AG-UI encoder writes them */
        }
        if (rd_varint(p, n, &i, &len) || len > n - i)
            return -1;
        pbf_t *f = d ? protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3)) : NULL;
        if (f && real_oneof(d, f)) {
            if (arm_id && f->quantifier_offset == arm_off && f->id != arm_id)
                return -2;
            arm_off = f->quantifier_offset, arm_id = f->id;
        }
        if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
            int rc = walk(p + i, (size_t)len, f->descriptor, depth + 1);
            if (rc)
                return rc;
        }
        i += (size_t)len;
    }
    return 0;
}

agui_type_t pbjson_sniff_type(const uint8_t *pb, size_t len)
{
    pthread_once(&pb_once, pb_init);
    size_t i = 0;
    while (i < len) {
        uint64_t tag, v;
        if (rd_varint(pb, len, &i, &tag))
            break;
        if ((tag & 7) != 2) {
            if ((tag & 7) == 0 ? rd_varint(pb, len, &i, &v) : (tag & 7) == 1 ? (i += 8, 0) : (tag & 7) == 5 ? (i += 4, 0) : 1)
                break;
            continue;
        }
        if (rd_varint(pb, len, &i, &v) || v > len - i)
            break;
        for (int t = 0; t < AGUI_TYPE_COUNT; t++)
            if (type_arm[t] && (uint64_t)type_arm[t] == tag >> 3)
                return (agui_type_t)t;
        i += (size_t)v;
    }
    return AGUI_TYPE_COUNT;
}

int pbjson_to_json(buf_t *b, const uint8_t *pb, size_t len, agui_type_t *type, char msg[PBJSON_MSG_MAX])
{
    pb_arena_t *a = arena_get();
    if (!a)
        return -ENOMEM;
    conv_t cv;
    conv_init(&cv, a, b, msg);
    size_t start = b->len;
    *type = AGUI_TYPE_COUNT;
    int w = walk(pb, len, &ag_ui__event__descriptor, 0);
    AgUi__Event *env = NULL;
    if (w == -2)
        fail(&cv, -EPROTO, "not an AG-UI event: two different kinds in one message");
    else if (w)
        fail(&cv, -EPROTO, "not an AG-UI event: malformed protobuf or nested deeper than %d", PBJSON_MAX_DEPTH);
    else if (!(env = ag_ui__event__unpack(&cv.alloc, len, pb)))
        fail(&cv, -EPROTO, "not an AG-UI event: protobuf-c could not unpack it");
    if (!cv.err && env->event_case == AG_UI__EVENT__EVENT__NOT_SET) {
        bool future = false;
        for (size_t i = 0; i < env->base.n_unknown_fields; i++)
            future |= env->base.unknown_fields[i].wire_type == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
        if (future)
            fail(&cv, -ENOENT, "an event of a kind newer than this schema");
        else
            fail(&cv, -EPROTO, "not an AG-UI event: no event in the envelope");
    }
    if (!cv.err) {
        pbf_t *af = protobuf_c_message_descriptor_get_field(&ag_ui__event__descriptor, env->event_case);
        const ProtobufCMessage *arm = *(void *const *)member(env, af->offset);
        const AgUi__BaseEvent *be = *(AgUi__BaseEvent *const *)member((void *)arm, protobuf_c_message_descriptor_get_field(af->descriptor, 1)->offset);
        agui_type_t t = AGUI_TYPE_COUNT;
        for (int k = 0; k < AGUI_TYPE_COUNT; k++)
            if ((unsigned)type_arm[k] == af->id)
                t = (agui_type_t)k;
        if (!be)
            fail(&cv, -EPROTO, "not an AG-UI event: %s without its base event", agui_type_name(t));
        else if ((int)be->type != type_pb[t])
            fail(&cv, -EPROTO, "not an AG-UI event: the envelope carries %s but the base event declares %d",
                 agui_type_name(t), (int)be->type);
        if (!cv.err) {
            *type = t;
            PUT(&cv, "{\"type\":\"");
            put(&cv, agui_type_name(t), strlen(agui_type_name(t)));
            PUT(&cv, "\"");
            bool first = false;
            arm_to_json(&cv, t, arm, &first);
            if (be->_timestamp_case == AG_UI__BASE_EVENT___TIMESTAMP_TIMESTAMP) {
                key(&cv, &first, "timestamp");
                put_i64(&cv, be->timestamp);
            }
            if (value_set(be->raw_event)) {
                key(&cv, &first, "raw_event");
                value_to_json(&cv, be->raw_event);
            }
            if (be->metadata) {
                key(&cv, &first, "metadata");
                struct_to_json(&cv, be->metadata);
            }
            PUT(&cv, "}");
        }
    }
    /* The unpacked tree is in the arena: no protobuf_c_message_free_unpacked. */
    arena_rewind(a);
    if (cv.err)
        b->len = start;
    return cv.err;
}
