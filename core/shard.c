/* shard: the per-CPU event loop.
 *
 * One turn of the loop: reap every completion the engine has (core/engine.h:
 * posted by io_uring, or made by the epoll backend from readiness), each
 * dispatched by its operation kind to the handler a module registered, run
 * due timers, let each module finish the turn (net/conns.c gives each
 * connection with queued output one send), then issue every new operation and
 * wait for the next completion or timer deadline (one io_uring_enter, or one
 * epoll_wait). Nothing here blocks except that wait.
 *
 * Drain: the main thread writes the shard's eventfd. The shard tells every
 * module (net/conns.c closes its main listener and idle connections; running
 * responses finish), and stops when no module is busy or the drain deadline
 * passes (then `cut`). */
#include "core/shard.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/cpus.h"
#include "core/qsbr.h"

#define SHARD_RECV_BUFS      1024     /* provided buffers per shard (power of two) */
#define SHARD_RECV_BUF_SIZE  4096

_Atomic bool g_agate_draining;
_Atomic bool g_agate_stop_now;
shard_t     *g_shards;
unsigned     g_nshards;

/* Filled by the main thread before any shard starts, read-only after. */
static const shard_mod_ops_t *g_mods[SHARD_MOD_MAX];
static unsigned               g_nmods;
static const shard_op_t      *g_ops[UD_OP_MAX];
static uint8_t                g_nops = UD_FIRST_FREE;

#define EACH_MOD(i) for (unsigned i = 0; i < g_nmods; i++)
#define CALL(i, hook, ...) do { if (g_mods[i]->hook) g_mods[i]->hook(__VA_ARGS__); } while (0)

unsigned shard_mod_register(const shard_mod_ops_t *ops)
{
    EACH_MOD(i)
        if (g_mods[i] == ops)
            return i;
    if (g_nmods == SHARD_MOD_MAX)
        abort();   /* a build with more modules than SHARD_MOD_MAX: raise it */
    g_mods[g_nmods] = ops;
    return g_nmods++;
}

uint8_t shard_op_register(const shard_op_t *op)
{
    for (uint8_t i = UD_FIRST_FREE; i < g_nops; i++)
        if (g_ops[i] == op)
            return i;
    if (g_nops == UD_OP_MAX)
        abort();
    g_ops[g_nops] = op;
    return g_nops++;
}

void shard_log_line(shard_t *sh, buf_t *line)
{
    if (line->len && sh->log)
        log_put(sh->log, line->data, line->len);
}

void shard_adopt(shard_t *sh, const cfg_t *old)
{
    EACH_MOD(i)
        CALL(i, adopt, sh, old);
}

static void arm_wake(shard_t *sh)
{
    eng_read(&sh->eng, sh->wake_fd, &sh->wake_val, sizeof sh->wake_val, eng_ud(UD_WAKE, 0, 0));
}

static void update_clock(shard_t *sh)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sh->now_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    sh->now_ms = sh->now_us / 1000u;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (ts.tv_sec != sh->wall_sec) {
        sh->wall_sec = ts.tv_sec;
        clock_http_date(ts.tv_sec, sh->http_date, sizeof sh->http_date);
    }
}

static void maybe_stop(shard_t *sh)
{
    if (!sh->draining)
        return;
    EACH_MOD(i)
        if (g_mods[i]->busy && g_mods[i]->busy(sh))
            return;
    sh->stopping = true;
}

static void drain_deadline(agate_timer_t *t)
{
    shard_t *sh = (shard_t *)((char *)t - offsetof(shard_t, drain_timer));
    EACH_MOD(i)
        CALL(i, cut, sh);
}

static void begin_drain(shard_t *sh)
{
    if (sh->draining)
        return;
    sh->draining = true;
    EACH_MOD(i)
        CALL(i, drain, sh);
    sh->drain_timer.cb = drain_deadline;
    timer_arm(&sh->timers, &sh->drain_timer, sh->now_ms + sh->cfg->drain_timeout_ms);
}

static void on_wake(shard_t *sh)
{
    /* drain, a new configuration generation, or a shared run this shard follows moved on */
    if (atomic_load(&g_agate_draining))
        begin_drain(sh);
    if (atomic_load(&g_agate_stop_now))
        drain_deadline(&sh->drain_timer);
    arm_wake(sh);
}

