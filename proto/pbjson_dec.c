/* pbjson_dec: packed AG-UI events back into JSON text (pbjson_to_json), and
 * an event's type read off the wire without decoding it (pbjson_sniff_type).
 *
 * The bytes are walked once against the descriptors before libprotobuf-c
 * unpacks them into the thread's arena: the walk bounds nesting
 * (PB_WIRE_DEPTH message levels) before any recursive code runs, the JSON
 * writer then bounds the JSON's own depth (PBJSON_MAX_DEPTH, as validation
 * bounds an SSE upstream's event), and the walk refuses what
 * @ag-ui/proto's decode refuses and protobuf-c would accept (groups, two arms of
 * one oneof). The JSON written is what that decode returns: implicit fields with
 * their defaults, repeated fields as arrays, optional ones only when set,
 * strings as valid UTF-8 (U+FFFD per ill-formed subpart), doubles in their
 * shortest form. On error nothing is appended. */
#include "proto/pbjson.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agui.pb-c.h"
#include "core/json.h"
#include "proto/pbjson_int.h"

/* ==== protobuf -> JSON ============================================================= */

static void put(conv_t *cv, const char *s, size_t n)
{
    if (!cv->err && buf_append(cv->b, s, n))
        pbjson_fail(cv, -ENOMEM, "out of memory");
}
#define PUT(cv, lit) put((cv), (lit), sizeof(lit) - 1)

/* A JSON container opens (its text starts with '{' or '[') or closes. Nesting
 * is bounded as the SSE path bounds it, by the JSON's own depth (what jtape
 * counts, PBJSON_MAX_DEPTH), not by protobuf's message levels, of which a
 * JSON level takes up to three (Value, Struct, its entry). */
static void open_c(conv_t *cv, const char *s, size_t n)
{
    put(cv, s, n);
    if (++cv->depth > PBJSON_MAX_DEPTH)
        pbjson_fail(cv, -EPROTO, "not an AG-UI event: nested deeper than %d", PBJSON_MAX_DEPTH);
}

static void close_c(conv_t *cv, char c)
{
    cv->depth--;
    put(cv, &c, 1);
}
#define OPEN(cv, lit) open_c((cv), (lit), sizeof(lit) - 1)
#define CLOSE(cv, c) close_c((cv), (c))

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
 * subpart, as the WHATWG decoder behind @bufbuild/protobuf's reader does; in
 * an event whose strings hold U+0000 (cv->nul), 0xFF is that U+0000 (a NUL
 * ends a subpart just as 0xFF does, so the replacements are the same). */
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
            } else if (cv->nul && u[i] == 0xFF) {
                t[o++] = '\0';
                i++;
            } else {
                memcpy(t + o, "\xEF\xBF\xBD", 3);
                o += 3, i += bad;
            }
        }
        s = t, n = o;
    }
    if (!cv->err && json_put_str(cv->b, s, n))
        pbjson_fail(cv, -ENOMEM, "out of memory");
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
    OPEN(cv, "{");
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
    CLOSE(cv, '}');
}

static const Google__Protobuf__Struct empty_struct = GOOGLE__PROTOBUF__STRUCT__INIT;

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
        struct_to_json(cv, v->struct_value ? v->struct_value : &empty_struct);
        break;
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
        OPEN(cv, "[");
        for (size_t i = 0; v->list_value && i < v->list_value->n_values; i++) {
            if (i)
                PUT(cv, ",");
            value_to_json(cv, v->list_value->values[i]);
        }
        CLOSE(cv, ']');
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
        OPEN(cv, "[");
        for (size_t i = 0; i < n; i++) {
            if (i)
                PUT(cv, ",");
            scalar_to_json(cv, f, arr + i * elem_size(f));
        }
        CLOSE(cv, ']');
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
    OPEN(cv, "{\"type\":\"");
    put(cv, names[src->source_case], strlen(names[src->source_case]));
    PUT(cv, "\"");
    bool first = false;
    fields_to_json(cv, arm, &first, NULL);
    CLOSE(cv, '}');
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
    OPEN(cv, "{\"type\":\"");
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
    CLOSE(cv, '}');
}

