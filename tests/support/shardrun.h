/* shardrun: one real shard (core/shard.c: its thread, engine, loop, timers)
 * inside a unit test, on io_uring or on epoll (sr_backend), for the modules whose completions only the loop can
 * dispatch (net/upstream.h, net/proxy.h, and net/coalesce.h's followers).
 *
 * The shard listens on a free loopback port with the modules core/main.c
 * registers; a test talks to it with plain sockets and plays agent services on
 * loopback listeners of its own (sr_listen, sr_accept, sr_read_request).
 * sr_call runs a function on the shard thread between two loop turns (a test
 * module's turn_end), so a test can use a module's API where its state lives
 * and read that state without a race.
 *
 * The clock is the real one (the loop reads it each turn). Tests wait for what
 * must happen, bounded by SR_WAIT_MS, and never for time to pass, except where
 * a timeout is the point, made short. Every wait that runs out fails the test
 * rather than hanging it. */
#ifndef AGATE_SHARDRUN_H
#define AGATE_SHARDRUN_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/cache.h"
#include "core/config.h"
#include "core/shard.h"
#include "net/access.h"
#include "net/breaker.h"
#include "net/coalesce.h"
#include "net/conns.h"
#include "net/gwmetrics.h"
#include "net/modules.h"
#include "net/proxy.h"
#include "net/upstream.h"
#include "proto/run.h"

#define SR_WAIT_MS 5000

/* The engine the next sr_init's shard runs on; a test runs its group once per
 * backend by setting it between runs. */
static cfg_backend_t sr_backend = CFG_BACKEND_IO_URING;

typedef void (*sr_fn)(shard_t *sh, void *arg);

typedef struct shardrun {
    cfg_t    cfg;         /* adjust between sr_init and sr_start */
    shard_t  sh;
    uint16_t port;        /* the main listener's */
    bool     running, cache;
} shardrun_t;

/* The function sr_call hands to the shard thread, and its completion. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    sr_fn           fn;
    void           *arg;
    bool            done;
} g_sr = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, false};

static void sr_turn_end(shard_t *sh)
{
    pthread_mutex_lock(&g_sr.mu);
    if (g_sr.fn) {
        g_sr.fn(sh, g_sr.arg);
        g_sr.fn = NULL;
        g_sr.done = true;
        pthread_cond_broadcast(&g_sr.cv);
        shard_wake(sh);   /* one more turn, so what fn queued (a flush) goes out now */
    }
    pthread_mutex_unlock(&g_sr.mu);
}

static const shard_mod_ops_t sr_mod = {.name = "test", .turn_end = sr_turn_end};

/* The modules as core/main.c registers them, then the test's (its turn_end
 * runs last). */
static inline void sr_register(void)
{
    modules_register();
    shard_mod_register(&sr_mod);
}

static inline void sr_deadline(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* A loopback port nothing listens on right now. */
static inline uint16_t sr_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &al))
        abort();
    close(fd);
    return ntohs(a.sin_port);
}

/* Defaults for a test: a small slab, no log lines, one shard, no admin listener. */
static inline void sr_init(shardrun_t *s)
{
    sr_register();
    memset(s, 0, sizeof *s);
    cfg_defaults(&s->cfg);
    s->port = sr_free_port();
    snprintf(s->cfg.listen, sizeof s->cfg.listen, "127.0.0.1:%u", s->port);
    snprintf(s->cfg.admin_listen, sizeof s->cfg.admin_listen, "off");
    s->cfg.shards = 1;
    s->cfg.backend = sr_backend;
    s->cfg.max_connections = 16;
    s->cfg.log_requests = false;
    s->cfg.drain_timeout_ms = 100;
    cache_conf_mut(&s->cfg)->max_bytes = 1u << 20;
}

