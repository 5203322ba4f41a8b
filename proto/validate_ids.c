/* validate_ids: what an event stream remembers between events, for the
 * validator's stages 2 and 3 (validate_chunk.c, validate_seq.c): a table of the
 * run's ids (messages, tool calls, steps, subagents...) with their owners and
 * open flags, the run's string store, and the shared parts of violation messages.
 *
 * Invariants. A validate_t owns everything it remembers: run flags, the id
 * table (owner records, open flags) in its own storage, and the chunk lanes. An
 * event's strings point into the caller's input or tape and are copied when
 * they must be remembered. What is remembered is bounded (VALIDATE_MAX_*) and
 * reset at each new run, as verify resets its maps. Nothing here allocates per
 * event: the tables grow only when a new id is seen. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "proto/schema.h"
#include "proto/validate_int.h"

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

int32_t vd_find_hashed(const validate_t *v, int kind, const char *p, size_t n,
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




/* A copy of p in the run's string store, which only grows until the run ends.
 * Chunks start small and double up to VD_CHUNK_MAX: most runs name a handful of
 * ids, and a proxy holds one validator per open stream. */
#define VD_CHUNK_MIN 256
#define VD_CHUNK_MAX 4096

const char *vd_store(validate_t *v, const char *p, size_t n)
{
    vd_chunk_t *c = v->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = !c ? VD_CHUNK_MIN : c->cap >= VD_CHUNK_MAX / 2 ? VD_CHUNK_MAX : c->cap * 2;
        if (cap < n)
            cap = n;
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
        vd_ent_t *e = buf_array_grow(v->ents, &v->cap_ents, sizeof *e, 8);
        if (!e)
            return -ENOMEM;
        v->ents = e;
    }
    if ((v->n_ents + 1) * 2 > v->n_slots) {
        uint32_t n = v->n_slots ? v->n_slots * 2 : 16, mask = n - 1;
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

int vd_add(validate_t *v, int kind, const char *p, size_t n, uint32_t owner,
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

uint32_t vd_owner_find(const validate_t *v, vd_s_t tag)
{
    if (!tag.set)
        return 0;
    int32_t i = vd_find_s(v, VK_TAG, tag);
    return i < 0 ? VD_NO_OWNER : (uint32_t)i + 1;
}

int vd_intern(validate_t *v, vd_s_t tag, uint32_t *owner, vd_msg_t *m)
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

int vd_set_owner(validate_t *v, int kind, vd_s_t id, vd_s_t tag, int32_t *out, vd_msg_t *m)
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

int vd_open(validate_t *v, int32_t i, uint8_t flag, int counter, vd_msg_t *m)
{
    if (v->n_open[counter] >= VALIDATE_MAX_OPEN) {
        m_fmt(m, "too many open %s (limit %d)", vo_names[counter], VALIDATE_MAX_OPEN);
        return -EPROTO;
    }
    v->ents[i].flags |= flag;
    v->n_open[counter]++;
    return 0;
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

void vd_reset_run(validate_t *v)
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


void m_type(vd_msg_t *m, const vd_ev_t *e)
{
    m_str(m, agui_type_name(e->from));
    if (e->from != e->type) {
        m_str(m, " (as ");
        m_str(m, agui_type_name(e->type));
        m_str(m, ")");
    }
}

void m_owner(vd_msg_t *m, const validate_t *v, uint32_t owner)
{
    if (!owner) {
        m_str(m, "the parent agent");
        return;
    }
    vd_s_t t = vd_owner_tag(v, owner);
    m_str(m, "subagent ");
    m_id(m, t.p, t.n);
}