static void handle_cqe(void *ctx, eng_cqe_t *cqe)
{
    shard_t *sh = ctx;
    uint64_t ud = eng_cqe_ud(cqe);
    uint8_t op = eng_ud_op(ud);
    if (op == UD_WAKE) {
        on_wake(sh);
        return;
    }
    const shard_op_t *o = op < g_nops ? g_ops[op] : NULL;
    if (!o)
        return;   /* UD_IGNORE */
    void *obj = NULL;
    if (o->lookup && !(obj = o->lookup(sh, ud))) {
        if (o->stale)
            o->stale(sh, cqe);
        return;
    }
    o->complete(sh, obj, cqe);
}

/* ---- the loop's metrics ---- */

static const uint64_t batch_bounds[SHARD_BATCH_BUCKETS] = {0, 1, 2, 4, 8, 16, 32, 64, 128, 256};

static void observe_batch(shard_metrics_t *m, uint64_t sqes)
{
    int i = 0;
    while (i < SHARD_BATCH_BUCKETS && sqes > batch_bounds[i])
        i++;
    metrics_add(&m->sqes_per_loop[i], 1);
    metrics_add(&m->sqes_submitted, sqes);
}

static uint64_t sum_of(const shard_t *sh, unsigned n, size_t off)
{
    uint64_t v = 0;
    for (unsigned s = 0; s < n; s++)
        v += metrics_rd((const uint64_t *)((const char *)&sh[s].metrics + off));
    return v;
}

/* A label value: the reason text with its quotes and backslashes escaped. */
static void label_text(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 3 < cap; s++) {
        if (*s == '"' || *s == '\\')
            out[o++] = '\\';
        out[o++] = *s == '\n' ? ' ' : *s;
    }
    out[o] = 0;
}

static void render_loop(metrics_render_t *r, const shard_t *sh, unsigned n, const cfg_t *cfg)
{
    const eng_choice_t *eng = eng_selected();
    char why[200], info[320];
    label_text(why, sizeof why, eng->why);
    snprintf(info, sizeof info, "backend=\"%s\",reason=\"%s\"", eng_backend_name(eng->backend), why);
    metrics_family(r, "agate_engine_info", "gauge",
                   "The I/O engine every shard runs on (io_uring or epoll, engine.backend) and why; always 1.");
    metrics_sample_u(r, "agate_engine_info", "", info, 1);
    metrics_gauge(r, "agate_draining", "1 once a graceful shutdown has begun.",
                  atomic_load_explicit(&g_agate_draining, memory_order_relaxed));
    char lb[64];
    metrics_family(r, "agate_shard_busy_seconds", "counter", "Time each shard's loop spent working rather than waiting for I/O.");
    for (unsigned s = 0; s < n; s++) {
        snprintf(lb, sizeof lb, "shard=\"%u\"", s);
        metrics_sample_f(r, "agate_shard_busy_seconds", "_total", lb, (double)metrics_rd(&sh[s].metrics.busy_ns) / 1e9);
    }
    metrics_family(r, "agate_shard_loop_iterations", "counter", "Event loop turns, per shard.");
    for (unsigned s = 0; s < n; s++) {
        snprintf(lb, sizeof lb, "shard=\"%u\"", s);
        metrics_sample_u(r, "agate_shard_loop_iterations", "_total", lb, metrics_rd(&sh[s].metrics.loop_iterations));
    }
    metrics_family(r, "agate_shard_loop_turn_seconds", "histogram",
           "Time one event loop turn spent working (completions, timers, flushes), all shards; a long turn delays "
           "every connection of its shard.");
    metrics_hist_t turn = {0};
    for (unsigned s = 0; s < n; s++)
        metrics_hist_add(&turn, &sh[s].metrics.loop_turn);
    metrics_hist(r, "agate_shard_loop_turn_seconds", "", &turn);
    metrics_family(r, "agate_uring_sqes_per_loop", "histogram",
                   "I/O operations issued per loop turn: io_uring submission queue entries, or operations armed under epoll.");
    uint64_t cum = 0;
    for (int i = 0; i <= SHARD_BATCH_BUCKETS; i++) {
        cum += sum_of(sh, n, offsetof(shard_metrics_t, sqes_per_loop) + (size_t)i * sizeof(uint64_t));
        if (i < SHARD_BATCH_BUCKETS)
            snprintf(lb, sizeof lb, "le=\"%llu\"", (unsigned long long)batch_bounds[i]);
        else
            snprintf(lb, sizeof lb, "le=\"+Inf\"");
        metrics_sample_u(r, "agate_uring_sqes_per_loop", "_bucket", lb, cum);
    }
    metrics_sample_u(r, "agate_uring_sqes_per_loop", "_sum", "", sum_of(sh, n, offsetof(shard_metrics_t, sqes_submitted)));
    metrics_sample_u(r, "agate_uring_sqes_per_loop", "_count", "", cum);
}


