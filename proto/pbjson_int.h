/* pbjson_int: what the two directions of the protobuf <-> JSON conversion share.
 * pbjson.c owns the per-thread arena, the type tables and the conversion
 * state; pbjson_enc.c turns JSON into frames, pbjson_dec.c frames into JSON.
 *
 * Every extern name here starts with pbjson_; the static inline helpers keep
 * short names (cv_ for operations on a conv_t, member, fld, elem_size) and,
 * like everything in this header, never leave proto/pbjson*.c. */
#ifndef AGATE_PBJSON_INT_H
#define AGATE_PBJSON_INT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agui.pb-c.h"
#include "core/buf.h"
#include "proto/agui.h"
#include "proto/jtape.h"
#include "proto/pbjson.h"

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

/* Names the arm and EventType value of every agui_type_t (filled once, by
 * pbjson_tables_init or the first pbjson_arena_get; read-only afterwards). */
extern int pbjson_type_arm[AGUI_TYPE_COUNT];   /* Event oneof field number, 0 when none */
extern int pbjson_type_pb[AGUI_TYPE_COUNT];    /* ag_ui.EventType value */

/* Fills the type tables once per process; safe from any thread. */
void pbjson_tables_init(void);
/* The calling thread's arena (the tables filled too); NULL when out of memory. */
pb_arena_t *pbjson_arena_get(void);
/* Back to the first chunk; a big event's extra chunks go back to the system. */
void pbjson_arena_rewind(pb_arena_t *a);

/* Inline: protobuf-c's unpack calls it through the allocator for every struct,
 * and both directions call it per string. */
static inline void *arena_alloc(void *ud, size_t n)
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

/* ---- conversion state --------------------------------------------------------- */

typedef struct conv {
    ProtobufCAllocator alloc;
    buf_t *b;            /* JSON output (decode) */
    int    err;          /* first error: -EINVAL / -EPROTO / -ENOMEM */
    char  *msg;          /* PBJSON_MSG_MAX bytes */
    jtape_t *t;          /* JSON input (encode) */
    int    depth;
    bool   nul;          /* a string holds U+0000, as 0xFF (see pbjson_wire_nul) */
} conv_t;

/* A conversion over arena a, writing JSON to b (decode; NULL to encode) and its
 * first error's text to msg (NULL for none). */
void pbjson_conv_init(conv_t *cv, pb_arena_t *a, buf_t *b, char *msg);
/* Records the first error and its text; later ones are dropped. */
void pbjson_fail(conv_t *cv, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static inline void *cv_alloc(conv_t *cv, size_t n)
{
    void *p = arena_alloc(cv->alloc.allocator_data, n ? n : 1);
    if (!p)
        pbjson_fail(cv, -ENOMEM, "out of memory");
    return p;
}

static inline char *cv_strndup(conv_t *cv, const char *s, size_t n)
{
    char *p = cv_alloc(cv, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* ---- U+0000 in strings ------------------------------------------------------------
 * protobuf-c's strings are C strings: it packs strlen bytes and unpacks into a
 * NUL-terminated copy, so a U+0000 (valid UTF-8, which @ag-ui/proto carries)
 * would cut a string short. It travels through protobuf-c as 0xFF instead, a
 * byte UTF-8 never holds, and is put back in the packed bytes by a walk over
 * the string fields (pbjson_wire_nul). Encoding, every string comes from the
 * tape (valid UTF-8) or is agate's own text, so 0xFF stands for nothing else;
 * decoding, a real 0xFF (invalid UTF-8, written as U+FFFD like 0xFE) becomes
 * 0xFE first. Only an event with a NUL in some string pays for any of it. */

enum pbjson_nul_dir {
    PBJSON_NUL_TO_WIRE,     /* 0xFF -> 0x00: a packed event, before it is sent */
    PBJSON_NUL_FROM_WIRE,   /* 0xFF -> 0xFE, 0x00 -> 0xFF: a received one, before protobuf-c unpacks it */
};

/* Rewrites the bytes of every string field of the packed message p[0..n) of
 * type d, nested messages included. p must be well formed (protobuf-c's own
 * output, or bytes pbjson_to_json's walk checked), so its nesting is bounded. */
void pbjson_wire_nul(uint8_t *p, size_t n, pbd_t *d, enum pbjson_nul_dir dir);

/* A string for protobuf-c: a copy in the arena with each NUL written as 0xFF
 * (and cv->nul set, so the packed bytes are fixed up). */
static inline char *cv_str_wire(conv_t *cv, const char *s, size_t n)
{
    char *p = cv_strndup(cv, s, n);
    if (p && __builtin_expect(memchr(p, 0, n) != NULL, 0)) {
        for (size_t i = 0; i < n; i++)
            if (!p[i])
                p[i] = (char)0xFF;
        cv->nul = true;
    }
    return p;
}

/* A protobuf varint at p[*i..n): 0, or -1 when it runs past n or 10 bytes. */
static inline int pbjson_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v)
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

static inline ProtobufCMessage *cv_new(conv_t *cv, pbd_t *d)
{
    ProtobufCMessage *m = cv_alloc(cv, d->sizeof_message);
    if (m)
        d->message_init(m);
    return m;
}

/* ---- descriptor helpers -------------------------------------------------------- */

static inline void *member(void *m, unsigned off) { return (char *)m + off; }

static inline pbf_t *fld(pbd_t *d, const char *name) { return protobuf_c_message_descriptor_get_field_by_name(d, name); }

static inline size_t elem_size(pbf_t *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    case PROTOBUF_C_TYPE_INT64: return sizeof(int64_t);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    default: return sizeof(int32_t);
    }
}

#endif
