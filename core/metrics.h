/* metrics: per-shard counters, gauges and histograms, summed at scrape time.
 *
 * Each shard owns its modules' metrics structs and is their only writer. A write is a
 * relaxed atomic load and store of the shard's own word: a plain add on x86, no
 * lock prefix, no cache line shared with another writer. A scrape (on whichever
 * shard serves GET /metrics) reads every shard's words with relaxed loads and
 * sums them; a value may be one event stale, never torn. Label sets are
 * bounded enums and configured agent names: no request ids, users or raw paths.
 *
 * This module is the registry and the text format; each module that counts
 * something keeps its own per-shard struct and registers a render function
 * (net/gwmetrics.c for the gateway's HTTP, runs, upstreams and cache). */
#ifndef AGATE_METRICS_H
#define AGATE_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"

#define METRICS_TIME_BUCKETS 18
#define METRICS_TIME_FIRST_US 500   /* the first bucket's bound (le="0.0005") */

typedef struct metrics_hist {
    uint64_t bucket[METRICS_TIME_BUCKETS + 1];   /* per bucket (not cumulative); last is +Inf */
    uint64_t sum_us;
} metrics_hist_t;


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

static inline uint64_t metrics_rd(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline int64_t metrics_rdi(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

/* Adds h (another shard's, read with relaxed loads) into acc. */
static inline void metrics_hist_add(metrics_hist_t *acc, const metrics_hist_t *h)
{
    for (int i = 0; i <= METRICS_TIME_BUCKETS; i++)
        acc->bucket[i] += metrics_rd(&h->bucket[i]);
    acc->sum_us += metrics_rd(&h->sum_us);
}

/* ---- rendering (cold: one scrape every few seconds) ---- */

typedef struct metrics_render {
    buf_t *b;
    bool   om;        /* OpenMetrics: counter families are named without _total */
} metrics_render_t;

void metrics_family(metrics_render_t *r, const char *name, const char *type, const char *help);
/* One sample line; labels is "" or `a="x",b="y"`. */
void metrics_sample_u(metrics_render_t *r, const char *name, const char *suffix, const char *labels, uint64_t v);
void metrics_sample_i(metrics_render_t *r, const char *name, const char *labels, int64_t v);
void metrics_sample_f(metrics_render_t *r, const char *name, const char *suffix, const char *labels, double v);
/* A family of one unlabelled sample: a counter (named _total in Prometheus
 * text) or a gauge. */
void metrics_counter(metrics_render_t *r, const char *name, const char *help, uint64_t v);
void metrics_gauge(metrics_render_t *r, const char *name, const char *help, int64_t v);
/* A latency histogram's samples (buckets, sum, count), h summed over shards. */
void metrics_hist(metrics_render_t *r, const char *name, const char *labels, const metrics_hist_t *h);

struct shard;
/* A module's families, rendered from every shard's state after the build
 * information and before the loop's and the process's own families. */
typedef void (*metrics_render_fn)(metrics_render_t *r, const struct shard *shards, unsigned n, const cfg_t *cfg);
/* Main thread, at start-up; in registration order. */
void metrics_register(metrics_render_fn fn);

/* Renders every shard's metrics, summed, plus process metrics. openmetrics selects
 * OpenMetrics 1.0 text instead of Prometheus text 0.0.4. 0 or -ENOMEM. */
int metrics_render(buf_t *out, const struct shard *shards, unsigned n, const cfg_t *cfg, bool openmetrics);

#endif
