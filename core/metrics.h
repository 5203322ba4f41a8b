/* metrics: per-shard counters, gauges and histograms, summed at scrape time.
 *
 * Each shard owns one metrics_shard_t and is its only writer. A write is a
 * relaxed atomic load and store of the shard's own word: a plain add on x86, no
 * lock prefix, no cache line shared with another writer. A scrape (on whichever
 * shard serves GET /metrics) reads every shard's words with relaxed loads and
 * sums them; a value may be one event stale, never torn. Label sets are
 * bounded enums and configured agent names: no request ids, users or raw paths. */
#ifndef AGATE_METRICS_H
#define AGATE_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "proto/agui.h"

enum metrics_listener { ML_MAIN, ML_ADMIN, ML_COUNT };
enum metrics_route { MR_NONE, MR_RUN, MR_HEALTH, MR_METRICS, MR_NOT_FOUND, MR_WS, MR_DEMO, MR_ADMIN, MR_COUNT };
enum metrics_method { MM_GET, MM_HEAD, MM_POST, MM_OPTIONS, MM_OTHER, MM_COUNT };
enum metrics_transport { MT_SSE, MT_PROTO, MT_WS, MT_COUNT };   /* proto: SSE's HTTP stream in the protobuf encoding */
enum metrics_outcome { MO_FINISHED, MO_ERROR, MO_CLIENT_CLOSED, MO_CUT, MO_COUNT };
enum metrics_reject {
    MRJ_BAD_REQUEST,        /* malformed HTTP */
    MRJ_INVALID_INPUT,      /* RunAgentInput failed validation */
    MRJ_BODY_TOO_LARGE,
    MRJ_HEADERS_TOO_LARGE,
    MRJ_TIMEOUT,            /* header or body read timeout */
    MRJ_CONNECTION_LIMIT,
    MRJ_EXPECTATION,
    MRJ_UNAUTHORIZED,       /* 401: missing or bad credentials (net/access.c) */
    MRJ_FORBIDDEN,          /* 403: scope missing */
    MRJ_RATE_LIMITED,       /* 429: a rate or concurrency limit */
    MRJ_COUNT
};

enum metrics_cache { MC_HIT, MC_MISS, MC_COALESCED, MC_COUNT };   /* X-Cache of a cached agent's run */

enum metrics_upfail { MUF_CONNECT, MUF_RESET, MUF_TIMEOUT, MUF_STATUS, MUF_CONTENT_TYPE, MUF_PROTOCOL, MUF_COUNT };

#define METRICS_TIME_BUCKETS 18
#define METRICS_TIME_FIRST_US 500   /* the first bucket's bound (le="0.0005") */
#define METRICS_BATCH_BUCKETS 10
#define METRICS_MEMO_RESULTS  3   /* enum canon_memo: hit, miss, too_large */

typedef struct metrics_hist {
    uint64_t bucket[METRICS_TIME_BUCKETS + 1];   /* per bucket (not cumulative); last is +Inf */
    uint64_t sum_us;
} metrics_hist_t;

typedef struct metrics_shard {
    uint64_t requests[ML_COUNT][MR_COUNT][MM_COUNT][5];   /* by status class 1xx..5xx */
    uint64_t rejected[MRJ_COUNT];
    uint64_t runs_started[CFG_MAX_AGENTS][MT_COUNT];
    uint64_t runs_ended[CFG_MAX_AGENTS][MT_COUNT][MO_COUNT];
    uint64_t events[AGUI_TYPE_COUNT];
    metrics_hist_t first_event[CFG_MAX_AGENTS];
    metrics_hist_t duration[CFG_MAX_AGENTS];
    metrics_hist_t gap[CFG_MAX_AGENTS];
    int64_t  connections[ML_COUNT];                       /* gauges */
    int64_t  streams[MT_COUNT];
    int64_t  ws_connections;                              /* gauge: upgraded connections */
    uint64_t ws_messages[2], ws_bytes[2];                 /* WebSocket frames/bytes: [0] in, [1] out */
    uint64_t bytes_in, bytes_out;
    uint64_t conn_trims;                                  /* idle keep-alive connections that gave back their buffers */
    uint64_t up_attempts[CFG_MAX_AGENTS][CFG_MAX_ENDPOINTS];
    uint64_t up_failures[CFG_MAX_AGENTS][CFG_MAX_ENDPOINTS][MUF_COUNT];
    uint64_t up_retries[CFG_MAX_AGENTS];
    int64_t  up_breaker_open[CFG_MAX_AGENTS][CFG_MAX_ENDPOINTS];   /* 1 while this shard's breaker is open */
    uint64_t cache_results[CFG_MAX_AGENTS][MC_COUNT];
    uint64_t cache_detached[CFG_MAX_AGENTS];              /* coalesced followers cut for lagging */
    uint64_t cache_key_memo[CFG_MAX_AGENTS][METRICS_MEMO_RESULTS];   /* how keys were found (enum canon_memo) */
    uint64_t loop_iterations, busy_ns, sqes_submitted;
    uint64_t sqes_per_loop[METRICS_BATCH_BUCKETS + 1];
    metrics_hist_t loop_turn;                             /* working time of one loop turn */
} metrics_shard_t;

static inline void metrics_add(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}
static inline void metrics_gauge_add(int64_t *p, int64_t v)
{
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

void metrics_observe_us_slow(metrics_hist_t *h, uint64_t us);
/* Inline for the first bucket: the gaps between the events of one burst (one
 * upstream read, one echo run) are 0, and there is one per event. */
static inline void metrics_observe_us(metrics_hist_t *h, uint64_t us)
{
    if (__builtin_expect(us <= METRICS_TIME_FIRST_US, 1)) {
        metrics_add(&h->bucket[0], 1);
        metrics_add(&h->sum_us, us);
    } else {
        metrics_observe_us_slow(h, us);
    }
}
void metrics_observe_batch(metrics_shard_t *m, uint64_t sqes);

enum metrics_method metrics_method_of(int llhttp_method);

struct shard;
/* Renders every shard's metrics, summed, plus process metrics. openmetrics selects
 * OpenMetrics 1.0 text instead of Prometheus text 0.0.4. 0 or -ENOMEM. */
int metrics_render(buf_t *out, const struct shard *shards, unsigned n, const cfg_t *cfg, bool openmetrics);

#endif