static void parts_to_json(conv_t *cv, AgUi__InputContent *const *parts, size_t n)
{
    OPEN(cv, "[");
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (!part_ok(parts[i]))
            continue;   /* a part this build cannot name (@ag-ui/proto warns and drops it) */
        if (any)
            PUT(cv, ",");
        any = true;
        part_to_json(cv, parts[i]);
    }
    CLOSE(cv, ']');
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
        pbjson_fail(cv, -EPROTO, "message carries more than one content form");
    if (known && ((!parts && has_parts) || (has_map && !map) || (map && has_str) || (parts && has_str && has_parts)))
        pbjson_fail(cv, -EPROTO, "message %s carries a content form its role (%s) does not use", m->id, role);
    static const char *const skip[] = {"content", "content_parts", "activity_content", "tool_calls", NULL};
    OPEN(cv, "{");
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
    CLOSE(cv, '}');
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
    OPEN(cv, "{");
    bool first = true;
    fields_to_json(cv, m, &first, NULL);
    CLOSE(cv, '}');
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
    OPEN(cv, "{\"type\":");
    put_str(cv, outcome);
    bool f = false;
    pbd_t *d = m->descriptor;
    if (n1)
        field_to_json(cv, m, fld(d, list1), &f);
    if (n2)
        field_to_json(cv, m, fld(d, list2), &f);
    CLOSE(cv, '}');
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
                OPEN(cv, "{\"type\":\"interrupt\"");
                bool f = false;
                field_to_json(cv, arm, fld(arm->descriptor, "interrupts"), &f);
                if (e->n_pending_tool_call_ids)
                    field_to_json(cv, arm, fld(arm->descriptor, "pending_tool_call_ids"), &f);
                CLOSE(cv, '}');
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
            pbjson_fail(cv, -EPROTO, "TOOL_CALL_RESULT carries both string content and content parts");
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

/* Protobuf message levels an event of PBJSON_MAX_DEPTH JSON levels may take:
 * a JSON object inside a Value is three (Value, Struct, its FieldsEntry), and
 * the event object itself two (the envelope and its arm), one more where the
 * value hangs off the BaseEvent (rawEvent). Deeper is deeper than the JSON
 * bound too; within it, the JSON writer counts the real depth (open_c). The
 * bound is for the recursion of this walk and of protobuf-c's unpack, which
 * has none of its own (~0.9 KiB of stack a level). */
#define PB_WIRE_DEPTH (3 * PBJSON_MAX_DEPTH + 2)

/* Walks one message level: every tag well formed, no groups, messages nested at
 * most PB_WIRE_DEPTH deep (else -3), and no two different arms of a real oneof
 * sent as length-delimited fields (-2: protobuf-c would keep the last one
 * silently; the JavaScript decoder refuses the frame). Sets *nul when a string
 * field holds a NUL byte. -1: malformed. */
static int walk(const uint8_t *p, size_t n, pbd_t *d, int depth, bool *nul)
{
    if (depth > PB_WIRE_DEPTH)
        return -3;
    uint32_t arm_off = UINT32_MAX, arm_id = 0;
    size_t i = 0;
    while (i < n) {
        uint64_t tag, len;
        if (pbjson_varint(p, n, &i, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
            return -1;
        switch (tag & 7) {
        case 0: if (pbjson_varint(p, n, &i, &len)) return -1; continue;
        case 1: if (n - i < 8) return -1; i += 8; continue;
        case 5: if (n - i < 4) return -1; i += 4; continue;
        case 2: break;
        default: return -1;   /* groups: no AG-UI encoder writes them */
        }
        if (pbjson_varint(p, n, &i, &len) || len > n - i)
            return -1;
        pbf_t *f = d ? protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3)) : NULL;
        if (f && real_oneof(d, f)) {
            if (arm_id && f->quantifier_offset == arm_off && f->id != arm_id)
                return -2;
            arm_off = f->quantifier_offset, arm_id = f->id;
        }
        if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
            int rc = walk(p + i, (size_t)len, f->descriptor, depth + 1, nul);
            if (rc)
                return rc;
        } else if (f && f->type == PROTOBUF_C_TYPE_STRING && !*nul) {
            *nul = memchr(p + i, 0, (size_t)len) != NULL;
        }
        i += (size_t)len;
    }
    return 0;
}

