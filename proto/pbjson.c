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
 * after each conversion (the first chunk is kept). The exception is parsing an
 * upstream's JSON for a protobuf client, which is jansson's and mallocs. Input
 * nesting is bounded (PBJSON_MAX_DEPTH) before any recursive code sees it, on
 * the wire by a descriptor-guided walk, in JSON by jansson's own depth limit
 * plus ours. */
#include "proto/pbjson.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agui.pb-c.h"
#include "proto/json.h"

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
typedef struct pb_arena { pb_chunk_t *head, *keep; } pb_arena_t;

static __thread pb_arena_t *pb_tls;
static pthread_key_t pb_key;
static pthread_once_t pb_once = PTHREAD_ONCE_INIT;

static void pb_arena_destroy(void *p)
{
    pb_arena_t *a = p;
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

/* "message_id" names the JSON key "messageId". */
static bool camel_eq(const char *snake, const char *key)
{
    while (*snake && *key) {
        if (*snake == '_' && snake[1]) {
            snake++;
            char up = (char)(*snake >= 'a' && *snake <= 'z' ? *snake - 32 : *snake);
            if (*key != up)
                return false;
        } else if (*snake != *key) {
            return false;
        }
        snake++, key++;
    }
    return !*snake && !*key;
}

static pbf_t *field_by_key(pbd_t *d, const char *key)
{
    for (unsigned i = 0; i < d->n_fields; i++)
        if (camel_eq(d->fields[i].name, key))
            return &d->fields[i];
    return NULL;
}

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

static ProtobufCMessage *msg_from_json(conv_t *cv, pbd_t *d, json_t *obj);
static Google__Protobuf__Value *value_from_json(conv_t *cv, json_t *v);

static Google__Protobuf__Struct *struct_from_json(conv_t *cv, json_t *obj)
{
    Google__Protobuf__Struct *s = (Google__Protobuf__Struct *)cv_new(cv, &google__protobuf__struct__descriptor);
    if (!s)
        return NULL;
    size_t n = json_object_size(obj), i = 0;
    s->fields = cv_alloc(cv, n * sizeof *s->fields);
    if (!s->fields)
        return NULL;
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        Google__Protobuf__Struct__FieldsEntry *e =
            (void *)cv_new(cv, &google__protobuf__struct__fields_entry__descriptor);
        if (!e || !(e->key = cv_strndup(cv, k, strlen(k))) || !(e->value = value_from_json(cv, v)))
            return NULL;
        s->fields[i++] = e;
    }
    s->n_fields = i;
    return s;
}

