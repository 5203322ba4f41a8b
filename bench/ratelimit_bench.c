/* ratelimit_bench: what one limiter decision costs (core/ratelimit.c), alone:
 * no HTTP, no policy. `make build/ratelimit_bench && build/ratelimit_bench`
 * (also run by bench/run.sh before the wrk cases).
 *
 * Rows (ns per decision, best of 5 rounds):
 *   hot key, 1 thread       one key, GCRA take (hash + probe + CAS), never refused
 *   10k keys, 1 thread      keys round-robin over 10 000 clients (cache misses)
 *   refused, 1 thread       one key over its rate: the refusal path (no write)
 *   conc take+release       a concurrency slot taken and given back
 *   hot key, N threads      N threads on ONE key: every decision is a CAS on the
 *                           same cache line (the worst case: a global rule)
 *   own keys, N threads     N threads, each its own keys (per-client rules)
 *   hot key leased, N threads  the hot-key row with the lease agate gives a rate
 *                           this high (rl_lease_for): one CAS per lease, not per decision
 *   conc leased, N threads  take+release on one concurrency key with a cap of 1M,
 *                           leased (rl_conc_lease_for): spares stay on the thread
 * N = online CPUs (at least 2). On a shared machine numbers are an upper bound. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/ratelimit.h"

#define OPS 2000000

static rl_table_t T;
static rl_rate_t R_open, R_tight, R_leased;
static uint32_t C_lease;
static uint64_t keys[10000];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct { int mode; int tid; uint64_t allowed; } arg_t;

static void *worker(void *p)
{
    arg_t *a = p;
    rl_hold_t h;
    uint64_t ok = 0;
    for (int i = 0; i < OPS; i++) {
        uint64_t now = rl_now_ns();
        switch (a->mode) {
        case 0: ok += rl_rate_take(&T, keys[0], &R_open, now, &h).allowed; break;
        case 1: ok += rl_rate_take(&T, keys[i % 10000], &R_open, now, &h).allowed; break;
        case 2: ok += rl_rate_take(&T, keys[1], &R_tight, now, &h).allowed; break;
        case 3:
            ok += rl_conc_take(&T, keys[2] | 1, 1000000, &h).allowed;
            rl_release(&T, &h);
            break;
        case 4: ok += rl_rate_take(&T, keys[(a->tid * 1000 + i % 1000) % 10000], &R_open, now, &h).allowed; break;
        case 5: ok += rl_rate_take(&T, keys[3], &R_leased, now, &h).allowed; break;
        case 6:
            ok += rl_conc_take_leased(&T, keys[4] | 1, 1000000, C_lease, &h).allowed;
            rl_release(&T, &h);
            break;
        }
    }
    a->allowed = ok;
    return NULL;
}

static double run(int mode, int threads)
{
    double best = 1e9;
    for (int round = 0; round < 5; round++) {
        pthread_t th[64];
        arg_t a[64];
        double t0 = now_s();
        for (int i = 0; i < threads; i++) {
            a[i] = (arg_t){.mode = mode, .tid = i};
            pthread_create(&th[i], NULL, worker, &a[i]);
        }
        for (int i = 0; i < threads; i++)
            pthread_join(th[i], NULL);
        double ns = (now_s() - t0) * 1e9 / ((double)OPS * threads);   /* wall time per decision, all threads */
        best = ns < best ? ns : best;
    }
    return best;
}

int main(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cpus < 2 ? 2 : cpus > 64 ? 64 : (int)cpus;
    if (rl_table_init(&T, 1 << 16))
        return 1;
    for (int i = 0; i < 10000; i++) {
        char k[16];
        int l = snprintf(k, sizeof k, "client-%d", i);
        keys[i] = rl_key(42, 0, k, (size_t)l, false);
    }
    R_open = (rl_rate_t){.interval_ns = 1, .burst_ns = UINT64_C(1) << 40};   /* never refuses */
    R_tight = (rl_rate_t){.interval_ns = 1000000000, .burst_ns = 1000000000}; /* 1/s */
    R_leased = R_open;
    R_leased.lease = rl_lease_for(&R_leased, (unsigned)n);
    C_lease = rl_conc_lease_for(1000000, (unsigned)n);
    printf("ratelimit_bench: ns per decision (best of 5 x %d ops per thread)\n", OPS);
    printf("  %-28s %7.1f\n", "hot key, 1 thread", run(0, 1));
    printf("  %-28s %7.1f\n", "10k keys, 1 thread", run(1, 1));
    printf("  %-28s %7.1f\n", "refused, 1 thread", run(2, 1));
    printf("  %-28s %7.1f\n", "conc take+release, 1 thread", run(3, 1));
    char label[64];
    snprintf(label, sizeof label, "hot key, %d threads", n);
    double hot = run(0, n);
    printf("  %-28s %7.1f  (%.1f per thread)\n", label, hot, hot * n);
    snprintf(label, sizeof label, "own keys, %d threads", n);
    double own = run(4, n);
    printf("  %-28s %7.1f  (%.1f per thread)\n", label, own, own * n);
    snprintf(label, sizeof label, "hot key leased, %d threads", n);
    double leased = run(5, n);
    printf("  %-28s %7.1f  (%.1f per thread, lease %u)\n", label, leased, leased * n, R_leased.lease);
    snprintf(label, sizeof label, "conc take+release, %d threads", n);
    double conc = run(3, n);
    printf("  %-28s %7.1f  (%.1f per thread)\n", label, conc, conc * n);
    snprintf(label, sizeof label, "conc leased, %d threads", n);
    double cl = run(6, n);
    printf("  %-28s %7.1f  (%.1f per thread, lease %u)\n", label, cl, cl * n, C_lease);
    rl_table_free(&T);
    return 0;
}
