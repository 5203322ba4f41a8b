/* shard: one thread per CPU, owning everything its connections touch.
 *
 * A shard owns its io_uring, its two SO_REUSEPORT listening sockets, a slab of
 * connection slots, the provided receive buffers, a timer heap, an id generator
 * and a log ring. Nothing in a shard is touched by another thread, except the
 * wake eventfd (written by the main thread) and the process-wide flags below. */
#ifndef AGATE_SHARD_H
#define AGATE_SHARD_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/rand.h"
#include "core/timer.h"
#include "core/uring.h"

struct conn;
struct run;

enum { SHARD_LISTEN_MAIN = 0, SHARD_LISTEN_ADMIN = 1 };

/* Set once by the main thread, read by every shard (readiness, stop). */
extern _Atomic bool g_agate_draining;
extern _Atomic bool g_agate_stop_now;   /* a second signal: cut running streams */
/* All shards, for scrapes; set by the main thread before any shard starts. */
extern struct shard *g_shards;
extern unsigned      g_nshards;

typedef struct shard {
    unsigned      id;
    const cfg_t  *cfg;               /* the generation it adopted last (core/cfggen.c); runs may hold older ones */
    pthread_t     thr;
    struct io_uring ring;
    uring_bufs_t  rbufs;
    int           listen_fd[2];      /* owned; -1 when closed or disabled */
    int           wake_fd;           /* eventfd, owned */
    uint64_t      wake_val;
    int           cpu;               /* pinned CPU, -1 when not pinned */

    uint64_t      now_ms;            /* cached monotonic time, once per loop turn */
    uint64_t      now_us;            /* the same instant in microseconds */
    time_t        wall_sec;
    char          http_date[32];     /* Date header value for wall_sec */
    timer_heap_t  timers;
    rand_state_t  rng;
    log_ring_t   *log;
    buf_t         scratch;           /* log lines, error bodies: reset before each use */

    struct conn  *conns;             /* slab, conn_cap slots */
    uint32_t     *free_slots;        /* stack of free slot indexes */
    uint32_t      n_free, conn_cap;
    uint32_t      n_main, n_admin;   /* open connections per listener */
    struct conn  *flush_head;        /* connections with output to send this turn */
    struct conn  *reap_head;         /* aborted connections to free once idle */
    struct run   *run_pool;          /* free runs, reused */
    void         *ups;               /* upstream connections (net/upstream.c), NULL without proxy agents */
    void         *breakers;          /* per-endpoint breakers and balancer (net/breaker.c), set up
                                        and freed by net/proxy.c; NULL without proxy agents */
    void         *coal;              /* followers of shared runs (net/coalesce.c) */

    bool          draining, stopping;
    agate_timer_t drain_timer;
    int           start_rc;          /* start-up result for the main thread */
    _Atomic bool  done;              /* the thread has finished its teardown */

    metrics_shard_t *m;              /* &metrics, or NULL when metrics are off */
    metrics_shard_t  metrics;        /* written only by this shard; read by scrapes */
} shard_t;

/* Main thread: creates the shard's listeners (so bind errors surface before any
 * thread starts) and its thread. 0 or -errno with err filled. */
/* Shards to run for cfg: its `shards`, else one per CPU this process may use. */
unsigned shard_count(const cfg_t *c);
int  shard_listen(shard_t *sh, unsigned id, const cfg_t *cfg, char *err, size_t errlen);
int  shard_start(shard_t *sh, pthread_barrier_t *ready);
void shard_wake(shard_t *sh);            /* any thread: make the shard turn its loop (drain, shared runs) */
void shard_join(shard_t *sh);

/* Shard thread only. */
struct io_uring_sqe *shard_sqe(shard_t *sh);   /* never NULL: submits to make room */
void shard_log_line(shard_t *sh, buf_t *line);

#endif
