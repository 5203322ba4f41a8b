/* validate_seq: stages 2 and 3 of the event validator (see validate.c): what a
 * stream remembers, chunk expansion as @ag-ui/client's transformChunks does it,
 * and the sequence rules of its verifyEvents.
 *
 * Invariants. A validate_t owns everything it remembers: run flags, a table of
 * ids (owner records, open flags) in its own storage, and the chunk lanes. An
 * event's strings point into the caller's input or tape and are copied when
 * they must be remembered. What is remembered is bounded (VALIDATE_MAX_*) and
 * reset at each new run, as verify resets its maps. Nothing here allocates per
 * event: ids and lanes grow their tables only when a new id is seen. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/schema.h"
#include "proto/validate_int.h"

static bool s_eq(vd_s_t a, const char *p, size_t n) { return a.n == n && !memcmp(a.p, p, n); }

static inline uint64_t vd_load64(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint64_t vd_load32(const char *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

/* The tail is read with overlapping loads rather than a memcpy of n % 8 bytes,
 * which cost more than the rest of the hash; n is in the seed, so overlap
 * cannot make two lengths collide more than chance. */
static uint32_t vd_hash(int kind, uint32_t owner, const char *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)kind << 32 | owner) ^ ((uint64_t)n << 40);
    uint64_t w;
    if (n > 8) {
        const char *last = p + n - 8;
        for (; p < last; p += 8) {
            h = (h ^ vd_load64(p)) * 0xff51afd7ed558ccdull;
            h ^= h >> 32;
        }
        w = vd_load64(last);
    } else if (n >= 4) {
        w = vd_load32(p) | vd_load32(p + n - 4) << 32;
    } else {
        const unsigned char *u = (const unsigned char *)p;
        w = n ? (uint64_t)u[0] | (uint64_t)u[n / 2] << 8 | (uint64_t)u[n - 1] << 16 : 0;
    }
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return (uint32_t)h;
}

/* The entry for (kind, id), and for steps (kind, owner, name); -1 when none. */
static int32_t vd_find_hashed(const validate_t *v, int kind, const char *p, size_t n,
                              uint32_t owner)
{
    if (!v->n_slots || owner == VD_NO_OWNER)
        return -1;
    uint32_t h = vd_hash(kind, owner, p, n), mask = v->n_slots - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t s = v->slots[i];
        if (!s)
            return -1;
        const vd_ent_t *e = &v->ents[s - 1];
        if (e->hash == h && e->kind == kind && e->len == n &&
            (kind != VK_STEP || e->owner == owner) && jtape_bytes_eq(e->key, p, n))
            return (int32_t)(s - 1);
    }
}

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

static int32_t vd_find_s(const validate_t *v, int kind, vd_s_t id)
{
    return vd_find(v, kind, id.p, id.n, 0);
}

static int vd_oom(vd_msg_t *m)
{
    m_str(m, "out of memory");
    return -ENOMEM;
}

/* A copy of p in the run's string store, which only grows until the run ends. */
static const char *vd_store(validate_t *v, const char *p, size_t n)
{
    vd_chunk_t *c = v->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        vd_chunk_t *nc = malloc(sizeof *nc + cap);
        if (!nc)
            return NULL;
        *nc = (vd_chunk_t){ .next = c, .cap = cap, .used = 0 };
        v->chunks = c = nc;
    }
    char *d = c->data + c->used;
    if (n)
        memcpy(d, p, n);
    c->used += n;
    return d;
}

static int vd_grow(validate_t *v)
{
    if (v->n_ents == v->cap_ents) {
        uint32_t cap = v->cap_ents ? v->cap_ents * 2 : 32;
        vd_ent_t *e = realloc(v->ents, cap * sizeof *e);
        if (!e)
            return -ENOMEM;
        v->ents = e;
        v->cap_ents = cap;
    }
    if ((v->n_ents + 1) * 2 > v->n_slots) {
        uint32_t n = v->n_slots ? v->n_slots * 2 : 64, mask = n - 1;
        uint32_t *s = calloc(n, sizeof *s);
        if (!s)
            return -ENOMEM;
        for (uint32_t i = 0; i < v->n_ents; i++) {
            uint32_t j = v->ents[i].hash & mask;
            while (s[j])
                j = (j + 1) & mask;
            s[j] = i + 1;
        }
        free(v->slots);
        v->slots = s;
        v->n_slots = n;
    }
    return 0;
}