static void loop_turn(shard_t *sh)
{
    uint64_t next = timer_next(&sh->timers);
    uint64_t wait_ms = next == UINT64_MAX ? UINT64_MAX : next > sh->now_ms ? next - sh->now_ms : 0;
    int rc = eng_submit_and_wait(&sh->eng, wait_ms);
    update_clock(sh);
    /* Quiescent first, then the modules' turn_begin, the first of which is
     * core/cfggen.c's adoption of a reloaded configuration: a shard seen past a
     * generation's retirement has adopted the next one before it starts any run. */
    qsbr_quiescent(sh->id);     /* holds nothing published before this turn (core/qsbr.h) */
    EACH_MOD(i)
        CALL(i, turn_begin, sh);
    uint64_t woke_us = sh->now_us;
    eng_reap(&sh->eng, handle_cqe, sh);
    timer_run(&sh->timers, sh->now_ms);
    EACH_MOD(i)
        CALL(i, turn_end, sh);
    maybe_stop(sh);
    if (sh->m) {
        metrics_add(&sh->m->loop_iterations, 1);
        uint64_t busy_us = clock_mono_us() - woke_us;
        metrics_add(&sh->m->busy_ns, busy_us * 1000u);
        metrics_observe_us(&sh->m->loop_turn, busy_us);
        observe_batch(sh->m, rc > 0 ? (uint64_t)rc : 0);
    }
}

static void free_mods(shard_t *sh, unsigned upto)
{
    for (unsigned i = upto; i-- > 0;)
        CALL(i, free, sh);
}

static int shard_init_loop(shard_t *sh)
{
    int rc = eng_init(&sh->eng, eng_selected()->backend, &sh->timers, &sh->now_ms);
    if (rc)
        return rc;
    rc = eng_bufs_init(&sh->eng, &sh->rbufs, 1, SHARD_RECV_BUFS, SHARD_RECV_BUF_SIZE);
    if (rc)
        goto fail_eng;
    rc = rand_seed(&sh->rng);
    if (rc)
        goto fail_bufs;
    update_clock(sh);
    unsigned i = 0;
    for (; i < g_nmods; i++)
        if (g_mods[i]->init && (rc = g_mods[i]->init(sh)))
            goto fail_mods;
    return 0;
fail_mods:
    free_mods(sh, i);
fail_bufs:
    eng_bufs_free(&sh->eng, &sh->rbufs);
fail_eng:
    eng_exit(&sh->eng);
    return rc;
}

static bool any_inflight(const shard_t *sh)
{
    EACH_MOD(i)
        if (g_mods[i]->inflight && g_mods[i]->inflight(sh))
            return true;
    return false;
}

/* Stops everything still open and waits (bounded) for the kernel to finish with
 * it, so every buffer is freed and a leak check at exit sees nothing. */
static void shard_teardown(shard_t *sh)
{
    for (unsigned i = g_nmods; i-- > 0;)   /* the modules on top first: connections before upstreams */
        CALL(i, stop, sh);
    uint64_t deadline = sh->now_ms + 2000;
    while (any_inflight(sh) && sh->now_ms < deadline) {
        timer_arm(&sh->timers, &sh->drain_timer, sh->now_ms + 50);
        loop_turn(sh);
    }
    timer_cancel(&sh->timers, &sh->drain_timer);
    free_mods(sh, g_nmods);
    eng_bufs_free(&sh->eng, &sh->rbufs);
    eng_exit(&sh->eng);
    close(sh->wake_fd);
    sh->wake_fd = -1;
    timer_heap_free(&sh->timers);
    buf_free(&sh->scratch);
}

