/* coalesce_metrics: the response cache's per-shard metrics (X-Cache results,
 * followers cut, key memo), written by net/coalesce*.c, rendered as
 * agate_cache_* together with the store's own counters (core/cache.c); and
 * the second tier's, agate_cache_tier2_*. */
#ifndef AGATE_COALESCE_METRICS_H
#define AGATE_COALESCE_METRICS_H

#include <stdint.h>

#include "core/config.h"
#include "core/shard.h"
#include "proto/canon.h"

enum coalm_result { MC_HIT, MC_MISS, MC_COALESCED, MC_COUNT };   /* X-Cache of a cached agent's run */

/* The second tier (net/coalesce_tier2.c): lookups in Redis by result, entries
 * refused by why (enum tier2_why), writes by result, and bytes each way. */
enum coalm_t2_lookup { T2L_HIT, T2L_MISS, T2L_REJECTED, T2L_ERROR, T2L_TIMEOUT, T2L_DOWN, T2L_COUNT };
enum coalm_t2_store  { T2S_STORED, T2S_TOO_LARGE, T2S_ERROR, T2S_TIMEOUT, T2S_DOWN, T2S_COUNT };
/* cache.shared_wait: the lock taken (this pod leads), or another pod's run waited for */
enum coalm_t2_wait   { T2W_LEADER, T2W_HIT, T2W_TIMEOUT, T2W_ERROR, T2W_COUNT };
#define COALM_T2_WHY 8   /* TIER2_WHY_COUNT (proto/tier2.h) */

typedef struct coalm_t2 {
    uint64_t lookups[T2L_COUNT];
    uint64_t rejected[COALM_T2_WHY];
    uint64_t stores[T2S_COUNT];
    uint64_t waits[T2W_COUNT];
    uint64_t bytes_read, bytes_written;
} coalm_t2_t;

typedef struct coalm {
    uint64_t results[CFG_MAX_AGENTS][MC_COUNT];
    uint64_t detached[CFG_MAX_AGENTS];                    /* coalesced followers cut for lagging */
    uint64_t key_memo[CFG_MAX_AGENTS][CANON_MEMO_COUNT];  /* how keys were found (enum canon_memo) */
    coalm_t2_t t2;                                        /* the second tier, all agents */
} coalm_t;

extern unsigned g_coalm_mod;   /* the block's index in shard_t.mod */

/* The shard's cache metrics, or NULL when metrics are off. */
static inline coalm_t *coalm(const shard_t *sh) { return (coalm_t *)sh->mod[g_coalm_mod]; }
static inline coalm_t2_t *coalm_t2(const shard_t *sh) { return coalm(sh) ? &coalm(sh)->t2 : NULL; }

/* Main thread, at start-up, after gwmetrics_register. */
void coalm_register(void);

#endif
