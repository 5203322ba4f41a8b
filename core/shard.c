/* shard: the per-CPU event loop.
 *
 * One turn of the loop: reap every completion the kernel has posted (accepts,
 * receives, sends), run due timers, give each connection with queued output one
 * send, then submit all new SQEs and wait for the next completion or timer
 * deadline in a single io_uring_enter. Nothing here blocks except that wait.
 *
 * Drain: the main thread writes the shard's eventfd. The shard closes its main
 * listener, closes idle connections, lets running responses finish (they close
 * after their last byte), and stops when no main connection is left or the
 * drain deadline passes. The admin listener stays open so readiness can say 503. */
#include "core/shard.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "net/access.h"
#include "core/cfggen.h"
#include "net/conn.h"
#include "net/coalesce.h"
#include "net/listener.h"
#include "net/ws.h"
#include "net/proxy.h"
#include "net/upstream.h"
#include "proto/agent.h"

#define SHARD_RING_ENTRIES   4096
#define SHARD_RECV_BUFS      1024     /* provided buffers per shard (power of two) */
#define SHARD_RECV_BUF_SIZE  4096
#define SHARD_CONN_RESERVE   64       /* slots past max_connections, to answer 503 */
#define SHARD_LOG_RING_BYTES (1u << 20)

_Atomic bool g_agate_draining;
_Atomic bool g_agate_stop_now;
shard_t     *g_shards;
unsigned     g_nshards;

struct io_uring_sqe *shard_sqe(shard_t *sh)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&sh->ring);
    while (!sqe) {
        io_uring_submit(&sh->ring);
        sqe = io_uring_get_sqe(&sh->ring);
    }
    return sqe;
}

void shard_log_line(shard_t *sh, buf_t *line)
{
    if (line->len && sh->log)
        log_put(sh->log, line->data, line->len);
}

static void arm_accept(shard_t *sh, int which)
{
    struct io_uring_sqe *sqe = shard_sqe(sh);
    io_uring_prep_multishot_accept(sqe, sh->listen_fd[which], NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, uring_ud(UD_ACCEPT, 0, (uint32_t)which));
}

