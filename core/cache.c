/* cache: finished runs shared by every shard (see cache.h for the design).
 *
 * Invariants:
 *  - An entry in the table holds one reference of its own ("table ref"). It
 *    is dropped by an RCU callback after cds_lfht_del, so a reader inside a
 *    read-side section that found the entry always sees refs >= 1 and may
 *    take one with a plain atomic increment.
 *  - The blob is written once, before the entry is published, and never
 *    again; readers need no ordering beyond the table's publication.
 *  - Queue links, `queue`, byte and entry counts belong to the writer mutex;
 *    `freq` is the only field a reader writes (relaxed, saturating at 3).
 *  - An entry is freed when its last reference goes, on whichever thread
 *    drops it (a shard, or the call_rcu thread). */
#include "core/cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

#include "core/config_sect.h"
#include "core/list.h"

enum { Q_NONE, Q_SMALL, Q_MAIN };
#define GHOST_MAX      4096      /* ghost fingerprints remembered */
#define SMALL_SHARE    10        /* % of max_bytes for the small queue */
#define FREQ_MAX       3
#define ENTRY_OVERHEAD (sizeof(struct cache_entry))

struct cache_entry {
    struct cds_lfht_node node;
    struct rcu_head      rcu;
    uint8_t              key[CACHE_KEY_LEN];
    _Atomic uint32_t     refs;
    _Atomic uint8_t      freq;
    uint8_t              queue;          /* Q_*, writer mutex */
    list_t               qnode;          /* in its queue; writer mutex */
    char                 agent[CFG_NAME_MAX];
    uint64_t             stored_ms, expires_ms;
    size_t               len;
    char                 data[];
};

typedef struct queue {
    list_t   entries;   /* pop at the front, push at the back */
    uint64_t bytes;
} queue_t;

static struct {
    struct cds_lfht *ht;
    pthread_mutex_t  mu;
    uint64_t         max_bytes;
    queue_t          small, main;
    uint64_t         ghost[GHOST_MAX];
    uint32_t         ghost_next, ghost_n;
    uint64_t         last_sweep_ms;
    _Atomic uint64_t bytes, entries, inserts, evictions, expirations, purged, rejected;
} C = {.mu = PTHREAD_MUTEX_INITIALIZER};

static inline uint64_t key_hash(const uint8_t *k)
{
    uint64_t h;
    memcpy(&h, k, sizeof h);   /* SHA-256 output: any 8 bytes are uniform */
    return h;
}

static int match(struct cds_lfht_node *n, const void *key)
{
    const cache_entry_t *e = caa_container_of(n, cache_entry_t, node);
    return !memcmp(e->key, key, CACHE_KEY_LEN);
}

static inline size_t entry_bytes(const cache_entry_t *e) { return ENTRY_OVERHEAD + e->len; }

int cache_init(uint64_t max_bytes)
{
    C.max_bytes = max_bytes;
    list_init(&C.small.entries);
    list_init(&C.main.entries);
    C.ht = cds_lfht_new_flavor(1024, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, &urcu_memb_flavor, NULL);
    return C.ht ? 0 : -ENOMEM;
}

bool cache_ready(void) { return C.ht != NULL; }

static __thread bool t_online;   /* this thread is an RCU reader */

void cache_thread_online(void)
{
    if (!t_online)
        urcu_memb_register_thread();
    t_online = true;
}

void cache_thread_offline(void)
{
    if (t_online)
        urcu_memb_unregister_thread();
    t_online = false;
}

static void entry_free(cache_entry_t *e) { free(e); }

