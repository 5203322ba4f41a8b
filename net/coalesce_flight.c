/* coalesce_flight: flights. A flight is the shared, append-only log of one
 * upstream run being recorded by its leader (see coalesce.h), found by
 * identical requests on any shard through a process-wide RCU hash table. The
 * leader appends records, wakes the shards that follow it and moves its
 * state once; followers read it (the readers here, driven by
 * coalesce_replay.c) without locks; a clean end is copied once into a cache
 * entry, whose blob the same readers read.
 *
 * Ownership and invariants:
 *  - A flight is reference-counted: one ref for the flights table (dropped by
 *    an RCU callback after it is unpublished), one for its leader, one per
 *    follower. Its chunks are freed with it, so a follower reads them for as
 *    long as it holds its ref, whatever the leader does.
 *  - Only the leader writes a flight's log, `tail` and the runrec_ids; a
 *    chunk's bytes below its published length never change again.
 *  - `state` leaves COAL_FL_RUNNING once, after the last publication (release);
 *    the failure fields are written before it.
 *  - Joining is Dekker-style on two seq_cst pairs: the follower increments
 *    refs then re-reads `joinable`; the leader clears `joinable` then reads
 *    refs. Likewise a follower sets its shard's bit in `mask` then reads the
 *    log, and the leader publishes then reads `mask` (both behind seq_cst
 *    fences), so no event is missed and no wake-up is lost. Only this file
 *    touches the flights table. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

#include "core/cache.h"
#include "net/coalesce_int.h"

#define LOG_CHUNK   (64u * 1024)

static struct cds_lfht *g_flights;

/* --- flights ------------------------------------------------------------------------ */

static int fl_match(struct cds_lfht_node *n, const void *key)
{
    return !memcmp(caa_container_of(n, coal_flight_t, node)->key, key, CANON_KEY_LEN);
}

static inline uint64_t key_hash(const uint8_t *k)
{
    uint64_t h;
    memcpy(&h, k, sizeof h);
    return h;
}

int coalesce_init(void)
{
    g_flights = cds_lfht_new_flavor(256, 256, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, &urcu_memb_flavor, NULL);
    return g_flights ? 0 : -ENOMEM;
}

void coalesce_shutdown(void)
{
    if (!g_flights)
        return;
    urcu_memb_barrier();   /* every flight's table ref dropped (the shards removed them) */
    cds_lfht_destroy(g_flights, NULL);
    g_flights = NULL;
}

bool coal_flights_ready(void) { return g_flights != NULL; }

void coal_flight_put(coal_flight_t *f)
{
    if (atomic_fetch_sub(&f->refs, 1) != 1)
        return;
    for (coal_chunk_t *c = f->head, *n; c; c = n) {
        n = atomic_load_explicit(&c->next, memory_order_relaxed);
        free(c);
    }
    runrec_ids_free(&f->ids);
    buf_free(&f->rec);
    free(f);
}

static void drop_table_ref(struct rcu_head *h) { coal_flight_put(caa_container_of(h, coal_flight_t, rcu)); }

static coal_chunk_t *chunk_new(size_t need)
{
    size_t cap = need > LOG_CHUNK ? need : LOG_CHUNK;
    coal_chunk_t *c = malloc(sizeof *c + cap);
    if (c) {
        atomic_init(&c->next, NULL);
        atomic_init(&c->pub, 0);
        c->cap = cap;
    }
    return c;
}

coal_flight_t *coal_flight_new(const uint8_t key[CANON_KEY_LEN], uint64_t now_ms)
{
    coal_flight_t *f = calloc(1, sizeof *f);
    if (!f || !(f->head = chunk_new(0))) {
        free(f);
        return NULL;
    }
    memcpy(f->key, key, CANON_KEY_LEN);
    cds_lfht_node_init(&f->node);
    atomic_init(&f->refs, 1);   /* the leader's */
    atomic_init(&f->state, COAL_FL_RUNNING);
    atomic_init(&f->joinable, true);
    f->tail = f->head;
    f->start_ms = f->last_ms = now_ms;
    f->recording = f->storable = true;
    return f;
}

/* The table's ref is taken before the node goes in: a joiner can find it at once. */
bool coal_flight_publish(coal_flight_t *f)
{
    atomic_fetch_add(&f->refs, 1);   /* the table's */
    urcu_memb_read_lock();
    struct cds_lfht_node *old = cds_lfht_add_unique(g_flights, key_hash(f->key), fl_match, f->key, &f->node);
    urcu_memb_read_unlock();
    if (old != &f->node) {
        atomic_fetch_sub(&f->refs, 1);
        return false;
    }
    f->in_table = true;
    return true;
}

/* A ref on the running flight for key, if one can be joined. */
coal_flight_t *coal_flight_join(const uint8_t key[CANON_KEY_LEN])
{
    struct cds_lfht_iter it;
    coal_flight_t *f = NULL;
    urcu_memb_read_lock();
    cds_lfht_lookup(g_flights, key_hash(key), fl_match, key, &it);
    struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
    if (n) {
        f = caa_container_of(n, coal_flight_t, node);
        if (atomic_load(&f->joinable))
            atomic_fetch_add(&f->refs, 1);
        else
            f = NULL;
    }
    urcu_memb_read_unlock();
    if (f)
        atomic_fetch_add(&f->joined, 1);
    if (f && !atomic_load(&f->joinable)) {   /* the leader closed it meanwhile */
        coal_flight_put(f);
        f = NULL;
    }
    return f;
}