/* A proxy agent in slot `slot` named name, with one endpoint per port. */
static inline cfg_agent_t *sr_proxy_agent(shardrun_t *s, unsigned slot, const char *name, const uint16_t *ports,
                                          unsigned n)
{
    cfg_agent_t *ag = &s->cfg.agents[slot];
    cfg_agent_t keep = s->cfg.agents[0];   /* the defaults of a configured agent */
    *ag = keep;
    snprintf(ag->name, sizeof ag->name, "%s", name);
    ag->kind = CFG_AGENT_PROXY;
    ag->slot = (uint8_t)slot;
    ag->n_endpoints = n;
    for (unsigned e = 0; e < n; e++) {
        snprintf(ag->endpoints[e].host, sizeof ag->endpoints[e].host, "127.0.0.1");
        ag->endpoints[e].port = ports[e];
        snprintf(ag->endpoints[e].path, sizeof ag->endpoints[e].path, "/agent");
    }
    ag->connect_timeout_ms = 2000;
    ag->first_event_timeout_ms = 5000;
    ag->idle_timeout_ms = 5000;
    ag->run_timeout_ms = 60000;
    ag->retry_attempts = 0;
    ag->retry_backoff_ms = 1;
    ag->retry_backoff_max_ms = 2;
    ag->breaker_failures = 1000;
    ag->breaker_error_rate = 1;
    ag->breaker_min_requests = 100000;
    ag->breaker_open_ms = 10000;
    ag->breaker_half_open = 1;
    ag->validation = CFG_VALIDATION_STRICT;
    ag->max_event_bytes = 1u << 20;
    ag->pool_max_idle = 8;
    ag->pool_idle_timeout_ms = 60000;
    ag->cache_max_entry = 1u << 20;
    ag->cache_max_lag = 8u << 20;
    ag->cache_coalesce = true;
    if (slot >= s->cfg.n_agents)
        s->cfg.n_agents = slot + 1;
    return ag;
}

/* Starts the shard thread; 0, or a skip-worthy -errno (no io_uring). */
static inline int sr_start(shardrun_t *s)
{
    char err[256];
    if (ups_resolve_all(&s->cfg, err, sizeof err)) {
        fprintf(stderr, "shardrun: %s\n", err);
        abort();
    }
    s->cache = cache_conf(&s->cfg)->max_bytes != 0;
    if (s->cache && (cache_init(cache_conf(&s->cfg)->max_bytes) || coalesce_init()))
        abort();
    eng_select(s->cfg.backend == CFG_BACKEND_EPOLL ? ENG_WANT_EPOLL : ENG_WANT_IO_URING, NULL);
    if (shard_open(&s->sh, 0, &s->cfg, err, sizeof err)) {
        fprintf(stderr, "shardrun: %s\n", err);
        abort();
    }
    g_shards = &s->sh;
    g_nshards = 1;
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, 2);
    if (shard_start(&s->sh, &ready))
        abort();
    pthread_barrier_wait(&ready);
    pthread_barrier_destroy(&ready);
    s->running = true;
    if (s->sh.start_rc) {
        int rc = s->sh.start_rc;
        shard_join(&s->sh);
        shard_close(&s->sh);
        s->running = false;
        return rc;
    }
    return 0;
}

/* Runs fn(sh, arg) on the shard thread at the end of a loop turn; returns
 * when it has run. */
static inline void sr_call(shardrun_t *s, sr_fn fn, void *arg)
{
    struct timespec until;
    sr_deadline(&until, SR_WAIT_MS);
    pthread_mutex_lock(&g_sr.mu);
    g_sr.fn = fn;
    g_sr.arg = arg;
    g_sr.done = false;
    shard_wake(&s->sh);
    while (!g_sr.done)
        if (pthread_cond_timedwait(&g_sr.cv, &g_sr.mu, &until) == ETIMEDOUT) {
            fprintf(stderr, "shardrun: the shard did not turn within %d ms\n", SR_WAIT_MS);
            abort();
        }
    pthread_mutex_unlock(&g_sr.mu);
}

static inline void sr_nothing(shard_t *sh, void *arg) { (void)sh, (void)arg; }

/* Calls cond(sh, arg) on the shard thread, turn after turn, until it is true;
 * false when SR_WAIT_MS passed. */
typedef bool (*sr_cond)(shard_t *sh, void *arg);
struct sr_until { sr_cond cond; void *arg; bool ok; };
static inline void sr_until_fn(shard_t *sh, void *arg)
{
    struct sr_until *u = arg;
    u->ok = u->cond(sh, u->arg);
}
static inline bool sr_until(shardrun_t *s, sr_cond cond, void *arg)
{
    struct sr_until u = {cond, arg, false};
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        sr_call(s, sr_until_fn, &u);
        if (u.ok)
            return true;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 > SR_WAIT_MS)
            return false;
        usleep(1000);
    }
}