/* Records a new (kind, id); the caller has checked it is not there yet. */
static int vd_add(validate_t *v, int kind, const char *p, size_t n, uint32_t owner,
                  int32_t *out, vd_msg_t *m)
{
    if (v->n_ents >= VALIDATE_MAX_IDS) {
        m_fmt(m, "too many ids in one run (limit %d)", VALIDATE_MAX_IDS);
        return -EPROTO;
    }
    if (n > VALIDATE_MAX_ID_BYTES - v->id_bytes) {
        m_fmt(m, "ids in one run exceed %u bytes", VALIDATE_MAX_ID_BYTES);
        return -EPROTO;
    }
    const char *key = vd_store(v, p, n);
    if (!key || vd_grow(v))
        return vd_oom(m);
    uint32_t h = vd_hash(kind, kind == VK_STEP ? owner : 0, p, n), mask = v->n_slots - 1;
    uint32_t i = h & mask;
    while (v->slots[i])
        i = (i + 1) & mask;
    v->slots[i] = v->n_ents + 1;
    v->ents[v->n_ents] = (vd_ent_t){ .key = key, .len = (uint32_t)n, .hash = h, .owner = owner,
                                     .kind = (uint8_t)kind };
    v->id_bytes += n;
    v->newest = v->n_ents + 1;
    *out = (int32_t)v->n_ents++;
    return 0;
}

static uint32_t vd_owner_find(const validate_t *v, vd_s_t tag)
{
    if (!tag.set)
        return 0;
    int32_t i = vd_find_s(v, VK_TAG, tag);
    return i < 0 ? VD_NO_OWNER : (uint32_t)i + 1;
}

static int vd_intern(validate_t *v, vd_s_t tag, uint32_t *owner, vd_msg_t *m)
{
    *owner = 0;
    if (!tag.set)
        return 0;
    int32_t i = vd_find_s(v, VK_TAG, tag);
    if (i < 0) {
        int rc = vd_add(v, VK_TAG, tag.p, tag.n, 0, &i, m);
        if (rc)
            return rc;
    }
    *owner = (uint32_t)i + 1;
    return 0;
}

/* Sets owners[kind][id] = owner of tag, recording id if new. */
static int vd_set_owner(validate_t *v, int kind, vd_s_t id, vd_s_t tag, int32_t *out, vd_msg_t *m)
{
    uint32_t owner;
    int rc = vd_intern(v, tag, &owner, m);
    int32_t i = vd_find_s(v, kind, id);
    if (!rc && i < 0)
        rc = vd_add(v, kind, id.p, id.n, owner, &i, m);
    if (rc)
        return rc;
    v->ents[i].owner = owner;
    if (out)
        *out = i;
    return 0;
}

static int vd_open(validate_t *v, int32_t i, uint8_t flag, int counter, vd_msg_t *m)
{
    if (v->n_open[counter] >= VALIDATE_MAX_OPEN) {
        m_fmt(m, "too many open %s (limit %d)", vo_names[counter], VALIDATE_MAX_OPEN);
        return -EPROTO;
    }
    v->ents[i].flags |= flag;
    v->n_open[counter]++;
    return 0;
}

static void vd_close(validate_t *v, int32_t i, uint8_t flag, int counter)
{
    assert(v->ents[i].flags & flag);
    v->ents[i].flags &= (uint8_t)~flag;
    v->n_open[counter]--;
}

static vd_s_t vd_owner_tag(const validate_t *v, uint32_t owner)
{
    if (!owner || owner == VD_NO_OWNER)
        return VD_UNSET;
    const vd_ent_t *e = &v->ents[owner - 1];
    return (vd_s_t){ e->key, e->len, true };
}

/* Forgets every id and open flag, keeping the tables' memory (and one chunk). */
static void vd_clear_ids(validate_t *v)
{
    v->n_ents = v->newest = 0;
    if (v->slots)
        memset(v->slots, 0, v->n_slots * sizeof *v->slots);
    while (v->chunks && v->chunks->next) {
        vd_chunk_t *c = v->chunks;
        v->chunks = c->next;
        free(c);
    }
    if (v->chunks)
        v->chunks->used = 0;
    v->id_bytes = 0;
    memset(v->n_open, 0, sizeof v->n_open);
    v->step_seq = v->parent_step_order = 0;
}

/* verify's resetRunState: a new run forgets everything about the last one. */
static void vd_reset_run(validate_t *v)
{
    assert(v->n_open[VO_LANE] == 0);   /* run events close every lane first */
    vd_clear_ids(v);
    v->run_finished = v->run_error = false;
    v->run_started = true;
}

/* Tables this big after a run are given back rather than kept for the next. */
#define VD_KEEP_SLOTS 1024

void validate_reset(validate_t *v)
{
    vd_clear_ids(v);   /* open lanes too: a stream may have been cut mid-run */
    if (v->n_slots > VD_KEEP_SLOTS) {
        free(v->ents);
        free(v->slots);
        v->ents = NULL;
        v->slots = NULL;
        v->cap_ents = v->n_slots = 0;
    }
    v->first_seen = v->run_started = v->run_finished = v->run_error = false;
    v->failed = false;
    v->fail_msg[0] = '\0';
}

/* ---- stage 3: the sequence rules (verifyEvents) --------------------------------- */

