/* pbjson_enc: AG-UI events into the protobuf encoding: agate's own events
 * (pbjson_frame_event) and events given as JSON text (pbjson_frame_json), each
 * as one frame, a 4-byte big-endian length and the packed ag_ui.Event.
 *
 * JSON text is read onto the thread's jtape, then the hooks and the generic
 * descriptor walk build protobuf-c structs in the thread's arena, and
 * libprotobuf-c packs them. Invariants: a JSON key the schema does not know is
 * dropped, as ts-proto drops it; the JSON nests at most PBJSON_MAX_DEPTH deep
 * (the tape's bound) and messages and values at most PB_ENC_DEPTH (cv->depth,
 * counted before recursing); a frame is never
 * larger than PBJSON_MAX_FRAME; on error nothing is appended. */
#include "proto/pbjson.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "agui.pb-c.h"
#include "proto/jtape.h"
#include "proto/pbjson_int.h"

/* ==== JSON -> protobuf ============================================================ */

/* The JSON is read onto a jtape (proto/jtape.h): a flat array of nodes, no
 * allocation per value once the thread's tape has grown. Nodes are indices,
 * 0 is the root; JN_NONE stands for an absent member. */
typedef uint32_t jn_t;
#define JN_NONE UINT32_MAX

/* Messages and values built one inside another: a recursion guard. The tape
 * bounds the JSON at PBJSON_MAX_DEPTH levels first, and a level never takes
 * more than two of these (a content part and its arm). */
#define PB_ENC_DEPTH (2 * PBJSON_MAX_DEPTH)

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

/* A JSON string as a protobuf-c string (a U+0000 in it as 0xFF: cv_str_wire). */
static char *jstrdup(conv_t *cv, jn_t i)
{
    size_t n;
    const char *s = jtape_str(cv->t, i, &n);
    return cv_str_wire(cv, s, n);
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
        if (!e || !(e->key = jstrdup(cv, k)) || !(e->value = value_from_json(cv, k + 1)))
            return NULL;
        s->fields[i++] = e;
    }
    s->n_fields = i;
    return cv->err ? NULL : s;
}

