/* coalesce_metrics: the response cache's per-shard metrics (X-Cache results,
 * followers cut, key memo), written by net/coalesce*.c, rendered as
 * agate_cache_* together with the store's own counters (core/cache.c). */
#ifndef AGATE_COALESCE_METRICS_H
#define AGATE_COALESCE_METRICS_H

#include <stdint.h>

#include "core/config.h"
#include "core/shard.h"
#include "proto/canon.h"

enum coalm_result { MC_HIT, MC_MISS, MC_COALESCED, MC_COUNT };   /* X-Cache of a cached agent's run */

typedef struct coalm {
    uint64_t results[CFG_MAX_AGENTS][MC_COUNT];
    uint64_t detached[CFG_MAX_AGENTS];                    /* coalesced followers cut for lagging */
    uint64_t key_memo[CFG_MAX_AGENTS][CANON_MEMO_COUNT];  /* how keys were found (enum canon_memo) */
} coalm_t;

extern unsigned g_coalm_mod;   /* the block's index in shard_t.mod */

/* The shard's cache metrics, or NULL when metrics are off. */
static inline coalm_t *coalm(const shard_t *sh) { return (coalm_t *)sh->mod[g_coalm_mod]; }

/* Main thread, at start-up, after gwmetrics_register. */
void coalm_register(void);

#endif
