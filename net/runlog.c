/* runlog: a resumable run's bounded event log (see runlog.h).
 *
 * Invariants:
 *  - Only the writer appends: it writes a record past its chunk's `pub`, then
 *    publishes it (release); bytes below `pub` never change. A full chunk is
 *    sealed by linking the next one (release), as coalesce_flight's logs are.
 *  - Chunks leave only from the front, only under the lock, and never the
 *    tail: a reader holding the lock sees a chunk freed only if its seq0 is
 *    below the head's, so comparing numbers (never the stale pointer) tells it
 *    to find its place again.
 *  - Each chunk holds at least one record, so chunks' seq0 strictly increase.
 *  - `state` leaves RUNLOG_OPEN once, after the last record (release). */
#include "net/runlog.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RUNLOG_CHUNK_MAX (64u * 1024)
#define RUNLOG_CHUNK_MIN 8192u

int runlog_init(runlog_t *l, size_t max_bytes, _Atomic size_t *all_bytes, size_t all_max)
{
    memset(l, 0, sizeof *l);
    if (pthread_mutex_init(&l->lock, NULL))
        return -ENOMEM;
    l->max_bytes = max_bytes;
    /* Several chunks fit the bound, so dropping one keeps most of the log. */
    l->chunk_bytes = max_bytes / 4 < RUNLOG_CHUNK_MAX ? max_bytes / 4 : RUNLOG_CHUNK_MAX;
    if (l->chunk_bytes < 256)
        l->chunk_bytes = 256;
    l->all_bytes = all_bytes;
    l->all_max = all_max;
    return 0;
}

static void count_bytes(runlog_t *l, size_t n, bool add)
{
    if (add) {
        atomic_fetch_add_explicit(&l->bytes, n, memory_order_relaxed);
        if (l->all_bytes)
            atomic_fetch_add_explicit(l->all_bytes, n, memory_order_relaxed);
    } else {
        atomic_fetch_sub_explicit(&l->bytes, n, memory_order_relaxed);
        if (l->all_bytes)
            atomic_fetch_sub_explicit(l->all_bytes, n, memory_order_relaxed);
    }
}

void runlog_free(runlog_t *l)
{
    for (runlog_chunk_t *c = l->head, *n; c; c = n) {
        n = atomic_load_explicit(&c->next, memory_order_relaxed);
        count_bytes(l, sizeof *c + c->cap, false);
        free(c);
    }
    l->head = l->tail = NULL;
    pthread_mutex_destroy(&l->lock);
}

static bool over_bound(const runlog_t *l)
{
    return atomic_load_explicit(&l->bytes, memory_order_relaxed) > l->max_bytes ||
           (l->all_bytes && atomic_load_explicit(l->all_bytes, memory_order_relaxed) > l->all_max);
}

/* Drops whole chunks from the front while over a bound, never the tail. */
static void drop_front(runlog_t *l)
{
    runlog_chunk_t *gone = NULL, **last = &gone;
    runlog_lock(l);
    while (l->head != l->tail && over_bound(l)) {
        runlog_chunk_t *c = l->head;
        l->head = atomic_load_explicit(&c->next, memory_order_relaxed);
        count_bytes(l, sizeof *c + c->cap, false);
        *last = c;
        last = (runlog_chunk_t **)&c->next;   /* reuse the link: no reader can reach c now */
    }
    *last = NULL;   /* the last one dropped still points at the new head */
    runlog_unlock(l);
    for (runlog_chunk_t *c = gone, *n; c; c = n) {
        n = atomic_load_explicit(&c->next, memory_order_relaxed);
        free(c);
    }
}

/* Chunks start small and double up to chunk_bytes: most runs are a few KiB
 * (a 44-event echo run is 5.8 KiB with its record headers: one 8 KiB chunk,
 * where 4 KiB then 8 KiB made chunk_new 2 % of its CPU), and a 64 KiB first
 * chunk for each cost more than the rest of the log (bench/cases/resume.sh). */
static runlog_chunk_t *chunk_new(runlog_t *l, size_t need, uint64_t seq0)
{
    size_t want = l->tail ? 2 * l->tail->cap : RUNLOG_CHUNK_MIN;
    if (want > l->chunk_bytes)
        want = l->chunk_bytes;
    size_t cap = need > want ? need : want;
    runlog_chunk_t *c = malloc(sizeof *c + cap);
    if (!c)
        return NULL;
    atomic_init(&c->next, NULL);
    atomic_init(&c->pub, 0);
    c->seq0 = seq0;
    c->cap = cap;
    count_bytes(l, sizeof *c + cap, true);
    return c;
}

