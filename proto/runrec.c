/* runrec: building, reading and rendering run records (see runrec.h).
 * Building runs once per upstream event on the recording run's shard;
 * rendering once per replayed event into a buffer the replaying run keeps,
 * so neither allocates per event once warm. */
#include "proto/runrec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/json.h"

static uint64_t fnv(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h | 1;
}

void runrec_ids_reset(runrec_ids_t *ids)
{
    buf_reset(&ids->text);
    ids->n = 0;
    if (ids->slots)
        memset(ids->slots, 0, ids->cap * sizeof *ids->slots);
}

void runrec_ids_free(runrec_ids_t *ids)
{
    buf_free(&ids->text);
    free(ids->ents);
    free(ids->slots);
    free(ids->spans);
    memset(ids, 0, sizeof *ids);
}

static int ids_grow(runrec_ids_t *ids)
{
    uint32_t cap = ids->cap ? ids->cap * 2 : 64;
    uint32_t *slots = calloc(cap, sizeof *slots);
    struct runrec_id *ents = realloc(ids->ents, (size_t)cap / 2 * sizeof *ents);
    if (!slots || !ents) {
        free(slots);
        if (ents)
            ids->ents = ents;
        return -ENOMEM;
    }
    ids->ents = ents;
    for (uint32_t i = 0; i < ids->n; i++) {
        uint32_t s = (uint32_t)ents[i].h & (cap - 1);
        while (slots[s])
            s = (s + 1) & (cap - 1);
        slots[s] = i + 1;
    }
    free(ids->slots);
    ids->slots = slots;
    ids->cap = cap;
    return 0;
}

/* k of id text p (n bytes), adding it when new; -ENOMEM. */
static int64_t ids_index(runrec_ids_t *ids, const char *p, size_t n)
{
    if (ids->n + 1 > ids->cap / 2 && ids_grow(ids))
        return -ENOMEM;
    uint64_t h = fnv(p, n);
    uint32_t s = (uint32_t)h & (ids->cap - 1);
    for (; ids->slots[s]; s = (s + 1) & (ids->cap - 1)) {
        const struct runrec_id *e = &ids->ents[ids->slots[s] - 1];
        if (e->h == h && e->len == n && (!n || !memcmp(ids->text.data + e->off, p, n)))   /* "" has no text yet */
            return ids->slots[s] - 1;
    }
    if (ids->text.len + n > UINT32_MAX || buf_append(&ids->text, p, n))
        return -ENOMEM;
    ids->ents[ids->n] = (struct runrec_id){h, (uint32_t)(ids->text.len - n), (uint32_t)n};
    ids->slots[s] = ids->n + 1;
    return ids->n++;
}

static inline void put32(char *p, uint32_t v) { memcpy(p, &v, 4); }
static inline uint32_t get32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

int runrec_build(buf_t *out, runrec_ids_t *ids, agui_type_t type, const char *json, size_t len, uint32_t gap_ms)
{
    int n = evids_scan(json, len, type, ids->spans, ids->spans_cap);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n > ids->spans_cap) {
        if (n > UINT16_MAX)
            return -EINVAL;
        evids_span_t *sp = realloc(ids->spans, (size_t)n * sizeof *sp);
        if (!sp)
            return -ENOMEM;
        ids->spans = sp;
        ids->spans_cap = (size_t)n;
        n = evids_scan(json, len, type, ids->spans, ids->spans_cap);
    }
    size_t size = RUNREC_HDR + (size_t)n * RUNREC_PATCH + len;
    if (len > UINT32_MAX || buf_reserve(out, size))
        return -ENOMEM;
    char *p = out->data + out->len;
    put32(p, (uint32_t)len);
    put32(p + 4, gap_ms);
    uint16_t np = (uint16_t)n;
    memcpy(p + 8, &np, 2);
    p[10] = (char)type;
    /* found once when recorded, so no replay searches the event for one */
    p[11] = (char)(memchr(json, '\n', len) ? RUNREC_F_LF : 0);
    char *pp = p + RUNREC_HDR;
    for (int i = 0; i < n; i++, pp += RUNREC_PATCH) {
        const evids_span_t *sp = &ids->spans[i];
        int64_t id = sp->kind == EVIDS_THREAD ? 0 : sp->kind == EVIDS_RUN ? 1 : 0;
        if (sp->kind == EVIDS_ID) {
            int64_t k = ids_index(ids, json + sp->off, sp->len);
            if (k < 0)
                return -ENOMEM;
            id = 2 + k;
        }
        put32(pp, sp->off);
        put32(pp + 4, sp->len);
        put32(pp + 8, (uint32_t)id);
    }
    memcpy(pp, json, len);
    out->len += size;
    return 0;
}