static void pin(shard_t *sh)
{
    cpu_set_t allowed, one;
    sh->cpu = -1;
    if (sched_getaffinity(0, sizeof allowed, &allowed))
        return;
    int n = CPU_COUNT(&allowed), want = (int)sh->id % (n ? n : 1);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed) || want--)
            continue;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (!pthread_setaffinity_np(pthread_self(), sizeof one, &one))
            sh->cpu = cpu;
        return;
    }
}

struct start_arg {
    shard_t           *sh;
    pthread_barrier_t *ready;
};

static void *shard_main(void *p)
{
    struct start_arg a = *(struct start_arg *)p;
    free(p);
    shard_t *sh = a.sh;
    char name[16];
    snprintf(name, sizeof name, "agate-shard%u", sh->id);
    pthread_setname_np(pthread_self(), name);
    pin(sh);
    sh->start_rc = shard_init_loop(sh);
    pthread_barrier_wait(a.ready);
    if (sh->start_rc) {
        qsbr_offline(sh->id);
        atomic_store(&sh->done, true);
        return NULL;
    }
    EACH_MOD(i)
        CALL(i, start, sh);
    arm_wake(sh);
    if (atomic_load(&g_agate_draining))
        begin_drain(sh);
    while (!sh->stopping)
        loop_turn(sh);
    shard_teardown(sh);
    qsbr_offline(sh->id);
    atomic_store(&sh->done, true);
    return NULL;
}

unsigned shard_count(const cfg_t *c)
{
    if (c->shards)
        return c->shards;
    cpus_t cpus;
    cpus_probe("", &cpus);
    return cpus.usable;
}

int shard_open(shard_t *sh, unsigned id, const cfg_t *cfg, char *err, size_t errlen)
{
    memset(sh, 0, sizeof *sh);
    sh->id = id;
    sh->cfg = cfg;
    sh->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (sh->wake_fd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        return -errno;
    }
    sh->log = log_ring(id);
    sh->m = cfg->metrics_enabled ? &sh->metrics : NULL;
    metrics_register(render_loop);   /* once: a second registration is ignored */
    int rc = 0;
    unsigned i = 0;
    for (; i < g_nmods; i++)
        if (g_mods[i]->open && (rc = g_mods[i]->open(sh, err, errlen)))
            break;
    if (!rc)
        return 0;
    while (i-- > 0)
        CALL(i, close, sh);
    close(sh->wake_fd);
    sh->wake_fd = -1;
    return rc;
}

void shard_close(shard_t *sh)
{
    for (unsigned i = g_nmods; i-- > 0;)
        CALL(i, close, sh);
    if (sh->wake_fd >= 0)
        close(sh->wake_fd);
    sh->wake_fd = -1;
}

int shard_start(shard_t *sh, pthread_barrier_t *ready)
{
    struct start_arg *a = malloc(sizeof *a);
    if (!a)
        return -ENOMEM;
    a->sh = sh;
    a->ready = ready;
    int rc = pthread_create(&sh->thr, NULL, shard_main, a);
    if (rc) {
        free(a);
        return -rc;
    }
    return 0;
}

void shard_wake_mask(const _Atomic uint64_t *mask, unsigned words, _Atomic bool *(*pending)(shard_t *sh),
                     shard_t *self)
{
    atomic_thread_fence(memory_order_seq_cst);
    for (unsigned w = 0; w < words; w++) {
        uint64_t m = atomic_load_explicit(&mask[w], memory_order_relaxed);
        while (m) {
            unsigned s = w * 64 + (unsigned)__builtin_ctzll(m);
            m &= m - 1;
            if (s >= g_nshards)
                continue;
            shard_t *t = &g_shards[s];
            _Atomic bool *p = pending(t);
            if (p && !atomic_exchange(p, true) && t != self)
                shard_wake(t);
        }
    }
}

void shard_wake(shard_t *sh)
{
    uint64_t one = 1;
    ssize_t w = write(sh->wake_fd, &one, sizeof one);
    (void)w;
}

void shard_join(shard_t *sh) { pthread_join(sh->thr, NULL); }