/* "TYPE", or "CHUNK_TYPE (as TYPE)" for an event chunk expansion made. */
static void m_type(vd_msg_t *m, const vd_ev_t *e)
{
    m_str(m, agui_type_name(e->from));
    if (e->from != e->type) {
        m_str(m, " (as ");
        m_str(m, agui_type_name(e->type));
        m_str(m, ")");
    }
}

static void m_owner(vd_msg_t *m, const validate_t *v, uint32_t owner)
{
    if (!owner) {
        m_str(m, "the parent agent");
        return;
    }
    vd_s_t t = vd_owner_tag(v, owner);
    m_str(m, "subagent ");
    m_id(m, t.p, t.n);
}

static void m_tag(vd_msg_t *m, vd_s_t tag)
{
    if (!tag.set) {
        m_str(m, "the parent agent");
        return;
    }
    m_str(m, "subagent ");
    m_id(m, tag.p, tag.n);
}

/* "<T> for <what> '<id>' <why>" */
static int vq_fail_id(vd_msg_t *m, const vd_ev_t *e, const char *what, vd_s_t id, const char *why)
{
    m_type(m, e);
    m_str(m, " for ");
    m_str(m, what);
    m_str(m, " ");
    m_id(m, id.p, id.n);
    m_str(m, " ");
    return m_fail(m, why);
}

/* subagentTagError: a tagged continuation must agree with its entity's recorded
 * owner (the parent agent counts as an owner); an untagged one always agrees. */
static int vq_tag(const validate_t *v, const vd_ev_t *e, int32_t ent, const char *what,
                  vd_s_t id, vd_msg_t *m)
{
    if (!e->tag.set || ent < 0 || vd_owner_find(v, e->tag) == v->ents[ent].owner)
        return 0;
    m_type(m, e);
    m_str(m, ": subagentRunId ");
    m_id(m, e->tag.p, e->tag.n);
    m_str(m, " does not match the owner of ");
    m_str(m, what);
    m_str(m, " ");
    m_id(m, id.p, id.n);
    m_str(m, " (");
    m_owner(m, v, v->ents[ent].owner);
    return m_fail(m, ")");
}

/* A list of what is still open, for RUN_FINISHED. */
static int vq_still_open(const validate_t *v, vd_msg_t *m, int counter, int kind, uint8_t flag)
{
    m_str(m, "RUN_FINISHED while ");
    m_str(m, vo_names[counter]);
    m_str(m, " are still active: ");
    bool first = true;
    for (uint32_t i = 0; i < v->n_ents; i++) {
        const vd_ent_t *e = &v->ents[i];
        if (e->kind != kind || !(e->flags & flag))
            continue;
        if (m->len > VALIDATE_MSG_MAX - 12) {
            m_str(m, ", ...");
            break;
        }
        if (!first)
            m_str(m, ", ");
        m_id(m, e->key, e->len);
        if (kind == VK_STEP && e->owner) {
            m_str(m, " (");
            m_owner(m, v, e->owner);
            m_str(m, ")");
        }
        first = false;
    }
    return -EPROTO;
}

/* seedOwnersFromMessages: replayed history (MESSAGES_SNAPSHOT, authoritative;
 * RUN_STARTED.input, only for ids not yet recorded) records the owner of each
 * message, in the bucket its role streams through, and of each assistant tool call. */
static int vq_seed(validate_t *v, jtape_t *t, uint32_t msgs, bool authoritative, vd_msg_t *m)
{
    if (!msgs)
        return 0;
    for (uint32_t msg = msgs + 1; msg < jtape_end(t, msgs); msg = jtape_end(t, msg)) {
        uint32_t role = jtape_get(t, msg, "role", 4);
        int kind = jtape_str_eq(t, role, "reasoning", 9) ? VK_RSN :
                   jtape_str_eq(t, role, "activity", 8) ? VK_ACT : VK_MSG;
        vd_s_t id = vd_tget(t, msg, "id", 2), tag = vd_tget(t, msg, "subagentRunId", 13);
        int rc;
        if ((authoritative || vd_find_s(v, kind, id) < 0) &&
            (rc = vd_set_owner(v, kind, id, tag, NULL, m)))
            return rc;
        if (!jtape_str_eq(t, role, "assistant", 9))
            continue;   /* other roles have no toolCalls; enforcement strips the key */
        uint32_t calls = jtape_get(t, msg, "toolCalls", 9);
        if (!calls)
            continue;
        for (uint32_t tc = calls + 1; tc < jtape_end(t, calls); tc = jtape_end(t, tc)) {
            vd_s_t tcid = vd_tget(t, tc, "id", 2);
            if ((authoritative || vd_find_s(v, VK_TOOL, tcid) < 0) &&
                (rc = vd_set_owner(v, VK_TOOL, tcid, tag, NULL, m)))
                return rc;
        }
    }
    return 0;
}