static Google__Protobuf__Value *value_from_json(conv_t *cv, jn_t v)
{
    if (++cv->depth > PB_ENC_DEPTH) {
        pbjson_fail(cv, -EINVAL, "nested deeper than %d", PBJSON_MAX_DEPTH);
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
        p->string_value = jstrdup(cv, v);
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
        return (*(char **)dst = jstrdup(cv, v)) != NULL;
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
        if (!n || n >= sizeof up || memchr(s, 0, n))   /* "add\u0000" is no op name */
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
    pbjson_fail(cv, -EINVAL, "%s: a value of the wrong type", f->name);
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
            pbjson_fail(cv, -EINVAL, "%s: expected an array", f->name);
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

#define PBE_MAX_FIELDS 32   /* fields of one message; agui.proto's largest has 13 */

/* Members into fields. Of members that share a name the last counts, as in
 * JSON.parse and the validator (jtape_get): each field takes the last member
 * naming it, so an earlier one is never converted, whatever its type. */
static void fields_from_json(conv_t *cv, pbd_t *d, void *m, jn_t o, const char *const *skip)
{
    jn_t last[PBE_MAX_FIELDS];
    assert(d->n_fields <= PBE_MAX_FIELDS);
    for (unsigned i = 0; i < d->n_fields; i++)
        last[i] = JN_NONE;
    for (jn_t k = o + 1; k < jtape_end(cv->t, o); k = jtape_end(cv->t, k + 1)) {
        size_t n;
        const char *key = jtape_str(cv->t, k, &n);
        bool skipped = false;
        for (const char *const *s = skip; s && *s && !skipped; s++)
            skipped = strlen(*s) == n && !memcmp(*s, key, n);
        if (skipped)
            continue;
        for (unsigned i = 0; i < d->n_fields; i++)
            if (camel_eqn(d->fields[i].name, key, n)) {   /* keys the schema does not know are dropped, as by ts-proto */
                last[i] = k + 1;
                break;
            }
    }
    for (unsigned i = 0; i < d->n_fields && !cv->err; i++)
        if (last[i] != JN_NONE)
            field_from_json(cv, m, &d->fields[i], last[i]);
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
    if (v && (v->string_value = jstrdup(cv, s)))
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
    char *mime_s = mime != JN_NONE && jk(cv, mime) == JT_STR ? jstrdup(cv, mime) : NULL;
    if (val == data) {
        AgUi__InputContentDataSource *ds = (void *)cv_new(cv, &ag_ui__input_content_data_source__descriptor);
        if (!ds || !(ds->value = jstrdup(cv, val)))
            return;
        if (mime_s)
            ds->mime_type = mime_s;
        src->data = ds;
        src->source_case = AG_UI__INPUT_CONTENT_SOURCE__SOURCE_DATA;
    } else {
        AgUi__InputContentUrlSource *us = (void *)cv_new(cv, &ag_ui__input_content_url_source__descriptor);
        if (!us || !(us->value = jstrdup(cv, val)))
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
        pbjson_fail(cv, -EINVAL, "%s: expected an object", d->short_name);
        return NULL;
    }
    if (++cv->depth > PB_ENC_DEPTH) {
        pbjson_fail(cv, -EINVAL, "nested deeper than %d", PBJSON_MAX_DEPTH);
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
    return t != JN_NONE && jk(cv, t) == JT_STR ? jstrdup(cv, t) : cv_strndup(cv, "", 0);
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


/* Wraps an arm into the envelope and frames it. Every arm's field 1 is its
 * base_event (looked up by number: by name costs a bsearch of strcmps). */
static int frame_arm(conv_t *cv, buf_t *b, agui_type_t type, void *arm, AgUi__BaseEvent *be)
{
    AgUi__Event env = AG_UI__EVENT__INIT;
    pbf_t *af = protobuf_c_message_descriptor_get_field(&ag_ui__event__descriptor, (unsigned)pbjson_type_arm[type]);
    be->type = (AgUi__EventType)pbjson_type_pb[type];
    *(AgUi__BaseEvent **)member(arm, protobuf_c_message_descriptor_get_field(af->descriptor, 1)->offset) = be;
    *(void **)member(&env, af->offset) = arm;
    env.event_case = (AgUi__Event__EventCase)af->id;
    size_t at = b->len;
    int rc = frame_pack(b, &env.base);
    if (rc == -EMSGSIZE)
        pbjson_fail(cv, -EINVAL, "the event is larger than %u bytes encoded", PBJSON_MAX_FRAME);
    if (!rc && cv->nul)   /* the strings' NULs, packed as 0xFF, back in place */
        pbjson_wire_nul((uint8_t *)b->data + at + 4, b->len - at - 4, &ag_ui__event__descriptor, PBJSON_NUL_TO_WIRE);
    return rc;
}

int pbjson_frame_event(buf_t *b, const agui_event_t *ev)
{
    pb_arena_t *a = pbjson_arena_get();
    if (!a)
        return -ENOMEM;
    if (ev->type >= AGUI_TYPE_COUNT || !pbjson_type_arm[ev->type])
        return -EINVAL;
    conv_t cv;
    pbjson_conv_init(&cv, a, NULL, NULL);
#define S(x) cv_str_wire(&cv, (x).p ? (x).p : "", (x).n)
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
    pbjson_arena_rewind(a);
    return rc == -EMSGSIZE ? -EINVAL : rc;
}

int pbjson_frame_json(buf_t *b, const char *json, size_t len, char msg[PBJSON_MSG_MAX])
{
    pb_arena_t *a = pbjson_arena_get();
    if (!a)
        return -ENOMEM;
    conv_t cv;
    pbjson_conv_init(&cv, a, NULL, msg);
    cv.t = &a->tape;
    /* The JSON's depth is bounded here, as validation bounds it (the tape
     * counts the same brackets); the count below per message and value is a
     * guard for the recursion, never the tighter one. */
    int prc = jtape_parse(cv.t, json, len, PBJSON_MAX_DEPTH, 0);
    if (prc == -ENOMEM)
        pbjson_fail(&cv, -ENOMEM, "out of memory");
    else if (prc && jtape_too_deep(json, len, PBJSON_MAX_DEPTH))
        pbjson_fail(&cv, -EINVAL, "nested deeper than %d", PBJSON_MAX_DEPTH);
    else if (prc)
        pbjson_fail(&cv, -EINVAL, "not JSON");
    if (prc)
        return cv.err;
    size_t start = b->len;
    agui_type_t type = AGUI_TYPE_COUNT;
    jn_t t = jget(&cv, 0, "type");
    if (t != JN_NONE && jk(&cv, t) == JT_STR) {
        size_t n;
        const char *s = jtape_str(cv.t, t, &n);
        type = agui_type_from_name(s, n);
    }
    if (type == AGUI_TYPE_COUNT || !pbjson_type_arm[type]) {
        pbjson_fail(&cv, -EINVAL, "not an event of a known type");
    } else {
        pbf_t *af = protobuf_c_message_descriptor_get_field(&ag_ui__event__descriptor, (unsigned)pbjson_type_arm[type]);
        AgUi__BaseEvent *be = (AgUi__BaseEvent *)cv_new(&cv, &ag_ui__base_event__descriptor);
        void *arm = cv_new(&cv, af->descriptor);
        if (be && arm) {
            field_from_json(&cv, be, fld(&ag_ui__base_event__descriptor, "timestamp"), jget(&cv, 0, "timestamp"));
            field_from_json(&cv, be, fld(&ag_ui__base_event__descriptor, "raw_event"), jget(&cv, 0, "rawEvent"));
            field_from_json(&cv, be, fld(&ag_ui__base_event__descriptor, "metadata"), jget(&cv, 0, "metadata"));
            arm_from_json(&cv, type, af->descriptor, arm, 0);
            int rc = cv.err ? 0 : frame_arm(&cv, b, type, arm, be);
            if (rc && !cv.err)
                pbjson_fail(&cv, rc, rc == -ENOMEM ? "out of memory" : "protobuf-c could not pack the event");
        }
    }
    pbjson_arena_rewind(a);
    if (cv.err)
        b->len = start;
    return cv.err;
}