static Google__Protobuf__Value *value_from_json(conv_t *cv, json_t *v)
{
    if (++cv->depth > PBJSON_MAX_DEPTH) {
        fail(cv, -EINVAL, "nested deeper than %d", PBJSON_MAX_DEPTH);
        return NULL;
    }
    Google__Protobuf__Value *p = (Google__Protobuf__Value *)cv_new(cv, &google__protobuf__value__descriptor);
    if (!p)
        return NULL;
    switch (json_typeof(v)) {
    case JSON_NULL:
        p->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
        p->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
        break;
    case JSON_TRUE: case JSON_FALSE:
        p->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
        p->bool_value = json_is_true(v);
        break;
    case JSON_INTEGER: case JSON_REAL:
        p->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        p->number_value = json_number_value(v);
        break;
    case JSON_STRING:
        p->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        if (strlen(json_string_value(v)) != json_string_length(v))
            fail(cv, -EINVAL, "a string holds U+0000, which protobuf-c strings cannot carry");
        p->string_value = cv_strndup(cv, json_string_value(v), json_string_length(v));
        break;
    case JSON_OBJECT:
        p->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
        p->struct_value = struct_from_json(cv, v);
        break;
    case JSON_ARRAY: {
        p->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        Google__Protobuf__ListValue *l = (void *)cv_new(cv, &google__protobuf__list_value__descriptor);
        size_t n = json_array_size(v);
        if (!l || !(l->values = cv_alloc(cv, n * sizeof *l->values)))
            break;
        for (size_t i = 0; i < n && !cv->err; i++)
            l->values[i] = value_from_json(cv, json_array_get(v, i));
        l->n_values = n;
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

static bool scalar_from_json(conv_t *cv, pbf_t *f, json_t *v, void *dst)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        if (!json_is_string(v))
            break;
        if (strlen(json_string_value(v)) != json_string_length(v)) {
            fail(cv, -EINVAL, "%s: a string holds U+0000, which protobuf-c strings cannot carry", f->name);
            return false;
        }
        return (*(char **)dst = cv_strndup(cv, json_string_value(v), json_string_length(v))) != NULL;
    case PROTOBUF_C_TYPE_INT64: {
        double d = json_number_value(v);
        if (json_is_integer(v)) {
            *(int64_t *)dst = json_integer_value(v);
            return true;
        }
        if (json_is_real(v) && d == floor(d) && fabs(d) < 9.2e18) {
            *(int64_t *)dst = (int64_t)d;
            return true;
        }
        break;
    }
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v))
            break;
        *(protobuf_c_boolean *)dst = json_is_true(v);
        return true;
    case PROTOBUF_C_TYPE_DOUBLE:
        if (!json_is_number(v))
            break;
        *(double *)dst = json_number_value(v);
        return true;
    case PROTOBUF_C_TYPE_ENUM: {
        /* JSON Patch ops: "add" is ADD. */
        char up[32];
        size_t n = json_is_string(v) ? json_string_length(v) : 0;
        if (!n || n >= sizeof up)
            break;
        for (size_t i = 0; i <= n; i++) {
            char ch = json_string_value(v)[i];
            up[i] = (char)(ch >= 'a' && ch <= 'z' ? ch - 32 : ch);
        }
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
            if (!json_is_object(v))
                return true;   /* a Struct is an object or nothing (@ag-ui/proto drops the rest) */
            sub = struct_from_json(cv, v);
        } else {
            if (!json_is_object(v))
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
static void field_from_json(conv_t *cv, void *m, pbf_t *f, json_t *v)
{
    if (cv->err)
        return;
    if (json_is_null(v) && !(f->type == PROTOBUF_C_TYPE_MESSAGE && f->descriptor == &google__protobuf__value__descriptor &&
                             (!strcmp(f->name, "snapshot") || !strcmp(f->name, "event") || !strcmp(f->name, "value"))))
        return;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        if (!json_is_array(v)) {
            fail(cv, -EINVAL, "%s: expected an array", f->name);
            return;
        }
        size_t n = json_array_size(v), es = elem_size(f), k = 0;
        char *arr = cv_alloc(cv, n * es);
        if (!arr)
            return;
        for (size_t i = 0; i < n && !cv->err; i++) {
            json_t *e = json_array_get(v, i);
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

static void fields_from_json(conv_t *cv, pbd_t *d, void *m, json_t *obj, const char *const *skip)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        bool skipped = false;
        for (const char *const *s = skip; s && *s; s++)
            skipped |= !strcmp(*s, k);
        pbf_t *f = skipped ? NULL : field_by_key(d, k);
        if (f)   /* keys the schema does not know are dropped, as by ts-proto */
            field_from_json(cv, m, f, v);
        if (cv->err)
            return;
    }
}

static bool str_is(json_t *v, const char *s) { return json_is_string(v) && !strcmp(json_string_value(v), s); }

/* A content part's source: its "type" picks the arm. */
static void source_from_json(conv_t *cv, AgUi__InputContentSource *src, json_t *obj)
{
    json_t *t = json_object_get(obj, "type");
    pbf_t *f = json_is_string(t) ? protobuf_c_message_descriptor_get_field_by_name(&ag_ui__input_content_source__descriptor,
                                                                                    json_string_value(t)) : NULL;
    if (!f)
        return;   /* no arm: the source is left unset */
    ProtobufCMessage *arm = msg_from_json(cv, f->descriptor, obj);
    if (arm) {
        *(void **)member(src, f->offset) = arm;
        mark_present(src, f);
    }
}

/* A content part: {"type":"text"|"image"|"audio"|"video"|"document", ...}, and
 * the retired "binary" part as @ag-ui/proto carries it: a document part whose
 * metadata marks it. Anything else stays NOT_SET and is dropped by the caller. */
static void part_from_json(conv_t *cv, AgUi__InputContent *ic, json_t *obj)
{
    json_t *t = json_object_get(obj, "type");
    if (str_is(t, "binary")) {
        json_t *data = json_object_get(obj, "data"), *url = json_object_get(obj, "url"), *id = json_object_get(obj, "id");
        json_t *mime = json_object_get(obj, "mimeType");
        json_t *val = json_is_string(data) && json_string_length(data) ? data : json_is_string(url) && json_string_length(url) ? url
                    : json_is_string(id) && json_string_length(id) ? id : NULL;
        if (!val)
            return;
        json_t *src = json_object(), *meta = json_object(), *doc = json_object();
        if (!src || !meta || !doc || json_object_set_new(src, "type", json_string(val == data ? "data" : "url")) ||
            json_object_set(src, "value", val) || (mime && json_object_set(src, "mimeType", mime)) ||
            json_object_set_new(meta, "legacyBinary", json_true()) ||
            (json_object_get(obj, "filename") && json_object_set(meta, "filename", json_object_get(obj, "filename"))) ||
            (id && json_object_set(meta, "id", id)) || json_object_set(doc, "source", src) ||
            json_object_set(doc, "metadata", meta)) {
            json_decref(src), json_decref(meta), json_decref(doc);
            fail(cv, -ENOMEM, "out of memory");
            return;
        }
        json_decref(src), json_decref(meta);
        ic->document = (AgUi__DocumentInputPart *)msg_from_json(cv, &ag_ui__document_input_part__descriptor, doc);
        ic->part_case = AG_UI__INPUT_CONTENT__PART_DOCUMENT;
        json_decref(doc);
        return;
    }
    pbf_t *f = json_is_string(t) ? protobuf_c_message_descriptor_get_field_by_name(&ag_ui__input_content__descriptor,
                                                                                    json_string_value(t)) : NULL;
    if (!f)
        return;
    ProtobufCMessage *arm = msg_from_json(cv, f->descriptor, obj);
    if (arm) {
        *(void **)member(ic, f->offset) = arm;
        mark_present(ic, f);
    }
}

/* A message's content: a string, a list of parts, or (role activity) an object. */
static void message_from_json(conv_t *cv, AgUi__Message *msg, json_t *obj)
{
    static const char *const skip[] = {"content", NULL};
    fields_from_json(cv, &ag_ui__message__descriptor, msg, obj, skip);
    json_t *content = json_object_get(obj, "content");
    if (json_is_array(content)) {
        field_from_json(cv, msg, protobuf_c_message_descriptor_get_field_by_name(&ag_ui__message__descriptor, "content_parts"), content);
    } else if (str_is(json_object_get(obj, "role"), "activity")) {
        msg->activity_content = json_is_object(content) ? struct_from_json(cv, content)
                                                        : (Google__Protobuf__Struct *)cv_new(cv, &google__protobuf__struct__descriptor);
    } else if (content) {
        field_from_json(cv, msg, protobuf_c_message_descriptor_get_field_by_name(&ag_ui__message__descriptor, "content"), content);
    }
}

static ProtobufCMessage *msg_from_json(conv_t *cv, pbd_t *d, json_t *obj)
{
    if (!json_is_object(obj)) {
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
    if (d == &ag_ui__input_content__descriptor)
        part_from_json(cv, (AgUi__InputContent *)m, obj);
    else if (d == &ag_ui__input_content_source__descriptor)
        source_from_json(cv, (AgUi__InputContentSource *)m, obj);
    else if (d == &ag_ui__message__descriptor)
        message_from_json(cv, (AgUi__Message *)m, obj);
    else
        fields_from_json(cv, d, m, obj, NULL);
    cv->depth--;
    return cv->err ? NULL : m;
}

static pbf_t *fld(pbd_t *d, const char *name) { return protobuf_c_message_descriptor_get_field_by_name(d, name); }

/* The event's own members, with the outcome and tool-result content mapped. */
static void arm_from_json(conv_t *cv, agui_type_t type, pbd_t *d, void *m, json_t *obj)
{
    static const char *const base[] = {"type", "timestamp", "rawEvent", "metadata", NULL};
    static const char *const fin[] = {"type", "timestamp", "rawEvent", "metadata", "outcome", "pendingToolCallIds",
                                      "interrupts", NULL};
    static const char *const sub[] = {"type", "timestamp", "rawEvent", "metadata", "outcome", "interruptIds", NULL};
    static const char *const res[] = {"type", "timestamp", "rawEvent", "metadata", "content", NULL};
    json_t *outcome = json_object_get(obj, "outcome");
    json_t *otype = json_is_object(outcome) ? json_object_get(outcome, "type") : NULL;
    const char *oname = json_is_string(otype) ? json_string_value(otype) : "";
    switch (type) {
    case AGUI_RUN_FINISHED: {
        fields_from_json(cv, d, m, obj, fin);
        AgUi__RunFinishedEvent *e = m;
        e->outcome = cv_strndup(cv, oname, strlen(oname));
        if (!strcmp(oname, "success") && json_object_get(outcome, "pendingToolCallIds"))
            field_from_json(cv, m, fld(d, "pending_tool_call_ids"), json_object_get(outcome, "pendingToolCallIds"));
        if (!strcmp(oname, "interrupt") && json_object_get(outcome, "interrupts"))
            field_from_json(cv, m, fld(d, "interrupts"), json_object_get(outcome, "interrupts"));
        return;
    }
    case AGUI_SUBAGENT_FINISHED: {
        fields_from_json(cv, d, m, obj, sub);
        AgUi__SubagentFinishedEvent *e = m;
        e->outcome = cv_strndup(cv, oname, strlen(oname));
        if (!strcmp(oname, "suspended") && json_object_get(outcome, "interruptIds"))
            field_from_json(cv, m, fld(d, "interrupt_ids"), json_object_get(outcome, "interruptIds"));
        return;
    }
    case AGUI_TOOL_CALL_RESULT: {
        fields_from_json(cv, d, m, obj, res);
        json_t *content = json_object_get(obj, "content");
        if (json_is_array(content))
            field_from_json(cv, m, fld(d, "content_parts"), content);
        else if (content)
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
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!root)
        root = json_loadb(json, len, JSON_DECODE_INT_AS_REAL, &je);
    if (!root) {
        fail(&cv, -EINVAL, "not JSON: %s", je.text);
        return cv.err;
    }
    size_t start = b->len;
    agui_type_t type = AGUI_TYPE_COUNT;
    json_t *t = json_is_object(root) ? json_object_get(root, "type") : NULL;
    if (json_is_string(t))
        type = agui_type_from_name(json_string_value(t), json_string_length(t));
    if (type == AGUI_TYPE_COUNT || !type_arm[type]) {
        fail(&cv, -EINVAL, "not an event of a known type");
    } else {
        pbf_t *af = protobuf_c_message_descriptor_get_field(&ag_ui__event__descriptor, (unsigned)type_arm[type]);
        AgUi__BaseEvent *be = (AgUi__BaseEvent *)cv_new(&cv, &ag_ui__base_event__descriptor);
        void *arm = cv_new(&cv, af->descriptor);
        if (be && arm) {
            static const char *const only_base[] = {"type", NULL};
            json_t *base = json_object();
            if (!base) {
                fail(&cv, -ENOMEM, "out of memory");
            } else {
                static const char *const keys[] = {"timestamp", "rawEvent", "metadata"};
                for (size_t i = 0; i < 3; i++)
                    if (json_object_get(root, keys[i]))
                        json_object_set(base, keys[i], json_object_get(root, keys[i]));
                fields_from_json(&cv, &ag_ui__base_event__descriptor, be, base, only_base);
                json_decref(base);
            }
            arm_from_json(&cv, type, af->descriptor, arm, root);
            int rc = cv.err ? 0 : frame_arm(&cv, b, type, arm, be);
            if (rc && !cv.err)
                fail(&cv, rc, rc == -ENOMEM ? "out of memory" : "protobuf-c could not pack the event");
        }
    }
    json_decref(root);
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
