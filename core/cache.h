/* cache: the process-wide store of finished runs, shared by every shard.
 *
 * An entry is one immutable blob (the run's events as records, see
 * net/coalesce.h) under a 32-byte key (proto/canon.h). Reads are lock-free:
 * a lookup is an RCU read-side section over a liburcu lock-free hash table
 * (cds_lfht, urcu-memb flavour) that takes a reference on the entry; the
 * replaying run holds that reference for as long as it reads, so a hit never
 * copies the blob and never sees it freed. Writers (insert, eviction, expiry,
 * purge) are rare (one per upstream run at most) and serialise on one mutex
 * that readers never take.
 *
 * Memory is bounded by cache.max_bytes (blob plus entry header). Eviction is
 * S3-FIFO (Yang et al., SOSP 2023): a small FIFO (10% of the bytes) that new
 * entries enter, a main FIFO, and a ghost list of recently evicted keys. A hit
 * only bumps the entry's 2-bit frequency with a relaxed atomic, so hits stay
 * lock-free and touch no list; one-hit wonders leave from the small queue
 * without displacing the entries that are hit again and again. TTL expiry is
 * checked on every lookup and swept once a second.
 *
 * Threads that call cache_get must be RCU readers: cache_thread_online() at
 * start, cache_thread_offline() before they exit. */
#ifndef AGATE_CACHE_H
#define AGATE_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

#define CACHE_KEY_LEN 32

/* The cache: section of the configuration (cache_conf_section, registered by
 * cache_register), read through cache_conf(cfg). Which agents are cached, and
 * how, is per agent (agents.<name>.cache, core/config_cache.c). */
typedef struct cache_conf {
    uint32_t max_bytes;   /* cache.max_bytes: the store's bytes, process-wide; 0 = stores nothing */
} cache_conf_t;

extern cfg_section_t cache_conf_section;

static inline const cache_conf_t *cache_conf(const cfg_t *c) { return cfg_sect(c, &cache_conf_section); }
static inline cache_conf_t *cache_conf_mut(cfg_t *c) { return cfg_sect_mut(c, &cache_conf_section); }

/* Main thread, at start-up (net/modules.c): registers the cache: section. */
void cache_register(void);

typedef struct cache_entry cache_entry_t;

/* What a replayer reads: valid while it holds its reference. */
typedef struct cache_view {
    const char *data;
    size_t      len;
    uint64_t    stored_ms;   /* monotonic */
} cache_view_t;

typedef struct cache_stats {
    uint64_t bytes, entries, max_bytes;
    uint64_t inserts, evictions, expirations, purged, rejected;
} cache_stats_t;

/* Process start (before any shard) and end (after every shard has stopped).
 * max_bytes 0 stores nothing. 0 or -ENOMEM. */
int  cache_init(uint64_t max_bytes);
void cache_shutdown(void);
bool cache_ready(void);

void cache_thread_online(void);
void cache_thread_offline(void);

/* A live entry for key (a reference the caller must put), or NULL. An expired
 * entry is removed and counted, and is a miss. */
cache_entry_t *cache_get(const uint8_t key[CACHE_KEY_LEN], uint64_t now_ms);
void cache_put(cache_entry_t *e);
cache_view_t cache_view(const cache_entry_t *e);

/* A new entry with room for len bytes of blob, for cache_insert; NULL on
 * ENOMEM or when it could never fit. */
cache_entry_t *cache_entry_new(size_t len, char **data);
/* Takes ownership of e (from cache_entry_new, its blob filled) and publishes
 * it, replacing an entry with the same key, evicting as needed. agent names
 * the entry for purges. 0, or -E2BIG (over a quarter of max_bytes: freed). */
int cache_insert(cache_entry_t *e, const uint8_t key[CACHE_KEY_LEN], const char *agent, uint64_t ttl_ms,
                 uint64_t now_ms);
/* As cache_insert, and on success *ref is a reference for the caller (to
 * cache_put), taken before the entry is published: an entry read from
 * elsewhere can be served even if it is evicted at once. */
int cache_insert_ref(cache_entry_t *e, const uint8_t key[CACHE_KEY_LEN], const char *agent, uint64_t ttl_ms,
                     uint64_t now_ms, cache_entry_t **ref);

/* Removes every entry (agent NULL) or one agent's; returns how many. */
size_t cache_purge(const char *agent);
/* Removes expired entries; cheap to call often (does the walk at most once a second). */
void cache_expire(uint64_t now_ms);
void cache_get_stats(cache_stats_t *out);

#endif