int64_t runlog_append(runlog_t *l, uint8_t type, const char *json, size_t len, bool has_lf)
{
    size_t size = RUNLOG_HDR + len;
    if (size > UINT32_MAX)
        return -ENOMEM;
    uint64_t seq = atomic_load_explicit(&l->last_seq, memory_order_relaxed) + 1;
    runlog_chunk_t *t = l->tail;
    size_t used = t ? atomic_load_explicit(&t->pub, memory_order_relaxed) : 0;
    bool grew = false;
    if (!t || t->cap - used < size) {
        runlog_chunk_t *c = chunk_new(l, size, seq);
        if (!c)
            return -ENOMEM;
        if (!t) {
            runlog_lock(l);
            l->head = c;
            runlog_unlock(l);
        } else {
            atomic_store_explicit(&t->next, c, memory_order_release);   /* seals t at its pub */
        }
        l->tail = t = c;
        used = 0;
        grew = true;
    }
    char *w = t->data + used;
    uint32_t sz = (uint32_t)size;
    uint8_t hdr[8] = {0};
    memcpy(hdr, &sz, 4);
    hdr[4] = type;
    hdr[5] = has_lf;
    memcpy(w, hdr, 8);
    memcpy(w + 8, &seq, 8);
    memcpy(w + RUNLOG_HDR, json, len);
    atomic_store_explicit(&t->pub, used + size, memory_order_release);
    atomic_store_explicit(&l->last_seq, seq, memory_order_release);
    /* one writer: a store, not a locked add (readers only compare it) */
    atomic_store_explicit(&l->total, atomic_load_explicit(&l->total, memory_order_relaxed) + size,
                          memory_order_release);
    if (grew && over_bound(l))
        drop_front(l);
    if (l->on_append) {
        runlog_rec_t rec = {seq, type, has_lf, w + RUNLOG_HDR, len};
        l->on_append(l, &rec, l->hook_ctx);
    }
    return (int64_t)seq;
}

void runlog_close(runlog_t *l, bool failed)
{
    atomic_store_explicit(&l->state, failed ? RUNLOG_FAILED : RUNLOG_DONE, memory_order_release);
}

uint64_t runlog_first_seq(const runlog_t *l)
{
    return l->head ? l->head->seq0 : atomic_load_explicit(&l->last_seq, memory_order_acquire) + 1;
}

static size_t rec_parse(const char *p, size_t avail, runlog_rec_t *rec)
{
    uint32_t sz;
    if (avail < RUNLOG_HDR)
        return 0;
    memcpy(&sz, p, 4);
    if (sz < RUNLOG_HDR || sz > avail)
        return 0;
    rec->type = (uint8_t)p[4];
    rec->has_lf = p[5] != 0;
    memcpy(&rec->seq, p + 8, 8);
    rec->json = p + RUNLOG_HDR;
    rec->len = sz - RUNLOG_HDR;
    return sz;
}

/* The reader's chunk was dropped, or it has none yet: the chunk holding its
 * next record, from the head. False when that record was dropped. */
static bool reposition(runlog_t *l, runlog_reader_t *rd)
{
    const runlog_chunk_t *c = l->head;
    if (!c)
        return true;   /* nothing logged yet: the reader stays without a chunk */
    if (rd->next < c->seq0)
        return false;
    for (const runlog_chunk_t *n; (n = atomic_load_explicit(&c->next, memory_order_acquire)) && n->seq0 <= rd->next;)
        c = n;
    rd->ch = c;
    rd->ch_seq0 = c->seq0;
    rd->off = 0;
    return true;
}

int runlog_peek(runlog_t *l, runlog_reader_t *rd, runlog_rec_t *rec, size_t *size)
{
    if (!rd->ch || (l->head && rd->ch_seq0 < l->head->seq0)) {
        if (!reposition(l, rd))
            return RUNLOG_RD_GONE;
        if (!rd->ch) {   /* no record yet */
            int st = atomic_load_explicit(&l->state, memory_order_acquire);
            if (st == RUNLOG_OPEN || l->head)
                return RUNLOG_RD_NONE;
            return st == RUNLOG_DONE ? RUNLOG_RD_END : RUNLOG_RD_FAILED;
        }
    }
    for (;;) {
        size_t pub = atomic_load_explicit(&rd->ch->pub, memory_order_acquire);
        if (rd->off < pub) {
            *size = rec_parse(rd->ch->data + rd->off, pub - rd->off, rec);
            if (!*size)
                return RUNLOG_RD_FAILED;   /* cannot be: the writer wrote whole records */
            if (rec->seq < rd->next) {     /* finding its place after a reposition */
                rd->off += *size;
                continue;
            }
            return RUNLOG_RD_REC;
        }
        const runlog_chunk_t *next = atomic_load_explicit(&rd->ch->next, memory_order_acquire);
        if (next) {
            if (rd->off < atomic_load_explicit(&rd->ch->pub, memory_order_acquire))
                continue;   /* sealed after our first look */
            rd->ch = next;
            rd->ch_seq0 = next->seq0;
            rd->off = 0;
            continue;
        }
        int st = atomic_load_explicit(&l->state, memory_order_acquire);
        if (st == RUNLOG_OPEN)
            return RUNLOG_RD_NONE;
        if (rd->off < atomic_load_explicit(&rd->ch->pub, memory_order_acquire) ||
            atomic_load_explicit(&rd->ch->next, memory_order_acquire))
            continue;
        return st == RUNLOG_DONE ? RUNLOG_RD_END : RUNLOG_RD_FAILED;
    }
}