/* Leader: no one can find the flight any more; followers keep their refs. */
static void flight_unpublish(coal_flight_t *f)
{
    atomic_store(&f->joinable, false);
    if (!f->in_table)
        return;
    f->in_table = false;
    urcu_memb_read_lock();
    int rc = cds_lfht_del(g_flights, &f->node);
    urcu_memb_read_unlock();
    if (rc == 0)
        urcu_memb_call_rcu(&f->rcu, drop_table_ref);
}

/* Leader: tell every shard with followers (self included, without a syscall). */
static _Atomic bool *flight_pending(shard_t *sh) { return coal_shard_of(sh) ? &coal_shard_of(sh)->pending : NULL; }

static void flight_wake(coal_flight_t *f, shard_t *self) { shard_wake_mask(f->mask, COAL_MASK_WORDS, flight_pending, self); }

/* --- reading ------------------------------------------------------------------------- */

void coal_reader_flight(coal_reader_t *rd, const coal_flight_t *f) { *rd = (coal_reader_t){.ch = f->head}; }
/* An entry's blob: u32 plan length, the plan (proto/runrec.h), the records. */
void coal_reader_blob(coal_reader_t *rd, cache_view_t v, runrec_plan_t *plan)
{
    uint32_t n = 0;
    if (v.len >= 4)
        memcpy(&n, v.data, 4);
    if (v.len < 4 || n > v.len - 4 || runrec_plan_parse(v.data + 4, n, plan) != n) {
        *plan = (runrec_plan_t){0};   /* cannot be (store wrote it): read as a run with no records */
        *rd = (coal_reader_t){.blob = v.data + v.len};
        return;
    }
    *rd = (coal_reader_t){.blob = v.data + 4 + n, .blob_len = v.len - 4 - n};
}

/* The next record without consuming it; *size for coal_reader_advance. */
int coal_reader_peek(coal_reader_t *rd, const coal_flight_t *f, runrec_t *rec, size_t *size)
{
    if (rd->blob) {
        if (rd->off >= rd->blob_len)
            return COAL_RD_END;
        *size = runrec_parse(rd->blob + rd->off, rd->blob_len - rd->off, rec);
        return *size ? COAL_RD_REC : COAL_RD_END;
    }
    for (;;) {
        size_t pub = atomic_load_explicit(&rd->ch->pub, memory_order_acquire);
        if (rd->off < pub) {
            *size = runrec_parse(rd->ch->data + rd->off, pub - rd->off, rec);
            return *size ? COAL_RD_REC : COAL_RD_FAILED;
        }
        const coal_chunk_t *next = atomic_load_explicit(&rd->ch->next, memory_order_acquire);
        if (next) {
            if (rd->off < atomic_load_explicit(&rd->ch->pub, memory_order_acquire))
                continue;   /* the chunk was sealed after our first look */
            rd->ch = next;
            rd->off = 0;
            continue;
        }
        int st = atomic_load_explicit(&f->state, memory_order_acquire);
        if (st == COAL_FL_RUNNING)
            return COAL_RD_NONE;
        if (rd->off < atomic_load_explicit(&rd->ch->pub, memory_order_acquire) ||
            atomic_load_explicit(&rd->ch->next, memory_order_acquire))
            continue;
        return st == COAL_FL_DONE ? COAL_RD_END : COAL_RD_FAILED;
    }
}

/* The whole records the reader can take at once, after coal_reader_peek found one:
 * the rest of the blob, or of the chunk's published bytes. */
const char *coal_reader_span(const coal_reader_t *rd, size_t *len)
{
    if (rd->blob) {
        *len = rd->blob_len - rd->off;
        return rd->blob + rd->off;
    }
    *len = atomic_load_explicit(&rd->ch->pub, memory_order_acquire) - rd->off;
    return rd->ch->data + rd->off;
}

/* --- the leader ---------------------------------------------------------------------- */

/* The run will not be stored and no one else may join. The log is still
 * written for followers already attached; with none, it stops. */
static void leader_close(coal_flight_t *f)
{
    f->storable = false;
    flight_unpublish(f);   /* clears joinable, then: */
    if (atomic_load(&f->joined) == 0)
        f->recording = false;
}

/* The log cannot go on (an event that cannot be recorded, no memory): the
 * followers get a RUN_ERROR; the leader's own client is not affected. */
static void leader_abandon(coal_flight_t *f, shard_t *sh, const char *code, const char *msg)
{
    leader_close(f);
    if (!f->recording && atomic_load(&f->joined) == 0)
        return;
    f->recording = false;
    f->status = 502;
    snprintf(f->code, sizeof f->code, "%s", code);
    snprintf(f->msg, sizeof f->msg, "%s", msg);
    atomic_store_explicit(&f->state, COAL_FL_FAILED, memory_order_release);
    flight_wake(f, sh);
}