static int vq_text(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    int32_t i = vd_find_s(v, VK_MSG, e->id);
    int rc;
    if (e->type == AGUI_TEXT_MESSAGE_START) {
        if (i >= 0 && (v->ents[i].flags & VF_OPEN))
            return vq_fail_id(m, e, "message", e->id, "which is already in progress");
        if ((rc = vq_tag(v, e, i, "message", e->id, m)))   /* first writer keeps it */
            return rc;
        if (i < 0 && (rc = vd_set_owner(v, VK_MSG, e->id, e->tag, &i, m)))
            return rc;
        return vd_open(v, i, VF_OPEN, VO_TEXT, m);
    }
    if (i < 0 || !(v->ents[i].flags & VF_OPEN))
        return vq_fail_id(m, e, "message", e->id,
                          i < 0 ? "which was not started" : "which is not in progress");
    if ((rc = vq_tag(v, e, i, "message", e->id, m)))
        return rc;
    if (e->type == AGUI_TEXT_MESSAGE_END)
        vd_close(v, i, VF_OPEN, VO_TEXT);
    return 0;
}

static int vq_tool_start(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    int32_t i = vd_find_s(v, VK_TOOL, e->id), p = -1;
    int rc;
    if (i >= 0 && (v->ents[i].flags & VF_OPEN))
        return vq_fail_id(m, e, "tool call", e->id, "which is already in progress");
    /* A tool call lives in the message parentMessageId names and inherits its owner. */
    if (e->parent.set && (p = vd_find_s(v, VK_MSG, e->parent)) >= 0 && e->tag.set &&
        vd_owner_find(v, e->tag) != v->ents[p].owner) {
        m_type(m, e);
        m_str(m, ": subagentRunId ");
        m_id(m, e->tag.p, e->tag.n);
        m_str(m, " does not match the owner of parent message ");
        m_id(m, e->parent.p, e->parent.n);
        m_str(m, " (");
        m_owner(m, v, v->ents[p].owner);
        return m_fail(m, ")");
    }
    if (i >= 0) {
        if ((rc = vq_tag(v, e, i, "tool call", e->id, m)))
            return rc;
        if (!e->tag.set && p >= 0 && v->ents[p].owner != v->ents[i].owner) {
            m_type(m, e);
            m_str(m, ": tool call ");
            m_id(m, e->id.p, e->id.n);
            m_str(m, " is owned by ");
            m_owner(m, v, v->ents[i].owner);
            m_str(m, " but its parent message ");
            m_id(m, e->parent.p, e->parent.n);
            m_str(m, " by ");
            m_owner(m, v, v->ents[p].owner);
            return -EPROTO;
        }
    } else if (e->tag.set || p < 0) {
        if ((rc = vd_set_owner(v, VK_TOOL, e->id, e->tag, &i, m)))
            return rc;
    } else {
        uint32_t owner = v->ents[p].owner;
        if ((rc = vd_add(v, VK_TOOL, e->id.p, e->id.n, owner, &i, m)))
            return rc;
    }
    return vd_open(v, i, VF_OPEN, VO_TOOL, m);
}

static int vq_tool(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    int32_t i = vd_find_s(v, VK_TOOL, e->id);
    if (i < 0 || !(v->ents[i].flags & VF_OPEN))
        return vq_fail_id(m, e, "tool call", e->id,
                          i < 0 ? "which was not started" : "which is not in progress");
    int rc = vq_tag(v, e, i, "tool call", e->id, m);
    if (!rc && e->type == AGUI_TOOL_CALL_END)
        vd_close(v, i, VF_OPEN, VO_TOOL);
    return rc;
}

/* Steps are keyed by (owner, name): a subagent may run a step its parent runs too. */
static int vq_step(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    uint32_t owner = vd_owner_find(v, e->tag);
    int32_t i = vd_find(v, VK_STEP, e->id.p, e->id.n, owner);
    int rc;
    if (e->type == AGUI_STEP_STARTED) {
        if (i >= 0 && (v->ents[i].flags & VF_OPEN)) {
            m_type(m, e);
            m_str(m, " for step ");
            m_id(m, e->id.p, e->id.n);
            m_str(m, " which is already active");
            if (e->tag.set) {
                m_str(m, " in subagent ");
                m_id(m, e->tag.p, e->tag.n);
            }
            return -EPROTO;
        }
        if ((rc = vd_intern(v, e->tag, &owner, m)))
            return rc;
        uint32_t *order = owner ? &v->ents[owner - 1].order : &v->parent_step_order;
        if (!*order)
            *order = ++v->step_seq;
        if (i < 0 && (rc = vd_add(v, VK_STEP, e->id.p, e->id.n, owner, &i, m)))
            return rc;
        return vd_open(v, i, VF_OPEN, VO_STEP, m);
    }
    if (i >= 0 && (v->ents[i].flags & VF_OPEN)) {
        vd_close(v, i, VF_OPEN, VO_STEP);
        return 0;
    }
    /* Open under someone else? The owner that first had a step is named, as
     * verify's walk of its owner map in insertion order does. */
    int32_t other = -1;
    uint32_t best = UINT32_MAX;
    for (uint32_t k = 0; k < v->n_ents; k++) {
        const vd_ent_t *s = &v->ents[k];
        if (s->kind != VK_STEP || !(s->flags & VF_OPEN) || s->owner == owner ||
            s->len != e->id.n || memcmp(s->key, e->id.p, e->id.n))
            continue;
        uint32_t ord = s->owner ? v->ents[s->owner - 1].order : v->parent_step_order;
        if (ord < best) {
            best = ord;
            other = (int32_t)k;
        }
    }
    if (other < 0)
        return vq_fail_id(m, e, "step", e->id, "which was not started");
    m_type(m, e);
    m_str(m, " for step ");
    m_id(m, e->id.p, e->id.n);
    m_str(m, " by ");
    m_tag(m, e->tag);
    m_str(m, ": it is open under ");
    m_owner(m, v, v->ents[other].owner);
    return -EPROTO;
}

