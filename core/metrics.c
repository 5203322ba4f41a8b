/* metrics: recording helpers and the Prometheus / OpenMetrics text renderer.
 *
 * Rendering is the cold path (one scrape every few seconds): it walks every
 * shard's struct, sums, and writes text. Recording is the hot path and lives
 * in the header as single-writer relaxed adds. */
#include "core/metrics.h"

#include <dirent.h>
#include <llhttp.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/cache.h"
#include "core/log.h"
#include "net/access.h"
#include "core/otlp.h"
#include "core/shard.h"
#include "core/version.h"

/* jemalloc's control interface; absent (NULL) in the sanitizer build, which uses
 * libc malloc so ASan sees every allocation. */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen) __attribute__((weak));

static const uint64_t time_bounds_us[METRICS_TIME_BUCKETS] = {
    METRICS_TIME_FIRST_US, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000, 30000000, 60000000, 300000000, 1800000000,
};
static const char *const time_bounds_txt[METRICS_TIME_BUCKETS] = {
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
    "1", "2.5", "5", "10", "30", "60", "300", "1800",
};
static const uint64_t batch_bounds[METRICS_BATCH_BUCKETS] = {0, 1, 2, 4, 8, 16, 32, 64, 128, 256};

static const char *const listener_names[ML_COUNT] = {"main", "admin"};
static const char *const route_names[MR_COUNT] = {"none", "run", "health", "metrics", "not_found", "ws", "demo", "admin"};
static const char *const method_names[MM_COUNT] = {"GET", "HEAD", "POST", "OPTIONS", "OTHER"};
static const char *const transport_names[MT_COUNT] = {[MT_SSE] = "sse", [MT_PROTO] = "proto", [MT_WS] = "ws"};
static const char *const outcome_names[MO_COUNT] = {"finished", "error", "client_closed", "cut"};
static const char *const reject_names[MRJ_COUNT] = {
    "bad_request", "invalid_input", "body_too_large", "headers_too_large",
    "timeout", "connection_limit", "expectation", "unauthorized", "forbidden", "rate_limited",
};

void metrics_observe_us_slow(metrics_hist_t *h, uint64_t us)
{
    int i = 0;
    while (i < METRICS_TIME_BUCKETS && us > time_bounds_us[i])
        i++;
    metrics_add(&h->bucket[i], 1);
    metrics_add(&h->sum_us, us);
}

void metrics_observe_batch(metrics_shard_t *m, uint64_t sqes)
{
    int i = 0;
    while (i < METRICS_BATCH_BUCKETS && sqes > batch_bounds[i])
        i++;
    metrics_add(&m->sqes_per_loop[i], 1);
    metrics_add(&m->sqes_submitted, sqes);
}

enum metrics_method metrics_method_of(int method)
{
    switch (method) {
    case HTTP_GET: return MM_GET;
    case HTTP_HEAD: return MM_HEAD;
    case HTTP_POST: return MM_POST;
    case HTTP_OPTIONS: return MM_OPTIONS;
    default: return MM_OTHER;
    }
}