void cache_put(cache_entry_t *e)
{
    if (e && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        entry_free(e);
}

static void drop_table_ref(struct rcu_head *h) { cache_put(caa_container_of(h, cache_entry_t, rcu)); }

cache_view_t cache_view(const cache_entry_t *e)
{
    return (cache_view_t){e->data, e->len, e->stored_ms};
}

/* --- queues (writer mutex) ------------------------------------------------------ */

static queue_t *queue_of(cache_entry_t *e) { return e->queue == Q_SMALL ? &C.small : &C.main; }

static cache_entry_t *q_head(const queue_t *q)
{
    list_t *n = list_first(&q->entries);
    return n ? list_item(n, cache_entry_t, qnode) : NULL;
}

static void q_push(queue_t *q, cache_entry_t *e, uint8_t which)
{
    e->queue = which;
    list_push_back(&q->entries, &e->qnode);
    q->bytes += entry_bytes(e);
}

static void q_unlink(cache_entry_t *e)
{
    queue_of(e)->bytes -= entry_bytes(e);
    list_unlink(&e->qnode);
    e->queue = Q_NONE;
}

static void ghost_add(uint64_t h)
{
    C.ghost[C.ghost_next] = h;
    C.ghost_next = (C.ghost_next + 1) % GHOST_MAX;
    if (C.ghost_n < GHOST_MAX)
        C.ghost_n++;
}

static bool ghost_has(uint64_t h)
{
    for (uint32_t i = 0; i < C.ghost_n; i++)
        if (C.ghost[i] == h)
            return true;
    return false;
}

/* Unpublishes e: out of its queue and the table; the table ref goes after a
 * grace period. Writer mutex held. */
static void remove_entry(cache_entry_t *e)
{
    if (e->queue != Q_NONE)
        q_unlink(e);
    urcu_memb_read_lock();
    int rc = cds_lfht_del(C.ht, &e->node);
    urcu_memb_read_unlock();
    if (rc == 0) {
        atomic_fetch_sub_explicit(&C.bytes, entry_bytes(e), memory_order_relaxed);
        atomic_fetch_sub_explicit(&C.entries, 1, memory_order_relaxed);
        urcu_memb_call_rcu(&e->rcu, drop_table_ref);
    }
}

/* One S3-FIFO eviction step. Writer mutex held; false when nothing is left. */
static bool evict_one(void)
{
    uint64_t small_target = C.max_bytes / 100 * SMALL_SHARE;
    for (;;) {
        if (q_head(&C.small) && (C.small.bytes > small_target || !q_head(&C.main))) {
            cache_entry_t *e = q_head(&C.small);
            q_unlink(e);
            if (atomic_load_explicit(&e->freq, memory_order_relaxed) >= 1) {
                atomic_store_explicit(&e->freq, 0, memory_order_relaxed);
                q_push(&C.main, e, Q_MAIN);   /* hit while new: promote */
                continue;
            }
            ghost_add(key_hash(e->key));
            remove_entry(e);
            C.evictions++;
            return true;
        }
        if (q_head(&C.main)) {
            cache_entry_t *e = q_head(&C.main);
            uint8_t f = atomic_load_explicit(&e->freq, memory_order_relaxed);
            q_unlink(e);
            if (f > 0) {
                atomic_store_explicit(&e->freq, (uint8_t)(f - 1), memory_order_relaxed);
                q_push(&C.main, e, Q_MAIN);   /* second chance, CLOCK-style */
                continue;
            }
            remove_entry(e);
            C.evictions++;
            return true;
        }
        return false;
    }
}

/* --- reads ------------------------------------------------------------------------ */

cache_entry_t *cache_get(const uint8_t key[CACHE_KEY_LEN], uint64_t now_ms)
{
    struct cds_lfht_iter it;
    cache_entry_t *e = NULL;
    if (!C.ht)
        return NULL;
    urcu_memb_read_lock();
    cds_lfht_lookup(C.ht, key_hash(key), match, key, &it);
    struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
    if (n) {
        e = caa_container_of(n, cache_entry_t, node);
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    }
    urcu_memb_read_unlock();
    if (!e)
        return NULL;
    if (now_ms >= e->expires_ms) {
        pthread_mutex_lock(&C.mu);
        if (e->queue != Q_NONE) {
            remove_entry(e);
            C.expirations++;
        }
        pthread_mutex_unlock(&C.mu);
        cache_put(e);
        return NULL;
    }
    uint8_t f = atomic_load_explicit(&e->freq, memory_order_relaxed);
    if (f < FREQ_MAX)
        atomic_store_explicit(&e->freq, (uint8_t)(f + 1), memory_order_relaxed);   /* a lost bump is harmless */
    return e;
}

/* --- writes ----------------------------------------------------------------------- */

cache_entry_t *cache_entry_new(size_t len, char **data)
{
    if (!C.ht || len + ENTRY_OVERHEAD > C.max_bytes / 4) {
        atomic_fetch_add_explicit(&C.rejected, 1, memory_order_relaxed);
        return NULL;
    }
    cache_entry_t *e = malloc(sizeof *e + len);
    if (!e)
        return NULL;
    memset(e, 0, sizeof *e);
    cds_lfht_node_init(&e->node);
    e->len = len;
    *data = e->data;
    return e;
}

int cache_insert(cache_entry_t *e, const uint8_t key[CACHE_KEY_LEN], const char *agent, uint64_t ttl_ms,
                 uint64_t now_ms)
{
    return cache_insert_ref(e, key, agent, ttl_ms, now_ms, NULL);
}

int cache_insert_ref(cache_entry_t *e, const uint8_t key[CACHE_KEY_LEN], const char *agent, uint64_t ttl_ms,
                     uint64_t now_ms, cache_entry_t **ref)
{
    if (ref)
        *ref = NULL;
    if (entry_bytes(e) > C.max_bytes / 4) {
        free(e);
        return -E2BIG;
    }
    memcpy(e->key, key, CACHE_KEY_LEN);
    snprintf(e->agent, sizeof e->agent, "%s", agent);
    e->stored_ms = now_ms;
    e->expires_ms = now_ms + ttl_ms;
    /* the table's, and the caller's: taken before the entry is visible, so an
     * eviction by another shard right after cannot free it under the caller */
    atomic_store_explicit(&e->refs, ref ? 2 : 1, memory_order_relaxed);
    if (ref)
        *ref = e;
    atomic_store_explicit(&e->freq, 0, memory_order_relaxed);
    uint64_t h = key_hash(key);

    pthread_mutex_lock(&C.mu);
    while (atomic_load_explicit(&C.bytes, memory_order_relaxed) + entry_bytes(e) > C.max_bytes && evict_one())
        ;
    urcu_memb_read_lock();
    struct cds_lfht_node *old = cds_lfht_add_replace(C.ht, h, match, key, &e->node);
    urcu_memb_read_unlock();
    if (old) {
        cache_entry_t *o = caa_container_of(old, cache_entry_t, node);
        if (o->queue != Q_NONE)
            q_unlink(o);
        atomic_fetch_sub_explicit(&C.bytes, entry_bytes(o), memory_order_relaxed);
        atomic_fetch_sub_explicit(&C.entries, 1, memory_order_relaxed);
        urcu_memb_call_rcu(&o->rcu, drop_table_ref);
    }
    q_push(ghost_has(h) ? &C.main : &C.small, e, ghost_has(h) ? Q_MAIN : Q_SMALL);
    atomic_fetch_add_explicit(&C.bytes, entry_bytes(e), memory_order_relaxed);
    atomic_fetch_add_explicit(&C.entries, 1, memory_order_relaxed);
    C.inserts++;
    pthread_mutex_unlock(&C.mu);
    return 0;
}

static size_t purge_queue(queue_t *q, const char *agent)
{
    size_t n = 0;
    list_each_safe(&q->entries, node, tmp) {
        cache_entry_t *e = list_item(node, cache_entry_t, qnode);
        if (!agent || !strcmp(agent, e->agent)) {
            remove_entry(e);
            n++;
        }
    }
    return n;
}

size_t cache_purge(const char *agent)
{
    if (!C.ht)
        return 0;
    pthread_mutex_lock(&C.mu);
    size_t n = purge_queue(&C.small, agent) + purge_queue(&C.main, agent);
    C.purged += n;
    pthread_mutex_unlock(&C.mu);
    return n;
}

static void expire_queue(queue_t *q, uint64_t now_ms)
{
    list_each_safe(&q->entries, node, tmp) {
        cache_entry_t *e = list_item(node, cache_entry_t, qnode);
        if (now_ms >= e->expires_ms) {
            remove_entry(e);
            C.expirations++;
        }
    }
}

void cache_expire(uint64_t now_ms)
{
    if (!C.ht || atomic_load_explicit(&C.entries, memory_order_relaxed) == 0)
        return;
    if (pthread_mutex_trylock(&C.mu))
        return;   /* another shard is writing; it or the next second sweeps */
    if (now_ms >= C.last_sweep_ms + 1000) {
        C.last_sweep_ms = now_ms;
        expire_queue(&C.small, now_ms);
        expire_queue(&C.main, now_ms);
    }
    pthread_mutex_unlock(&C.mu);
}

void cache_get_stats(cache_stats_t *out)
{
    out->bytes = atomic_load_explicit(&C.bytes, memory_order_relaxed);
    out->entries = atomic_load_explicit(&C.entries, memory_order_relaxed);
    out->max_bytes = C.max_bytes;
    out->inserts = atomic_load_explicit(&C.inserts, memory_order_relaxed);
    out->evictions = atomic_load_explicit(&C.evictions, memory_order_relaxed);
    out->expirations = atomic_load_explicit(&C.expirations, memory_order_relaxed);
    out->purged = atomic_load_explicit(&C.purged, memory_order_relaxed);
    out->rejected = atomic_load_explicit(&C.rejected, memory_order_relaxed);
}

void cache_shutdown(void)
{
    if (!C.ht)
        return;
    bool was = t_online;
    cache_thread_online();   /* the purge deletes under read-side sections */
    cache_purge(NULL);
    if (!was)
        cache_thread_offline();
    urcu_memb_barrier();   /* every table ref dropped */
    cds_lfht_destroy(C.ht, NULL);
    C.ht = NULL;
    C.small.bytes = C.main.bytes = 0;   /* the purge emptied both lists */
    C.ghost_n = C.ghost_next = 0;
}

/* ---- the cache: section of the configuration ---- */

static const struct cfg_setting cache_rows[] = {
    { "cache", "max_bytes", "AGATE_CACHE_MAX_BYTES", "64MiB", CFG_K_SIZE, 0, UINT32_MAX,
      offsetof(cache_conf_t, max_bytes) },
};

static const char *const cache_keys[] = { "cache", NULL };
/* The store is sized once, before the shards start (core/main.c). */
static const char *const cache_restart[] = { "cache.max_bytes", NULL };

/* rank 30: after upstream, before ws, in messages and --help */
cfg_section_t cache_conf_section = {
    .name = "cache", .keys = cache_keys, .rows = cache_rows, .n_rows = sizeof cache_rows / sizeof cache_rows[0],
    .size = sizeof(cache_conf_t), .rank = 30, .restart = cache_restart,
};

void cache_register(void) { cfg_section_register(&cache_conf_section); }