/* Reasoning has two bracketed entities that may share an id: the span
 * (REASONING_START .. _END) and the message (REASONING_MESSAGE_START .. _END),
 * with one owner record for both. */
static int vq_reasoning(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    bool span = e->type == AGUI_REASONING_START || e->type == AGUI_REASONING_END;
    uint8_t flag = span ? VF_SPAN : VF_RMSG;
    int counter = span ? VO_SPAN : VO_RMSG;
    const char *what = span ? "reasoning span" : "reasoning message";
    int32_t i = vd_find_s(v, VK_RSN, e->id);
    int rc;
    if (e->type == AGUI_REASONING_START || e->type == AGUI_REASONING_MESSAGE_START) {
        if (i >= 0 && (v->ents[i].flags & flag))
            return vq_fail_id(m, e, what, e->id, "which is already in progress");
        if ((rc = vq_tag(v, e, i, "reasoning message", e->id, m)))
            return rc;
        if (i < 0 && (rc = vd_set_owner(v, VK_RSN, e->id, e->tag, &i, m)))
            return rc;
        return vd_open(v, i, flag, counter, m);
    }
    if (i < 0 || !(v->ents[i].flags & flag))
        return vq_fail_id(m, e, what, e->id,
                          i < 0 ? "which was not started" : "which is not in progress");
    if ((rc = vq_tag(v, e, i, "reasoning message", e->id, m)))
        return rc;
    if (e->type != AGUI_REASONING_MESSAGE_CONTENT)
        vd_close(v, i, flag, counter);
    return 0;
}

static int vq_subagent(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    int32_t i = vd_find_s(v, VK_TAG, e->id);
    uint8_t fl = i >= 0 ? v->ents[i].flags : 0;
    int rc;
    if (e->type != AGUI_SUBAGENT_STARTED) {
        if (!(fl & VF_ACTIVE))
            return vq_fail_id(m, e, "subagent", e->id, "which is not active");
        v->ents[i].flags |= VF_CLOSED;
        vd_close(v, i, VF_ACTIVE, VO_SUB);
        return 0;
    }
    if (fl & VF_ACTIVE)
        return vq_fail_id(m, e, "subagent", e->id, "which is already active");
    if (fl & VF_CLOSED)   /* ids are per invocation */
        return vq_fail_id(m, e, "subagent", e->id, "which already finished in this run");
    if (e->parent.set) {
        int32_t p = vd_find_s(v, VK_TAG, e->parent);
        if (p < 0 || !(v->ents[p].flags & (VF_ACTIVE | VF_CLOSED))) {
            m_type(m, e);
            m_str(m, ": parentSubagentRunId ");
            m_id(m, e->parent.p, e->parent.n);
            return m_fail(m, " was not started in this run");
        }
    }
    uint32_t owner;
    if ((rc = vd_intern(v, e->id, &owner, m)))
        return rc;
    return vd_open(v, (int32_t)owner - 1, VF_ACTIVE, VO_SUB, m);
}