static inline uint64_t rd(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline int64_t rdi(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

typedef struct render {
    buf_t *b;
    bool   om;        /* OpenMetrics: counter families are named without _total */
} render_t;

static void put(render_t *r, const char *s) { buf_append(r->b, s, strlen(s)); }

static void family(render_t *r, const char *name, const char *type, const char *help)
{
    bool counter = !strcmp(type, "counter");
    const char *suffix = counter && !r->om ? "_total" : "";
    char line[512];
    int n = snprintf(line, sizeof line, "# HELP %s%s %s\n# TYPE %s%s %s\n", name, suffix, help, name, suffix, type);
    buf_append(r->b, line, (size_t)n);
}

/* One sample line; labels is "" or `a="x",b="y"`. */
static void sample_u(render_t *r, const char *name, const char *suffix, const char *labels, uint64_t v)
{
    char line[512];
    int n = snprintf(line, sizeof line, "%s%s%s%s%s %llu\n", name, suffix, *labels ? "{" : "", labels,
                     *labels ? "}" : "", (unsigned long long)v);
    buf_append(r->b, line, (size_t)n);
}

static void sample_i(render_t *r, const char *name, const char *labels, int64_t v)
{
    char line[512];
    int n = snprintf(line, sizeof line, "%s%s%s%s %lld\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
                     (long long)v);
    buf_append(r->b, line, (size_t)n);
}

static void sample_f(render_t *r, const char *name, const char *suffix, const char *labels, double v)
{
    char line[512];
    int n = snprintf(line, sizeof line, "%s%s%s%s%s %.9g\n", name, suffix, *labels ? "{" : "", labels,
                     *labels ? "}" : "", v);
    buf_append(r->b, line, (size_t)n);
}

/* A latency histogram, summed over shards; `field` is the offset of one agent's
 * metrics_hist_t inside metrics_shard_t. */
static void hist_time(render_t *r, const char *name, const char *labels, const shard_t *sh, unsigned n,
                      size_t field)
{
    uint64_t cum = 0, sum_us = 0;
    char lb[320];   /* labels (< 160: an agent name is < 64) plus le="..." */
    for (int i = 0; i <= METRICS_TIME_BUCKETS; i++) {
        for (unsigned s = 0; s < n; s++)
            cum += rd(&((const metrics_hist_t *)((const char *)&sh[s].metrics + field))->bucket[i]);
        snprintf(lb, sizeof lb, "%s%sle=\"%s\"", labels, labels[0] ? "," : "",
                 i < METRICS_TIME_BUCKETS ? time_bounds_txt[i] : "+Inf");
        sample_u(r, name, "_bucket", lb, cum);
    }
    for (unsigned s = 0; s < n; s++)
        sum_us += rd(&((const metrics_hist_t *)((const char *)&sh[s].metrics + field))->sum_us);
    sample_f(r, name, "_sum", labels, (double)sum_us / 1e6);
    sample_u(r, name, "_count", labels, cum);
}

/* One gauge sample with one label, summed over shards; `field` is the gauge's
 * offset inside metrics_shard_t. */
static void gauge_sum(render_t *r, const char *name, const char *label, const char *value, const shard_t *sh,
                      unsigned n, size_t field)
{
    char lb[128];
    int64_t v = 0;
    for (unsigned s = 0; s < n; s++)
        v += rdi((const int64_t *)((const char *)&sh[s].metrics + field));
    snprintf(lb, sizeof lb, "%s=\"%s\"", label, value);
    sample_i(r, name, lb, v);
}

#define SUM(expr)                                   \
    ({                                              \
        uint64_t acc_ = 0;                          \
        for (unsigned s_ = 0; s_ < n; s_++) {       \
            const metrics_shard_t *m_ = &sh[s_].metrics; \
            acc_ += rd(&(expr));                    \
        }                                           \
        acc_;                                       \
    })

static void render_http(render_t *r, const shard_t *sh, unsigned n)
{
    char lb[256];
    family(r, "agate_http_requests", "counter", "HTTP requests answered, by listener, route, method and status class.");
    for (int l = 0; l < ML_COUNT; l++)
        for (int rt = 0; rt < MR_COUNT; rt++)
            for (int me = 0; me < MM_COUNT; me++)
                for (int c = 0; c < 5; c++) {
                    uint64_t v = SUM(m_->requests[l][rt][me][c]);
                    if (!v && !(rt == MR_RUN && me == MM_POST && c == 1 && l == ML_MAIN))
                        continue;   /* keep the series set small; one always-present series */
                    snprintf(lb, sizeof lb, "listener=\"%s\",route=\"%s\",method=\"%s\",code=\"%dxx\"",
                             listener_names[l], route_names[rt], method_names[me], c + 1);
                    sample_u(r, "agate_http_requests", "_total", lb, v);
                }
    family(r, "agate_http_rejected_requests", "counter", "Requests refused before reaching an agent, by reason.");
    for (int i = 0; i < MRJ_COUNT; i++) {
        snprintf(lb, sizeof lb, "reason=\"%s\"", reject_names[i]);
        sample_u(r, "agate_http_rejected_requests", "_total", lb, SUM(m_->rejected[i]));
    }
    family(r, "agate_connections", "gauge", "Open client connections, by listener.");
    for (int l = 0; l < ML_COUNT; l++)
        gauge_sum(r, "agate_connections", "listener", listener_names[l], sh, n,
                  offsetof(metrics_shard_t, connections) + (size_t)l * sizeof(int64_t));
    family(r, "agate_connection_trims", "counter", "Idle keep-alive connections that gave their buffers back.");
    sample_u(r, "agate_connection_trims", "_total", "", SUM(m_->conn_trims));
    family(r, "agate_received_bytes", "counter", "Bytes received from clients.");
    sample_u(r, "agate_received_bytes", "_total", "", SUM(m_->bytes_in));
    family(r, "agate_sent_bytes", "counter", "Bytes sent to clients.");
    sample_u(r, "agate_sent_bytes", "_total", "", SUM(m_->bytes_out));
    family(r, "agate_ws_connections", "gauge", "Open WebSocket connections.");
    gauge_sum(r, "agate_ws_connections", "listener", "main", sh, n, offsetof(metrics_shard_t, ws_connections));
    family(r, "agate_ws_frames", "counter", "WebSocket frames (data messages and control frames), by direction.");
    sample_u(r, "agate_ws_frames", "_total", "direction=\"in\"", SUM(m_->ws_messages[0]));
    sample_u(r, "agate_ws_frames", "_total", "direction=\"out\"", SUM(m_->ws_messages[1]));
    family(r, "agate_ws_bytes", "counter", "WebSocket bytes on the wire after the upgrade, by direction.");
    sample_u(r, "agate_ws_bytes", "_total", "direction=\"in\"", SUM(m_->ws_bytes[0]));
    sample_u(r, "agate_ws_bytes", "_total", "direction=\"out\"", SUM(m_->ws_bytes[1]));
}

static void render_runs(render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    char lb[256];
    family(r, "agate_runs_started", "counter", "Agent runs started, by agent and transport.");
    for (uint32_t a = 0; a < cfg->n_agents; a++)
        for (int t = 0; t < MT_COUNT; t++) {
            snprintf(lb, sizeof lb, "agent=\"%s\",transport=\"%s\"", cfg->agents[a].name, transport_names[t]);
            sample_u(r, "agate_runs_started", "_total", lb, SUM(m_->runs_started[a][t]));
        }
    family(r, "agate_runs_ended", "counter",
           "Agent runs ended, by agent, transport and outcome (finished, error, client_closed, cut).");
    for (uint32_t a = 0; a < cfg->n_agents; a++)
        for (int t = 0; t < MT_COUNT; t++)
            for (int o = 0; o < MO_COUNT; o++) {
                snprintf(lb, sizeof lb, "agent=\"%s\",transport=\"%s\",outcome=\"%s\"", cfg->agents[a].name,
                         transport_names[t], outcome_names[o]);
                sample_u(r, "agate_runs_ended", "_total", lb, SUM(m_->runs_ended[a][t][o]));
            }
    family(r, "agate_streams", "gauge", "Event streams in progress, by transport.");
    for (int t = 0; t < MT_COUNT; t++)
        gauge_sum(r, "agate_streams", "transport", transport_names[t], sh, n,
                  offsetof(metrics_shard_t, streams) + (size_t)t * sizeof(int64_t));
    family(r, "agate_events_sent", "counter", "AG-UI events sent to clients, by event type.");
    for (int t = 0; t < AGUI_TYPE_COUNT; t++) {
        snprintf(lb, sizeof lb, "type=\"%s\"", agui_type_name((agui_type_t)t));
        sample_u(r, "agate_events_sent", "_total", lb, SUM(m_->events[t]));
    }
    static const struct {
        const char *name, *help;
        size_t      off;
    } hists[] = {
        {"agate_run_first_event_seconds", "Time from request to the run's first event.", offsetof(metrics_shard_t, first_event)},
        {"agate_run_duration_seconds", "Time from request to the run's last byte queued.", offsetof(metrics_shard_t, duration)},
        {"agate_run_event_gap_seconds", "Time between consecutive events of a run.", offsetof(metrics_shard_t, gap)},
    };
    for (size_t h = 0; h < sizeof hists / sizeof hists[0]; h++) {
        family(r, hists[h].name, "histogram", hists[h].help);
        for (uint32_t a = 0; a < cfg->n_agents; a++) {
            snprintf(lb, sizeof lb, "agent=\"%s\"", cfg->agents[a].name);
            hist_time(r, hists[h].name, lb, sh, n, hists[h].off + a * sizeof(metrics_hist_t));
        }
    }
}

static const char *const upfail_names[MUF_COUNT] = {"connect", "reset", "timeout", "status", "content_type", "protocol"};

static void render_upstreams(render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    char lb[320];
    bool any = false;
    for (uint32_t a = 0; a < cfg->n_agents; a++)
        any |= cfg->agents[a].kind == CFG_AGENT_PROXY;
    if (!any)
        return;
#define FOR_ENDPOINTS                                                                      \
    for (uint32_t a = 0; a < cfg->n_agents; a++)                                           \
        for (uint32_t e = 0; e < (cfg->agents[a].kind == CFG_AGENT_PROXY ? cfg->agents[a].n_endpoints : 0); e++)
#define EP_LABELS(extra_fmt, ...)                                                          \
    snprintf(lb, sizeof lb, "agent=\"%s\",endpoint=\"%s:%u\"" extra_fmt, cfg->agents[a].name,   \
             cfg->agents[a].endpoints[e].host, cfg->agents[a].endpoints[e].port, ##__VA_ARGS__)
    family(r, "agate_upstream_attempts", "counter", "Requests sent to upstream agents, by agent and endpoint.");
    FOR_ENDPOINTS {
        EP_LABELS("");
        sample_u(r, "agate_upstream_attempts", "_total", lb, SUM(m_->up_attempts[a][e]));
    }
    family(r, "agate_upstream_failures", "counter", "Failed upstream attempts, by agent, endpoint and kind.");
    FOR_ENDPOINTS {
        for (int k = 0; k < MUF_COUNT; k++) {
            EP_LABELS(",kind=\"%s\"", upfail_names[k]);
            sample_u(r, "agate_upstream_failures", "_total", lb, SUM(m_->up_failures[a][e][k]));
        }
    }
    family(r, "agate_upstream_breaker_open", "gauge", "Shards on which the endpoint's circuit breaker is open.");
    FOR_ENDPOINTS {
        EP_LABELS("");
        int64_t v = 0;
        for (unsigned s = 0; s < n; s++)
            v += rdi(&sh[s].metrics.up_breaker_open[a][e]);
        sample_i(r, "agate_upstream_breaker_open", lb, v);
    }
#undef EP_LABELS
#undef FOR_ENDPOINTS
    family(r, "agate_upstream_retries", "counter", "Upstream attempts retried on another endpoint, by agent.");
    for (uint32_t a = 0; a < cfg->n_agents; a++) {
        if (cfg->agents[a].kind != CFG_AGENT_PROXY)
            continue;
        snprintf(lb, sizeof lb, "agent=\"%s\"", cfg->agents[a].name);
        sample_u(r, "agate_upstream_retries", "_total", lb, SUM(m_->up_retries[a]));
    }
}

/* The response cache: per-agent results from the shards, the store's own
 * process-wide counters from core/cache.c. */
static void render_cache(render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    static const char *const result_names[MC_COUNT] = {"hit", "miss", "coalesced"};
    char lb[CFG_NAME_MAX + 32];
    cache_stats_t cs;
    family(r, "agate_cache_requests", "counter", "Runs of cached agents, by agent and X-Cache result.");
    for (uint32_t a = 0; a < cfg->n_agents; a++) {
        if (!cfg->agents[a].cache_ttl_ms)
            continue;
        for (int k = 0; k < MC_COUNT; k++) {
            snprintf(lb, sizeof lb, "agent=\"%s\",result=\"%s\"", cfg->agents[a].name, result_names[k]);
            sample_u(r, "agate_cache_requests", "_total", lb, SUM(m_->cache_results[a][k]));
        }
    }
    family(r, "agate_cache_followers_detached", "counter", "Coalesced clients cut off for lagging behind the shared run.");
    for (uint32_t a = 0; a < cfg->n_agents; a++) {
        if (!cfg->agents[a].cache_ttl_ms)
            continue;
        snprintf(lb, sizeof lb, "agent=\"%s\"", cfg->agents[a].name);
        sample_u(r, "agate_cache_followers_detached", "_total", lb, SUM(m_->cache_detached[a]));
    }
    static const char *const memo_names[METRICS_MEMO_RESULTS] = {"hit", "miss", "too_large"};
    family(r, "agate_cache_key_memo", "counter",
           "Cache keys computed, by agent and whether the shard's memo of recent keys answered (hit), the key was "
           "hashed and remembered (miss), or the request was over the memo's 16 KiB (too_large).");
    for (uint32_t a = 0; a < cfg->n_agents; a++) {
        if (!cfg->agents[a].cache_ttl_ms)
            continue;
        for (int k = 0; k < METRICS_MEMO_RESULTS; k++) {
            snprintf(lb, sizeof lb, "agent=\"%s\",result=\"%s\"", cfg->agents[a].name, memo_names[k]);
            sample_u(r, "agate_cache_key_memo", "_total", lb, SUM(m_->cache_key_memo[a][k]));
        }
    }
    cache_get_stats(&cs);
    family(r, "agate_cache_bytes", "gauge", "Bytes held by the response cache (entries and their headers).");
    sample_i(r, "agate_cache_bytes", "", (int64_t)cs.bytes);
    family(r, "agate_cache_max_bytes", "gauge", "The response cache's cap, cache.max_bytes.");
    sample_i(r, "agate_cache_max_bytes", "", (int64_t)cs.max_bytes);
    family(r, "agate_cache_entries", "gauge", "Runs held by the response cache.");
    sample_i(r, "agate_cache_entries", "", (int64_t)cs.entries);
    family(r, "agate_cache_inserts", "counter", "Runs stored in the response cache.");
    sample_u(r, "agate_cache_inserts", "_total", "", cs.inserts);
    family(r, "agate_cache_evictions", "counter", "Entries evicted to stay under cache.max_bytes (S3-FIFO).");
    sample_u(r, "agate_cache_evictions", "_total", "", cs.evictions);
    family(r, "agate_cache_expirations", "counter", "Entries removed because their ttl passed.");
    sample_u(r, "agate_cache_expirations", "_total", "", cs.expirations);
    family(r, "agate_cache_purged", "counter", "Entries removed by DELETE /admin/cache.");
    sample_u(r, "agate_cache_purged", "_total", "", cs.purged);
}

/* The shared rate-limit table (net/access.c): its size, cells in use (a scan),
 * cells taken over from idle keys, and lookups that found no cell (allowed). */
static void render_ratelimit(render_t *r)
{
    uint64_t cap, used, evictions, full;
    access_table_stats(&cap, &used, &evictions, &full);
    family(r, "agate_ratelimit_cells", "gauge", "Rate-limit table cells, by state (capacity, used).");
    sample_u(r, "agate_ratelimit_cells", "", "state=\"capacity\"", cap);
    sample_u(r, "agate_ratelimit_cells", "", "state=\"used\"", used);
    family(r, "agate_ratelimit_evictions", "counter", "Rate-limit cells taken over from an idle key.");
    sample_u(r, "agate_ratelimit_evictions", "_total", "", evictions);
    family(r, "agate_ratelimit_table_full", "counter", "Rate-limit lookups that found no free cell (allowed, not counted against a limit).");
    sample_u(r, "agate_ratelimit_table_full", "_total", "", full);
}

static void render_engine(render_t *r, const shard_t *sh, unsigned n)
{
    char lb[64];
    family(r, "agate_shard_busy_seconds", "counter", "Time each shard's loop spent working rather than waiting for I/O.");
    for (unsigned s = 0; s < n; s++) {
        snprintf(lb, sizeof lb, "shard=\"%u\"", s);
        sample_f(r, "agate_shard_busy_seconds", "_total", lb, (double)rd(&sh[s].metrics.busy_ns) / 1e9);
    }
    family(r, "agate_shard_loop_iterations", "counter", "Event loop turns, per shard.");
    for (unsigned s = 0; s < n; s++) {
        snprintf(lb, sizeof lb, "shard=\"%u\"", s);
        sample_u(r, "agate_shard_loop_iterations", "_total", lb, rd(&sh[s].metrics.loop_iterations));
    }
    family(r, "agate_shard_loop_turn_seconds", "histogram",
           "Time one event loop turn spent working (completions, timers, flushes), all shards; a long turn delays "
           "every connection of its shard.");
    hist_time(r, "agate_shard_loop_turn_seconds", "", sh, n, offsetof(metrics_shard_t, loop_turn));
    family(r, "agate_uring_sqes_per_loop", "histogram", "io_uring submission queue entries submitted per loop turn.");
    uint64_t cum = 0;
    for (int i = 0; i <= METRICS_BATCH_BUCKETS; i++) {
        cum += SUM(m_->sqes_per_loop[i]);
        if (i < METRICS_BATCH_BUCKETS)
            snprintf(lb, sizeof lb, "le=\"%llu\"", (unsigned long long)batch_bounds[i]);
        else
            snprintf(lb, sizeof lb, "le=\"+Inf\"");
        sample_u(r, "agate_uring_sqes_per_loop", "_bucket", lb, cum);
    }
    sample_u(r, "agate_uring_sqes_per_loop", "_sum", "", SUM(m_->sqes_submitted));
    sample_u(r, "agate_uring_sqes_per_loop", "_count", "", cum);
    family(r, "agate_log_lines_dropped", "counter", "Log lines dropped because the log writer fell behind.");
    sample_u(r, "agate_log_lines_dropped", "_total", "", log_dropped());
    if (otlp_enabled()) {
        otlp_stats_t st;
        otlp_get_stats(&st);
        family(r, "agate_otlp_spans_exported", "counter", "Spans accepted by the OTLP collector.");
        sample_u(r, "agate_otlp_spans_exported", "_total", "", st.exported);
        family(r, "agate_otlp_spans_dropped", "counter", "Spans dropped: exporter behind, or the collector failed.");
        sample_u(r, "agate_otlp_spans_dropped", "_total", "", st.dropped);
        family(r, "agate_otlp_failed_batches", "counter", "OTLP export requests that failed.");
        sample_u(r, "agate_otlp_failed_batches", "_total", "", st.failed_batches);
    }
}

static void render_process(render_t *r)
{
    if (mallctl) {
        uint64_t epoch = 1;
        size_t sz = sizeof epoch;
        mallctl("epoch", &epoch, &sz, &epoch, sz);   /* refresh jemalloc's cached stats */
        static const char *const kinds[] = {"allocated", "active", "resident", "mapped", "retained"};
        family(r, "agate_memory_bytes", "gauge", "Heap memory from jemalloc's statistics, by kind.");
        for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
            char key[32], lb[48];
            size_t v = 0, vs = sizeof v;
            snprintf(key, sizeof key, "stats.%s", kinds[i]);
            if (mallctl(key, &v, &vs, NULL, 0))
                continue;
            snprintf(lb, sizeof lb, "kind=\"%s\"", kinds[i]);
            sample_u(r, "agate_memory_bytes", "", lb, v);
        }
    }
    /* The standard process_* metrics, from /proc/self/stat. */
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        unsigned long utime = 0, stime = 0, vsize = 0;
        unsigned long long start = 0;
        long rss = 0;
        char buf[1024];
        if (fgets(buf, sizeof buf, f)) {
            const char *p = strrchr(buf, ')');   /* the command name may contain spaces */
            if (p)
                sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %llu %lu %ld",
                       &utime, &stime, &start, &vsize, &rss);
        }
        fclose(f);
        double hz = (double)sysconf(_SC_CLK_TCK);
        family(r, "process_cpu_seconds", "counter", "User and system CPU time spent in seconds.");
        sample_f(r, "process_cpu_seconds", "_total", "", (double)(utime + stime) / hz);
        family(r, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        sample_u(r, "process_resident_memory_bytes", "", "", (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE));
        family(r, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
        sample_u(r, "process_virtual_memory_bytes", "", "", vsize);
        struct timespec now_rt, now_bt;
        clock_gettime(CLOCK_REALTIME, &now_rt);
        clock_gettime(CLOCK_BOOTTIME, &now_bt);
        double boot = (double)now_rt.tv_sec - (double)now_bt.tv_sec;
        family(r, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
        sample_f(r, "process_start_time_seconds", "", "", boot + (double)start / hz);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        uint64_t fds = 0;
        while (readdir(d))
            fds++;
        closedir(d);
        family(r, "process_open_fds", "gauge", "Number of open file descriptors.");
        sample_u(r, "process_open_fds", "", "", fds > 3 ? fds - 3 : 0);   /* ".", "..", the DIR's own fd */
    }
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl)) {
        family(r, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        sample_u(r, "process_max_fds", "", "", rl.rlim_cur);
    }
}

int metrics_render(buf_t *out, const shard_t *sh, unsigned n, const cfg_t *cfg, bool om)
{
    render_t r = {out, om};
    family(&r, "agate_build_info", "gauge", "Build information; always 1.");
    sample_u(&r, "agate_build_info", "", "version=\"" AGATE_VERSION "\"", 1);
    family(&r, "agate_draining", "gauge", "1 once a graceful shutdown has begun.");
    sample_u(&r, "agate_draining", "", "", atomic_load_explicit(&g_agate_draining, memory_order_relaxed));
    render_http(&r, sh, n);
    render_runs(&r, sh, n, cfg);
    render_upstreams(&r, sh, n, cfg);
    render_cache(&r, sh, n, cfg);
    render_ratelimit(&r);
    render_engine(&r, sh, n);
    render_process(&r);
    if (om)
        put(&r, "# EOF\n");
    return out->len && out->data[out->len - 1] == '\n' ? 0 : -ENOMEM;
}