void coalesce_record(run_t *r, agui_type_t type, const char *json, size_t len)
{
    coal_run_t *co = coal_run_of(r);
    coal_flight_t *f = co ? co->f : NULL;
    if (!f || co->role != COAL_ROLE_LEADER || !f->recording)
        return;
    shard_t *sh = r->sh;
    uint64_t gap = sh->now_ms - f->last_ms;
    f->last_ms = sh->now_ms;
    buf_reset(&f->rec);
    if (runrec_build(&f->rec, &f->ids, type, json, len, gap > UINT32_MAX ? UINT32_MAX : (uint32_t)gap)) {
        leader_abandon(f, sh, "upstream_failed", "the shared run could not be recorded");
        return;
    }
    size_t size = f->rec.len;
    coal_chunk_t *t = f->tail;
    size_t used = atomic_load_explicit(&t->pub, memory_order_relaxed);
    if (t->cap - used < size) {
        coal_chunk_t *c = chunk_new(size);
        if (!c) {
            leader_abandon(f, sh, "out_of_memory", "out of memory");
            return;
        }
        atomic_store_explicit(&t->next, c, memory_order_release);   /* seals t at its pub */
        f->tail = t = c;
        used = 0;
    }
    memcpy(t->data + used, f->rec.data, size);
    atomic_store_explicit(&t->pub, used + size, memory_order_release);
    uint64_t total = atomic_load_explicit(&f->total, memory_order_relaxed) + size;
    atomic_store_explicit(&f->total, total, memory_order_release);
    if (total > r->agent->cache_max_entry && f->storable)
        leader_close(f);   /* too big to store or to join */
    flight_wake(f, sh);
}

/* The log in a new cache entry: its SSE plan (runrec_plan_build), then the
 * records as one contiguous blob (see coal_reader_blob). Not stored when out of
 * memory: the run was served, only not kept. */
static void store(run_t *r, coal_flight_t *f)
{
    uint64_t total = atomic_load_explicit(&f->total, memory_order_relaxed);
    size_t n = 0, k = 0;
    for (coal_chunk_t *c = f->head; c; c = atomic_load_explicit(&c->next, memory_order_relaxed))
        n++;
    const char **parts = malloc(n * sizeof *parts);
    size_t *lens = malloc(n * sizeof *lens);
    buf_t plan = {0};
    cache_entry_t *e = NULL;
    char *data;
    if (!parts || !lens)
        goto out;
    for (coal_chunk_t *c = f->head; c; c = atomic_load_explicit(&c->next, memory_order_relaxed), k++) {
        parts[k] = c->data;
        lens[k] = atomic_load_explicit(&c->pub, memory_order_relaxed);
    }
    if (runrec_plan_build(&plan, parts, lens, n) || plan.len > UINT32_MAX ||
        !(e = cache_entry_new(4 + plan.len + total, &data)))
        goto out;
    uint32_t pl = (uint32_t)plan.len;
    memcpy(data, &pl, 4);
    memcpy(data + 4, plan.data, plan.len);
    for (size_t at = 4 + plan.len, i = 0; i < n; at += lens[i], i++)
        memcpy(data + at, parts[i], lens[i]);
    cache_insert(e, f->key, r->agent->name, r->agent->cache_ttl_ms, r->sh->now_ms);
out:
    buf_free(&plan);
    free(parts);
    free(lens);
}

void coalesce_leader_done(run_t *r, bool finished)
{
    coal_run_t *co = coal_run_of(r);
    if (!co || co->role != COAL_ROLE_LEADER || !co->f)
        return;
    coal_flight_t *f = co->f;
    if (finished && f->recording && f->storable && co->store) {
        store(r, f);   /* before unpublishing: a request in between finds one or the other */
        coal_tier2_store(r, f);   /* the client has every event: the copy to Redis is behind it */
    }
    /* An abandoned log (leader_abandon) stays FAILED: its followers have not
     * all read that yet, and DONE would end their streams cleanly, cut short. */
    if (atomic_load_explicit(&f->state, memory_order_relaxed) == COAL_FL_RUNNING)
        atomic_store_explicit(&f->state, COAL_FL_DONE, memory_order_release);
    flight_wake(f, r->sh);
    flight_unpublish(f);
}

void coalesce_leader_failed(run_t *r, int status, const char *code, const char *msg)
{
    coal_run_t *co = coal_run_of(r);
    if (!co || co->role != COAL_ROLE_LEADER || !co->f)
        return;
    coal_flight_t *f = co->f;
    if (atomic_load_explicit(&f->state, memory_order_relaxed) != COAL_FL_RUNNING)
        return;
    f->status = status;
    snprintf(f->code, sizeof f->code, "%s", code);
    snprintf(f->msg, sizeof f->msg, "%s", msg);
    atomic_store_explicit(&f->state, COAL_FL_FAILED, memory_order_release);
    flight_wake(f, r->sh);
    flight_unpublish(f);
}
