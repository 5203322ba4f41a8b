/* pbjson: AG-UI events between their protobuf encoding and their JSON form.
 *
 * The packing and unpacking are libprotobuf-c's, driven by the code protoc-c
 * generates from proto/agui.proto; this module only moves values between
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
 * The module's files: this one owns what both directions share (the per-thread
 * arena, the agui_type_t <-> Event arm tables, the conversion state and its
 * first-error rule); pbjson_enc.c is JSON -> protobuf and framing, pbjson_dec.c
 * protobuf -> JSON with the wire walk that guards it; pbjson_int.h declares
 * what they share.
 *
 * Invariants. Nothing here allocates per event once a thread is warm: protobuf-c
 * structs, strings and arrays come from a per-thread bump arena that is rewound
 * after each conversion (the first chunk is kept); JSON input is read onto a
 * per-thread jtape (proto/jtape.c), whose arrays keep their capacity. Input
 * nesting is bounded before any recursive code sees it: on the wire by a
 * descriptor-guided walk (in message levels), in JSON by the tape's depth
 * bound; both directions then hold the JSON to PBJSON_MAX_DEPTH levels, the
 * bound an SSE event has. A conversion keeps its first error only, and on error leaves the
 * caller's buffer as it was. */
#include "proto/pbjson.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agui.pb-c.h"
#include "proto/jtape.h"
#include "proto/pbjson_int.h"

/* ---- per-thread arena -------------------------------------------------------- */

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

int pbjson_type_arm[AGUI_TYPE_COUNT];
int pbjson_type_pb[AGUI_TYPE_COUNT];

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
        pbjson_type_pb[t] = v->value;
        pbjson_type_arm[t] = f ? (int)f->id : 0;
    }
}

void pbjson_tables_init(void)
{
    pthread_once(&pb_once, pb_init);
}

pb_arena_t *pbjson_arena_get(void)
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

void pbjson_arena_rewind(pb_arena_t *a)
{
    while (a->head && a->head != a->keep) {
        pb_chunk_t *c = a->head;
        a->head = c->next;
        free(c);
    }
    if (a->keep)
        a->keep->used = 0;
}

static void arena_free(void *ud, void *p) { (void)ud, (void)p; }

/* ---- conversion state --------------------------------------------------------- */

void pbjson_conv_init(conv_t *cv, pb_arena_t *a, buf_t *b, char *msg)
{
    *cv = (conv_t){.alloc = {arena_alloc, arena_free, a}, .b = b, .msg = msg};
    if (msg)
        msg[0] = 0;
}

void pbjson_fail(conv_t *cv, int err, const char *fmt, ...)
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

/* ---- U+0000 in strings (see pbjson_int.h) ----------------------------------------- */

void pbjson_wire_nul(uint8_t *p, size_t n, pbd_t *d, enum pbjson_nul_dir dir)
{
    size_t i = 0;
    while (i < n) {
        uint64_t tag, len;
        if (pbjson_varint(p, n, &i, &tag))
            return;
        switch (tag & 7) {
        case 0: if (pbjson_varint(p, n, &i, &len)) return; continue;
        case 1: i += 8; continue;
        case 5: i += 4; continue;
        case 2: break;
        default: return;   /* groups: refused before this is called */
        }
        if (pbjson_varint(p, n, &i, &len) || len > n - i)
            return;
        pbf_t *f = protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3));
        if (f && f->type == PROTOBUF_C_TYPE_STRING) {
            for (uint8_t *c = p + i, *e = c + len; c < e; c++) {
                if (dir == PBJSON_NUL_TO_WIRE)
                    *c = *c == 0xFF ? 0 : *c;
                else
                    *c = *c == 0xFF ? 0xFE : *c == 0 ? 0xFF : *c;
            }
        } else if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
            pbjson_wire_nul(p + i, (size_t)len, f->descriptor, dir);
        }
        i += (size_t)len;
    }
}
