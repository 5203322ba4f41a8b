/* coalesce_metrics: agate_cache_* for cached agents, by agent, and the
 * process-wide counters of the store (core/cache.c). */
#include "net/coalesce_metrics.h"

#include <stdio.h>

#include "core/cache.h"
#include "net/gwmetrics.h"
#include "proto/tier2.h"

unsigned g_coalm_mod;

_Static_assert(COALM_T2_WHY == TIER2_WHY_COUNT, "one counter per reason");

#define SUM(expr) GWM_SUM(sh, n, coalm_t, g_coalm_mod, expr)

static void render_agents(metrics_render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    static const char *const result_names[MC_COUNT] = {"hit", "miss", "coalesced"};
    static const char *const memo_names[CANON_MEMO_COUNT] = {"hit", "miss", "too_large"};
    char lb[CFG_NAME_MAX + 32];
    metrics_family(r, "agate_cache_requests", "counter", "Runs of cached agents, by agent and X-Cache result.");
    for (uint32_t a = 0; a < cfg->n_agents; a++) {
        if (!cfg->agents[a].cache_ttl_ms)
            continue;
        for (int k = 0; k < MC_COUNT; k++) {
            snprintf(lb, sizeof lb, "agent=\"%s\",result=\"%s\"", cfg->agents[a].name, result_names[k]);
            metrics_sample_u(r, "agate_cache_requests", "_total", lb, SUM(m_->results[a][k]));
        }
    }
    metrics_family(r, "agate_cache_followers_detached", "counter", "Coalesced clients cut off for lagging behind the shared run.");
    for (uint32_t a = 0; a < cfg->n_agents; a++) {
        if (!cfg->agents[a].cache_ttl_ms)
            continue;
        snprintf(lb, sizeof lb, "agent=\"%s\"", cfg->agents[a].name);
        metrics_sample_u(r, "agate_cache_followers_detached", "_total", lb, SUM(m_->detached[a]));
    }
    metrics_family(r, "agate_cache_key_memo", "counter",
           "Cache keys computed, by agent and whether the shard's memo of recent keys answered (hit), the key was "
           "hashed and remembered (miss), or the request was over the memo's 16 KiB (too_large).");
    for (uint32_t a = 0; a < cfg->n_agents; a++) {
        if (!cfg->agents[a].cache_ttl_ms)
            continue;
        for (int k = 0; k < CANON_MEMO_COUNT; k++) {
            snprintf(lb, sizeof lb, "agent=\"%s\",result=\"%s\"", cfg->agents[a].name, memo_names[k]);
            metrics_sample_u(r, "agate_cache_key_memo", "_total", lb, SUM(m_->key_memo[a][k]));
        }
    }
}

#define SUM2(expr) GWM_SUM(sh, n, coalm_t, g_coalm_mod, expr)

static void render_t2(metrics_render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    static const char *const lookup_names[T2L_COUNT] = {"hit", "miss", "rejected", "error", "timeout", "down"};
    static const char *const store_names[T2S_COUNT] = {"stored", "too_large", "error", "timeout", "down"};
    static const char *const wait_names[T2W_COUNT] = {"leader", "hit", "timeout", "error"};
    char lb[64];
    bool any = false;
    for (uint32_t a = 0; a < cfg->n_agents; a++)
        any |= cfg->agents[a].cache_ttl_ms && cfg->agents[a].cache_shared;
    if (!any)
        return;
    metrics_family(r, "agate_cache_tier2_lookups", "counter",
                   "Local cache misses looked up in Redis (the shared tier), by result.");
    for (int k = 0; k < T2L_COUNT; k++) {
        snprintf(lb, sizeof lb, "result=\"%s\"", lookup_names[k]);
        metrics_sample_u(r, "agate_cache_tier2_lookups", "_total", lb, SUM2(m_->t2.lookups[k]));
    }
    metrics_family(r, "agate_cache_tier2_rejected", "counter",
                   "Entries read from Redis and refused (served as misses), by why.");
    for (int k = 1; k < TIER2_WHY_COUNT; k++) {
        snprintf(lb, sizeof lb, "why=\"%s\"", tier2_why_name(k));
        metrics_sample_u(r, "agate_cache_tier2_rejected", "_total", lb, SUM2(m_->t2.rejected[k]));
    }
    metrics_family(r, "agate_cache_tier2_stores", "counter",
                   "Finished runs offered to Redis, by result (too_large: over cache.shared_max_bytes).");
    for (int k = 0; k < T2S_COUNT; k++) {
        snprintf(lb, sizeof lb, "result=\"%s\"", store_names[k]);
        metrics_sample_u(r, "agate_cache_tier2_stores", "_total", lb, SUM2(m_->t2.stores[k]));
    }
    metrics_family(r, "agate_cache_tier2_waits", "counter",
                   "Cross-pod coalescing (cache.shared_wait): the lock taken (leader), or another pod's run "
                   "waited for until its entry came (hit), the wait ran out (timeout) or Redis failed (error).");
    for (int k = 0; k < T2W_COUNT; k++) {
        snprintf(lb, sizeof lb, "result=\"%s\"", wait_names[k]);
        metrics_sample_u(r, "agate_cache_tier2_waits", "_total", lb, SUM2(m_->t2.waits[k]));
    }
    metrics_family(r, "agate_cache_tier2_bytes", "counter", "Entry bytes read from and written to Redis.");
    metrics_sample_u(r, "agate_cache_tier2_bytes", "_total", "direction=\"read\"", SUM2(m_->t2.bytes_read));
    metrics_sample_u(r, "agate_cache_tier2_bytes", "_total", "direction=\"written\"", SUM2(m_->t2.bytes_written));
}

static void render(metrics_render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    cache_stats_t cs;
    render_agents(r, sh, n, cfg);
    cache_get_stats(&cs);
    metrics_gauge(r, "agate_cache_bytes", "Bytes held by the response cache (entries and their headers).", (int64_t)cs.bytes);
    metrics_gauge(r, "agate_cache_max_bytes", "The response cache's cap, cache.max_bytes.", (int64_t)cs.max_bytes);
    metrics_gauge(r, "agate_cache_entries", "Runs held by the response cache.", (int64_t)cs.entries);
    metrics_counter(r, "agate_cache_inserts", "Runs stored in the response cache.", cs.inserts);
    metrics_counter(r, "agate_cache_evictions", "Entries evicted to stay under cache.max_bytes (S3-FIFO).", cs.evictions);
    metrics_counter(r, "agate_cache_expirations", "Entries removed because their ttl passed.", cs.expirations);
    metrics_counter(r, "agate_cache_purged", "Entries removed by DELETE /admin/cache.", cs.purged);
    render_t2(r, sh, n, cfg);
}

void coalm_register(void) { g_coalm_mod = gwm_block_register("cache", sizeof(coalm_t), render); }