/* verifyEvents, one event. Each rule is named where verify.ts states it. */
static int vq_event(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    agui_type_t t = e->type;

    /* Nothing but a new run after RUN_ERROR; nothing but RUN_ERROR or a new run
     * after RUN_FINISHED; RUN_STARTED (or RUN_ERROR) first; no RUN_STARTED while
     * a run is active. */
    if (v->run_error && t != AGUI_RUN_STARTED) {
        m_type(m, e);
        return m_fail(m, " after RUN_ERROR: only RUN_STARTED may follow");
    }
    if (v->run_finished && t != AGUI_RUN_ERROR && t != AGUI_RUN_STARTED) {
        m_type(m, e);
        return m_fail(m, " after RUN_FINISHED: only RUN_STARTED or RUN_ERROR may follow");
    }
    if (!v->first_seen) {
        v->first_seen = true;
        if (t != AGUI_RUN_STARTED && t != AGUI_RUN_ERROR) {
            m_str(m, "first event must be RUN_STARTED, got ");
            m_type(m, e);
            return -EPROTO;
        }
    } else if (t == AGUI_RUN_STARTED) {
        if (v->run_started && !v->run_finished && !v->run_error)
            return m_fail(m, "RUN_STARTED while a run is still active: send RUN_FINISHED first");
        if (v->run_finished || v->run_error)
            vd_reset_run(v);
    }

    switch (t) {
    case AGUI_TEXT_MESSAGE_START:
    case AGUI_TEXT_MESSAGE_CONTENT:
    case AGUI_TEXT_MESSAGE_END:
        return vq_text(v, e, m);
    case AGUI_TOOL_CALL_START:
        return vq_tool_start(v, e, m);
    case AGUI_TOOL_CALL_ARGS:
    case AGUI_TOOL_CALL_END:
        return vq_tool(v, e, m);
    case AGUI_STEP_STARTED:
    case AGUI_STEP_FINISHED:
        return vq_step(v, e, m);
    case AGUI_ACTIVITY_SNAPSHOT: {
        /* Only a replacing snapshot (replace absent or true) re-owns a known activity. */
        if (vd_find_s(v, VK_ACT, e->id) >= 0 && e->replace_false)
            return 0;
        return vd_set_owner(v, VK_ACT, e->id, e->tag, NULL, m);
    }
    case AGUI_ACTIVITY_DELTA:
        return vq_tag(v, e, vd_find_s(v, VK_ACT, e->id), "activity", e->id, m);
    case AGUI_TOOL_CALL_RESULT:   /* mints a tool message; the newest mint owns it */
        return vd_set_owner(v, VK_MSG, e->id, e->tag, NULL, m);
    case AGUI_REASONING_START:
    case AGUI_REASONING_MESSAGE_START:
    case AGUI_REASONING_MESSAGE_CONTENT:
    case AGUI_REASONING_MESSAGE_END:
    case AGUI_REASONING_END:
        return vq_reasoning(v, e, m);
    case AGUI_REASONING_ENCRYPTED_VALUE: {
        int32_t i;
        const char *what;
        if (e->subtype_tool) {
            i = vd_find_s(v, VK_TOOL, e->id);
            what = "tool call";
        } else {
            i = vd_find_s(v, VK_MSG, e->id);
            if (i < 0)
                i = vd_find_s(v, VK_RSN, e->id);
            what = "message";
        }
        return vq_tag(v, e, i, what, e->id, m);
    }
    case AGUI_SUBAGENT_STARTED:
    case AGUI_SUBAGENT_FINISHED:
    case AGUI_SUBAGENT_ERROR:
        return vq_subagent(v, e, m);
    case AGUI_MESSAGES_SNAPSHOT:
        return vq_seed(v, e->t, e->messages, true, m);
    case AGUI_RUN_STARTED:
        v->run_started = true;
        return vq_seed(v, e->t, e->messages, false, m);
    case AGUI_RUN_FINISHED: {
        /* Everything opened in the run must be closed, checked in verify's order. */
        static const struct { int counter, kind; uint8_t flag; } open[] = {
            { VO_STEP, VK_STEP, VF_OPEN }, { VO_TEXT, VK_MSG, VF_OPEN },
            { VO_RMSG, VK_RSN, VF_RMSG }, { VO_SPAN, VK_RSN, VF_SPAN },
            { VO_TOOL, VK_TOOL, VF_OPEN }, { VO_SUB, VK_TAG, VF_ACTIVE },
        };
        for (size_t k = 0; k < sizeof open / sizeof open[0]; k++)
            if (v->n_open[open[k].counter])
                return vq_still_open(v, m, open[k].counter, open[k].kind, open[k].flag);
        v->run_finished = true;
        return 0;
    }
    case AGUI_RUN_ERROR:
        v->run_error = true;
        return 0;
    default:   /* STATE_*, RAW, CUSTOM; chunks never get here */
        return 0;
    }
}

/* ---- stage 2: chunk expansion (transformChunks) --------------------------------- */

static const agui_type_t lane_start[] = {
    AGUI_TEXT_MESSAGE_START, AGUI_TOOL_CALL_START, AGUI_REASONING_MESSAGE_START
};
static const agui_type_t lane_content[] = {
    AGUI_TEXT_MESSAGE_CONTENT, AGUI_TOOL_CALL_ARGS, AGUI_REASONING_MESSAGE_CONTENT
};
static const agui_type_t lane_end[] = {
    AGUI_TEXT_MESSAGE_END, AGUI_TOOL_CALL_END, AGUI_REASONING_MESSAGE_END
};
static const char *const lane_what[] = { "message", "tool call", "reasoning message" };