static void arm_wake(shard_t *sh)
{
    struct io_uring_sqe *sqe = shard_sqe(sh);
    io_uring_prep_read(sqe, sh->wake_fd, &sh->wake_val, sizeof sh->wake_val, 0);
    io_uring_sqe_set_data64(sqe, uring_ud(UD_WAKE, 0, 0));
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

static void close_listener(shard_t *sh, int which)
{
    int fd = sh->listen_fd[which];
    if (fd < 0)
        return;
    /* shutdown() makes the pending multishot accept complete and refuses new
     * connections at once; close() alone would leave the accept holding the file. */
    shutdown(fd, SHUT_RDWR);
    close(fd);
    sh->listen_fd[which] = -1;
}

static void maybe_stop(shard_t *sh)
{
    if (sh->draining && sh->n_main == 0)
        sh->stopping = true;
}

static void drain_deadline(agate_timer_t *t)
{
    shard_t *sh = (shard_t *)((char *)t - offsetof(shard_t, drain_timer));
    for (uint32_t i = 0; i < sh->conn_cap; i++)
        if (sh->conns[i].state != CONN_FREE && !sh->conns[i].admin)
            conn_abort(&sh->conns[i]);
}

static void begin_drain(shard_t *sh)
{
    if (sh->draining)
        return;
    sh->draining = true;
    close_listener(sh, SHARD_LISTEN_MAIN);
    for (uint32_t i = 0; i < sh->conn_cap; i++) {
        conn_t *c = &sh->conns[i];
        if (c->state == CONN_OPEN && !c->admin && conn_is_idle(c))
            conn_close_after_flush(c);   /* graceful: a response may still be in the send queue */
        else if (c->ws)
            ws_drain(c);                 /* WebSocket: no new runs; close 1001 once its runs end */
    }
    sh->drain_timer.cb = drain_deadline;
    timer_arm(&sh->timers, &sh->drain_timer, sh->now_ms + sh->cfg->drain_timeout_ms);
}

static conn_t *conn_lookup(shard_t *sh, uint64_t ud)
{
    uint32_t slot = uring_ud_slot(ud);
    if (slot >= sh->conn_cap)
        return NULL;
    conn_t *c = &sh->conns[slot];
    return (c->gen & 0xffffffu) == uring_ud_gen(ud) && c->state != CONN_FREE ? c : NULL;
}

static void on_accept(shard_t *sh, struct io_uring_cqe *cqe, int which)
{
    if (cqe->res >= 0) {
        if (sh->listen_fd[which] < 0)
            close(cqe->res);
        else
            conn_accept(sh, cqe->res, which == SHARD_LISTEN_ADMIN);
    }
    if (!(cqe->flags & IORING_CQE_F_MORE) && sh->listen_fd[which] >= 0)
        arm_accept(sh, which);
}

static void handle_cqe(shard_t *sh, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    conn_t *c;
    switch (uring_ud_op(ud)) {
    case UD_ACCEPT:
        on_accept(sh, cqe, (int)uring_ud_slot(ud));
        break;
    case UD_WAKE:   /* drain, or a shared run this shard follows moved on (net/coalesce.c) */
        if (atomic_load(&g_agate_draining))
            begin_drain(sh);
        if (atomic_load(&g_agate_stop_now))
            drain_deadline(&sh->drain_timer);
        arm_wake(sh);
        break;
    case UD_RECV:
        c = conn_lookup(sh, ud);
        if (c) {
            conn_on_recv(c, cqe);
            conn_reap(c);
        } else if (cqe->flags & IORING_CQE_F_BUFFER) {
            uring_bufs_recycle(&sh->rbufs, (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
        }
        break;
    case UD_SEND:
        c = conn_lookup(sh, ud);
        if (c) {
            conn_on_send(c, cqe->res);
            conn_reap(c);
        }
        break;
    case UD_UP_CONNECT:
    case UD_UP_SEND:
    case UD_UP_RECV:
        ups_on_cqe(sh, cqe);
        break;
    default:
        break;
    }
}

static void flush_all(shard_t *sh)
{
    while (sh->flush_head) {
        conn_t *c = sh->flush_head;
        sh->flush_head = c->flush_next;
        conn_flush(c);
        conn_reap(c);
    }
}

/* Frees the connections aborted this turn that have nothing in flight; the
 * others are freed by the completion that ends their last operation. */
static void reap_all(shard_t *sh)
{
    while (sh->reap_head) {
        conn_t *c = sh->reap_head;
        sh->reap_head = c->reap_next;
        c->in_reap = false;
        conn_reap(c);
    }
}

static void loop_turn(shard_t *sh, bool wait)
{
    struct io_uring_cqe *cqe;
    uint64_t next = timer_next(&sh->timers);
    struct __kernel_timespec ts = {0, 0};
    if (next != UINT64_MAX) {
        uint64_t d = next > sh->now_ms ? next - sh->now_ms : 0;
        ts.tv_sec = (long long)(d / 1000);
        ts.tv_nsec = (long long)(d % 1000) * 1000000;
    }
    int rc = io_uring_submit_and_wait_timeout(&sh->ring, &cqe, wait ? 1 : 0,
                                              next == UINT64_MAX ? NULL : &ts, NULL);
    update_clock(sh);
    access_quiescent(sh->id);   /* no access policy pointer is held across turns */
    cfggen_shard_turn(sh);      /* a reloaded configuration takes effect here, between turns */
    uint64_t woke_us = sh->now_us;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&sh->ring, head, cqe) {
        handle_cqe(sh, cqe);
        n++;
    }
    io_uring_cq_advance(&sh->ring, n);
    timer_run(&sh->timers, sh->now_ms);
    coalesce_shard_poll(sh);
    flush_all(sh);
    reap_all(sh);
    maybe_stop(sh);
    if (sh->m) {
        metrics_add(&sh->m->loop_iterations, 1);
        uint64_t busy_us = clock_mono_us() - woke_us;
        metrics_add(&sh->m->busy_ns, busy_us * 1000u);
        metrics_observe_us(&sh->m->loop_turn, busy_us);
        metrics_observe_batch(sh->m, rc > 0 ? (uint64_t)rc : 0);
    }
}

static int shard_init_loop(shard_t *sh)
{
    int rc = uring_setup(&sh->ring, SHARD_RING_ENTRIES);
    if (rc)
        return rc;
    rc = uring_bufs_init(&sh->ring, &sh->rbufs, 1, SHARD_RECV_BUFS, SHARD_RECV_BUF_SIZE);
    if (rc)
        goto fail_ring;
    sh->conn_cap = sh->cfg->max_connections + SHARD_CONN_RESERVE;
    sh->conns = calloc(sh->conn_cap, sizeof *sh->conns);
    sh->free_slots = malloc(sh->conn_cap * sizeof *sh->free_slots);
    if (!sh->conns || !sh->free_slots) {
        rc = -ENOMEM;
        goto fail_bufs;
    }
    for (uint32_t i = 0; i < sh->conn_cap; i++) {
        sh->conns[i].fd = -1;
        sh->free_slots[i] = sh->conn_cap - 1 - i;
    }
    sh->n_free = sh->conn_cap;
    rc = rand_seed(&sh->rng);
    if (rc)
        goto fail_bufs;
    rc = proxy_shard_init(sh);
    if (rc)
        goto fail_bufs;
    rc = coalesce_shard_init(sh);
    if (rc)
        goto fail_proxy;
    update_clock(sh);
    return 0;
fail_proxy:
    proxy_shard_free(sh);
fail_bufs:
    free(sh->conns);
    free(sh->free_slots);
    sh->conns = NULL;
    sh->free_slots = NULL;
    uring_bufs_free(&sh->ring, &sh->rbufs);
fail_ring:
    io_uring_queue_exit(&sh->ring);
    return rc;
}

/* Stops everything still open and waits (bounded) for the kernel to finish with
 * it, so every buffer is freed and a leak check at exit sees nothing. */
static void shard_teardown(shard_t *sh)
{
    close_listener(sh, SHARD_LISTEN_MAIN);
    close_listener(sh, SHARD_LISTEN_ADMIN);
    for (uint32_t i = 0; i < sh->conn_cap; i++)
        if (sh->conns[i].state != CONN_FREE)
            conn_abort(&sh->conns[i]);
    ups_abort_all(sh);
    uint64_t deadline = sh->now_ms + 2000;
    while ((sh->n_main || sh->n_admin || ups_busy(sh)) && sh->now_ms < deadline) {
        timer_arm(&sh->timers, &sh->drain_timer, sh->now_ms + 50);
        loop_turn(sh, true);
    }
    timer_cancel(&sh->timers, &sh->drain_timer);
    for (uint32_t i = 0; i < sh->conn_cap; i++) {
        conn_t *c = &sh->conns[i];
        buf_free(&c->out[0]);
        buf_free(&c->out[1]);
        buf_free(&c->pending);
        http_conn_free(&c->http);
    }
    agent_pool_free(sh);
    coalesce_shard_free(sh);
    proxy_shard_free(sh);
    uring_bufs_free(&sh->ring, &sh->rbufs);
    io_uring_queue_exit(&sh->ring);
    close(sh->wake_fd);
    free(sh->conns);
    free(sh->free_slots);
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
        atomic_store(&sh->done, true);
        return NULL;
    }
    for (int i = 0; i < 2; i++)
        if (sh->listen_fd[i] >= 0)
            arm_accept(sh, i);
    arm_wake(sh);
    if (atomic_load(&g_agate_draining))
        begin_drain(sh);
    while (!sh->stopping)
        loop_turn(sh, true);
    shard_teardown(sh);
    atomic_store(&sh->done, true);
    return NULL;
}

unsigned shard_count(const cfg_t *c)
{
    if (c->shards)
        return c->shards;
    cpu_set_t set;
    if (!sched_getaffinity(0, sizeof set, &set) && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

int shard_listen(shard_t *sh, unsigned id, const cfg_t *cfg, char *err, size_t errlen)
{
    memset(sh, 0, sizeof *sh);
    sh->id = id;
    sh->cfg = cfg;
    sh->listen_fd[0] = sh->listen_fd[1] = -1;
    sh->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (sh->wake_fd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        return -errno;
    }
    int fd = listener_open(cfg->listen, err, errlen);
    if (fd < 0)
        goto fail_wake;
    sh->listen_fd[SHARD_LISTEN_MAIN] = fd;
    if (cfg->admin_listen[0] && strcmp(cfg->admin_listen, "off")) {
        fd = listener_open(cfg->admin_listen, err, errlen);
        if (fd < 0)
            goto fail_main;
        sh->listen_fd[SHARD_LISTEN_ADMIN] = fd;
    }
    sh->log = log_ring(id);
    sh->m = cfg->metrics_enabled ? &sh->metrics : NULL;
    return 0;
fail_main:
    close(sh->listen_fd[SHARD_LISTEN_MAIN]);
fail_wake:
    close(sh->wake_fd);
    return fd;
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

void shard_wake(shard_t *sh)
{
    uint64_t one = 1;
    ssize_t w = write(sh->wake_fd, &one, sizeof one);
    (void)w;
}

void shard_join(shard_t *sh) { pthread_join(sh->thr, NULL); }
