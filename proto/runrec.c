/* runrec: building, reading and rendering run records (see runrec.h).
 * Building runs once per upstream event on the recording run's shard;
 * rendering once per replayed event into a buffer the replaying run keeps,
 * so neither allocates per event once warm. */
#include "proto/runrec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

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

/* The run's own id at w (0: the thread's, 1: the run's), quoted; its end. */
static inline char *put_own_id(char *w, const runrec_subst_t *s, uint32_t id)
{
    size_t n = id ? s->run_q_len : s->thread_q_len;
    memcpy(w, id ? s->run_q : s->thread_q, n);
    return w + n;
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
        if (id <= 1) {
            w = put_own_id(w, s, id);
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

int runrec_render(buf_t *out, const runrec_t *rec, const runrec_subst_t *s)
{
    int err = 0;
    buf_reset(out);
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

/* --- the SSE plan of a stored run -------------------------------------------------- */

/* Plan layout (host byte order, unaligned):
 *   u32 n_events, n_ops, copy_bytes, n_ids, n_lfs, n_types, n_fresh
 *   n_types x { u32 count, u32 type }
 *   n_ops x { u32 off, u32 len, u32 what }
 * An op copies len bytes at off in the records, then puts `what`: a patch's id
 * (as in a record), PUT_LF or PUT_END. */
#define PLAN_HDR 28u
#define PLAN_OP  12u
#define PUT_LF   0xFFFFFFFEu      /* "\ndata: ": a line break inside the event's JSON */
#define PUT_END  0xFFFFFFFFu      /* "\n\n", and "data: " when another event follows */

typedef struct plan_acc {
    buf_t   *ops;
    uint64_t copy;
    uint32_t n_ids, n_lfs, n_fresh;   /* n_fresh: the highest fresh id's k + 1 */
} plan_acc_t;

static int plan_op(plan_acc_t *a, uint64_t off, size_t len, uint32_t what)
{
    if (off + len > UINT32_MAX || buf_reserve(a->ops, PLAN_OP))
        return -ENOMEM;
    char *p = a->ops->data + a->ops->len;
    put32(p, (uint32_t)off);
    put32(p + 4, (uint32_t)len);
    put32(p + 8, what);
    a->ops->len += PLAN_OP;
    a->copy += len;
    a->n_ids += what < PUT_LF;
    a->n_lfs += what == PUT_LF;
    if (what >= 2 && what < PUT_LF && what - 1 > a->n_fresh)
        a->n_fresh = what - 1;
    return 0;
}

/* Ops copying rec's JSON [at, to) (the JSON lies at jo in the records), a
 * PUT_LF at each line feed in it, and `what` after the last piece. */
static int plan_piece(plan_acc_t *a, uint64_t jo, const runrec_t *rec, size_t at, size_t to, uint32_t what)
{
    const char *nl;
    while ((rec->flags & RUNREC_F_LF) && (nl = memchr(rec->json + at, '\n', to - at))) {
        size_t p = (size_t)(nl - rec->json);
        if (plan_op(a, jo + at, p - at, PUT_LF))
            return -ENOMEM;
        at = p + 1;
    }
    return plan_op(a, jo + at, to - at, what);
}

/* The ops of one record whose JSON lies at jo in the records. */
static int plan_record(plan_acc_t *a, uint64_t jo, const runrec_t *rec)
{
    size_t at = 0;
    for (uint16_t i = 0; i < rec->n_patch; i++) {
        const char *pp = rec->patches + (size_t)i * RUNREC_PATCH;
        uint32_t off = get32(pp), len = get32(pp + 4), id = get32(pp + 8);
        if (off < 1 || off < at + 1 || (uint64_t)off + len + 1 > rec->json_len || id >= PUT_LF)
            return -EINVAL;
        if (plan_piece(a, jo, rec, at, off - 1, id))
            return -ENOMEM;
        at = (size_t)off + len + 1;
    }
    return plan_piece(a, jo, rec, at, rec->json_len, PUT_END);
}

int runrec_plan_build(buf_t *out, const char *const *parts, const size_t *part_lens, size_t n_parts)
{
    uint32_t counts[256] = {0};
    uint32_t n_events = 0, n_types = 0;
    buf_t ops = {0};
    plan_acc_t a = {&ops, 0, 0, 0, 0};
    uint64_t base = 0;   /* the part's offset in the records */
    int rc = 0;
    for (size_t k = 0; k < n_parts && !rc; base += part_lens[k], k++) {
        runrec_t rec;
        for (size_t off = 0, size; !rc && off < part_lens[k]; off += size) {
            if (!(size = runrec_parse(parts[k] + off, part_lens[k] - off, &rec))) {
                rc = -EINVAL;
                break;
            }
            rc = plan_record(&a, base + off + (uint64_t)(rec.json - (parts[k] + off)), &rec);
            n_events++;
            n_types += counts[rec.type]++ == 0;
        }
    }
    if (!rc && (a.copy > UINT32_MAX || buf_reserve(out, PLAN_HDR + (size_t)n_types * 8 + ops.len)))
        rc = -ENOMEM;
    if (!rc) {
        char *p = out->data + out->len;
        uint32_t hdr[7] = {n_events, (uint32_t)(ops.len / PLAN_OP), (uint32_t)a.copy, a.n_ids, a.n_lfs, n_types,
                           a.n_fresh};
        for (unsigned i = 0; i < 7; i++, p += 4)
            put32(p, hdr[i]);
        for (unsigned t = 0; t < 256; t++)
            if (counts[t]) {
                put32(p, counts[t]);
                put32(p + 4, t);
                p += 8;
            }
        memcpy(p, ops.data, ops.len);
        out->len = (size_t)(p + ops.len - out->data);
    }
    buf_free(&ops);
    return rc;
}

size_t runrec_plan_parse(const char *p, size_t avail, runrec_plan_t *pl)
{
    if (avail < PLAN_HDR)
        return 0;
    pl->n_events = get32(p);
    pl->n_ops = get32(p + 4);
    pl->copy_bytes = get32(p + 8);
    pl->n_ids = get32(p + 12);
    pl->n_lfs = get32(p + 16);
    pl->n_types = get32(p + 20);
    pl->n_fresh = get32(p + 24);
    uint64_t size = PLAN_HDR + (uint64_t)pl->n_types * 8 + (uint64_t)pl->n_ops * PLAN_OP;
    if (size > avail)
        return 0;
    pl->types = p + PLAN_HDR;
    pl->ops = pl->types + (size_t)pl->n_types * 8;
    return (size_t)size;
}

void runrec_plan_type(const runrec_plan_t *pl, uint32_t i, uint32_t *type, uint32_t *count)
{
    *count = get32(pl->types + (size_t)i * 8);
    *type = get32(pl->types + (size_t)i * 8 + 4);
}

size_t runrec_plan_room(const runrec_plan_t *pl, const runrec_subst_t *s)
{
    return 6 + (size_t)pl->copy_bytes + (size_t)pl->n_ids * s->max_q + (size_t)pl->n_lfs * 7 +
           (size_t)pl->n_events * 8;
}

/* One pass over the ops into a reservation of runrec_plan_room: a copy and a
 * put per id or line end, against ~4 copies and the record parsing per event
 * that rendering record by record takes. */
int runrec_plan_render_sse(buf_t *out, const runrec_plan_t *pl, const char *recs, size_t recs_len,
                           const runrec_subst_t *s)
{
    if (!pl->n_ops || get32(pl->ops + (size_t)(pl->n_ops - 1) * PLAN_OP + 8) != PUT_END)
        return pl->n_events || pl->n_ops ? -EINVAL : 0;
    if (pl->n_fresh && !fresh_id(s, pl->n_fresh - 1))   /* every fresh id minted here, none in the loop */
        return -ENOMEM;
    if (buf_reserve(out, runrec_plan_room(pl, s)))
        return -ENOMEM;
    const char *fresh = s->ids->data;
    char *w = out->data + out->len;
    memcpy(w, "data: ", 6);
    w += 6;
    const char *op = pl->ops;
    for (uint32_t i = 0; i < pl->n_ops; i++, op += PLAN_OP) {
        uint32_t off = get32(op), len = get32(op + 4), what = get32(op + 8);
        if ((uint64_t)off + len > recs_len)
            return -EINVAL;
        memcpy(w, recs + off, len);
        w += len;
        if (what == PUT_END) {
            memcpy(w, "\n\ndata: ", 8);
            w += 8;
        } else if (what == PUT_LF) {
            memcpy(w, "\ndata: ", 7);
            w += 7;
        } else if (what <= 1) {
            w = put_own_id(w, s, what);
        } else {
            if (what - 2 >= pl->n_fresh)
                return -EINVAL;
            *w++ = '"';
            memcpy(w, fresh + (size_t)(what - 2) * RUNREC_ID_LEN, RUNREC_ID_LEN);
            w += RUNREC_ID_LEN;
            *w++ = '"';
        }
    }
    out->len = (size_t)(w - 6 - out->data);   /* no event follows the last */
    return 0;
}
