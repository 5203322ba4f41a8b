/* validate_int: what the two halves of the event validator share.
 * validate.c reads an event (tape, schema) into a vd_ev_t; validate_ids.c keeps
 * what a stream remembers, validate_chunk.c expands chunks and validate_seq.c
 * applies the sequence rules.
 * vd_ and m_ are this module's internal prefixes; nothing here leaves proto/. */
#ifndef AGATE_VALIDATE_INT_H
#define AGATE_VALIDATE_INT_H

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proto/agui.h"
#include "proto/jtape.h"
#include "proto/validate.h"

/* ---- violation messages: short, ASCII, always NUL-terminated ----------------- */

#define VD_ID_SHOW 32   /* characters of an id shown before "..." */

typedef struct vd_msg {
    char  *buf;         /* VALIDATE_MSG_MAX bytes */
    size_t len;
} vd_msg_t;

/* s must be printable ASCII; what does not fit is cut. */
static inline void m_raw(vd_msg_t *m, const char *s, size_t n)
{
    size_t room = VALIDATE_MSG_MAX - 1 - m->len;
    if (n > room)
        n = room;
    memcpy(m->buf + m->len, s, n);
    m->len += n;
    m->buf[m->len] = '\0';
}

static inline void m_str(vd_msg_t *m, const char *s) { m_raw(m, s, strlen(s)); }

static inline void m_fmt(vd_msg_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void m_fmt(vd_msg_t *m, const char *fmt, ...)
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
static inline void m_id(vd_msg_t *m, const char *p, size_t n)
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
static inline void m_safe(vd_msg_t *m, const char *p, size_t n)
{
    for (size_t i = 0; i < n && m->len < VALIDATE_MSG_MAX - 1; i++) {
        unsigned char c = (unsigned char)p[i];
        m->buf[m->len++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    m->buf[m->len] = '\0';
}

static inline int m_fail(vd_msg_t *m, const char *s)
{
    m_str(m, s);
    return -EPROTO;
}


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
    uint8_t     kind, role;     /* role: index into schema_text_roles */
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
    uint32_t    newest;         /* the entry added last, + 1 (0: none): a stream's
                                   events mostly name what was just started */
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
    /* chunks: what transformChunks reads besides the ids */
    vd_s_t      name;           /* name (text), toolCallName (tool) */
    vd_s_t      role;
    bool        has_delta, has_raw, has_meta;
    jtape_t    *t;              /* the tape the event was read from, and on it: */
    uint32_t    messages;       /* MESSAGES_SNAPSHOT.messages, RUN_STARTED.input.messages (0: none) */
} vd_ev_t;

/* Unset strings point at "" so that memcmp and memcpy never see NULL. */
#define VD_UNSET ((vd_s_t){ "", 0, false })

/* The string value of o's member key, decoded; unset when absent or not a string. */
static inline vd_s_t vd_tget(jtape_t *t, uint32_t o, const char *key, size_t klen)
{
    uint32_t x = jtape_get(t, o, key, klen);
    if (!x || jtape_kind(t, x) != JT_STR)
        return VD_UNSET;
    vd_s_t s = { NULL, 0, true };
    s.p = jtape_str(t, x, &s.n);
    return s;
}

static inline bool vd_s_eq(vd_s_t a, const char *p, size_t n) { return a.n == n && !memcmp(a.p, p, n); }

/* ---- the run's ids (validate_ids.c) ---- */

/* The entry for (kind, id), and for steps (kind, owner, name); -1 when none. */
int32_t vd_find_hashed(const validate_t *v, int kind, const char *p, size_t n, uint32_t owner);

/* The same, trying first without hashing the entry added last: a stream's
 * events mostly name what was just started (entries are unique, so a match
 * there is the match; no entry has owner VD_NO_OWNER). */
static inline int32_t vd_find(const validate_t *v, int kind, const char *p, size_t n,
                              uint32_t owner)
{
    if (v->newest) {
        const vd_ent_t *e = &v->ents[v->newest - 1];
        if (e->kind == kind && e->len == n && (kind != VK_STEP || e->owner == owner) &&
            jtape_bytes_eq(e->key, p, n))
            return (int32_t)(v->newest - 1);
    }
    return vd_find_hashed(v, kind, p, n, owner);
}

static inline int32_t vd_find_s(const validate_t *v, int kind, vd_s_t id)
{
    return vd_find(v, kind, id.p, id.n, 0);
}

static inline int vd_oom(vd_msg_t *m)
{
    m_str(m, "out of memory");
    return -ENOMEM;
}

/* A copy of p in the run's string store, which only grows until the run ends; NULL without memory. */
const char *vd_store(validate_t *v, const char *p, size_t n);
/* Records a new (kind, id); the caller has checked it is not there yet. */
int  vd_add(validate_t *v, int kind, const char *p, size_t n, uint32_t owner, int32_t *out, vd_msg_t *m);
/* The owner a subagentRunId stands for: 0 when unset, VD_NO_OWNER when never recorded. */
uint32_t vd_owner_find(const validate_t *v, vd_s_t tag);
/* The same, recording the tag when new. */
int  vd_intern(validate_t *v, vd_s_t tag, uint32_t *owner, vd_msg_t *m);
/* Sets owners[kind][id] = owner of tag, recording id if new. */
int  vd_set_owner(validate_t *v, int kind, vd_s_t id, vd_s_t tag, int32_t *out, vd_msg_t *m);
/* Marks entry i open (flag), counted against VALIDATE_MAX_OPEN. */
int  vd_open(validate_t *v, int32_t i, uint8_t flag, int counter, vd_msg_t *m);

static inline void vd_close(validate_t *v, int32_t i, uint8_t flag, int counter)
{
    assert(v->ents[i].flags & flag);
    v->ents[i].flags &= (uint8_t)~flag;
    v->n_open[counter]--;
}

static inline vd_s_t vd_owner_tag(const validate_t *v, uint32_t owner)
{
    if (!owner || owner == VD_NO_OWNER)
        return VD_UNSET;
    const vd_ent_t *e = &v->ents[owner - 1];
    return (vd_s_t){ e->key, e->len, true };
}

/* verify's resetRunState: a new run forgets everything about the last one. */
void vd_reset_run(validate_t *v);

/* "TYPE", or "CHUNK_TYPE (as TYPE)" for an event chunk expansion made. */
void m_type(vd_msg_t *m, const vd_ev_t *e);
/* "the parent agent" or "subagent '<id>'". */
void m_owner(vd_msg_t *m, const validate_t *v, uint32_t owner);

/* ---- the stages ---- */

/* verifyEvents on one event (validate_seq.c): 0, -EPROTO or -ENOMEM with m set. */
int vq_event(validate_t *v, const vd_ev_t *e, vd_msg_t *m);

/* transformChunks, then verifyEvents, on one schema-valid event: 0, -EPROTO or
 * -ENOMEM with m set. Does not look at v->failed. */
int vd_sequence(validate_t *v, const vd_ev_t *e, vd_msg_t *m);

#endif
