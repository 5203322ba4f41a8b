/* metrics: recording helpers, the registry of render functions and the
 * Prometheus / OpenMetrics text renderer, with the loop's and the process's
 * own families.
 *
 * Rendering is the cold path (one scrape every few seconds): it walks every
 * shard's struct, sums, and writes text. Recording is the hot path and lives
 * in the header as single-writer relaxed adds. */
#include "core/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/otlp.h"
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

void metrics_observe_us_slow(metrics_hist_t *h, uint64_t us)
{
    int i = 0;
    while (i < METRICS_TIME_BUCKETS && us > time_bounds_us[i])
        i++;
    metrics_add(&h->bucket[i], 1);
    metrics_add(&h->sum_us, us);
}

static metrics_render_fn g_renders[16];
static unsigned          g_nrenders;

void metrics_register(metrics_render_fn fn)
{
    for (unsigned i = 0; i < g_nrenders; i++)
        if (g_renders[i] == fn)
            return;
    if (g_nrenders < sizeof g_renders / sizeof g_renders[0])
        g_renders[g_nrenders++] = fn;
}

void metrics_family(metrics_render_t *r, const char *name, const char *type, const char *help)
{
    bool counter = !strcmp(type, "counter");
    const char *suffix = counter && !r->om ? "_total" : "";
    char line[512];
    int n = snprintf(line, sizeof line, "# HELP %s%s %s\n# TYPE %s%s %s\n", name, suffix, help, name, suffix, type);
    buf_append(r->b, line, (size_t)n);
}

void metrics_sample_u(metrics_render_t *r, const char *name, const char *suffix, const char *labels, uint64_t v)
{
    char line[512];
    int n = snprintf(line, sizeof line, "%s%s%s%s%s %llu\n", name, suffix, *labels ? "{" : "", labels,
                     *labels ? "}" : "", (unsigned long long)v);
    buf_append(r->b, line, (size_t)n);
}

void metrics_sample_i(metrics_render_t *r, const char *name, const char *labels, int64_t v)
{
    char line[512];
    int n = snprintf(line, sizeof line, "%s%s%s%s %lld\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
                     (long long)v);
    buf_append(r->b, line, (size_t)n);
}

void metrics_sample_f(metrics_render_t *r, const char *name, const char *suffix, const char *labels, double v)
{
    char line[512];
    int n = snprintf(line, sizeof line, "%s%s%s%s%s %.9g\n", name, suffix, *labels ? "{" : "", labels,
                     *labels ? "}" : "", v);
    buf_append(r->b, line, (size_t)n);
}

void metrics_counter(metrics_render_t *r, const char *name, const char *help, uint64_t v)
{
    metrics_family(r, name, "counter", help);
    metrics_sample_u(r, name, "_total", "", v);
}

void metrics_gauge(metrics_render_t *r, const char *name, const char *help, int64_t v)
{
    metrics_family(r, name, "gauge", help);
    metrics_sample_i(r, name, "", v);
}

void metrics_hist(metrics_render_t *r, const char *name, const char *labels, const metrics_hist_t *h)
{
    uint64_t cum = 0;
    char lb[320];   /* labels (< 160: an agent name is < 64) plus le="..." */
    for (int i = 0; i <= METRICS_TIME_BUCKETS; i++) {
        cum += h->bucket[i];
        snprintf(lb, sizeof lb, "%s%sle=\"%s\"", labels, labels[0] ? "," : "",
                 i < METRICS_TIME_BUCKETS ? time_bounds_txt[i] : "+Inf");
        metrics_sample_u(r, name, "_bucket", lb, cum);
    }
    metrics_sample_f(r, name, "_sum", labels, (double)h->sum_us / 1e6);
    metrics_sample_u(r, name, "_count", labels, cum);
}

/* The log writer's and the span exporter's own counters. */
static void render_threads(metrics_render_t *r)
{
    metrics_counter(r, "agate_log_lines_dropped", "Log lines dropped because the log writer fell behind.", log_dropped());
    if (otlp_enabled()) {
        otlp_stats_t st;
        otlp_get_stats(&st);
        metrics_counter(r, "agate_otlp_spans_exported", "Spans accepted by the OTLP collector.", st.exported);
        metrics_counter(r, "agate_otlp_spans_dropped", "Spans dropped: exporter behind, or the collector failed.", st.dropped);
        metrics_counter(r, "agate_otlp_failed_batches", "OTLP export requests that failed.", st.failed_batches);
    }
}

static void render_process(metrics_render_t *r)
{
    if (mallctl) {
        uint64_t epoch = 1;
        size_t sz = sizeof epoch;
        mallctl("epoch", &epoch, &sz, &epoch, sz);   /* refresh jemalloc's cached stats */
        static const char *const kinds[] = {"allocated", "active", "resident", "mapped", "retained"};
        metrics_family(r, "agate_memory_bytes", "gauge", "Heap memory from jemalloc's statistics, by kind.");
        for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
            char key[32], lb[48];
            size_t v = 0, vs = sizeof v;
            snprintf(key, sizeof key, "stats.%s", kinds[i]);
            if (mallctl(key, &v, &vs, NULL, 0))
                continue;
            snprintf(lb, sizeof lb, "kind=\"%s\"", kinds[i]);
            metrics_sample_u(r, "agate_memory_bytes", "", lb, v);
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
        metrics_family(r, "process_cpu_seconds", "counter", "User and system CPU time spent in seconds.");
        metrics_sample_f(r, "process_cpu_seconds", "_total", "", (double)(utime + stime) / hz);
        metrics_family(r, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        metrics_sample_u(r, "process_resident_memory_bytes", "", "", (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE));
        metrics_family(r, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
        metrics_sample_u(r, "process_virtual_memory_bytes", "", "", vsize);
        struct timespec now_rt, now_bt;
        clock_gettime(CLOCK_REALTIME, &now_rt);
        clock_gettime(CLOCK_BOOTTIME, &now_bt);
        double boot = (double)now_rt.tv_sec - (double)now_bt.tv_sec;
        metrics_family(r, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
        metrics_sample_f(r, "process_start_time_seconds", "", "", boot + (double)start / hz);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        uint64_t fds = 0;
        while (readdir(d))
            fds++;
        closedir(d);
        metrics_family(r, "process_open_fds", "gauge", "Number of open file descriptors.");
        metrics_sample_u(r, "process_open_fds", "", "", fds > 3 ? fds - 3 : 0);   /* ".", "..", the DIR's own fd */
    }
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl)) {
        metrics_family(r, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        metrics_sample_u(r, "process_max_fds", "", "", rl.rlim_cur);
    }
}

int metrics_render(buf_t *out, const struct shard *sh, unsigned n, const cfg_t *cfg, bool om)
{
    metrics_render_t r = {out, om};
    metrics_family(&r, "agate_build_info", "gauge", "Build information; always 1.");
    metrics_sample_u(&r, "agate_build_info", "", "version=\"" AGATE_VERSION "\"", 1);
    for (unsigned i = 0; i < g_nrenders; i++)
        g_renders[i](&r, sh, n, cfg);
    render_threads(&r);
    render_process(&r);
    if (om)
        buf_append_lit(r.b, "# EOF\n");
    return out->len && out->data[out->len - 1] == '\n' ? 0 : -ENOMEM;
}