static int vx_lane_at(const validate_t *v, uint32_t owner)
{
    for (uint32_t i = 0; i < v->n_open[VO_LANE]; i++)
        if (v->lanes[i].owner == owner)
            return (int)i;
    return -1;
}

/* Ends the stream lane li was assembling: its END goes through the rules, with
 * the opener's subagentRunId. */
static int vx_close(validate_t *v, uint32_t li, agui_type_t trigger, vd_msg_t *m)
{
    vd_lane_t l = v->lanes[li];
    memmove(&v->lanes[li], &v->lanes[li + 1], (v->n_open[VO_LANE] - li - 1) * sizeof l);
    v->n_open[VO_LANE]--;
    vd_ev_t end = { .type = lane_end[l.kind], .from = trigger, .id = { l.id, l.id_len, true },
                    .tag = vd_owner_tag(v, l.owner), .parent = VD_UNSET };
    return vq_event(v, &end, m);
}

/* resolveLane: the lane a chunk belongs to. An id already open continues where it
 * is, whoever sends it; a new id opens in the lane its tag names; an id-less chunk
 * continues its tag's lane, else the parent's, else the only open one of its kind. */
static int vx_resolve(validate_t *v, int kind, const vd_ev_t *e, uint32_t *lane, vd_msg_t *m)
{
    *lane = 0;
    if (e->id.set) {
        for (uint32_t i = 0; i < v->n_open[VO_LANE]; i++) {
            const vd_lane_t *l = &v->lanes[i];
            if (l->kind != kind || l->id_len != e->id.n || memcmp(l->id, e->id.p, e->id.n))
                continue;
            if (e->tag.set && vd_owner_find(v, e->tag) != l->owner) {
                m_type(m, e);
                m_fmt(m, " for %s ", lane_what[kind]);
                m_id(m, e->id.p, e->id.n);
                m_str(m, ": subagentRunId ");
                m_id(m, e->tag.p, e->tag.n);
                m_str(m, " does not match the open stream's owner (");
                m_owner(m, v, l->owner);
                return m_fail(m, ")");
            }
            *lane = l->owner;
            return 0;
        }
        return vd_intern(v, e->tag, lane, m);
    }
    if (e->tag.set) {
        *lane = vd_owner_find(v, e->tag);
        return 0;
    }
    int p = vx_lane_at(v, 0);
    if (p >= 0 && v->lanes[p].kind == kind)
        return 0;
    uint32_t found = 0;
    for (uint32_t i = 0; i < v->n_open[VO_LANE]; i++)
        if (v->lanes[i].kind == kind && found++ == 0)
            *lane = v->lanes[i].owner;
    if (found > 1) {
        m_type(m, e);
        m_fmt(m, " without %s or subagentRunId is ambiguous: %u subagents have an open %s",
              kind == LANE_TOOL ? "toolCallId" : "messageId", found, lane_what[kind]);
        return -EPROTO;
    }
    return 0;
}

/* A continuation may repeat what its opener said, only with the same value. */
static int vx_agree(const vd_lane_t *l, const vd_ev_t *e, const char *field, vd_s_t in,
                    bool had, const char *was, size_t was_len, vd_msg_t *m)
{
    if (!in.set || (had && s_eq(in, was, was_len)))
        return 0;
    m_type(m, e);
    m_fmt(m, " for %s ", lane_what[l->kind]);
    m_id(m, l->id, l->id_len);
    m_fmt(m, ": %s ", field);
    m_id(m, in.p, in.n);
    m_str(m, " does not match the open stream's ");
    if (had)
        m_id(m, was, was_len);
    else
        m_str(m, "(absent)");
    return -EPROTO;
}