agui_type_t pbjson_sniff_type(const uint8_t *pb, size_t len)
{
    pbjson_tables_init();
    size_t i = 0;
    while (i < len) {
        uint64_t tag, v;
        if (pbjson_varint(pb, len, &i, &tag))
            break;
        if ((tag & 7) != 2) {
            if ((tag & 7) == 0 ? pbjson_varint(pb, len, &i, &v) : (tag & 7) == 1 ? (i += 8, 0) : (tag & 7) == 5 ? (i += 4, 0) : 1)
                break;
            continue;
        }
        if (pbjson_varint(pb, len, &i, &v) || v > len - i)
            break;
        for (int t = 0; t < AGUI_TYPE_COUNT; t++)
            if (pbjson_type_arm[t] && (uint64_t)pbjson_type_arm[t] == tag >> 3)
                return (agui_type_t)t;
        i += (size_t)v;
    }
    return AGUI_TYPE_COUNT;
}

int pbjson_to_json(buf_t *b, const uint8_t *pb, size_t len, agui_type_t *type, char msg[PBJSON_MSG_MAX])
{
    pb_arena_t *a = pbjson_arena_get();
    if (!a)
        return -ENOMEM;
    conv_t cv;
    pbjson_conv_init(&cv, a, b, msg);
    size_t start = b->len;
    *type = AGUI_TYPE_COUNT;
    bool nul = false;
    int w = walk(pb, len, &ag_ui__event__descriptor, 0, &nul);
    AgUi__Event *env = NULL;
    if (!w && nul) {   /* protobuf-c would cut its strings at their NULs: unpack a copy marked */
        uint8_t *copy = cv_alloc(&cv, len);
        if (copy) {
            memcpy(copy, pb, len);
            pbjson_wire_nul(copy, len, &ag_ui__event__descriptor, PBJSON_NUL_FROM_WIRE);
            pb = copy;
            cv.nul = true;
        }
    }
    if (w == -2)
        pbjson_fail(&cv, -EPROTO, "not an AG-UI event: two different kinds in one message");
    else if (w == -3)
        pbjson_fail(&cv, -EPROTO, "not an AG-UI event: nested deeper than %d", PBJSON_MAX_DEPTH);
    else if (w)
        pbjson_fail(&cv, -EPROTO, "not an AG-UI event: malformed protobuf");
    else if (cv.err)
        ;   /* out of memory for the copy */
    else if (!(env = ag_ui__event__unpack(&cv.alloc, len, pb)))
        pbjson_fail(&cv, -EPROTO, "not an AG-UI event: protobuf-c could not unpack it");
    if (!cv.err && env->event_case == AG_UI__EVENT__EVENT__NOT_SET) {
        bool future = false;
        for (size_t i = 0; i < env->base.n_unknown_fields; i++)
            future |= env->base.unknown_fields[i].wire_type == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
        if (future)
            pbjson_fail(&cv, -ENOENT, "an event of a kind newer than this schema");
        else
            pbjson_fail(&cv, -EPROTO, "not an AG-UI event: no event in the envelope");
    }
    if (!cv.err) {
        pbf_t *af = protobuf_c_message_descriptor_get_field(&ag_ui__event__descriptor, env->event_case);
        const ProtobufCMessage *arm = *(void *const *)member(env, af->offset);
        const AgUi__BaseEvent *be = *(AgUi__BaseEvent *const *)member((void *)arm, protobuf_c_message_descriptor_get_field(af->descriptor, 1)->offset);
        agui_type_t t = AGUI_TYPE_COUNT;
        for (int k = 0; k < AGUI_TYPE_COUNT; k++)
            if ((unsigned)pbjson_type_arm[k] == af->id)
                t = (agui_type_t)k;
        if (!be)
            pbjson_fail(&cv, -EPROTO, "not an AG-UI event: %s without its base event", agui_type_name(t));
        else if ((int)be->type != pbjson_type_pb[t])
            pbjson_fail(&cv, -EPROTO, "not an AG-UI event: the envelope carries %s but the base event declares %d",
                 agui_type_name(t), (int)be->type);
        if (!cv.err) {
            *type = t;
            OPEN(&cv, "{\"type\":\"");
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
            CLOSE(&cv, '}');
        }
    }
    /* The unpacked tree is in the arena: no protobuf_c_message_free_unpacked. */
    pbjson_arena_rewind(a);
    if (cv.err)
        b->len = start;
    return cv.err;
}