size_t runrec_parse(const char *p, size_t avail, runrec_t *rec)
{
    if (avail < RUNREC_HDR)
        return 0;
    rec->json_len = get32(p);
    rec->gap_ms = get32(p + 4);
    memcpy(&rec->n_patch, p + 8, 2);
    rec->type = (uint8_t)p[10];
    rec->flags = (uint8_t)p[11];
    size_t size = RUNREC_HDR + (size_t)rec->n_patch * RUNREC_PATCH + rec->json_len;
    if (size > avail)
        return 0;
    rec->patches = p + RUNREC_HDR;
    rec->json = rec->patches + (size_t)rec->n_patch * RUNREC_PATCH;
    return size;
}

int runrec_subst_init(runrec_subst_t *s, buf_t *q, const char *thread, size_t thread_len, const char *run,
                      size_t run_len, buf_t *ids, rand_state_t *rng)
{
    buf_reset(q);
    if (json_put_str(q, thread, thread_len))
        return -ENOMEM;
    size_t tl = q->len;
    if (json_put_str(q, run, run_len))
        return -ENOMEM;
    *s = (runrec_subst_t){q->data, q->data + tl, tl, q->len - tl, RUNREC_ID_LEN + 2, ids, rng};
    if (s->thread_q_len > s->max_q)
        s->max_q = s->thread_q_len;
    if (s->run_q_len > s->max_q)
        s->max_q = s->run_q_len;
    return 0;
}

/* The k-th fresh id, minted on first use. NULL on ENOMEM. */
static const char *fresh_id(const runrec_subst_t *s, size_t k)
{
    while (s->ids->len / RUNREC_ID_LEN <= k) {
        if (buf_reserve(s->ids, RUNREC_ID_LEN))
            return NULL;
        rand_uuid(s->rng, s->ids->data + s->ids->len);
        s->ids->len += RUNREC_ID_LEN;
    }
    return s->ids->data + k * RUNREC_ID_LEN;
}

/* Writes rec's JSON with every patch replaced at w, which has room for the
 * event with every patch at its longest (room()). Its end, or NULL with *err
 * set. Plain copies after one reservation: this runs once per replayed event,
 * and per-append capacity checks and a separate render buffer were most of a
 * cache hit's user time. */
static char *render_at(char *w, const runrec_t *rec, const runrec_subst_t *s, int *err)
{
    size_t at = 0;
    for (uint16_t i = 0; i < rec->n_patch; i++) {
        const char *pp = rec->patches + (size_t)i * RUNREC_PATCH;
        uint32_t off = get32(pp), len = get32(pp + 4), id = get32(pp + 8);
        /* the span is the string's content: replace it with its quotes */
        if (off < 1 || off < at + 1 || (uint64_t)off + len + 1 > rec->json_len) {
            *err = -EINVAL;
            return NULL;
        }
        memcpy(w, rec->json + at, off - 1 - at);
        w += off - 1 - at;
        if (id == 0) {
            memcpy(w, s->thread_q, s->thread_q_len);
            w += s->thread_q_len;
        } else if (id == 1) {
            memcpy(w, s->run_q, s->run_q_len);
            w += s->run_q_len;
        } else {
            const char *fresh = fresh_id(s, id - 2);
            if (!fresh) {
                *err = -ENOMEM;
                return NULL;
            }
            *w++ = '"';
            memcpy(w, fresh, RUNREC_ID_LEN);
            w += RUNREC_ID_LEN;
            *w++ = '"';
        }
        at = (size_t)off + len + 1;
    }
    memcpy(w, rec->json + at, rec->json_len - at);
    return w + (rec->json_len - at);
}

static inline size_t room(const runrec_t *rec, const runrec_subst_t *s)
{
    return rec->json_len + (size_t)rec->n_patch * s->max_q;
}

int runrec_render_append(buf_t *out, const runrec_t *rec, const runrec_subst_t *s)
{
    int err = 0;
    if (buf_reserve(out, room(rec, s)))
        return -ENOMEM;
    char *w = render_at(out->data + out->len, rec, s, &err);
    if (!w)
        return err;
    out->len = (size_t)(w - out->data);
    return 0;
}

int runrec_render_sse(buf_t *out, const runrec_t *rec, const runrec_subst_t *s)
{
    int err = 0;
    if (buf_reserve(out, room(rec, s) + 8))
        return -ENOMEM;
    char *w = out->data + out->len;
    memcpy(w, "data: ", 6);
    if (!(w = render_at(w + 6, rec, s, &err)))
        return err;
    memcpy(w, "\n\n", 2);
    out->len = (size_t)(w + 2 - out->data);
    return 0;
}