static int vx_chunk(validate_t *v, const vd_ev_t *e, int kind, vd_msg_t *m)
{
    vd_s_t name = kind == LANE_RSN ? VD_UNSET : e->name;
    vd_s_t role = kind == LANE_TEXT ? e->role : VD_UNSET;
    uint8_t role_ix = 2;   /* absent means assistant */
    for (uint8_t r = 0; role.set && schema_text_roles[r]; r++)
        if (s_eq(role, schema_text_roles[r], strlen(schema_text_roles[r])))
            role_ix = r;
    uint32_t lane;
    int rc = vx_resolve(v, kind, e, &lane, m);
    if (rc)
        return rc;

    int li = vx_lane_at(v, lane);
    vd_lane_t *l = li >= 0 ? &v->lanes[li] : NULL;
    bool emitted = false;
    if (l && l->kind == kind && (!e->id.set || s_eq(e->id, l->id, l->id_len))) {
        const char *r = schema_text_roles[l->role];
        if (kind == LANE_TEXT &&
            ((rc = vx_agree(l, e, "role", role, true, r, strlen(r), m)) ||
             (rc = vx_agree(l, e, "name", name, l->has_name, l->name, l->name_len, m))))
            return rc;
        if (kind == LANE_TOOL &&
            ((rc = vx_agree(l, e, "toolCallName", name, true, l->name, l->name_len, m)) ||
             (rc = vx_agree(l, e, "parentMessageId", e->parent, l->has_parent, l->parent,
                            l->parent_len, m))))
            return rc;
    } else {
        if (!e->id.set) {
            m_type(m, e);
            return m_fail(m, kind == LANE_TOOL ? ": the first chunk must have a toolCallId" :
                                                 ": the first chunk must have a messageId");
        }
        if (kind == LANE_TOOL && !name.set) {
            m_type(m, e);
            return m_fail(m, ": the first chunk must have a toolCallName");
        }
        if (l && (rc = vx_close(v, (uint32_t)li, e->from, m)))   /* this lane's last stream */
            return rc;
        if (v->n_open[VO_LANE] >= VALIDATE_MAX_OPEN) {
            m_fmt(m, "too many open %s (limit %d)", vo_names[VO_LANE], VALIDATE_MAX_OPEN);
            return -EPROTO;
        }
        if (v->n_open[VO_LANE] == v->cap_lanes) {
            uint32_t cap = v->cap_lanes ? v->cap_lanes * 2 : 4;
            vd_lane_t *nl = realloc(v->lanes, cap * sizeof *nl);
            if (!nl)
                return vd_oom(m);
            v->lanes = nl;
            v->cap_lanes = cap;
        }
        size_t bytes = e->id.n + name.n + e->parent.n;
        if (bytes > VALIDATE_MAX_ID_BYTES - v->id_bytes) {
            m_fmt(m, "ids in one run exceed %u bytes", VALIDATE_MAX_ID_BYTES);
            return -EPROTO;
        }
        vd_lane_t nl = { .owner = lane, .kind = (uint8_t)kind, .role = role_ix,
                         .has_name = name.set, .has_parent = kind == LANE_TOOL && e->parent.set,
                         .id = vd_store(v, e->id.p, e->id.n), .id_len = (uint32_t)e->id.n,
                         .name = vd_store(v, name.p, name.n), .name_len = (uint32_t)name.n };
        if (nl.has_parent) {
            nl.parent = vd_store(v, e->parent.p, e->parent.n);
            nl.parent_len = (uint32_t)e->parent.n;
        }
        if (!nl.id || !nl.name || (nl.has_parent && !nl.parent))
            return vd_oom(m);
        v->id_bytes += bytes;
        l = &v->lanes[v->n_open[VO_LANE]++];
        *l = nl;
        vd_ev_t start = { .type = lane_start[kind], .from = e->from, .id = e->id, .tag = e->tag,
                          .parent = kind == LANE_TOOL ? e->parent : VD_UNSET };
        if ((rc = vq_event(v, &start, m)))
            return rc;
        emitted = true;
    }
    /* CONTENT when the chunk has a delta or a rawEvent, or carries only metadata. */
    if (e->has_delta || e->has_raw || (!emitted && e->has_meta)) {
        vd_ev_t content = { .type = lane_content[kind], .from = e->from,
                            .id = { l->id, l->id_len, true }, .tag = vd_owner_tag(v, l->owner),
                            .parent = VD_UNSET };
        return vq_event(v, &content, m);
    }
    return 0;
}

/* transformChunks, then verifyEvents on each event it yields. */
int vd_sequence(validate_t *v, const vd_ev_t *e, vd_msg_t *m)
{
    int rc = 0, li;
    switch (e->type) {
    case AGUI_TEXT_MESSAGE_CHUNK:
        return vx_chunk(v, e, LANE_TEXT, m);
    case AGUI_TOOL_CALL_CHUNK:
        return vx_chunk(v, e, LANE_TOOL, m);
    case AGUI_REASONING_MESSAGE_CHUNK:
        return vx_chunk(v, e, LANE_RSN, m);
    case AGUI_RUN_STARTED:
    case AGUI_RUN_FINISHED:
    case AGUI_RUN_ERROR:
    case AGUI_MESSAGES_SNAPSHOT:   /* run-wide: every lane ends */
        while (!rc && v->n_open[VO_LANE])
            rc = vx_close(v, 0, e->type, m);
        break;
    case AGUI_RAW:
    case AGUI_ACTIVITY_SNAPSHOT:
    case AGUI_ACTIVITY_DELTA:
    case AGUI_REASONING_ENCRYPTED_VALUE:
    case AGUI_SUBAGENT_STARTED:
        break;
    default:   /* an explicit event (or a subagent's end) ends its own lane's stream */
        if (v->n_open[VO_LANE] && (li = vx_lane_at(v, vd_owner_find(v, e->tag))) >= 0)
            rc = vx_close(v, (uint32_t)li, e->type, m);
        break;
    }
    return rc ? rc : vq_event(v, e, m);
}

