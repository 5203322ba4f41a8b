/* shard: one thread per CPU, owning everything its connections touch.
 *
 * A shard owns its I/O engine (core/engine.h: io_uring, or epoll where the
 * host refuses io_uring), the receive buffers, a timer heap, an id
 * generator, a log ring and the per-shard state of every module registered with
 * shard_mod_register (net/conns.c keeps the listeners and connections there,
 * net/upstream.c its upstream connections, ...). Nothing in a shard is touched
 * by another thread, except the wake eventfd (written by the main thread), the
 * metrics a scrape reads, and the process-wide flags below.
 *
 * The loop knows no protocol: a completion is dispatched by the operation kind
 * in its user_data to the handler registered for it (shard_op_register), and
 * modules join each turn, the drain and the teardown through their
 * shard_mod_ops_t. */
#ifndef AGATE_SHARD_H
#define AGATE_SHARD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/engine.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/rand.h"
#include "core/timer.h"

struct shard;

#define SHARD_MOD_MAX 24   /* 13 with core/redis.c (and a test's own); the global limiter adds 2, the shared cache its own */

/* A module's part in every shard. Every hook is optional. Hooks run in
 * registration order; `stop`, `close` and `free` in reverse, so a module is
 * registered after those it uses. */
typedef struct shard_mod_ops {
    const char *name;
    /* Main thread, before the shard's thread starts (so bind errors surface at
     * start-up, and a scrape on any shard finds every shard's state): 0, or
     * -errno with err filled. `close` undoes it if start-up fails later. */
    int  (*open)(struct shard *sh, char *err, size_t errlen);
    void (*close)(struct shard *sh);
    int  (*init)(struct shard *sh);                          /* shard thread, before the loop */
    void (*start)(struct shard *sh);                         /* the loop is about to run: arm first SQEs */
    void (*turn_begin)(struct shard *sh);                    /* each turn, before its completions */
    void (*turn_end)(struct shard *sh);                      /* each turn, after completions and timers */
    void (*adopt)(struct shard *sh, const cfg_t *old);       /* a new configuration generation took effect */
    void (*drain)(struct shard *sh);                         /* graceful drain begins */
    void (*cut)(struct shard *sh);                           /* drain deadline or second signal: cut streams */
    bool (*busy)(const struct shard *sh);                    /* a draining shard waits while any says so */
    void (*stop)(struct shard *sh);                          /* the loop ends: abort everything still open */
    bool (*inflight)(const struct shard *sh);                /* after stop: operations the kernel still has */
    void (*free)(struct shard *sh);                          /* the loop has stopped; nothing is in flight */
} shard_mod_ops_t;

/* A completion kind's handlers. lookup finds the object the completion is for
 * (slab_lookup: slot and generation); NULL means it is gone, and stale gives
 * back what the completion carries (a provided buffer). A NULL lookup means
 * the kind names no object (complete gets NULL). */
typedef struct shard_op {
    void *(*lookup)(struct shard *sh, uint64_t ud);
    void  (*complete)(struct shard *sh, void *obj, eng_cqe_t *cqe);
    void  (*stale)(struct shard *sh, eng_cqe_t *cqe);
} shard_op_t;

/* Main thread, before the first shard_open (start-up; a test's set-up).
 * Registering the same ops again returns the same id. */
unsigned shard_mod_register(const shard_mod_ops_t *ops);
uint8_t  shard_op_register(const shard_op_t *op);

/* Set once by the main thread, read by every shard (readiness, stop). */
extern _Atomic bool g_agate_draining;
extern _Atomic bool g_agate_stop_now;   /* a second signal: cut running streams */
/* All shards, for scrapes; set by the main thread before any shard starts. */
extern struct shard *g_shards;
extern unsigned      g_nshards;

/* The loop's own metrics (rendered by core/shard.c). */
#define SHARD_BATCH_BUCKETS 10
typedef struct shard_metrics {
    uint64_t loop_iterations, busy_ns, sqes_submitted;   /* SQEs: operations issued, either backend */
    uint64_t sqes_per_loop[SHARD_BATCH_BUCKETS + 1];
    metrics_hist_t loop_turn;                             /* working time of one loop turn */
} shard_metrics_t;

typedef struct shard {
    unsigned      id;
    const cfg_t  *cfg;               /* the generation it adopted last (core/cfggen.c); runs may hold older ones */
    pthread_t     thr;
    eng_t         eng;               /* io_uring or epoll (eng_selected()), set up on the shard's thread */
    eng_bufs_t    rbufs;             /* receive buffers for client connections */
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

    /* Each registered module's state, owned by that module, which reads it
     * through its own typed accessor (conns_of, ...). */
    void         *mod[SHARD_MOD_MAX];

    bool          draining, stopping;
    agate_timer_t drain_timer;
    int           start_rc;          /* start-up result for the main thread */
    _Atomic bool  done;              /* the thread has finished its teardown */

    shard_metrics_t *m;              /* &metrics, or NULL when metrics are off */
    shard_metrics_t  metrics;        /* the loop's own; written only by this shard, read by scrapes */
} shard_t;

/* Shards to run for cfg: its `shards`, else one per CPU this process may use
 * (core/cpus.h: the affinity mask and the cgroup's CPU quota). */
unsigned shard_count(const cfg_t *c);
/* Main thread: sets the shard up and runs every module's `open` (listeners),
 * so bind errors surface before any thread starts. 0 or -errno with err
 * filled. shard_close undoes it for a shard that never started. */
int  shard_open(shard_t *sh, unsigned id, const cfg_t *cfg, char *err, size_t errlen);
void shard_close(shard_t *sh);
int  shard_start(shard_t *sh, pthread_barrier_t *ready);
void shard_wake(shard_t *sh);            /* any thread: make the shard turn its loop (drain, shared runs) */
/* A shared log's writer: wakes each shard whose bit is set in mask (`words`
 * 64-bit words, set by readers as they attach) once per pending flag, the
 * flag being pending(shard) (NULL: the shard has none); `self` only gets its
 * flag set (it looks at the end of its turn). A full fence first: the writer
 * published, then reads the mask; an attaching reader sets its bit, then
 * reads what is published (coalescing's flights, resumable runs' logs). */
void shard_wake_mask(const _Atomic uint64_t *mask, unsigned words, _Atomic bool *(*pending)(shard_t *sh),
                     shard_t *self);
void shard_join(shard_t *sh);

/* Shard thread only. */
void shard_adopt(shard_t *sh, const cfg_t *old);   /* core/cfggen.c: every module's adopt hook */
void shard_log_line(shard_t *sh, buf_t *line);

#endif