/* Stops the shard as a second signal would, and frees what the test set up. */
static inline void sr_stop(shardrun_t *s)
{
    if (s->running) {
        atomic_store(&g_agate_draining, true);
        atomic_store(&g_agate_stop_now, true);
        shard_wake(&s->sh);
        shard_join(&s->sh);
        shard_close(&s->sh);
        atomic_store(&g_agate_draining, false);
        atomic_store(&g_agate_stop_now, false);
        s->running = false;
    }
    g_shards = NULL;
    g_nshards = 0;
    if (s->cache) {
        coalesce_shutdown();
        cache_shutdown();
        s->cache = false;
    }
}

/* sr_stop, and the test's agent listener (*lfd) closed; for teardowns. */
static inline void sr_stop_with(shardrun_t *s, int *lfd)
{
    sr_stop(s);
    if (*lfd >= 0)
        close(*lfd);
    *lfd = -1;
}

/* ---- sockets, for the client and the agent services ---- */

static inline void sr_timeouts(int fd)
{
    struct timeval tv = {.tv_sec = SR_WAIT_MS / 1000, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* A listening socket on a free loopback port (*port), backlog as given. */
static inline int sr_listen(uint16_t *port, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, backlog) ||
        getsockname(fd, (struct sockaddr *)&a, &al))
        abort();
    *port = ntohs(a.sin_port);
    return fd;
}

static inline int sr_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a))
        abort();
    sr_timeouts(fd);
    return fd;
}

/* Accepts one connection within ms; -1 when none came. */
static inline int sr_accept(int lfd, unsigned ms)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    if (poll(&p, 1, (int)ms) != 1)
        return -1;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        sr_timeouts(fd);
    return fd;
}

static inline void sr_write(int fd, const char *s)
{
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t w = write(fd, s + off, n - off);
        if (w <= 0)
            abort();
        off += (size_t)w;
    }
}

/* Whether fd is readable within ms. */
static inline bool sr_readable(int fd, unsigned ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, (int)ms) == 1;
}

/* Reads into b until `done(b)` says enough, EOF, or SR_WAIT_MS; returns
 * whether done said so. b stays NUL-terminated. */
static inline bool sr_read_until(int fd, buf_t *b, bool (*done)(const buf_t *b))
{
    char tmp[16384];
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (!buf_reserve(b, 1))
            b->data[b->len] = 0;
        if (b->len && done(b))
            return true;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = SR_WAIT_MS - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
        if (left <= 0 || !sr_readable(fd, (unsigned)left))
            return false;
        ssize_t k = read(fd, tmp, sizeof tmp);
        if (k <= 0) {
            if (!buf_reserve(b, 1))
                b->data[b->len] = 0;
            return b->len && done(b);
        }
        buf_append(b, tmp, (size_t)k);
    }
}

/* An HTTP request's head and its Content-Length body are all in b. */
static inline bool sr_request_complete(const buf_t *b)
{
    const char *eoh = memmem(b->data, b->len, "\r\n\r\n", 4);
    if (!eoh)
        return false;
    const char *cl = strcasestr(b->data, "\r\ncontent-length:");
    size_t n = cl && cl < eoh ? strtoul(cl + 17, NULL, 10) : 0;
    return b->len >= (size_t)(eoh + 4 - b->data) + n;
}

/* One request from an agent service's connection, into b (reset first). */
static inline bool sr_read_request(int fd, buf_t *b)
{
    buf_reset(b);
    return sr_read_until(fd, b, sr_request_complete);
}

/* Whether the peer closed fd (reads to EOF within ms, discarding what comes). */
static inline bool sr_sees_eof(int fd, unsigned ms)
{
    char tmp[4096];
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = (long)ms - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
        if (left <= 0 || !sr_readable(fd, (unsigned)left))
            return false;
        ssize_t k = read(fd, tmp, sizeof tmp);
        if (k == 0 || (k < 0 && errno == ECONNRESET))
            return true;
        if (k < 0)
            return false;
    }
}

#endif
